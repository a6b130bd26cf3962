//! Grouping readings into problems: average-linkage agglomerative clustering on cosine
//! similarity, stopped by a similarity threshold rather than a number of groups, so a new
//! kind of problem comes out as its own group.
//!
//! Each statement is a unit vector (see `vector`): what it is about (problem areas and topics,
//! from the lexicon's reading and the learned concept model's) times what goes wrong (its
//! symptoms, mostly the learned model's), plus the learned model's reading of which specific
//! problem of its training corpus the statement is (or is nearest to: a part with one fault,
//! read the same in either language), plus a smaller share of its own words (which only ever
//! meet within one language, so the concepts are what bring Chinese and English together).
//! The product, and the specific problems, make two statements about one part with different
//! faults (a black camera, a blurry one) less alike than two with the same fault. Statements
//! with the same main topic and symptom start as one group; the nearest-neighbour chain then
//! merges groups while the average similarity between their members stays above `MERGE_AT`.
//! Average linkage is reducible, so the chain finds the same merges as the textbook algorithm
//! in O(n²) time on the starting groups. The tree is then cut by a rule that needs no number
//! of problems: two sizeable groups stay apart when they are clearly less alike than the
//! tighter one is inside (`Weights::cohesion`), which is what tells two faults of one part
//! apart — they share a part, so an absolute threshold low enough to keep one fault's varied
//! statements together also joins the two.
//!
//! Architecture invariant: works on `Reading`s only, never on text or the lexicon's words.

use foldhash::HashMap;

use super::reading::Reading;

/// Average cosine similarity below which two groups are never one problem (tuned with the
/// weights and the cohesion rule on the development sets of `eval/` only: ARI 0.948, 0.980,
/// 0.957; from 0.12 to 0.16, and the cohesion share from 0.75 to 0.85, no development ARI
/// moves by more than 0.01).
pub const MERGE_AT: f32 = 0.15;

/// Statements without a topic that may start alone (each one a row of the table).
const MAX_ALONE: usize = 1500;
/// The most starting groups: the similarity table is this squared (4 bytes each, 36 MB).
const MAX_GROUPS: usize = 3000;

/// How much each part of a reading counts in its vector (tuned on the development sets of
/// `eval/` only; `examples/evaluate.rs --weights` tries others).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    pub area: f32,
    pub topic: f32,
    pub symptom: f32,
    pub other_symptom: f32,
    pub word: f32,
    /// Salience of the area a telling symptom implies (as a specific topic named later).
    pub symptom_area: f32,
    /// The learned model's topic probabilities, on their areas and on the topics themselves.
    pub learned_area: f32,
    pub learned_topic: f32,
    /// The learned model's symptoms, by their probability.
    pub learned_symptom: f32,
    /// Similarity of two statements about one part whose faults have nothing in common, as a
    /// share of the similarity of two with the same fault: parts and faults multiply, so a
    /// black camera and a blurry one are two problems, not one.
    pub fault_floor: f32,
    /// The share of the similarity that comes from the statements' own words.
    pub words_share: f32,
    /// The share from the learned model's fine-grained problems: statements of one problem
    /// share them in either language, and two faults of one part do not.
    pub problem_share: f32,
    /// The learned problems' weight in the fault factor, beside the symptoms.
    pub problem_fault: f32,
    pub merge_at: f32,
    /// Two groups of at least `cohesive_size` statements each stay apart when their average
    /// similarity is below this share of the tighter group's own (its members' average
    /// similarity to each other): two faults of one part are alike, but less alike than
    /// statements of one fault are among themselves. 0 turns the rule off.
    pub cohesion: f32,
    pub cohesive_size: f32,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            area: 1.0,
            topic: 0.5,
            symptom: 0.1,
            other_symptom: 0.05,
            word: 0.12,
            symptom_area: 1.5,
            learned_area: 1.0,
            learned_topic: 0.5,
            learned_symptom: 1.0,
            fault_floor: 0.5,
            words_share: 0.15,
            problem_share: 0.4,
            problem_fault: 0.5,
            merge_at: MERGE_AT,
            cohesion: 0.8,
            cohesive_size: 5.0,
        }
    }
}

