//! The offline engine's reading of chat on the held-out set `eval/talk-heldout.jsonl` (456
//! messages, 19 acts, 8 moods, zh and en, written apart from the training set in
//! `services/text/data/talk-train.jsonl`). Report: `cargo run --release -p cabin-companion
//! --example evaluate_talk`.

use cabin_companion::talk_eval::{evaluate, parse};

const HELDOUT: &str = include_str!("../eval/talk-heldout.jsonl");
const TRAIN: &str = include_str!("../../text/data/talk-train.jsonl");

fn key(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

#[test]
fn the_held_out_set_shares_no_sentence_with_the_training_set() {
    let train: std::collections::HashSet<String> =
        parse(TRAIN).unwrap().iter().map(|l| key(&l.text)).collect();
    let held = parse(HELDOUT).unwrap();
    assert!(held.len() >= 300, "{}", held.len());
    let shared: Vec<&str> = held
        .iter()
        .filter(|l| train.contains(&key(&l.text)))
        .map(|l| l.text.as_str())
        .collect();
    assert!(shared.is_empty(), "in both sets: {shared:?}");
}

#[test]
fn acts_and_moods_are_read_on_messages_never_trained_on() {
    let report = evaluate(&parse(HELDOUT).unwrap());
    for (lang, s) in [("zh", &report.zh), ("en", &report.en)] {
        assert!(s.messages >= 150, "{lang}: {}", s.messages);
        assert!(s.act_accuracy >= 0.85, "{lang} acts: {s:?}");
        assert!(s.mood_accuracy >= 0.75, "{lang} moods: {s:?}");
        assert!(s.mood_recall_not_neutral >= 0.65, "{lang} moods: {s:?}");
        assert!(s.mood_precision_not_neutral >= 0.65, "{lang} moods: {s:?}");
    }
    for (act, right, of) in &report.per_act {
        assert!(*right * 10 >= *of * 6, "{act}: {right}/{of}");
    }
}
