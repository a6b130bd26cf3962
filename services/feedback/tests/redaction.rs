//! Redaction against the labelled set in `fixtures/redaction_set.jsonl` (zh + en, every kind,
//! plus look-alikes that must survive): precision and recall per kind, printed and checked.

use std::collections::BTreeMap;

use cabin_feedback::redact::{Kind, redact};

#[derive(serde::Deserialize)]
struct Row {
    text: String,
    expected: String,
}

fn count(text: &str, kind: Kind) -> usize {
    text.matches(kind.placeholder()).count()
}

#[test]
fn precision_and_recall_on_the_labelled_set() {
    let rows: Vec<Row> = include_str!("fixtures/redaction_set.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 400);
    let mut stats: BTreeMap<Kind, (usize, usize, usize)> = BTreeMap::new(); // tp, fp, fn
    let mut exact = 0;
    let mut misses = Vec::new();
    for row in &rows {
        let got = redact(&row.text).text;
        if got == row.expected {
            exact += 1;
        } else {
            misses.push(format!(
                "  {}\n    want {}\n    got  {}",
                row.text, row.expected, got
            ));
        }
        for kind in Kind::ALL {
            let (want, have) = (count(&row.expected, kind), count(&got, kind));
            let s = stats.entry(kind).or_default();
            s.0 += want.min(have);
            s.1 += have.saturating_sub(want);
            s.2 += want.saturating_sub(have);
        }
    }
    println!("redaction on {} labelled lines, {exact} exact", rows.len());
    println!(
        "{:<8} {:>5} {:>9} {:>7}",
        "kind", "n", "precision", "recall"
    );
    for (kind, (tp, fp, fn_)) in &stats {
        let precision = *tp as f64 / (tp + fp).max(1) as f64;
        let recall = *tp as f64 / (tp + fn_).max(1) as f64;
        println!(
            "{:<8} {:>5} {precision:>9.3} {recall:>7.3}",
            kind.placeholder(),
            tp + fn_
        );
    }
    for m in misses.iter().take(15) {
        println!("{m}");
    }
    for (kind, (tp, fp, fn_)) in &stats {
        let recall = *tp as f64 / (tp + fn_).max(1) as f64;
        let precision = *tp as f64 / (tp + fp).max(1) as f64;
        let floor = match kind {
            Kind::Id | Kind::Vin | Kind::Card => 0.98,
            _ => 0.9,
        };
        assert!(recall >= floor, "{kind:?} recall {recall:.3} < {floor}");
        assert!(precision >= 0.95, "{kind:?} precision {precision:.3}");
    }
    assert!(
        exact as f64 / rows.len() as f64 >= 0.95,
        "{} exact of {}",
        exact,
        rows.len()
    );
}
