//! How long a companion turn takes on the offline engine, against the floor any design
//! pays for a memory that survives a power cut: one atomic, fsynced write of it.
//!
//!   cargo bench -p cabin-companion --bench turns [-- --local MODEL_DIR [--local-turns N]]
//!
//! With `--local`, the same companion also answers on the on-device LM (backend `local`,
//! e.g. SmolLM2-135M-Instruct from `onnx/lm/build_lm.py smollm2`): time to the first spoken
//! token and the whole turn, p50 / p95, and the replies themselves.
//!
//! Prints a whole `Companion::say` (safety, mood, care, lorebook, the chain, shaping, memory
//! learned and saved) over 1,000 turns as p50 / p95 / mean, the bare atomic write of the same
//! memory file, and the ratios say / write.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use cabin_common::vehicle::VehicleState;
use cabin_companion::tools::Effects;
use cabin_companion::{Companion, Config, Turn};

struct NoEffects;

impl Effects for NoEffects {
    fn set_wallpaper(&self, _prompt: &str) -> Result<String, (String, String)> {
        Ok("/job".into())
    }
}

const LINES: &[&str] = &[
    "你好呀",
    "今天工作好累",
    "我喜欢火锅",
    "讲个笑话吧",
    "周末想去海边",
    "hello there",
    "I'm so stressed about my meeting",
    "tell me a joke",
    "what should I eat tonight",
    "the road is quiet",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(model) = flag("--local") {
        let turns = flag("--local-turns").map_or(12, |n| n.parse().expect("--local-turns N"));
        local_turns(std::path::PathBuf::from(model), turns);
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let companion = Companion::open(Config::default(), dir.path()).expect("companion");
    let cancel = AtomicBool::new(false);
    let now = chrono::Utc::now();
    let turns = 1000;
    let mut chars = 0usize;
    let mut each = Vec::with_capacity(turns);
    let start = Instant::now();
    for i in 0..turns {
        let began = Instant::now();
        let turn = Turn {
            persona: "warm-companion",
            text: LINES[i % LINES.len()],
            lang: None,
            seed: 7,
            vehicle: VehicleState::default(),
            now,
            effects: &NoEffects,
            cancel: &cancel,
        };
        let reply = companion.say(turn, &mut |_| {}).expect("a reply");
        chars += reply.text.chars().count();
        each.push(began.elapsed().as_secs_f64());
    }
    let say = start.elapsed().as_secs_f64() / turns as f64;
    let quantile = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let say_p50 = quantile(&mut each, 0.5);
    let say_p95 = quantile(&mut each, 0.95);

    // The floor: writing the same memory file atomically (temp file, fsync, rename, fsync dir).
    let memory = serde_json::to_vec(&companion.remembered("warm-companion")).expect("json");
    let path = dir.path().join("floor.json");
    let mut writes = Vec::with_capacity(turns);
    let start = Instant::now();
    for _ in 0..turns {
        let began = Instant::now();
        cabin_common::fsutil::write_atomic(&path, &memory).expect("write");
        writes.push(began.elapsed().as_secs_f64());
    }
    let write = start.elapsed().as_secs_f64() / turns as f64;
    let write_p50 = quantile(&mut writes, 0.5);
    let write_p95 = quantile(&mut writes, 0.95);

    println!(
        "turns: {turns}, mean reply {:.0} chars, memory file {} bytes",
        chars as f64 / turns as f64,
        memory.len()
    );
    println!(
        "Companion::say (offline engine, memory saved): p50 {:.3} ms, p95 {:.3} ms, mean {:.3} ms",
        say_p50 * 1e3,
        say_p95 * 1e3,
        say * 1e3
    );
    println!(
        "atomic fsynced write of the memory alone:       p50 {:.3} ms, p95 {:.3} ms, mean {:.3} ms",
        write_p50 * 1e3,
        write_p95 * 1e3,
        write * 1e3
    );
    println!(
        "ratios say / write: p50 {:.2}, p95 {:.2}",
        say_p50 / write_p50,
        say_p95 / write_p95
    );
    println!(
        "ratio say / write: {:.2}  (the rest of a turn costs {:.3} ms)",
        say / write,
        (say - write) * 1e3
    );
}

fn local_turns(model_dir: std::path::PathBuf, turns: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        backends: vec!["local".into()],
        local: Some(cabin_companion::local_lm::LocalLmConfig {
            model_dir,
            ..Default::default()
        }),
        ..Config::default()
    };
    let companion = Companion::open(config, dir.path()).expect("companion");
    let cancel = AtomicBool::new(false);
    let english: Vec<&str> = LINES.iter().copied().filter(|l| l.is_ascii()).collect();
    let (mut first, mut whole) = (Vec::new(), Vec::new());
    for i in 0..turns {
        let text = english[i % english.len()];
        let began = Instant::now();
        let mut first_token = None;
        let turn = Turn {
            persona: "warm-companion",
            text,
            lang: None,
            seed: 7 + i as u64,
            vehicle: VehicleState::default(),
            now: chrono::Utc::now(),
            effects: &NoEffects,
            cancel: &cancel,
        };
        let reply = companion
            .say(turn, &mut |t| {
                if !t.is_empty() && first_token.is_none() {
                    first_token = Some(began.elapsed().as_secs_f64());
                }
            })
            .expect("a reply");
        let took = began.elapsed().as_secs_f64();
        println!(
            "[{}] {:.2} s  you: {text}\n      {}: {}",
            reply.backend, took, reply.emotion, reply.text
        );
        // The first turn also loads the model; keep it out of the quantiles.
        if i > 0 {
            first.push(first_token.unwrap_or(took));
            whole.push(took);
        }
    }
    let quantile = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    if whole.is_empty() {
        return;
    }
    println!(
        "local turns after the first: first token p50 {:.0} ms, p95 {:.0} ms; whole turn p50 {:.0} ms, p95 {:.0} ms",
        quantile(&mut first, 0.5) * 1e3,
        quantile(&mut first, 0.95) * 1e3,
        quantile(&mut whole, 0.5) * 1e3,
        quantile(&mut whole, 0.95) * 1e3
    );
}
