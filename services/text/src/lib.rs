//! The text layer every service shares, with no bus and no model: which script and language a
//! text is in (`script`), speech-recogniser output made regular (`normalize`), the scene a
//! wallpaper request asks for (`scene`), and what an utterance wants (`intent_model`, learned
//! from `data/intents-train.jsonl`). Voice, companion, feedback and wallpaper call these
//! functions rather than keeping their own, so one request reads the same everywhere.
//!
//! Architecture invariant: pure functions over text and bundled data; links no cabin crate.

pub mod intent_model;
pub mod normalize;
pub mod scene;
pub mod script;

pub use normalize::normalize;
pub use script::{is_han, language_of, language_of_locale};