impl Weights {
    /// Sets weights from `name=value,...` (the field names); an unknown name is an error.
    pub fn parse(spec: &str) -> Result<Weights, String> {
        let mut w = Weights::default();
        for kv in spec.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{kv}: not name=value"))?;
            let v: f32 = v.parse().map_err(|_| format!("{kv}: not a number"))?;
            let field = match k {
                "area" => &mut w.area,
                "topic" => &mut w.topic,
                "symptom" => &mut w.symptom,
                "other_symptom" => &mut w.other_symptom,
                "word" => &mut w.word,
                "symptom_area" => &mut w.symptom_area,
                "learned_area" => &mut w.learned_area,
                "learned_topic" => &mut w.learned_topic,
                "learned_symptom" => &mut w.learned_symptom,
                "fault_floor" => &mut w.fault_floor,
                "words_share" => &mut w.words_share,
                "problem_share" => &mut w.problem_share,
                "problem_fault" => &mut w.problem_fault,
                "merge_at" => &mut w.merge_at,
                "cohesion" => &mut w.cohesion,
                "cohesive_size" => &mut w.cohesive_size,
                _ => return Err(format!("{k}: no such weight")),
            };
            *field = v;
        }
        Ok(w)
    }
}

/// Sparse vector: (term id, weight), sorted by term id.
type Sparse = Vec<(u32, f32)>;

/// Groups readings into problems; returns, per reading, its group (numbered by first
/// appearance).
pub fn cluster(readings: &[Reading]) -> Vec<usize> {
    cluster_at(readings, MERGE_AT)
}

/// `cluster` with an explicit threshold (for tuning and tests).
pub fn cluster_at(readings: &[Reading], merge_at: f32) -> Vec<usize> {
    cluster_with(
        readings,
        &Weights {
            merge_at,
            ..Weights::default()
        },
    )
}

/// `cluster` with explicit weights (for tuning).
pub fn cluster_with(readings: &[Reading], w: &Weights) -> Vec<usize> {
    let merge_at = w.merge_at;
    if readings.is_empty() {
        return Vec::new();
    }
    let mut terms: HashMap<String, u32> = HashMap::default();
    let vectors: Vec<Sparse> = readings.iter().map(|r| vector(r, w, &mut terms)).collect();

    // Starting groups: the same main topic and symptom; statements naming no topic start
    // alone.
    let mut start_of: HashMap<(&str, &str), usize> = HashMap::default();
    let no_topic = readings.iter().filter(|r| r.topic.is_none()).count();
    let mut member_of = Vec::with_capacity(readings.len());
    let mut sums: Vec<HashMap<u32, f32>> = Vec::new();
    let mut sizes: Vec<f32> = Vec::new();
    for (r, v) in readings.iter().zip(&vectors) {
        let g = match r.topic {
            Some(topic) => *start_of
                .entry((topic, r.symptom.unwrap_or("")))
                .or_insert_with(|| {
                    sums.push(HashMap::default());
                    sizes.push(0.0);
                    sums.len() - 1
                }),
            // Statements naming no topic start alone, unless there are so many that the
            // similarity table would not fit: then they start by symptom and first word.
            None if no_topic <= MAX_ALONE => {
                sums.push(HashMap::default());
                sizes.push(0.0);
                sums.len() - 1
            }
            None => *start_of
                .entry((
                    r.symptom.unwrap_or(""),
                    r.words.first().map_or("", String::as_str),
                ))
                .or_insert_with(|| {
                    sums.push(HashMap::default());
                    sizes.push(0.0);
                    sums.len() - 1
                }),
        };
        for &(t, w) in v {
            *sums[g].entry(t).or_insert(0.0) += w;
        }
        sizes[g] += 1.0;
        member_of.push(g);
    }
    let m = sums.len().min(MAX_GROUPS);
    if sums.len() > MAX_GROUPS {
        // Beyond the table's size the rest join the last group: never reached with the
        // lexicon's topics (a few hundred keys) and the key above, but memory stays bounded.
        for g in member_of.iter_mut() {
            *g = (*g).min(MAX_GROUPS - 1);
        }
        let extra: Vec<HashMap<u32, f32>> = sums.split_off(MAX_GROUPS);
        let extra_size: f32 = sizes.split_off(MAX_GROUPS).iter().sum();
        for s in extra {
            for (t, w) in s {
                *sums[MAX_GROUPS - 1].entry(t).or_insert(0.0) += w;
            }
        }
        sizes[MAX_GROUPS - 1] += extra_size;
    }
    let sums: Vec<Sparse> = sums
        .into_iter()
        .map(|s| {
            let mut v: Sparse = s.into_iter().collect();
            v.sort_unstable_by_key(|e| e.0);
            v
        })
        .collect();

    // Similarity summed over the pairs inside each starting group: |Σ|² = n + 2·pairs.
    let inside: Vec<f32> = sums
        .iter()
        .zip(&sizes)
        .map(|(v, n)| ((dot(v, v) - n) / 2.0).max(0.0))
        .collect();

    // Average similarity between groups a and b: (Σa · Σb) / (|a| |b|), exact for unit vectors.
    let mut sim = vec![0.0f32; m * m];
    for a in 0..m {
        for b in a + 1..m {
            let s = dot(&sums[a], &sums[b]) / (sizes[a] * sizes[b]);
            sim[a * m + b] = s;
            sim[b * m + a] = s;
        }
    }

    // Nearest-neighbour chain.
    let start_sizes = sizes.clone();
    let mut merges: Vec<(f32, usize, usize)> = Vec::new();
    let mut active = vec![true; m];
    let mut n_active = m;
    let mut chain: Vec<usize> = Vec::new();
    while n_active > 1 {
        let Some(&a) = chain.last() else {
            chain.push((0..m).find(|&i| active[i]).unwrap_or(0));
            continue;
        };
        let previous = chain.len().checked_sub(2).map(|i| chain[i]);
        let mut best: Option<(f32, usize)> = None;
        for c in (0..m).filter(|&c| active[c] && c != a) {
            let s = sim[a * m + c];
            // Ties go to the previous link, which keeps the chain from cycling.
            let better = match best {
                None => true,
                Some((bs, bc)) => {
                    s > bs || (s == bs && Some(c) == previous && Some(bc) != previous)
                }
            };
            if better {
                best = Some((s, c));
            }
        }
        let Some((s, b)) = best else { break };
        if s < merge_at {
            // Nothing is close enough to `a`, and merges elsewhere only average similarities
            // down: `a` is final.
            active[a] = false;
            n_active -= 1;
            chain.pop();
            continue;
        }
        if Some(b) == previous {
            chain.truncate(chain.len() - 2);
            // Merge b into a (Lance-Williams for average linkage).
            let (na, nb) = (sizes[a], sizes[b]);
            for c in 0..m {
                if active[c] && c != a && c != b {
                    let s = (na * sim[a * m + c] + nb * sim[b * m + c]) / (na + nb);
                    sim[a * m + c] = s;
                    sim[c * m + a] = s;
                }
            }
            sizes[a] = na + nb;
            active[b] = false;
            n_active -= 1;
            merges.push((s, a, b));
        } else {
            chain.push(b);
        }
    }
    let root = cut(merges, &start_sizes, &inside, w);
    let mut renumber: HashMap<usize, usize> = HashMap::default();
    member_of
        .iter()
        .map(|&g| {
            let next = renumber.len();
            *renumber.entry(root[g]).or_insert(next)
        })
        .collect()
}

