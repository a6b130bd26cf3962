//! Analysis speed: `cargo bench -p cabin-feedback --bench analysis`.
//!
//! 10,000 owner statements (the 360 of `eval/`, each with a varying spoken or written tail) on
//! one thread. Prints one JSON object with the CPU it ran on:
//! - `read_statements_per_s`: the clustering input stage (normalise, lexicon, words, tone, the
//!   learned concept model);
//!   the target is ≥ 20,000/s on one core;
//! - `cluster_10k_s`: average-linkage clustering of the 10,000 readings (target ≤ 2 s);
//! - `problems_10k_s`: reading, clustering and the summaries together.
//!
//! Each figure is the best of three, by the thread's own CPU time (`*_cpu`) beside the wall
//! clock: on a busy machine the CPU time still says what one core does.

use std::time::Instant;

use cabin_feedback::analysis::{cluster, problems, read};
use cabin_feedback::intake::{Submission, accept};

const TAILS: &[&str] = &[
    "",
    " again today",
    " and it happened twice this week",
    " since the last update",
    " please sort it out",
    " 今天又这样了",
    " 已经第三次了",
    " 希望尽快处理",
    " 每天都这样",
    " not impressed",
    " 真的很烦",
    " my wife noticed it too",
];

fn statements(n: usize) -> Vec<(String, String)> {
    let base: Vec<(String, String)> = [
        include_str!("../eval/development.jsonl"),
        include_str!("../eval/test.jsonl"),
    ]
    .iter()
    .flat_map(|t| t.lines())
    .map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        (
            v["text"].as_str().unwrap_or_default().to_string(),
            v["channel"].as_str().unwrap_or("app").to_string(),
        )
    })
    .collect();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let (text, channel) = &base[i % base.len()];
            (
                format!("{text}{}", TAILS[seed as usize % TAILS.len()]),
                channel.clone(),
            )
        })
        .collect()
}

fn main() {
    let texts = statements(10_000);
    // Warm the lexicon (parsed once per process).
    let _ = read("warm up");
    // (wall, thread CPU) seconds, each the best of three runs.
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let (wall, cpu) = (Instant::now(), thread_cpu_s());
                f();
                (wall.elapsed().as_secs_f64(), thread_cpu_s() - cpu)
            })
            .fold((f64::INFINITY, f64::INFINITY), |a, b| {
                (a.0.min(b.0), a.1.min(b.1))
            })
    };

    let (read_s, read_cpu) = best(&mut || {
        let readings: Vec<_> = texts.iter().map(|(t, _)| read(t)).collect();
        std::hint::black_box(readings);
    });
    let readings: Vec<_> = texts.iter().map(|(t, _)| read(t)).collect();
    let (cluster_s, cluster_cpu) = best(&mut || {
        std::hint::black_box(cluster(&readings));
    });
    let groups = cluster(&readings);
    let items: Vec<_> = texts
        .iter()
        .enumerate()
        .map(|(i, (text, channel))| {
            let sub = Submission {
                channel: channel.clone(),
                text: text.clone(),
                ..Submission::default()
            };
            accept(&sub, format!("b{i}"), 0).unwrap()
        })
        .collect();
    let (problems_s, problems_cpu) = best(&mut || {
        std::hint::black_box(problems(&items, &[], 3));
    });
    let ms = |s: f64| (s * 1000.0).round() / 1000.0;
    let report = serde_json::json!({
        "cpu": cabin_common::host::cpu_name(),
        "threads": 1,
        "statements": texts.len(),
        "read_statements_per_s": (texts.len() as f64 / read_s).round(),
        "read_statements_per_s_cpu": (texts.len() as f64 / read_cpu).round(),
        "cluster_10k_s": ms(cluster_s),
        "cluster_10k_s_cpu": ms(cluster_cpu),
        "groups": groups.iter().max().map_or(0, |g| g + 1),
        "problems_10k_s": ms(problems_s),
        "problems_10k_s_cpu": ms(problems_cpu),
        "targets": {"read_statements_per_s": 20000, "cluster_10k_s": 2.0},
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}

/// CPU time this thread has used, in seconds.
fn thread_cpu_s() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}
