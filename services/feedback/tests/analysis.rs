//! The analysis on owner statements it was not written for. Two development sets
//! (`eval/development.jsonl` and `eval/development-2.jsonl`, 168 statements and 28 problems
//! each, different problems) and the test half (`eval/test.jsonl`, 192 statements, 32
//! problems, 4 of them in neither development set) were each written by a separate hand that
//! saw neither the lexicon nor the other sets: zh + en, app reviews, spoken feedback, dealer
//! notes and call-centre summaries. The lexicon, its weights and the clustering threshold were
//! tuned on the development sets only; the test half is scored here.

use std::collections::{BTreeMap, HashSet};

use cabin_feedback::analysis::eval::{LabelledRow, parse_labelled, score};
use cabin_feedback::analysis::{problems, summarise};
use cabin_feedback::intake::{Submission, accept};
use cabin_proto::feedback::v1::{RedactedItem, Severity, Trend};

const DEVELOPMENT: &str = include_str!("../eval/development.jsonl");
const DEVELOPMENT_2: &str = include_str!("../eval/development-2.jsonl");
const TEST: &str = include_str!("../eval/test.jsonl");
const TEST_2: &str = include_str!("../eval/test-2.jsonl");

#[derive(serde::Deserialize)]
struct Row {
    text: String,
    #[serde(default)]
    problem: String,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    channel: String,
    #[serde(default)]
    rating: Option<i64>,
}

fn rows(text: &str) -> Vec<Row> {
    text.lines()
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
                rating: r.rating,
                locale: r.locale.clone().or(r.lang.clone()),
                time_unix_ms: Some(i as i64),
            };
            accept(&sub, format!("item-{i}"), 0).unwrap()
        })
        .collect()
}

fn labelled(text: &str) -> Vec<LabelledRow> {
    parse_labelled(text).unwrap()
}

#[test]
fn the_halves_never_share_a_statement() {
    let dev: HashSet<String> = labelled(DEVELOPMENT)
        .into_iter()
        .chain(labelled(DEVELOPMENT_2))
        .map(|r| r.text)
        .collect();
    let test = labelled(TEST);
    assert!(dev.len() >= 150 && test.len() >= 150 && dev.len() + test.len() >= 300);
    let problems: HashSet<&str> = test.iter().map(|r| r.problem.as_str()).collect();
    assert!(problems.len() >= 25);
    for r in &test {
        assert!(!dev.contains(&r.text), "shared: {}", r.text);
    }
}

#[test]
fn the_second_test_set_meets_the_target_with_near_neighbours_apart() {
    // 360 statements of 30 problems, several on one part with different faults (screen black
    // or frozen, phone key or key card, charge port door or cable locked), written apart from
    // everything the analysis learned from. The target: ARI >= 0.85, purity >= 0.9,
    // no problem split by language (2026-12-07: ARI 0.899, purity 0.958, 35 groups).
    let (s, _) = score(&labelled(TEST_2));
    println!("second test set: {s:?}");
    assert!(s.ari >= 0.85, "ARI {:.3}", s.ari);
    assert!(s.purity >= 0.9, "purity {:.3}", s.purity);
    assert!(
        s.split_by_language.is_empty(),
        "split: {:?}",
        s.split_by_language
    );
}

