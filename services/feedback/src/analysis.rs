//! From redacted items to recurring problems, in Chinese and English.
//!
//! Each text is reduced to *concepts* — the part of the car it is about (screen, voice,
//! navigation, ...) and the symptom (lag, noise, failure, ...) — through a bilingual lexicon,
//! so "车机卡顿", "屏幕反应慢" and "the screen lags" all read `screen + lag`. Items group by
//! their (part, symptom) signature; items that name only one of the two join the closest
//! group by shared concepts and words. Each problem gets a label, c-TF-IDF keywords, count,
//! trend against the previous window, channels, sentiment, severity, representative quotes
//! and an improvement point.
//!
//! Chinese has no spaces: concepts are found by lexicon lookup in the raw text; other
//! Chinese words (for similarity and keywords) come from jieba segmentation (jieba-rs, its
//! bundled dictionary, loaded once per process), less stop words and single characters.

use std::collections::{BTreeMap, HashMap, HashSet};

use cabin_proto::feedback::v1::{Channel, ProblemSummary, RedactedItem, Severity, Trend};

/// A part of the car, with the words people use for it.
struct Part {
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    words: &'static [&'static str],
}

/// A symptom, with its words and what it says about severity.
struct Symptom {
    id: &'static str,
    zh: &'static str,
    en: &'static str,
    words: &'static [&'static str],
}

const PARTS: &[Part] = &[
    Part {
        id: "screen",
        zh: "中控屏",
        en: "centre screen",
        words: &[
            "屏幕",
            "中控",
            "车机",
            "屏",
            "显示屏",
            "界面",
            "screen",
            "display",
            "head unit",
            "infotainment",
            "touchscreen",
            "touch screen",
            "ui",
            "centre screen",
            "center screen",
        ],
    },
    Part {
        id: "voice",
        zh: "语音助手",
        en: "voice assistant",
        words: &[
            "语音",
            "语音助手",
            "方言",
            "识别",
            "voice",
            "speech",
            "assistant",
        ],
    },
    Part {
        id: "navigation",
        zh: "导航",
        en: "navigation",
        words: &[
            "导航",
            "地图",
            "定位",
            "路线",
            "绕路",
            "navigation",
            "map",
            "gps",
            "route",
            "directions",
            "turn-by-turn",
        ],
    },
    Part {
        id: "bluetooth",
        zh: "蓝牙",
        en: "Bluetooth",
        words: &["蓝牙", "配对", "bluetooth", "pair"],
    },
    Part {
        id: "charging",
        zh: "充电",
        en: "charging",
        words: &[
            "充电",
            "充电桩",
            "快充",
            "慢充",
            "充电枪",
            "充不上",
            "charge",
            "charging",
            "charger",
            "plug in",
            "station",
        ],
    },
    Part {
        id: "range",
        zh: "续航",
        en: "range",
        words: &["续航", "电量", "耗电", "range", "battery", "drains"],
    },
    Part {
        id: "climate",
        zh: "空调",
        en: "air conditioning",
        words: &[
            "空调",
            "出风口",
            "压缩机",
            "暖风",
            "ac",
            "a/c",
            "air conditioning",
            "air-con",
            "vents",
            "vent",
            "fan",
            "climate",
        ],
    },
    Part {
        id: "seat",
        zh: "座椅",
        en: "seats",
        words: &[
            "座椅",
            "座位",
            "腰",
            "座椅加热",
            "seat",
            "seats",
            "lumbar",
            "back",
            "seat heater",
            "seat heating",
        ],
    },
    Part {
        id: "software_update",
        zh: "OTA升级",
        en: "software update",
        words: &[
            "ota",
            "升级",
            "更新",
            "升级包",
            "update",
            "software",
            "firmware",
        ],
    },
    Part {
        id: "app",
        zh: "手机APP",
        en: "phone app",
        words: &["app", "手机app", "远程", "remote", "the app", "phone app"],
    },
    Part {
        id: "brakes",
        zh: "刹车",
        en: "brakes",
        words: &["刹车", "制动", "brake", "brakes", "braking"],
    },
    Part {
        id: "cabin_noise",
        zh: "车内风噪",
        en: "wind noise",
        words: &["风噪", "车窗", "密封", "wind", "windows", "mirrors", "seal"],
    },
    Part {
        id: "camera",
        zh: "摄像头",
        en: "cameras",
        words: &[
            "摄像头",
            "倒车影像",
            "影像",
            "全景",
            "360",
            "camera",
            "reversing",
            "rear camera",
        ],
    },
];

