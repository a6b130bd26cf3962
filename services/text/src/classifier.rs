//! A small text classifier: character n-grams of the Chinese runs and words, word pairs and
//! character trigrams of the Latin ones, hashed into a fixed table, scored by a multinomial
//! logistic regression over any set of labels. The voice hook's intents
//! ([`crate::intent_model`]) and the companion's acts and moods ([`crate::talk_model`]) are
//! each one of these, trained by an example of this crate into a file under `data/` that
//! ships compiled in.
//!
//! Why this shape: the utterances are short and spoken, full of fillers, slips and mixed
//! scripts; character n-grams see "换壁纸" in "给我换个新壁纸" and "wallpaper" in
//! "wallpapers", and a linear model over them trains in a second and answers in microseconds.
//!
//! Architecture invariant: normalised text in, probabilities out; no rules, no slots, no bus.

use crate::script::is_han;

/// Hash space of the features: 2^20 buckets keep collisions rare (a few in a hundred) for
/// tens of thousands of distinct n-grams. Only the buckets training touched are stored.
pub(crate) const BUCKETS: usize = 1 << 20;
const MAGIC: &[u8; 8] = b"CABINTC2";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("text model: not a cabin text model (bad magic)")]
    BadMagic,
    #[error("text model: truncated at byte {0}")]
    Truncated(usize),
    #[error("text model: a label is not UTF-8 or there are no labels")]
    BadLabels,
    #[error("text model: bucket {0} is out of range")]
    BadBucket(u32),
    #[error("text model: bucket {0} holds a weight that is not a finite number")]
    NotFinite(u32),
    #[error("text model: {0} bytes after the end")]
    Trailing(usize),
    #[error("text model: labels {found:?}, this build expects {expected:?}")]
    WrongLabels {
        found: Vec<String>,
        expected: Vec<String>,
    },
}

/// Weights of the linear model and the labels it tells apart, in output order. Stored sparse
/// and quantised: for each bucket training touched (sorted), one scale and one signed byte per
/// label, so a model is about a quarter of its float size in memory and on disk.
#[derive(Clone, PartialEq)]
pub struct Classifier {
    labels: Vec<String>,
    bias: Vec<f32>,
    buckets: Vec<u32>,
    scales: Vec<f32>,
    weights: Vec<i8>, // buckets × labels
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

/// One feature of the caller's own (a concept a lexicon found, say), hashed into the same
/// table as the text's: `parts` name it, the first being a kind no text feature uses.
pub fn feature(parts: &[&str]) -> u32 {
    fnv1a(parts) % BUCKETS as u32
}

/// The hash of `fnv1a(&[kind, s])` where `s` is `chars` written out, without writing it.
fn hash_chars(kind: &str, chars: &[char]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in kind.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h ^= 0x1f;
    h = h.wrapping_mul(0x0100_0193);
    let mut buf = [0u8; 4];
    for c in chars {
        for b in c.encode_utf8(&mut buf).bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h % BUCKETS as u32
}

/// The hashed features of a normalised utterance (sorted, without repeats).
pub fn features(text: &str) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(128);
    let mut words: Vec<String> = Vec::new();
    let mut han: Vec<char> = Vec::new();
    let flush_han = |chars: &mut Vec<char>, out: &mut Vec<u32>| {
        for n in 1..=3 {
            for w in chars.windows(n) {
                out.push(hash_chars("z", w));
            }
        }
        // Where a run starts and ends says a lot ("...吧", "帮我...").
        if let (Some(f), Some(l)) = (chars.first(), chars.last()) {
            out.push(hash_chars("zs", std::slice::from_ref(f)));
            out.push(hash_chars("ze", std::slice::from_ref(l)));
        }
        // What a negation governs reads apart from the same words unnegated ("心情不好" is not
        // "心情好"): the one or two characters after 不/没/别.
        for (i, c) in chars.iter().enumerate() {
            if matches!(c, '不' | '没' | '别') {
                for n in 1..=2 {
                    if let Some(w) = chars.get(i + 1..i + 1 + n) {
                        out.push(hash_chars("zn", w));
                    }
                }
            }
        }
        chars.clear();
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
                    flush_han(&mut han, &mut out);
                }
                if c.is_alphanumeric() || c == '\'' {
                    latin.push(c);
                }
            }
        }
        if !han.is_empty() {
            flush_han(&mut han, &mut out);
        }
        if !latin.is_empty() {
            words.push(latin);
        }
    }
    // Words in a negation's scope (the next three) also count as negated ("not happy").
    let mut push = |parts: &[&str]| out.push(fnv1a(parts) % BUCKETS as u32);
    let mut marked: Vec<char> = Vec::new();
    let mut trigrams: Vec<u32> = Vec::new();
    let mut negated = 0usize;
    for (i, w) in words.iter().enumerate() {
        if negated > 0 {
            push(&["wn", w]);
            negated -= 1;
        }
        if matches!(
            w.as_str(),
            "not" | "no" | "never" | "nothing" | "hardly" | "without"
        ) || w.ends_with("n't")
            || w.ends_with("nt")
                && matches!(
                    w.as_str(),
                    "dont" | "cant" | "wont" | "isnt" | "wasnt" | "didnt" | "aint" | "arent"
                )
        {
            negated = 3;
        }
        push(&["w", w]);
        if let Some(next) = words.get(i + 1) {
            push(&["ww", w, next]);
        }
        marked.clear();
        marked.push('^');
        marked.extend(w.chars());
        marked.push('$');
        trigrams.extend(marked.windows(3).map(|g| hash_chars("c", g)));
    }
    if let Some(first) = words.first() {
        push(&["ws", first]);
    }
    out.append(&mut trigrams);
    out.sort_unstable();
    out.dedup();
    out
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Classifier {{ labels {:?}, {} of {BUCKETS} buckets used }}",
            self.labels,
            self.buckets.len()
        )
    }
}

