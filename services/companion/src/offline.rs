//! The offline engine: always there, no network, no model. It composes a reply in the
//! persona's voice from parts — an action's acknowledgement, care from the vehicle context,
//! empathy for the mood, a body for what was said (lorebook, memory, or a line retrieved
//! from the response corpus by intent and keywords), a callback to something the user told
//! before, and a follow-up question — as many as the length budget allows.
//!
//! Deterministic: the same seed, memory and input give the same reply. Lines used lately
//! are avoided so a long drive does not hear the same sentence twice.

// Phrasings are picked from the project's one seeded stream, so a seed repeats a reply.
use cabin_seed::SplitMix64 as Rng;
use cabin_text::is_han as is_cjk;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;

use crate::backend::{Backend, BackendError, Draft, Request};
use crate::mood::Mood;
use crate::tools::{self, ToolCall};

#[derive(Debug, Clone, Deserialize)]
pub struct Line {
    pub id: String,
    pub lang: String,
    pub part: String,
    pub tags: Vec<String>,
    pub style: Vec<String>,
    #[serde(default)]
    pub keys: Vec<String>,
    pub text: String,
}

/// The response corpus (`corpus/lines.jsonl`).
pub struct Corpus {
    lines: Vec<Line>,
}

pub const SHIPPED_CORPUS: &str = include_str!("../corpus/lines.jsonl");

impl Corpus {
    pub fn parse(jsonl: &str) -> Result<Self, String> {
        let mut lines = Vec::new();
        let mut ids = HashSet::new();
        for (n, raw) in jsonl.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line =
                serde_json::from_str(raw).map_err(|e| format!("corpus line {}: {e}", n + 1))?;
            if !ids.insert(line.id.clone()) {
                return Err(format!("corpus line {}: duplicate id {:?}", n + 1, line.id));
            }
            lines.push(line);
        }
        if lines.is_empty() {
            return Err("the corpus is empty".into());
        }
        Ok(Self { lines })
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The best line of `part` with tag `tag` for this text: must match language and
    /// style (or `any`), must have its slots filled; scored by keyword hits and style;
    /// recently used lines only when nothing else is left; ties broken by the seed.
    fn pick(&self, want: &Want<'_>, rng: &mut Rng) -> Option<&Line> {
        let candidates: Vec<(&Line, f32)> = self
            .lines
            .iter()
            .filter(|l| {
                l.part == want.part && l.lang == want.lang && l.tags.iter().any(|t| t == want.tag)
            })
            .filter(|l| l.style.iter().any(|s| s == "any" || s == want.style))
            .filter(|l| slots_fillable(&l.text, want.slots))
            .map(|l| {
                let hits = l.keys.iter().filter(|k| key_in(want.text, k)).count();
                let style = if l.style.iter().any(|s| s == want.style) {
                    0.5
                } else {
                    0.0
                };
                let recent = if want.recent.contains(&l.id) {
                    -10.0
                } else {
                    0.0
                };
                // A line the length budget would cut loses its point: only when none fits.
                let too_long = if fill(&l.text, want.slots).chars().count() > want.max_chars {
                    -5.0
                } else {
                    0.0
                };
                (l, 1.0 + 2.0 * hits as f32 + style + recent + too_long)
            })
            .collect();
        let best = candidates.iter().map(|c| c.1).fold(f32::MIN, f32::max);
        let top: Vec<&Line> = candidates
            .iter()
            .filter(|c| c.1 >= best - 0.51)
            .map(|c| c.0)
            .collect();
        if top.is_empty() {
            return None;
        }
        Some(top[rng.below(top.len())])
    }
}

/// A Chinese key anywhere; a latin key as whole words ("hi" is not in "this").
fn key_in(lower: &str, key: &str) -> bool {
    let key = key.trim().to_lowercase();
    if key.is_empty() {
        return false;
    }
    if key.chars().any(is_cjk) {
        return lower.contains(&key);
    }
    lower.match_indices(&key).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + key.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

struct Want<'a> {
    part: &'a str,
    tag: &'a str,
    lang: &'a str,
    style: &'a str,
    text: &'a str,
    recent: &'a HashSet<String>,
    slots: &'a Slots,
    max_chars: usize,
}

