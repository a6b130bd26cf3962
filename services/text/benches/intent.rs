//! Intent latency: `cargo bench -p cabin-text --bench intent`.
//!
//! Every utterance of the voice hook's held-out set (450, zh/en) read 20 times on one thread
//! the way `cabin_voice::intent::parse` reads it (normalise, the intent model, the scene and
//! its slots): median and p95 per utterance against the 2 ms budget, and the model's resident
//! size. Prints one JSON object naming the CPU.

use std::time::Instant;

use cabin_text::{intent_model, normalize, scene};

fn parse(utterance: &str) -> (&'static str, f32, String, scene::SceneSlots) {
    let text = normalize(utterance);
    let (intent, p) = intent_model::bundled().top(&text);
    (intent, p, scene::request_scene(&text), scene::slots(&text))
}

fn main() {
    let utterances: Vec<String> = include_str!("../../voice/eval/intents-heldout.jsonl")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    let _ = parse("warm up");
    let mut micros: Vec<f64> = Vec::new();
    for _ in 0..20 {
        for u in &utterances {
            let t = Instant::now();
            std::hint::black_box(parse(u));
            micros.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    let report = serde_json::json!({
        "cpu": cabin_common::host::cpu_name(),
        "threads": 1,
        "utterances": utterances.len(),
        "parse_us_p50": (at(0.5) * 10.0).round() / 10.0,
        "parse_us_p95": (at(0.95) * 10.0).round() / 10.0,
        "parse_us_max": (at(1.0) * 10.0).round() / 10.0,
        "budget_us_p95": 2000,
        "model_resident_bytes": intent_model::bundled().resident_bytes(),
        "budget_resident_bytes": 20 * 1024 * 1024,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
}
