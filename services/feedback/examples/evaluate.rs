//! The analysis scored on labelled sets: purity, adjusted Rand index, groups against problems
//! and the problems split by language, then (with --groups) what went where.
//!
//!     cargo run --release -p cabin-feedback --example evaluate -- services/feedback/eval/test.jsonl
//!     cargo run --release -p cabin-feedback --example evaluate -- --groups FILE.jsonl
//!     cargo run --release -p cabin-feedback --example evaluate -- --sweep FILE.jsonl   # thresholds
//!     cargo run --release -p cabin-feedback --example evaluate -- --explain "车机卡顿"     # one text

use std::collections::BTreeMap;
use std::process::ExitCode;

use cabin_feedback::analysis::clustering::Weights;
use cabin_feedback::analysis::eval::{parse_labelled, score_with};
use cabin_feedback::analysis::read;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let show_groups = args.iter().any(|a| a == "--groups");
    if let Some(i) = args.iter().position(|a| a == "--explain") {
        explain(args.get(i + 1).map_or("", |s| s.as_str()));
        return ExitCode::SUCCESS;
    }
    let weights_at = args.iter().position(|a| a == "--weights");
    let weights =
        match weights_at.map(|i| Weights::parse(args.get(i + 1).map_or("", String::as_str))) {
            None => Weights::default(),
            Some(Ok(w)) => w,
            Some(Err(e)) => {
                eprintln!("--weights: {e}");
                return ExitCode::from(2);
            }
        };
    let files: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && weights_at.is_none_or(|w| *i != w + 1))
        .map(|(_, a)| a)
        .collect();
    if files.is_empty() {
        eprintln!("usage: evaluate [--groups] LABELLED.jsonl...");
        return ExitCode::from(2);
    }
    for file in files {
        let rows = match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| parse_labelled(&t))
        {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (s, groups) = score_with(&rows, &weights);
        println!(
            "{file}: {} statements, {} problems -> {} groups: purity {:.3}, ARI {:.3}, split by language: {:?}",
            s.statements, s.problems, s.groups, s.purity, s.ari, s.split_by_language
        );
        if args.iter().any(|a| a == "--sweep") {
            let readings: Vec<_> = rows.iter().map(|r| read(&r.text)).collect();
            let truth: Vec<&str> = rows.iter().map(|r| r.problem.as_str()).collect();
            for step in 4..=14 {
                let at = step as f32 * 0.05;
                let g = cabin_feedback::analysis::clustering::cluster_with(
                    &readings,
                    &Weights {
                        merge_at: at,
                        ..weights
                    },
                );
                let (purity, ari) = cabin_feedback::analysis::clustering_quality(&g, &truth);
                let n = g.iter().max().map_or(0, |m| m + 1);
                println!("    merge at {at:.2}: {n} groups, purity {purity:.3}, ARI {ari:.3}");
            }
        }
        if args.iter().any(|a| a == "--pairs") {
            // Mean similarity within and between problems, by language pair: where a merge
            // of two problems comes from.
            let readings: Vec<_> = rows.iter().map(|r| read(&r.text)).collect();
            let sim = cabin_feedback::analysis::clustering::similarities(&readings, &weights);
            let zh: Vec<bool> = readings.iter().map(|r| r.zh).collect();
            let problems: std::collections::BTreeSet<&str> =
                rows.iter().map(|r| r.problem.as_str()).collect();
            let mean = |a: &str, b: &str, cross: bool| {
                let (mut s, mut n) = (0.0, 0);
                for i in 0..rows.len() {
                    for j in 0..rows.len() {
                        if i != j
                            && rows[i].problem == a
                            && rows[j].problem == b
                            && (zh[i] != zh[j]) == cross
                        {
                            s += sim[i][j];
                            n += 1;
                        }
                    }
                }
                s / n.max(1) as f32
            };
            for a in &problems {
                let (within, within_x) = (mean(a, a, false), mean(a, a, true));
                let nearest = problems
                    .iter()
                    .filter(|b| *b != a)
                    .map(|b| (mean(a, b, false).max(mean(a, b, true)), *b))
                    .max_by(|x, y| x.0.total_cmp(&y.0));
                if let Some((between, b)) = nearest {
                    println!(
                        "    {a:<36} within {within:.2} (across languages {within_x:.2}); nearest {b} {between:.2}"
                    );
                }
            }
        }
        if show_groups {
            let mut by_group: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, g) in groups.iter().enumerate() {
                by_group.entry(*g).or_default().push(i);
            }
            for (g, members) in by_group {
                let mut problems: BTreeMap<&str, usize> = BTreeMap::new();
                for &i in &members {
                    *problems.entry(rows[i].problem.as_str()).or_insert(0) += 1;
                }
                println!("group {g}: {problems:?}");
                for &i in &members {
                    let r = read(&rows[i].text);
                    let text: String = rows[i].text.chars().take(90).collect();
                    let topics: Vec<String> = r
                        .topics
                        .iter()
                        .map(|(t, s)| format!("{t}:{s:.1}"))
                        .collect();
                    println!(
                        "    {:<22} {:<14} {:<40} {}",
                        rows[i].problem,
                        r.symptom.unwrap_or("-"),
                        topics.join(","),
                        text
                    );
                }
            }
        }
    }
    ExitCode::SUCCESS
}

/// Which words of one text the lexicon read as what.
fn explain(text: &str) {
    use cabin_feedback::analysis::lexicon::{english_words, fold, lexicon, stem};
    let lx = lexicon();
    let folded = fold(text);
    let stems: Vec<String> = english_words(&folded).map(stem).collect();
    for (start, len, c) in lx.concepts_en(&stems) {
        println!(
            "{:<30} {}",
            stems[start..start + len].join(" "),
            lx.concepts[c as usize].id
        );
    }
    for (start, len, c) in lx.concepts_zh(&folded) {
        println!(
            "{:<30} {}",
            &folded[start..start + len],
            lx.concepts[c as usize].id
        );
    }
    let r = read(text);
    let problems = cabin_feedback::analysis::concept_model::model().labels(2);
    for (i, p) in &r.learned_problems {
        println!("problem {:<40} {p:.2}", problems[*i as usize]);
    }
    println!("{r:#?}");
}
