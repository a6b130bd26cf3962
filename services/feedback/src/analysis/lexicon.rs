//! The bilingual concept lexicon (`data/concepts.toml`): topics (what the owner talks about,
//! at three levels of specificity), symptoms (what goes wrong), tone and critical words, and
//! the matchers that find them in text.
//!
//! English is matched on word sequences after a light stemmer, so "heated seats" meets
//! "heated seat"; Chinese by substring (Aho-Corasick). Where spans overlap, the longest wins, so
//! "无线充电" beats "充电" and "副驾座椅通风" reads as seat ventilation, not as a seat.
//!
//! Architecture invariant: data only; no knowledge of items, clusters or the bus. The words
//! live in the TOML file, never in code.

use foldhash::HashMap;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use serde::Deserialize;

const CONCEPTS_TOML: &str = include_str!("../../data/concepts.toml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Topic,
    Symptom,
}

/// One concept: a topic or a symptom, with its display names.
#[derive(Debug)]
pub struct Concept {
    pub id: String,
    pub kind: Kind,
    /// Topics: 1 generic (screen, seat), 2 system (navigation, charging), 3 specific (seat
    /// heater, charge-port flap). Symptoms: 0.
    pub level: u8,
    /// The problem area it belongs to (topics an owner would call one problem share it:
    /// CarPlay and HiCar, phone key and key card); a topic's own id when it stands alone; for
    /// a symptom, the area it implies (a leak, a smell), or empty.
    pub area: String,
    pub en: String,
    pub zh: String,
    pub safety: bool,
    pub improvement_en: String,
    pub improvement_zh: String,
    /// A symptom that only says something is wrong, or how often (broken, sometimes, error).
    pub generic: bool,
}

/// What a matched span means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Negative,
    Positive,
    Negator,
    Critical,
}

/// The lexicon with its matchers, built once per process.
pub struct Lexicon {
    pub concepts: Vec<Concept>,
    /// Every word listed for a concept (both languages), with the concept's index: the
    /// learned concept model trains on them beside its corpus.
    pub words: Vec<(u16, String)>,
    by_id: HashMap<String, u16>,
    concept_en: PhraseTable<u16>,
    concept_zh: (AhoCorasick, Vec<u16>),
    /// The Chinese entries by sound (toneless pinyin), for speech-recognition slips:
    /// "中空屏" is heard as "中控屏", "篮牙" as "蓝牙".
    concept_pinyin: SoundTable,
    /// (concept, written form) of each entry in `concept_pinyin`.
    pinyin_entries: Vec<(u16, Vec<char>)>,
    tone_en: PhraseTable<Tone>,
    tone_zh: (AhoCorasick, Vec<Tone>),
}

#[derive(Deserialize)]
struct File {
    topic: Vec<TopicDef>,
    symptom: Vec<SymptomDef>,
    sentiment: SentimentDef,
    severity: SeverityDef,
}

#[derive(Deserialize)]
struct TopicDef {
    id: String,
    level: u8,
    #[serde(default)]
    area: Option<String>,
    en: String,
    zh: String,
    #[serde(default)]
    safety: bool,
    words_en: Vec<String>,
    words_zh: Vec<String>,
    #[serde(default)]
    improvement_en: String,
    #[serde(default)]
    improvement_zh: String,
}

#[derive(Deserialize)]
struct SymptomDef {
    id: String,
    /// A symptom that by itself says which problem it is (a leak, a smell, a whistle at
    /// speed) names that problem area.
    #[serde(default)]
    area: Option<String>,
    en: String,
    zh: String,
    #[serde(default)]
    generic: bool,
    words_en: Vec<String>,
    words_zh: Vec<String>,
}

#[derive(Deserialize)]
struct SentimentDef {
    negative_en: Vec<String>,
    negative_zh: Vec<String>,
    positive_en: Vec<String>,
    positive_zh: Vec<String>,
    negators_en: Vec<String>,
    negators_zh: Vec<String>,
}

