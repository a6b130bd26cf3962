//! The intent model on `eval/intents-heldout.jsonl`: 450 zh/en utterances written apart from
//! the training set (`data/intents-train.jsonl`) by another hand: commands, chit-chat,
//! feedback, questions and commands for the car, as a recogniser writes them.

use std::collections::{BTreeMap, HashSet};

use cabin_voice::intent::parse;

fn rows(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn key(v: &serde_json::Value) -> String {
    v["text"].as_str().unwrap().trim().to_lowercase()
}

#[test]
fn training_and_held_out_sets_never_share_a_sentence() {
    let train: HashSet<String> = rows(include_str!("../data/intents-train.jsonl"))
        .iter()
        .map(key)
        .collect();
    let held = rows(include_str!("../eval/intents-heldout.jsonl"));
    assert!(held.len() >= 300);
    for v in &held {
        assert!(!train.contains(&key(v)), "shared: {}", v["text"]);
    }
}

#[test]
fn held_out_utterances_get_their_intent_in_both_languages() {
    let mut by: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    for v in rows(include_str!("../eval/intents-heldout.jsonl")) {
        let (text, want, lang) = (
            v["text"].as_str().unwrap(),
            v["intent"].as_str().unwrap(),
            v["lang"].as_str().unwrap(),
        );
        let got = parse(text, None);
        let e = by.entry((lang.into(), want.into())).or_insert((0, 0));
        e.1 += 1;
        if got.intent.name() == want {
            e.0 += 1;
        } else {
            misses.push(format!("{lang} {want} -> {}: {text}", got.intent.name()));
        }
        // Talk is never turned away.
        if want == "companion.chat" {
            assert_ne!(got.intent.name(), "unknown", "{text}");
        }
    }
    for lang in ["zh", "en"] {
        let (ok, n) = by
            .iter()
            .filter(|((l, _), _)| l == lang)
            .fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
        let accuracy = ok as f64 / n as f64;
        println!("{lang}: {ok}/{n} = {:.1} %", accuracy * 100.0);
        for ((l, intent), (ok, n)) in &by {
            if l == lang {
                println!("    {intent:<22} {ok}/{n}");
            }
        }
        assert!(
            accuracy >= 0.95,
            "{lang}: {accuracy:.3}\n{}",
            misses.join("\n")
        );
    }
}