const SYMPTOMS: &[Symptom] = &[
    Symptom {
        id: "lag",
        zh: "卡顿",
        en: "lag",
        words: &[
            "卡顿",
            "卡住",
            "很卡",
            "卡",
            "反应慢",
            "迟钝",
            "延迟",
            "没反应",
            "半天",
            "lag",
            "lags",
            "laggy",
            "lagging",
            "slow to respond",
            "sluggish",
            "freezes",
            "freeze",
            "frozen",
            "delay",
            "very slow",
        ],
    },
    Symptom {
        id: "misunderstands",
        zh: "识别不准",
        en: "misrecognition",
        words: &[
            "听不懂",
            "识别不准",
            "识别错",
            "误解",
            "听错",
            "没反应",
            "doesn't understand",
            "not understand",
            "misheard",
            "inaccurate",
            "getting it wrong",
            "repeat",
            "recognition",
        ],
    },
    Symptom {
        id: "wrong",
        zh: "不准确",
        en: "inaccuracy",
        words: &[
            "不准",
            "绕路",
            "偏移",
            "带错",
            "太旧",
            "不及时",
            "wrong",
            "drifts",
            "drift",
            "out of date",
            "outdated",
            "too late",
            "inaccurate",
        ],
    },
    Symptom {
        id: "disconnects",
        zh: "连接不稳定",
        en: "connection drops",
        words: &[
            "断开",
            "连不上",
            "不稳定",
            "断",
            "离线",
            "重新配对",
            "不更新",
            "disconnect",
            "disconnecting",
            "won't connect",
            "can't connect",
            "unstable",
            "drop",
            "offline",
            "never refreshes",
            "pair bluetooth again",
        ],
    },
    Symptom {
        id: "fails",
        zh: "失败",
        en: "failure",
        words: &[
            "失败",
            "中断",
            "充不上",
            "不能用",
            "卡在",
            "没充满",
            "上不去",
            "没反应",
            "fail",
            "failed",
            "fails",
            "stops",
            "stuck",
            "broke",
            "won't charge",
            "nothing happens",
            "doesn't finish",
            "doesn't work",
            "does not work",
            "not working",
            "stopped working",
            "dead",
            "不工作",
            "不好使",
            "坏了",
            "失灵",
            "不热",
            "stays cold",
        ],
    },
    Symptom {
        id: "drains",
        zh: "掉电快",
        en: "fast drain",
        words: &[
            "掉得",
            "缩水",
            "少很多",
            "掉电",
            "不准",
            "drops too fast",
            "drains",
            "terrible",
            "far below",
            "wrong",
        ],
    },
    Symptom {
        id: "noise",
        zh: "异响",
        en: "noise",
        words: &[
            "噪音", "异响", "很吵", "吵", "响声", "吱吱", "咯噔", "噪", "noise", "noisy", "loud",
            "rattling", "rattle", "squeal", "grinding", "clunk",
        ],
    },
    Symptom {
        id: "smell",
        zh: "异味",
        en: "smell",
        words: &[
            "异味", "霉味", "怪味", "臭", "smell", "smells", "musty", "stink",
        ],
    },
    Symptom {
        id: "discomfort",
        zh: "不舒适",
        en: "discomfort",
        words: &[
            "腰疼",
            "太硬",
            "不舒服",
            "支撑不够",
            "不热",
            "uncomfortable",
            "too hard",
            "hurts",
            "no lumbar",
            "barely warms",
        ],
    },
    Symptom {
        id: "blurry",
        zh: "画面不清",
        en: "poor image",
        words: &[
            "模糊",
            "不清楚",
            "看不清",
            "blurry",
            "unclear",
            "useless at night",
            "feed lags",
        ],
    },
    Symptom {
        id: "slow",
        zh: "速度慢",
        en: "slowness",
        words: &["很慢", "慢", "slow", "is slow"],
    },
];