#[derive(Default)]
struct Slots {
    user: String,
    char_name: String,
    like: Option<String>,
    plan: Option<String>,
    place: Option<String>,
    hours: Option<u64>,
    minutes: Option<u64>,
}

fn slots_fillable(text: &str, slots: &Slots) -> bool {
    (!text.contains("{like}") || slots.like.is_some())
        && (!text.contains("{plan}") || slots.plan.is_some())
        && (!text.contains("{place}") || slots.place.is_some())
        && (!text.contains("{hours}") || slots.hours.is_some())
        && (!text.contains("{minutes}") || slots.minutes.is_some())
}

fn fill(text: &str, slots: &Slots) -> String {
    let mut out = text
        .replace("{user}", &slots.user)
        .replace("{char}", &slots.char_name);
    for (key, value) in [
        ("{like}", &slots.like),
        ("{plan}", &slots.plan),
        ("{place}", &slots.place),
    ] {
        if let Some(v) = value {
            out = out.replace(key, v);
        }
    }
    for (key, value) in [("{hours}", slots.hours), ("{minutes}", slots.minutes)] {
        if let Some(v) = value {
            out = out.replace(key, &v.to_string());
        }
    }
    if slots.hours == Some(1) {
        out = out.replace("1 hours", "1 hour");
    }
    out
}

/// What the user is doing with their message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Recall,
    Joke,
    AskSelf,
    Thanks,
    Bye,
    Greet,
    Food,
    Music,
    Weather,
    Plans,
    Traffic,
    Work,
    Family,
    Sleep,
    Compliment,
    Yes,
    No,
    Question,
    Smalltalk,
}

impl Intent {
    fn tag(self) -> &'static str {
        match self {
            Intent::Recall | Intent::Smalltalk => "smalltalk",
            Intent::Joke => "joke",
            Intent::AskSelf => "ask_self",
            Intent::Thanks => "thanks",
            Intent::Bye => "bye",
            Intent::Greet => "greet",
            Intent::Food => "food",
            Intent::Music => "music",
            Intent::Weather => "weather",
            Intent::Plans => "plans",
            Intent::Traffic => "traffic",
            Intent::Work => "work",
            Intent::Family => "family",
            Intent::Sleep => "sleep",
            Intent::Compliment => "compliment",
            Intent::Yes => "yes",
            Intent::No => "no",
            Intent::Question => "unknown_question",
        }
    }

    /// The follow-up topic that fits.
    fn follow_topic(self) -> &'static str {
        match self {
            Intent::Food => "food",
            Intent::Music => "music",
            Intent::Plans => "plans",
            Intent::Work => "work",
            Intent::Family => "family",
            Intent::Traffic | Intent::Weather => "trip",
            _ => "general",
        }
    }
}

impl Intent {
    /// The act labels of `cabin_text::talk_model::ACTS`, in its order.
    const BY_ACT: [Intent; 19] = [
        Intent::Recall,
        Intent::Joke,
        Intent::AskSelf,
        Intent::Thanks,
        Intent::Bye,
        Intent::Greet,
        Intent::Food,
        Intent::Music,
        Intent::Weather,
        Intent::Plans,
        Intent::Traffic,
        Intent::Work,
        Intent::Family,
        Intent::Sleep,
        Intent::Compliment,
        Intent::Yes,
        Intent::No,
        Intent::Question,
        Intent::Smalltalk,
    ];

    /// The act model's label for this intent (`cabin_text::talk_model::ACTS`).
    pub fn act(self) -> &'static str {
        let k = Self::BY_ACT.iter().position(|i| *i == self).unwrap_or(0);
        cabin_text::talk_model::ACTS[k]
    }
}

