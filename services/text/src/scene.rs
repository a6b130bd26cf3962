//! The scene a wallpaper request asks for, the same whoever hears it: voice and chat both call
//! [`request_scene`] on normalised text, so "嗯那个帮我换成下雪的山吧" and "uh show me snowy
//! mountains" reach the wallpaper service as the words of the scene, and [`slots`] tags the
//! family, light phase and style with the words the wallpaper model was trained on
//! (`data/scene-words.json`, exported from `onnx/train/scenes.py`).
//!
//! Architecture invariant: text in, text or slots out; the words live in the data file.

use std::sync::OnceLock;

use crate::normalize::mentions;
use crate::script::is_han;

/// What a request names, as the wallpaper model's vocabulary ("" when it names nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SceneSlots {
    pub family: &'static str,
    pub phase: &'static str,
    pub style: &'static str,
}

struct Gazetteer {
    /// (slot, value, words), each word list longest first.
    entries: Vec<(usize, &'static str, Vec<String>)>,
}

fn gazetteer() -> &'static Gazetteer {
    static G: OnceLock<Gazetteer> = OnceLock::new();
    G.get_or_init(|| {
        // Compiled in and checked by a unit test.
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../data/scene-words.json")).unwrap_or_default();
        let mut entries = Vec::new();
        for (slot, key) in ["family", "phase", "style"].iter().enumerate() {
            if let Some(map) = v[key].as_object() {
                for (value, langs) in map {
                    let value: &'static str = Box::leak(value.clone().into_boxed_str());
                    let words = ["en", "zh"]
                        .iter()
                        .flat_map(|l| langs[l].as_array().cloned().unwrap_or_default())
                        .filter_map(|w| w.as_str().map(str::to_string))
                        .collect();
                    entries.push((slot, value, words));
                }
            }
        }
        Gazetteer { entries }
    })
}

/// The family, phase and style a normalised request names: for each, the value whose
/// longest word occurs (the longest wins, so "rainy city" is rain and "雨林" is forest).
pub fn slots(text: &str) -> SceneSlots {
    let mut best: [(usize, &'static str); 3] = [(0, ""); 3];
    for (slot, value, words) in &gazetteer().entries {
        if let Some(w) = words.iter().find(|w| mentions(text, w)) {
            let len = w.chars().count();
            if len > best[*slot].0 {
                best[*slot] = (len, value);
            }
        }
    }
    SceneSlots {
        family: best[0].1,
        phase: best[1].1,
        style: best[2].1,
    }
}

/// The scene families of the wallpaper vocabulary, in alphabetical order.
pub fn families() -> Vec<&'static str> {
    values(0)
}

/// The light phases of the wallpaper vocabulary: dawn, day, dusk, night.
pub fn phases() -> Vec<&'static str> {
    values(1)
}

fn values(slot: usize) -> Vec<&'static str> {
    gazetteer()
        .entries
        .iter()
        .filter(|e| e.0 == slot)
        .map(|e| e.1)
        .collect()
}