/// Replays the merges from the most similar down (average linkage is reducible, so this is
/// the order the textbook algorithm takes) and keeps those the cohesion rule allows; once two
/// groups are kept apart, neither joins anything else. Returns each starting group's final group.
fn cut(
    mut merges: Vec<(f32, usize, usize)>,
    sizes: &[f32],
    inside: &[f32],
    w: &Weights,
) -> Vec<usize> {
    let m = sizes.len();
    let mut parent: Vec<usize> = (0..m).collect();
    let mut size = sizes.to_vec();
    let mut pairs_sum = inside.to_vec();
    let mut closed = vec![false; m];
    merges.sort_by(|x, y| y.0.total_cmp(&x.0));
    let find = |parent: &Vec<usize>, mut g: usize| {
        while parent[g] != g {
            g = parent[g];
        }
        g
    };
    let cohesion = |n: f32, pairs: f32| pairs / (n * (n - 1.0) / 2.0);
    for (s, a, b) in merges {
        let (a, b) = (find(&parent, a), find(&parent, b));
        if a == b {
            continue;
        }
        let big = w.cohesive_size.max(2.0);
        let tighter = [a, b]
            .iter()
            .filter(|g| size[**g] >= big)
            .map(|g| cohesion(size[*g], pairs_sum[*g]))
            .fold(f32::NEG_INFINITY, f32::max);
        let apart = closed[a]
            || closed[b]
            || (w.cohesion > 0.0 && size[a] >= big && size[b] >= big && s < w.cohesion * tighter);
        if apart {
            closed[a] = true;
            closed[b] = true;
            continue;
        }
        parent[b] = a;
        pairs_sum[a] += pairs_sum[b] + s * size[a] * size[b];
        size[a] += size[b];
    }
    (0..m).map(|g| find(&parent, g)).collect()
}

/// The cosine similarity of every pair of readings, as the clustering starts from it (for
/// tuning: `examples/evaluate.rs --pairs`).
pub fn similarities(readings: &[Reading], w: &Weights) -> Vec<Vec<f32>> {
    let mut terms: HashMap<String, u32> = HashMap::default();
    let vectors: Vec<Sparse> = readings.iter().map(|r| vector(r, w, &mut terms)).collect();
    vectors
        .iter()
        .map(|a| vectors.iter().map(|b| dot(a, b)).collect())
        .collect()
}

