//! A model folder in the diffusers ONNX layout, loaded for tract.
//!
//! ```text
//! model_index.json  manifest.json  scheduler/scheduler_config.json
//! tokenizer/{tokenizer.json,tokenizer_config.json}
//! text_encoder/model.onnx  unet/model.onnx  vae_decoder/model.onnx  [vae_encoder/model.onnx]
//! [upscaler/{model.onnx,config.json}]
//! ```
//!
//! A pixel-space model (no `vae_decoder/`) is allowed: its denoiser works on RGB directly.
//! The latent grid's pixels per cell come from `vae_decoder/config.json`: its
//! `spatial_compression_ratio` (cabin's own autoencoder says so) or else diffusers'
//! AutoencoderKL rule, one halving per `block_out_channels` entry after the first.
//! `upscaler/` is the optional display stage (`super::upscaler`): a network that lifts the
//! decoded picture by an integer scale before it is fitted to a display.
//! Each network is parsed once; tract plans are optimised per concrete input shape on first
//! use and cached, so a model that serves one display size pays the optimisation once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::Value;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

use super::EngineError;
use super::manifest::Manifest;
use super::scheduler::SchedulerConfig;
use super::tokenizer::PromptTokenizer;
use super::upscaler::{self, Upscaler};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Refuse a folder without a valid `manifest.json` (the default; off only for a developer
    /// trying a fresh export).
    pub require_manifest: bool,
    /// Threads tract may use for matrix products (1 = the calling thread only).
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            require_manifest: true,
            threads: 1,
        }
    }
}

/// Defaults a model folder may recommend in `model_index.json` under `"cabin"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Recommended {
    pub steps: usize,
    pub guidance: f64,
    pub scheduler: Option<String>,
}

impl Default for Recommended {
    fn default() -> Self {
        Self {
            steps: 20,
            guidance: 7.5,
            scheduler: None,
        }
    }
}

/// What the pipeline needs to know about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub dir: PathBuf,
    pub name: String,
    pub version: String,
    pub licence: String,
    pub latent_channels: usize,
    /// Pixels per latent cell (8 for SD's VAE, 1 for a pixel-space model).
    pub latent_factor: usize,
    pub native_width: usize,
    pub native_height: usize,
    pub scaling_factor: f64,
    pub recommended: Recommended,
    /// Width of the guidance embedding an LCM-distilled UNet takes, if any.
    pub time_cond_dim: Option<usize>,
    /// The display stage's scale when the folder carries `upscaler/`: generated pictures come
    /// out this many times the generation size. `None`: they come out at generation size.
    pub display_scale: Option<usize>,
}

pub struct Model {
    pub info: ModelInfo,
    pub scheduler: SchedulerConfig,
    pub tokenizer: PromptTokenizer,
    pub(crate) text_encoder: Net,
    pub(crate) unet: Net,
    pub(crate) vae_decoder: Option<Net>,
    pub(crate) vae_encoder: Option<Net>,
    pub(crate) upscaler: Option<Upscaler>,
    /// Last, so it runs after the networks are freed.
    _give_back: heap::GiveBackOnDrop,
}

