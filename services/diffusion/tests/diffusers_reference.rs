//! The whole pipeline against diffusers on the same weights: the tiny randomly initialised
//! Stable-Diffusion fixture (onnx/fixtures/make_tiny_sd.py) with the same initial noise fed
//! in. This is the proof that SD-family exports drop in.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use cabin_diffusion::model::{LoadOptions, Model};
use cabin_diffusion::pipeline::{self, Noise, Request};
use cabin_diffusion::scheduler::{NoiseSource, SchedulerConfig};
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-sd")
}

fn read_f32(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture().join("reference").join(name)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

struct Replay(Vec<f32>, usize);

impl NoiseSource for Replay {
    fn fill(&mut self, out: &mut [f32]) {
        out.copy_from_slice(&self.0[self.1..self.1 + out.len()]);
        self.1 += out.len();
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn tokenizer_gives_the_ids_diffusers_gave() {
    let model = Model::load(&fixture(), &LoadOptions::default()).unwrap();
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("reference/cases.json")).unwrap(),
    )
    .unwrap();
    for case in cases.as_array().unwrap() {
        let want: Vec<i64> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let got = model
            .tokenizer
            .encode("prompt", case["prompt"].as_str().unwrap())
            .unwrap();
        assert_eq!(got, want, "{}", case["name"]);
    }
}

#[test]
fn pipeline_matches_diffusers_on_the_same_weights() {
    pipeline_matches_diffusers();
}

/// Every reference case: the final latents and the image as diffusers made them. Also run
/// with the portable kernels only (`tests/portable_kernels.rs`).
pub fn pipeline_matches_diffusers() {
    let model = Model::load(&fixture(), &LoadOptions::default()).unwrap();
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("reference/cases.json")).unwrap(),
    )
    .unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut config = case["scheduler_config"].clone();
        config["_class_name"] = case["scheduler"].clone();
        let scheduler = SchedulerConfig::from_json(&config.to_string()).unwrap();
        let init = case["init_image"].as_str().map(|file| {
            let img = image::open(fixture().join("reference").join(file))
                .unwrap()
                .to_rgb8();
            (img, case["strength"].as_f64().unwrap())
        });
        let request = Request {
            prompt: case["prompt"].as_str().unwrap().into(),
            negative: case["negative_prompt"].as_str().unwrap_or("").into(),
            steps: Some(case["steps"].as_u64().unwrap() as usize),
            guidance: Some(case["guidance"].as_f64().unwrap()),
            size: Some((
                case["width"].as_u64().unwrap() as usize,
                case["height"].as_u64().unwrap() as usize,
            )),
            init,
            ..Request::default()
        };
        let latents = case["noise_file"]
            .as_str()
            .or(case["latents_file"].as_str())
            .map(read_f32)
            .unwrap();
        let extra: Option<Box<dyn NoiseSource>> = case["step_noises_file"]
            .as_str()
            .map(|f| Box::new(Replay(read_f32(f), 0)) as _);
        let out = pipeline::generate_with_scheduler(
            &model,
            &request,
            scheduler,
            Noise::Given { latents, extra },
            &AtomicBool::new(false),
            &mut |_| {},
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));

        let want_latents = read_f32(case["final_latents_file"].as_str().unwrap());
        let scale = want_latents.iter().map(|v| v.abs()).fold(1.0f32, f32::max);
        let latent_diff = max_diff(&out.final_latents, &want_latents);
        assert!(
            latent_diff <= 1e-3 * scale,
            "{name}: final latents differ by {latent_diff} (scale {scale})"
        );

        let want_image = read_f32(case["output_file"].as_str().unwrap());
        let got_image: Vec<f32> = out.image.as_raw().clone();
        let image_diff = max_diff(&got_image, &want_image);
        assert!(image_diff <= 2e-3, "{name}: image differs by {image_diff}");
        eprintln!(
            "{name}: max |Δ| latents {latent_diff:.2e} (of {scale:.1}), image {image_diff:.2e}"
        );
    }
}
