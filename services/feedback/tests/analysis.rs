//! Clustering quality on the labelled set in `fixtures/feedback_set.jsonl` (≥ 500 items,
//! 14 recurring problems, zh + en, several channels): purity and adjusted Rand index printed
//! and checked, and the summaries a product team would read.

use cabin_feedback::analysis::{cluster, clustering_quality, read, summarise};
use cabin_feedback::intake::{Submission, accept};
use cabin_proto::feedback::v1::{RedactedItem, Severity, Trend};

#[derive(serde::Deserialize)]
struct Row {
    text: String,
    problem: String,
    lang: String,
    channel: String,
    rating: i64,
}

fn rows() -> Vec<Row> {
    include_str!("fixtures/feedback_set.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn items(rows: &[Row]) -> Vec<RedactedItem> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let sub = Submission {
                channel: r.channel.clone(),
                text: r.text.clone(),
                rating: Some(r.rating),
                locale: Some(r.lang.clone()),
                time_unix_ms: Some(i as i64),
            };
            accept(&sub, format!("item-{i}"), 0).unwrap()
        })
        .collect()
}

#[test]
fn recurring_problems_are_found_across_languages() {
    let rows = rows();
    assert!(rows.len() >= 500);
    let readings: Vec<_> = rows.iter().map(|r| read(&r.text)).collect();
    let groups = cluster(&readings);
    let truth: Vec<&str> = rows.iter().map(|r| r.problem.as_str()).collect();
    let (purity, ari) = clustering_quality(&groups, &truth);
    let n_groups = groups.iter().max().unwrap() + 1;
    println!(
        "{} items, {} labelled problems -> {n_groups} groups: purity {purity:.3}, adjusted Rand index {ari:.3}",
        rows.len(),
        truth.iter().collect::<std::collections::HashSet<_>>().len()
    );
    assert!(purity >= 0.9, "purity {purity:.3}");
    assert!(ari >= 0.8, "ARI {ari:.3}");
}

#[test]
fn summaries_have_labels_keywords_quotes_trends_and_improvements() {
    let rows = rows();
    let all = items(&rows);
    let (previous, current) = all.split_at(all.len() / 3);
    let problems = summarise(current, previous, 3);
    assert!(problems.len() >= 10);
    for p in problems.iter().take(5) {
        println!(
            "{:>3} {:<28} trend {:?} severity {:?} sentiment {:+.2} keywords {:?}\n    quotes {:?}\n    -> {}",
            p.count,
            p.label,
            Trend::try_from(p.trend).unwrap(),
            Severity::try_from(p.severity).unwrap(),
            p.sentiment,
            p.keywords,
            p.quotes,
            p.improvement
        );
        assert!(!p.label.is_empty() && !p.improvement.is_empty());
        assert!(!p.keywords.is_empty() && !p.quotes.is_empty() && p.quotes.len() <= 3);
        assert!(p.previous_count > 0, "every problem was there before too");
        assert!(!p.channels.is_empty());
        assert!(p.sentiment < 0.0, "complaints read negative");
    }
    let brakes = problems
        .iter()
        .find(|p| p.label.contains("brake") || p.label.contains("刹车"))
        .unwrap();
    assert!(
        brakes.severity >= Severity::High as i32,
        "brakes are a safety matter"
    );
    // Counts add up.
    assert_eq!(
        problems.iter().map(|p| p.count as usize).sum::<usize>(),
        current.len()
    );
}