/// Words that lift a problem's severity: safety first, then loss of a core function.
const CRITICAL_WORDS: &[&str] = &[
    "刹车失灵",
    "起火",
    "冒烟",
    "失控",
    "brake failure",
    "fire",
    "smoke",
    "lost control",
];
const SAFETY_PARTS: &[&str] = &["brakes", "camera"];

const NEGATIVE_WORDS: &[&str] = &[
    "烦",
    "差",
    "失败",
    "不能",
    "不准",
    "坏",
    "吵",
    "疼",
    "臭",
    "慢",
    "卡",
    "断",
    "难用",
    "失望",
    "投诉",
    "annoying",
    "terrible",
    "bad",
    "fail",
    "broke",
    "wrong",
    "useless",
    "slow",
    "loud",
    "hurts",
    "worst",
    "disappointed",
];
const POSITIVE_WORDS: &[&str] = &[
    "好",
    "满意",
    "喜欢",
    "不错",
    "棒",
    "great",
    "good",
    "love",
    "like",
    "nice",
    "thanks",
    "satisfied",
];

fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4dbf}' | '\u{4e00}'..='\u{9fff}')
}

/// Lowercased text with placeholders removed.
fn normalise(text: &str) -> String {
    let mut out = text.to_lowercase();
    for kind in crate::redact::Kind::ALL {
        out = out.replace(&kind.placeholder().to_lowercase(), " ");
    }
    out
}

/// Whether `word` occurs in `text` (whole words for Latin script, substrings for Chinese).
fn mentions(text: &str, word: &str) -> bool {
    if word.chars().any(is_cjk) {
        return text.contains(word);
    }
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let end = at + word.len();
        if boundary(text[..at].chars().next_back()) && boundary(text[end..].chars().next()) {
            return true;
        }
        from = at + word.len().max(1);
    }
    false
}

/// What one item is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub part: Option<&'static str>,
    pub symptom: Option<&'static str>,
    /// Concepts and plain words, for similarity and keywords.
    pub terms: Vec<String>,
    /// -1 (angry) .. 1 (happy).
    pub sentiment: f32,
}

const EN_STOP: &[&str] = &[
    "the", "a", "an", "is", "are", "was", "it", "to", "of", "and", "or", "my", "me", "i", "in",
    "on", "at", "when", "with", "for", "very", "again", "please", "look", "into", "fix", "brand",
    "new", "car", "lately", "every", "week", "happens", "this", "that", "after", "have", "has",
    "be", "keeps", "keep", "too", "so",
];
const ZH_STOP: &[&str] = &[
    "的",
    "了",
    "是",
    "我",
    "很",
    "就",
    "都",
    "也",
    "在",
    "有",
    "请",
    "希望",
    "最近",
    "已经",
    "好几次",
    "提个意见",
    "体验",
    "新车",
    "工程师",
    "看看",
    "尽快",
    "解决",
];

/// jieba's dictionary takes a moment to load: once per process.
fn segmenter() -> &'static jieba_rs::Jieba {
    static JIEBA: std::sync::OnceLock<jieba_rs::Jieba> = std::sync::OnceLock::new();
    JIEBA.get_or_init(jieba_rs::Jieba::new)
}