#[derive(Deserialize)]
struct SeverityDef {
    critical_en: Vec<String>,
    critical_zh: Vec<String>,
}

/// English phrases keyed by their first stem.
struct PhraseTable<T> {
    by_first: HashMap<String, Vec<(Vec<String>, T)>>,
}

impl<T: Copy> PhraseTable<T> {
    fn new() -> Self {
        PhraseTable {
            by_first: HashMap::default(),
        }
    }

    fn add(&mut self, phrase: &str, value: T) {
        self.add_tokens(english_words(&fold(phrase)).map(stem).collect(), value);
    }

    fn add_tokens(&mut self, stems: Vec<String>, value: T) {
        if let Some(first) = stems.first().cloned() {
            let list = self.by_first.entry(first).or_default();
            if !list.iter().any(|(s, _)| *s == stems) {
                list.push((stems, value));
            }
        }
    }

    /// Non-overlapping matches in `stems`, the longest phrases first: (start, len, value).
    fn find(&self, stems: &[String]) -> Vec<(usize, usize, T)> {
        longest_first(self.find_all(stems))
    }

    /// Every match, overlapping ones included.
    fn find_all(&self, stems: &[String]) -> Vec<(usize, usize, T)> {
        let mut all = Vec::new();
        for i in 0..stems.len() {
            if let Some(cands) = self.by_first.get(&stems[i]) {
                for (p, v) in cands {
                    if stems[i..].starts_with(p) {
                        all.push((i, p.len(), *v));
                    }
                }
            }
        }
        all
    }
}

/// Chinese entries by sound: each syllable an id, entries keyed by their first two, so a
/// text's characters are looked up once each and compared as numbers (with strings this was
/// most of the reading time of a Chinese statement).
/// An entry's syllable ids and its index in `pinyin_entries`.
type SoundEntry = (Vec<u16>, u32);

#[derive(Default)]
struct SoundTable {
    ids: HashMap<&'static str, u16>,
    by_first_two: HashMap<(u16, u16), Vec<SoundEntry>>,
}

impl SoundTable {
    fn sound_of(&self, c: char) -> Option<u16> {
        self.ids.get(syllable(c)?).copied()
    }

    fn add(&mut self, han: &[char], entry: u32) {
        let mut sounds = Vec::with_capacity(han.len());
        for &c in han {
            let Some(s) = syllable(c) else { return };
            let next = self.ids.len() as u16;
            sounds.push(*self.ids.entry(s).or_insert(next));
        }
        if sounds.len() >= 2 {
            self.by_first_two
                .entry((sounds[0], sounds[1]))
                .or_default()
                .push((sounds, entry));
        }
    }

    /// Every entry heard in `chars`: (start char, length in chars, entry).
    fn find_all(&self, chars: &[(usize, char)]) -> Vec<(usize, usize, u32)> {
        let sounds: Vec<Option<u16>> = chars.iter().map(|&(_, c)| self.sound_of(c)).collect();
        let mut all = Vec::new();
        for i in 0..sounds.len().saturating_sub(1) {
            let (Some(a), Some(b)) = (sounds[i], sounds[i + 1]) else {
                continue;
            };
            for (entry_sounds, entry) in self.by_first_two.get(&(a, b)).into_iter().flatten() {
                let n = entry_sounds.len();
                let same = sounds
                    .get(i..i + n)
                    .is_some_and(|s| s.iter().zip(entry_sounds).all(|(x, y)| *x == Some(*y)));
                if same {
                    all.push((i, n, *entry));
                }
            }
        }
        all
    }
}

/// Keeps the longest of overlapping spans, in text order. Among equals the later one wins:
/// in both languages the head comes last ("front seat heater", "副驾座椅通风").
fn longest_first<T: Copy>(mut spans: Vec<(usize, usize, T)>) -> Vec<(usize, usize, T)> {
    if spans.len() < 2 {
        return spans;
    }
    spans.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let mut kept: Vec<(usize, usize, T)> = Vec::with_capacity(spans.len());
    for s in spans {
        if kept.iter().all(|k| s.0 + s.1 <= k.0 || k.0 + k.1 <= s.0) {
            kept.push(s);
        }
    }
    kept.sort_by_key(|k| k.0);
    kept
}

