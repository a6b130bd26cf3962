//! A small bilingual sentence embedding learned from labelled text, fastText-style: every
//! hashed feature of [`crate::classifier::features`] seen often enough in training has a
//! `dim`-vector, a text's embedding is the mean of its features' vectors, and one softmax
//! head per labelling reads it. Trained on several labellings at once (for owner feedback:
//! the part a statement is about and what goes wrong with it), the embedding puts statements
//! that share labels close together whatever language and words they use, so it serves both
//! to classify and to measure similarity.
//!
//! Why this shape: a linear classifier over 200 labels would store 200 weights per n-gram; the
//! shared embedding stores `dim`, so a model that knows tens of thousands of n-grams stays
//! a few megabytes, and the embedding itself is what clustering needs.
//!
//! Architecture invariant: normalised text in, vectors and probabilities out; no rules, no bus.

use std::collections::HashMap;

use crate::classifier::{BUCKETS, ModelError, features, softmax};

const MAGIC: &[u8; 8] = b"CABINEM1";

/// One labelling the embedding is trained to predict.
#[derive(Debug, Clone, PartialEq)]
struct Head {
    name: String,
    labels: Vec<String>,
    /// labels × dim, row-major.
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// The same weights dim × labels, for reading: one pass over the labels per dimension
    /// is vector code from end to end, where a dot product per label ends in a horizontal
    /// sum each (a head of hundreds of labels is read for every statement).
    by_dim: Vec<f32>,
}

/// The trained embedding and its heads. Rows are stored sparse (only features training kept)
/// and quantised to one signed byte per dimension with a scale per row.
#[derive(Clone, PartialEq)]
pub struct Embedder {
    dim: usize,
    heads: Vec<Head>,
    buckets: Vec<u32>,
    scales: Vec<f32>,
    rows: Vec<i8>,
    /// Open-addressing table of `bucket << 32 | row + 1` (0: empty), a power of two at least
    /// twice the rows: a lookup is one multiply and usually one probe, where a binary search
    /// over tens of thousands of buckets misses the cache several times per feature. The
    /// bucket sits in the entry so a probe is one cache miss, not two.
    index: Vec<u64>,
    shift: u32,
}

/// Training settings (the defaults are what ships).
#[derive(Debug, Clone, Copy)]
pub struct EmbedderTraining {
    pub dim: usize,
    pub epochs: usize,
    /// Starting rate of plain SGD, decayed linearly to zero as fastText does.
    pub learning_rate: f32,
    /// A feature seen in fewer training texts than this gets no row (rare n-grams only
    /// memorise their one example, and cost memory).
    pub min_count: usize,
    pub seed: u64,
}

impl Default for EmbedderTraining {
    fn default() -> Self {
        EmbedderTraining {
            dim: 48,
            epochs: 30,
            learning_rate: 0.5,
            min_count: 2,
            seed: 20261206,
        }
    }
}

/// One training text: normalised text and, per head, its label index (None: not labelled for
/// that head).
pub type Example = (String, Vec<Option<usize>>);

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let heads: Vec<_> = self
            .heads
            .iter()
            .map(|h| (&h.name, h.labels.len()))
            .collect();
        write!(
            f,
            "Embedder {{ dim {}, {} rows, heads {heads:?} }}",
            self.dim,
            self.buckets.len()
        )
    }
}

impl Embedder {
    /// Trains the embedding and `heads` (name, labels) on `examples`, deterministically.
    pub fn train(heads: &[(&str, &[&str])], examples: &[Example], t: EmbedderTraining) -> Embedder {
        let data: Vec<Vec<u32>> = examples.iter().map(|(text, _)| features(text)).collect();
        let labels: Vec<&[Option<usize>]> = examples.iter().map(|e| e.1.as_slice()).collect();
        Embedder::train_features(heads, &data, &labels, t)
    }