/// Reads one text.
pub fn read(text: &str) -> Reading {
    let t = normalise(text);
    let longest = |words: &[&'static str]| -> usize {
        words
            .iter()
            .filter(|w| mentions(&t, w))
            .map(|w| w.chars().count())
            .max()
            .unwrap_or(0)
    };
    // The part and the symptom named most specifically (longest matching phrase) win.
    let part = PARTS
        .iter()
        .map(|p| (longest(p.words), p.id))
        .filter(|(n, _)| *n > 0)
        .max_by_key(|(n, _)| *n)
        .map(|(_, id)| id);
    let symptom = SYMPTOMS
        .iter()
        .map(|s| (longest(s.words), s.id))
        .filter(|(n, _)| *n > 0)
        .max_by_key(|(n, _)| *n)
        .map(|(_, id)| id);
    let mut terms: Vec<String> = Vec::new();
    terms.extend(part.map(|p| format!("part:{p}")));
    terms.extend(symptom.map(|s| format!("symptom:{s}")));
    for word in t.split(|c: char| !c.is_alphanumeric() && c != '\'') {
        if word.is_empty() {
            continue;
        }
        if word.chars().any(is_cjk) {
            for token in segmenter().cut(word, true).iter().map(|t| t.word) {
                let zh: String = token.chars().filter(|c| is_cjk(*c)).collect();
                if zh.chars().count() >= 2 && !ZH_STOP.contains(&zh.as_str()) {
                    terms.push(zh);
                } else if token.is_ascii() && token.len() > 2 && !EN_STOP.contains(&token) {
                    terms.push(stem(token));
                }
            }
        } else if word.len() > 2 && !EN_STOP.contains(&word) {
            terms.push(stem(word));
        }
    }
    let neg = NEGATIVE_WORDS.iter().filter(|w| mentions(&t, w)).count() as f32;
    let pos = POSITIVE_WORDS.iter().filter(|w| mentions(&t, w)).count() as f32;
    // A complaint with no sentiment word is still mildly negative: people write to complain.
    let sentiment = if neg + pos == 0.0 {
        -0.3
    } else {
        ((pos - neg) / (pos + neg)).clamp(-1.0, 1.0)
    };
    Reading {
        part,
        symptom,
        terms,
        sentiment,
    }
}

