//! Every scheduler against numbers diffusers printed (onnx/fixtures/scheduler_reference.json,
//! made by onnx/fixtures/make_scheduler_reference.py): timesteps, sigmas, the scaled model
//! input and the sample after every step of a fake denoising loop, stochastic noise replayed.

use std::path::Path;

use cabin_diffusion::scheduler::{NoiseSource, SchedulerConfig};
use serde_json::Value;

struct Replay(std::vec::IntoIter<Vec<f32>>);

impl NoiseSource for Replay {
    fn fill(&mut self, out: &mut [f32]) {
        let next = self
            .0
            .next()
            .expect("the scheduler drew more noise than diffusers did");
        out.copy_from_slice(&next);
    }
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(name: &str, what: &str, got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{name}: {what} length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let tol = rel * w.abs().max(1.0);
        assert!(
            (g - w).abs() <= tol,
            "{name}: {what}[{i}] = {g}, diffusers {w}"
        );
    }
}

#[test]
fn schedulers_match_diffusers() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/scheduler_reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let entries = reference["entries"].as_array().unwrap();
    assert!(entries.len() >= 19);
    for entry in entries {
        let name = entry["name"].as_str().unwrap();
        let mut config = entry["config"].clone();
        config["_class_name"] = entry["class"].clone();
        let cfg = SchedulerConfig::from_json(&config.to_string()).unwrap();
        let steps = entry["steps"].as_u64().unwrap() as usize;
        let mut scheduler = cfg.build(steps).unwrap();

        close(
            name,
            "timesteps",
            scheduler.timesteps(),
            &floats(&entry["timesteps"]),
            1e-4,
        );
        let init = entry["init_noise_sigma"].as_f64().unwrap();
        assert!(
            (scheduler.init_noise_sigma() - init).abs() <= 1e-5 * init,
            "{name}: init_noise_sigma"
        );

        let noises: Vec<Vec<f32>> = match entry["noises"].as_array() {
            Some(list) => list
                .iter()
                .map(|n| floats(n).iter().map(|&v| v as f32).collect())
                .collect(),
            None => Vec::new(),
        };
        let mut replay = Replay(noises.into_iter());
        let mut x: Vec<f32> = floats(&entry["sample0"])
            .iter()
            .map(|&v| v as f32)
            .collect();
        let scaled_inputs = entry["scaled_inputs"].as_array().unwrap();
        let prev_samples = entry["prev_samples"].as_array().unwrap();
        assert_eq!(prev_samples.len(), steps);
        for i in 0..steps {
            let mut scaled = x.clone();
            scheduler.scale_model_input(&mut scaled, i);
            let as64 = |v: &[f32]| v.iter().map(|&f| f64::from(f)).collect::<Vec<_>>();
            close(
                name,
                &format!("scaled input {i}"),
                &as64(&scaled),
                &floats(&scaled_inputs[i]),
                1e-4,
            );
            let t = scheduler.timesteps()[i] as f32;
            let output: Vec<f32> = x
                .iter()
                .map(|&v| 0.3 * v + 0.1 * v.sin() + 0.01 * t)
                .collect();
            x = scheduler.step(&output, i, &x, &mut replay).prev_sample;
            close(
                name,
                &format!("sample after step {i}"),
                &as64(&x),
                &floats(&prev_samples[i]),
                2e-4,
            );
        }
    }
}