fn zh_matcher<T: Copy>(entries: Vec<(String, T)>) -> Result<(AhoCorasick, Vec<T>), String> {
    let mut seen = HashMap::default();
    let mut patterns = Vec::new();
    let mut values = Vec::new();
    for (word, value) in entries {
        let word = fold(&word);
        if word.is_empty() || seen.insert(word.clone(), ()).is_some() {
            continue;
        }
        patterns.push(word);
        values.push(value);
    }
    let ac = AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .build(&patterns)
        .map_err(|e| e.to_string())?;
    Ok((ac, values))
}

impl Lexicon {
    /// Parses and indexes a lexicon file.
    pub fn parse(toml_text: &str) -> Result<Lexicon, String> {
        let file: File = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        let mut concepts = Vec::new();
        let mut concept_en = PhraseTable::new();
        let mut concept_pinyin = SoundTable::default();
        let mut pinyin_entries = Vec::new();
        let mut zh_entries = Vec::new();
        let mut ids = foldhash::HashSet::default();
        let mut words = Vec::new();
        let topics = file.topic.into_iter().map(|t| {
            (
                Concept {
                    area: t.area.unwrap_or_else(|| t.id.clone()),
                    id: t.id,
                    kind: Kind::Topic,
                    level: t.level.clamp(1, 3),
                    en: t.en,
                    zh: t.zh,
                    safety: t.safety,
                    improvement_en: t.improvement_en,
                    improvement_zh: t.improvement_zh,
                    generic: false,
                },
                t.words_en,
                t.words_zh,
            )
        });
        let symptoms = file.symptom.into_iter().map(|s| {
            (
                Concept {
                    area: s.area.unwrap_or_default(),
                    id: s.id,
                    kind: Kind::Symptom,
                    level: 0,
                    en: s.en,
                    zh: s.zh,
                    safety: false,
                    improvement_en: String::new(),
                    improvement_zh: String::new(),
                    generic: s.generic,
                },
                s.words_en,
                s.words_zh,
            )
        });
        for (concept, en, zh) in topics.chain(symptoms) {
            if !ids.insert(concept.id.clone()) {
                return Err(format!("concept {:?} is defined twice", concept.id));
            }
            let index = u16::try_from(concepts.len()).map_err(|_| "too many concepts")?;
            words.extend(en.iter().chain(&zh).map(|w| (index, w.clone())));
            // Its display names are words for it too.
            for w in en.iter().chain([&concept.en]) {
                concept_en.add(w, index);
            }
            for w in zh.into_iter().chain([concept.zh.clone()]) {
                // A "Chinese" entry in Latin letters only ("carplay", "8155") is an English one.
                if !w.chars().any(is_han) {
                    concept_en.add(&w, index);
                    continue;
                }
                let han: Vec<char> = w.chars().filter(|c| is_han(*c)).collect();
                // Entries with particles ("湿了", "锁不上") would be heard in any sentence.
                if han.len() >= 2
                    && han.len() == w.chars().count()
                    && !han.iter().any(|c| ZH_FUNCTION_CHARS.contains(*c))
                {
                    let entry = pinyin_entries.len() as u32;
                    concept_pinyin.add(&han, entry);
                    pinyin_entries.push((index, han));
                }
                zh_entries.push((w, index));
            }
            concepts.push(concept);
        }
        let s = file.sentiment;
        let v = file.severity;
        let mut tone_en = PhraseTable::new();
        let mut tone_zh = Vec::new();
        for (words, tone) in [
            (&v.critical_en, Tone::Critical),
            (&s.negative_en, Tone::Negative),
            (&s.positive_en, Tone::Positive),
            (&s.negators_en, Tone::Negator),
        ] {
            for w in words {
                tone_en.add(w, tone);
            }
        }
        for (words, tone) in [
            (v.critical_zh, Tone::Critical),
            (s.negative_zh, Tone::Negative),
            (s.positive_zh, Tone::Positive),
            (s.negators_zh, Tone::Negator),
        ] {
            for w in words {
                if w.chars().any(is_han) {
                    tone_zh.push((w, tone));
                } else {
                    tone_en.add(&w, tone);
                }
            }
        }
        Ok(Lexicon {
            words,
            by_id: concepts
                .iter()
                .enumerate()
                .map(|(i, c)| (c.id.clone(), i as u16))
                .collect(),
            concepts,
            concept_en,
            concept_zh: zh_matcher(zh_entries)?,
            concept_pinyin,
            pinyin_entries,
            tone_en,
            tone_zh: zh_matcher(tone_zh)?,
        })
    }

