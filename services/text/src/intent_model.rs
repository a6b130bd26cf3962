//! The learned intent classifier: character n-grams of the Chinese runs and words, word
//! pairs and character trigrams of the Latin ones, hashed into a fixed table, scored by a
//! multinomial logistic regression. Trained from `data/intents-train.jsonl` by
//! `examples/train_intents.rs` into `data/intent-model.bin`, which ships with the crate and is
//! loaded once; the voice hook and the companion's offline engine both ask it.
//!
//! Why this shape: the utterances are short and spoken, full of fillers, slips and mixed
//! scripts; character n-grams see "换壁纸" in "给我换个新壁纸" and "wallpaper" in
//! "wallpapers", and a linear model over them trains in a second and answers in microseconds.
//!
//! Architecture invariant: normalised text in, probabilities out; no rules, no slots, no bus.

use std::sync::OnceLock;

use crate::script::is_han;

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
const N: usize = INTENTS.len();
/// Hash table size: 65,536 buckets × 7 intents × 4 bytes = 1.75 MiB resident.
const BUCKETS: usize = 1 << 16;
const MAGIC: &[u8; 8] = b"CABINIM1";
/// What the loaded model holds in memory.
pub const RESIDENT_BYTES: usize = BUCKETS * N * 4 + N * 4;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("intent model: not a cabin intent model (bad magic)")]
    BadMagic,
    #[error("intent model: truncated at byte {0}")]
    Truncated(usize),
    #[error("intent model: bucket {0} is out of range")]
    BadBucket(u32),
    #[error("intent model: bucket {0} holds a weight that is not a finite number")]
    NotFinite(u32),
    #[error("intent model: {0} bytes after the end")]
    Trailing(usize),
}

/// Weights of the linear model.
#[derive(Clone, PartialEq)]
pub struct Model {
    weights: Vec<f32>, // BUCKETS × N
    bias: [f32; N],
}

/// Training settings (the defaults are what ships).
#[derive(Debug, Clone, Copy)]
pub struct Training {
    pub epochs: usize,
    pub learning_rate: f32,
    pub l2: f32,
    pub seed: u64,
}

impl Default for Training {
    fn default() -> Self {
        Training {
            epochs: 25,
            learning_rate: 0.3,
            l2: 1e-6,
            seed: 20261206,
        }
    }
}

fn fnv1a(parts: &[&str]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h ^= 0x1f;
            h = h.wrapping_mul(0x0100_0193);
        }
        for b in p.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// The hashed features of a normalised utterance (sorted, without repeats).
pub fn features(text: &str) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(64);
    let mut push = |parts: &[&str]| out.push(fnv1a(parts) % BUCKETS as u32);
    let mut words: Vec<String> = Vec::new();
    let mut han = String::new();
    let flush_han = |han: &mut String, push: &mut dyn FnMut(&[&str])| {
        let chars: Vec<char> = han.chars().collect();
        for n in 1..=3 {
            for w in chars.windows(n) {
                let s: String = w.iter().collect();
                push(&["z", &s]);
            }
        }
        // Where a run starts and ends says a lot ("...吧", "帮我...").
        if let (Some(f), Some(l)) = (chars.first(), chars.last()) {
            push(&["zs", &f.to_string()]);
            push(&["ze", &l.to_string()]);
        }
        han.clear();
    };
    for token in text.split_whitespace() {
        let mut latin = String::new();
        for c in token.chars() {
            if is_han(c) {
                if !latin.is_empty() {
                    words.push(std::mem::take(&mut latin));
                }
                han.push(c);
            } else {
                if !han.is_empty() {
                    flush_han(&mut han, &mut push);
                }
                if c.is_alphanumeric() || c == '\'' {
                    latin.push(c);
                }
            }
        }
        if !han.is_empty() {
            flush_han(&mut han, &mut push);
        }
        if !latin.is_empty() {
            words.push(latin);
        }
    }
    for (i, w) in words.iter().enumerate() {
        push(&["w", w]);
        if let Some(next) = words.get(i + 1) {
            push(&["ww", w, next]);
        }
        let marked: Vec<char> = format!("^{w}$").chars().collect();
        for g in marked.windows(3) {
            let s: String = g.iter().collect();
            push(&["c", &s]);
        }
    }
    if let Some(first) = words.first() {
        push(&["ws", first]);
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self
            .weights
            .chunks(N)
            .filter(|r| r.iter().any(|w| *w != 0.0))
            .count();
        write!(f, "Model {{ {used} of {BUCKETS} buckets used }}")
    }
}

impl Model {
    fn zero() -> Model {
        Model {
            weights: vec![0.0; BUCKETS * N],
            bias: [0.0; N],
        }
    }

    /// The most likely intent of a normalised utterance and its probability.
    pub fn top(&self, text: &str) -> (&'static str, f32) {
        let p = self.predict(text);
        let k = (0..N)
            .max_by(|a, b| p[*a].total_cmp(&p[*b]))
            .unwrap_or(N - 1);
        (INTENTS[k], p[k])
    }

    /// Probabilities of the intents for a normalised utterance, in `INTENTS` order.
    pub fn predict(&self, text: &str) -> [f32; N] {
        self.predict_features(&features(text))
    }

