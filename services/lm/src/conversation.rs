//! Generation with a KV cache that outlives a reply.
//!
//! A chat's next prompt repeats the previous one and adds a turn, so the cache keeps the
//! tokens it has seen; a new prompt reuses the longest common prefix and runs only the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tract_onnx::prelude::*;

use crate::{LmError, LmModel, Sampler, Sampling};

/// Prompt tokens run per graph call: bounds the attention matrix (`S x (P+S)`) of a long prompt.
const PREFILL_CHUNK: usize = 128;

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_new_tokens: usize,
    /// Give up (with what was produced) when this passes.
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            deadline: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model emitted a stop token.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub text: String,
    pub tokens: Vec<u32>,
    pub finish: FinishReason,
    pub prompt_tokens: usize,
    /// Prompt tokens served from the cache instead of being run again.
    pub reused_tokens: usize,
    pub time_to_first_token: Duration,
    pub elapsed: Duration,
}

pub struct Conversation {
    model: Arc<LmModel>,
    /// Tokens whose keys and values are in `cache`, in order.
    seen: Vec<u32>,
    cache: Vec<TValue>,
}

impl Conversation {
    pub fn new(model: Arc<LmModel>) -> Self {
        let cache = model.empty_cache();
        Self {
            model,
            seen: Vec::new(),
            cache,
        }
    }

    pub fn model(&self) -> &Arc<LmModel> {
        &self.model
    }

    /// Tokens currently cached.
    pub fn cached(&self) -> usize {
        self.seen.len()
    }

    pub fn clear(&mut self) {
        self.seen.clear();
        self.cache = self.model.empty_cache();
    }

    /// Continues `prompt` (a full rendered prompt) and streams the reply's text through
    /// `on_text` as it becomes valid UTF-8. Checks `cancel` and the deadline between tokens.
    pub fn complete(
        &mut self,
        prompt: &str,
        sampling: &Sampling,
        limits: &Limits,
        on_text: &mut dyn FnMut(&str),
        cancel: &AtomicBool,
    ) -> Result<Completion, LmError> {
        let started = Instant::now();
        let mut sampler = Sampler::new(sampling.clone())?;
        if prompt.trim().is_empty() {
            return Err(LmError::InvalidArgument("the prompt is empty".into()));
        }
        let ids = self.model.encode(prompt)?;
        let context = self.model.context();
        if ids.len() + limits.max_new_tokens > context {
            return Err(LmError::ContextFull {
                prompt: ids.len(),
                reply: limits.max_new_tokens,
                context,
            });
        }
        let reused = self.rewind_to_common_prefix(&ids);
        let mut logits = self.prefill(&ids[reused..], cancel)?;
        let time_to_first_token = started.elapsed();

        let stops = self.model.config().stop_token_ids.clone();
        let mut produced: Vec<u32> = Vec::new();
        let mut emitted = 0usize;
        let mut history = ids.clone();
        let finish = loop {
            if produced.len() >= limits.max_new_tokens {
                break FinishReason::Length;
            }
            let next = sampler.pick(&logits, &history);
            if stops.contains(&next) {
                break FinishReason::Stop;
            }
            produced.push(next);
            history.push(next);
            let text = self.model.decode(&produced)?;
            // A character split across tokens decodes to U+FFFD until its last byte arrives.
            if !text.ends_with('\u{FFFD}')
                && text.len() > emitted
                && let Some(piece) = text.get(emitted..)
            {
                on_text(piece);
                emitted = text.len();
            }
            if cancel.load(Ordering::SeqCst) {
                return Err(LmError::Cancelled {
                    tokens: produced.len(),
                });
            }
            if limits.deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(LmError::DeadlinePassed {
                    tokens: produced.len(),
                });
            }
            if produced.len() < limits.max_new_tokens {
                logits = self.run(&[next])?;
            }
        };
        let text = self.model.decode(&produced)?;
        // What a cut-off character left undecoded still belongs to the stream.
        if let Some(rest) = text.get(emitted..).filter(|r| !r.is_empty()) {
            on_text(rest);
        }
        Ok(Completion {
            text,
            tokens: produced,
            finish,
            prompt_tokens: ids.len(),
            reused_tokens: reused,
            time_to_first_token,
            elapsed: started.elapsed(),
        })
    }

    /// Drops cached tokens past the common prefix with `ids`, keeping at least one prompt
    /// token to run (its logits start the reply). Returns the tokens kept.
    fn rewind_to_common_prefix(&mut self, ids: &[u32]) -> usize {
        let common = self
            .seen
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len().saturating_sub(1));
        if common == 0 {
            self.clear();
        } else if common < self.seen.len() {
            let kept: Option<Vec<TValue>> = self
                .cache
                .iter()
                .map(|t| t.slice(2, 0, common).ok().map(|t| t.into_tvalue()))
                .collect();
            match kept {
                Some(kept) => {
                    self.cache = kept;
                    self.seen.truncate(common);
                }
                None => {
                    self.clear();
                    return 0;
                }
            }
        }
        self.seen.len()
    }

    fn prefill(&mut self, ids: &[u32], cancel: &AtomicBool) -> Result<Vec<f32>, LmError> {
        let mut logits = Vec::new();
        for chunk in ids.chunks(PREFILL_CHUNK) {
            if cancel.load(Ordering::SeqCst) {
                return Err(LmError::Cancelled { tokens: 0 });
            }
            logits = self.run(chunk)?;
        }
        Ok(logits)
    }

    fn run(&mut self, ids: &[u32]) -> Result<Vec<f32>, LmError> {
        let past = std::mem::take(&mut self.cache);
        match self.model.forward(ids, self.seen.len(), past) {
            Ok(step) => {
                self.cache = step.present;
                self.seen.extend_from_slice(ids);
                Ok(step.logits)
            }
            Err(e) => {
                // The cache went into the failed run: start the next prompt from nothing.
                self.clear();
                Err(e)
            }
        }
    }
}