impl Classifier {
    /// The sparse, quantised form of dense trained weights (`BUCKETS × labels`).
    fn from_dense(labels: &[&str], bias: Vec<f32>, dense: &[f32]) -> Classifier {
        let n = labels.len();
        let mut m = Classifier {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            bias,
            buckets: Vec::new(),
            scales: Vec::new(),
            weights: Vec::new(),
        };
        for (b, row) in dense.chunks(n).enumerate() {
            let max = row.iter().fold(0f32, |a, w| a.max(w.abs()));
            if max == 0.0 {
                continue;
            }
            let scale = max / 127.0;
            m.buckets.push(b as u32);
            m.scales.push(scale);
            m.weights.extend(
                row.iter()
                    .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8),
            );
        }
        m
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// What the loaded model holds in memory.
    pub fn resident_bytes(&self) -> usize {
        self.bias.len() * 4 + self.buckets.len() * 8 + self.weights.len()
    }

    /// Refuses a model whose labels are not the ones the caller was built for.
    pub fn expect_labels(self, expected: &[&str]) -> Result<Classifier, ModelError> {
        if self
            .labels
            .iter()
            .map(String::as_str)
            .eq(expected.iter().copied())
        {
            Ok(self)
        } else {
            Err(ModelError::WrongLabels {
                found: self.labels,
                expected: expected.iter().map(|l| l.to_string()).collect(),
            })
        }
    }

    /// The most likely label of a normalised text and its probability.
    pub fn top(&self, text: &str) -> (&str, f32) {
        let p = self.predict(text);
        let k = (0..p.len())
            .max_by(|a, b| p[*a].total_cmp(&p[*b]))
            .unwrap_or(0);
        (&self.labels[k], p[k])
    }

    /// Probabilities of the labels for a normalised text, in `labels()` order.
    pub fn predict(&self, text: &str) -> Vec<f32> {
        let f = features(text);
        let n = self.labels.len();
        let norm = 1.0 / (f.len().max(1) as f32).sqrt();
        let mut z = self.bias.clone();
        for b in f {
            if let Ok(r) = self.buckets.binary_search(&b) {
                let scale = self.scales[r] * norm;
                for (zk, q) in z.iter_mut().zip(&self.weights[r * n..r * n + n]) {
                    *zk += f32::from(*q) * scale;
                }
            }
        }
        softmax(&mut z);
        z
    }

