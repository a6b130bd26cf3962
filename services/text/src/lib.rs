//! The text layer every service shares, with no bus: which script and language a
//! text is in (`script`), speech-recogniser output made regular (`normalize`), the scene a
//! wallpaper request asks for (`scene`), what a voice utterance wants (`intent_model`) and what
//! a chat message does and in which mood (`talk_model`), each a learned `classifier` trained
//! from a data set in `data/`. Voice, companion, feedback and wallpaper call these
//! functions rather than keeping their own, so one request reads the same everywhere.
//!
//! Architecture invariant: pure functions over text and bundled data; links no cabin crate.

pub mod classifier;
pub mod embedder;
pub mod intent_model;
pub mod normalize;
pub mod scene;
pub mod script;
pub mod talk_model;

pub use normalize::normalize;
pub use script::{is_han, language_of, language_of_locale};
