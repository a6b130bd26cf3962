//! The learned reading of a statement: which topic and symptom of the lexicon it is about, and
//! which of the specific problems of its training corpus it reports (or is nearest to), as
//! probabilities, from a small bilingual embedding (`cabin_text::embedder`) with three heads,
//! trained on corpora of owner statements written apart from the evaluation sets
//! (`data/train/*.jsonl`, labelled by topic and symptom; `data/problems/*.jsonl`, labelled by
//! specific problem: one part with one fault, many in same-part pairs) and on the lexicon's own
//! words. The problem head is what tells two faults of one part apart in both languages. Where the lexicon's word lists see nothing, or see only "the
//! screen", the model still reads "车机一会儿就黑了" or "the thing behind the wheel went
//! dark", so statements phrased in ways no list foresaw land with their problem.
//!
//! The model file (`data/concept-model.bin`) is made by
//! `cargo run --release -p cabin-feedback --example train_concept_model`, deterministically; a
//! test checks that the shipped file is what training makes from the shipped data.
//!
//! Architecture invariant: text in, probabilities over the lexicon's concept ids out; it never
//! groups, and the lexicon's ids are its labels (a lexicon change means retraining, which the
//! label check at load makes impossible to forget).

use std::sync::OnceLock;

use cabin_text::classifier::ModelError;
use cabin_text::embedder::{Embedder, EmbedderTraining, Example};

use super::lexicon::{Kind, Lexicon, lexicon};
use super::reading::{Reading, read_folded};

/// The label of "no listed symptom".
pub const NO_SYMPTOM: &str = "none";

/// What ships (chosen by cross-validation on the training corpus only:
/// `train_concept_model --cv 5`).
pub const TRAINING: EmbedderTraining = EmbedderTraining {
    dim: 48,
    epochs: 15,
    learning_rate: 0.5,
    min_count: 2,
    seed: 20261206,
};

const MODEL: &[u8] = include_bytes!("../../data/concept-model.bin");

/// The learned guess for one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Guess {
    /// Topics with probability ≥ `KEEP`, most likely first.
    pub topics: Vec<(&'static str, f32)>,
    /// Symptoms with probability ≥ `KEEP`, most likely first ("no listed symptom" left out).
    pub symptoms: Vec<(&'static str, f32)>,
    /// The problem head's labels with probability ≥ 0.02 (index, probability).
    pub problems: Vec<(u32, f32)>,
}

/// The share of a text's features the model must know to guess at all.
const MIN_KNOWN: f32 = 0.65;

/// Topic probabilities below this are noise for the similarity.
const KEEP: f32 = 0.05;

/// The labels of the two heads, in the lexicon's order: topics, then symptoms and "none".
pub fn labels(lx: &Lexicon) -> (Vec<&str>, Vec<&str>) {
    let of = |kind: Kind| -> Vec<&str> {
        lx.concepts
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.id.as_str())
            .collect()
    };
    let mut symptoms = of(Kind::Symptom);
    symptoms.push(NO_SYMPTOM);
    (of(Kind::Topic), symptoms)
}

/// The model's input: the text's own n-grams and what the lexicon read in it (every concept
/// named, and its pick of main topic and symptom), so the model learns when to trust the
/// word lists' pick and when context says otherwise ("the screen is fine, it's the camera").
pub fn features(text: &str) -> Vec<u32> {
    let (r, folded) = read_folded(text);
    features_read(&folded, &r)
}

/// `features` from the lexicon's reading `r` and the folded text it read
/// (`reading::read_folded`).
pub fn features_read(folded: &str, r: &Reading) -> Vec<u32> {
    use cabin_text::classifier::feature;
    let mut f = cabin_text::classifier::features(folded);
    for (c, _) in &r.concepts {
        f.push(feature(&["lx", c]));
    }
    // The lexicon's picks count as much as several n-grams: the mean over a long statement's
    // many n-grams would drown them otherwise.
    for copy in ["1", "2", "3"] {
        if let Some(t) = r.topic {
            f.push(feature(&["lxt", t, copy]));
        }
        if let Some(s) = r.symptom {
            f.push(feature(&["lxs", s, copy]));
        }
    }
    f.sort_unstable();
    f.dedup();
    f
}

/// The corpus files of a data folder (`train/*.jsonl`, then `problems/*.jsonl`), each in
/// name order so training is deterministic.
pub fn corpus(data_dir: &std::path::Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for sub in ["train", "problems"] {
        let dir = data_dir.join(sub);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        for p in files {
            out.push(std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?);
        }
    }
    Ok(out)
}