    /// Concepts named in English stems: (start, len, concept).
    pub fn concepts_en(&self, stems: &[String]) -> Vec<(usize, usize, u16)> {
        self.concept_en.find(stems)
    }

    /// Concepts named in Chinese text: (byte start, byte len, concept). Written forms first;
    /// where none matched, forms that sound the same.
    pub fn concepts_zh(&self, text: &str) -> Vec<(usize, usize, u16)> {
        let (ac, values) = &self.concept_zh;
        let mut spans = longest_first(
            ac.find_overlapping_iter(text)
                .map(|m| (m.start(), m.len(), values[m.pattern().as_usize()]))
                .collect(),
        );
        // Sound-alikes are Chinese entries only: a text without Han has none to hear.
        if !text.chars().any(is_han) {
            return spans;
        }
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let heard: Vec<(usize, usize, u16)> = self
            .concept_pinyin
            .find_all(&chars)
            .into_iter()
            .filter_map(|(i, n, entry)| {
                // A slip changes a character or two, not most of them: sound-alikes that
                // share under half their characters with the entry are other words.
                let (concept, written) = &self.pinyin_entries[entry as usize];
                let same = (0..n).filter(|k| chars[i + k].1 == written[*k]).count();
                if same * 2 < n {
                    return None;
                }
                let start = chars[i].0;
                let end = chars.get(i + n).map_or(text.len(), |e| e.0);
                Some((start, end - start, *concept))
            })
            .filter(|h| spans.iter().all(|s| h.0 + h.1 <= s.0 || s.0 + s.1 <= h.0))
            .collect();
        let heard = longest_first(heard);
        if !heard.is_empty() {
            spans.extend(heard);
            spans.sort_by_key(|s| s.0);
        }
        spans
    }

    pub fn tones_en(&self, stems: &[String]) -> Vec<(usize, usize, Tone)> {
        self.tone_en.find(stems)
    }

    pub fn tones_zh(&self, text: &str) -> Vec<(usize, usize, Tone)> {
        let (ac, values) = &self.tone_zh;
        longest_first(
            ac.find_overlapping_iter(text)
                .map(|m| (m.start(), m.len(), values[m.pattern().as_usize()]))
                .collect(),
        )
    }

    pub fn concept(&self, id: &str) -> Option<&Concept> {
        self.by_id.get(id).map(|&i| &self.concepts[i as usize])
    }
}

/// Chinese characters that carry no topic on their own (particles, pronouns, fillers).
pub const ZH_FUNCTION_CHARS: &str = "的了是我你他她它们很就都也在有和与或吧呢吗啊呀嘛哦嗯哈那这个么还又再被把给让跟对说想要会能可以得着过一不没";

/// The lexicon bundled with this build.
pub fn lexicon() -> &'static Lexicon {
    static LEXICON: OnceLock<Lexicon> = OnceLock::new();
    // The file is compiled in and checked by a unit test, so this cannot fail at run time.
    LEXICON.get_or_init(|| Lexicon::parse(CONCEPTS_TOML).expect("data/concepts.toml is valid"))
}

