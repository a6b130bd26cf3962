//! Utterance → intent and slots. Rules over the normalised text, in order of how specific
//! they are: feedback (its text may mention anything), the time-wallpaper switch, questions
//! about state, a new wallpaper, then talk for the companion. Anything else is not ours.

use serde::Serialize;

use cabin_text::intent_model as model;
use cabin_text::normalize::mentions;
use cabin_text::scene::{SceneSlots, request_scene, slots};
use cabin_text::{is_han as is_cjk, language_of, normalize};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "intent", content = "slots")]
pub enum Intent {
    /// A new wallpaper of `scene`, the request's own words (empty: the user asked for "a new
    /// one", no scene), with the family, phase and style it names.
    #[serde(rename = "wallpaper.generate")]
    WallpaperGenerate {
        scene: String,
        #[serde(flatten)]
        slots: SceneSlots,
    },
    /// The time wallpaper (follows the sun) on or off.
    #[serde(rename = "wallpaper.time_aware")]
    TimeAware { enabled: bool },
    #[serde(rename = "status.wallpaper")]
    WallpaperStatus {},
    #[serde(rename = "status.drive_time")]
    DriveTime {},
    /// Something for the companion to answer; `text` is what to say to it.
    #[serde(rename = "companion.chat")]
    Chat { text: String },
    /// Feedback about the car; `text` is the feedback itself (empty: none given yet).
    #[serde(rename = "feedback.submit")]
    Feedback { text: String },
    /// A command for the car itself (climate, windows, media, calls, navigation): the car's
    /// own voice control handles it, not cabin.
    #[serde(rename = "car.command")]
    CarCommand { reason: String },
    #[serde(rename = "unknown")]
    Unknown { reason: String },
}

impl Intent {
    pub fn name(&self) -> &'static str {
        match self {
            Intent::WallpaperGenerate { .. } => "wallpaper.generate",
            Intent::TimeAware { .. } => "wallpaper.time_aware",
            Intent::WallpaperStatus {} => "status.wallpaper",
            Intent::DriveTime {} => "status.drive_time",
            Intent::Chat { .. } => "companion.chat",
            Intent::Feedback { .. } => "feedback.submit",
            Intent::CarCommand { .. } => "car.command",
            Intent::Unknown { .. } => "unknown",
        }
    }
}

/// The parse of one utterance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parsed {
    #[serde(flatten)]
    pub intent: Intent,
    /// `zh` or `en`: the language to answer in.
    pub lang: &'static str,
    pub normalized: String,
    /// The model's probability for the intent (0..1).
    pub confidence: f32,
    /// When the model is unsure of a command: the one short question to ask back instead of
    /// acting ("要换成极光壁纸吗？").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm: Option<String>,
}

fn any(text: &str, cues: &[&str]) -> bool {
    cues.iter().any(|c| mentions(text, c))
}

/// The text after the first cue that matches, trimmed of joining words.
fn after_cue<'a>(text: &'a str, cues: &[&str]) -> Option<&'a str> {
    cues.iter()
        .filter_map(|c| text.find(c).map(|at| (at, c.len())))
        .min_by_key(|(at, _)| *at)
        .map(|(at, len)| &text[at + len..])
}

const FEEDBACK: &[&str] = &[
    "反馈一下",
    "我要反馈",
    "反馈个问题",
    "反馈问题",
    "反馈",
    "投诉一下",
    "投诉",
    "吐槽一下",
    "提个意见",
    "提意见",
    "报个问题",
    "报告问题",
    "报告一个问题",
    "report a problem",
    "report an issue",
    "report a bug",
    "report problem",
    "file a complaint",
    "file a bug",
    "send feedback",
    "give feedback",
    "leave feedback",
    "i want to complain",
    "complaint",
    "feedback",
    "i want to report",
    "i'd like to report",
    "report it",
    "report this",
    "report that",
    "报修",
];
/// The model's probability below which cue phrases decide.
const CUES_DECIDE_BELOW: f32 = 0.6;
/// Below this a command is asked back rather than carried out.
pub const ASK_BACK_BELOW: f32 = 0.5;
/// Unsure talk whose likeliest command is at least this likely is asked back as that command.
const MAYBE_A_COMMAND: f32 = 0.25;