    /// `train` on feature lists rather than text: the text's [`features`] plus any the caller
    /// adds (hashed with [`crate::classifier::feature`]), one list and one label row per
    /// example.
    pub fn train_features(
        heads: &[(&str, &[&str])],
        data: &[Vec<u32>],
        labels: &[&[Option<usize>]],
        t: EmbedderTraining,
    ) -> Embedder {
        let dim = t.dim;
        let mut count: HashMap<u32, usize> = HashMap::new();
        for f in data {
            for b in f {
                *count.entry(*b).or_insert(0) += 1;
            }
        }
        let mut buckets: Vec<u32> = count
            .iter()
            .filter(|(_, n)| **n >= t.min_count)
            .map(|(b, _)| *b)
            .collect();
        buckets.sort_unstable();
        let row_of: HashMap<u32, usize> =
            buckets.iter().enumerate().map(|(i, b)| (*b, i)).collect();
        let data: Vec<Vec<usize>> = data
            .iter()
            .map(|f| f.iter().filter_map(|b| row_of.get(b).copied()).collect())
            .collect();

        let mut rng = Rng(t.seed | 1);
        let mut rows: Vec<f32> = (0..buckets.len() * dim)
            .map(|_| (rng.unit() * 2.0 - 1.0) / dim as f32)
            .collect();
        let mut heads: Vec<Head> = heads
            .iter()
            .map(|(name, labels)| Head {
                name: name.to_string(),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                weights: vec![0.0; labels.len() * dim],
                bias: vec![0.0; labels.len()],
                by_dim: Vec::new(),
            })
            .collect();
        let mut order: Vec<usize> = (0..data.len()).collect();
        let total = (t.epochs * data.len()).max(1) as f32;
        let mut seen = 0usize;
        let mut h = vec![0f32; dim];
        let mut grad_h = vec![0f32; dim];
        for _ in 0..t.epochs {
            for i in (1..order.len()).rev() {
                order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            for &i in &order {
                let lr = t.learning_rate * (1.0 - seen as f32 / total);
                seen += 1;
                let f = &data[i];
                if f.is_empty() {
                    continue;
                }
                mean_row(&rows, dim, f, &mut h);
                grad_h.iter_mut().for_each(|g| *g = 0.0);
                for (head, label) in heads.iter_mut().zip(labels[i]) {
                    let Some(y) = *label else { continue };
                    let mut z = head.logits(&h);
                    softmax(&mut z);
                    for (k, p) in z.iter().enumerate() {
                        let g = p - if k == y { 1.0 } else { 0.0 };
                        let w = &mut head.weights[k * dim..k * dim + dim];
                        for d in 0..dim {
                            grad_h[d] += g * w[d];
                            w[d] -= lr * g * h[d];
                        }
                        head.bias[k] -= lr * g;
                    }
                }
                let step = lr / f.len() as f32;
                for &r in f {
                    for (x, g) in rows[r * dim..r * dim + dim].iter_mut().zip(&grad_h) {
                        *x -= step * g;
                    }
                }
            }
        }

        let mut m = Embedder {
            dim,
            heads,
            buckets,
            scales: Vec::new(),
            rows: Vec::new(),
            index: Vec::new(),
            shift: 0,
        };
        for row in rows.chunks(dim) {
            let max = row.iter().fold(0f32, |a, x| a.max(x.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            m.scales.push(scale);
            m.rows.extend(
                row.iter()
                    .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8),
            );
        }
        m.indexed()
    }

    fn indexed(mut self) -> Embedder {
        let dim = self.dim;
        for head in &mut self.heads {
            let n = head.bias.len();
            head.by_dim = (0..dim * n)
                .map(|i| head.weights[(i % n) * dim + i / n])
                .collect();
        }
        let slots = (self.buckets.len() * 2).next_power_of_two().max(2);
        self.shift = 32 - slots.trailing_zeros();
        self.index = vec![0; slots];
        for (r, &b) in self.buckets.iter().enumerate() {
            let mut i = self.slot(b);
            while self.index[i] != 0 {
                i = (i + 1) & (slots - 1);
            }
            self.index[i] = u64::from(b) << 32 | (r as u64 + 1);
        }
        self
    }

    fn slot(&self, bucket: u32) -> usize {
        (bucket.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }

    /// The row of a feature, if it has one.
    fn row(&self, bucket: u32) -> Option<usize> {
        let mask = self.index.len().wrapping_sub(1);
        let mut i = self.slot(bucket);
        loop {
            let entry = *self.index.get(i)?;
            if entry == 0 {
                return None;
            }
            if (entry >> 32) as u32 == bucket {
                return Some((entry as u32 - 1) as usize);
            }
            i = (i + 1) & mask;
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The heads' names, in order.
    pub fn heads(&self) -> impl Iterator<Item = &str> {
        self.heads.iter().map(|h| h.name.as_str())
    }

    /// The labels of head `head` (index in `heads()`), in the order `predict` gives them.
    pub fn labels(&self, head: usize) -> &[String] {
        self.heads.get(head).map_or(&[], |h| &h.labels)
    }

    /// What the loaded model holds in memory.
    pub fn resident_bytes(&self) -> usize {
        self.buckets.len() * 8
            + self.index.len() * 8
            + self.rows.len()
            + self
                .heads
                .iter()
                .map(|h| (h.weights.len() + h.bias.len()) * 4)
                .sum::<usize>()
    }

    /// The embedding of a normalised text: the mean of its known features' rows (all zeros
    /// when it has none).
    pub fn embed(&self, text: &str) -> Vec<f32> {
        self.embed_features(&features(text))
    }

    /// The embedding of a feature list (see `train_features`).
    pub fn embed_features(&self, features: &[u32]) -> Vec<f32> {
        self.embed_counting(features).0
    }

    /// `embed_features` and how many of the features have a row (the share of a text the
    /// model knows), in one pass.
    pub fn embed_counting(&self, features: &[u32]) -> (Vec<f32>, usize) {
        let mut h = vec![0f32; self.dim];
        let mut n = 0usize;
        // Lookups first, then the rows, a chunk of features at a time: each is a cache miss
        // into tables of megabytes, and independent ones in a row overlap, where a lookup
        // followed by its row's sum waited for each in turn.
        let mut found = [0u32; 64];
        for chunk in features.chunks(found.len()) {
            let mut rows = 0;
            for &b in chunk {
                if let Some(r) = self.row(b) {
                    found[rows] = r as u32;
                    rows += 1;
                }
            }
            for &r in &found[..rows] {
                let r = r as usize;
                let scale = self.scales[r];
                for (x, q) in h
                    .iter_mut()
                    .zip(&self.rows[r * self.dim..(r + 1) * self.dim])
                {
                    *x += f32::from(*q) * scale;
                }
            }
            n += rows;
        }
        if n > 0 {
            h.iter_mut().for_each(|x| *x /= n as f32);
        }
        (h, n)
    }

    /// How many of `features` have a row: the share of a text the model knows.
    pub fn known(&self, features: &[u32]) -> usize {
        features.iter().filter(|b| self.row(**b).is_some()).count()
    }

    /// Probabilities of head `head`'s labels for an embedding from `embed`.
    pub fn predict_embedded(&self, head: usize, h: &[f32]) -> Vec<f32> {
        let Some(head) = self.heads.get(head) else {
            return Vec::new();
        };
        let mut z = head.bias.clone();
        let n = z.len().max(1);
        // Four dimensions per pass over the labels: each label's sum is loaded and stored once
        // for four products, not once each (the pass was bound by those loads and stores).
        let mut columns = head.by_dim.chunks_exact(4 * n);
        let mut dims = h.chunks_exact(4);
        for (x, four) in (&mut dims).zip(&mut columns) {
            let (a, rest) = four.split_at(n);
            let (b, rest) = rest.split_at(n);
            let (c, d) = rest.split_at(n);
            for ((((zk, a), b), c), d) in z.iter_mut().zip(a).zip(b).zip(c).zip(d) {
                *zk += (a * x[0] + b * x[1]) + (c * x[2] + d * x[3]);
            }
        }
        for (x, column) in dims
            .remainder()
            .iter()
            .zip(columns.remainder().chunks_exact(n))
        {
            for (zk, w) in z.iter_mut().zip(column) {
                *zk += w * x;
            }
        }
        softmax(&mut z);
        z
    }

    /// Probabilities of head `head`'s labels for a normalised text.
    pub fn predict(&self, head: usize, text: &str) -> Vec<f32> {
        self.predict_embedded(head, &self.embed(text))
    }

    /// Refuses a model whose heads or labels are not the ones the caller was built for.
    pub fn expect_heads(self, expected: &[(&str, &[&str])]) -> Result<Embedder, ModelError> {
        let same = self.heads.len() == expected.len()
            && self.heads.iter().zip(expected).all(|(h, (name, labels))| {
                h.name == *name
                    && h.labels
                        .iter()
                        .map(String::as_str)
                        .eq(labels.iter().copied())
            });
        if same {
            Ok(self)
        } else {
            Err(ModelError::WrongLabels {
                found: self
                    .heads
                    .iter()
                    .flat_map(|h| std::iter::once(format!("{}:", h.name)).chain(h.labels.clone()))
                    .collect(),
                expected: expected
                    .iter()
                    .flat_map(|(n, l)| {
                        std::iter::once(format!("{n}:")).chain(l.iter().map(|l| l.to_string()))
                    })
                    .collect(),
            })
        }
    }

    /// The shipped form (little-endian): magic, dim, the heads (name, labels, weights, bias),
    /// then each row's bucket, scale and quantised values.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let put_str = |out: &mut Vec<u8>, s: &str| {
            out.extend((s.len() as u32).to_le_bytes());
            out.extend(s.as_bytes());
        };
        out.extend((self.dim as u32).to_le_bytes());
        out.extend((self.heads.len() as u32).to_le_bytes());
        for h in &self.heads {
            put_str(&mut out, &h.name);
            out.extend((h.labels.len() as u32).to_le_bytes());
            for l in &h.labels {
                put_str(&mut out, l);
            }
            for x in h.weights.iter().chain(&h.bias) {
                out.extend(x.to_le_bytes());
            }
        }
        out.extend((self.buckets.len() as u32).to_le_bytes());
        for (r, b) in self.buckets.iter().enumerate() {
            out.extend(b.to_le_bytes());
            out.extend(self.scales[r].to_le_bytes());
            out.extend(
                self.rows[r * self.dim..(r + 1) * self.dim]
                    .iter()
                    .map(|q| *q as u8),
            );
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Embedder, ModelError> {
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
        let dim = u32_at(take(4)?) as usize;
        let n_heads = u32_at(take(4)?) as usize;
        // Sizes no real model has are a damaged file, not an allocation to attempt.
        if dim == 0 || dim > 1024 || n_heads == 0 || n_heads > 16 {
            return Err(ModelError::BadLabels);
        }
        let mut heads = Vec::with_capacity(n_heads);
        for _ in 0..n_heads {
            let len = u32_at(take(4)?) as usize;
            let name = std::str::from_utf8(take(len)?).map_err(|_| ModelError::BadLabels)?;
            let n = u32_at(take(4)?) as usize;
            if n == 0 || n > 4096 {
                return Err(ModelError::BadLabels);
            }
            let mut labels = Vec::with_capacity(n);
            for _ in 0..n {
                let len = u32_at(take(4)?) as usize;
                let l = std::str::from_utf8(take(len)?).map_err(|_| ModelError::BadLabels)?;
                labels.push(l.to_string());
            }
            let mut values = Vec::with_capacity(n * dim + n);
            for _ in 0..n * dim + n {
                let x = f32_at(take(4)?);
                if !x.is_finite() {
                    return Err(ModelError::NotFinite(u32::MAX));
                }
                values.push(x);
            }
            let bias = values.split_off(n * dim);
            heads.push(Head {
                name: name.to_string(),
                labels,
                weights: values,
                bias,
                by_dim: Vec::new(),
            });
        }
        let n_rows = u32_at(take(4)?) as usize;
        if n_rows > BUCKETS {
            return Err(ModelError::Truncated(at));
        }
        let mut m = Embedder {
            dim,
            heads,
            buckets: Vec::with_capacity(n_rows),
            scales: Vec::with_capacity(n_rows),
            rows: Vec::with_capacity(n_rows * dim),
            index: Vec::new(),
            shift: 0,
        };
        for _ in 0..n_rows {
            let b = u32_at(take(4)?);
            if b as usize >= BUCKETS || m.buckets.last().is_some_and(|last| *last >= b) {
                return Err(ModelError::BadBucket(b));
            }
            let scale = f32_at(take(4)?);
            if !scale.is_finite() {
                return Err(ModelError::NotFinite(b));
            }
            m.buckets.push(b);
            m.scales.push(scale);
            m.rows.extend(take(dim)?.iter().map(|q| *q as i8));
        }
        if at != bytes.len() {
            return Err(ModelError::Trailing(bytes.len() - at));
        }
        Ok(m.indexed())
    }
}

impl Head {
    fn logits(&self, h: &[f32]) -> Vec<f32> {
        let dim = h.len();
        self.bias
            .iter()
            .enumerate()
            .map(|(k, b)| {
                b + self.weights[k * dim..k * dim + dim]
                    .iter()
                    .zip(h)
                    .map(|(w, x)| w * x)
                    .sum::<f32>()
            })
            .collect()
    }
}

fn mean_row(rows: &[f32], dim: usize, f: &[usize], h: &mut [f32]) {
    h.iter_mut().for_each(|x| *x = 0.0);
    for &r in f {
        for (x, v) in h.iter_mut().zip(&rows[r * dim..r * dim + dim]) {
            *x += v;
        }
    }
    let inv = 1.0 / f.len() as f32;
    h.iter_mut().for_each(|x| *x *= inv);
}

/// Cosine similarity of two embeddings (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize;

    const PARTS: &[&str] = &["screen", "brakes"];
    const FAULTS: &[&str] = &["freeze", "noise"];

    fn data() -> Vec<Example> {
        let rows: &[(&str, usize, usize)] = &[
            ("the screen froze again", 0, 0),
            ("touchscreen frozen on startup", 0, 0),
            ("display freezes every morning", 0, 0),
            ("中控屏死机了", 0, 0),
            ("屏幕又死机", 0, 0),
            ("车机屏幕卡死不动", 0, 0),
            ("the screen makes a buzzing noise", 0, 1),
            ("屏幕有电流声", 0, 1),
            ("brakes squeal loudly", 1, 1),
            ("brake noise when stopping", 1, 1),
            ("刹车有异响", 1, 1),
            ("刹车吱吱响", 1, 1),
            ("刹车尖叫声很大", 1, 1),
            ("the brakes grind and squeal", 1, 1),
            ("brake pedal froze solid in the cold", 1, 0),
            ("刹车冻住了", 1, 0),
        ];
        rows.iter()
            .map(|(t, p, f)| (normalize(t), vec![Some(*p), Some(*f)]))
            .collect()
    }

    fn small() -> EmbedderTraining {
        EmbedderTraining {
            dim: 16,
            epochs: 60,
            min_count: 1,
            ..EmbedderTraining::default()
        }
    }

    #[test]
    fn learns_both_heads_and_puts_one_problem_close_across_languages() {
        let m = Embedder::train(&[("part", PARTS), ("fault", FAULTS)], &data(), small());
        let part = |t: &str| m.predict(0, &normalize(t));
        assert!(part("screen froze")[0] > 0.7, "{:?}", part("screen froze"));
        assert!(part("刹车异响")[1] > 0.7, "{:?}", part("刹车异响"));
        let e = |t: &str| m.embed(&normalize(t));
        let zh_screen = e("屏幕死机");
        assert!(cosine(&zh_screen, &e("the screen froze")) > cosine(&zh_screen, &e("刹车异响")));
        // Nothing known: all zeros, and no similarity to anything.
        assert!(e("qqqq zzzz").iter().all(|x| *x == 0.0));
        assert_eq!(cosine(&e("qqqq zzzz"), &zh_screen), 0.0);
    }

    #[test]
    fn same_data_same_model_and_the_bytes_round_trip() {
        let a = Embedder::train(&[("part", PARTS), ("fault", FAULTS)], &data(), small());
        let b = Embedder::train(&[("part", PARTS), ("fault", FAULTS)], &data(), small());
        assert_eq!(a, b);
        let back = Embedder::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(back, a);
        assert!(
            back.clone()
                .expect_heads(&[("part", PARTS), ("fault", FAULTS)])
                .is_ok()
        );
        assert!(matches!(
            back.expect_heads(&[("part", PARTS)]),
            Err(ModelError::WrongLabels { .. })
        ));
    }

    #[test]
    fn damaged_files_are_refused_by_name() {
        let m = Embedder::train(&[("part", PARTS)], &data(), small());
        let bytes = m.to_bytes();
        assert_eq!(
            Embedder::from_bytes(b"nonsense").unwrap_err(),
            ModelError::BadMagic
        );
        assert!(matches!(
            Embedder::from_bytes(&bytes[..bytes.len() - 3]),
            Err(ModelError::Truncated(_))
        ));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Embedder::from_bytes(&longer).unwrap_err(),
            ModelError::Trailing(1)
        );
        let mut huge = bytes;
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Embedder::from_bytes(&huge).unwrap_err(),
            ModelError::BadLabels
        );
    }
}
