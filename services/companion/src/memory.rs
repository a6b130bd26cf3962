//! What the companion remembers about the user, per persona: the recent conversation, a
//! rolling summary of what fell out of it, and facts (name, likes, plans, places).
//!
//! Everything is bounded, and each persona's memory is one JSON file replaced atomically,
//! so a power cut leaves the old or the new memory, never a torn one.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use cabin_text::is_han as is_cjk;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Messages (user and companion) kept verbatim.
    pub window_messages: usize,
    /// Characters of rolling summary kept.
    pub summary_chars: usize,
    /// Facts of each kind kept (newest win).
    pub facts_per_kind: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            window_messages: 16,
            summary_chars: 1500,
            facts_per_kind: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub from_user: bool,
    pub text: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Facts {
    pub name: Option<String>,
    pub likes: Vec<String>,
    pub dislikes: Vec<String>,
    pub plans: Vec<String>,
    pub places: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Memory {
    pub facts: Facts,
    /// Oldest first; each note one line.
    pub summary: VecDeque<String>,
    pub window: VecDeque<Message>,
    /// Corpus line ids used lately, so the offline engine does not repeat itself.
    pub recent_lines: VecDeque<String>,
    pub turns: u64,
}

impl Memory {
    /// Records one exchange, learns facts from the user's words and rolls old messages into
    /// the summary.
    pub fn record(&mut self, config: &MemoryConfig, user: &str, reply: &str) -> Vec<Fact> {
        let learned = extract_facts(user);
        for fact in &learned {
            self.facts.learn(fact.clone(), config.facts_per_kind);
        }
        self.window.push_back(Message {
            from_user: true,
            text: user.to_string(),
        });
        self.window.push_back(Message {
            from_user: false,
            text: reply.to_string(),
        });
        self.turns += 1;
        while self.window.len() > config.window_messages.max(2) {
            if let Some(old) = self.window.pop_front()
                && old.from_user
                && let Some(note) = summary_note(&old.text)
            {
                self.summary.push_back(note);
            }
        }
        while self
            .summary
            .iter()
            .map(|s| s.chars().count())
            .sum::<usize>()
            > config.summary_chars
        {
            self.summary.pop_front();
        }
        learned
    }

    pub fn remember_line(&mut self, id: &str) {
        self.recent_lines.push_back(id.to_string());
        while self.recent_lines.len() > 40 {
            self.recent_lines.pop_front();
        }
    }

    /// The last few user messages joined, for lorebook scanning.
    pub fn recent_user_text(&self, depth: usize) -> String {
        let mut texts: Vec<&str> = self
            .window
            .iter()
            .rev()
            .filter(|m| m.from_user)
            .take(depth)
            .map(|m| m.text.as_str())
            .collect();
        texts.reverse();
        texts.join("\n")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Name(String),
    Like(String),
    Dislike(String),
    Plan(String),
    Place(String),
}

impl Facts {
    fn learn(&mut self, fact: Fact, cap: usize) {
        let push = |list: &mut Vec<String>, v: String| {
            list.retain(|x| x != &v);
            list.push(v);
            while list.len() > cap.max(1) {
                list.remove(0);
            }
        };
        match fact {
            Fact::Name(n) => self.name = Some(n),
            Fact::Like(v) => {
                self.dislikes.retain(|x| x != &v);
                push(&mut self.likes, v)
            }
            Fact::Dislike(v) => {
                self.likes.retain(|x| x != &v);
                push(&mut self.dislikes, v)
            }
            Fact::Plan(v) => push(&mut self.plans, v),
            Fact::Place(v) => push(&mut self.places, v),
        }
    }
}

/// A line of summary for a message leaving the window, if it says anything worth keeping.
fn summary_note(text: &str) -> Option<String> {
    let text = text.trim();
    let meaningful = text.chars().filter(|c| c.is_alphanumeric()).count();
    if meaningful < 6 {
        return None;
    }
    let short: String = text.chars().take(80).collect();
    Some(short)
}

const WORD_STOPS: &[&str] = &[
    "and", "but", "because", "so", "when", "if", "though", "which", "too", "very", "a", "lot",
];
const VAGUE: &[&str] = &[
    "it", "that", "this", "you", "them", "him", "her", "to", "what", "什么", "你", "这个", "那个",
    "它",
];

/// A phrase that introduces a fact, and the kind of fact.
type Cue = (&'static str, fn(String) -> Fact);

/// Facts stated in one message, zh or en.
pub fn extract_facts(text: &str) -> Vec<Fact> {
    let mut facts = Vec::new();
    let lower = text.to_lowercase();
    // English: patterns on the lowercased text, values cut from the original to keep case.
    let en: &[Cue] = &[
        ("my name is ", Fact::Name),
        ("call me ", Fact::Name),
        ("my name's ", Fact::Name),
        ("i don't like ", Fact::Dislike),
        ("i do not like ", Fact::Dislike),
        ("i hate ", Fact::Dislike),
        ("i really like ", Fact::Like),
        ("i like ", Fact::Like),
        ("i love ", Fact::Like),
        ("i enjoy ", Fact::Like),
        ("i'm going to ", Fact::Plan),
        ("i am going to ", Fact::Plan),
        ("i plan to ", Fact::Plan),
        ("i'm planning to ", Fact::Plan),
        ("i live in ", Fact::Place),
        ("i'm from ", Fact::Place),
        ("i am from ", Fact::Place),
    ];
    let mut taken: Vec<usize> = Vec::new();
    for (cue, make) in en {
        for (at, _) in lower.match_indices(cue) {
            if at > 0 && lower.as_bytes()[at - 1].is_ascii_alphabetic() {
                continue;
            }
            if taken
                .iter()
                .any(|t| (*t..*t + 8).contains(&at) || (at..at + cue.len()).contains(t))
            {
                continue;
            }
            let is_name = matches!(make(String::new()), Fact::Name(_));
            let max_words = if is_name { 2 } else { 5 };
            // Values keep the original case; when lowercasing changed byte offsets (a few
            // non-ASCII letters do), the lowercased text is used instead.
            let rest = if text.len() == lower.len() {
                text.get(at + cue.len()..)
            } else {
                None
            };
            let rest = rest.unwrap_or(&lower[at + cue.len()..]);
            let value = english_value(rest, max_words, is_name);
            if let Some(v) = value {
                taken.push(at);
                facts.push(make(v));
            }
        }
    }
    // Chinese.
    let zh: &[Cue] = &[
        ("我的名字是", Fact::Name),
        ("我叫", Fact::Name),
        ("叫我", Fact::Name),
        ("我不喜欢", Fact::Dislike),
        ("我讨厌", Fact::Dislike),
        ("我最喜欢", Fact::Like),
        ("我喜欢", Fact::Like),
        ("我爱吃", Fact::Like),
        ("我爱", Fact::Like),
        ("我打算", Fact::Plan),
        ("我准备", Fact::Plan),
        ("我要去", Fact::Plan),
        ("明天要", Fact::Plan),
        ("周末要", Fact::Plan),
        ("我住在", Fact::Place),
        ("我老家在", Fact::Place),
        ("老家是", Fact::Place),
    ];
    let mut zh_taken: Vec<(usize, usize)> = Vec::new();
    for (cue, make) in zh {
        for (at, _) in text.match_indices(cue) {
            if zh_taken.iter().any(|(s, e)| at >= *s && at < *e) {
                continue;
            }
            let is_name = matches!(make(String::new()), Fact::Name(_));
            let is_plan = matches!(make(String::new()), Fact::Plan(_));
            let rest = &text[at + cue.len()..];
            let max = if is_name { 4 } else { 12 };
            let value: String = rest
                .chars()
                .take_while(|c| {
                    !matches!(
                        c,
                        '，' | '。'
                            | '！'
                            | '？'
                            | ','
                            | '.'
                            | '!'
                            | '?'
                            | '；'
                            | ';'
                            | ' '
                            | '、'
                            | '～'
                            | '~'
                    )
                })
                .take(max)
                .collect();
            let value = value
                .trim_end_matches(['的', '了', '啊', '呀', '吧', '呢', '哦', '嘛'])
                .to_string();
            let value = if is_plan && (cue.starts_with("明天") || cue.starts_with("周末")) {
                format!("{}{}", &cue[..6], value)
            } else if is_plan && *cue == "我要去" {
                format!("去{value}")
            } else {
                value
            };
            if value.chars().count() < 1 || VAGUE.iter().any(|v| value.starts_with(v)) {
                continue;
            }
            if is_name
                && (value.chars().any(|c| !is_cjk(c) && !c.is_alphanumeric())
                    || value.starts_with("什么"))
            {
                continue;
            }
            zh_taken.push((at, at + cue.len() + value.len()));
            facts.push(make(value));
        }
    }
    facts
}

fn english_value(rest: &str, max_words: usize, is_name: bool) -> Option<String> {
    let mut words = Vec::new();
    for raw in rest.split_whitespace() {
        let ends = raw.ends_with([',', '.', '!', '?', ';', ':']);
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-');
        if word.is_empty()
            || WORD_STOPS.contains(&word.to_lowercase().as_str())
            || word.chars().any(is_cjk)
        {
            break;
        }
        words.push(word.to_string());
        if ends || words.len() == max_words {
            break;
        }
    }
    let first = words.first()?.to_lowercase();
    if VAGUE.contains(&first.as_str()) {
        return None;
    }
    if is_name {
        // "call me back", "my name is not important": names are capitalised or a single word.
        if ["back", "later", "not", "a", "an", "the"].contains(&first.as_str()) {
            return None;
        }
        let name: Vec<String> = words
            .iter()
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect())
                    .unwrap_or_default()
            })
            .collect();
        return Some(name.join(" "));
    }
    Some(words.join(" "))
}

