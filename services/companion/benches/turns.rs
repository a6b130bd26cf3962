//! How long a companion turn takes on the offline engine, against the floor any design
//! pays for a memory that survives a power cut: one atomic, fsynced write of it.
//!
//!   cargo bench -p cabin-companion --bench turns
//!
//! Prints the offline engine's compose time, a whole `Companion::say` (safety, mood, care,
//! lorebook, the chain, shaping, memory learned and saved), the bare atomic write of the
//! same memory file, and the ratio say / write.

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
    let dir = tempfile::tempdir().expect("temp dir");
    let companion = Companion::open(Config::default(), dir.path()).expect("companion");
    let cancel = AtomicBool::new(false);
    let now = chrono::Utc::now();
    let turns = 400;
    let mut chars = 0usize;
    let start = Instant::now();
    for i in 0..turns {
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
    }
    let say = start.elapsed().as_secs_f64() / turns as f64;

    // The floor: writing the same memory file atomically (temp file, fsync, rename, fsync dir).
    let memory = serde_json::to_vec(&companion.remembered("warm-companion")).expect("json");
    let path = dir.path().join("floor.json");
    let start = Instant::now();
    for _ in 0..turns {
        cabin_common::fsutil::write_atomic(&path, &memory).expect("write");
    }
    let write = start.elapsed().as_secs_f64() / turns as f64;

    println!(
        "turns: {turns}, mean reply {:.0} chars, memory file {} bytes",
        chars as f64 / turns as f64,
        memory.len()
    );
    println!(
        "Companion::say (offline engine, memory saved): {:.3} ms/turn",
        say * 1e3
    );
    println!(
        "atomic fsynced write of the memory alone:       {:.3} ms/turn",
        write * 1e3
    );
    println!(
        "ratio say / write: {:.2}  (the rest of a turn costs {:.3} ms)",
        say / write,
        (say - write) * 1e3
    );
}
