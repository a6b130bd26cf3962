//! One ONNX network on tract, as every stage of a model folder runs it: parsed once, a plan
//! optimised per concrete input shape on first use and cached, on its own thread pool; the
//! allocator policy while a model is loaded; and the per-op profile the benchmark prints.
//! `super::model` (the folder) and `super::upscaler` (the display stage) both build on it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

use super::EngineError;

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

    pub(crate) struct GiveBackOnDrop;

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
        // picture that way), and the ops' own parallel work stays inside the pool, the other
        // workers spinning for it rather than asleep.
        let outputs = match &self.pool {
            Some(tract_linalg::multithread::Executor::MultiThread(pool)) => {
                cabin_tract_ops::install_hot(pool, run)
            }
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