/// The training examples and the problem head's labels: each corpus line, labelled either
/// with a topic and symptom (`{"text","topic","symptom",...}`) or with a fine-grained
/// problem (`{"text","problem",...}`: one part with one fault, so that statements about one
/// part with different faults end up apart), and each word of the lexicon, as written,
/// labelled for the heads it speaks to. Topic and symptom rows come first.
pub fn examples(corpus: &[&str], lx: &Lexicon) -> Result<(Vec<Example>, Vec<String>), String> {
    let (topics, symptoms) = labels(lx);
    let index = |list: &[&str], id: &str| list.iter().position(|l| *l == id);
    let mut rows = Vec::new();
    for (file, text) in corpus.iter().enumerate() {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("corpus file {file}, line {}", n + 1);
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{at}: {e}"))?;
            let field = |f: &str| v[f].as_str().map(str::to_string);
            let text = field("text").ok_or_else(|| format!("{at}: no text"))?;
            rows.push((at, text, field("topic"), field("symptom"), field("problem")));
        }
    }
    let mut problems: Vec<String> = rows.iter().filter_map(|r| r.4.clone()).collect();
    problems.sort();
    problems.dedup();
    let mut out = Vec::new();
    let mut by_problem = Vec::new();
    for (at, text, topic, symptom, problem) in rows {
        match (topic, symptom, problem) {
            (Some(topic), Some(symptom), None) => {
                let topic = index(&topics, &topic)
                    .ok_or_else(|| format!("{at}: unknown topic {topic:?}"))?;
                let symptom = index(&symptoms, &symptom)
                    .ok_or_else(|| format!("{at}: unknown symptom {symptom:?}"))?;
                out.push((text, vec![Some(topic), Some(symptom), None]));
            }
            (None, None, Some(problem)) => {
                let p = problems.binary_search(&problem).ok();
                by_problem.push((text, vec![None, None, p]));
            }
            _ => return Err(format!("{at}: either a topic and a symptom or a problem")),
        }
    }
    out.extend(by_problem);
    for (c, word) in &lx.words {
        let c = &lx.concepts[*c as usize];
        let labels = match c.kind {
            Kind::Topic => vec![index(&topics, &c.id), None, None],
            Kind::Symptom => vec![None, index(&symptoms, &c.id), None],
        };
        out.push((word.clone(), labels));
    }
    Ok((out, problems))
}

/// Trains the model on `examples` (their [`features`] computed once, given in the same order)
/// with the problem labels `examples` returned.
pub fn train(
    examples: &[Example],
    features: &[Vec<u32>],
    problems: &[String],
    lx: &Lexicon,
    t: EmbedderTraining,
) -> Embedder {
    let (topics, symptoms) = labels(lx);
    let problems: Vec<&str> = problems.iter().map(String::as_str).collect();
    let labels: Vec<&[Option<usize>]> = examples.iter().map(|e| e.1.as_slice()).collect();
    Embedder::train_features(
        &[
            ("topic", &topics),
            ("symptom", &symptoms),
            ("problem", &problems),
        ],
        features,
        &labels,
        t,
    )
}

/// Loads a model file, refusing one trained for another lexicon. The problem head's labels
/// are the training corpus's, which nothing here names.
pub fn load(bytes: &[u8], lx: &Lexicon) -> Result<Embedder, ModelError> {
    let (topics, symptoms) = labels(lx);
    let m = Embedder::from_bytes(bytes)?;
    let problems: Vec<String> = match m.heads().count() {
        3 => m.labels(2).to_vec(),
        _ => Vec::new(),
    };
    let problems: Vec<&str> = problems.iter().map(String::as_str).collect();
    m.expect_heads(&[
        ("topic", &topics),
        ("symptom", &symptoms),
        ("problem", &problems),
    ])
}

/// The model compiled into this build.
pub fn model() -> &'static Embedder {
    static MODEL_LOADED: OnceLock<Embedder> = OnceLock::new();
    // Compiled in and checked by the tests against the compiled-in lexicon.
    MODEL_LOADED.get_or_init(|| {
        load(MODEL, lexicon())
            .unwrap_or_else(|e| panic!("data/concept-model.bin is compiled in and tested: {e}"))
    })
}

/// Reads one statement: the lexicon's reading, with the learned model's beside it. Where the
/// word lists name no topic, the model's most likely one (when it is fairly sure) is the main
/// topic.
pub fn read(text: &str) -> Reading {
    let (mut r, folded) = read_folded(text);
    let g = guess(&folded, &r);
    if r.topic.is_none()
        && let Some(&(t, p)) = g.topics.first()
        && p >= LEARNED_TOPIC_ALONE
    {
        r.topic = Some(t);
        r.area = lexicon().concept(t).map(|c| c.area.as_str());
    }
    if r.symptom.is_none()
        && let Some(&(s, p)) = g.symptoms.first()
        && p >= LEARNED_TOPIC_ALONE
    {
        r.symptom = Some(s);
    }
    r.learned_topics = g.topics;
    r.learned_symptoms = g.symptoms;
    r.learned_problems = g.problems;
    r
}

