//! From redacted items to recurring problems, in Chinese and English, offline.
//!
//! - `lexicon`: the bilingual concept lexicon (`data/concepts.toml`) and its matchers;
//! - `concept_model`: the learned bilingual reading of topics and symptoms (a small embedding
//!   trained on `data/train/` and the lexicon's words);
//! - `reading`: one statement to its main topic, symptom, concepts, words, tone, danger;
//! - `clustering`: average-linkage agglomerative clustering with a similarity threshold;
//! - `summary`: labels, c-TF-IDF keywords, trend, severity, quotes, improvement points;
//! - `quality`: purity, adjusted Rand index and language splits against labelled truth;
//! - `eval`: scoring a labelled JSONL set (the tests and `examples/evaluate.rs`).
//!
//! Chinese and English statements of one problem meet through the concepts (the lexicon's and
//! the learned model's, which reads phrasings no word list foresaw); words
//! the lexicon does not know (English stems, Chinese character pairs) still make statements
//! about a new kind of problem group with each other.

pub mod clustering;
pub mod concept_model;
pub mod eval;
pub mod lexicon;
pub mod quality;
pub mod reading;
pub mod summary;

pub use clustering::cluster;
pub use concept_model::read;
pub use quality::{clustering_quality, language_splits};
pub use reading::Reading;
pub use summary::{Problem, channel_name, problems, summarise};