#[test]
fn the_test_half_is_grouped_by_problem_across_languages() {
    for set in [DEVELOPMENT, DEVELOPMENT_2] {
        let (dev, _) = score(&labelled(set));
        println!("development set: {dev:?}");
    }
    let rows = labelled(TEST);
    let (s, groups) = score(&rows);
    println!("test half: {s:?}");
    // Regression guards below the level reached (2026-12-07: ARI 0.967, purity 0.990, no
    // problem split by language, 34 groups for 32 problems).
    assert!(s.ari >= 0.92, "ARI {:.3}", s.ari);
    assert!(s.purity >= 0.95, "purity {:.3}", s.purity);
    assert!(
        s.split_by_language.is_empty(),
        "split: {:?}",
        s.split_by_language
    );
    assert!(
        s.groups as f64 <= s.problems as f64 * 1.25,
        "{} groups for {} problems",
        s.groups,
        s.problems
    );

    // Problems the development half never had come out as their own groups.
    let known: HashSet<String> = labelled(DEVELOPMENT)
        .into_iter()
        .map(|r| r.problem)
        .collect();
    let new: HashSet<&str> = rows
        .iter()
        .map(|r| r.problem.as_str())
        .filter(|p| !known.contains(*p))
        .collect();
    assert!(!new.is_empty());
    for problem in new {
        let mut votes: BTreeMap<usize, usize> = BTreeMap::new();
        for (r, g) in rows.iter().zip(&groups) {
            if r.problem == problem {
                *votes.entry(*g).or_insert(0) += 1;
            }
        }
        let (group, _) = votes.iter().max_by_key(|(_, n)| **n).unwrap();
        let size = groups.iter().filter(|g| *g == group).count();
        let own = votes[group];
        assert!(
            own * 2 > size,
            "{problem}: its main group has {own} of its statements among {size}"
        );
    }
}

#[test]
fn sentiment_and_severity_hold_in_both_languages() {
    for half in [DEVELOPMENT, DEVELOPMENT_2, TEST] {
        let all = rows(half);
        for zh in [true, false] {
            let part: Vec<Row> = rows(half)
                .into_iter()
                .filter(|r| r.locale.as_deref().unwrap_or("").starts_with("zh") == zh)
                .collect();
            let found = summarise(&items(&part), &[], 2);
            let mean = found
                .iter()
                .map(|p| p.sentiment * p.count as f32)
                .sum::<f32>()
                / part.len() as f32;
            assert!(mean < -0.1, "complaints read negative (zh {zh}): {mean:.2}");
            // The driver-assistance braking problem is a safety matter in either language.
            let braking: Vec<Row> = part
                .into_iter()
                .filter(|r| r.problem == "phantom_braking")
                .collect();
            if braking.is_empty() {
                continue; // a set without that problem
            }
            let p = &summarise(&items(&braking), &[], 2)[0];
            assert!(
                p.severity >= Severity::High as i32,
                "zh {zh}: {} is {:?}",
                p.label,
                Severity::try_from(p.severity)
            );
        }
        assert!(!all.is_empty());
    }
}

#[test]
fn summaries_have_labels_keywords_quotes_trends_and_improvements() {
    let rows = rows(DEVELOPMENT);
    let all = items(&rows);
    // The same statements twice over as the window before, so every problem has a trend.
    let found = summarise(&all, &all, 3);
    assert!(found.len() >= 20);
    for p in found.iter().take(8) {
        println!(
            "{:>3} {:<30} trend {:?} severity {:?} sentiment {:+.2} keywords {:?}\n    quotes {:?}\n    -> {}",
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
        assert_eq!(p.previous_count, p.count, "{}", p.label);
        assert_eq!(p.trend, Trend::Steady as i32);
        assert!(!p.channels.is_empty());
    }
    assert_eq!(
        found.iter().map(|p| p.count as usize).sum::<usize>(),
        all.len()
    );
    // Members point back at the items, each exactly once.
    let with_members = problems(&all, &[], 3);
    let mut seen: Vec<usize> = with_members
        .iter()
        .flat_map(|p| p.members.clone())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..all.len()).collect::<Vec<_>>());
}

#[test]
fn one_line_and_paragraph_statements_of_one_problem_meet() {
    let texts = [
        "座椅加热坏了",
        "Heated seat dead.",
        "We picked the car up in October and loved it at first. Once the mornings got \
         frosty, though, I noticed the driver's seat warmer does nothing at all, while the \
         passenger side gets toasty within a minute. The dealer says they need to order a \
         new heating pad. Not great in a Canadian winter.",
        "入冬以后发现主驾座椅加热完全没反应，副驾是好的，开到最高档也不热，去4S店检查说是加热垫坏了要等配件。",
    ];
    let rows: Vec<LabelledRow> = texts
        .iter()
        .map(|t| LabelledRow {
            id: String::new(),
            text: t.to_string(),
            problem: "seat".into(),
            locale: None,
            lang: None,
        })
        .collect();
    let (s, _) = score(&rows);
    assert_eq!(s.groups, 1, "{s:?}");
}
