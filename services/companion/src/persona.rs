//! Personas as Character Card V2 (`spec: chara_card_v2`) and their lorebooks.
//!
//! A card is kept as the JSON it came in: the fields the engine reads are typed, everything
//! else (unknown `extensions`, fields of newer spec revisions) rides along in `rest` maps so
//! an export gives back what was imported. `creator_notes` are for people installing the
//! card and never reach a prompt. A card cannot grant tools: the allow-list is the
//! service's config, and nothing in a card is read for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest card accepted (a lorebook with a few hundred entries fits).
pub const MAX_CARD_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("the card is not valid JSON for Character Card V2: {0}")]
    Json(String),
    #[error("spec is {0:?}; only \"chara_card_v2\" cards are accepted")]
    Spec(String),
    #[error("the card is {0} bytes; at most {MAX_CARD_BYTES} are accepted")]
    TooLarge(usize),
    #[error("the card has {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Card {
    pub spec: String,
    pub spec_version: String,
    pub data: CardData,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
    /// The JSON as it came: an export gives it back byte for byte.
    #[serde(skip)]
    raw: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CardData {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub personality: String,
    #[serde(default)]
    pub scenario: String,
    #[serde(default)]
    pub first_mes: String,
    #[serde(default)]
    pub mes_example: String,
    #[serde(default)]
    pub creator_notes: String,
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default)]
    pub post_history_instructions: String,
    #[serde(default)]
    pub alternate_greetings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character_book: Option<Lorebook>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub creator: String,
    #[serde(default)]
    pub character_version: String,
    #[serde(default)]
    pub extensions: Map<String, Value>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Lorebook {
    #[serde(default)]
    pub entries: Vec<LoreEntry>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoreEntry {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub content: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub insertion_order: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_sensitive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selective: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constant: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

fn yes() -> bool {
    true
}

/// What the companion engine reads from `extensions.cabin` (optional in foreign cards).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CabinExtension {
    pub id: Option<String>,
    pub style: Option<String>,
    pub name: BTreeMap<String, String>,
    pub greetings: BTreeMap<String, Vec<String>>,
    pub farewells: BTreeMap<String, Vec<String>>,
}

impl Card {
    pub fn parse(json: &str) -> Result<Self, CardError> {
        if json.len() > MAX_CARD_BYTES {
            return Err(CardError::TooLarge(json.len()));
        }
        let value: Value =
            serde_json::from_str(json).map_err(|e| CardError::Json(e.to_string()))?;
        match value.get("spec").and_then(Value::as_str) {
            Some("chara_card_v2") => {}
            Some(other) => return Err(CardError::Spec(other.to_string())),
            None => return Err(CardError::Spec(String::new())),
        }
        let mut card: Card =
            serde_json::from_value(value).map_err(|e| CardError::Json(e.to_string()))?;
        card.validate()?;
        card.raw = json.to_string();
        Ok(card)
    }

    fn validate(&self) -> Result<(), CardError> {
        let name = self.data.name.trim();
        if name.is_empty() {
            return Err(CardError::Invalid("an empty name".into()));
        }
        if name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(CardError::Invalid(
                "a name longer than 64 characters or with control characters".into(),
            ));
        }
        if let Some(id) = &self.cabin().id
            && !valid_id(id)
        {
            return Err(CardError::Invalid(format!(
                "extensions.cabin.id {id:?}, which is not 1-48 of a-z, 0-9 and -"
            )));
        }
        Ok(())
    }

    /// The card as imported; a card built in code is serialised.
    pub fn to_json(&self) -> String {
        if self.raw.is_empty() {
            serde_json::to_string_pretty(self).unwrap_or_default()
        } else {
            self.raw.clone()
        }
    }

    pub fn cabin(&self) -> CabinExtension {
        self.data
            .extensions
            .get("cabin")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// The persona's id: `extensions.cabin.id`, else a slug of the name and a short hash of
    /// the card, so two foreign cards with one name do not collide.
    pub fn id(&self) -> String {
        if let Some(id) = self.cabin().id {
            return id;
        }
        let slug: String = self
            .data
            .name
            .chars()
            .filter_map(|c| {
                if c.is_ascii_alphanumeric() {
                    Some(c.to_ascii_lowercase())
                } else if c == ' ' || c == '-' || c == '_' {
                    Some('-')
                } else {
                    None
                }
            })
            .take(32)
            .collect();
        let slug = slug.trim_matches('-');
        let hash = fnv1a(self.data.name.as_bytes()) ^ fnv1a(self.data.description.as_bytes());
        if slug.is_empty() {
            format!("card-{:08x}", hash as u32)
        } else {
            format!("{slug}-{:06x}", hash as u32 & 0xff_ffff)
        }
    }

    /// The persona's name in `lang` (`zh`/`en`), from `extensions.cabin.name`, else the card's.
    pub fn display_name(&self, lang: &str) -> String {
        self.cabin()
            .name
            .get(lang)
            .cloned()
            .unwrap_or_else(|| self.data.name.clone())
    }

    /// The persona's style for the offline engine (`warm`, `cheerful`, `calm`).
    pub fn style(&self) -> String {
        self.cabin().style.unwrap_or_else(|| "warm".into())
    }

    /// The character description an LM prompt gets: never `creator_notes`.
    pub fn system_text(&self, user: &str) -> String {
        let d = &self.data;
        let mut parts = Vec::new();
        if !d.system_prompt.trim().is_empty() {
            parts.push(d.system_prompt.clone());
        }
        for (label, text) in [
            ("Description", &d.description),
            ("Personality", &d.personality),
            ("Scenario", &d.scenario),
        ] {
            if !text.trim().is_empty() {
                parts.push(format!("{label}: {text}"));
            }
        }
        if !d.mes_example.trim().is_empty() {
            parts.push(format!("Example dialogue:\n{}", d.mes_example));
        }
        substitute(&parts.join("\n\n"), &d.name, user)
    }

    /// Dialogue examples as (user, character) pairs from `mes_example`.
    pub fn example_pairs(&self) -> Vec<(String, String)> {
        let mut pairs = Vec::new();
        for block in self.data.mes_example.split("<START>") {
            let mut user: Option<String> = None;
            for line in block.lines() {
                let line = line.trim();
                if let Some(u) = line.strip_prefix("{{user}}:") {
                    user = Some(u.trim().to_string());
                } else if let Some(c) = line.strip_prefix("{{char}}:")
                    && let Some(u) = user.take()
                {
                    pairs.push((u, c.trim().to_string()));
                }
            }
        }
        pairs
    }

    /// Lorebook entries that fire for `recent` (the latest messages, newest last): constant
    /// entries always; others when a key matches, and for `selective` entries also a
    /// secondary key. Ordered by `insertion_order`.
    pub fn lore_for(&self, recent: &str) -> Vec<&LoreEntry> {
        let Some(book) = &self.data.character_book else {
            return Vec::new();
        };
        let lower = recent.to_lowercase();
        let mut hits: Vec<&LoreEntry> = book
            .entries
            .iter()
            .filter(|e| e.enabled && !e.content.trim().is_empty())
            .filter(|e| {
                if e.constant == Some(true) {
                    return true;
                }
                let case = e.case_sensitive == Some(true);
                let any = |keys: &[String]| {
                    keys.iter().any(|k| {
                        let k = k.trim();
                        !k.is_empty()
                            && if case {
                                recent.contains(k)
                            } else {
                                lower.contains(&k.to_lowercase())
                            }
                    })
                };
                if !any(&e.keys) {
                    return false;
                }
                match (e.selective, &e.secondary_keys) {
                    (Some(true), Some(secondary)) if !secondary.is_empty() => any(secondary),
                    _ => true,
                }
            })
            .collect();
        hits.sort_by_key(|e| e.insertion_order);
        hits
    }
}

/// `{{char}}` and `{{user}}` as the card format defines them.
pub fn substitute(text: &str, char_name: &str, user: &str) -> String {
    text.replace("{{char}}", char_name)
        .replace("{{user}}", user)
        .replace("<BOT>", char_name)
        .replace("<USER>", user)
}

pub fn valid_id(id: &str) -> bool {
    (1..=48).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The personas shipped with cabin.
pub const SHIPPED: &[&str] = &[
    include_str!("../personas/warm-companion.json"),
    include_str!("../personas/cheerful-copilot.json"),
    include_str!("../personas/night-drive-friend.json"),
];

#[cfg(test)]
mod tests {
    use super::*;

    const FOREIGN: &str = r#"{
      "spec": "chara_card_v2", "spec_version": "2.0",
      "data": {
        "name": "Ada", "description": "{{char}} helps {{user}}.", "personality": "curious",
        "scenario": "", "first_mes": "Hi {{user}}", "mes_example": "<START>\n{{user}}: hello\n{{char}}: Hello there!",
        "creator_notes": "SECRET-NOTE do not show", "system_prompt": "", "post_history_instructions": "",
        "alternate_greetings": [], "tags": ["x"], "creator": "me", "character_version": "3",
        "extensions": {"chub": {"full_path": "a/b", "nested": [1, {"k": null}]}, "depth_prompt": {"depth": 4}},
        "character_book": {"name": "b", "scan_depth": 3, "extensions": {"x": 1}, "entries": [
          {"keys": ["tea"], "content": "Ada likes green tea.", "enabled": true, "insertion_order": 2, "extensions": {"y": 2}},
          {"keys": ["Paris"], "content": "Ada lived in Paris.", "enabled": true, "insertion_order": 1, "case_sensitive": true},
          {"keys": ["music"], "secondary_keys": ["jazz", "blues"], "selective": true, "content": "Ada plays jazz piano.", "enabled": true, "insertion_order": 3},
          {"keys": [], "constant": true, "content": "Ada is kind.", "enabled": true, "insertion_order": 0},
          {"keys": ["tea"], "content": "disabled", "enabled": false, "insertion_order": 5}
        ]},
        "future_field": {"kept": true}
      },
      "top_level_unknown": 7
    }"#;

    #[test]
    fn import_export_round_trips_unknown_fields() {
        let mut card = Card::parse(FOREIGN).unwrap();
        assert_eq!(card.to_json(), FOREIGN);
        // Serialised from the typed fields, the unknown ones are still all there.
        card.raw.clear();
        let back: Value = serde_json::from_str(&card.to_json()).unwrap();
        let original: Value = serde_json::from_str(FOREIGN).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn creator_notes_never_reach_the_prompt() {
        let card = Card::parse(FOREIGN).unwrap();
        let text = card.system_text("Li");
        assert!(!text.contains("SECRET-NOTE"));
        assert!(text.contains("Ada helps Li."));
        assert_eq!(
            card.example_pairs(),
            vec![("hello".into(), "Hello there!".into())]
        );
    }

    #[test]
    fn lorebook_fires_on_keys_secondary_keys_and_constants() {
        let card = Card::parse(FOREIGN).unwrap();
        let fired = |text: &str| -> Vec<String> {
            card.lore_for(text)
                .iter()
                .map(|e| e.content.clone())
                .collect()
        };
        assert_eq!(fired("nothing here"), vec!["Ada is kind."]);
        assert_eq!(
            fired("Some TEA please"),
            vec!["Ada is kind.", "Ada likes green tea."]
        );
        assert_eq!(
            fired("I was in paris"),
            vec!["Ada is kind."],
            "case-sensitive key"
        );
        assert_eq!(
            fired("I was in Paris"),
            vec!["Ada is kind.", "Ada lived in Paris."]
        );
        assert_eq!(
            fired("I love music"),
            vec!["Ada is kind."],
            "selective needs a secondary key"
        );
        assert_eq!(
            fired("music, mostly jazz"),
            vec!["Ada is kind.", "Ada plays jazz piano."]
        );
    }

    #[test]
    fn bad_cards_are_named() {
        let cases = [
            ("not json", "not valid JSON"),
            (
                r#"{"spec":"chara_card_v3","data":{"name":"x"}}"#,
                "chara_card_v2",
            ),
            (r#"{"name":"x"}"#, "chara_card_v2"),
            (
                r#"{"spec":"chara_card_v2","spec_version":"2.0","data":{"name":"  "}}"#,
                "empty name",
            ),
            (
                r#"{"spec":"chara_card_v2","spec_version":"2.0","data":{}}"#,
                "not valid JSON",
            ),
        ];
        for (json, why) in cases {
            let err = Card::parse(json).unwrap_err().to_string();
            assert!(err.contains(why), "{json}: {err}");
        }
        let huge = format!(
            "{{\"spec\":\"chara_card_v2\",\"pad\":\"{}\"}}",
            "x".repeat(MAX_CARD_BYTES)
        );
        assert!(matches!(Card::parse(&huge), Err(CardError::TooLarge(_))));
    }

    #[test]
    fn foreign_cards_get_a_stable_slug_id() {
        let card = Card::parse(FOREIGN).unwrap();
        assert!(card.id().starts_with("ada-"), "{}", card.id());
        assert_eq!(card.id(), Card::parse(FOREIGN).unwrap().id());
        assert!(valid_id(&card.id()));
    }
}
