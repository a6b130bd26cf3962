//! Trains the feedback analysis's concept model (`data/concept-model.bin`) from
//! `data/train/*.jsonl`, `data/problems/*.jsonl` and the lexicon's words.
//!
//!     cargo run --release -p cabin-feedback --example train_concept_model
//!     cargo run --release -p cabin-feedback --example train_concept_model -- --cv 5 [--dim 48 --epochs 30 --lr 0.5 --min-count 2]
//!
//! `--cv K` writes nothing: it trains K models, each without one fold of the corpus (the
//! lexicon's words always stay in), and prints how well the held-out fold is read (topic, its
//! problem area, symptom; Chinese and English apart), for choosing the settings without
//! touching an evaluation set.

use std::process::ExitCode;

use cabin_feedback::analysis::concept_model::{self, TRAINING};
use cabin_feedback::analysis::lexicon::lexicon;
use cabin_text::embedder::EmbedderTraining;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let mut t: EmbedderTraining = TRAINING;
    let parse = |name: &str, into: &mut f64| {
        if let Some(v) = flag(name).and_then(|v| v.parse().ok()) {
            *into = v;
        }
    };
    let (mut dim, mut epochs, mut lr, mut min_count) = (
        t.dim as f64,
        t.epochs as f64,
        f64::from(t.learning_rate),
        t.min_count as f64,
    );
    parse("--dim", &mut dim);
    parse("--epochs", &mut epochs);
    parse("--lr", &mut lr);
    parse("--min-count", &mut min_count);
    t.dim = dim as usize;
    t.epochs = epochs as usize;
    t.learning_rate = lr as f32;
    t.min_count = min_count as usize;

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data");
    let corpus = match concept_model::corpus(std::path::Path::new(dir)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("train_concept_model: {e}");
            return ExitCode::FAILURE;
        }
    };
    let corpus_refs: Vec<&str> = corpus.iter().map(String::as_str).collect();
    let lx = lexicon();
    let (examples, problems) = match concept_model::examples(&corpus_refs, lx) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("train_concept_model: {e}");
            return ExitCode::FAILURE;
        }
    };
    let features: Vec<Vec<u32>> = examples
        .iter()
        .map(|(text, _)| concept_model::features(text))
        .collect();
    // Topic and symptom statements come first; only they are held out by --cv.
    let corpus_n = examples
        .iter()
        .filter(|e| e.1[0].is_some() && e.1[1].is_some())
        .count();
    let problem_n = examples.iter().filter(|e| e.1[2].is_some()).count();
    eprintln!(
        "{corpus_n} topic and symptom statements, {problem_n} statements of {} problems, {} lexicon words; {t:?}",
        problems.len(),
        examples.len() - corpus_n - problem_n
    );

    if let Some(k) = flag("--cv").and_then(|v| v.parse::<usize>().ok()) {
        let (topics, symptoms) = concept_model::labels(lx);
        let area = |k: usize| lx.concept(topics[k]).map_or("", |c| c.area.as_str());
        // [lang][topic, area, symptom] right, and count per language.
        let mut right = [[0usize; 3]; 2];
        // The lexicon's own reading of the same statements: [lang][area right, no topic].
        let mut lexicon_area = [[0usize; 2]; 2];
        let mut total = [0usize; 2];
        for fold in 0..k {
            let keep = |i: usize| i >= corpus_n || i % k != fold;
            let train: Vec<_> = (0..examples.len())
                .filter(|i| keep(*i))
                .map(|i| examples[i].clone())
                .collect();
            let train_features: Vec<_> = (0..examples.len())
                .filter(|i| keep(*i))
                .map(|i| features[i].clone())
                .collect();
            let m = concept_model::train(&train, &train_features, &problems, lx, t);
            // The linear classifier on the same folds, as a yardstick (--linear).
            let linear = args.iter().any(|a| a == "--linear").then(|| {
                let topic_only: Vec<(String, usize)> = train
                    .iter()
                    .filter_map(|(x, y)| y[0].map(|y| (cabin_text::normalize(x), y)))
                    .collect();
                cabin_text::classifier::Classifier::train(
                    &topics,
                    &topic_only,
                    cabin_text::classifier::Training::default(),
                )
            });
            for (i, (text, y)) in examples.iter().enumerate().take(corpus_n) {
                if i % k != fold {
                    continue;
                }
                let zh = cabin_text::language_of(text) == "zh";
                let h = m.embed_features(&features[i]);
                let argmax = |p: Vec<f32>| (0..p.len()).max_by(|a, b| p[*a].total_cmp(&p[*b]));
                let tp = match &linear {
                    Some(c) => argmax(c.predict(&cabin_text::normalize(text))),
                    None => argmax(m.predict_embedded(0, &h)),
                }
                .unwrap_or(0);
                let sp = argmax(m.predict_embedded(1, &h)).unwrap_or(0);
                let (ty, sy) = (y[0].unwrap_or(0), y[1].unwrap_or(0));
                let l = usize::from(zh);
                total[l] += 1;
                right[l][0] += usize::from(tp == ty);
                // The area is read from the summed probabilities of its topics.
                let p = m.predict_embedded(0, &h);
                let mut by_area: std::collections::HashMap<&str, f32> = Default::default();
                for (k, pk) in p.iter().enumerate() {
                    *by_area.entry(area(k)).or_insert(0.0) += pk;
                }
                let best_area = by_area
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or("", |(a, _)| *a);
                right[l][1] += usize::from(best_area == area(ty));
                right[l][2] += usize::from(symptoms[sp] == symptoms[sy]);
                let r = cabin_feedback::analysis::reading::read_lexicon(text);
                lexicon_area[l][0] += usize::from(r.area == Some(area(ty)));
                lexicon_area[l][1] += usize::from(r.area.is_none());
            }
            eprintln!("fold {} of {k} done", fold + 1);
        }
        for (l, name) in [(0, "en"), (1, "zh")] {
            let share = |r: usize| r as f64 / total[l].max(1) as f64;
            println!(
                "{name}: {} statements: topic {:.3}, area {:.3}, symptom {:.3}; \
                 the lexicon alone: area {:.3}, no topic {:.3}",
                total[l],
                share(right[l][0]),
                share(right[l][1]),
                share(right[l][2]),
                share(lexicon_area[l][0]),
                share(lexicon_area[l][1])
            );
        }
        return ExitCode::SUCCESS;
    }

    let start = std::time::Instant::now();
    let m = concept_model::train(&examples, &features, &problems, lx, t);
    let bytes = m.to_bytes();
    let out = format!("{dir}/concept-model.bin");
    if let Err(e) = std::fs::write(&out, &bytes) {
        eprintln!("train_concept_model: {out}: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "{out}: {m:?}, {} bytes, trained in {:.1} s",
        bytes.len(),
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