/// The allocator's policy while a model is loaded: a UNet step frees and allocates the same
/// few megabytes of tensors again and again. glibc hands freed blocks above 128 KiB back to
/// the system and, off the main thread, trims its arenas, so every step faulted them in again
/// (9,400 page faults and ~0.1 s of system time per 12-step picture on two threads,
/// `onnx/bench/README.md`). With fixed thresholds it keeps them; dropping a model hands the
/// memory back. The thresholds are process-wide, which suits a service process.
pub(crate) mod heap {
    pub(crate) fn keep_freed_memory() {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            static ONCE: std::sync::Once = std::sync::Once::new();
            // SAFETY: mallopt only changes the allocator's thresholds.
            ONCE.call_once(|| unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
            });
        }
    }

    pub(super) struct GiveBackOnDrop;

    impl Drop for GiveBackOnDrop {
        fn drop(&mut self) {
            // SAFETY: malloc_trim only returns free memory to the system.
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

impl Model {
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self, EngineError> {
        heap::keep_freed_memory();
        if !dir.is_dir() {
            return Err(EngineError::Model(format!(
                "{} is not a model folder",
                dir.display()
            )));
        }
        let manifest = Manifest::open(dir, options.require_manifest)?;
        let covered = |rel: &str| -> Result<PathBuf, EngineError> {
            if let Some(m) = &manifest {
                m.require(rel)?;
            }
            Ok(dir.join(rel))
        };
        let read_json = |rel: &str, required: bool| -> Result<Value, EngineError> {
            let path = dir.join(rel);
            if !required && !path.exists() {
                return Ok(Value::Null);
            }
            let path = covered(rel)?;
            let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
            serde_json::from_str(&text).map_err(|e| EngineError::Model(format!("{rel}: {e}")))
        };

        let index = read_json("model_index.json", true)?;
        let recommended: Recommended = match index.get("cabin") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| EngineError::Model(format!("model_index.json `cabin`: {e}")))?,
            None => Recommended::default(),
        };
        let scheduler_json = read_json("scheduler/scheduler_config.json", true)?;
        let scheduler = SchedulerConfig::from_json(&scheduler_json.to_string())?;
        scheduler.alphas_cumprod()?;

        let threads = options.threads.max(1);
        let text_encoder = Net::load(
            &covered("text_encoder/model.onnx")?,
            "text encoder",
            threads,
        )?;
        let unet = Net::load(&covered("unet/model.onnx")?, "unet", threads)?;
        let has_vae = dir.join("vae_decoder/model.onnx").exists();
        let vae_decoder = if has_vae {
            Some(Net::load(
                &covered("vae_decoder/model.onnx")?,
                "vae decoder",
                threads,
            )?)
        } else {
            None
        };
        let vae_encoder = if dir.join("vae_encoder/model.onnx").exists() {
            Some(Net::load(
                &covered("vae_encoder/model.onnx")?,
                "vae encoder",
                threads,
            )?)
        } else {
            None
        };

        let upscaler = if dir.join(upscaler::FOLDER).exists() {
            Some(Upscaler::load(
                &covered(upscaler::WEIGHTS)?,
                &covered(upscaler::CONFIG)?,
                upscaler::CONFIG,
                threads,
            )?)
        } else {
            None
        };

        let seq_len = text_encoder
            .input("input_ids")?
            .dims
            .get(1)
            .copied()
            .flatten()
            .unwrap_or(77);
        covered("tokenizer/tokenizer.json")?;
        if dir.join("tokenizer/tokenizer_config.json").exists() {
            covered("tokenizer/tokenizer_config.json")?;
        }
        let tokenizer = PromptTokenizer::load(&dir.join("tokenizer"), seq_len)?;

        let unet_cfg = read_json("unet/config.json", false)?;
        let vae_cfg = read_json("vae_decoder/config.json", false)?;
        let sample = unet.input("sample")?;
        let latent_channels = unet_cfg["in_channels"]
            .as_u64()
            .map(|c| c as usize)
            .or(sample.dims.get(1).copied().flatten())
            .ok_or_else(|| EngineError::Model("cannot tell the UNet's channel count".into()))?;
        let latent_factor = if has_vae { latent_factor(&vae_cfg)? } else { 1 };
        let sample_size = |axis: usize| -> Option<usize> {
            match &unet_cfg["sample_size"] {
                Value::Number(n) => n.as_u64().map(|n| n as usize),
                Value::Array(a) => a.get(axis - 2).and_then(Value::as_u64).map(|n| n as usize),
                _ => None,
            }
            .or(sample.dims.get(axis).copied().flatten())
        };
        let (lh, lw) = (sample_size(2).unwrap_or(64), sample_size(3).unwrap_or(64));
        let time_cond_dim = unet
            .inputs
            .iter()
            .any(|i| i.name == "timestep_cond")
            .then(|| unet_cfg["time_cond_proj_dim"].as_u64().map(|d| d as usize))
            .flatten();
        let (name, version, licence) = match &manifest {
            Some(m) => (m.name.clone(), m.version.clone(), m.licence.clone()),
            None => (
                dir.display().to_string(),
                "unverified".into(),
                "unknown".into(),
            ),
        };
        Ok(Self {
            info: ModelInfo {
                dir: dir.to_path_buf(),
                name,
                version,
                licence,
                latent_channels,
                latent_factor,
                native_width: lw * latent_factor,
                native_height: lh * latent_factor,
                scaling_factor: vae_cfg["scaling_factor"].as_f64().unwrap_or(if has_vae {
                    0.18215
                } else {
                    1.0
                }),
                recommended,
                time_cond_dim,
                display_scale: upscaler.as_ref().map(Upscaler::scale),
            },
            scheduler,
            tokenizer,
            text_encoder,
            unet,
            vae_decoder,
            vae_encoder,
            upscaler,
            _give_back: heap::GiveBackOnDrop,
        })
    }
}

