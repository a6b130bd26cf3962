//! The user's mood from what they said, in Chinese and English.
//!
//! A learned model reads one message (the shared text layer's mood classifier, so negation
//! like "not happy" / "不开心" is learned from examples, not listed); the agent smooths over
//! turns. Crisis language is [`crate::safety`]'s job, not
//! a mood.

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

/// A mood and how strongly it was expressed (0 for neutral).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MoodReading {
    pub mood: Mood,
    pub strength: f32,
}

/// Reads the mood of one message with the learned mood model of the shared text layer
/// (`cabin_text::talk_model`, trained from `services/text/data/talk-train.jsonl`); the
/// strength is the model's probability for it.
///
/// A feeling is often said in one clause of a longer message ("我叫小周，今天好累"), where the
/// rest would drown it in a bag of n-grams; so each clause is read too, and a clause that is
/// clearly in a mood speaks for the message.
pub fn detect(text: &str) -> MoodReading {
    let mut best = read(text);
    let clauses: Vec<&str> = text
        .split([
            '，', ',', '。', '.', '!', '！', '?', '？', ';', '；', '\n', '~', '～',
        ])
        .filter(|c| !c.trim().is_empty())
        .collect();
    if clauses.len() > 1 {
        for clause in clauses {
            let r = read(clause);
            if r.mood != Mood::Neutral && r.strength >= CLAUSE_SPEAKS && r.strength > best.strength
            {
                best = r;
            }
        }
    }
    best
}

/// A clause speaks for the message when the model gives its mood better than even odds.
const CLAUSE_SPEAKS: f32 = 0.5;

fn read(text: &str) -> MoodReading {
    let (label, p) = cabin_text::talk_model::moods().top(&cabin_text::normalize(text));
    match Mood::ALL.into_iter().find(|m| m.as_str() == label) {
        Some(mood) if mood != Mood::Neutral => MoodReading { mood, strength: p },
        _ => MoodReading {
            mood: Mood::Neutral,
            strength: 0.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moods_are_the_mood_models_labels_in_order() {
        let names: Vec<&str> = Mood::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(names, cabin_text::talk_model::MOODS);
    }

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
        // Displeasure: a negative mood, never the happiness the word alone would say.
        assert!(matches!(
            detect("I'm not happy with this").mood,
            Mood::Sad | Mood::Angry
        ));
        assert_eq!(detect("I'm not tired at all").mood, Mood::Neutral);
        assert_eq!(detect("我不累").mood, Mood::Neutral);
        assert_eq!(detect("不开心").mood, Mood::Sad);
        assert_eq!(detect("非常生气").mood, Mood::Angry);
    }
}
