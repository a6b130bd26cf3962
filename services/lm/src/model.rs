//! A model folder loaded for tract: one plan with symbolic `S` (new tokens) and `P` (cached
//! tokens), so prefill and every decode step share the optimisation paid once at load.
//!
//! ```text
//! manifest.json  config.json  tokenizer.json  model.onnx  [model.onnx.data]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cabin_manifest::Manifest;
use tokenizers::Tokenizer;
use tract_onnx::prelude::*;

use crate::LmError;
use crate::config::LmConfig;

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Refuse a folder without a valid `manifest.json` (off only for a fresh developer export).
    pub require_manifest: bool,
    /// Threads tract may use for matrix products (1 = the calling thread only).
    pub threads: usize,
    /// The context the engine allows, capped by the model's own.
    pub max_context: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            require_manifest: true,
            threads: 1,
            max_context: 2048,
        }
    }
}

type Plan = Arc<TypedRunnableModel>;

/// Where `build_lm.py` puts a real model's weights (ONNX external data).
const WEIGHTS_FILE: &str = "model.onnx.data";

/// What one run of the graph gives back.
pub struct Step {
    /// The next-token logits after the last input token.
    pub logits: Vec<f32>,
    /// Keys and values of every layer for all tokens so far (`[1, KV, P+S, D]` each).
    pub present: Vec<TValue>,
}

/// A loaded model: network, tokenizer and configuration. Shareable; holds no conversation.
pub struct LmModel {
    dir: PathBuf,
    config: LmConfig,
    version: String,
    tokenizer: Tokenizer,
    specials: Vec<String>,
    /// `S` and `P` symbolic: one plan (one packed copy of the weights) for prompt chunks
    /// and decode steps. A second plan fixed at `S` = 1 decoded ~10% faster for twice the
    /// memory.
    plan: Plan,
    context: usize,
}

impl std::fmt::Debug for LmModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmModel")
            .field("dir", &self.dir)
            .field("version", &self.version)
            .field("context", &self.context)
            .finish_non_exhaustive()
    }
}

