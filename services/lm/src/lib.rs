//! On-device causal language model for the companion, run by tract.
//!
//! A model folder (made by `onnx/lm/build_lm.py` from a GGUF, e.g. SmolLM2-135M-Instruct)
//! holds `config.json`, `tokenizer.json`, `model.onnx` and `manifest.json`. Loading
//! verifies the manifest, then optimises one tract plan with symbolic sequence (`S`) and
//! past (`P`) lengths that serves both prefill and decode.
//!
//! - [`LmModel`]: the loaded network and tokenizer; shareable, stateless.
//! - [`Conversation`]: a KV cache that keeps the longest common prefix between turns, so a
//!   chat pays only for its new tokens.
//! - [`chat`]: ChatML prompts, with special tokens stripped from what users write.
//! - [`Sampling`]: temperature, top-k, top-p, repetition penalty, a seeded RNG.
//!
//! Architecture invariant: no D-Bus, no async runtime, no network; everything blocks the
//! calling thread and checks a cancel flag and a deadline between tokens.

pub mod chat;
mod config;
mod conversation;
mod error;
mod model;
mod sampler;

pub use chat::{Message, Role};
pub use config::LmConfig;
pub use conversation::{Completion, Conversation, FinishReason, Limits};
pub use error::LmError;
pub use model::{LmModel, LoadOptions, OpTime, Step, StepProfile};
pub use sampler::{Sampler, Sampling};
