//! The user's mood from what they said, in Chinese and English.
//!
//! A lexicon with weights, negation ("not happy", "不开心") and intensifiers. It reads one
//! message; the agent smooths over turns. Crisis language is [`crate::safety`]'s job, not
//! a mood.

use cabin_text::is_han as is_cjk;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mood {
    Neutral,
    Happy,
    Tired,
    Sad,
    Angry,
    Anxious,
    Bored,
    Lonely,
}

impl Mood {
    pub const ALL: [Mood; 8] = [
        Mood::Neutral,
        Mood::Happy,
        Mood::Tired,
        Mood::Sad,
        Mood::Angry,
        Mood::Anxious,
        Mood::Bored,
        Mood::Lonely,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Mood::Neutral => "neutral",
            Mood::Happy => "happy",
            Mood::Tired => "tired",
            Mood::Sad => "sad",
            Mood::Angry => "angry",
            Mood::Anxious => "anxious",
            Mood::Bored => "bored",
            Mood::Lonely => "lonely",
        }
    }

    /// The emotion the companion answers with (the `Reply` signal's `emotion`).
    pub fn answering_emotion(self) -> &'static str {
        match self {
            Mood::Neutral => "friendly",
            Mood::Happy => "joyful",
            Mood::Tired => "caring",
            Mood::Sad => "compassionate",
            Mood::Angry => "calming",
            Mood::Anxious => "reassuring",
            Mood::Bored => "playful",
            Mood::Lonely => "warm",
        }
    }
}

