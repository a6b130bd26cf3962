//! `cabin-manifest verify PATH...`: checks model folders against their manifests, for an
//! OTA hook that must refuse a damaged model before the head unit switches to it.
//!
//! A PATH with a `manifest.json` is one model folder; any other folder is a set of them (a
//! models slot), each subfolder verified and one without a manifest refused. Prints one line
//! per model to stdout; exits 1 if any is refused (the reasons on stderr), 2 on bad usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cabin_manifest::{FILE_NAME, Manifest, ManifestError};

const USAGE: &str = "usage: cabin-manifest verify PATH...  (a model folder, or a folder of them)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((command, paths)) if command == "verify" && !paths.is_empty() => verify_all(paths),
        Some((flag, _)) if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some((flag, _)) if flag == "--version" => {
            println!("cabin-manifest {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn verify_all(paths: &[String]) -> ExitCode {
    let mut refused = 0;
    let mut verified = 0;
    for path in paths {
        let folders = match model_folders(Path::new(path)) {
            Ok(folders) => folders,
            Err(e) => {
                eprintln!("cabin-manifest: {path}: {e}");
                refused += 1;
                continue;
            }
        };
        for folder in folders {
            match Manifest::read(&folder).and_then(|m| m.verify(&folder).map(|()| m)) {
                Ok(m) => {
                    verified += 1;
                    println!(
                        "ok {} {} {} ({} files)",
                        m.name,
                        m.version,
                        folder.display(),
                        m.files.len()
                    );
                }
                Err(e) => {
                    refused += 1;
                    eprintln!("cabin-manifest: {}: refused: {e}", folder.display());
                }
            }
        }
    }
    if refused > 0 {
        eprintln!("cabin-manifest: {refused} refused, {verified} verified");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `path` itself when it is a model folder, else its subfolders (sorted); none is an error,
/// since an empty models slot must not be switched to.
fn model_folders(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let io = |e| ManifestError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    if path.join(FILE_NAME).exists() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut folders = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_dir() {
            folders.push(entry.path());
        }
    }
    folders.sort();
    if folders.is_empty() {
        return Err(ManifestError::Refused(
            "neither a model folder (no manifest.json) nor a folder of them".into(),
        ));
    }
    Ok(folders)
}
