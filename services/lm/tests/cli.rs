//! `cabin-lm` as an operator runs it, on the tiny fixtures in float32 and 4-bit form.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../onnx/fixtures/{name}"))
}

fn cabin_lm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cabin-lm"))
        .args(args)
        .output()
        .expect("cabin-lm runs")
}

#[test]
fn generate_streams_a_reply_and_reports_its_speed() {
    for name in ["tiny-lm", "tiny-lm-q4", "tiny-lm-q8"] {
        let dir = fixture(name);
        let out = cabin_lm(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt",
            "hello 你好",
            "--max-tokens",
            "8",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {stderr}");
        assert!(!out.stdout.is_empty(), "{name}: no reply on stdout");
        assert!(
            stderr.contains("time to first token") && stderr.contains("tokens/s"),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn info_tells_the_quantisation_and_the_memory_it_needs() {
    let report = |name: &str| -> serde_json::Value {
        let out = cabin_lm(&["info", fixture(name).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (float, quant) = (report("tiny-lm"), report("tiny-lm-q4"));
    assert_eq!(float["quantisation"], "f32");
    assert_eq!(quant["quantisation"], "q4_1");
    assert_eq!(quant["manifest"], "verified");
    assert_eq!(report("tiny-lm-q8")["quantisation"], "q8_0");
    let weights = |r: &serde_json::Value| r["memory_estimate"]["weights_bytes"].as_f64().unwrap();
    // 18 bytes per 32 weights against 4 bytes per weight
    assert!(
        weights(&quant) < weights(&float) / 5.0,
        "{quant} vs {float}"
    );
    assert!(quant["files_bytes"].as_f64().unwrap() < float["files_bytes"].as_f64().unwrap() / 4.0);
}

#[test]
fn a_folder_that_is_not_a_model_is_refused_by_name() {
    let empty = tempfile::tempdir().unwrap();
    for args in [
        vec!["info", empty.path().to_str().unwrap()],
        vec![
            "generate",
            "--model",
            empty.path().to_str().unwrap(),
            "--prompt",
            "hi",
        ],
    ] {
        let out = cabin_lm(&args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("manifest.json"), "{stderr}");
    }
}