/// Lowercase with full-width forms folded to ASCII (ＣａｒＰｌａｙ → carplay, ， → ,).
pub fn fold(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

pub use cabin_text::is_han;

/// The Latin-script words of folded text (letters, digits, apostrophes inside words).
pub fn english_words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| (is_han(c) || !c.is_alphanumeric()) && c != '\'')
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
}

/// The toneless pinyin of a Han character (the character itself when it has none).
fn syllable(c: char) -> Option<&'static str> {
    use pinyin::ToPinyin;
    c.to_pinyin().map(|p| p.plain())
}

/// A light stemmer: one of -ing, -ed, -es, -s off, keeping at least three letters; -es only
/// after s, x, z, ch and sh ("buzzes" → "buzz", but "tires" → "tire", apart from "tired").
pub fn stem(word: &str) -> String {
    let long_enough = |base: &str| base.chars().count() >= 3;
    for suffix in ["ing", "ed"] {
        if let Some(base) = word.strip_suffix(suffix)
            && long_enough(base)
        {
            return base.to_string();
        }
    }
    if let Some(base) = word.strip_suffix("es")
        && long_enough(base)
        && ["s", "x", "z", "ch", "sh"]
            .iter()
            .any(|e| base.ends_with(e))
    {
        return base.to_string();
    }
    match word.strip_suffix('s') {
        Some(base) if long_enough(base) && !base.ends_with('s') => base.to_string(),
        _ => word.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_lexicon_parses_and_is_broad() {
        let lx = lexicon();
        let topics = lx.concepts.iter().filter(|c| c.kind == Kind::Topic).count();
        let symptoms = lx.concepts.len() - topics;
        assert!(topics >= 80, "{topics} topics");
        assert!(symptoms >= 20, "{symptoms} symptoms");
        for c in &lx.concepts {
            assert!(
                !c.en.is_empty() && !c.zh.is_empty(),
                "{} has no display name",
                c.id
            );
        }
    }

    #[test]
    fn a_duplicate_concept_is_refused_by_name() {
        let one = "[[topic]]\nid='a'\nlevel=1\nen='a'\nzh='甲'\nwords_en=['a']\nwords_zh=['甲']\n";
        let rest = "[sentiment]\nnegative_en=[]\nnegative_zh=[]\npositive_en=[]\npositive_zh=[]\nnegators_en=[]\nnegators_zh=[]\n[severity]\ncritical_en=[]\ncritical_zh=[]\nsymptom=[]\n";
        let err = Lexicon::parse(&format!("symptom=[]\n{one}{one}{rest}"))
            .err()
            .unwrap_or_default();
        assert!(err.contains("twice") || err.contains("symptom"), "{err}");
    }

    #[test]
    fn longest_phrase_wins_in_both_scripts() {
        let lx = lexicon();
        let stems: Vec<String> = english_words("the wireless charging pad overheats")
            .map(stem)
            .collect();
        let hits = lx.concepts_en(&stems);
        let first = hits.first().map(|h| lx.concepts[h.2 as usize].id.as_str());
        assert_eq!(first, Some("wireless_charger"), "{hits:?}");
        let zh = lx.concepts_zh("无线充电板太烫");
        let first = zh.first().map(|h| lx.concepts[h.2 as usize].id.as_str());
        assert_eq!(first, Some("wireless_charger"));
    }

    #[test]
    fn a_misheard_word_is_read_by_its_sound() {
        let lx = lexicon();
        let id = |text: &str| {
            lx.concepts_zh(text)
                .first()
                .map(|h| lx.concepts[h.2 as usize].id.clone())
        };
        assert_eq!(id("中空屏老是卡"), id("中控屏老是卡"));
        assert!(id("中空屏老是卡").is_some());
        assert_eq!(id("篮牙连不上"), id("蓝牙连不上"));
    }

    #[test]
    fn full_width_text_folds_to_ascii() {
        assert_eq!(fold("ＣａｒＰｌａｙ　断连"), "carplay 断连");
        assert!(is_han('\u{f900}') && is_han('车') && !is_han('a'));
    }
}
