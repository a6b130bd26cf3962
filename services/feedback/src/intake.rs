//! What comes in: one submission (channel, text, metadata) checked and redacted into a
//! `RedactedItem`, or a whole export (JSON Lines or CSV, e.g. app reviews or service notes)
//! parsed line by line. Bad input is refused with a reason naming the line and field; the
//! text is redacted before it goes anywhere.

use cabin_proto::feedback::v1::{Channel, RedactedItem};

use crate::redact::redact;

/// Longest text accepted, in characters (a long service note fits; a pasted log does not).
pub const MAX_TEXT_CHARS: usize = 4000;
/// Largest export accepted in one import.
pub const MAX_IMPORT_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IntakeError {
    #[error("unknown channel {0:?}; channels: voice, hmi, app, dealer, call-center")]
    UnknownChannel(String),
    #[error("empty feedback text")]
    EmptyText,
    #[error("feedback text of {0} characters is over the {MAX_TEXT_CHARS}-character limit")]
    TextTooLong(usize),
    #[error("rating must be 1..=5, got {0}")]
    BadRating(i64),
    #[error("locale {0:?} is not a language tag like zh-CN or en")]
    BadLocale(String),
    #[error("line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("unknown import format {0:?}; formats: jsonl, csv")]
    UnknownFormat(String),
    #[error("export of {0} bytes is over the {MAX_IMPORT_BYTES}-byte limit")]
    ImportTooLarge(usize),
    #[error("the export is not UTF-8 text")]
    NotText,
}

pub fn parse_channel(name: &str) -> Result<Channel, IntakeError> {
    Ok(
        match name.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "voice" => Channel::Voice,
            "hmi" => Channel::Hmi,
            "app" => Channel::App,
            "dealer" => Channel::Dealer,
            "call-center" | "callcenter" | "call-centre" => Channel::CallCenter,
            _ => return Err(IntakeError::UnknownChannel(name.chars().take(40).collect())),
        },
    )
}

/// One piece of feedback as a caller gives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Submission {
    pub channel: String,
    pub text: String,
    pub rating: Option<i64>,
    pub locale: Option<String>,
    /// When the owner said it (Unix ms); defaults to now.
    pub time_unix_ms: Option<i64>,
}

fn check_locale(locale: &str) -> Result<(), IntakeError> {
    let ok = (2..=16).contains(&locale.len())
        && locale.split(['-', '_']).all(|part| {
            !part.is_empty() && part.len() <= 8 && part.chars().all(|c| c.is_ascii_alphanumeric())
        });
    if ok {
        Ok(())
    } else {
        Err(IntakeError::BadLocale(locale.chars().take(40).collect()))
    }
}

/// A guess at the language when the caller gave none.
fn guess_locale(text: &str) -> &'static str {
    cabin_text::language_of(text)
}

/// Checks and redacts a submission into the item that may be stored.
pub fn accept(sub: &Submission, id: String, now_unix_ms: i64) -> Result<RedactedItem, IntakeError> {
    let channel = parse_channel(&sub.channel)?;
    let text = sub.text.trim();
    if text.is_empty() {
        return Err(IntakeError::EmptyText);
    }
    let chars = text.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(IntakeError::TextTooLong(chars));
    }
    if let Some(r) = sub.rating
        && !(1..=5).contains(&r)
    {
        return Err(IntakeError::BadRating(r));
    }
    let locale = match &sub.locale {
        Some(l) => {
            check_locale(l)?;
            l.clone()
        }
        None => guess_locale(text).to_string(),
    };
    Ok(RedactedItem {
        id,
        channel: channel as i32,
        time_unix_ms: sub.time_unix_ms.unwrap_or(now_unix_ms),
        text: redact(text).text,
        locale,
        rating: sub.rating.map(|r| r as u32),
    })
}

/// Parses an export into submissions. `jsonl`: one object a line with `text` and optional
/// `channel`, `rating`, `locale`, `time` (Unix ms or RFC 3339). `csv`: a header row naming the
/// same columns. Rows without a channel take `default_channel`.
pub fn parse_export(
    bytes: &[u8],
    format: &str,
    default_channel: &str,
) -> Result<Vec<Submission>, IntakeError> {
    Ok(parse_export_with_ids(bytes, format, default_channel)?
        .into_iter()
        .map(|(_, sub)| sub)
        .collect())
}

