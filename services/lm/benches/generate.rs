//! Time to first token and decode speed of the on-device LM, as JSON for
//! `onnx/lm/bench.sh`, which runs onnxruntime (and llama.cpp) on the same model in the same
//! run and prints the ratios.
//!
//! cargo bench -p cabin-lm --bench generate -- [--model DIR] [--threads N] [--new N] [--runs N]
//!
//! Work is fixed for a fair comparison: the same prompt ids, then exactly `--new` greedy
//! decode steps (stop tokens ignored), each on the growing KV cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use cabin_lm::{Conversation, Limits, LmModel, LoadOptions, Message, Role, Sampling, chat};

fn main() {
    let mut model_dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../onnx/fixtures/tiny-lm");
    let mut threads = 1usize;
    let mut new_tokens = 64usize;
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--model" => model_dir = PathBuf::from(value()),
            "--threads" => threads = value().parse().expect("--threads N"),
            "--new" => new_tokens = value().parse().expect("--new N"),
            "--runs" => runs = value().parse().expect("--runs N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let started = Instant::now();
    let model = Arc::new(
        LmModel::load(
            &model_dir,
            &LoadOptions {
                threads,
                ..LoadOptions::default()
            },
        )
        .expect("model loads"),
    );
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let prompt = chat::render(
        &[
            Message::new(
                Role::System,
                "You are Nuan, a warm companion riding along with the driver. Keep answers short, kind and spoken.",
            ),
            Message::new(
                Role::User,
                "I've been driving for almost three hours and I'm getting a bit tired. Any ideas to stay fresh until we reach the city?",
            ),
        ],
        model.specials(),
    );
    let ids = model.encode(&prompt).expect("tokenizes");

    let mut ttft = Vec::new();
    let mut decode = Vec::new();
    let mut first_run_ms = 0.0;
    // the greedy continuation, compared with the other runtimes' by onnx/lm/bench.sh
    let mut greedy_ids = Vec::new();
    for run in 0..runs + 1 {
        let t0 = Instant::now();
        let step = model
            .forward(&ids, 0, model.empty_cache())
            .expect("prefill");
        let t1 = Instant::now();
        let mut cache = step.present;
        let mut next = argmax(&step.logits);
        let mut continuation = vec![next];
        for i in 0..new_tokens {
            let step = model
                .forward(&[next], ids.len() + i, cache)
                .expect("decode step");
            cache = step.present;
            next = argmax(&step.logits);
            continuation.push(next);
        }
        greedy_ids = continuation;
        let t2 = Instant::now();
        if run == 0 {
            first_run_ms = (t2 - t0).as_secs_f64() * 1e3;
            continue; // warm-up
        }
        ttft.push((t1 - t0).as_secs_f64() * 1e3);
        decode.push((t2 - t1).as_secs_f64() / new_tokens as f64 * 1e3);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ttft_ms = median(&mut ttft);
    let decode_ms = median(&mut decode);

    // Where one decode step goes, with the prompt in the cache.
    let prefilled = model
        .forward(&ids, 0, model.empty_cache())
        .expect("prefill");
    let (_, profile) = model
        .profile(&[argmax(&prefilled.logits)], ids.len(), prefilled.present)
        .expect("profiled step");
    let in_nodes: f64 = profile.ops.iter().map(|o| o.ms).sum();
    let step_nodes: usize = profile.ops.iter().map(|o| o.nodes).sum();
    let ops: Vec<serde_json::Value> = profile
        .ops
        .iter()
        .take(12)
        .map(|o| serde_json::json!({"op": o.op, "ms": o.ms, "nodes": o.nodes, "share": o.ms / profile.step_ms}))
        .collect();

    let mut reply = String::new();
    let done = Conversation::new(model.clone())
        .complete(
            &prompt,
            &Sampling {
                temperature: 0.0,
                ..Sampling::default()
            },
            &Limits {
                max_new_tokens: new_tokens,
                deadline: None,
            },
            &mut |t| reply.push_str(t),
            &AtomicBool::new(false),
        )
        .expect("a reply");

    let json = serde_json::json!({
        "runtime": "tract",
        "model": model_dir.display().to_string(),
        "threads": threads,
        "prompt_ids": ids,
        "prompt_tokens": ids.len(),
        "new_tokens": new_tokens,
        "load_ms": load_ms,
        "first_run_ms": first_run_ms,
        "ttft_ms": ttft_ms,
        "decode_ms_per_token": decode_ms,
        "decode_tokens_per_s": 1e3 / decode_ms,
        "peak_rss_mib": status_mib("VmHWM:"),
        "rss_mib": status_mib("VmRSS:"),
        "greedy_reply": done.text,
        "greedy_ids": greedy_ids,
        "decode_step_ops": ops,
        "decode_step_nodes": step_nodes,
        "decode_step_between_nodes_ms": profile.step_ms - in_nodes,
    });
    println!("{json}");
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i as u32)
        .unwrap_or(0)
}

/// A memory line of /proc/self/status (Linux), in MiB.
fn status_mib(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