/// Pixels per latent cell, from `vae_decoder/config.json` (`Null` when there is none).
fn latent_factor(vae_cfg: &Value) -> Result<usize, EngineError> {
    const MAX: u64 = 64;
    if let Some(ratio) = vae_cfg.get("spatial_compression_ratio") {
        return ratio
            .as_u64()
            .filter(|r| (1..=MAX).contains(r))
            .map(|r| r as usize)
            .ok_or_else(|| {
                EngineError::Model(format!(
                    "vae_decoder/config.json: `spatial_compression_ratio` must be an integer in \
                     1..={MAX}, got {ratio}"
                ))
            });
    }
    match vae_cfg["block_out_channels"].as_array() {
        Some(blocks) if !blocks.is_empty() => 1u64
            .checked_shl(blocks.len() as u32 - 1)
            .filter(|f| *f <= MAX)
            .map(|f| f as usize)
            .ok_or_else(|| {
                EngineError::Model(format!(
                    "vae_decoder/config.json: {} `block_out_channels` would shrink the picture \
                     more than {MAX}x",
                    blocks.len()
                ))
            }),
        _ => Ok(8),
    }
}

pub(crate) struct NetInput {
    pub name: String,
    pub datum: DatumType,
    /// Known sizes; `None` for symbolic axes (batch, height, ...).
    pub dims: Vec<Option<usize>>,
}

type Plan = Arc<TypedRunnableModel>;

/// tract settings measured to suit SD-family UNets and VAE decoders (see
/// `onnx/bench/README.md`): tract 0.23's direct spatial convolution, which it picks for 3x3
/// convolutions with up to 64 input channels, ran our decoder 2.7x and the UNet 1.2x slower
/// than im2col + its matrix kernel. A deployer's `TRACT_*` environment wins over this.
fn tuned_knobs() -> Option<tract_onnx::tract_core::knobs::KnobScope> {
    const KNOB: &str = "TRACT_DISABLE_DIRECT_SPATIAL";
    if std::env::var_os(KNOB).is_some() {
        return None;
    }
    tract_onnx::tract_core::knobs::KnobScope::new([(KNOB, "true")]).ok()
}

/// One ONNX network with its plans per input shape.
pub(crate) struct Net {
    stage: &'static str,
    proto: InferenceModel,
    pub inputs: Vec<NetInput>,
    outputs: Vec<String>,
    plans: Mutex<HashMap<Vec<Vec<usize>>, Plan>>,
    /// The thread pool every plan of this net runs on, when capped above one thread.
    pool: Option<tract_linalg::multithread::Executor>,
}

