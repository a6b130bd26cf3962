//! The display stage on real files: the tiny Stable-Diffusion fixture with the tiny upscaler
//! fixture as its `upscaler/` (onnx/fixtures/make_tiny_upscaler.py), generating, img2img from
//! an upscaled picture, the manifest covering the new files, and damaged configs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use cabin_wallpaper::Engine;
use cabin_wallpaper::engine::EngineError;
use cabin_wallpaper::engine::display::{self, Fit};
use cabin_wallpaper::engine::manifest::{self, Manifest};
use cabin_wallpaper::engine::model::{LoadOptions, Model};
use cabin_wallpaper::engine::pipeline::{Generated, Request};

mod common;
use common::copy_dir;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures")
}

/// Which `manifest.json` a test folder gets.
enum Listing {
    /// tiny-sd's own, which does not list the upscaler.
    Fixture,
    /// One written over the whole folder by the crate's manifest writer.
    Rebuilt,
    /// None: for tests that are not about manifests (loaded unverified).
    Removed,
}

/// tiny-sd with tiny-upscaler as its `upscaler/`.
fn model_with_upscaler(listing: Listing) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("tiny-sd"), dir.path());
    let upscaler = dir.path().join("upscaler");
    std::fs::create_dir(&upscaler).unwrap();
    for file in ["model.onnx", "config.json"] {
        std::fs::copy(
            fixtures().join("tiny-upscaler").join(file),
            upscaler.join(file),
        )
        .unwrap();
    }
    let manifest = dir.path().join(manifest::FILE_NAME);
    match listing {
        Listing::Fixture => {}
        Listing::Rebuilt => {
            let m = Manifest::build(dir.path(), "tiny-sd+upscaler", "1", "MIT", "test").unwrap();
            std::fs::write(manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
        }
        Listing::Removed => std::fs::remove_file(manifest).unwrap(),
    }
    dir
}

fn unverified() -> LoadOptions {
    LoadOptions {
        require_manifest: false,
        ..LoadOptions::default()
    }
}

fn request() -> Request {
    Request {
        prompt: "snowy mountains at dusk".into(),
        seed: 11,
        steps: Some(3),
        guidance: Some(5.0),
        ..Request::default()
    }
}

fn generate(engine: &Engine, req: &Request) -> Generated {
    engine
        .generate(req, &AtomicBool::new(false), &mut |_| {})
        .unwrap()
}

fn model_error(dir: &Path, options: &LoadOptions) -> String {
    match Model::load(dir, options) {
        Err(EngineError::Model(msg)) => msg,
        Err(other) => panic!("expected a model error, got {other:?}"),
        Ok(_) => panic!("the folder loaded"),
    }
}

#[test]
fn pictures_come_out_at_the_display_stage_scale_and_img2img_takes_them_back() {
    let dir = model_with_upscaler(Listing::Rebuilt);
    let lifted = Engine::new(dir.path(), LoadOptions::default());
    let plain = Engine::new(fixtures().join("tiny-sd"), LoadOptions::default());
    let info = lifted.model().unwrap().info.clone();
    assert_eq!(info.display_scale, Some(2));
    assert_eq!(plain.model().unwrap().info.display_scale, None);
    let (nw, nh) = (info.native_width as u32, info.native_height as u32);

    let upscaled = generate(&lifted, &request());
    let resized = generate(&plain, &request());
    assert_eq!(upscaled.image.dimensions(), (2 * nw, 2 * nh));
    assert_eq!(resized.image.dimensions(), (nw, nh));
    // The same latents went into both decoders: only the display stage differs.
    assert_eq!(upscaled.final_latents, resized.final_latents);
    assert!(upscaled.timings.display_stage > std::time::Duration::ZERO);

    // On a display twice the native size the plain path is a 2x Lanczos resize; the learned
    // stage draws something else.
    let (dw, dh) = (2 * nw, 2 * nh);
    let shown_upscaled = display::to_display(&upscaled.image, dw, dh, Fit::Crop);
    let shown_resized = display::to_display(&resized.image, dw, dh, Fit::Crop);
    let mean_diff = shown_upscaled
        .as_raw()
        .iter()
        .zip(shown_resized.as_raw())
        .map(|(&a, &b)| f64::from(a.abs_diff(b)))
        .sum::<f64>()
        / shown_upscaled.as_raw().len() as f64;
    assert!(mean_diff > 2.0, "mean |diff| {mean_diff} levels");
    // At its own size the upscaled picture is only quantised: no resize in between.
    assert_eq!(shown_upscaled, display::dither(&upscaled.image));

    // A stored picture is at the upscaled size; img2img fits it back to the generation size
    // for the encoder and lifts the result again.
    let init = display::dither(&upscaled.image);
    let variant = generate(
        &lifted,
        &Request {
            prompt: "snowy mountains at night".into(),
            init: Some((init, 0.6)),
            ..request()
        },
    );
    assert_eq!(variant.image.dimensions(), (2 * nw, 2 * nh));
}

#[test]
fn a_manifest_that_does_not_list_the_upscaler_is_refused() {
    let dir = model_with_upscaler(Listing::Fixture);
    let msg = model_error(dir.path(), &LoadOptions::default());
    assert!(
        msg.contains("upscaler/model.onnx") && msg.contains("not covered by manifest.json"),
        "{msg}"
    );
    // Listed, it loads; a changed byte after that is caught like any other file's.
    let dir = model_with_upscaler(Listing::Rebuilt);
    Model::load(dir.path(), &LoadOptions::default()).unwrap();
    let config = dir.path().join("upscaler/config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"scale\": 2", "\"scale\": 3")).unwrap();
    let msg = model_error(dir.path(), &LoadOptions::default());
    assert!(
        msg.contains("upscaler/config.json") && msg.contains("does not match"),
        "{msg}"
    );
}

