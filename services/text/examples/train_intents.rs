//! Trains the intent model from `data/intents-train.jsonl` into `data/intent-model.bin`
//! (deterministic: the same data always gives the same file; a test checks the shipped one).
//!
//!     cargo run -p cabin-text --example train_intents

use std::process::ExitCode;
use std::time::Instant;

use cabin_text::intent_model::{INTENTS, Model, Training, examples};

fn main() -> ExitCode {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
    let data = match std::fs::read_to_string(format!("{dir}/intents-train.jsonl"))
        .map_err(|e| e.to_string())
        .and_then(|t| examples(&t))
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("intents-train.jsonl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let t = Instant::now();
    let model = Model::train(&data, Training::default());
    let correct = data
        .iter()
        .filter(|(text, y)| {
            let p = model.predict(text);
            (0..INTENTS.len()).max_by(|a, b| p[*a].total_cmp(&p[*b])) == Some(*y)
        })
        .count();
    let bytes = model.to_bytes();
    if let Err(e) = std::fs::write(format!("{dir}/intent-model.bin"), &bytes) {
        eprintln!("intent-model.bin: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "{} examples, trained in {:.2} s, {:.1} % right on the training set, {} KiB written",
        data.len(),
        t.elapsed().as_secs_f64(),
        100.0 * correct as f64 / data.len() as f64,
        bytes.len() / 1024
    );
    ExitCode::SUCCESS
}