/// For each English stem, the word it was most often cut from (ties: the shorter word).
fn surface_forms<'a>(texts: impl Iterator<Item = &'a str>) -> HashMap<String, String> {
    let mut counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for text in texts {
        let t = normalise(text);
        for word in t.split(|c: char| !c.is_alphanumeric() && c != '\'') {
            if word.len() > 2 && word.is_ascii() && !EN_STOP.contains(&word) {
                *counts
                    .entry(stem(word))
                    .or_default()
                    .entry(word.to_string())
                    .or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .filter_map(|(stem, words)| {
            let best = words.into_iter().max_by(|a, b| {
                a.1.cmp(&b.1)
                    .then(b.0.len().cmp(&a.0.len()))
                    .then(b.0.cmp(&a.0))
            })?;
            Some((stem, best.0))
        })
        .collect()
}

fn stem(word: &str) -> String {
    for suffix in ["ing", "ed", "es", "s"] {
        if let Some(base) = word.strip_suffix(suffix)
            && base.len() >= 3
        {
            return base.to_string();
        }
    }
    word.to_string()
}

fn cosine(a: &HashMap<String, f32>, b: &HashMap<String, f32>) -> f32 {
    let dot: f32 = a.iter().filter_map(|(k, v)| b.get(k).map(|w| v * w)).sum();
    let na: f32 = a.values().map(|v| v * v).sum::<f32>().sqrt();
    let nb: f32 = b.values().map(|v| v * v).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

fn vector(reading: &Reading) -> HashMap<String, f32> {
    let mut v = HashMap::new();
    for term in &reading.terms {
        let w = if term.starts_with("part:") {
            3.0
        } else if term.starts_with("symptom:") {
            2.0
        } else {
            0.5
        };
        *v.entry(term.clone()).or_insert(0.0) += w;
    }
    v
}

/// Groups items into problems; returns, per item, the index of its group.
pub fn cluster(readings: &[Reading]) -> Vec<usize> {
    let mut keys: Vec<(Option<&str>, Option<&str>)> = Vec::new();
    let mut assignment = vec![usize::MAX; readings.len()];
    // Full signatures first.
    for (i, r) in readings.iter().enumerate() {
        if let (Some(_), Some(_)) = (r.part, r.symptom) {
            let key = (r.part, r.symptom);
            let group = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                keys.len() - 1
            });
            assignment[i] = group;
        }
    }
    // A signature seen only once or twice is more likely a stray symptom word: let those
    // items, and the ones naming only a part or a symptom, join the closest larger group.
    let sizes = |assignment: &[usize], g: usize| assignment.iter().filter(|a| **a == g).count();
    let centroids = |assignment: &[usize]| -> Vec<HashMap<String, f32>> {
        (0..keys.len())
            .map(|g| {
                let mut c: HashMap<String, f32> = HashMap::new();
                for (i, r) in readings.iter().enumerate() {
                    if assignment[i] == g {
                        for (k, v) in vector(r) {
                            *c.entry(k).or_insert(0.0) += v;
                        }
                    }
                }
                c
            })
            .collect()
    };
    let small: HashSet<usize> = (0..keys.len())
        .filter(|g| sizes(&assignment, *g) <= 2 && readings.len() >= 20)
        .collect();
    for a in assignment.iter_mut() {
        if small.contains(a) {
            *a = usize::MAX;
        }
    }
    let centres = centroids(&assignment);
    for (i, r) in readings.iter().enumerate() {
        if assignment[i] != usize::MAX {
            continue;
        }
        let v = vector(r);
        let best = (0..centres.len())
            .filter(|g| !small.contains(g))
            .map(|g| (cosine(&v, &centres[g]), g))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        assignment[i] = match best {
            Some((score, g)) if score >= 0.2 => g,
            _ => {
                // Something new: a group keyed by what it names, shared with others naming
                // the same.
                let key = (r.part, r.symptom.or(Some("other")));
                keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                    keys.push(key);
                    keys.len() - 1
                })
            }
        };
    }
    // Renumber densely in order of first appearance.
    let mut renumber: HashMap<usize, usize> = HashMap::new();
    assignment
        .iter()
        .map(|g| {
            let next = renumber.len();
            *renumber.entry(*g).or_insert(next)
        })
        .collect()
}