#[test]
fn a_bad_upscaler_config_is_a_model_error_naming_the_file() {
    let dir = model_with_upscaler(Listing::Removed);
    let config = dir.path().join("upscaler/config.json");
    let good = std::fs::read_to_string(&config).unwrap();
    let cases = [
        (
            good.replace("\"scale\": 2", "\"scale\": 0"),
            "`scale` must be",
        ),
        (good.replace("\"scale\": 2,", ""), "`scale` is missing"),
        (
            good.replace("\"scale\": 2", "\"scale\": 1.5"),
            "`scale` must be",
        ),
        (
            good.replace("\"output\": \"upscaled\"", "\"output\": \"y\""),
            "`y`",
        ),
        (good.replace("\"input\": \"image\",", ""), "`input`"),
        ("not json".to_string(), "expected"),
    ];
    for (text, needle) in cases {
        std::fs::write(&config, &text).unwrap();
        let msg = model_error(dir.path(), &unverified());
        assert!(
            msg.contains("upscaler/config.json") && msg.contains(needle),
            "{needle}: {msg}"
        );
    }
    std::fs::remove_file(&config).unwrap();
    let msg = model_error(dir.path(), &unverified());
    assert!(msg.contains("upscaler/config.json is missing"), "{msg}");
}

#[test]
fn the_latent_factor_comes_from_spatial_compression_ratio_first() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("tiny-sd"), dir.path());
    std::fs::remove_file(dir.path().join(manifest::FILE_NAME)).unwrap();
    let config = dir.path().join("vae_decoder/config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    // cabin's autoencoder: no diffusers block list, the ratio stated.
    json["_class_name"] = "CabinAutoencoder".into();
    json.as_object_mut().unwrap().remove("block_out_channels");
    json["spatial_compression_ratio"] = 4.into();
    std::fs::write(&config, json.to_string()).unwrap();
    let info = Model::load(dir.path(), &unverified()).unwrap().info;
    assert_eq!(info.latent_factor, 4);
    assert_eq!(info.native_width, 16 * 4);

    for bad in [
        serde_json::json!(0),
        serde_json::json!("8"),
        serde_json::json!(2.5),
    ] {
        json["spatial_compression_ratio"] = bad.clone();
        std::fs::write(&config, json.to_string()).unwrap();
        let msg = model_error(dir.path(), &unverified());
        assert!(
            msg.contains("vae_decoder/config.json") && msg.contains("spatial_compression_ratio"),
            "{bad}: {msg}"
        );
    }
}

#[test]
fn a_scale_the_network_does_not_have_or_too_large_a_picture_is_refused() {
    let dir = model_with_upscaler(Listing::Removed);
    let config = dir.path().join("upscaler/config.json");
    let good = std::fs::read_to_string(&config).unwrap();

    // The x2 network under a config that says x3: caught when its output comes back.
    std::fs::write(&config, good.replace("\"scale\": 2", "\"scale\": 3")).unwrap();
    let engine = Engine::new(dir.path(), unverified());
    match engine.generate(&request(), &AtomicBool::new(false), &mut |_| {}) {
        Err(EngineError::Model(msg)) => assert!(msg.contains("scale 3"), "{msg}"),
        other => panic!("expected a model error, got {:?}", other.map(|_| ())),
    }

    // x16 of a 1024-wide generation would be past any display: refused before running.
    std::fs::write(&config, good.replace("\"scale\": 2", "\"scale\": 16")).unwrap();
    let engine = Engine::new(dir.path(), unverified());
    let wide = Request {
        size: Some((1024, 32)),
        ..request()
    };
    match engine.generate(&wide, &AtomicBool::new(false), &mut |_| {}) {
        Err(EngineError::InvalidArgument(msg)) => {
            assert!(msg.contains("display scale 16"), "{msg}")
        }
        other => panic!("expected an invalid argument, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn the_contact_sheet_tiles_every_prompt_at_display_size_and_names_a_missing_model() {
    let model = model_with_upscaler(Listing::Removed);
    let out = tempfile::tempdir().unwrap();
    let sheet = out.path().join("sheet.png");
    let run = |model: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cabin-wallpaper"))
            .arg("contact-sheet")
            .arg("--model")
            .arg(model)
            .args([
                "--prompt",
                "a red sky",
                "--prompt",
                "green hills",
                "--prompt",
            ])
            .args([
                "blue sea",
                "--size",
                "96x36",
                "--threads",
                "1",
                "--allow-unverified",
            ])
            .arg("--out")
            .arg(&sheet)
            .output()
            .unwrap()
    };
    let done = run(model.path());
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let png = image::open(&sheet).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (96, 36));
    // Three prompts, three columns of 32x36: each tile is its own picture.
    let tile = |i: u32| image::imageops::crop_imm(&png, i * 32, 0, 32, 36).to_image();
    assert_ne!(tile(0), tile(1));
    assert_ne!(tile(1), tile(2));

    let missing = run(&out.path().join("no-such-model"));
    assert!(!missing.status.success());
    let why = String::from_utf8_lossy(&missing.stderr);
    assert!(why.contains("no-such-model"), "{why}");
}