    /// Trains on (normalised text, label index) pairs: AdaGrad on the cross-entropy, in a
    /// fixed shuffled order, so the same data always gives the same model (quantised as it
    /// ships).
    pub fn train(labels: &[&str], examples: &[(String, usize)], t: Training) -> Classifier {
        let n = labels.len();
        let data: Vec<(Vec<u32>, usize)> = examples
            .iter()
            .map(|(text, y)| (features(text), *y))
            .collect();
        let mut w = vec![0f32; BUCKETS * n];
        let mut bias = vec![0f32; n];
        let mut g2 = vec![1e-8f32; BUCKETS * n];
        let mut gb = vec![1e-8f32; n];
        let mut order: Vec<usize> = (0..data.len()).collect();
        let mut state = t.seed | 1;
        let mut z = vec![0f32; n];
        for _ in 0..t.epochs {
            for i in (1..order.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                order.swap(i, (state % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                let (f, y) = &data[i];
                let scale = 1.0 / (f.len().max(1) as f32).sqrt();
                z.copy_from_slice(&bias);
                for &b in f {
                    for (k, zk) in z.iter_mut().enumerate() {
                        *zk += w[b as usize * n + k] * scale;
                    }
                }
                softmax(&mut z);
                for k in 0..n {
                    let g = z[k] - if k == *y { 1.0 } else { 0.0 };
                    gb[k] += g * g;
                    bias[k] -= t.learning_rate * g / gb[k].sqrt();
                    for &b in f {
                        let j = b as usize * n + k;
                        let gj = g * scale + t.l2 * w[j];
                        g2[j] += gj * gj;
                        w[j] -= t.learning_rate * gj / g2[j].sqrt();
                    }
                }
            }
        }
        Classifier::from_dense(labels, bias, &w)
    }

    /// The shipped form (little-endian): magic, the labels, biases, then each stored bucket
    /// with its scale and quantised weights.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.labels.len();
        let mut out = MAGIC.to_vec();
        out.extend((n as u32).to_le_bytes());
        for l in &self.labels {
            out.extend((l.len() as u32).to_le_bytes());
            out.extend(l.as_bytes());
        }
        for b in &self.bias {
            out.extend(b.to_le_bytes());
        }
        out.extend((self.buckets.len() as u32).to_le_bytes());
        for (r, b) in self.buckets.iter().enumerate() {
            out.extend(b.to_le_bytes());
            out.extend(self.scales[r].to_le_bytes());
            out.extend(self.weights[r * n..r * n + n].iter().map(|q| *q as u8));
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Classifier, ModelError> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], ModelError> {
            let s = bytes
                .get(at..at.saturating_add(n))
                .ok_or(ModelError::Truncated(at))?;
            at += n;
            Ok(s)
        };
        let u32_at = |s: &[u8]| u32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        let f32_at = |s: &[u8]| f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
        if take(8)? != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let n = u32_at(take(4)?) as usize;
        // A label count no real model has is a damaged file, not an allocation to attempt.
        if n == 0 || n > 256 {
            return Err(ModelError::BadLabels);
        }
        let mut labels = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32_at(take(4)?) as usize;
            let l = std::str::from_utf8(take(len)?).map_err(|_| ModelError::BadLabels)?;
            labels.push(l.to_string());
        }
        let mut bias = Vec::with_capacity(n);
        for _ in 0..n {
            let b = f32_at(take(4)?);
            if !b.is_finite() {
                return Err(ModelError::NotFinite(u32::MAX));
            }
            bias.push(b);
        }
        let rows = u32_at(take(4)?) as usize;
        if rows > BUCKETS {
            return Err(ModelError::Truncated(at));
        }
        let mut m = Classifier {
            labels,
            bias,
            buckets: Vec::with_capacity(rows),
            scales: Vec::with_capacity(rows),
            weights: Vec::with_capacity(rows * n),
        };
        for _ in 0..rows {
            let b = u32_at(take(4)?);
            // Sorted and in range, or lookups would miss.
            if b as usize >= BUCKETS || m.buckets.last().is_some_and(|last| *last >= b) {
                return Err(ModelError::BadBucket(b));
            }
            let scale = f32_at(take(4)?);
            if !scale.is_finite() {
                return Err(ModelError::NotFinite(b));
            }
            m.buckets.push(b);
            m.scales.push(scale);
            m.weights.extend(take(n)?.iter().map(|q| *q as i8));
        }
        if at != bytes.len() {
            return Err(ModelError::Trailing(bytes.len() - at));
        }
        Ok(m)
    }
}

