//! cabin-diffusion: the text-to-image engine, a diffusers-layout ONNX model run by tract.
//!
//! `model` loads and verifies a model folder, `tokenizer` turns prompts into ids,
//! `scheduler` holds the samplers, `pipeline` runs prompt → image, `upscaler` is the model's
//! optional learned display stage (run by `pipeline` after the decoder), `display` fits the
//! image to a screen. cabin's own tract ops (`cabin-tract-ops`) are swapped into every plan
//! where they run faster on this CPU.
//!
//! Architecture invariant: nothing here knows about D-Bus, the clock, the sun or the service
//! that uses it; no `unsafe` SIMD of its own (that is `cabin-tract-ops`' job).

pub mod display;
pub mod manifest;
pub mod model;
mod net;
pub mod pipeline;
pub mod rng;
pub mod scheduler;
pub mod tokenizer;
pub mod upscaler;

use std::path::PathBuf;

/// Holds every cabin kernel to its portable code in models loaded from now on, as
/// `CABIN_SIMD=portable` does: what a CPU without AVX2 or AVX-512 runs, tested and measured on
/// one that has them.
pub fn use_portable_kernels() {
    cabin_tract_ops::use_portable_kernels();
}

/// The CPU, its vector extensions and which ops plans get on it: what every benchmark figure
/// is reported with.
pub fn machine() -> String {
    cabin_tract_ops::machine()
}

/// What can go wrong turning a prompt into a picture.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is bad (prompt, steps, size, ...): the caller can fix it.
    #[error("{0}")]
    InvalidArgument(String),
    /// The model folder is missing, damaged, unverified or of a kind we cannot run.
    #[error("model: {0}")]
    Model(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Inference failed inside tract.
    #[error("inference in {stage}: {message}")]
    Inference {
        stage: &'static str,
        message: String,
    },
    /// The caller cancelled the generation.
    #[error("cancelled at step {step} of {total}")]
    Cancelled { step: usize, total: usize },
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
