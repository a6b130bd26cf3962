//! Personal data out before anything is stored: phone numbers, e-mails, resident ID numbers,
//! licence plates, VINs, bank cards, IP addresses and (where detectable) names become typed
//! placeholders — `[PHONE]`, `[EMAIL]`, `[ID]`, `[PLATE]`, `[VIN]`, `[CARD]`, `[IP]`, `[NAME]`.
//!
//! Checksum-backed types are validated (ID: ISO 7064 MOD 11-2; VIN: ISO 3779 check digit;
//! cards: Luhn), so order numbers and odometer readings survive. Candidates are found by
//! patterns that tolerate the separators people type (spaces, dashes, dots); overlaps go to
//! the earliest, then longest, match.

use std::sync::LazyLock;

use regex::Regex;

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Phone,
    Email,
    Id,
    Plate,
    Vin,
    Card,
    Ip,
    Name,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Phone,
        Kind::Email,
        Kind::Id,
        Kind::Plate,
        Kind::Vin,
        Kind::Card,
        Kind::Ip,
        Kind::Name,
    ];

    pub fn placeholder(self) -> &'static str {
        match self {
            Kind::Phone => "[PHONE]",
            Kind::Email => "[EMAIL]",
            Kind::Id => "[ID]",
            Kind::Plate => "[PLATE]",
            Kind::Vin => "[VIN]",
            Kind::Card => "[CARD]",
            Kind::Ip => "[IP]",
            Kind::Name => "[NAME]",
        }
    }

    pub fn from_placeholder(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.placeholder() == text)
    }
}

/// One piece of personal data found in a text (byte range of the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// The text with every finding replaced, and what was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Redacted {
    pub text: String,
    pub findings: Vec<Finding>,
}

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("redaction patterns are valid")
}

// Digits not glued to other digits or ASCII letters on either side.
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}"));
static ID_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| re(r"\d{6}[ ]?\d{8}[ ]?\d{3}[\dXx]"));
static VIN_CANDIDATE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)[A-HJ-NPR-Z0-9]{17}"));
static CARD_CANDIDATE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\d{4}(?:[ \-]?\d{4}){2}(?:[ \-]?\d{1,4}){1,2}"));
static MOBILE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?:(?:\+|00)?86[ \-]?)?1[3-9]\d(?:[ \-]?\d{4}[ \-]?\d{4}|\d{8})"));
static LANDLINE: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?:\(0\d{2,3}\)|0\d{2,3})[ \-]?\d{7,8}(?:[ \-]?(?:转|ext\.?|x)\d{1,5})?")
});
static INTL_PHONE: LazyLock<Regex> =
    LazyLock::new(|| re(r"\+\d{1,3}[ \-]?(?:\(\d{1,4}\)[ \-]?)?\d{2,4}(?:[ \-]?\d{2,4}){2,3}"));
static PLATE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"[京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼][A-HJ-NP-Za-hj-np-z][ ·\-]?(?:[DFdf][A-HJ-NP-Za-hj-np-z0-9]\d{4}|\d{5}[DFdf]|[A-HJ-NP-Za-hj-np-z0-9]{4}[A-HJ-NP-Za-hj-np-z0-9挂学警港澳])",
    )
});
static IPV4: LazyLock<Regex> = LazyLock::new(|| re(r"\d{1,3}(?:\.\d{1,3}){3}"));
static IPV6: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}"));
static NAME_EN: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?:\b(?:[Mm]y name is|[Tt]his is|I am|I'm|[Cc]all me)\s+|\b(?:Mr|Mrs|Ms|Miss|Dr)\.?\s+)([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)",
    )
});
static NAME_ZH_INTRO: LazyLock<Regex> = LazyLock::new(|| {
    // Surname + one or two characters, as short as lets a delimiter or a verb follow.
    re(&format!(
        "(?:我叫|我的名字是|车主|联系人)[：: ]?([{SURNAMES}]\\p{{Han}}{{1,2}}?)(?:[，,。.！!？?、；;\\s]|反映|说|投诉|表示|的|来电|先生|女士|$)"
    ))
});
static NAME_ZH_TITLE: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        "([{SURNAMES}][\\p{{Han}}]{{0,2}}?)(?:先生|女士|小姐|师傅|经理|老师)"
    ))
});

/// Common Chinese surnames: a name before a title must start with one.
const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤欧";