/// What a message is doing, read by the learned act model of the shared text layer
/// (`cabin_text::talk_model`, trained from `services/text/data/talk-train.jsonl`). Below even
/// odds the engine does not commit to a topic and makes small talk: a line about traffic
/// jams is worse than a general one when the driver only said the road is quiet.
pub fn detect_intent(text: &str) -> Intent {
    let (act, p) = cabin_text::talk_model::acts().top(&cabin_text::normalize(text));
    if p < ACT_CONFIDENCE {
        return Intent::Smalltalk;
    }
    Intent::BY_ACT
        .into_iter()
        .find(|i| i.act() == act)
        .unwrap_or(Intent::Smalltalk)
}

/// Below this the act model's guess is not acted on.
const ACT_CONFIDENCE: f32 = 0.5;

/// A request the offline engine turns into a tool call itself, understood by the same intent
/// model as the voice hook (`cabin_text::intent_model`), so a request typed in chat and the
/// same request spoken reach the wallpaper service as the same prompt.
pub fn tool_intent(text: &str) -> Option<ToolCall> {
    let normalized = cabin_text::normalize(text);
    let (intent, confidence) = cabin_text::intent_model::bundled().top(&normalized);
    // Speed is not in the model's intents; its few phrasings are cues.
    let speed = ["how fast am i", "我的车速", "现在车速", "开多快"];
    if (intent == "status.drive_time" && confidence >= TOOL_CONFIDENCE)
        || speed.iter().any(|c| normalized.contains(c))
    {
        return Some(ToolCall {
            name: tools::DRIVE_STATUS.into(),
            arguments: json!({}),
        });
    }
    if intent != "wallpaper.generate" || confidence < TOOL_CONFIDENCE {
        return None;
    }
    let scene = cabin_text::scene::request_scene(&normalized);
    if scene.is_empty() {
        return None;
    }
    Some(ToolCall {
        name: tools::SET_WALLPAPER.into(),
        arguments: json!({"prompt": scene}),
    })
}

/// Below this the model's guess is not acted on: the engine talks instead.
const TOOL_CONFIDENCE: f32 = 0.5;

/// The scene of a wallpaper request, read exactly as the voice hook reads it.
pub fn wallpaper_scene(text: &str) -> String {
    cabin_text::scene::request_scene(&cabin_text::normalize(text))
}

pub struct OfflineEngine {
    corpus: Corpus,
}

impl OfflineEngine {
    pub fn new(corpus: Corpus) -> Self {
        Self { corpus }
    }

    pub fn shipped() -> Result<Self, String> {
        Ok(Self::new(Corpus::parse(SHIPPED_CORPUS)?))
    }