/// `parse_export`, each submission with its row's `id` (the 1-based row number when the row
/// has none), for reports that must point back at the input.
pub fn parse_export_with_ids(
    bytes: &[u8],
    format: &str,
    default_channel: &str,
) -> Result<Vec<(String, Submission)>, IntakeError> {
    if bytes.len() > MAX_IMPORT_BYTES {
        return Err(IntakeError::ImportTooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| IntakeError::NotText)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let rows: Vec<(usize, Vec<(String, String)>)> = match format.to_ascii_lowercase().as_str() {
        "jsonl" | "ndjson" | "json-lines" => jsonl_rows(text)?,
        "csv" => csv_rows(text)?,
        other => return Err(IntakeError::UnknownFormat(other.chars().take(20).collect())),
    };
    let mut out = Vec::with_capacity(rows.len());
    for (row, (line, fields)) in rows.into_iter().enumerate() {
        let bad = |reason: String| IntakeError::BadLine { line, reason };
        let mut sub = Submission {
            channel: default_channel.to_string(),
            ..Submission::default()
        };
        let mut id = (row + 1).to_string();
        for (key, value) in fields {
            match key.trim().to_ascii_lowercase().as_str() {
                "id" if !value.trim().is_empty() => id = value.trim().to_string(),
                "text" | "content" | "review" | "comment" => sub.text = value,
                "channel" if !value.trim().is_empty() => sub.channel = value,
                "rating" | "stars" if !value.trim().is_empty() => {
                    sub.rating = Some(
                        value
                            .trim()
                            .parse()
                            .map_err(|_| bad(format!("rating {value:?} is not a number")))?,
                    )
                }
                "locale" | "lang" | "language" if !value.trim().is_empty() => {
                    sub.locale = Some(value.trim().to_string())
                }
                "time" | "date" | "timestamp" if !value.trim().is_empty() => {
                    sub.time_unix_ms = Some(parse_time(&value).ok_or_else(|| {
                        bad(format!("time {value:?} is neither Unix ms nor RFC 3339"))
                    })?)
                }
                _ => {}
            }
        }
        // Check now, so the whole import is refused before anything is stored.
        accept(&sub, String::new(), 0).map_err(|e| bad(e.to_string()))?;
        out.push((id, sub));
    }
    Ok(out)
}

fn parse_time(value: &str) -> Option<i64> {
    let v = value.trim();
    if let Ok(ms) = v.parse::<i64>() {
        return Some(ms);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.timestamp_millis())
}

type Rows = Vec<(usize, Vec<(String, String)>)>;

fn jsonl_rows(text: &str) -> Result<Rows, IntakeError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| IntakeError::BadLine {
                line: line_no,
                reason: format!("not JSON: {e}"),
            })?;
        let serde_json::Value::Object(map) = value else {
            return Err(IntakeError::BadLine {
                line: line_no,
                reason: "not a JSON object".into(),
            });
        };
        let fields = map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        rows.push((line_no, fields));
    }
    Ok(rows)
}

/// RFC 4180 records (quoted fields may hold commas, doubled quotes and line breaks), each with
/// the line it starts on; blank lines are skipped.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, IntakeError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut records = Vec::new();
    let mut last_start = (0usize, 1usize); // (byte, line) where the last record starts
    for record in reader.records() {
        let record = record.map_err(|e| IntakeError::BadLine {
            line: e.position().map_or(0, |p| p.line() as usize),
            reason: match e.kind() {
                csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
                _ => e.to_string(),
            },
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        last_start = (record.position().map_or(0, |p| p.byte() as usize), line);
        let fields: Vec<String> = record.iter().map(str::to_string).collect();
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        records.push((line, fields));
    }
    // The reader takes an unclosed quote to the end of the file as one field; an export cut
    // short is an error to name, not one long statement to import.
    if text.get(last_start.0..).is_some_and(ends_inside_quotes) {
        return Err(IntakeError::BadLine {
            line: last_start.1,
            reason: "a quoted field never ends".into(),
        });
    }
    Ok(records)
}

/// Whether a CSV record (and what follows it) ends inside a quoted field.
fn ends_inside_quotes(record: &str) -> bool {
    let mut chars = record.chars().peekable();
    let (mut quoted, mut field_start) = (false, true);
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' && chars.next_if_eq(&'"').is_none() {
                quoted = false;
            }
            continue;
        }
        match c {
            '"' if field_start => quoted = true,
            ',' | '\n' => {
                field_start = true;
                continue;
            }
            '\r' => continue,
            _ => {}
        }
        field_start = false;
    }
    quoted
}

