//! `cabin-feedback analyse FILE`: an export (JSON Lines or CSV) to its recurring problems as
//! JSON, offline and without the bus — the same analysis as the service's `Summary` and the
//! batches' `ProblemSummary`.
//!
//! Architecture invariant: reads bytes, returns JSON; no files, no bus, no clock.

use crate::analysis::{channel_name, problems};
use crate::intake::{IntakeError, accept, parse_export_with_ids};

/// The recurring problems of an export: `{"problems":[{label, keywords, count, item_ids,
/// quotes, improvement, severity, sentiment, channels}]}`. Texts are redacted before they are
/// read, so quotes never carry a phone number or a plate.
pub fn analyse_export(
    bytes: &[u8],
    format: &str,
    max_quotes: usize,
) -> Result<serde_json::Value, IntakeError> {
    let rows = parse_export_with_ids(bytes, format, "app")?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut items = Vec::with_capacity(rows.len());
    for (id, sub) in rows {
        items.push(accept(&sub, id.clone(), 0)?);
        ids.push(id);
    }
    let problems: Vec<serde_json::Value> = problems(&items, &[], max_quotes)
        .into_iter()
        .map(|p| {
            let s = &p.summary;
            serde_json::json!({
                "label": s.label,
                "keywords": s.keywords,
                "count": s.count,
                "item_ids": p.members.iter().map(|&i| ids[i].as_str()).collect::<Vec<_>>(),
                "quotes": s.quotes,
                "improvement": s.improvement,
                "severity": s.severity().as_str_name().trim_start_matches("SEVERITY_").to_ascii_lowercase(),
                "sentiment": (f64::from(s.sentiment) * 100.0).round() / 100.0,
                "channels": s.channels.iter().map(|c| channel_name(*c)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(serde_json::json!({ "problems": problems }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_and_csv_give_the_same_problems_with_the_input_ids() {
        let jsonl = r#"{"id":"a1","channel":"app","text":"车机卡顿严重","rating":1}
{"id":"a2","channel":"dealer","text":"touchscreen freezes and lags"}
{"channel":"voice","text":"brakes squeal when I stop"}
"#;
        let csv = "channel,text,rating\napp,车机卡顿严重,1\ndealer,touchscreen freezes and lags,\nvoice,brakes squeal when I stop,\n";
        let a = analyse_export(jsonl.as_bytes(), "jsonl", 2).unwrap();
        let b = analyse_export(csv.as_bytes(), "csv", 2).unwrap();
        let ids = |v: &serde_json::Value| -> Vec<Vec<String>> {
            v["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    p["item_ids"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_str().unwrap().to_string())
                        .collect()
                })
                .collect()
        };
        assert_eq!(
            ids(&a),
            vec![vec!["a1".to_string(), "a2".into()], vec!["3".into()]]
        );
        assert_eq!(
            ids(&b),
            vec![vec!["1".to_string(), "2".into()], vec!["3".into()]]
        );
        assert_eq!(a["problems"][0]["label"], b["problems"][0]["label"]);
    }

    #[test]
    fn a_bad_row_is_named_with_its_line() {
        let jsonl = "{\"text\":\"fine\"}\n{\"text\":\"x\",\"rating\":9}\n";
        let err = analyse_export(jsonl.as_bytes(), "jsonl", 2).unwrap_err();
        assert!(err.to_string().starts_with("line 2:"), "{err}");
        let err = analyse_export(b"text\n\"open", "csv", 2).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