impl LmModel {
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Self, LmError> {
        if !dir.is_dir() {
            return Err(LmError::Model(format!(
                "{} is not a model folder",
                dir.display()
            )));
        }
        let manifest = Manifest::open(dir, options.require_manifest)?;
        let covered = |rel: &str| -> Result<PathBuf, LmError> {
            if let Some(m) = &manifest {
                m.require(rel)?;
            }
            let path = dir.join(rel);
            if !path.is_file() {
                return Err(LmError::Model(format!("{} is missing", path.display())));
            }
            Ok(path)
        };
        let config_path = covered("config.json")?;
        let text = std::fs::read_to_string(&config_path).map_err(|source| LmError::Io {
            path: config_path.clone(),
            source,
        })?;
        let config = LmConfig::parse(&text)?;
        let tokenizer_path = covered("tokenizer.json")?;
        let tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| LmError::Model(format!("{}: {e}", tokenizer_path.display())))?;
        if tokenizer.get_vocab_size(true) > config.vocab_size {
            return Err(LmError::Model(format!(
                "tokenizer.json has {} tokens, the model only {}",
                tokenizer.get_vocab_size(true),
                config.vocab_size
            )));
        }
        let specials = tokenizer
            .get_added_tokens_decoder()
            .values()
            .filter(|t| t.special)
            .map(|t| t.content.clone())
            .collect();
        let started = std::time::Instant::now();
        let onnx_path = covered("model.onnx")?;
        // The graph's weights, when they are kept beside it, are read from this file: it must
        // be covered by the manifest like the graph.
        if dir.join(WEIGHTS_FILE).exists() {
            covered(WEIGHTS_FILE)?;
        }
        let proto = parse(&onnx_path, &config)?;
        let threads = options.threads.max(1);
        let plan = optimise(&onnx_path, proto, &config, threads)?;
        tracing::info!(dir = %dir.display(), elapsed = ?started.elapsed(), "language model loaded");
        let context = options
            .max_context
            .clamp(16, config.trained_context.max(16));
        Ok(Self {
            dir: dir.to_path_buf(),
            version: manifest.map(|m| m.version).unwrap_or_default(),
            config,
            tokenizer,
            specials,
            plan,
            context,
        })
    }

    pub fn config(&self) -> &LmConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest's version ("" for an unverified folder).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Tokens a prompt and its reply may take together.
    pub fn context(&self) -> usize {
        self.context
    }

    /// The tokenizer's special tokens (`<|im_start|>` ...), which user text must never carry.
    pub fn specials(&self) -> &[String] {
        &self.specials
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LmError> {
        self.tokenizer
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| LmError::InvalidArgument(format!("cannot tokenize: {e}")))
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String, LmError> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| LmError::Inference(format!("cannot detokenize: {e}")))
    }

    /// Empty caches, one key and one value per layer.
    pub fn empty_cache(&self) -> Vec<TValue> {
        let shape = [1, self.config.kv_heads, 0, self.config.head_dim];
        (0..2 * self.config.layers)
            .map(|_| {
                Tensor::zero::<f32>(&shape)
                    .expect("an empty tensor")
                    .into_tvalue()
            })
            .collect()
    }

    /// Runs `ids` at positions `start..` on top of `past` (which must hold `start` tokens).
    pub fn forward(&self, ids: &[u32], start: usize, past: Vec<TValue>) -> Result<Step, LmError> {
        let inputs = self.inputs(ids, start, past)?;
        let mut outputs = self
            .plan
            .run(inputs)
            .map_err(|e| LmError::Inference(format!("{e:#}")))?;
        self.step(&mut outputs)
    }

    /// As [`forward`](Self::forward), timing every node: per op kind, the milliseconds and the
    /// number of nodes, largest first, and the milliseconds the whole step took (the benchmark
    /// prints where a decode step goes, and what tract spends between the nodes).
    pub fn profile(
        &self,
        ids: &[u32],
        start: usize,
        past: Vec<TValue>,
    ) -> Result<(Step, StepProfile), LmError> {
        let err = |e: TractError| LmError::Inference(format!("{e:#}"));
        let inputs = self.inputs(ids, start, past)?;
        let mut state = self.plan.spawn().map_err(err)?;
        let mut spent: std::collections::HashMap<String, (f64, usize)> = Default::default();
        let started = std::time::Instant::now();
        let mut outputs = state
            .run_plan_with_eval(inputs, |ctx, op_state, node, inputs| {
                let started = std::time::Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                let ms = started.elapsed().as_secs_f64() * 1e3;
                let kind = spent.entry(node.op().name().to_string()).or_default();
                kind.0 += ms;
                kind.1 += 1;
                out
            })
            .map_err(err)?;
        let step_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut ops: Vec<OpTime> = spent
            .into_iter()
            .map(|(op, (ms, nodes))| OpTime { op, ms, nodes })
            .collect();
        ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok((self.step(&mut outputs)?, StepProfile { ops, step_ms }))
    }

    fn inputs(
        &self,
        ids: &[u32],
        start: usize,
        past: Vec<TValue>,
    ) -> Result<TVec<TValue>, LmError> {
        let s = ids.len();
        let t = start + s;
        if s == 0 {
            return Err(LmError::InvalidArgument("no tokens to run".into()));
        }
        if past.len() != 2 * self.config.layers {
            return Err(LmError::Inference(format!(
                "{} cache tensors for {} layers",
                past.len(),
                self.config.layers
            )));
        }
        if let Some(bad) = ids
            .iter()
            .find(|&&id| id as usize >= self.config.vocab_size)
        {
            return Err(LmError::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary"
            )));
        }
        let tokens: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let positions: Vec<i64> = (start as i64..t as i64).collect();
        let mut bias = vec![0f32; s * t];
        for row in 0..s {
            for col in start + row + 1..t {
                bias[row * t + col] = f32::NEG_INFINITY;
            }
        }
        let err = |e: TractError| LmError::Inference(format!("{e:#}"));
        let mut inputs: TVec<TValue> = tvec![
            Tensor::from_shape(&[1, s], &tokens)
                .map_err(err)?
                .into_tvalue(),
            Tensor::from_shape(&[1, s], &positions)
                .map_err(err)?
                .into_tvalue(),
            Tensor::from_shape(&[1, 1, s, t], &bias)
                .map_err(err)?
                .into_tvalue(),
        ];
        inputs.extend(past);
        Ok(inputs)
    }

    fn step(&self, outputs: &mut TVec<TValue>) -> Result<Step, LmError> {
        let err = |e: TractError| LmError::Inference(format!("{e:#}"));
        if outputs.len() != 1 + 2 * self.config.layers {
            return Err(LmError::Inference(format!(
                "the graph gave {} outputs",
                outputs.len()
            )));
        }
        let present: Vec<TValue> = outputs.drain(1..).collect();
        let logits = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(err)?
            .iter()
            .copied()
            .collect::<Vec<f32>>();
        if logits.len() != self.config.vocab_size {
            return Err(LmError::Inference(format!(
                "{} logits for a vocabulary of {}",
                logits.len(),
                self.config.vocab_size
            )));
        }
        Ok(Step { logits, present })
    }
}