fn csv_rows(text: &str) -> Result<Rows, IntakeError> {
    let mut records = csv_records(text)?.into_iter();
    let Some((_, header)) = records.next() else {
        return Ok(Vec::new());
    };
    if !header.iter().any(|h| {
        matches!(
            h.trim().to_ascii_lowercase().as_str(),
            "text" | "content" | "review" | "comment"
        )
    }) {
        return Err(IntakeError::BadLine {
            line: 1,
            reason: "the header names no text column (text, content, review or comment)".into(),
        });
    }
    let mut rows = Vec::new();
    for (line, record) in records {
        if record.len() != header.len() {
            return Err(IntakeError::BadLine {
                line,
                reason: format!("{} fields, the header has {}", record.len(), header.len()),
            });
        }
        rows.push((line, header.iter().cloned().zip(record).collect()));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(channel: &str, text: &str) -> Submission {
        Submission {
            channel: channel.into(),
            text: text.into(),
            ..Submission::default()
        }
    }

    #[test]
    fn a_submission_is_checked_and_redacted() {
        let item = accept(&sub("voice", "车机太卡了，电话13812345678"), "a".into(), 5).unwrap();
        assert_eq!(item.text, "车机太卡了，电话[PHONE]");
        assert_eq!(item.locale, "zh");
        assert_eq!(item.channel, Channel::Voice as i32);
        assert_eq!(item.time_unix_ms, 5);
        let item = accept(&sub("Call_Center", "the screen lags"), "b".into(), 5).unwrap();
        assert_eq!(item.channel, Channel::CallCenter as i32);
        assert_eq!(item.locale, "en");
    }

    #[test]
    fn bad_submissions_are_named() {
        assert_eq!(
            accept(&sub("fax", "x"), "a".into(), 0),
            Err(IntakeError::UnknownChannel("fax".into()))
        );
        assert_eq!(
            accept(&sub("app", "  "), "a".into(), 0),
            Err(IntakeError::EmptyText)
        );
        assert!(matches!(
            accept(&sub("app", &"长".repeat(100_000)), "a".into(), 0),
            Err(IntakeError::TextTooLong(100_000))
        ));
        let rated = Submission {
            rating: Some(9),
            ..sub("app", "ok")
        };
        assert_eq!(
            accept(&rated, "a".into(), 0),
            Err(IntakeError::BadRating(9))
        );
        let located = Submission {
            locale: Some("../../etc".into()),
            ..sub("app", "ok")
        };
        assert!(matches!(
            accept(&located, "a".into(), 0),
            Err(IntakeError::BadLocale(_))
        ));
    }

    #[test]
    fn jsonl_and_csv_exports() {
        let jsonl = "{\"text\": \"导航不准\", \"rating\": 2, \"channel\": \"app\"}\n\n{\"text\": \"seats squeak\", \"time\": \"2026-11-01T08:00:00Z\"}\n";
        let subs = parse_export(jsonl.as_bytes(), "jsonl", "dealer").unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].rating, Some(2));
        assert_eq!(subs[1].channel, "dealer");
        assert_eq!(subs[1].time_unix_ms, Some(1_793_520_000_000));

        let csv = "\u{feff}review,stars,date\r\n\"Screen lags, \"\"badly\"\"\nsince the update\",1,1700000000000\r\n屏幕反应慢,3,\r\n";
        let subs = parse_export(csv.as_bytes(), "csv", "app").unwrap();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].text, "Screen lags, \"badly\"\nsince the update");
        assert_eq!(subs[0].rating, Some(1));
        assert_eq!(subs[1].time_unix_ms, None);
    }

    #[test]
    fn csv_quotes_commas_and_line_breaks_and_names_lines_after_them() {
        let csv = "text,channel\n\"lags, then \"\"freezes\"\"\nevery day\",app\n\n the 7\" screen is dim ,voice\n";
        let rows = parse_export_with_ids(csv.as_bytes(), "csv", "app").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1.text, "lags, then \"freezes\"\nevery day");
        assert_eq!(rows[1].1.channel, "voice");
        assert!(rows[1].1.text.contains("7\" screen"));
        // A short row after a quoted line break is named by the line it starts on.
        let err = parse_export(b"text,rating\n\"two\nlines\",1\nshort\n", "csv", "app")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn malformed_exports_name_the_line() {
        let cases: [(&[u8], &str, &str); 7] = [
            (b"{\"text\": \"ok\"}\n{broken", "jsonl", "line 2"),
            (b"[1,2]", "jsonl", "line 1"),
            (
                b"{\"text\": \"ok\", \"rating\": \"many\"}",
                "jsonl",
                "rating",
            ),
            (b"text,rating\nfine,1\nshort\n", "csv", "line 3"),
            (b"name,age\nx,1\n", "csv", "no text column"),
            (b"text\n\"never closed\n", "csv", "never ends"),
            (b"text\n\xff\xfe\n", "csv", "not UTF-8"),
        ];
        for (bytes, format, want) in cases {
            let err = parse_export(bytes, format, "app").unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
        assert!(matches!(
            parse_export(b"", "xml", "app"),
            Err(IntakeError::UnknownFormat(_))
        ));
    }
}
