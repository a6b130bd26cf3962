//! `manifest.json`: what a model folder claims to be, and the sha256 of every file in it.
//!
//! Loading refuses a folder whose files do not match, and refuses to open a file the
//! manifest does not cover, so a half-copied OTA update or a swapped file never runs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Why a model folder was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Missing, unreadable as JSON, unsafe, or not matching the files.
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ManifestError {
    fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

pub const FILE_NAME: &str = "manifest.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub licence: String,
    /// How the model was made: the command, data seed, training time, source.
    pub made_by: String,
    /// Relative path → lowercase hex sha256.
    pub files: BTreeMap<String, String>,
    /// Anything else the maker recorded (data seed, training time, metrics).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Self, ManifestError> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ManifestError::Refused(format!(
                "{} has no {FILE_NAME}; refusing an unverified model",
                dir.display()
            )),
            _ => ManifestError::io(&path, e),
        })?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| ManifestError::Refused(format!("{}: {e}", path.display())))?;
        for rel in manifest.files.keys() {
            if !is_plain_relative(rel) {
                return Err(ManifestError::Refused(format!(
                    "{FILE_NAME} lists an unsafe path `{rel}`"
                )));
            }
        }
        Ok(manifest)
    }

    /// The folder's manifest with every file checked. Without `required`, a folder with no
    /// readable manifest loads unverified (`None`, logged); a manifest that is there but
    /// does not match its files is refused either way.
    pub fn open(dir: &Path, required: bool) -> Result<Option<Self>, ManifestError> {
        match Self::read(dir) {
            Ok(m) => {
                m.verify(dir)?;
                Ok(Some(m))
            }
            Err(e) if required => Err(e),
            Err(e) => {
                if dir.join(FILE_NAME).exists() {
                    tracing::warn!(
                        "{}: {e}; loading the model unverified, as asked",
                        dir.display()
                    );
                } else {
                    tracing::warn!(
                        "{} has no {FILE_NAME}; loading the model unverified, as asked",
                        dir.display()
                    );
                }
                Ok(None)
            }
        }
    }

    /// Checks every listed file's sha256.
    pub fn verify(&self, dir: &Path) -> Result<(), ManifestError> {
        for (rel, expected) in &self.files {
            let actual = sha256_file(&dir.join(rel))?;
            if !actual.eq_ignore_ascii_case(expected) {
                return Err(ManifestError::Refused(format!(
                    "{rel}: sha256 {actual} does not match the manifest's {expected}"
                )));
            }
        }
        Ok(())
    }

    /// Errors unless `rel` is covered.
    pub fn require(&self, rel: &str) -> Result<(), ManifestError> {
        if self.files.contains_key(rel) {
            Ok(())
        } else {
            Err(ManifestError::Refused(format!(
                "{rel} is not covered by {FILE_NAME}"
            )))
        }
    }

    /// A manifest for every regular file under `dir` (except the manifest itself).
    pub fn build(
        dir: &Path,
        name: &str,
        version: &str,
        licence: &str,
        made_by: &str,
    ) -> Result<Self, ManifestError> {
        let mut files = BTreeMap::new();
        collect(dir, dir, &mut files)?;
        Ok(Self {
            name: name.into(),
            version: version.into(),
            licence: licence.into(),
            made_by: made_by.into(),
            files,
            extra: BTreeMap::new(),
        })
    }
}

fn collect(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<String, String>,
) -> Result<(), ManifestError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| ManifestError::io(dir, e))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| ManifestError::io(&path, e))?;
        if kind.is_dir() {
            collect(root, &path, files)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if rel != FILE_NAME {
                files.insert(rel, sha256_file(&path)?);
            }
        }
    }
    Ok(())
}

fn is_plain_relative(rel: &str) -> bool {
    let path = Path::new(rel);
    !rel.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

pub fn sha256_file(path: &Path) -> Result<String, ManifestError> {
    let mut file = std::fs::File::open(path).map_err(|e| ManifestError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ManifestError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_verify_and_detect_tampering() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("unet")).unwrap();
        std::fs::write(dir.path().join("unet/model.onnx"), b"weights").unwrap();
        std::fs::write(dir.path().join("model_index.json"), b"{}").unwrap();
        let m = Manifest::build(dir.path(), "t", "1", "MIT", "test").unwrap();
        assert_eq!(m.files.len(), 2);
        std::fs::write(
            dir.path().join(FILE_NAME),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        let read = Manifest::read(dir.path()).unwrap();
        assert_eq!(read, m);
        read.verify(dir.path()).unwrap();
        read.require("unet/model.onnx").unwrap();
        assert!(read.require("vae_decoder/model.onnx").is_err());

        std::fs::write(dir.path().join("unet/model.onnx"), b"weightz").unwrap();
        let err = read.verify(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("unet/model.onnx") && err.contains("does not match"),
            "{err}"
        );
    }

    #[test]
    fn unsafe_paths_and_missing_manifest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Manifest::read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("unverified")
        );
        std::fs::write(
            dir.path().join(FILE_NAME),
            r#"{"name":"x","version":"1","licence":"MIT","made_by":"x","files":{"../etc/passwd":"00"}}"#,
        )
        .unwrap();
        assert!(
            Manifest::read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("unsafe")
        );
    }

    #[test]
    fn an_unverified_model_loads_only_when_allowed_and_never_with_a_wrong_manifest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model_index.json"), b"{}").unwrap();
        assert!(Manifest::open(dir.path(), true).is_err());
        assert_eq!(Manifest::open(dir.path(), false).unwrap(), None);
        let m = Manifest::build(dir.path(), "t", "1", "MIT", "test").unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            serde_json::to_string(&m).unwrap(),
        )
        .unwrap();
        assert_eq!(Manifest::open(dir.path(), false).unwrap(), Some(m));
        std::fs::write(dir.path().join("model_index.json"), b"{ }").unwrap();
        assert!(
            Manifest::open(dir.path(), false).is_err(),
            "a wrong manifest is refused either way"
        );
    }
}
