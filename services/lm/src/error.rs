use std::path::PathBuf;

/// Everything that can go wrong, each with what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    /// The request is bad (empty prompt, sampling values out of range): the caller can fix it.
    #[error("{0}")]
    InvalidArgument(String),
    /// The prompt and the reply would not fit the context window.
    #[error(
        "the prompt has {prompt} tokens; with {reply} for the reply that exceeds the context of {context}"
    )]
    ContextFull {
        prompt: usize,
        reply: usize,
        context: usize,
    },
    /// The model folder is missing, damaged, unverified or of a kind we cannot run.
    #[error("model: {0}")]
    Model(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// tract failed while running the graph.
    #[error("inference: {0}")]
    Inference(String),
    #[error("cancelled after {tokens} tokens")]
    Cancelled { tokens: usize },
    #[error("deadline passed after {tokens} tokens")]
    DeadlinePassed { tokens: usize },
}

impl From<cabin_manifest::ManifestError> for LmError {
    fn from(e: cabin_manifest::ManifestError) -> Self {
        match e {
            cabin_manifest::ManifestError::Refused(m) => LmError::Model(m),
            cabin_manifest::ManifestError::Io { path, source } => LmError::Io { path, source },
        }
    }
}