/// How sure the learned model must be to name the main topic of a statement the word lists
/// found none in.
const LEARNED_TOPIC_ALONE: f32 = 0.4;

/// The model's guess for a statement, from the lexicon's reading of it and the folded text
/// that reading saw (`reading::read_folded`).
pub fn guess(folded: &str, lexicon_reading: &Reading) -> Guess {
    guess_with(model(), &features_read(folded, lexicon_reading))
}

/// `guess` with a given model (trained for the compiled-in lexicon), on the text's
/// `features`.
pub fn guess_with(m: &Embedder, f: &[u32]) -> Guess {
    static LABELS: OnceLock<(Vec<&'static str>, Vec<&'static str>)> = OnceLock::new();
    let (topics, symptoms) = LABELS.get_or_init(|| labels(lexicon()));
    // Gibberish and words of another field share a few character trigrams with the corpus;
    // a guess needs most of the text to be known.
    let (h, known) = m.embed_counting(f);
    // Gibberish and words of another field share a few character trigrams with the corpus;
    // a guess needs most of the text to be known.
    if f.is_empty() || (known as f32) < MIN_KNOWN * f.len() as f32 {
        return Guess {
            topics: Vec::new(),
            symptoms: Vec::new(),
            problems: Vec::new(),
        };
    }
    let likely = |labels: &[&'static str], p: Vec<f32>| {
        let mut kept: Vec<(&'static str, f32)> = labels
            .iter()
            .zip(p)
            .filter(|(l, p)| *p >= KEEP && **l != NO_SYMPTOM)
            .map(|(l, p)| (*l, p))
            .collect();
        kept.sort_by(|a, b| b.1.total_cmp(&a.1));
        kept
    };
    Guess {
        topics: likely(topics, m.predict_embedded(0, &h)),
        symptoms: likely(symptoms, m.predict_embedded(1, &h)),
        problems: m
            .predict_embedded(2, &h)
            .into_iter()
            .enumerate()
            .filter(|(_, p)| *p >= 0.02)
            .map(|(i, p)| (i as u32, p))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_loads_for_this_lexicon_and_reads_unlisted_phrasings() {
        let m = model();
        assert_eq!(m.labels(0).len(), labels(lexicon()).0.len());
        let read_guess = |t: &str| {
            let (r, folded) = read_folded(t);
            guess(&folded, &r)
        };
        let g = read_guess("车机屏幕又黑了，什么都不显示");
        assert!(!g.topics.is_empty());
        // Nothing the model knows: no guess rather than a wild one.
        let g = read_guess("qqqq zzzz");
        assert!(g.topics.is_empty() && g.symptoms.is_empty());
    }

    #[test]
    fn the_shipped_model_is_what_training_makes_from_the_shipped_data() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
        let corpus = super::corpus(&dir).unwrap();
        let corpus: Vec<&str> = corpus.iter().map(String::as_str).collect();
        let (ex, problems) = examples(&corpus, lexicon()).unwrap();
        let f: Vec<_> = ex.iter().map(|(t, _)| features(t)).collect();
        let fresh = train(&ex, &f, &problems, lexicon(), TRAINING);
        assert!(
            &fresh == model(),
            "data/concept-model.bin is stale: cargo run --release -p cabin-feedback --example train_concept_model"
        );
    }

    #[test]
    fn a_model_for_another_lexicon_is_refused_by_name() {
        let bytes = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/concept-model.bin"
        ))
        .unwrap();
        let other = Lexicon::parse(
            r#"
[[topic]]
id = "only"
level = 1
en = "only"
zh = "唯一"
words_en = ["only"]
words_zh = ["唯一"]
[[symptom]]
id = "s"
en = "s"
zh = "症"
words_en = ["s"]
words_zh = ["症"]
[sentiment]
negative_en = []
negative_zh = []
positive_en = []
positive_zh = []
negators_en = []
negators_zh = []
[severity]
critical_en = []
critical_zh = []
"#,
        )
        .unwrap();
        assert!(matches!(
            load(&bytes, &other),
            Err(ModelError::WrongLabels { .. })
        ));
        assert_eq!(
            load(b"not a model file", lexicon()).unwrap_err(),
            ModelError::BadMagic
        );
    }
}