/// Memories on disk: `DIR/<persona>.json`.
pub struct MemoryStore {
    dir: PathBuf,
}

impl MemoryStore {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, persona: &str) -> PathBuf {
        self.dir.join(format!("{persona}.json"))
    }

    /// The persona's memory; a damaged file is set aside (`.damaged`) and memory starts
    /// empty rather than the service failing.
    pub fn load(&self, persona: &str) -> Memory {
        let path = self.path(persona);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(memory) => memory,
                Err(e) => {
                    tracing::warn!(%e, path = %path.display(), "damaged memory file set aside");
                    let _ = std::fs::rename(&path, path.with_extension("json.damaged"));
                    Memory::default()
                }
            },
            Err(_) => Memory::default(),
        }
    }

    pub fn save(&self, persona: &str, memory: &Memory) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(memory).map_err(std::io::Error::other)?;
        cabin_common::fsutil::write_atomic(&self.path(persona), &bytes)
    }

    pub fn forget(&self, persona: &str) -> std::io::Result<()> {
        for path in [
            self.path(persona),
            self.path(persona).with_extension("json.damaged"),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_facts_in_both_languages() {
        let f = extract_facts(
            "Hi, my name is alex and I love hiking in the hills. I'm going to visit Oslo next week.",
        );
        assert!(f.contains(&Fact::Name("Alex".into())), "{f:?}");
        assert!(
            f.contains(&Fact::Like("hiking in the hills".into())),
            "{f:?}"
        );
        assert!(
            f.contains(&Fact::Plan("visit Oslo next week".into())),
            "{f:?}"
        );
        let f = extract_facts("我叫王芳，我喜欢火锅。明天要去杭州出差");
        assert_eq!(
            f,
            vec![
                Fact::Name("王芳".into()),
                Fact::Like("火锅".into()),
                Fact::Plan("明天去杭州出差".into())
            ]
        );
        let f = extract_facts("I don't like traffic jams. 我不喜欢下雨天");
        assert!(
            f.contains(&Fact::Dislike("traffic jams".into()))
                && f.contains(&Fact::Dislike("下雨天".into())),
            "{f:?}"
        );
        assert!(extract_facts("call me back later").is_empty());
        assert!(extract_facts("I like it").is_empty());
        assert!(extract_facts("你记得我叫什么吗").is_empty());
        // Lowercasing that changes byte lengths must not shift the slices.
        assert!(!extract_facts("İİİ my name is Ayşe").is_empty());
    }

    #[test]
    fn memory_is_bounded_and_rolls_into_a_summary() {
        let config = MemoryConfig {
            window_messages: 4,
            summary_chars: 100,
            facts_per_kind: 2,
        };
        let mut m = Memory::default();
        for i in 0..20 {
            m.record(
                &config,
                &format!("I like topic number {i}. It was a long day today"),
                "ok",
            );
        }
        assert_eq!(m.window.len(), 4);
        assert!(m.summary.iter().map(|s| s.chars().count()).sum::<usize>() <= 100);
        assert!(!m.summary.is_empty());
        assert_eq!(m.facts.likes, vec!["topic number 18", "topic number 19"]);
        assert_eq!(m.turns, 20);
    }

    #[test]
    fn store_survives_reopen_and_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::open(dir.path()).unwrap();
        let mut m = Memory::default();
        m.record(
            &MemoryConfig::default(),
            "My name is Li",
            "Nice to meet you",
        );
        store.save("warm", &m).unwrap();
        let again = MemoryStore::open(dir.path()).unwrap();
        assert_eq!(again.load("warm"), m);
        std::fs::write(dir.path().join("other.json"), b"{torn").unwrap();
        assert_eq!(again.load("other"), Memory::default());
        assert!(dir.path().join("other.json.damaged").exists());
        again.forget("warm").unwrap();
        again.forget("other").unwrap();
        assert_eq!(again.load("warm"), Memory::default());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