/// The unit vector of one reading: (part ⊗ fault) ⊕ words. The part is the areas and topics
/// the statement is about (the lexicon's, by salience, and the learned model's, by
/// probability); the fault its symptoms, with a constant term so that statements about one
/// part with unrelated faults keep `fault_floor` of their similarity. The tensor product makes
/// the similarity of two statements their part similarity times their fault similarity.
fn vector(r: &Reading, w: &Weights, terms: &mut HashMap<String, u32>) -> Sparse {
    let lx = super::lexicon::lexicon();
    let mut part: HashMap<String, f32> = HashMap::default();
    let add = |map: &mut HashMap<String, f32>, key: String, x: f32| {
        *map.entry(key).or_insert(0.0) += x;
    };
    for &(t, salience) in &r.topics {
        let area = lx.concept(t).map_or(t, |c| c.area.as_str());
        add(&mut part, format!("a:{area}"), w.area * salience);
        add(&mut part, format!("t:{t}"), w.topic * salience);
    }
    for &(t, p) in &r.learned_topics {
        let area = lx.concept(t).map_or(t, |c| c.area.as_str());
        add(&mut part, format!("a:{area}"), w.learned_area * p);
        add(&mut part, format!("t:{t}"), w.learned_topic * p);
    }
    let mut fault: HashMap<String, f32> = HashMap::default();
    if let Some(s) = r.symptom {
        add(&mut fault, format!("s:{s}"), w.symptom);
    }
    for &(s, p) in &r.learned_symptoms {
        add(&mut fault, format!("s:{s}"), w.learned_symptom * p);
    }
    for &(c, n) in &r.concepts {
        let Some(concept) = lx.concept(c) else {
            continue;
        };
        if concept.kind != super::lexicon::Kind::Symptom {
            continue;
        }
        if !concept.area.is_empty() {
            add(
                &mut part,
                format!("a:{}", concept.area),
                w.area * w.symptom_area,
            );
        }
        if Some(c) != r.symptom {
            let telling = if concept.generic { 0.3 } else { 1.0 };
            add(
                &mut fault,
                format!("s:{c}"),
                w.other_symptom * telling * (n as f32).sqrt(),
            );
        }
    }
    normalise(&mut part);
    normalise(&mut fault);
    // The learned problems as a unit vector, used in the fault factor and on their own.
    let n = r
        .learned_problems
        .iter()
        .map(|(_, p)| p * p)
        .sum::<f32>()
        .sqrt();
    let problems: Vec<(String, f32)> = r
        .learned_problems
        .iter()
        .map(|(i, p)| (format!("p:{i}"), p / n))
        .collect();
    if w.problem_fault > 0.0 && !problems.is_empty() {
        let pf = w.problem_fault.clamp(0.0, 1.0);
        fault.values_mut().for_each(|x| *x *= (1.0 - pf).sqrt());
        for (k, x) in &problems {
            add(&mut fault, k.clone(), pf.sqrt() * x);
        }
    }
    let floor = w.fault_floor.clamp(0.0, 1.0);
    let mut fault: Vec<(String, f32)> = fault
        .into_iter()
        .map(|(k, x)| (k, x * (1.0 - floor).sqrt()))
        .collect();
    fault.push((String::from("s:*"), floor.sqrt()));

    let mut v: HashMap<u32, f32> = HashMap::default();
    let concepts_share = (1.0 - (w.words_share + w.problem_share).clamp(0.0, 1.0)).sqrt();
    for (p, x) in &part {
        for (f, y) in &fault {
            let key = id_of(terms, format!("{p}|{f}"));
            *v.entry(key).or_insert(0.0) += concepts_share * x * y;
        }
    }
    let mut words: HashMap<String, f32> = HashMap::default();
    for word in &r.words {
        add(&mut words, format!("w:{word}"), 1.0);
    }
    words.values_mut().for_each(|n| *n = n.sqrt());
    normalise(&mut words);
    let words_share = w.words_share.clamp(0.0, 1.0).sqrt();
    for (k, x) in words {
        let key = id_of(terms, k);
        *v.entry(key).or_insert(0.0) += words_share * x;
    }
    let problem_share = w.problem_share.clamp(0.0, 1.0).sqrt();
    for (k, x) in problems {
        let key = id_of(terms, k);
        *v.entry(key).or_insert(0.0) += problem_share * x;
    }
    let norm = v.values().map(|x| x * x).sum::<f32>().sqrt();
    let mut out: Sparse = v
        .into_iter()
        .map(|(k, x)| (k, if norm > 0.0 { x / norm } else { 0.0 }))
        .collect();
    out.sort_unstable_by_key(|e| e.0);
    out
}

