//! Which script a character is in and which language a text or locale is.
//!
//! Architecture invariant: character tables only; the one place cabin decides what counts as
//! Chinese.

/// A Han character: the unified block, extensions A to F, and both compatibility blocks.
pub fn is_han(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF        // CJK Unified Ideographs
        | 0x3400..=0x4DBF      // Extension A
        | 0x20000..=0x2EBEF    // Extensions B to F
        | 0x30000..=0x3134F    // Extension G
        | 0xF900..=0xFAFF      // Compatibility Ideographs
        | 0x2F800..=0x2FA1F    // Compatibility Ideographs Supplement
    )
}

/// `zh` when the text is mostly Chinese (no fewer Han characters than Latin words, and at
/// least one), else `en`.
pub fn language_of(text: &str) -> &'static str {
    let han = text.chars().filter(|c| is_han(*c)).count();
    let latin_words = text
        .split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() > 1)
        .count();
    if han >= 1 && han >= latin_words {
        "zh"
    } else {
        "en"
    }
}

/// `zh-CN`, `zh_TW`, `zh-Hans`, `en-US`, `en` → `zh`/`en`; other languages are refused.
pub fn language_of_locale(locale: &str) -> Result<&'static str, String> {
    let lower = locale.to_ascii_lowercase();
    match lower.split(['-', '_']).next().unwrap_or("") {
        "zh" => Ok("zh"),
        "en" => Ok("en"),
        _ => Err(format!(
            "locale {locale:?} is not supported; use zh-* or en-*"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn han_includes_extensions_and_compatibility_blocks() {
        for c in ['车', '㐀', '\u{20000}', '\u{F900}', '\u{2F800}'] {
            assert!(is_han(c), "{c:?}");
        }
        for c in ['a', 'ア', '한', '，', '1'] {
            assert!(!is_han(c), "{c:?}");
        }
    }

    #[test]
    fn language_follows_the_text_and_the_locale() {
        assert_eq!(language_of("换一张雪山的壁纸"), "zh");
        assert_eq!(language_of("帮我换个 starry night 壁纸"), "zh");
        assert_eq!(language_of("make it a starry night 好吗"), "en");
        assert_eq!(language_of("hello"), "en");
        assert_eq!(language_of_locale("zh_TW"), Ok("zh"));
        assert_eq!(language_of_locale("en-GB"), Ok("en"));
        assert!(language_of_locale("de-DE").is_err());
    }
}
