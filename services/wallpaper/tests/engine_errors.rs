//! Bad requests and damaged model folders give a clear, typed error and never a panic.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use cabin_wallpaper::Engine;
use cabin_wallpaper::engine::EngineError;
use cabin_wallpaper::engine::model::{LoadOptions, Model};
use cabin_wallpaper::engine::pipeline::Request;

mod common;
use common::copy_dir;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-sd")
}

/// A writable copy of the fixture, to damage.
fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    dir
}

fn request(prompt: &str) -> Request {
    Request {
        prompt: prompt.into(),
        steps: Some(2),
        guidance: Some(1.0),
        ..Request::default()
    }
}

fn run(engine: &Engine, req: &Request) -> Result<(), EngineError> {
    engine
        .generate(req, &AtomicBool::new(false), &mut |_| {})
        .map(|_| ())
}

#[test]
fn bad_requests_are_invalid_arguments_naming_the_problem() {
    let engine = Engine::new(fixture(), LoadOptions::default());
    let long = "snow ".repeat(2000);
    let cases: Vec<(Request, &str)> = vec![
        (request(""), "prompt is empty"),
        (request("   "), "prompt is empty"),
        (request(&long), "prompt is too long"),
        (request("a\u{0}b"), "control character"),
        (
            Request {
                steps: Some(0),
                ..request("sea")
            },
            "steps",
        ),
        (
            Request {
                steps: Some(1_000_000),
                ..request("sea")
            },
            "steps",
        ),
        (
            Request {
                guidance: Some(f64::NAN),
                ..request("sea")
            },
            "guidance",
        ),
        (
            Request {
                size: Some((0, 32)),
                ..request("sea")
            },
            "width",
        ),
        (
            Request {
                size: Some((100_000, 32)),
                ..request("sea")
            },
            "width",
        ),
        (
            Request {
                size: Some((32, 33)),
                ..request("sea")
            },
            "height",
        ),
        (
            Request {
                scheduler: Some("plms".into()),
                ..request("sea")
            },
            "unknown scheduler",
        ),
        (
            Request {
                init: Some((image::RgbImage::new(8, 8), 0.0)),
                ..request("sea")
            },
            "strength",
        ),
        (
            Request {
                init: Some((image::RgbImage::new(8, 8), 1.5)),
                ..request("sea")
            },
            "strength",
        ),
    ];
    for (req, needle) in cases {
        match run(&engine, &req) {
            Err(EngineError::InvalidArgument(msg)) => {
                assert!(msg.contains(needle), "{needle}: {msg}")
            }
            other => panic!("{needle}: expected InvalidArgument, got {other:?}"),
        }
    }
    // After all that, the engine still works.
    run(&engine, &request("sea sunset")).unwrap();
}

fn load_err(dir: &Path) -> String {
    match Model::load(dir, &LoadOptions::default()) {
        Err(EngineError::Model(msg)) => msg,
        Err(other) => other.to_string(),
        Ok(_) => panic!("a damaged model loaded"),
    }
}

#[test]
fn a_missing_folder_or_file_is_named() {
    assert!(load_err(Path::new("/nonexistent/model")).contains("/nonexistent/model"));
    let dir = copy_fixture();
    std::fs::remove_file(dir.path().join("unet/model.onnx")).unwrap();
    assert!(load_err(dir.path()).contains("unet/model.onnx"));
}

#[test]
fn a_truncated_onnx_file_fails_the_manifest_check() {
    let dir = copy_fixture();
    let path = dir.path().join("unet/model.onnx");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_err(dir.path());
    assert!(
        msg.contains("unet/model.onnx") && msg.contains("sha256"),
        "{msg}"
    );

    // Without the manifest check, tract's parser still refuses it with the file's name.
    let unverified = LoadOptions {
        require_manifest: false,
        ..LoadOptions::default()
    };
    match Model::load(dir.path(), &unverified) {
        Err(EngineError::Model(msg)) => assert!(msg.contains("unet/model.onnx"), "{msg}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a truncated ONNX loaded"),
    }
}

#[test]
fn a_changed_byte_or_a_missing_manifest_is_refused() {
    let dir = copy_fixture();
    let path = dir.path().join("scheduler/scheduler_config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("0.012", "0.013");
    std::fs::write(&path, text).unwrap();
    assert!(load_err(dir.path()).contains("does not match"));

    let dir = copy_fixture();
    std::fs::remove_file(dir.path().join("manifest.json")).unwrap();
    assert!(load_err(dir.path()).contains("unverified"));
}