/// The scene of a wallpaper request: what is left when the request's own words go.
pub fn request_scene(text: &str) -> String {
    const ZH_DROP: &[&str] = &[
        "壁纸换成",
        "壁纸设置为",
        "壁纸设为",
        "壁纸为",
        "壁纸是",
        "壁纸用",
        "请",
        "帮我",
        "给我",
        "麻烦你",
        "麻烦",
        "能不能",
        "可不可以",
        "可以",
        "我想要",
        "我想",
        "想要",
        "我要",
        "要",
        "把",
        "将",
        "换一张",
        "换一个",
        "换张",
        "换个",
        "换成",
        "换",
        "来一张",
        "来一个",
        "来张",
        "来个",
        "来",
        "设置成",
        "设置为",
        "设置",
        "设成",
        "改成",
        "变成",
        "弄一张",
        "弄个",
        "生成一张",
        "生成",
        "画一张",
        "画一幅",
        "画个",
        "画",
        "用",
        "一张",
        "一个",
        "一幅",
        "新的",
        "张",
        "壁纸",
        "桌面背景",
        "背景图",
        "屏保",
        "的",
        "吧",
        "呀",
        "啊",
        "呢",
        "哦",
        "好吗",
        "好不好",
        "行吗",
        "谢谢",
    ];
    const EN_DROP: &[&str] = &[
        "please",
        "could",
        "can",
        "would",
        "will",
        "you",
        "i",
        "i'd",
        "id",
        "like",
        "want",
        "me",
        "my",
        "the",
        "a",
        "an",
        "some",
        "to",
        "as",
        "into",
        "be",
        "of",
        "for",
        "it",
        "make",
        "set",
        "change",
        "switch",
        "generate",
        "create",
        "give",
        "show",
        "draw",
        "paint",
        "put",
        "use",
        "get",
        "have",
        "new",
        "another",
        "different",
        "picture",
        "image",
        "photo",
        "wallpaper",
        "wallpapers",
        "background",
        "backdrop",
        "lock",
        "screen",
        "up",
        "on",
        "now",
        "thanks",
        "thank",
        "just",
        "something",
        "let's",
        "lets",
        "one",
        "us",
        "this",
        "that",
        "is",
        "so",
        "looks",
        "look",
        "boring",
        "dull",
        "bored",
        "sick",
        "tired",
        "ugly",
        "old",
    ];
    let mut zh_part = String::new();
    let mut en_words = Vec::new();
    for word in text.split_whitespace() {
        if word.chars().any(is_han) {
            let mut w = word.to_string();
            // Longest first, so 换一张 goes before 换. A single character goes only where it
            // is the asking: a verb at the start ("换", "来", "画"), a particle at the end
            // ("吧", "呀"); inside a name it stays ("未来城市", "张家界", "油画风"). "的" goes
            // anywhere.
            for d in ZH_DROP
                .iter()
                .filter(|d| d.chars().count() > 1 || **d == "的")
            {
                w = w.replace(d, " ");
            }
            let mut kept = w.split_whitespace().collect::<Vec<_>>().join("");
            loop {
                let before = kept.len();
                for d in ["请", "要", "把", "将", "换", "来", "画", "用"] {
                    if let Some(rest) = kept.strip_prefix(d) {
                        kept = rest.to_string();
                    }
                }
                for d in ["吧", "呀", "啊", "呢", "哦"] {
                    if let Some(rest) = kept.strip_suffix(d) {
                        kept = rest.to_string();
                    }
                }
                if kept.len() == before {
                    break;
                }
            }
            if !kept.is_empty() {
                if !zh_part.is_empty() || !en_words.is_empty() {
                    en_words.push(kept);
                } else {
                    zh_part = kept;
                }
            }
        } else if !EN_DROP.contains(&word) {
            en_words.push(word.to_string());
        }
    }
    let mut parts = Vec::new();
    if !zh_part.is_empty() {
        parts.push(zh_part);
    }
    parts.extend(en_words);
    parts.join(" ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize;

    #[test]
    fn the_vocabulary_lists_its_families_and_the_four_phases() {
        let families = families();
        assert!(families.len() >= 8, "{families:?}");
        assert!(families.contains(&"mountains") && families.contains(&"city"));
        assert_eq!(phases(), ["dawn", "day", "dusk", "night"]);
    }

    #[test]
    fn the_scene_words_parse_and_cover_every_family() {
        let families: Vec<&str> = gazetteer()
            .entries
            .iter()
            .filter(|e| e.0 == 0)
            .map(|e| e.1)
            .collect();
        assert_eq!(families.len(), 10, "{families:?}");
        assert!(gazetteer().entries.iter().all(|e| !e.2.is_empty()));
    }

    #[test]
    fn voice_and_chat_wordings_give_the_same_scene() {
        let scene = |t: &str| request_scene(&normalize(t));
        assert_eq!(scene("嗯，那个，换一张雪山的壁纸吧！"), "雪山");
        assert_eq!(
            scene("Uh, make the wallpaper a starry night?"),
            "starry night"
        );
        assert_eq!(
            scene("can you set a beach sunset as my background please"),
            "beach sunset"
        );
        assert_eq!(scene("换个壁纸"), "");
        assert_eq!(scene("来一张未来城市的壁纸"), "未来城市");
        assert_eq!(scene("换成张家界"), "张家界");
    }

    #[test]
    fn slots_name_family_phase_and_style() {
        let s = slots(&normalize("嗯换个黄昏的雪山壁纸 暖色调一点"));
        assert_eq!((s.family, s.phase, s.style), ("mountains", "dusk", "warm"));
        let s = slots(&normalize("show me a rainy city street at night"));
        assert_eq!((s.family, s.phase), ("rain", "night"));
        let s = slots(&normalize("a cat please"));
        assert_eq!(s, SceneSlots::default());
    }
}
