//! Scoring the analysis on a labelled set (`{"id","channel","text","locale"?,"rating"?,
//! "problem"}` per line): what `tests/analysis.rs` asserts and `examples/evaluate.rs` prints.
//!
//! Architecture invariant: evaluation only; nothing in the service calls it.

use std::collections::HashSet;

use serde::Deserialize;

use super::clustering::{Weights, cluster_with};
use super::{clustering_quality, language_splits, read};

#[derive(Debug, Deserialize)]
pub struct LabelledRow {
    #[serde(default)]
    pub id: String,
    pub text: String,
    pub problem: String,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub lang: Option<String>,
}

/// The figures for one labelled set.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub statements: usize,
    pub problems: usize,
    pub groups: usize,
    pub purity: f64,
    pub ari: f64,
    pub split_by_language: Vec<String>,
}

/// Parses a labelled JSONL set; the error names the line.
pub fn parse_labelled(text: &str) -> Result<Vec<LabelledRow>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Clusters the rows and scores the grouping against their labels.
pub fn score(rows: &[LabelledRow]) -> (Score, Vec<usize>) {
    score_with(rows, &Weights::default())
}

/// `score` with explicit clustering weights (for tuning).
pub fn score_with(rows: &[LabelledRow], w: &Weights) -> (Score, Vec<usize>) {
    let readings: Vec<_> = rows.iter().map(|r| read(&r.text)).collect();
    let groups = cluster_with(&readings, w);
    let truth: Vec<&str> = rows.iter().map(|r| r.problem.as_str()).collect();
    let zh: Vec<bool> = rows
        .iter()
        .zip(&readings)
        .map(
            |(r, reading)| match r.locale.as_deref().or(r.lang.as_deref()) {
                Some(l) => l.to_ascii_lowercase().starts_with("zh"),
                None => reading.zh,
            },
        )
        .collect();
    let (purity, ari) = clustering_quality(&groups, &truth);
    let score = Score {
        statements: rows.len(),
        problems: truth.iter().collect::<HashSet<_>>().len(),
        groups: groups.iter().collect::<HashSet<_>>().len(),
        purity,
        ari,
        split_by_language: language_splits(&groups, &truth, &zh)
            .into_iter()
            .map(str::to_string)
            .collect(),
    };
    (score, groups)
}
