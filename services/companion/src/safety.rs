//! Crisis language: whatever a backend would say, the user gets a caring reply with a
//! hotline to call.
//!
//! Deliberately wide on real distress and careful with idioms that only sound like it
//! ("累死了", "笑死", "想死你了", "dying to see it", "killing it").

/// What a crisis reply is made of; the hotline line comes from config.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// Said after the caring words, e.g. "You can call 988 any time."
    pub hotline_en: String,
    pub hotline_zh: String,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            hotline_en: "If you are in danger, please call your local emergency number, or a crisis line such as 988 in the US.".into(),
            hotline_zh: "如果你有危险，请马上拨打 120 或 110，也可以打心理援助热线 400-161-9995。".into(),
        }
    }
}

const ZH: &[&str] = &[
    "不想活",
    "活不下去",
    "活着没意思",
    "活着没有意思",
    "想自杀",
    "自杀",
    "结束生命",
    "结束自己",
    "去死吧我",
    "我想死",
    "我要去死",
    "想去死",
    "轻生",
    "跳楼",
    "割腕",
    "了结自己",
    "一了百了",
    "撞上去算了",
    "不如死了",
];
const ZH_NOT: &[&str] = &[
    "想死你",
    "累死",
    "笑死",
    "热死",
    "饿死",
    "困死",
    "烦死",
    "气死",
    "冷死",
    "忙死",
    "急死",
    "吓死",
];
const EN: &[&str] = &[
    "kill myself",
    "killing myself",
    "end my life",
    "end it all",
    "suicide",
    "suicidal",
    "want to die",
    "wanna die",
    "don't want to live",
    "dont want to live",
    "no reason to live",
    "better off dead",
    "hurt myself",
    "harm myself",
    "crash the car on purpose",
    "not worth living",
];
const EN_NOT: &[&str] = &["dying to", "to die for", "killing it"];

/// True when `text` reads as self-harm or crisis.
pub fn is_crisis(text: &str) -> bool {
    let lower = text.to_lowercase();
    let mut cleaned = lower.clone();
    for idiom in ZH_NOT.iter().chain(EN_NOT) {
        cleaned = cleaned.replace(idiom, " ");
    }
    let squeezed: String = cleaned
        .chars()
        .filter(|c| !c.is_whitespace() || c == &' ')
        .collect();
    ZH.iter().any(|p| squeezed.replace(' ', "").contains(p))
        || EN.iter().any(|p| squeezed.contains(p))
}

/// The reply for a crisis, in `lang`.
pub fn crisis_reply(config: &SafetyConfig, lang: &str, user: &str, moving: bool) -> String {
    let stop_en = if moving {
        " If you can, please pull over somewhere safe first."
    } else {
        ""
    };
    let stop_zh = if moving {
        "如果可以，请先在安全的地方停车。"
    } else {
        ""
    };
    if lang == "zh" {
        format!(
            "{user}，听到你这么说我很担心你。你并不孤单，我在这里陪着你。{stop_zh}{}",
            config.hotline_zh
        )
    } else {
        format!(
            "{user}, I'm really worried about you, and I'm glad you told me. You are not alone.{stop_en} {}",
            config.hotline_en
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catches_crisis_and_spares_idioms() {
        for text in [
            "我真的不想活了",
            "活着没意思",
            "I want to kill myself",
            "sometimes I think I'd be better off dead",
            "I just want to end it all",
            "我 想 死",
        ] {
            assert!(is_crisis(text), "{text}");
        }
        for text in [
            "今天累死了",
            "笑死我了",
            "想死你了",
            "I'm dying to see the sea",
            "you're killing it today",
            "the battery will die soon",
        ] {
            assert!(!is_crisis(text), "{text}");
        }
    }
}