/// Parses the graph and checks its interface.
fn parse(path: &Path, config: &LmConfig) -> Result<InferenceModel, LmError> {
    let fail = |e: TractError| LmError::Model(format!("{}: {e:#}", path.display()));
    // cabin's parser: tract's, plus the 8-bit block-quant ops (`build_lm.py --quant q8_0`)
    let model = cabin_tract_ops::onnx().model_for_path(path).map_err(fail)?;
    let mut expected = vec![
        "input_ids".to_string(),
        "position_ids".into(),
        "attention_bias".into(),
    ];
    for layer in 0..config.layers {
        expected.push(format!("past_key_values.{layer}.key"));
        expected.push(format!("past_key_values.{layer}.value"));
    }
    let names: Vec<String> = model
        .input_outlets()
        .map_err(fail)?
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    if names != expected {
        return Err(LmError::Model(format!(
            "{}: inputs {names:?} are not the cabin-lm interface (input_ids, position_ids, attention_bias, past_key_values.N.key/value for {} layers)",
            path.display(),
            config.layers
        )));
    }
    Ok(model)
}

/// Where one step of the plan went (see [`LmModel::profile`]).
#[derive(Debug, Clone)]
pub struct StepProfile {
    /// Per op kind, largest first.
    pub ops: Vec<OpTime>,
    /// The whole step, the time between the nodes included.
    pub step_ms: f64,
}

/// The nodes of one op kind in a profiled step.
#[derive(Debug, Clone)]
pub struct OpTime {
    pub op: String,
    pub ms: f64,
    pub nodes: usize,
}

/// The plan, with `S` and `P` symbolic.
fn optimise(
    path: &Path,
    mut model: InferenceModel,
    config: &LmConfig,
    threads: usize,
) -> Result<Plan, LmError> {
    let fail = |e: TractError| LmError::Model(format!("{}: {e:#}", path.display()));
    let s: TDim = model.symbols.sym("S").into();
    let p = model.symbols.sym("P");
    let one = TDim::from(1);
    let total = TDim::from(p.clone()) + s.clone();
    let ids = InferenceFact::dt_shape(i64::datum_type(), tvec![one.clone(), s.clone()]);
    model.set_input_fact(0, ids.clone()).map_err(fail)?;
    model.set_input_fact(1, ids).map_err(fail)?;
    model
        .set_input_fact(
            2,
            InferenceFact::dt_shape(f32::datum_type(), tvec![one.clone(), one.clone(), s, total]),
        )
        .map_err(fail)?;
    let cache = InferenceFact::dt_shape(
        f32::datum_type(),
        tvec![
            one,
            config.kv_heads.to_dim(),
            p.into(),
            config.head_dim.to_dim()
        ],
    );
    for ix in 3..3 + 2 * config.layers {
        model.set_input_fact(ix, cache.clone()).map_err(fail)?;
    }
    // The file's output shapes name a third symbol; let tract derive them from the inputs.
    for ix in 0..model.output_outlets().map_err(fail)?.len() {
        model
            .set_output_fact(ix, InferenceFact::default())
            .map_err(fail)?;
    }
    let mut typed = model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(fail)?;
    // 4-bit weights: tract widens every panel to f32 on every call; cabin's op reads the
    // blocks as they lie. Attention: tract packs the cache for two products per head and
    // step. Only where cabin's fast kernels run (see cabin_tract_ops::swap_in).
    if cabin_tract_ops::worth_swapping() {
        use cabin_tract_ops::{Op, swap_in_only};
        let products = swap_in_only(&mut typed, Op::BlockQ4Linear).map_err(fail)?;
        let attention = swap_in_only(&mut typed, Op::MaskedAttention).map_err(fail)?;
        tracing::debug!(products, attention, "cabin's ops swapped in");
    }
    let typed = typed.into_optimized().map_err(fail)?;
    let plan = if threads > 1 {
        let options = tract_onnx::tract_core::runtime::RunOptions {
            executor: Some(tract_linalg::multithread::Executor::multithread(threads)),
            ..Default::default()
        };
        typed.into_runnable_with_options(&options)
    } else {
        typed.into_runnable()
    }
    .map_err(fail)?;
    Ok(plan)
}
