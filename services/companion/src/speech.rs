//! The driving policy: while the car moves a reply is short and made to be heard — no
//! markdown, lists, URLs, code or emoji; parked, the full reply (still cleaned of markup an
//! HMI would show raw).
//!
//! [`Shaper`] works on a stream: tokens go in, whole clean sentences come out, so what is
//! streamed and the final reply agree.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// Longest reply while moving, in characters (a Chinese character or a latin letter).
    pub moving_max_chars: usize,
    /// Longest reply above the high-speed threshold.
    pub high_speed_max_chars: usize,
    /// Longest reply when parked.
    pub parked_max_chars: usize,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            moving_max_chars: 120,
            high_speed_max_chars: 60,
            parked_max_chars: 1200,
        }
    }
}

/// Makes one piece of text fit to be spoken: markup, URLs and emoji removed, list markers
/// dropped, whitespace collapsed.
pub fn clean_for_speech(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_code = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code
            || trimmed.is_empty()
            || trimmed.chars().all(|c| "-*_=|#>".contains(c) || c == ' ')
        {
            continue;
        }
        let mut s = trimmed.trim_start_matches(['#', '>', ' ']);
        // Bullets and numbered items.
        if let Some(rest) = s
            .strip_prefix("- ")
            .or_else(|| s.strip_prefix("* "))
            .or_else(|| s.strip_prefix("• "))
        {
            s = rest;
        } else {
            let digits = s.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 && digits < 3 {
                let rest = &s[digits..];
                if let Some(r) = rest
                    .strip_prefix(". ")
                    .or_else(|| rest.strip_prefix(") "))
                    .or_else(|| rest.strip_prefix('、'))
                {
                    s = r;
                }
            }
        }
        let unlinked = strip_link_syntax(s);
        let mut words: Vec<String> = Vec::new();
        for word in unlinked.split(' ') {
            let lower = word.to_ascii_lowercase();
            if lower.contains("http://") || lower.contains("https://") || lower.starts_with("www.")
            {
                continue;
            }
            // An item number inside a line ("... you can do. 2. Drink water").
            let digits = word.chars().take_while(char::is_ascii_digit).count();
            let item_number =
                (1..=2).contains(&digits) && word.len() == digits + 1 && word.ends_with(['.', ')']);
            let starts_sentence = words
                .last()
                .is_none_or(|w: &String| w.ends_with(is_sentence_end) || w.ends_with(':'));
            if item_number && starts_sentence {
                continue;
            }
            words.push(word.to_string());
        }
        let line: String = words
            .join(" ")
            .chars()
            .filter(|c| !matches!(*c, '*' | '`' | '_' | '#' | '|' | '~') && !is_emoji(*c))
            .collect();
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !out.is_empty() {
            let last = out.chars().last().unwrap_or(' ');
            if !is_sentence_end(last) {
                out.push(if line.chars().next().is_some_and(cabin_text::is_han) {
                    '，'
                } else {
                    ','
                });
            }
            if !line.chars().next().is_some_and(cabin_text::is_han) {
                out.push(' ');
            }
        }
        out.push_str(line);
    }
    let collapsed: Vec<&str> = out.split_whitespace().collect();
    collapsed.join(" ")
}

/// `[text](target)` → `text`.
fn strip_link_syntax(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn is_emoji(c: char) -> bool {
    matches!(c as u32, 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0xFE0F | 0x200D)
}

pub fn is_sentence_end(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | '。' | '！' | '？' | '…' | '~')
}

/// Cuts `text` to at most `max` characters at the last sentence end that fits (or a clause
/// end, or a word boundary), never mid-word.
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    let cut = head
        .char_indices()
        .filter(|(_, c)| is_sentence_end(*c))
        .map(|(i, c)| i + c.len_utf8())
        .next_back()
        .filter(|&i| i >= head.len() / 3)
        .or_else(|| {
            head.char_indices()
                .filter(|(_, c)| matches!(c, ',' | '，' | ';' | '；' | '、'))
                .map(|(i, _)| i)
                .next_back()
                .filter(|&i| i >= head.len() / 3)
        })
        .or_else(|| head.rfind(' ').filter(|&i| i > 0));
    let mut out = match cut {
        Some(i) => head[..i].trim_end().to_string(),
        None => head,
    };
    if let Some(last) = out.chars().last()
        && !is_sentence_end(last)
    {
        let cjk = out.chars().any(cabin_text::is_han);
        out = out
            .trim_end_matches([',', '，', ';', '；', '、'])
            .to_string();
        out.push(if cjk { '。' } else { '.' });
    }
    out
}