/// Words after an English introduction that are not names ("I'm Happy", "This is Terrible").
const NOT_NAMES: &[&str] = &[
    "Not",
    "So",
    "Very",
    "Really",
    "Happy",
    "Sad",
    "Sorry",
    "Tired",
    "Glad",
    "Just",
    "Still",
    "The",
    "A",
    "An",
    "It",
    "That",
    "This",
    "Driving",
    "Going",
    "Having",
    "Trying",
    "Using",
    "Terrible",
    "Great",
    "Good",
    "Bad",
    "Annoyed",
    "Angry",
    "Disappointed",
    "Satisfied",
    "Unhappy",
    "Frustrated",
    "Calling",
    "Writing",
    "Here",
    "Back",
    "Done",
    "Fine",
    "Okay",
];

fn digits(s: &str) -> Vec<u32> {
    s.chars().filter_map(|c| c.to_digit(10)).collect()
}

/// Mainland resident ID: 17 digits and a MOD 11-2 check character.
pub fn valid_resident_id(candidate: &str) -> bool {
    let compact: Vec<char> = candidate.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.len() != 18 || !compact[..17].iter().all(|c| c.is_ascii_digit()) {
        return false;
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = compact[..17]
        .iter()
        .zip(WEIGHTS)
        .map(|(c, w)| c.to_digit(10).unwrap_or(0) * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    compact[17].to_ascii_uppercase() == check
}

/// ISO 3779 VIN with the check digit in position 9 (used by North America and China).
pub fn valid_vin(candidate: &str) -> bool {
    let vin: Vec<char> = candidate.chars().map(|c| c.to_ascii_uppercase()).collect();
    if vin.len() != 17 {
        return false;
    }
    // Must mix letters and digits: 17 digits is a number, 17 letters a word.
    if vin.iter().all(|c| c.is_ascii_digit()) || vin.iter().all(|c| c.is_ascii_alphabetic()) {
        return false;
    }
    fn value(c: char) -> Option<u32> {
        Some(match c {
            '0'..='9' => c.to_digit(10)?,
            'A' | 'J' => 1,
            'B' | 'K' | 'S' => 2,
            'C' | 'L' | 'T' => 3,
            'D' | 'M' | 'U' => 4,
            'E' | 'N' | 'V' => 5,
            'F' | 'W' => 6,
            'G' | 'P' | 'X' => 7,
            'H' | 'Y' => 8,
            'R' | 'Z' => 9,
            _ => return None,
        })
    }
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let mut sum = 0;
    for (c, w) in vin.iter().zip(WEIGHTS) {
        match value(*c) {
            Some(v) => sum += v * w,
            None => return false,
        }
    }
    let check = match sum % 11 {
        10 => 'X',
        d => char::from_digit(d, 10).unwrap_or('?'),
    };
    vin[8] == check
}

/// A card number: 13-19 digits from a card network's number range (so order numbers and
/// dates rarely qualify) passing Luhn.
pub fn valid_card(candidate: &str) -> bool {
    let d = digits(candidate);
    if !(13..=19).contains(&d.len()) {
        return false;
    }
    let prefix4 = d[..4].iter().fold(0, |acc, v| acc * 10 + v);
    // Amex/JCB/Diners 3, Visa 4, Mastercard 51-55 and 2221-2720, UnionPay/Discover/Maestro 6.
    let issued = matches!(d[0], 3..=6) || (2221..=2720).contains(&prefix4);
    if !issued {
        return false;
    }
    let sum: u32 = d
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &v)| {
            if i % 2 == 1 {
                let x = v * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                v
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn boundary_ok(text: &str, start: usize, end: usize) -> bool {
    let before = text[..start].chars().next_back();
    let after = text[end..].chars().next();
    let glued = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !glued(before) && !glued(after)
}

/// Finds personal data in `text`.
pub fn find(text: &str) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    let mut push = |kind: Kind, start: usize, end: usize| found.push(Finding { kind, start, end });

    for m in EMAIL.find_iter(text) {
        push(Kind::Email, m.start(), m.end());
    }
    for m in ID_CANDIDATE.find_iter(text) {
        if boundary_ok(text, m.start(), m.end()) && valid_resident_id(m.as_str()) {
            push(Kind::Id, m.start(), m.end());
        }
    }
    for m in VIN_CANDIDATE.find_iter(text) {
        if boundary_ok(text, m.start(), m.end()) && valid_vin(m.as_str()) {
            push(Kind::Vin, m.start(), m.end());
        }
    }
    for m in CARD_CANDIDATE.find_iter(text) {
        let (s, e) = trim_separators(text, m.start(), m.end());
        if boundary_ok(text, s, e) && valid_card(&text[s..e]) {
            push(Kind::Card, s, e);
        }
    }
    for pattern in [&*MOBILE, &*LANDLINE, &*INTL_PHONE] {
        for m in pattern.find_iter(text) {
            let start = m.start();
            // "+86" and "(0755)" begin with a non-digit: only the digits need a boundary.
            let lead = text[start..]
                .find(|c: char| c.is_ascii_digit())
                .map_or(start, |i| start + i);
            if boundary_ok(text, lead, m.end()) && digits(m.as_str()).len() >= 7 {
                push(Kind::Phone, start, m.end());
            }
        }
    }
    for m in PLATE.find_iter(text) {
        if text[m.end()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphanumeric())
        {
            push(Kind::Plate, m.start(), m.end());
        }
    }
    for m in IPV4.find_iter(text) {
        if boundary_ok(text, m.start(), m.end())
            && !text[m.end()..].starts_with('.')
            && m.as_str().parse::<std::net::Ipv4Addr>().is_ok()
        {
            push(Kind::Ip, m.start(), m.end());
        }
    }
    for m in IPV6.find_iter(text) {
        let s = m.as_str();
        if s.matches(':').count() >= 2
            && s.chars().filter(|c| c.is_ascii_hexdigit()).count() >= 4
            && s.parse::<std::net::Ipv6Addr>().is_ok()
        {
            push(Kind::Ip, m.start(), m.end());
        }
    }
    for caps in NAME_EN.captures_iter(text) {
        if let Some(name) = caps.get(1) {
            let first = name.as_str().split_whitespace().next().unwrap_or("");
            if !NOT_NAMES.contains(&first) {
                push(Kind::Name, name.start(), name.end());
            }
        }
    }
    for pattern in [&*NAME_ZH_INTRO, &*NAME_ZH_TITLE] {
        for caps in pattern.captures_iter(text) {
            if let Some(name) = caps.get(1) {
                push(Kind::Name, name.start(), name.end());
            }
        }
    }

    // Earliest first, then longest; drop anything overlapping a kept finding.
    found.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut kept: Vec<Finding> = Vec::new();
    for f in found {
        if kept.last().is_none_or(|k| f.start >= k.end) {
            kept.push(f);
        }
    }
    kept
}

fn trim_separators(text: &str, mut start: usize, mut end: usize) -> (usize, usize) {
    let bytes = text.as_bytes();
    while start < end && matches!(bytes[start], b' ' | b'-') {
        start += 1;
    }
    while end > start && matches!(bytes[end - 1], b' ' | b'-') {
        end -= 1;
    }
    (start, end)
}

/// `text` with personal data replaced by placeholders.
pub fn redact(text: &str) -> Redacted {
    let findings = find(text);
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in &findings {
        out.push_str(&text[at..f.start]);
        out.push_str(f.kind.placeholder());
        at = f.end;
    }
    out.push_str(&text[at..]);
    Redacted {
        text: out,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(valid_resident_id("11010519491231002X"));
        assert!(!valid_resident_id("110105194912310021"));
        assert!(valid_vin("1M8GDM9AXKP042788"));
        assert!(!valid_vin("1M8GDM9A1KP042788"));
        assert!(valid_card("4111 1111 1111 1111"));
        assert!(!valid_card("4111 1111 1111 1112"));
    }

    #[test]
    fn typical_sentences() {
        let cases = [
            (
                "我的手机号是13812345678，请回电",
                "我的手机号是[PHONE]，请回电",
            ),
            (
                "call me on +86 138 1234 5678 please",
                "call me on [PHONE] please",
            ),
            ("座机0755-86001234", "座机[PHONE]"),
            ("mail zhang.wei@example.com now", "mail [EMAIL] now"),
            ("身份证11010519491231002X已登记", "身份证[ID]已登记"),
            ("车牌粤B12345停在门口", "车牌[PLATE]停在门口"),
            ("新能源车牌粤BD12345", "新能源车牌[PLATE]"),
            ("VIN 1M8GDM9AXKP042788 has a fault", "VIN [VIN] has a fault"),
            (
                "card 4111-1111-1111-1111 was charged",
                "card [CARD] was charged",
            ),
            ("server 192.168.1.20 down", "server [IP] down"),
            (
                "My name is John Smith and the screen lags",
                "My name is [NAME] and the screen lags",
            ),
            ("我叫王小明，车机很卡", "我叫[NAME]，车机很卡"),
            ("张先生反映导航不准", "[NAME]先生反映导航不准"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input).text, want, "{input}");
        }
    }

    #[test]
    fn numbers_that_are_not_personal_survive() {
        for text in [
            "odometer at 123456 km",
            "order 20240601123456 arrived",
            "version v2.3.1 is slow",
            "I'm very happy with the seats",
            "the price was 2999 yuan",
            "3 out of 5 stars",
        ] {
            assert_eq!(redact(text).text, text, "{text}");
        }
    }
}
