//! Scores the offline engine's reading of chat (act and mood) on a labelled set:
//!
//!     cargo run --release -p cabin-companion --example evaluate_talk [-- FILE] [--misses]
//!
//! FILE defaults to `eval/talk-heldout.jsonl`. Prints one JSON report (per language, per act).

use std::process::ExitCode;

use cabin_companion::talk_eval::{evaluate, parse};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/eval/talk-heldout.jsonl").into());
    let set = match std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|t| parse(&t))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = evaluate(&set);
    if !args.iter().any(|a| a == "--misses") {
        report.act_misses.clear();
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "cpu": cabin_common::host::cpu_name(),
            "file": file,
            "report": report,
        }))
        .unwrap_or_default()
    );
    ExitCode::SUCCESS
}