/// "Tell the maker ...": what follows is the feedback.
const FEEDBACK_TO_MAKER: &[&str] = &[
    "告诉厂家",
    "跟厂家说",
    "和厂家说",
    "告诉厂商",
    "跟厂商说",
    "转告厂家",
    "tell the manufacturer",
    "tell the maker",
    "tell the carmaker",
    "let the manufacturer know",
    "let the maker know",
    "tell them that",
];
const OFF: &[&str] = &[
    "关闭",
    "关掉",
    "关了",
    "关一下",
    "关上",
    "别",
    "取消",
    "不要",
    "停止",
    "别再",
    "不用",
    "停用",
    "禁用",
    "turn off",
    "switch off",
    "disable",
    "stop",
    "don't",
    "do not",
    "no more",
    "deactivate",
];
const CHAT: &[&str] = &[
    "陪我聊",
    "聊聊天",
    "聊天",
    "聊会",
    "聊一会",
    "说说话",
    "陪陪我",
    "讲个笑话",
    "讲笑话",
    "段子",
    "讲个故事",
    "讲故事",
    "说个笑话",
    "来个笑话",
    "笑话",
    "逗我",
    "讲个故事",
    "我好累",
    "我累了",
    "好累",
    "累死",
    "好困",
    "我困了",
    "困了",
    "有点困",
    "犯困",
    "想睡觉",
    "累了",
    "心情不好",
    "不开心",
    "难过",
    "无聊",
    "孤单",
    "寂寞",
    "烦死",
    "好烦",
    "压力好大",
    "你好",
    "早上好",
    "晚上好",
    "晚安",
    "谢谢",
    "word game",
    "a game",
    "play a game",
    "游戏",
    "玩个",
    "猜谜",
    "chat with me",
    "talk to me",
    "let's talk",
    "let's chat",
    "keep me company",
    "i'm tired",
    "i am tired",
    "so tired",
    "i'm sleepy",
    "i'm bored",
    "i am bored",
    "bored",
    "tired",
    "sleepy",
    "exhausted",
    "sad",
    "upset",
    "anxious",
    "nervous",
    "angry",
    "i feel",
    "i'm feeling",
    "tell me a joke",
    "a joke",
    "joke",
    "tell me a story",
    "cheer me up",
    "i'm sad",
    "i am sad",
    "lonely",
    "stressed",
    "i'm stressed",
    "good morning",
    "good night",
    "hello",
    "hi",
    "how are you",
    "thank you",
    "thanks",
];

const CAR_COMMANDS: &[&str] = &[
    "打开",
    "关闭",
    "导航",
    "播放",
    "暂停",
    "下一首",
    "上一首",
    "调高",
    "调低",
    "音量",
    "空调",
    "温度",
    "车窗",
    "天窗",
    "后备箱",
    "座椅",
    "打电话",
    "拨打",
    "发短信",
    "发消息",
    "去机场",
    "去公司",
    "回家",
    "navigate",
    "navigation",
    "play",
    "pause",
    "skip",
    "call",
    "phone",
    "text",
    "message",
    "turn up",
    "turn down",
    "volume",
    "temperature",
    "window",
    "sunroof",
    "trunk",
    "open",
    "close",
    "directions",
    "route to",
    "take me to",
];

/// Parses one utterance.
pub fn parse(utterance: &str, locale: Option<&'static str>) -> Parsed {
    let text = normalize(utterance);
    let lang = locale.unwrap_or_else(|| language_of(&text));
    let (intent, confidence) = classify(&text);
    let confirm = (confidence < ASK_BACK_BELOW)
        .then(|| ask_back(&intent, lang == "zh"))
        .flatten();
    Parsed {
        intent,
        lang,
        normalized: text,
        confidence,
        confirm,
    }
}