/// Streams a reply through the policy: `push` tokens, get back clean sentences that fit
/// the budget; `finish` flushes the rest. Once the budget is spent nothing more comes out.
pub struct Shaper {
    budget: usize,
    pending: String,
    emitted: String,
    full: bool,
}

impl Shaper {
    pub fn new(max_chars: usize) -> Self {
        Self {
            budget: max_chars,
            pending: String::new(),
            emitted: String::new(),
            full: false,
        }
    }

    pub fn push(&mut self, token: &str) -> Option<String> {
        if self.full {
            return None;
        }
        self.pending.push_str(token);
        let end = self
            .pending
            .char_indices()
            .filter(|(i, c)| {
                is_sentence_end(*c) && {
                    // "3.5" is no sentence end; a full stop is followed by space or CJK or newline.
                    let next = self.pending[i + c.len_utf8()..].chars().next();
                    *c != '.' || next.is_some_and(|n| n.is_whitespace())
                }
            })
            .map(|(i, c)| i + c.len_utf8())
            .next_back()
            .or_else(|| self.pending.rfind('\n'))?;
        let sentence: String = self.pending.drain(..end).collect();
        self.take(&sentence)
    }

    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.pending);
        self.take(&rest)
    }

    /// Everything streamed so far: the reply.
    pub fn text(&self) -> &str {
        &self.emitted
    }

    fn take(&mut self, raw: &str) -> Option<String> {
        if self.full {
            return None;
        }
        let mut clean = clean_for_speech(raw);
        if clean.is_empty() {
            return None;
        }
        // A line that ends without punctuation (a heading) still ends a sentence when spoken.
        if raw.ends_with('\n') && !clean.ends_with(is_sentence_end) {
            clean.push(if clean.chars().any(cabin_text::is_han) {
                '。'
            } else {
                '.'
            });
        }
        let sep = if self.emitted.is_empty()
            || clean.starts_with(|c: char| cabin_text::is_han(c) || is_sentence_end(c))
        {
            ""
        } else {
            " "
        };
        let used = self.emitted.chars().count() + sep.chars().count();
        let room = self.budget.saturating_sub(used);
        let piece = if clean.chars().count() <= room {
            clean
        } else {
            self.full = true;
            if !self.emitted.is_empty() && room < clean.chars().count() / 2 {
                return None;
            }
            let cut = fit(&clean, room.max(1));
            if cut.is_empty() {
                return None;
            }
            cut
        };
        let out = format!("{sep}{piece}");
        self.emitted.push_str(&out);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_urls_lists_and_emoji_go() {
        let text = "## Tips 🚗\n1. **Stretch** your legs.\n2. Drink `water`\n- see https://example.com/x\n[Rest areas](https://maps) are close.";
        assert_eq!(
            clean_for_speech(text),
            "Tips, Stretch your legs. Drink water, see, Rest areas are close."
        );
        assert_eq!(
            clean_for_speech("```\ncode\n```\n好的，我们出发吧！"),
            "好的，我们出发吧！"
        );
    }

    #[test]
    fn fit_cuts_at_sentence_ends() {
        let text = "This is the first sentence. This is a second one that is long.";
        assert_eq!(fit(text, 40), "This is the first sentence.");
        assert_eq!(
            fit("今天天气很好。我们去海边吧，那里风景很美。", 12),
            "今天天气很好。"
        );
        assert_eq!(fit("short", 40), "short");
        let cut = fit("a b c d e f g h i j k", 6);
        assert!(cut.chars().count() <= 6 && cut.ends_with('.'), "{cut}");
    }

    #[test]
    fn shaper_streams_whole_sentences_within_budget() {
        let mut s = Shaper::new(40);
        let mut out = String::new();
        for t in [
            "Hello",
            " there! How",
            " is the **drive**? It is 3.5",
            " hours to go. And more text that will not fit.",
        ] {
            if let Some(piece) = s.push(t) {
                out.push_str(&piece);
            }
        }
        if let Some(piece) = s.finish() {
            out.push_str(&piece);
        }
        assert_eq!(out, s.text());
        assert!(out.chars().count() <= 40, "{out}");
        assert!(out.starts_with("Hello there! How is the drive?"), "{out}");
        assert!(!out.contains('*'));
    }
}
