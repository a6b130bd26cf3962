//! What a chat message to the companion is doing (its act: a greeting, a joke asked for, talk
//! about work…) and the mood it is said in, read by two learned [`Classifier`]s trained from
//! `data/talk-train.jsonl` by `examples/train_models.rs` into `data/talk-act-model.bin` and
//! `data/talk-mood-model.bin`. The companion's offline engine answers by act and the agent
//! tracks the mood; neither keeps a keyword list.
//!
//! Architecture invariant: normalised text in, probabilities out; no rules, no bus.

use std::sync::OnceLock;

pub use crate::classifier::{Classifier, ModelError, Training};

/// What a message does, in the act model's output order.
pub const ACTS: [&str; 19] = [
    "recall",
    "joke",
    "ask_self",
    "thanks",
    "bye",
    "greet",
    "food",
    "music",
    "weather",
    "plans",
    "traffic",
    "work",
    "family",
    "sleep",
    "compliment",
    "yes",
    "no",
    "question",
    "smalltalk",
];

/// How it is said, in the mood model's output order.
pub const MOODS: [&str; 8] = [
    "neutral", "happy", "tired", "sad", "angry", "anxious", "bored", "lonely",
];

/// The settings the shipped act model was trained with (chosen by cross-validation on the
/// training set; the held-out set is only scored).
pub const ACT_TRAINING: Training = Training {
    epochs: 25,
    learning_rate: 0.3,
    l2: 1e-6,
    seed: 20261206,
};

/// The settings the shipped mood model was trained with.
pub const MOOD_TRAINING: Training = Training {
    epochs: 25,
    learning_rate: 0.3,
    l2: 1e-6,
    seed: 20261206,
};

/// The act model shipped with this build.
pub fn acts() -> &'static Classifier {
    static MODEL: OnceLock<Classifier> = OnceLock::new();
    MODEL.get_or_init(|| {
        crate::classifier::compiled_in(
            include_bytes!("../data/talk-act-model.bin"),
            &ACTS,
            "data/talk-act-model.bin",
        )
    })
}

/// The mood model shipped with this build.
pub fn moods() -> &'static Classifier {
    static MODEL: OnceLock<Classifier> = OnceLock::new();
    MODEL.get_or_init(|| {
        crate::classifier::compiled_in(
            include_bytes!("../data/talk-mood-model.bin"),
            &MOODS,
            "data/talk-mood-model.bin",
        )
    })
}

/// The act examples of `data/talk-train.jsonl`'s form, normalised.
pub fn act_examples(jsonl: &str) -> Result<Vec<(String, usize)>, String> {
    crate::classifier::examples(jsonl, "act", &ACTS)
}

/// The mood examples of `data/talk-train.jsonl`'s form, normalised.
pub fn mood_examples(jsonl: &str) -> Result<Vec<(String, usize)>, String> {
    crate::classifier::examples(jsonl, "mood", &MOODS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRAIN: &str = include_str!("../data/talk-train.jsonl");

    #[test]
    fn the_shipped_models_are_the_ones_the_training_set_makes() {
        let stale = "stale: cargo run --release -p cabin-text --example train_models";
        let acts_fresh = Classifier::train(&ACTS, &act_examples(TRAIN).unwrap(), ACT_TRAINING);
        assert!(&acts_fresh == acts(), "data/talk-act-model.bin is {stale}");
        let moods_fresh = Classifier::train(&MOODS, &mood_examples(TRAIN).unwrap(), MOOD_TRAINING);
        assert!(
            &moods_fresh == moods(),
            "data/talk-mood-model.bin is {stale}"
        );
    }
}
