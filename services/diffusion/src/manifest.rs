//! The model folder's `manifest.json`, verified before anything is loaded (`cabin-manifest`).

pub use cabin_manifest::{FILE_NAME, Manifest, ManifestError, sha256_file};

use super::EngineError;

impl From<ManifestError> for EngineError {
    fn from(e: ManifestError) -> Self {
        match e {
            ManifestError::Refused(message) => EngineError::Model(message),
            ManifestError::Io { path, source } => EngineError::Io { path, source },
        }
    }
}