    /// Composes the reply (not streamed).
    pub fn compose(&self, req: &Request<'_>) -> Draft {
        let lang = req.lang;
        let zh = lang == "zh";
        let mut rng = Rng::new(req.seed);
        let lower = req.text.to_lowercase();
        let recent: HashSet<String> = req
            .memory
            .recent_lines
            .iter()
            .map(|id| {
                id.split_once(':')
                    .map_or(id.as_str(), |(_, i)| i)
                    .to_string()
            })
            .collect();
        let facts = &req.memory.facts;
        // A name given just now is used at once.
        let new_name = crate::memory::extract_facts(req.text)
            .into_iter()
            .find_map(|f| match f {
                crate::memory::Fact::Name(n) => Some(n),
                _ => None,
            });
        let slots = Slots {
            user: new_name.clone().unwrap_or_else(|| req.user.clone()),
            char_name: req.card.display_name(lang),
            like: facts
                .likes
                .iter()
                .rev()
                .find(|l| l.chars().any(is_cjk) == zh)
                .cloned(),
            plan: facts
                .plans
                .iter()
                .rev()
                .find(|l| l.chars().any(is_cjk) == zh)
                .cloned(),
            place: facts
                .places
                .iter()
                .rev()
                .find(|l| l.chars().any(is_cjk) == zh)
                .cloned(),
            hours: Some(req.care.driving_mins / 60),
            minutes: Some(req.care.driving_mins),
        };
        let style = req.card.style();
        let intent = detect_intent(req.text);
        // (line id, the text it became): only lines that make it into the reply count as used.
        let mut used: Vec<(String, String)> = Vec::new();
        let mut parts: Vec<String> = Vec::new();
        let pick = |part: &str,
                    tag: &str,
                    rng: &mut Rng,
                    used: &mut Vec<(String, String)>|
         -> Option<String> {
            let want = Want {
                part,
                tag,
                lang,
                style: &style,
                text: &lower,
                recent: &recent,
                slots: &slots,
                max_chars: req.max_chars,
            };
            let line = self.corpus.pick(&want, rng)?;
            let text = fill(&line.text, &slots);
            used.push((format!("{part}:{}", line.id), text.clone()));
            Some(text)
        };

        // An action first: it is what the user asked for.
        if let Some(call) = tool_intent(req.text) {
            let action = req.tools.run(&call);
            parts.push(acknowledge(&action, zh));
        }

        if new_name.is_some()
            && let Some(text) = pick("memory", "name", &mut rng, &mut used)
        {
            parts.push(text);
        }

        // Care the context calls for, not every turn.
        let care_said_lately = req
            .memory
            .recent_lines
            .iter()
            .rev()
            .take(8)
            .any(|id| id.starts_with("care:"));
        let care_tag = if req.care.long_drive && (!care_said_lately || req.mood.mood == Mood::Tired)
        {
            Some("long_drive")
        } else if req.care.high_speed && !care_said_lately {
            Some("high_speed")
        } else if req.care.late_night && !care_said_lately {
            Some("late_night")
        } else {
            None
        };
        if let Some(tag) = care_tag
            && let Some(text) = pick("care", tag, &mut rng, &mut used)
        {
            parts.push(text);
        }

        if req.mood.mood != Mood::Neutral
            && let Some(text) = pick("empathy", req.mood.mood.as_str(), &mut rng, &mut used)
        {
            parts.push(text);
        }

        // The body: what was asked, or what the persona knows, or the corpus.
        let spoken_lore: Vec<&str> = req
            .lore
            .iter()
            .filter(|l| !l.constant && l.content.chars().any(is_cjk) == zh)
            .map(|l| l.content.as_str())
            .collect();
        let body = match intent {
            Intent::Recall => Some(recall(facts, &slots, zh)),
            Intent::Greet => own_line(req, &req.card.cabin().greetings, lang, &mut rng)
                .or_else(|| pick("body", "greet", &mut rng, &mut used)),
            Intent::Bye => own_line(req, &req.card.cabin().farewells, lang, &mut rng)
                .or_else(|| pick("body", "bye", &mut rng, &mut used)),
            _ if !spoken_lore.is_empty() && intent != Intent::Joke => {
                Some(spoken_lore[rng.below(spoken_lore.len())].to_string())
            }
            _ if intent == Intent::Smalltalk
                && req.mood.mood != Mood::Neutral
                && !parts.is_empty() =>
            {
                None
            }
            _ => pick("body", intent.tag(), &mut rng, &mut used)
                .or_else(|| pick("body", "smalltalk", &mut rng, &mut used)),
        };
        if let Some(body) = body {
            parts.push(body);
        }

        // Something the user told before, now and then.
        if matches!(
            intent,
            Intent::Smalltalk | Intent::Greet | Intent::Plans | Intent::Food | Intent::Music
        ) && rng.uniform() <= 0.35
        {
            let kind = if slots.plan.is_some() && rng.uniform() <= 0.5 {
                "plan"
            } else if slots.like.is_some() {
                "like"
            } else if slots.place.is_some() {
                "place"
            } else {
                ""
            };
            if !kind.is_empty()
                && let Some(text) = pick("memory", kind, &mut rng, &mut used)
            {
                parts.push(text);
            }
        }

        if !matches!(intent, Intent::Bye | Intent::Thanks)
            && !req.care.high_speed
            && let Some(text) = pick("follow", intent.follow_topic(), &mut rng, &mut used)
        {
            parts.push(text);
        }

        // As many parts as fit, in order; at least the first.
        let mut text = String::new();
        let mut spoken: Vec<String> = Vec::new();
        for part in parts {
            let sep = if text.is_empty() || zh { "" } else { " " };
            if !text.is_empty()
                && text.chars().count() + sep.len() + part.chars().count() > req.max_chars
            {
                break;
            }
            text.push_str(sep);
            text.push_str(&part);
            spoken.push(part);
        }
        let lines = used
            .into_iter()
            .filter(|(_, t)| spoken.contains(t))
            .map(|(id, _)| id)
            .collect();
        Draft { text, lines }
    }
}