fn id_of(terms: &mut HashMap<String, u32>, key: String) -> u32 {
    let next = terms.len() as u32;
    *terms.entry(key).or_insert(next)
}

fn normalise(map: &mut HashMap<String, f32>) {
    let norm = map.values().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        map.values_mut().for_each(|x| *x /= norm);
    }
}

fn dot(a: &Sparse, b: &Sparse) -> f32 {
    let (mut i, mut j, mut s) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::read;
    use super::*;

    #[test]
    fn one_problem_in_two_languages_is_one_group_and_another_problem_is_not() {
        let texts = [
            "车机卡顿严重",
            "中控屏经常死机",
            "the touchscreen freezes all the time",
            "infotainment is so laggy",
            "刹车有异响",
            "brakes squeal when stopping",
            "brake pads squeak at low speed",
        ];
        let readings: Vec<_> = texts.iter().map(|t| read(t)).collect();
        let g = cluster(&readings);
        assert_eq!(g[0], g[1]);
        assert_eq!(g[0], g[2]);
        assert_eq!(g[0], g[3]);
        assert_eq!(g[4], g[5]);
        assert_eq!(g[4], g[6]);
        assert_ne!(g[0], g[4]);
    }

    #[test]
    fn two_faults_of_one_part_are_two_problems_in_both_languages() {
        let black = [
            "The rear camera picture is completely black when I reverse.",
            "reversing camera shows nothing, just a black screen",
            "Backup cam goes dark, no image at all when in R.",
            "倒车影像黑屏，什么都看不到。",
            "挂倒挡后摄像头画面全黑",
            "倒车的时候屏幕上后视摄像头一片黑，没有画面",
        ];
        let blurry = [
            "The rear camera image is blurry and foggy, can't see anything clearly.",
            "reversing camera picture is so fuzzy, like looking through milk",
            "Backup cam image out of focus and hazy every morning.",
            "倒车影像很模糊，看不清楚后面的东西。",
            "后视摄像头画面发虚，雾蒙蒙的",
            "倒车摄像头的图像总是模模糊糊的，像蒙了一层雾",
        ];
        let readings: Vec<_> = black.iter().chain(&blurry).map(|t| read(t)).collect();
        let g = cluster(&readings);
        assert_eq!(g.iter().max(), Some(&1), "two groups: {g:?}");
        // Each fault's group holds most of its statements, Chinese and English alike.
        let majority = |range: std::ops::Range<usize>| {
            let ones = g[range.clone()].iter().filter(|x| **x == 1).count();
            if ones * 2 > range.len() { 1 } else { 0 }
        };
        let (a, b) = (majority(0..6), majority(6..12));
        assert_ne!(a, b, "{g:?}");
        let off = (0..6).filter(|i| g[*i] != a).count() + (6..12).filter(|i| g[*i] != b).count();
        assert!(
            off <= 1,
            "{off} statements in the other fault's group: {g:?}"
        );
    }

    #[test]
    fn many_statements_without_a_topic_keep_the_table_bounded() {
        // 3,500 statements that name nothing the lexicon knows, each with its own words.
        let word = |mut n: usize| {
            let mut w = String::from("zq");
            for _ in 0..4 {
                w.push((b'a' + (n % 26) as u8) as char);
                n /= 26;
            }
            w
        };
        let readings: Vec<_> = (0..3500)
            .map(|i| read(&format!("{} {}", word(i), word(i * 7 + 3))))
            .collect();
        assert!(readings.iter().all(|r| r.words.len() == 2));
        // Nearly all name no topic (the learned model reads a topic into a rare one whose
        // character n-grams it happens to know), far more than may start alone.
        let topical = readings.iter().filter(|r| r.topic.is_some()).count();
        assert!(topical <= 35, "{topical} read as naming a topic");
        assert!(3500 - topical > MAX_ALONE);
        let g = cluster(&readings);
        assert_eq!(g.len(), 3500);
        let groups = g.iter().max().unwrap() + 1;
        assert!(groups <= MAX_GROUPS, "{groups} groups");
    }

    #[test]
    fn nothing_in_common_stays_apart_and_empty_input_is_fine() {
        assert!(cluster(&[]).is_empty());
        let readings = vec![read("zxqv plorb"), read("wuggle frimp")];
        let g = cluster(&readings);
        assert_ne!(g[0], g[1]);
        assert_eq!(g, vec![0, 1]);
    }
}
