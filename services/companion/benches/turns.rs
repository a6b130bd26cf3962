//! How long a companion turn takes on the offline engine, against the floor any design
//! pays for a memory that survives a power cut: one atomic, fsynced write of it.
//!
//!   cargo bench -p cabin-companion --bench turns [-- --local MODEL_DIR [--local-turns N]
//!       [--while-generating COMMAND]]
//!
//! With `--local`, the same companion also answers on the on-device LM (backend `local`,
//! e.g. SmolLM2-135M-Instruct from `onnx/lm/build_lm.py smollm2`): time to the first spoken
//! token and the whole turn, p50 / p95, and the replies themselves. With
//! `--while-generating`, the turns run twice: alone, then while COMMAND (a wallpaper generation,
//! e.g. `target/release/cabin-wallpaper generate ...`) runs again and again at the priority the
//! wallpaper worker has in the car (SCHED_IDLE and nice 19, as cabin-wallpaperd.service and its
//! worker thread set), and both are printed with the local backend's deadline beside them.
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
        let model = std::path::PathBuf::from(model);
        let deadline = Config::default().local_timeout_ms;
        println!("cpu: {}", cabin_tract_ops::machine());
        let alone = local_turns(&model, turns);
        report("alone", &alone, deadline);
        if let Some(command) = flag("--while-generating") {
            let generating = Background::start(&command);
            let busy = local_turns(&model, turns);
            let generations = generating.stop();
            report(
                &format!("while generating ({generations} generations finished)"),
                &busy,
                deadline,
            );
            println!(
                "p95 ratio while generating / alone: first token {:.2}, whole turn {:.2}",
                busy.first_p95 / alone.first_p95,
                busy.whole_p95 / alone.whole_p95
            );
        }
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

/// The local backend's turns after the first (which also loads the model), in seconds.
struct Latencies {
    first_p50: f64,
    first_p95: f64,
    whole_p50: f64,
    whole_p95: f64,
    turns: usize,
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn report(what: &str, l: &Latencies, deadline_ms: u64) {
    println!(
        "local turns {what}, {} after the first: first token p50 {:.0} ms, p95 {:.0} ms; whole turn p50 {:.0} ms, p95 {:.0} ms (deadline {deadline_ms} ms: p95 {})",
        l.turns,
        l.first_p50 * 1e3,
        l.first_p95 * 1e3,
        l.whole_p50 * 1e3,
        l.whole_p95 * 1e3,
        if l.whole_p95 * 1e3 <= deadline_ms as f64 {
            "within"
        } else {
            "OVER"
        }
    );
}

/// A shell command run again and again at idle priority, in its own process group.
struct Background {
    child: std::process::Child,
    started: Instant,
}

impl Background {
    fn start(command: &str) -> Self {
        use std::os::unix::process::CommandExt;
        // count finished runs on stderr's last line; the command's own output is dropped
        let script = format!(
            "n=0; while :; do ({command}) >/dev/null 2>&1 || exit 1; n=$((n+1)); echo $n >&2; done"
        );
        let child = std::process::Command::new("chrt")
            .args(["--idle", "0", "nice", "-n", "19", "sh", "-c", &script])
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("chrt and sh (util-linux) run the background command");
        // let the first generation get going before the turns start
        std::thread::sleep(std::time::Duration::from_secs(2));
        Self {
            child,
            started: Instant::now(),
        }
    }

    /// Stops the command's whole group; how many runs finished.
    fn stop(mut self) -> usize {
        use std::io::Read;
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &group])
            .status();
        let _ = self.child.wait();
        println!(
            "(background command ran {:.1} s)",
            self.started.elapsed().as_secs_f64()
        );
        let mut counts = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut counts);
        }
        counts
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .max()
            .unwrap_or(0)
    }
}

fn local_turns(model_dir: &std::path::Path, turns: usize) -> Latencies {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        backends: vec!["local".into()],
        local: Some(cabin_companion::local_lm::LocalLmConfig {
            model_dir: model_dir.to_path_buf(),
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
    assert!(
        turns > 1,
        "--local-turns must be at least 2 (the first loads the model)"
    );
    Latencies {
        first_p50: quantile(&mut first, 0.5),
        first_p95: quantile(&mut first, 0.95),
        whole_p50: quantile(&mut whole, 0.5),
        whole_p95: quantile(&mut whole, 0.95),
        turns: whole.len(),
    }
}