/// One of the persona's own lines (`extensions.cabin.greetings` or `farewells`) in `lang`.
fn own_line(
    req: &Request<'_>,
    lines: &std::collections::BTreeMap<String, Vec<String>>,
    lang: &str,
    rng: &mut Rng,
) -> Option<String> {
    let list = lines.get(lang).filter(|l| !l.is_empty())?;
    Some(crate::persona::substitute(
        &list[rng.below(list.len())],
        &req.card.display_name(lang),
        &req.user,
    ))
}

fn recall(facts: &crate::memory::Facts, slots: &Slots, zh: bool) -> String {
    let mut said = Vec::new();
    match (&facts.name, zh) {
        (Some(n), true) => said.push(format!("你叫{n}，我当然记得。")),
        (Some(n), false) => said.push(format!("You're {n}, of course I remember.")),
        (None, true) => said.push("你还没告诉我你的名字呢，我该怎么称呼你？".to_string()),
        (None, false) => {
            said.push("You haven't told me your name yet. What should I call you?".to_string())
        }
    }
    if let Some(like) = &slots.like {
        said.push(if zh {
            format!("我还记得你喜欢{like}。")
        } else {
            format!("And I remember you like {like}.")
        });
    }
    if let Some(plan) = &slots.plan {
        said.push(if zh {
            format!("你说过{plan}。")
        } else {
            format!("You told me you're going to {plan}.")
        });
    }
    said.join(if zh { "" } else { " " })
}

fn acknowledge(action: &tools::Action, zh: bool) -> String {
    let d = &action.details;
    match (action.name.as_str(), action.ok, zh) {
        (tools::SET_WALLPAPER, true, true) => format!(
            "好的，正在为你生成「{}」的壁纸，马上就好。",
            d.get("prompt").map_or("", String::as_str)
        ),
        (tools::SET_WALLPAPER, true, false) => format!(
            "Sure, I'm painting a {} wallpaper for you now.",
            d.get("prompt").map_or("", String::as_str)
        ),
        (tools::DRIVE_STATUS, true, zh) => {
            let mins: u64 = d
                .get("driving_minutes")
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let speed = d.get("speed_kmh").map_or("0", String::as_str);
            let moving = d.get("moving").is_some_and(|m| m == "true");
            match (zh, moving) {
                (true, true) => format!(
                    "你已经连续开了{}小时{}分钟，现在时速{speed}公里。",
                    mins / 60,
                    mins % 60
                ),
                (true, false) => format!(
                    "这一程你连续开了{}小时{}分钟，现在车停着。",
                    mins / 60,
                    mins % 60
                ),
                (false, true) => format!(
                    "You've driven {} h {} min without a break, now {speed} km/h.",
                    mins / 60,
                    mins % 60
                ),
                (false, false) => format!(
                    "You drove {} h {} min in this stretch, and the car is standing now.",
                    mins / 60,
                    mins % 60
                ),
            }
        }
        (_, false, true)
            if d.get("error_name")
                .is_some_and(|n| n.ends_with("Unavailable")) =>
        {
            "抱歉，壁纸服务现在不可用，我稍后再试。".into()
        }
        (_, false, false)
            if d.get("error_name")
                .is_some_and(|n| n.ends_with("Unavailable")) =>
        {
            "Sorry, the wallpaper service isn't available right now.".into()
        }
        (_, false, true) => "抱歉，这件事我现在做不了。".into(),
        (_, false, false) => "Sorry, I couldn't do that just now.".into(),
        (_, true, true) => "好的，已经办好了。".into(),
        (_, true, false) => "Done.".into(),
    }
}

