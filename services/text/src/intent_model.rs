//! What a voice utterance wants: the learned [`Classifier`] over the voice hook's intents,
//! trained from `data/intents-train.jsonl` by `examples/train_models.rs` into
//! `data/intent-model.bin`, which ships compiled in and is loaded once; the voice hook and the
//! companion's tool requests both ask it.
//!
//! Architecture invariant: normalised text in, probabilities out; no rules, no slots, no bus.

use std::sync::OnceLock;

pub use crate::classifier::{Classifier, ModelError, Training};

/// The intents the model tells apart, in its output order.
pub const INTENTS: [&str; 7] = [
    "wallpaper.generate",
    "wallpaper.time_aware",
    "status.wallpaper",
    "status.drive_time",
    "feedback.submit",
    "companion.chat",
    "car.command",
];

/// The model shipped with this build (`data/intent-model.bin`).
pub fn bundled() -> &'static Classifier {
    static MODEL: OnceLock<Classifier> = OnceLock::new();
    // Compiled in and checked by the tests (it must equal a fresh training run).
    MODEL.get_or_init(|| {
        crate::classifier::compiled_in(
            include_bytes!("../data/intent-model.bin"),
            &INTENTS,
            "data/intent-model.bin",
        )
    })
}

/// The training examples of `data/intents-train.jsonl`'s form, normalised.
pub fn examples(jsonl: &str) -> Result<Vec<(String, usize)>, String> {
    crate::classifier::examples(jsonl, "intent", &INTENTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_is_the_one_the_training_set_makes() {
        let data = examples(include_str!("../data/intents-train.jsonl")).unwrap();
        let fresh = Classifier::train(&INTENTS, &data, Training::default());
        assert!(
            &fresh == bundled(),
            "data/intent-model.bin is stale: cargo run --release -p cabin-text --example train_models"
        );
    }
}