/// The question that checks an unsure command; none for talk and for what is not ours.
pub fn ask_back(intent: &Intent, zh: bool) -> Option<String> {
    Some(match (intent, zh) {
        (Intent::WallpaperGenerate { scene, .. }, true) if scene.is_empty() => {
            "要换一张新壁纸吗？".into()
        }
        (Intent::WallpaperGenerate { scene, .. }, true) => format!("要换成{scene}壁纸吗？"),
        (Intent::WallpaperGenerate { scene, .. }, false) if scene.is_empty() => {
            "Shall I make you a new wallpaper?".into()
        }
        (Intent::WallpaperGenerate { scene, .. }, false) => {
            format!("Shall I make a {scene} wallpaper?")
        }
        (Intent::TimeAware { enabled: true }, true) => "要打开时间壁纸吗？".into(),
        (Intent::TimeAware { enabled: false }, true) => "要关闭时间壁纸吗？".into(),
        (Intent::TimeAware { enabled: true }, false) => "Turn the time wallpaper on?".into(),
        (Intent::TimeAware { enabled: false }, false) => "Turn the time wallpaper off?".into(),
        (Intent::WallpaperStatus {}, true) => "你是想问现在的壁纸吗？".into(),
        (Intent::WallpaperStatus {}, false) => "Do you want to know what your wallpaper is?".into(),
        (Intent::DriveTime {}, true) => "你是想知道开了多久吗？".into(),
        (Intent::DriveTime {}, false) => "Do you want to know how long you've been driving?".into(),
        (Intent::Feedback { .. }, true) => "要把这条反馈发给厂家吗？".into(),
        (Intent::Feedback { .. }, false) => "Shall I send that to the maker as feedback?".into(),
        _ => return None,
    })
}

fn classify(text: &str) -> (Intent, f32) {
    if text.is_empty() {
        return (
            Intent::Unknown {
                reason: "nothing was said".into(),
            },
            1.0,
        );
    }
    let p = model::bundled().predict(text);
    let mut top = (0..model::INTENTS.len())
        .max_by(|a, b| p[*a].total_cmp(&p[*b]))
        .unwrap_or(model::INTENTS.len() - 1);
    // Unsure talk that may be a command ("雪山" alone) is the command, to be asked back.
    let chat = model::INTENTS.iter().position(|n| *n == "companion.chat");
    if Some(top) == chat && p[top] < ASK_BACK_BELOW {
        let command = (0..model::INTENTS.len())
            .filter(|k| !matches!(model::INTENTS[*k], "companion.chat" | "car.command"))
            .max_by(|a, b| p[*a].total_cmp(&p[*b]));
        if let Some(k) = command.filter(|k| p[*k] >= MAYBE_A_COMMAND) {
            top = k;
        }
    }
    // Below this the model is unsure, and a cue phrase it may not have seen decides
    // ("吐槽一下…" is feedback, "我要导航回家" a command for the car).
    if p[top] < CUES_DECIDE_BELOW {
        if any(text, FEEDBACK) {
            return (
                Intent::Feedback {
                    text: feedback_text(text).to_string(),
                },
                p[top],
            );
        }
        if any(text, CAR_COMMANDS) && !any(text, &["壁纸", "wallpaper", "background"]) {
            return (
                Intent::CarCommand {
                    reason: format!(
                        "{text:?} is a command for the car; no cabin service handles it"
                    ),
                },
                p[top],
            );
        }
    }
    let intent = match model::INTENTS[top] {
        "wallpaper.generate" => Intent::WallpaperGenerate {
            scene: request_scene(text),
            slots: slots(text),
        },
        "wallpaper.time_aware" => Intent::TimeAware {
            enabled: !any(text, OFF),
        },
        "status.wallpaper" => Intent::WallpaperStatus {},
        "status.drive_time" => Intent::DriveTime {},
        "feedback.submit" => Intent::Feedback {
            text: feedback_text(text).to_string(),
        },
        "car.command" => Intent::CarCommand {
            reason: format!("{text:?} is a command for the car; no cabin service handles it"),
        },
        _ => chat_or_not_ours(text),
    };
    (intent, p[top])
}

/// What the owner wants the maker to hear, without the "report this" around it.
fn feedback_text(text: &str) -> &str {
    if any(text, FEEDBACK) {
        let rest = trim_joiners(after_cue(text, FEEDBACK).unwrap_or(""));
        let rest = if ["it", "this", "that", "一下"].contains(&rest) {
            ""
        } else {
            rest
        };
        // "the seat heater is broken, I want to report it": the feedback came first.
        return if rest.is_empty() {
            before_cue(text, FEEDBACK)
        } else {
            rest
        };
    }
    match after_cue(text, FEEDBACK_TO_MAKER) {
        Some(rest) => trim_joiners(rest),
        None => text,
    }
}