    fn predict_features(&self, f: &[u32]) -> [f32; N] {
        let scale = 1.0 / (f.len().max(1) as f32).sqrt();
        let mut z = self.bias;
        for &b in f {
            let row = &self.weights[b as usize * N..b as usize * N + N];
            for k in 0..N {
                z[k] += row[k] * scale;
            }
        }
        let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in &mut z {
            *v = (*v - max).exp();
            sum += *v;
        }
        z.map(|v| v / sum)
    }

    /// Trains on (normalised text, intent index) pairs: AdaGrad on the cross-entropy, in a
    /// fixed shuffled order, so the same data always gives the same model.
    pub fn train(examples: &[(String, usize)], t: Training) -> Model {
        let data: Vec<(Vec<u32>, usize)> = examples
            .iter()
            .map(|(text, y)| (features(text), *y))
            .collect();
        let mut m = Model::zero();
        let mut g2 = vec![1e-8f32; BUCKETS * N];
        let mut gb = [1e-8f32; N];
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut state = t.seed | 1;
        for _ in 0..t.epochs {
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                let (f, y) = &data[i];
                let p = m.predict_features(f);
                let scale = 1.0 / (f.len().max(1) as f32).sqrt();
                for k in 0..N {
                    let g = p[k] - if k == *y { 1.0 } else { 0.0 };
                    gb[k] += g * g;
                    m.bias[k] -= t.learning_rate * g / gb[k].sqrt();
                    for &b in f {
                        let j = b as usize * N + k;
                        let gj = g * scale + t.l2 * m.weights[j];
                        g2[j] += gj * gj;
                        m.weights[j] -= t.learning_rate * gj / g2[j].sqrt();
                    }
                }
            }
        }
        m
    }

    /// The shipped form: magic, biases, then the non-zero buckets with their weights.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for b in self.bias {
            out.extend(b.to_le_bytes());
        }
        let rows: Vec<usize> = (0..BUCKETS)
            .filter(|b| self.weights[b * N..b * N + N].iter().any(|w| *w != 0.0))
            .collect();
        out.extend((rows.len() as u32).to_le_bytes());
        for b in rows {
            out.extend((b as u32).to_le_bytes());
            for w in &self.weights[b * N..b * N + N] {
                out.extend(w.to_le_bytes());
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], ModelError> {
            let s = bytes.get(at..at + n).ok_or(ModelError::Truncated(at))?;
            at += n;
            Ok(s)
        };
        if take(8)? != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let f32_at = |s: &[u8]| f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let mut m = Model::zero();
        for k in 0..N {
            m.bias[k] = f32_at(take(4)?);
        }
        let rows = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default());
        for _ in 0..rows {
            let b = u32::from_le_bytes(take(4)?.try_into().unwrap_or_default());
            if b as usize >= BUCKETS {
                return Err(ModelError::BadBucket(b));
            }
            for k in 0..N {
                let w = f32_at(take(4)?);
                if !w.is_finite() {
                    return Err(ModelError::NotFinite(b));
                }
                m.weights[b as usize * N + k] = w;
            }
        }
        if at != bytes.len() {
            return Err(ModelError::Trailing(bytes.len() - at));
        }
        Ok(m)
    }
}

/// The model shipped with this build (`data/intent-model.bin`).
pub fn bundled() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    // Compiled in and checked by the tests (it must equal a fresh training run).
    MODEL.get_or_init(|| {
        Model::from_bytes(include_bytes!("../data/intent-model.bin"))
            .expect("data/intent-model.bin is compiled in and checked by the tests")
    })
}

/// The training examples of a JSONL set (`{"text","intent",...}` a line), normalised.
pub fn examples(jsonl: &str) -> Result<Vec<(String, usize)>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
            let intent = v["intent"].as_str().unwrap_or_default();
            let y = INTENTS
                .iter()
                .position(|n| *n == intent)
                .ok_or_else(|| format!("line {}: unknown intent {intent:?}", i + 1))?;
            let text = v["text"].as_str().unwrap_or_default();
            Ok((crate::normalize(text), y))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_model_is_the_one_the_training_set_makes() {
        let data = examples(include_str!("../data/intents-train.jsonl")).unwrap();
        let fresh = Model::train(&data, Training::default());
        let shipped = Model::from_bytes(include_bytes!("../data/intent-model.bin")).unwrap();
        assert!(
            fresh == shipped,
            "data/intent-model.bin is stale: cargo run -p cabin-text --example train_intents"
        );
    }

    #[test]
    fn a_damaged_model_file_is_refused_by_name() {
        let good = bundled().to_bytes();
        assert_eq!(Model::from_bytes(b"nonsense"), Err(ModelError::BadMagic));
        assert!(matches!(
            Model::from_bytes(&good[..good.len() - 3]),
            Err(ModelError::Truncated(_))
        ));
    }

    #[test]
    fn features_see_both_scripts() {
        let f = features("帮我换个 starry night 壁纸");
        assert!(f.len() > 20);
        assert_eq!(f, features("帮我换个 starry night 壁纸"));
        assert_ne!(features("turn on"), features("turn off"));
    }
}