/// (cue, mood, weight). English cues match whole words (lowercased); Chinese cues match as
/// substrings.
const CUES: &[(&str, Mood, f32)] = &[
    // tired
    ("tired", Mood::Tired, 1.0),
    ("exhausted", Mood::Tired, 1.5),
    ("sleepy", Mood::Tired, 1.2),
    ("drowsy", Mood::Tired, 1.5),
    ("worn out", Mood::Tired, 1.2),
    ("yawn", Mood::Tired, 0.8),
    ("knackered", Mood::Tired, 1.2),
    ("累", Mood::Tired, 1.0),
    ("困", Mood::Tired, 1.2),
    ("疲惫", Mood::Tired, 1.5),
    ("疲劳", Mood::Tired, 1.5),
    ("没精神", Mood::Tired, 1.2),
    ("打哈欠", Mood::Tired, 1.0),
    ("犯困", Mood::Tired, 1.5),
    ("熬夜", Mood::Tired, 0.8),
    // sad
    ("sad", Mood::Sad, 1.0),
    ("unhappy", Mood::Sad, 1.0),
    ("down", Mood::Sad, 0.5),
    ("depressed", Mood::Sad, 1.5),
    ("upset", Mood::Sad, 1.0),
    ("miserable", Mood::Sad, 1.5),
    ("heartbroken", Mood::Sad, 1.8),
    ("crying", Mood::Sad, 1.5),
    ("cry", Mood::Sad, 1.0),
    ("bad day", Mood::Sad, 1.2),
    ("broke up", Mood::Sad, 1.5),
    ("miss her", Mood::Sad, 0.8),
    ("miss him", Mood::Sad, 0.8),
    ("难过", Mood::Sad, 1.2),
    ("伤心", Mood::Sad, 1.2),
    ("不开心", Mood::Sad, 1.2),
    ("心情不好", Mood::Sad, 1.2),
    ("郁闷", Mood::Sad, 1.0),
    ("失落", Mood::Sad, 1.0),
    ("想哭", Mood::Sad, 1.5),
    ("哭了", Mood::Sad, 1.2),
    ("分手", Mood::Sad, 1.5),
    ("委屈", Mood::Sad, 1.2),
    ("糟糕", Mood::Sad, 0.6),
    // angry
    ("angry", Mood::Angry, 1.2),
    ("mad", Mood::Angry, 0.8),
    ("furious", Mood::Angry, 1.8),
    ("annoyed", Mood::Angry, 1.0),
    ("annoying", Mood::Angry, 0.8),
    ("pissed", Mood::Angry, 1.5),
    ("hate", Mood::Angry, 0.8),
    ("idiot", Mood::Angry, 1.0),
    ("frustrated", Mood::Angry, 1.2),
    ("生气", Mood::Angry, 1.2),
    ("气死", Mood::Angry, 1.5),
    ("烦死", Mood::Angry, 1.2),
    ("烦", Mood::Angry, 0.7),
    ("火大", Mood::Angry, 1.5),
    ("恼火", Mood::Angry, 1.2),
    ("讨厌", Mood::Angry, 0.8),
    ("加塞", Mood::Angry, 1.0),
    ("路怒", Mood::Angry, 1.2),
    // anxious
    ("anxious", Mood::Anxious, 1.2),
    ("nervous", Mood::Anxious, 1.2),
    ("worried", Mood::Anxious, 1.2),
    ("worry", Mood::Anxious, 0.8),
    ("stressed", Mood::Anxious, 1.2),
    ("stress", Mood::Anxious, 0.8),
    ("scared", Mood::Anxious, 1.2),
    ("afraid", Mood::Anxious, 1.0),
    ("late for", Mood::Anxious, 1.0),
    ("deadline", Mood::Anxious, 0.8),
    ("焦虑", Mood::Anxious, 1.5),
    ("紧张", Mood::Anxious, 1.2),
    ("担心", Mood::Anxious, 1.2),
    ("着急", Mood::Anxious, 1.2),
    ("压力", Mood::Anxious, 1.0),
    ("害怕", Mood::Anxious, 1.2),
    ("来不及", Mood::Anxious, 1.2),
    ("迟到", Mood::Anxious, 1.0),
    ("慌", Mood::Anxious, 0.8),
    // bored
    ("bored", Mood::Bored, 1.2),
    ("boring", Mood::Bored, 1.0),
    ("nothing to do", Mood::Bored, 1.0),
    ("无聊", Mood::Bored, 1.2),
    ("没意思", Mood::Bored, 0.8),
    ("闷", Mood::Bored, 0.6),
    ("好漫长", Mood::Bored, 0.8),
    // lonely
    ("lonely", Mood::Lonely, 1.5),
    ("alone", Mood::Lonely, 0.8),
    ("no one", Mood::Lonely, 0.8),
    ("nobody", Mood::Lonely, 0.8),
    ("孤单", Mood::Lonely, 1.5),
    ("孤独", Mood::Lonely, 1.5),
    ("寂寞", Mood::Lonely, 1.5),
    ("一个人", Mood::Lonely, 0.8),
    ("没人", Mood::Lonely, 0.8),
    ("陪我", Mood::Lonely, 0.6),
    // happy
    ("happy", Mood::Happy, 1.0),
    ("great", Mood::Happy, 0.8),
    ("awesome", Mood::Happy, 1.0),
    ("excited", Mood::Happy, 1.2),
    ("glad", Mood::Happy, 0.8),
    ("wonderful", Mood::Happy, 1.0),
    ("good news", Mood::Happy, 1.2),
    ("yay", Mood::Happy, 1.0),
    ("love it", Mood::Happy, 1.0),
    ("fantastic", Mood::Happy, 1.0),
    ("promoted", Mood::Happy, 1.2),
    ("开心", Mood::Happy, 1.2),
    ("高兴", Mood::Happy, 1.2),
    ("快乐", Mood::Happy, 1.0),
    ("太好了", Mood::Happy, 1.2),
    ("兴奋", Mood::Happy, 1.2),
    ("好消息", Mood::Happy, 1.2),
    ("哈哈", Mood::Happy, 0.8),
    ("不错", Mood::Happy, 0.6),
    ("爽", Mood::Happy, 0.8),
    ("升职", Mood::Happy, 1.2),
];

const NEGATIONS_EN: &[&str] = &[
    "not", "no", "never", "don't", "isn't", "wasn't", "aren't", "am't", "hardly",
];
const NEGATIONS_ZH: &[char] = &['不', '没', '别', '非'];
const INTENSIFIERS_EN: &[&str] = &["very", "so", "really", "extremely", "super", "too"];
const INTENSIFIERS_ZH: &[&str] = &["很", "好", "太", "非常", "特别", "超", "真", "死了"];

/// A mood and how strongly it was expressed (0 for neutral).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoodReading {
    pub mood: Mood,
    pub strength: f32,
}