/// Talk for the companion, unless it is a command for the car (windows, media, calls),
/// which no cabin service handles.
fn chat_or_not_ours(text: &str) -> Intent {
    let command = any(text, CAR_COMMANDS);
    let about_me = [
        "我",
        "i ",
        "i'm",
        "i am",
        "i've",
        "i was",
        "my ",
        "today i",
        "今天我",
    ]
    .iter()
    .any(|p| text.starts_with(p));
    if !command || about_me || any(text, CHAT) {
        return Intent::Chat {
            text: text.to_string(),
        };
    }
    Intent::CarCommand {
        reason: format!("{text:?} is a command for the car; no cabin service handles it"),
    }
}

/// The text before the first cue, without the "I want to" that led into it.
fn before_cue<'a>(text: &'a str, cues: &[&str]) -> &'a str {
    let at = cues
        .iter()
        .filter_map(|c| text.find(c))
        .min()
        .unwrap_or(text.len());
    let mut head = text[..at].trim();
    for lead in [
        "i want to",
        "i'd like to",
        "i would like to",
        "so",
        "and",
        "我想",
        "我要",
        "想",
    ] {
        if let Some(h) = head.strip_suffix(lead)
            && (lead.chars().any(is_cjk) || h.is_empty() || h.ends_with(' '))
        {
            head = h.trim();
        }
    }
    head
}

fn trim_joiners(s: &str) -> &str {
    let mut s = s.trim();
    loop {
        let before = s;
        for j in [
            "一下",
            "一个",
            "问题",
            "就是",
            "的是",
            "about",
            "that",
            "regarding",
        ] {
            if let Some(rest) = s.strip_prefix(j) {
                let boundary = j.chars().any(is_cjk) || rest.is_empty() || rest.starts_with(' ');
                if boundary {
                    s = rest.trim_start();
                }
            }
        }
        if s == before {
            return s.trim();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_examples() {
        let cases: &[(&str, Intent)] = &[
            (
                "换一张雪山的壁纸",
                Intent::WallpaperGenerate {
                    scene: "雪山".into(),
                    slots: slots(&normalize("雪山")),
                },
            ),
            (
                "来个星空壁纸",
                Intent::WallpaperGenerate {
                    scene: "星空".into(),
                    slots: slots(&normalize("星空")),
                },
            ),
            (
                "make the wallpaper a starry night",
                Intent::WallpaperGenerate {
                    scene: "starry night".into(),
                    slots: slots(&normalize("starry night")),
                },
            ),
            ("壁纸跟随时间变化", Intent::TimeAware { enabled: true }),
            (
                "turn off time wallpaper",
                Intent::TimeAware { enabled: false },
            ),
            (
                "陪我聊聊天",
                Intent::Chat {
                    text: "陪我聊聊天".into(),
                },
            ),
            (
                "I'm tired",
                Intent::Chat {
                    text: "i'm tired".into(),
                },
            ),
            (
                "讲个笑话",
                Intent::Chat {
                    text: "讲个笑话".into(),
                },
            ),
            (
                "反馈一下，导航老是卡",
                Intent::Feedback {
                    text: "导航老是卡".into(),
                },
            ),
            (
                "report a problem: the seat heater doesn't work",
                Intent::Feedback {
                    text: "the seat heater doesn't work".into(),
                },
            ),
            (
                "反馈下雨天雨刮不好用",
                Intent::Feedback {
                    text: "下雨天雨刮不好用".into(),
                },
            ),
            ("我开了多久了", Intent::DriveTime {}),
            ("what's my wallpaper", Intent::WallpaperStatus {}),
        ];
        for (utterance, want) in cases {
            assert_eq!(&parse(utterance, None).intent, want, "{utterance}");
        }
        assert!(matches!(
            parse("打开车窗", None).intent,
            Intent::CarCommand { .. }
        ));
    }
}
