//! `cabin-manifest verify` as an OTA hook runs it: on the shipped model folders, on a slot
//! holding several, and on a damaged copy.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../onnx/fixtures")
        .join(name)
}

fn verify(paths: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cabin-manifest"))
        .arg("verify")
        .args(paths)
        .output()
        .expect("cabin-manifest runs")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn a_slot_of_intact_models_is_verified_one_line_each() {
    let slot = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-lm-q4"), &slot.path().join("smollm2"));
    copy_dir(&fixture("tiny-sd"), &slot.path().join("wallpaper"));
    let out = verify(&[slot.path()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("ok tiny-llama-random 1.0.0 "),
        "{stdout}"
    );
}

#[test]
fn one_changed_byte_refuses_the_slot_and_names_the_file() {
    let slot = tempfile::tempdir().unwrap();
    let lm = slot.path().join("smollm2");
    copy_dir(&fixture("tiny-lm-q4"), &lm);
    copy_dir(&fixture("tiny-sd"), &slot.path().join("wallpaper"));
    let model = lm.join("model.onnx");
    let mut bytes = std::fs::read(&model).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&model, bytes).unwrap();

    let out = verify(&[slot.path()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("model.onnx: sha256"), "{stderr}");
    assert!(stderr.contains("1 refused, 1 verified"), "{stderr}");
}

#[test]
fn a_folder_without_a_manifest_or_models_is_refused() {
    let empty = tempfile::tempdir().unwrap();
    let out = verify(&[empty.path()]);
    assert_eq!(out.status.code(), Some(1));
    let stray = tempfile::tempdir().unwrap();
    std::fs::create_dir(stray.path().join("not-a-model")).unwrap();
    let out = verify(&[stray.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no manifest.json"));
    let usage = Command::new(env!("CARGO_BIN_EXE_cabin-manifest"))
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}
