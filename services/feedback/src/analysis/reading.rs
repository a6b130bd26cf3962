//! Reading one statement: which topics and symptoms it names (through the lexicon), which one
//! it is mainly about, the words it uses (English stems, Chinese character pairs, so unseen
//! words still count), its tone and whether it reports a danger.
//!
//! Architecture invariant: one text in, one `Reading` out; no state between calls beyond the
//! lexicon, so it parallelises and stays fast (the clustering input of 10,000 statements).

use super::lexicon::{Kind, Tone, ZH_FUNCTION_CHARS, english_words, fold, is_han, lexicon, stem};

/// What one statement is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The topic it is mainly about (concept id): the most salient one.
    pub topic: Option<&'static str>,
    /// That topic's problem area.
    pub area: Option<&'static str>,
    /// The symptom named most.
    pub symptom: Option<&'static str>,
    /// Every topic named, with its salience: specific topics over generic ones, the first
    /// named over later ones (owners lead with what is wrong), repeated ones over single.
    pub topics: Vec<(&'static str, f32)>,
    /// Every concept named, with how often (topics and symptoms).
    pub concepts: Vec<(&'static str, u8)>,
    /// English stems and Chinese character pairs outside the concepts, for similarity.
    pub words: Vec<String>,
    /// -1 (angry) .. 1 (happy), from tone words with negation.
    pub sentiment: f32,
    /// Names a danger (fire, brakes failing, a near miss).
    pub critical: bool,
    /// Mostly Chinese.
    pub zh: bool,
    /// The learned concept model's topics (probability ≥ 0.05, most likely first): read from
    /// the whole statement, so it knows parts the word lists do not name.
    pub learned_topics: Vec<(&'static str, f32)>,
    /// The learned model's symptoms (probability ≥ 0.05, most likely first).
    pub learned_symptoms: Vec<(&'static str, f32)>,
    /// The learned model's fine-grained problems of its training corpus (label index,
    /// probability ≥ 0.02): statements reporting one problem share them, in either language.
    pub learned_problems: Vec<(u32, f32)>,
}

const EN_CONTRAST: &[&str] = &[
    "but",
    "however",
    "unfortunately",
    "except",
    "although",
    "though",
];
const ZH_CONTRAST: &[&str] = &["但是", "可是", "不过", "可惜", "唯一", "只是"];

/// Salience by a topic's level (generic, system, specific).
const LEVEL_SALIENCE: [f32; 4] = [0.0, 0.3, 0.8, 1.0];
/// The first topic named is usually the subject; later ones are often context ("at the
/// dealer", "over speed bumps"). After a "but" the complaint starts, so the first topic
/// after it is the subject.
const FIRST_NAMED: f32 = 1.6;

const EN_STOP: &[&str] = &[
    "the",
    "and",
    "for",
    "with",
    "was",
    "are",
    "this",
    "that",
    "have",
    "has",
    "had",
    "but",
    "not",
    "you",
    "your",
    "our",
    "its",
    "it's",
    "i'm",
    "i've",
    "they",
    "them",
    "their",
    "there",
    "then",
    "than",
    "from",
    "into",
    "onto",
    "out",
    "about",
    "when",
    "what",
    "which",
    "who",
    "how",
    "why",
    "all",
    "any",
    "some",
    "one",
    "two",
    "get",
    "got",
    "just",
    "also",
    "very",
    "really",
    "even",
    "still",
    "again",
    "every",
    "time",
    "car",
    "vehicle",
    "please",
    "fix",
    "can",
    "could",
    "would",
    "should",
    "will",
    "did",
    "does",
    "don't",
    "doe",
    "been",
    "being",
    "were",
    "after",
    "before",
    "since",
    "like",
    "um",
    "uh",
    "yeah",
    "okay",
    "know",
    "mean",
    "kind",
    "sort",
    "thing",
    "cust",
    "customer",
    "owner",
    "state",
    "report",
    "call",
    "regarding",
    "said",
    "say",
    "tell",
    "told",
    "week",
    "day",
    "month",
    "year",
    "today",
    "now",
    "new",
    "lot",
    "much",
    "more",
    "most",
    "other",
    "only",
    "here",
    "where",
    "while",
    "too",
    "so",
    "my",
    "me",
    "it",
    "is",
    "in",
    "on",
    "at",
    "to",
    "of",
    "a",
    "an",
    "or",
    "be",
    "we",
    "he",
    "she",
    "his",
    "her",
    "him",
    "if",
    "as",
    "by",
    "up",
    "anything",
    "something",
    "nothing",
    "everything",
    "anyone",
    "someone",
    "way",
    "get",
    "going",
];

/// Reads one statement through the lexicon's word lists alone.
pub fn read_lexicon(text: &str) -> Reading {
    read_folded(text).0
}

/// `read_lexicon`, with the folded text it read (lowercase, full-width folded, placeholders
/// out): the learned model reads the same.
pub fn read_folded(text: &str) -> (Reading, String) {
    let lx = lexicon();
    let folded = fold(&strip_placeholders(text));
    // Positions are byte offsets in `folded`, the same unit for both scripts, so "the first
    // named" means first in the text however the languages mix.
    let mut counts: Vec<(u16, u8, usize)> = Vec::new(); // (concept, count, first position)
    let mut note = |c: u16, position: usize| match counts.iter_mut().find(|e| e.0 == c) {
        Some(e) => {
            e.1 = e.1.saturating_add(1);
            e.2 = e.2.min(position);
        }
        None => counts.push((c, 1, position)),
    };
    let mut words: Vec<String> = Vec::new();
    let (mut negative, mut positive, mut critical) = (0.0f32, 0.0f32, false);

    // English: concept phrases on the stems, the rest as words.
    let raw: Vec<&str> = english_words(&folded).collect();
    let offsets: Vec<usize> = raw
        .iter()
        .map(|w| w.as_ptr() as usize - folded.as_ptr() as usize)
        .collect();
    let stems: Vec<String> = raw.iter().map(|w| stem(w)).collect();
    let latin = stems.len();
    let mut covered = vec![false; stems.len()];
    for (start, len, c) in lx.concepts_en(&stems) {
        note(c, offsets[start]);
        covered[start..start + len]
            .iter_mut()
            .for_each(|x| *x = true);
    }
    for (i, s) in stems.iter().enumerate() {
        if !covered[i] && s.len() > 2 && !is_stop_word(raw[i]) && !is_number(s) {
            words.push(s.clone());
        }
    }
    let tones = lx.tones_en(&stems);
    tally_tones(
        &tones
            .iter()
            .map(|&(start, _, t)| (start, t))
            .collect::<Vec<_>>(),
        3,
        &mut negative,
        &mut positive,
        &mut critical,
    );
    // Where the complaint starts when a review praises first ("love the car, but ...").
    let contrast_en = stems
        .iter()
        .position(|s| EN_CONTRAST.contains(&s.as_str()))
        .map(|i| offsets[i] + raw[i].len());
    let contrast_zh = ZH_CONTRAST
        .iter()
        .filter_map(|m| folded.find(m).map(|i| i + m.len()))
        .min();
    let contrast = contrast_en.into_iter().chain(contrast_zh).min();

    // Chinese: concepts by substring over the whole text (entries may mix in Latin letters:
    // "ota升级", "hud重影"), the rest of the Han runs as character pairs.
    let mut covered = vec![false; folded.len()];
    for (start, len, c) in lx.concepts_zh(&folded) {
        note(c, start);
        covered[start..start + len]
            .iter_mut()
            .for_each(|x| *x = true);
    }
    let chars: Vec<(usize, char)> = folded.char_indices().collect();
    let han = chars.iter().filter(|(_, c)| is_han(*c)).count();
    for pair in chars.windows(2) {
        let ((i, a), (j, b)) = (pair[0], pair[1]);
        if !is_han(a)
            || !is_han(b)
            || covered[i]
            || covered[j]
            || ZH_FUNCTION_CHARS.contains(a)
            || ZH_FUNCTION_CHARS.contains(b)
        {
            continue;
        }
        words.push([a, b].iter().collect());
    }
    let tones: Vec<(usize, Tone)> = lx
        .tones_zh(&folded)
        .into_iter()
        .map(|(start, _, t)| (folded[..start].chars().count(), t))
        .collect();
    tally_tones(&tones, 2, &mut negative, &mut positive, &mut critical);

    let concept = |c: u16| &lx.concepts[c as usize];
    // The first topic more specific than "the car" or "the screen", else the first at all.
    let after_contrast = |e: &&(u16, u8, usize)| contrast.is_none_or(|c| e.2 >= c);
    let first_topic = counts
        .iter()
        .filter(|e| concept(e.0).kind == Kind::Topic)
        .min_by_key(|e| (!after_contrast(e), concept(e.0).level < 2, e.2))
        .map(|e| e.0);
    let topics: Vec<(&'static str, f32)> = counts
        .iter()
        .filter(|e| concept(e.0).kind == Kind::Topic)
        .map(|e| {
            let c = concept(e.0);
            let first = if Some(e.0) == first_topic {
                FIRST_NAMED
            } else {
                1.0
            };
            (
                c.id.as_str(),
                LEVEL_SALIENCE[c.level as usize] * first * (e.1 as f32).sqrt(),
            )
        })
        .collect();
    let main = counts
        .iter()
        .filter(|e| concept(e.0).kind == Kind::Topic)
        .zip(&topics)
        .max_by(|(a, x), (b, y)| x.1.total_cmp(&y.1).then(b.2.cmp(&a.2)))
        .map(|(e, _)| concept(e.0));
    let symptom = counts
        .iter()
        .filter(|e| concept(e.0).kind == Kind::Symptom)
        .max_by(|a, b| {
            let telling = |e: &(u16, u8, usize)| !concept(e.0).generic;
            telling(a)
                .cmp(&telling(b))
                .then(a.1.cmp(&b.1))
                .then(b.2.cmp(&a.2))
        })
        .map(|e| concept(e.0).id.as_str());
    let sentiment = if negative + positive == 0.0 {
        // People write to complain: a statement without tone words is mildly negative.
        -0.3
    } else {
        ((positive - negative) / (positive + negative)).clamp(-1.0, 1.0)
    };
    (
        Reading {
            topic: main.map(|c| c.id.as_str()),
            area: main.map(|c| c.area.as_str()),
            symptom,
            topics,
            concepts: counts
                .iter()
                .map(|e| (concept(e.0).id.as_str(), e.1))
                .collect(),
            words,
            sentiment,
            critical,
            zh: han > latin,
            learned_topics: Vec::new(),
            learned_symptoms: Vec::new(),
            learned_problems: Vec::new(),
        },
        folded,
    )
}

/// Tone words, each flipped by a negator up to `reach` words/characters before it.
fn tally_tones(
    tones: &[(usize, Tone)],
    reach: usize,
    negative: &mut f32,
    positive: &mut f32,
    critical: &mut bool,
) {
    for (i, &(at, tone)) in tones.iter().enumerate() {
        let negated = tones[..i]
            .iter()
            .any(|&(p, t)| t == Tone::Negator && at.saturating_sub(p) <= reach);
        match (tone, negated) {
            (Tone::Critical, _) => {
                *critical = true;
                *negative += 1.0;
            }
            (Tone::Negative, false) | (Tone::Positive, true) => *negative += 1.0,
            (Tone::Positive, false) => *positive += 1.0,
            (Tone::Negative, true) => *positive += 0.5,
            (Tone::Negator, _) => {}
        }
    }
}

/// `EN_STOP` as a set: a linear scan of it per word was a tenth of the reading time.
fn is_stop_word(word: &str) -> bool {
    static SET: std::sync::OnceLock<foldhash::HashSet<&'static str>> = std::sync::OnceLock::new();
    SET.get_or_init(|| EN_STOP.iter().copied().collect())
        .contains(word)
}

fn is_number(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_digit())
}

/// Redaction placeholders ("[phone]" and the like) are not words the owner used.
fn strip_placeholders(text: &str) -> String {
    let mut out = text.to_string();
    for kind in crate::redact::Kind::ALL {
        let p = kind.placeholder();
        if out.contains(p) {
            out = out.replace(p, " ");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::analysis::read;

    #[test]
    fn the_same_problem_reads_the_same_in_both_languages() {
        let a = read("车机卡顿，点了半天没反应");
        let b = read("the centre screen lags and freezes");
        assert_eq!(a.topic, b.topic);
        assert!(a.topic.is_some());
        assert!(a.zh && !b.zh);
    }

    #[test]
    fn the_specific_topic_wins_over_the_generic_one() {
        assert_eq!(read("座椅加热不工作").topic, Some("seat_heater"));
        assert_eq!(
            read("my heated seat stopped working").topic,
            Some("seat_heater")
        );
    }

    #[test]
    fn negation_flips_tone_and_danger_is_noticed() {
        assert!(read("I am not happy at all").sentiment < 0.0);
        assert!(read("love it, great car").sentiment > 0.0);
        assert!(read("smoke came out of the dashboard").critical);
        assert!(read("充电的时候冒烟了").critical);
    }

    #[test]
    fn unseen_words_still_count() {
        let r = read("嗯那个什么什么新词儿");
        assert!(!r.words.is_empty());
        let r = read("the flibbertigibbet is broken");
        assert!(r.words.iter().any(|w| w.starts_with("flibbert")));
    }
}
