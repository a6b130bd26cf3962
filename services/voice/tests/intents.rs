//! The utterance table (`tests/fixtures/utterances.tsv`): every line's intent and slot, as
//! a recogniser would deliver it (no punctuation, fillers, mixed zh/en).

use cabin_voice::intent::{Intent, parse};

#[test]
fn the_utterance_table() {
    let table = include_str!("fixtures/utterances.tsv");
    let mut rows = 0;
    let mut wrong = Vec::new();
    for line in table.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "bad table line {line:?}");
        let (utterance, want_intent, want_slot) = (cols[0], cols[1], cols[2]);
        rows += 1;
        let parsed = parse(utterance, None);
        let slot = match &parsed.intent {
            Intent::WallpaperGenerate { scene, .. } => scene.clone(),
            Intent::TimeAware { enabled } => enabled.to_string(),
            Intent::Chat { text } | Intent::Feedback { text } => text.clone(),
            Intent::WallpaperStatus {}
            | Intent::DriveTime {}
            | Intent::CarCommand { .. }
            | Intent::Unknown { .. } => String::new(),
        };
        let slot = if slot.is_empty() {
            "-".to_string()
        } else {
            slot
        };
        if parsed.intent.name() != want_intent || slot != want_slot {
            wrong.push(format!(
                "{utterance:?}: got {} {slot:?}, want {want_intent} {want_slot:?}",
                parsed.intent.name()
            ));
        }
    }
    assert!(rows >= 100, "{rows} rows");
    assert!(
        wrong.is_empty(),
        "{} of {rows} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
