//! Trains the crate's text models from their data sets into the files that ship (deterministic:
//! the same data always gives the same files; tests check the shipped ones):
//!   - `data/intents-train.jsonl` → `data/intent-model.bin` (the voice hook's intents)
//!   - `data/talk-train.jsonl` → `data/talk-act-model.bin` and `data/talk-mood-model.bin`
//!
//!     cargo run --release -p cabin-text --example train_models [-- --sweep]
//!
//! Prints each model's 5-fold cross-validated accuracy on its own training set (`--per-label`:
//! and per label, with what it was taken for); `--sweep` tries other settings that way first
//! (held-out sets are never used for choosing).

use std::process::ExitCode;
use std::time::Instant;

use cabin_text::classifier::{Classifier, Training, accuracy, cross_validate};
use cabin_text::{intent_model, talk_model};

struct Job {
    name: &'static str,
    labels: &'static [&'static str],
    data: Result<Vec<(String, usize)>, String>,
    training: Training,
    out: &'static str,
}

fn main() -> ExitCode {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
    let read =
        |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).map_err(|e| format!("{f}: {e}"));
    let talk = read("talk-train.jsonl");
    let jobs = [
        Job {
            name: "intents",
            labels: &intent_model::INTENTS,
            data: read("intents-train.jsonl").and_then(|t| intent_model::examples(&t)),
            training: Training::default(),
            out: "intent-model.bin",
        },
        Job {
            name: "talk acts",
            labels: &talk_model::ACTS,
            data: talk.clone().and_then(|t| talk_model::act_examples(&t)),
            training: talk_model::ACT_TRAINING,
            out: "talk-act-model.bin",
        },
        Job {
            name: "talk moods",
            labels: &talk_model::MOODS,
            data: talk.and_then(|t| talk_model::mood_examples(&t)),
            training: talk_model::MOOD_TRAINING,
            out: "talk-mood-model.bin",
        },
    ];
    let sweep = std::env::args().any(|a| a == "--sweep");
    for job in jobs {
        let data = match job.data {
            Ok(d) => d,
            Err(e) => {
                eprintln!("{}: {e}", job.name);
                return ExitCode::FAILURE;
            }
        };
        if sweep {
            for epochs in [15, 25, 40] {
                for learning_rate in [0.1, 0.3, 0.6] {
                    for l2 in [0.0, 1e-6, 1e-5] {
                        let t = Training {
                            epochs,
                            learning_rate,
                            l2,
                            ..job.training
                        };
                        let cv = accuracy(&data, &cross_validate(job.labels, &data, 5, t));
                        println!(
                            "{}: epochs {epochs} lr {learning_rate} l2 {l2}: cv {:.1} %",
                            job.name,
                            100.0 * cv
                        );
                    }
                }
            }
        }
        let t = Instant::now();
        let model = Classifier::train(job.labels, &data, job.training);
        let seconds = t.elapsed().as_secs_f64();
        let predicted = cross_validate(job.labels, &data, 5, job.training);
        let cv = accuracy(&data, &predicted);
        if std::env::args().any(|a| a == "--per-label") {
            for (k, label) in job.labels.iter().enumerate() {
                let of = |y: usize| {
                    data.iter()
                        .zip(&predicted)
                        .filter(move |((_, t), _)| *t == y)
                };
                let n = of(k).count();
                let right = of(k).filter(|(_, p)| **p == k).count();
                let mut wrong: Vec<(usize, usize)> = (0..job.labels.len())
                    .filter(|j| *j != k)
                    .map(|j| (of(k).filter(|(_, p)| **p == j).count(), j))
                    .filter(|(c, _)| *c > 0)
                    .collect();
                wrong.sort_unstable_by(|a, b| b.cmp(a));
                let as_: Vec<String> = wrong
                    .iter()
                    .take(3)
                    .map(|(c, j)| format!("{} {c}", job.labels[*j]))
                    .collect();
                println!(
                    "  {label:>12}: {right}/{n} right; taken as {}",
                    as_.join(", ")
                );
            }
        }
        let bytes = model.to_bytes();
        if let Err(e) = std::fs::write(format!("{dir}/{}", job.out), &bytes) {
            eprintln!("{}: {e}", job.out);
            return ExitCode::FAILURE;
        }
        println!(
            "{}: {} examples, trained in {seconds:.2} s, 5-fold cross-validated accuracy {:.1} %, {} KiB written to data/{}",
            job.name,
            data.len(),
            100.0 * cv,
            bytes.len() / 1024,
            job.out
        );
    }
    ExitCode::SUCCESS
}