impl Backend for OfflineEngine {
    fn name(&self) -> &str {
        "offline"
    }

    fn respond(
        &self,
        req: &Request<'_>,
        _deadline: Instant,
        on_token: &mut dyn FnMut(&str),
        cancel: &AtomicBool,
    ) -> Result<Draft, BackendError> {
        let draft = self.compose(req);
        // Streamed clause by clause, as a TTS engine would take it.
        let mut piece = String::new();
        for c in draft.text.chars() {
            piece.push(c);
            if matches!(c, '，' | '。' | '！' | '？' | ',' | '.' | '!' | '?') {
                if cancel.load(Ordering::SeqCst) {
                    return Err(BackendError::Cancelled);
                }
                on_token(&piece);
                piece.clear();
            }
        }
        if !piece.is_empty() {
            on_token(&piece);
        }
        Ok(draft)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intents_in_both_languages() {
        let cases = [
            ("讲个笑话吧", Intent::Joke),
            ("tell me a joke", Intent::Joke),
            ("你是谁呀", Intent::AskSelf),
            ("hi there", Intent::Greet),
            ("谢谢你", Intent::Thanks),
            ("what's my name?", Intent::Recall),
            ("这路堵得要命", Intent::Traffic),
            ("I'm starving, what should I eat", Intent::Food),
            ("how far is the moon?", Intent::Question),
            (
                "I spent the whole afternoon painting the fence",
                Intent::Smalltalk,
            ),
            ("好的", Intent::Yes),
        ];
        for (text, intent) in cases {
            assert_eq!(detect_intent(text), intent, "{text}");
        }
    }

    #[test]
    fn tool_requests_and_scenes() {
        let scene = |t: &str| {
            tool_intent(t).map(|c| c.arguments["prompt"].as_str().unwrap_or("").to_string())
        };
        assert_eq!(scene("换一张雪山的壁纸"), Some("雪山".into()));
        assert_eq!(scene("嗯 来个星空壁纸吧"), Some("星空".into()));
        assert_eq!(
            scene("make the wallpaper a starry night"),
            Some("starry night".into())
        );
        assert_eq!(
            scene("can you set a beach sunset as my background please"),
            Some("beach sunset".into())
        );
        assert_eq!(scene("壁纸跟随时间变化"), None);
        assert_eq!(scene("what's my wallpaper"), None);
        assert_eq!(scene("换个壁纸"), None, "no scene: nothing to paint");
        assert_eq!(
            tool_intent("我开了多久了").map(|c| c.name),
            Some(tools::DRIVE_STATUS.into())
        );
    }

    #[test]
    fn intents_are_the_act_models_labels_in_order() {
        // The labels are the variants' names in snake case, in the model's order.
        for (intent, act) in Intent::BY_ACT.iter().zip(cabin_text::talk_model::ACTS) {
            let name = format!("{intent:?}").to_lowercase();
            assert_eq!(name, act.replace('_', ""), "{intent:?}");
            assert_eq!(intent.act(), act);
        }
        assert_eq!(Intent::BY_ACT.len(), cabin_text::talk_model::ACTS.len());
    }

    #[test]
    fn the_shipped_corpus_parses() {
        let corpus = Corpus::parse(SHIPPED_CORPUS).unwrap();
        assert!(corpus.len() >= 300, "{}", corpus.len());
        assert!(Corpus::parse("{\"id\":1}").is_err());
    }
}
