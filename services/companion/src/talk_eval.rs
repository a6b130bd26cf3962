//! How well the offline engine reads chat: a labelled set (`{"text","act","mood","lang"}` a
//! line, e.g. `eval/talk-heldout.jsonl`, written apart from the training set) scored through
//! [`crate::offline::detect_intent`] and [`crate::mood::detect`], the functions the engine
//! and the agent call. Used by `examples/evaluate_talk.rs` and the held-out test.

use serde::{Deserialize, Serialize};

use crate::mood::{self, Mood};
use crate::offline::detect_intent;

#[derive(Debug, Clone, Deserialize)]
pub struct Labelled {
    pub text: String,
    pub act: String,
    pub mood: String,
    pub lang: String,
}

/// Figures for one language (or all).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scores {
    pub messages: usize,
    pub act_accuracy: f64,
    pub mood_accuracy: f64,
    /// Of the messages said in a mood other than neutral, the share read as that mood.
    pub mood_recall_not_neutral: f64,
    /// Of the messages read as a mood other than neutral, the share that are in it.
    pub mood_precision_not_neutral: f64,
    /// Messages a person reads as neutral that were taken for a strong feeling.
    pub neutral_read_as_mood: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub all: Scores,
    pub zh: Scores,
    pub en: Scores,
    /// (act, right, of) per act.
    pub per_act: Vec<(String, usize, usize)>,
    /// (text, expected act, read act) of the misses, for reading.
    pub act_misses: Vec<(String, String, String)>,
}

pub fn parse(jsonl: &str) -> Result<Vec<Labelled>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

fn score(set: &[(&Labelled, String, Mood)]) -> Scores {
    let n = set.len().max(1) as f64;
    let act_right = set.iter().filter(|(l, act, _)| l.act == *act).count();
    let mood_right = set.iter().filter(|(l, _, m)| l.mood == m.as_str()).count();
    let felt: Vec<_> = set.iter().filter(|(l, _, _)| l.mood != "neutral").collect();
    let read: Vec<_> = set.iter().filter(|(_, _, m)| *m != Mood::Neutral).collect();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Scores {
        messages: set.len(),
        act_accuracy: act_right as f64 / n,
        mood_accuracy: mood_right as f64 / n,
        mood_recall_not_neutral: ratio(
            felt.iter().filter(|(l, _, m)| l.mood == m.as_str()).count(),
            felt.len(),
        ),
        mood_precision_not_neutral: ratio(
            read.iter().filter(|(l, _, m)| l.mood == m.as_str()).count(),
            read.len(),
        ),
        neutral_read_as_mood: set
            .iter()
            .filter(|(l, _, m)| l.mood == "neutral" && *m != Mood::Neutral)
            .count(),
    }
}

pub fn evaluate(set: &[Labelled]) -> Report {
    let read: Vec<(&Labelled, String, Mood)> = set
        .iter()
        .map(|l| {
            let act = detect_intent(&l.text).act().to_string();
            (l, act, mood::detect(&l.text).mood)
        })
        .collect();
    let of_lang = |lang: &str| -> Vec<(&Labelled, String, Mood)> {
        read.iter().filter(|r| r.0.lang == lang).cloned().collect()
    };
    let mut acts: Vec<String> = set.iter().map(|l| l.act.clone()).collect();
    acts.sort();
    acts.dedup();
    let per_act = acts
        .into_iter()
        .map(|a| {
            let of = read.iter().filter(|r| r.0.act == a);
            let right = of.clone().filter(|r| r.1 == a).count();
            let n = of.count();
            (a, right, n)
        })
        .collect();
    Report {
        all: score(&read),
        zh: score(&of_lang("zh")),
        en: score(&of_lang("en")),
        per_act,
        act_misses: read
            .iter()
            .filter(|r| r.0.act != r.1)
            .map(|r| (r.0.text.clone(), r.0.act.clone(), r.1.clone()))
            .collect(),
    }
}