/// Summaries of the recurring problems in `items`, largest first; `previous` is the window
/// before, for the trend.
pub fn summarise(
    items: &[RedactedItem],
    previous: &[RedactedItem],
    max_quotes: usize,
) -> Vec<ProblemSummary> {
    let readings: Vec<Reading> = items.iter().map(|i| read(&i.text)).collect();
    let groups = cluster(&readings);
    let n_groups = groups.iter().max().map_or(0, |m| m + 1);
    let previous_readings: Vec<Reading> = previous.iter().map(|i| read(&i.text)).collect();
    let surface = surface_forms(items.iter().map(|i| i.text.as_str()));

    // c-TF-IDF: term frequency within the group, against how many groups use the term.
    let mut group_terms: Vec<HashMap<&str, f32>> = vec![HashMap::new(); n_groups];
    for (r, g) in readings.iter().zip(&groups) {
        for t in &r.terms {
            *group_terms[*g].entry(t.as_str()).or_insert(0.0) += 1.0;
        }
    }
    let mut spread: HashMap<&str, usize> = HashMap::new();
    for terms in &group_terms {
        for t in terms.keys() {
            *spread.entry(*t).or_insert(0) += 1;
        }
    }

    let mut out = Vec::new();
    for (g, terms) in group_terms.iter().enumerate() {
        let members: Vec<usize> = (0..items.len()).filter(|i| groups[*i] == g).collect();
        let total: f32 = terms.values().sum();
        let mut scored: Vec<(&str, f32)> = terms
            .iter()
            .map(|(t, f)| {
                let idf = (1.0 + n_groups as f32 / spread[t] as f32).ln();
                (*t, f / total.max(1.0) * idf)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        // The group's part and symptom: the most common among its members.
        let common = |f: &dyn Fn(&Reading) -> Option<&'static str>| {
            let mut count: BTreeMap<&str, usize> = BTreeMap::new();
            for &i in &members {
                if let Some(x) = f(&readings[i]) {
                    *count.entry(x).or_insert(0) += 1;
                }
            }
            count.into_iter().max_by_key(|(_, n)| *n).map(|(k, _)| k)
        };
        let part = common(&|r: &Reading| r.part);
        let symptom = common(&|r: &Reading| r.symptom);
        let zh = members
            .iter()
            .filter(|&&i| items[i].locale.starts_with("zh"))
            .count()
            * 2
            > members.len();
        let label = label(part, symptom, zh);
        let keywords: Vec<String> = scored
            .iter()
            .map(|(t, _)| match surface.get(*t) {
                // A stem reads as the word people wrote most ("freez" → "freezes").
                Some(word) => word.clone(),
                None => display_term(t, zh),
            })
            .filter(|k| !k.is_empty())
            .fold(Vec::new(), |mut acc, k| {
                if !acc.contains(&k) {
                    acc.push(k);
                }
                acc
            })
            .into_iter()
            .take(6)
            .collect();
        let previous_count = previous_readings
            .iter()
            .filter(|r| r.part.is_some() && r.part == part && r.symptom == symptom)
            .count() as u32;
        let count = members.len() as u32;
        let trend = if previous.is_empty() || previous_count == 0 {
            Trend::New
        } else if count as f32 > previous_count as f32 * 1.25 {
            Trend::Rising
        } else if (count as f32) < previous_count as f32 * 0.8 {
            Trend::Falling
        } else {
            Trend::Steady
        };
        let mut channels: Vec<i32> = members.iter().map(|&i| items[i].channel).collect();
        channels.sort_unstable();
        channels.dedup();
        let sentiment =
            members.iter().map(|&i| readings[i].sentiment).sum::<f32>() / count.max(1) as f32;
        let severity = severity(
            part,
            &members
                .iter()
                .map(|&i| items[i].text.as_str())
                .collect::<Vec<_>>(),
            count,
            sentiment,
        );
        // Quotes: the members closest to the group's centre, shortest first among equals.
        let mut centre: HashMap<String, f32> = HashMap::new();
        for &i in &members {
            for (k, v) in vector(&readings[i]) {
                *centre.entry(k).or_insert(0.0) += v;
            }
        }
        let mut ranked: Vec<(f32, usize)> = members
            .iter()
            .map(|&i| (cosine(&vector(&readings[i]), &centre), i))
            .collect();
        ranked.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(items[a.1].text.len().cmp(&items[b.1].text.len()))
        });
        let mut quotes: Vec<String> = Vec::new();
        for (_, i) in ranked {
            let text = items[i].text.clone();
            if !quotes.contains(&text) {
                quotes.push(text);
            }
            if quotes.len() >= max_quotes {
                break;
            }
        }
        out.push(ProblemSummary {
            label,
            keywords,
            count,
            trend: trend as i32,
            channels,
            sentiment,
            severity: severity as i32,
            quotes,
            improvement: improvement(part, symptom, zh),
            previous_count,
        });
    }
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.label.cmp(&b.label)));
    out
}

fn part_name(id: &str, zh: bool) -> &'static str {
    PARTS
        .iter()
        .find(|p| p.id == id)
        .map_or("", |p| if zh { p.zh } else { p.en })
}

fn symptom_name(id: &str, zh: bool) -> &'static str {
    SYMPTOMS
        .iter()
        .find(|s| s.id == id)
        .map_or("", |s| if zh { s.zh } else { s.en })
}

fn label(part: Option<&str>, symptom: Option<&str>, zh: bool) -> String {
    match (part, symptom) {
        (Some(p), Some(s)) if zh => format!("{}{}", part_name(p, true), symptom_name(s, true)),
        (Some(p), Some(s)) => format!("{} {}", part_name(p, false), symptom_name(s, false)),
        (Some(p), None) => part_name(p, zh).to_string() + if zh { "问题" } else { " issues" },
        (None, Some(s)) => symptom_name(s, zh).to_string(),
        (None, None) => (if zh { "其他反馈" } else { "other feedback" }).to_string(),
    }
}