impl Net {
    pub(crate) fn load(
        path: &Path,
        stage: &'static str,
        threads: usize,
    ) -> Result<Self, EngineError> {
        let fail = |e: TractError| EngineError::Model(format!("{}: {e:#}", path.display()));
        if !path.exists() {
            return Err(EngineError::Model(format!("{} is missing", path.display())));
        }
        let proto = tract_onnx::onnx().model_for_path(path).map_err(fail)?;
        let mut inputs = Vec::new();
        for (ix, outlet) in proto.input_outlets().map_err(fail)?.iter().enumerate() {
            let fact = proto.input_fact(ix).map_err(fail)?;
            let datum = fact.datum_type.concretize().unwrap_or(DatumType::F32);
            let dims = fact
                .shape
                .dims()
                .map(|d| d.concretize().and_then(|d| d.to_usize().ok()))
                .collect();
            inputs.push(NetInput {
                name: proto.node(outlet.node).name.clone(),
                datum,
                dims,
            });
        }
        let outputs = proto
            .output_outlets()
            .map_err(fail)?
            .iter()
            .map(|o| {
                proto
                    .outlet_label(*o)
                    .unwrap_or(&proto.node(o.node).name)
                    .to_string()
            })
            .collect();
        Ok(Self {
            stage,
            proto,
            inputs,
            outputs,
            plans: Mutex::new(HashMap::new()),
            pool: (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads)),
        })
    }

    pub fn input(&self, name: &str) -> Result<&NetInput, EngineError> {
        self.inputs
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| EngineError::Model(format!("the {} has no input `{name}`", self.stage)))
    }

    pub fn has_input(&self, name: &str) -> bool {
        self.inputs.iter().any(|i| i.name == name)
    }

    fn error(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Inference {
            stage: self.stage,
            message: e.to_string(),
        }
    }

    fn plan(&self, shapes: &[Vec<usize>]) -> Result<Plan, EngineError> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = plans.get(shapes) {
            return Ok(plan.clone());
        }
        let started = std::time::Instant::now();
        let mut model = self.proto.clone();
        for (ix, (input, shape)) in self.inputs.iter().zip(shapes).enumerate() {
            let fact = InferenceFact::dt_shape(input.datum, shape.as_slice());
            model
                .set_input_fact(ix, fact)
                .map_err(|e| self.error(format!("{e:#}")))?;
        }
        let stage = self.stage;
        let optimise = || -> TractResult<TypedModel> {
            let mut typed = model.into_typed()?.into_decluttered()?;
            let swapped = cabin_tract_ops::swap_in(&mut typed)?;
            tracing::debug!(stage, ?swapped, "cabin's own ops swapped in");
            typed.into_optimized()
        };
        let typed = match tuned_knobs() {
            Some(scope) => scope.enter(optimise),
            None => optimise(),
        }
        .map_err(|e| self.error(format!("{e:#}")))?;
        let plan = match &self.pool {
            Some(pool) => {
                let options = tract_onnx::tract_core::runtime::RunOptions {
                    executor: Some(pool.clone()),
                    ..Default::default()
                };
                typed.into_runnable_with_options(&options)
            }
            None => typed.into_runnable(),
        }
        .map_err(|e| self.error(format!("{e:#}")))?;
        tracing::debug!(stage = self.stage, ?shapes, elapsed = ?started.elapsed(), "optimised");
        plans.insert(shapes.to_vec(), plan.clone());
        Ok(plan)
    }

    /// Runs with `inputs` given by name; returns the outputs by name.
    pub fn run(&self, inputs: Vec<(&str, Tensor)>) -> Result<HashMap<String, Tensor>, EngineError> {
        let mut ordered = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let tensor = inputs
                .iter()
                .find(|(name, _)| *name == spec.name)
                .map(|(_, t)| t)
                .ok_or_else(|| self.error(format!("no value for input `{}`", spec.name)))?;
            let tensor = tensor
                .cast_to_dt(spec.datum)
                .map_err(|e| self.error(e))?
                .into_owned();
            ordered.push(tensor);
        }
        let shapes: Vec<Vec<usize>> = ordered.iter().map(|t| t.shape().to_vec()).collect();
        let plan = self.plan(&shapes)?;
        let stage = self.stage;
        let run = move || -> TractResult<Vec<Tensor>> {
            let inputs = ordered.into_iter().map(|t| t.into_tvalue()).collect();
            let outputs = if op_profile::enabled() {
                op_profile::run(stage, &plan, inputs)
            } else {
                plan.run(inputs)
            }?;
            Ok(outputs.into_iter().map(|v| v.into_tensor()).collect())
        };
        // On a pool the whole plan runs on one of its workers: the steps between parallel ones
        // never wait on a handoff from the calling thread (measured: 0.09 s of system time per
        // picture that way), and the ops' own parallel work stays inside the pool.
        let outputs = match &self.pool {
            Some(tract_linalg::multithread::Executor::MultiThread(pool)) => pool.install(run),
            _ => run(),
        }
        .map_err(|e| self.error(format!("{e:#}")))?;
        Ok(self.outputs.iter().cloned().zip(outputs).collect())
    }

    /// The output called `name`, or the first one.
    pub fn pick(
        outputs: &HashMap<String, Tensor>,
        names: &[&str],
        order: &[String],
    ) -> Option<Tensor> {
        names
            .iter()
            .find_map(|n| outputs.get(*n))
            .or_else(|| order.first().and_then(|n| outputs.get(n)))
            .cloned()
    }

    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }
}