pub(crate) fn softmax(z: &mut [f32]) {
    let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in z.iter_mut() {
        *v /= sum;
    }
}

/// A model compiled into the build: refused loudly if it does not parse or its labels are not
/// `labels` (the tests check every shipped file, so this cannot fire in a tested build).
pub fn compiled_in(bytes: &[u8], labels: &[&str], file: &str) -> Classifier {
    Classifier::from_bytes(bytes)
        .and_then(|m| m.expect_labels(labels))
        .unwrap_or_else(|e| panic!("{file} is compiled in and checked by the tests: {e}"))
}

/// The examples of a JSONL set (`{"text", FIELD, ...}` a line), normalised, with the index
/// of their label in `labels`.
pub fn examples(jsonl: &str, field: &str, labels: &[&str]) -> Result<Vec<(String, usize)>, String> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
            let label = v[field].as_str().unwrap_or_default();
            let y = labels
                .iter()
                .position(|n| *n == label)
                .ok_or_else(|| format!("line {}: unknown {field} {label:?}", i + 1))?;
            let text = v["text"].as_str().unwrap_or_default();
            Ok((crate::normalize(text), y))
        })
        .collect()
}

/// k-fold cross-validation on a training set (fold = index mod k): each example's label as
/// predicted by a model trained without its fold, for choosing settings without touching a
/// held-out set.
pub fn cross_validate(
    labels: &[&str],
    data: &[(String, usize)],
    k: usize,
    t: Training,
) -> Vec<usize> {
    let mut predicted = vec![0usize; data.len()];
    for fold in 0..k {
        let train: Vec<(String, usize)> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| i % k != fold)
            .map(|(_, e)| e.clone())
            .collect();
        let m = Classifier::train(labels, &train, t);
        for (i, (text, _)) in data.iter().enumerate().filter(|(i, _)| i % k == fold) {
            let p = m.predict(text);
            predicted[i] = (0..p.len())
                .max_by(|a, b| p[*a].total_cmp(&p[*b]))
                .unwrap_or(0);
        }
    }
    predicted
}

/// The share of `predicted` that matches the examples' labels.
pub fn accuracy(data: &[(String, usize)], predicted: &[usize]) -> f64 {
    let right = data
        .iter()
        .zip(predicted)
        .filter(|((_, y), p)| y == *p)
        .count();
    right as f64 / data.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_see_both_scripts() {
        let f = features("帮我换个 starry night 壁纸");
        assert!(f.len() > 20);
        assert_eq!(f, features("帮我换个 starry night 壁纸"));
        assert_ne!(features("turn on"), features("turn off"));
    }

    #[test]
    fn learns_and_round_trips_any_label_set() {
        let labels = ["greet", "bye"];
        let data: Vec<(String, usize)> =
            ["hello", "hi there", "你好", "bye now", "再见", "see you"]
                .iter()
                .zip([0, 0, 0, 1, 1, 1])
                .map(|(t, y)| (t.to_string(), y))
                .collect();
        let m = Classifier::train(&labels, &data, Training::default());
        assert_eq!(m.top("hello").0, "greet");
        assert_eq!(m.top("再见啦").0, "bye");
        let back = Classifier::from_bytes(&m.to_bytes()).unwrap();
        assert!(back == m);
        assert!(matches!(
            back.expect_labels(&["a", "b"]),
            Err(ModelError::WrongLabels { .. })
        ));
    }

    #[test]
    fn a_damaged_file_is_refused_by_name() {
        let labels = ["x", "y"];
        let m = Classifier::train(
            &labels,
            &[("a".into(), 0), ("b".into(), 1)],
            Training::default(),
        );
        let good = m.to_bytes();
        assert_eq!(
            Classifier::from_bytes(b"nonsense"),
            Err(ModelError::BadMagic)
        );
        assert!(matches!(
            Classifier::from_bytes(&good[..good.len() - 3]),
            Err(ModelError::Truncated(_))
        ));
        let mut many = good.clone();
        many[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Classifier::from_bytes(&many), Err(ModelError::BadLabels));
    }
}