fn display_term(term: &str, zh: bool) -> String {
    if let Some(p) = term.strip_prefix("part:") {
        return part_name(p, zh).to_string();
    }
    if let Some(s) = term.strip_prefix("symptom:") {
        return symptom_name(s, zh).to_string();
    }
    term.to_string()
}

fn severity(part: Option<&str>, texts: &[&str], count: u32, sentiment: f32) -> Severity {
    if texts
        .iter()
        .any(|t| CRITICAL_WORDS.iter().any(|w| normalise(t).contains(w)))
    {
        return Severity::Critical;
    }
    if part.is_some_and(|p| SAFETY_PARTS.contains(&p)) {
        return Severity::High;
    }
    if count >= 20 || sentiment < -0.6 {
        Severity::Medium
    } else {
        Severity::Low
    }
}

fn improvement(part: Option<&str>, symptom: Option<&str>, zh: bool) -> String {
    let (z, e): (&str, &str) = match (part.unwrap_or(""), symptom.unwrap_or("")) {
        ("screen", _) => (
            "优化车机系统性能：排查卡顿场景，减少后台任务，必要时提升硬件配置",
            "Profile the head unit's slow paths, trim background work and raise the UI frame budget",
        ),
        ("voice", _) => (
            "扩充语音识别的方言和口音数据，增加离线识别与纠错确认",
            "Extend speech recognition data for accents and dialects; confirm uncertain commands",
        ),
        ("navigation", _) => (
            "更新地图数据，改进定位融合与路线规划，提前播报转向",
            "Refresh map data, improve positioning fusion and route planning, announce turns earlier",
        ),
        ("bluetooth", _) => (
            "修复蓝牙重连逻辑，扩大手机兼容性测试",
            "Fix Bluetooth reconnection and widen phone compatibility testing",
        ),
        ("charging", _) => (
            "与充电运营商联调，改进充电握手与中断后自动恢复",
            "Test charger handshakes with operators and resume charging after interruptions",
        ),
        ("range", _) => (
            "校准续航估算，冬季提供电池预热与能耗建议",
            "Calibrate the range estimate; offer battery preconditioning and efficiency tips in winter",
        ),
        ("climate", "smell") => (
            "提醒更换空调滤芯，增加出风口自干燥功能",
            "Remind owners to replace the cabin filter; add an evaporator dry-out after use",
        ),
        ("climate", _) => (
            "检查出风口与压缩机降噪，优化风量曲线",
            "Dampen vents and compressor noise; retune the fan curve",
        ),
        ("seat", _) => (
            "改进座椅支撑与软硬度，检查座椅加热功率",
            "Improve seat support and padding; check seat heater output",
        ),
        ("software_update", _) => (
            "提高OTA成功率：断点续传、安装前检查、失败自动回滚",
            "Make OTA robust: resumable downloads, pre-install checks, automatic rollback",
        ),
        ("app", _) => (
            "提升车云连接稳定性，缩短APP状态刷新时间",
            "Stabilise the car-cloud link and shorten the app's status refresh",
        ),
        ("brakes", _) => (
            "尽快安排刹车系统检查，确认异响来源",
            "Inspect the brake system promptly and find the source of the noise",
        ),
        ("cabin_noise", _) => (
            "检查车窗与后视镜密封，改进高速风噪",
            "Check window and mirror seals; reduce wind noise at speed",
        ),
        ("camera", _) => (
            "改进摄像头夜间成像与画面延迟，检查镜头清洁",
            "Improve camera low-light imaging and latency; check lens cleaning",
        ),
        _ => (
            "人工复核这些反馈，确定是否为新问题",
            "Review these items by hand to see whether they are a new problem",
        ),
    };
    (if zh { z } else { e }).to_string()
}

