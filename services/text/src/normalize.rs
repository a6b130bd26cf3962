//! Speech-recogniser output made regular: full-width forms folded, case folded, fillers
//! (嗯, 那个, 呃, uh, um ...) and punctuation dropped, spaces collapsed.

/// Fillers an ASR passes through; removed only as whole words (latin) or as the listed
/// Chinese forms.
const ZH_FILLERS: &[&str] = &[
    "嗯嗯",
    "嗯",
    "呃",
    "额",
    "那个那个",
    "那个",
    "就是说",
    "这个这个",
    "哎",
    "唉",
    "诶",
    "呐",
];
const EN_FILLERS: &[&str] = &["uh", "uhh", "um", "umm", "erm", "er", "hmm", "mm", "ah"];
const EN_FILLER_PHRASES: &[&str] = &["you know", "i mean", "kind of", "sort of"];
const WAKE_WORDS: &[&str] = &["hey cabin", "ok cabin", "hi cabin", "你好小卡", "小卡小卡"];

use crate::script::is_han as is_cjk;

/// Folds full-width ASCII and the ideographic space to their plain forms.
fn fold_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() && c != '\'' && c != '-'
        || matches!(
            c,
            '，' | '。'
                | '！'
                | '？'
                | '、'
                | '；'
                | '：'
                | '“'
                | '”'
                | '‘'
                | '’'
                | '…'
                | '—'
                | '《'
                | '》'
                | '（'
                | '）'
                | '【'
                | '】'
                | '～'
                | '·'
        )
}

/// The utterance as the intent rules read it.
pub fn normalize(utterance: &str) -> String {
    let folded: String = utterance
        .chars()
        .map(fold_width)
        .map(|c| {
            if is_punctuation(c) || c.is_control() {
                ' '
            } else {
                c
            }
        })
        .flat_map(char::to_lowercase)
        .collect();
    // Space between Chinese and latin runs, so "换个starry night壁纸" splits into words.
    let mut spaced = String::with_capacity(folded.len());
    let mut prev: Option<char> = None;
    for c in folded.chars() {
        if let Some(p) = prev
            && !p.is_whitespace()
            && !c.is_whitespace()
            && is_cjk(p) != is_cjk(c)
        {
            spaced.push(' ');
        }
        spaced.push(c);
        prev = Some(c);
    }
    let mut text = format!(" {spaced} ");
    for phrase in WAKE_WORDS.iter().chain(EN_FILLER_PHRASES) {
        text = text.replace(&format!(" {phrase} "), " ");
    }
    for filler in ZH_FILLERS {
        text = text.replace(filler, " ");
    }
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !EN_FILLERS.contains(w))
        .collect();
    // Chinese runs lose the spaces the ASR or the folding put inside them.
    let mut out = String::new();
    for w in words {
        if let (Some(last), Some(first)) = (out.chars().last(), w.chars().next())
            && !(is_cjk(last) && is_cjk(first))
        {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// Whether `word` occurs in normalised `text`: Chinese anywhere, Latin on word boundaries
/// ("car" is not in "carplay").
pub fn mentions(text: &str, word: &str) -> bool {
    if word.chars().any(is_cjk) {
        return text.contains(word);
    }
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asr_output_is_regular() {
        assert_eq!(
            normalize("嗯，那个，换一张雪山的壁纸吧！"),
            "换一张雪山的壁纸吧"
        );
        assert_eq!(
            normalize("Uh, MAKE the wallpaper, um, a starry night?"),
            "make the wallpaper a starry night"
        );
        assert_eq!(
            normalize("帮我换个starry night壁纸"),
            "帮我换个 starry night 壁纸"
        );
        assert_eq!(normalize("ＨＥＬＬＯ　world"), "hello world");
        assert_eq!(normalize("hey cabin you know I'm tired"), "i'm tired");
        assert_eq!(normalize("  "), "");
        assert!(mentions("open carplay", "carplay") && !mentions("open carplay", "car"));
        assert!(mentions("换个壁纸吧", "壁纸"));
    }
}