/// Reads the mood of one message.
pub fn detect(text: &str) -> MoodReading {
    let lower = text.to_lowercase();
    let words = tokens(&lower);
    let mut scores = [0f32; 8];
    for &(cue, mood, weight) in CUES {
        let cjk = cue.chars().any(is_cjk);
        let hits: Vec<usize> = if cjk {
            lower.match_indices(cue).map(|(i, _)| i).collect()
        } else {
            phrase_positions(&words, cue)
        };
        for at in hits {
            let (negated, boosted) = if cjk {
                let before: String = lower[..at]
                    .chars()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                // "不开心" is itself a cue: a negation inside a cue is not a second negation.
                let negated = !cue.starts_with(NEGATIONS_ZH) && before.ends_with(NEGATIONS_ZH)
                    || before.ends_with("不是") && !cue.starts_with('不');
                let after = &lower[at + cue.len()..];
                let boosted = INTENSIFIERS_ZH
                    .iter()
                    .any(|i| before.ends_with(i) || after.starts_with(i));
                (negated, boosted)
            } else {
                let window = &words[at.saturating_sub(3)..at];
                let negated = window
                    .iter()
                    .any(|w| NEGATIONS_EN.contains(&w.as_str()) || w.ends_with("n't"));
                let boosted = window.iter().any(|w| INTENSIFIERS_EN.contains(&w.as_str()));
                (negated, boosted)
            };
            let w = weight * if boosted { 1.5 } else { 1.0 };
            let slot = &mut scores[mood as usize];
            if negated {
                // "not happy" leans sad; "not tired" just cancels.
                if mood == Mood::Happy {
                    scores[Mood::Sad as usize] += w * 0.8;
                }
            } else {
                *slot += w;
            }
        }
    }
    if text.contains('!') || text.contains('！') {
        for m in [Mood::Happy, Mood::Angry] {
            if scores[m as usize] > 0.0 {
                scores[m as usize] += 0.3;
            }
        }
    }
    let (best, strength) = scores
        .iter()
        .enumerate()
        .skip(1)
        .fold(
            (0usize, 0f32),
            |acc, (i, s)| if *s > acc.1 { (i, *s) } else { acc },
        );
    if strength < 0.6 {
        MoodReading {
            mood: Mood::Neutral,
            strength: 0.0,
        }
    } else {
        MoodReading {
            mood: Mood::ALL[best],
            strength,
        }
    }
}

/// Lowercase latin words (apostrophes kept).
pub fn tokens(lower: &str) -> Vec<String> {
    lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\'') || is_cjk(c))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn phrase_positions(words: &[String], phrase: &str) -> Vec<usize> {
    let parts: Vec<&str> = phrase.split(' ').collect();
    if parts.is_empty() || words.len() < parts.len() {
        return Vec::new();
    }
    (0..=words.len() - parts.len())
        .filter(|&i| parts.iter().enumerate().all(|(j, p)| words[i + j] == *p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_moods_in_both_languages() {
        let cases = [
            ("I'm so tired after this meeting", Mood::Tired),
            ("好困啊，开了一上午", Mood::Tired),
            ("I had a really bad day, I feel sad", Mood::Sad),
            ("今天心情不好", Mood::Sad),
            ("这个人又加塞，气死我了", Mood::Angry),
            ("that idiot cut me off, I'm furious!", Mood::Angry),
            ("I'm nervous about the interview", Mood::Anxious),
            ("要迟到了好着急", Mood::Anxious),
            ("so bored on this highway", Mood::Bored),
            ("一个人开车好孤单", Mood::Lonely),
            ("I got promoted today, so happy!", Mood::Happy),
            ("今天好开心", Mood::Happy),
            ("what time is it", Mood::Neutral),
            ("导航去公司", Mood::Neutral),
        ];
        for (text, mood) in cases {
            assert_eq!(detect(text).mood, mood, "{text}");
        }
    }

    #[test]
    fn negation_flips_or_cancels() {
        assert_eq!(detect("I'm not happy with this").mood, Mood::Sad);
        assert_eq!(detect("I'm not tired at all").mood, Mood::Neutral);
        assert_eq!(detect("我不累").mood, Mood::Neutral);
        assert_eq!(detect("不开心").mood, Mood::Sad);
        assert!(detect("非常生气").strength > detect("生气").strength);
    }
}