/// Purity and adjusted Rand index of `predicted` against `truth` labels.
pub fn clustering_quality(predicted: &[usize], truth: &[&str]) -> (f64, f64) {
    let n = predicted.len();
    let mut table: HashMap<(usize, &str), usize> = HashMap::new();
    for (p, t) in predicted.iter().zip(truth) {
        *table.entry((*p, *t)).or_insert(0) += 1;
    }
    let mut by_cluster: HashMap<usize, usize> = HashMap::new();
    for ((p, _), c) in &table {
        let best = by_cluster.entry(*p).or_insert(0);
        *best = (*best).max(*c);
    }
    let purity = by_cluster.values().sum::<usize>() as f64 / n.max(1) as f64;
    let choose2 = |x: usize| (x * x.saturating_sub(1)) as f64 / 2.0;
    let sum_ij: f64 = table.values().map(|c| choose2(*c)).sum();
    let mut a: HashMap<usize, usize> = HashMap::new();
    let mut b: HashMap<&str, usize> = HashMap::new();
    for ((p, t), c) in &table {
        *a.entry(*p).or_insert(0) += c;
        *b.entry(*t).or_insert(0) += c;
    }
    let sum_a: f64 = a.values().map(|c| choose2(*c)).sum();
    let sum_b: f64 = b.values().map(|c| choose2(*c)).sum();
    let expected = sum_a * sum_b / choose2(n).max(1.0);
    let max = (sum_a + sum_b) / 2.0;
    let ari = if (max - expected).abs() < f64::EPSILON {
        1.0
    } else {
        (sum_ij - expected) / (max - expected)
    };
    (purity, ari)
}

/// The channel enum for a proto value, for display.
pub fn channel_name(value: i32) -> &'static str {
    match Channel::try_from(value).unwrap_or(Channel::Unspecified) {
        Channel::Voice => "voice",
        Channel::Hmi => "hmi",
        Channel::App => "app",
        Channel::Dealer => "dealer",
        Channel::CallCenter => "call-center",
        Channel::Unspecified => "unspecified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_problem_in_different_words_reads_the_same() {
        let a = read("车机卡顿");
        let b = read("屏幕反应慢");
        let c = read("the screen lags");
        assert_eq!((a.part, a.symptom), (Some("screen"), Some("lag")));
        assert_eq!((b.part, b.symptom), (a.part, a.symptom));
        assert_eq!((c.part, c.symptom), (a.part, a.symptom));
        let d = read("the AC smells bad");
        assert_eq!((d.part, d.symptom), (Some("climate"), Some("smell")));
    }

    #[test]
    fn keywords_read_as_words_people_wrote() {
        let items: Vec<RedactedItem> = [
            "the wipers squeak in the rain",
            "wipers squeaking loudly",
            "雨刮器异响，雨刮器很吵",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| RedactedItem {
            id: i.to_string(),
            channel: 2,
            time_unix_ms: 0,
            text: t.to_string(),
            locale: if t.is_ascii() { "en" } else { "zh" }.into(),
            rating: None,
        })
        .collect();
        let keywords: Vec<String> = summarise(&items, &[], 2)
            .into_iter()
            .flat_map(|p| p.keywords)
            .collect();
        assert!(keywords.iter().any(|k| k == "wipers"), "{keywords:?}");
        assert!(
            !keywords.iter().any(|k| k == "wiper"),
            "a stem leaked: {keywords:?}"
        );
        assert!(
            keywords.iter().any(|k| k == "雨刮器"),
            "jieba keeps the word whole: {keywords:?}"
        );
    }

    #[test]
    fn quality_measures_are_right_on_known_cases() {
        let (purity, ari) = clustering_quality(&[0, 0, 1, 1], &["a", "a", "b", "b"]);
        assert_eq!((purity, ari), (1.0, 1.0));
        let (purity, _) = clustering_quality(&[0, 0, 0, 0], &["a", "a", "b", "b"]);
        assert_eq!(purity, 0.5);
    }
}