/// Time per tract op kind, summed over every network run while switched on: what the
/// benchmark's `--ops` prints. Off (and free) unless [`op_profile::start`] was called.
pub mod op_profile {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tract_onnx::prelude::*;

    static ON: AtomicBool = AtomicBool::new(false);
    static BY_SHAPE: AtomicBool = AtomicBool::new(false);
    static SPENT: Mutex<Option<HashMap<(&'static str, String), f64>>> = Mutex::new(None);

    /// `by_shape` keys the time by op name and input shapes too.
    pub fn start(by_shape: bool) {
        BY_SHAPE.store(by_shape, Ordering::SeqCst);
        *SPENT.lock().unwrap_or_else(|p| p.into_inner()) = Some(HashMap::new());
        ON.store(true, Ordering::SeqCst);
    }

    /// Milliseconds per (stage, op name), largest first; switches profiling off.
    pub fn take() -> Vec<(&'static str, String, f64)> {
        ON.store(false, Ordering::SeqCst);
        let spent = SPENT.lock().unwrap_or_else(|p| p.into_inner()).take();
        let mut rows: Vec<_> = spent
            .unwrap_or_default()
            .into_iter()
            .map(|((stage, op), ms)| (stage, op, ms))
            .collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        rows
    }

    pub(super) fn enabled() -> bool {
        ON.load(Ordering::Relaxed)
    }

    pub(super) fn run(
        stage: &'static str,
        plan: &super::Plan,
        inputs: TVec<TValue>,
    ) -> TractResult<TVec<TValue>> {
        let mut spent: HashMap<String, f64> = HashMap::new();
        let mut state = plan.spawn()?;
        let outputs = state.run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
            let mut key = node.op().name().to_string();
            if BY_SHAPE.load(Ordering::Relaxed) {
                let ins: Vec<_> = inputs.iter().map(|i| i.shape().to_vec()).collect();
                key = format!("{key} {ins:?}");
                if std::env::var_os("CABIN_OPS_NAMES").is_some() {
                    key = format!("{key} {}", node.name);
                }
            }
            let started = std::time::Instant::now();
            let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
            *spent.entry(key).or_default() += started.elapsed().as_secs_f64() * 1e3;
            out
        })?;
        if let Some(total) = SPENT.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            for (op, ms) in spent {
                *total.entry((stage, op)).or_default() += ms;
            }
        }
        Ok(outputs)
    }
}
