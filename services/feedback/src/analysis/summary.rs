//! From groups to what a product team reads: a label in the group's language, c-TF-IDF
//! keywords, count and trend, channels, sentiment (text and rating), severity, representative
//! quotes and an improvement point.
//!
//! Architecture invariant: the only place that turns analysis into `ProblemSummary`s; the
//! outbox, the desk and `cabin-feedback analyse` all come through `problems`.

use std::collections::{BTreeMap, HashMap};

use cabin_proto::feedback::v1::{Channel, ProblemSummary, RedactedItem, Severity, Trend};

use super::clustering::cluster;
use super::concept_model::read;
use super::lexicon::{english_words, fold, lexicon};
use super::reading::Reading;

/// One recurring problem and the items it was found in.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub summary: ProblemSummary,
    /// Indices into the items analysed.
    pub members: Vec<usize>,
}

/// Summaries of the recurring problems in `items`, largest first; `previous` is the window
/// before, for the trend.
pub fn summarise(
    items: &[RedactedItem],
    previous: &[RedactedItem],
    max_quotes: usize,
) -> Vec<ProblemSummary> {
    problems(items, previous, max_quotes)
        .into_iter()
        .map(|p| p.summary)
        .collect()
}

/// The recurring problems in `items` with their members, largest first.
pub fn problems(
    items: &[RedactedItem],
    previous: &[RedactedItem],
    max_quotes: usize,
) -> Vec<Problem> {
    // Both windows are grouped together, so "the same problem last time" means the same group.
    let readings: Vec<Reading> = items.iter().map(|i| read(&i.text)).collect();
    let mut all = readings.clone();
    all.extend(previous.iter().map(|i| read(&i.text)));
    let all_groups = cluster(&all);
    let (groups, previous_groups) = all_groups.split_at(items.len());
    let n_groups = all_groups.iter().max().map_or(0, |m| m + 1);
    let surface = surface_forms(items.iter().map(|i| i.text.as_str()));

    // c-TF-IDF over concepts and words: frequent in the group, rare across groups. A plain
    // word counts only when two members use it (three for Chinese character pairs, which are
    // often two halves of different words).
    let terms_of = |r: &Reading| -> Vec<String> {
        let mut t: Vec<String> = r
            .concepts
            .iter()
            .map(|(c, _)| format!("c:{c}"))
            .chain(r.words.iter().cloned())
            .collect();
        t.sort_unstable();
        t.dedup();
        t
    };
    let mut group_terms: Vec<HashMap<String, f32>> = vec![HashMap::new(); n_groups];
    for (r, g) in readings.iter().zip(groups) {
        for t in terms_of(r) {
            *group_terms[*g].entry(t).or_insert(0.0) += 1.0;
        }
    }
    for terms in &mut group_terms {
        terms.retain(|t, n| t.starts_with("c:") || *n >= if t.is_ascii() { 2.0 } else { 3.0 });
    }
    let mut spread: HashMap<String, usize> = HashMap::new();
    for terms in &group_terms {
        for t in terms.keys() {
            *spread.entry(t.clone()).or_insert(0) += 1;
        }
    }

    let mut out = Vec::new();
    for (g, terms) in group_terms.iter().enumerate() {
        let members: Vec<usize> = (0..items.len()).filter(|i| groups[*i] == g).collect();
        if members.is_empty() {
            continue; // a problem of the previous window only
        }
        let zh = members
            .iter()
            .filter(|&&i| is_zh(&items[i], &readings[i]))
            .count()
            * 2
            > members.len();
        let topic = most_common(members.iter().filter_map(|&i| readings[i].topic));
        let symptom = most_common(members.iter().filter_map(|&i| readings[i].symptom));
        let total: f32 = terms.values().sum();
        let mut scored: Vec<(&str, f32)> = terms
            .iter()
            .map(|(t, f)| {
                let idf = (1.0 + n_groups as f32 / spread[t] as f32).ln();
                (t.as_str(), f / total.max(1.0) * idf)
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        let mut keywords: Vec<String> = Vec::new();
        for (t, _) in &scored {
            let k = match t.strip_prefix("c:") {
                Some(c) => concept_name(c, zh),
                None => surface.get(*t).cloned().unwrap_or_else(|| t.to_string()),
            };
            if !k.is_empty() && !keywords.contains(&k) {
                keywords.push(k);
            }
            if keywords.len() == 6 {
                break;
            }
        }
        let count = members.len() as u32;
        let previous_count = previous_groups.iter().filter(|p| **p == g).count() as u32;
        let trend = if previous.is_empty() || previous_count == 0 {
            Trend::New
        } else if count as f32 > previous_count as f32 * 1.25 {
            Trend::Rising
        } else if (count as f32) < previous_count as f32 * 0.8 {
            Trend::Falling
        } else {
            Trend::Steady
        };
        let mut channels: Vec<i32> = members.iter().map(|&i| items[i].channel).collect();
        channels.sort_unstable();
        channels.dedup();
        let sentiment = members
            .iter()
            .map(|&i| item_sentiment(&items[i], &readings[i]))
            .sum::<f32>()
            / count.max(1) as f32;
        let critical = members.iter().any(|&i| readings[i].critical);
        let safety = topic.is_some_and(|t| lexicon().concept(t).is_some_and(|c| c.safety));
        let severity = if critical {
            Severity::Critical
        } else if safety {
            Severity::High
        } else if count >= 20 || sentiment < -0.6 {
            Severity::Medium
        } else {
            Severity::Low
        };
        let quotes = quotes(items, &readings, &members, topic, max_quotes);
        out.push(Problem {
            summary: ProblemSummary {
                label: label(topic, symptom, zh),
                key: match (topic, symptom) {
                    (Some(t), Some(s)) => format!("{t}/{s}"),
                    (Some(t), None) => t.to_string(),
                    (None, Some(s)) => format!("/{s}"),
                    (None, None) => String::new(),
                },
                keywords,
                count,
                trend: trend as i32,
                channels,
                sentiment,
                severity: severity as i32,
                quotes,
                improvement: improvement(topic, zh),
                previous_count,
            },
            members,
        });
    }
    out.sort_by(|a, b| {
        b.summary
            .count
            .cmp(&a.summary.count)
            .then(a.summary.label.cmp(&b.summary.label))
    });
    out
}

fn is_zh(item: &RedactedItem, reading: &Reading) -> bool {
    if item.locale.is_empty() {
        reading.zh
    } else {
        item.locale.to_ascii_lowercase().starts_with("zh")
    }
}

/// Text tone, and the star rating where there is one (1 star = -1, 5 = +1).
fn item_sentiment(item: &RedactedItem, reading: &Reading) -> f32 {
    match item.rating {
        Some(r @ 1..=5) => 0.5 * reading.sentiment + 0.5 * ((r as f32 - 3.0) / 2.0),
        _ => reading.sentiment,
    }
}

fn most_common<'a>(values: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *count.entry(v).or_insert(0) += 1;
    }
    count
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(k, _)| k)
}

/// The members that name the group's topic and are short enough to read, closest to typical
/// first.
fn quotes(
    items: &[RedactedItem],
    readings: &[Reading],
    members: &[usize],
    topic: Option<&str>,
    max_quotes: usize,
) -> Vec<String> {
    let mut ranked: Vec<(bool, usize, usize)> = members
        .iter()
        .map(|&i| {
            let on_topic = readings[i].topic == topic;
            let len = items[i].text.chars().count();
            // Prefer a sentence or two: 20-120 characters.
            let distance = if len < 20 {
                20 - len
            } else {
                len.saturating_sub(120)
            };
            (!on_topic, distance, i)
        })
        .collect();
    ranked.sort();
    let mut out: Vec<String> = Vec::new();
    for (_, _, i) in ranked {
        if out.len() >= max_quotes {
            break;
        }
        if !out.contains(&items[i].text) {
            out.push(items[i].text.clone());
        }
    }
    out
}

/// For each English stem, the word it was most often cut from (ties: the shorter word).
fn surface_forms<'a>(texts: impl Iterator<Item = &'a str>) -> HashMap<String, String> {
    let mut counts: HashMap<String, HashMap<String, usize>> = HashMap::new();
    for text in texts {
        let folded = fold(text);
        for word in english_words(&folded) {
            *counts
                .entry(super::lexicon::stem(word))
                .or_default()
                .entry(word.to_string())
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter_map(|(stem, words)| {
            let best = words.into_iter().max_by(|a, b| {
                a.1.cmp(&b.1)
                    .then(b.0.len().cmp(&a.0.len()))
                    .then(b.0.cmp(&a.0))
            })?;
            Some((stem, best.0))
        })
        .collect()
}

fn concept_name(id: &str, zh: bool) -> String {
    lexicon()
        .concept(id)
        .map(|c| if zh { c.zh.clone() } else { c.en.clone() })
        .unwrap_or_default()
}

fn label(topic: Option<&str>, symptom: Option<&str>, zh: bool) -> String {
    match (topic, symptom) {
        (Some(t), Some(s)) if zh => format!("{}{}", concept_name(t, true), concept_name(s, true)),
        (Some(t), Some(s)) => format!("{}: {}", concept_name(t, false), concept_name(s, false)),
        (Some(t), None) => concept_name(t, zh) + if zh { "问题" } else { " issues" },
        (None, Some(s)) => concept_name(s, zh),
        (None, None) => (if zh { "其他反馈" } else { "other feedback" }).to_string(),
    }
}

fn improvement(topic: Option<&str>, zh: bool) -> String {
    let text = topic
        .and_then(|t| lexicon().concept(t))
        .map(|c| {
            if zh {
                c.improvement_zh.as_str()
            } else {
                c.improvement_en.as_str()
            }
        })
        .filter(|s| !s.is_empty());
    match text {
        Some(t) => t.to_string(),
        None if zh => "人工复核这些反馈，确定问题所在的部件和复现条件".to_string(),
        None => "Review these items by hand to find the part at fault and how to reproduce it"
            .to_string(),
    }
}

/// The channel enum for a proto value, for display.
pub fn channel_name(value: i32) -> &'static str {
    match Channel::try_from(value).unwrap_or(Channel::Unspecified) {
        Channel::Voice => "voice",
        Channel::Hmi => "hmi",
        Channel::App => "app",
        Channel::Dealer => "dealer",
        Channel::CallCenter => "call-center",
        Channel::Unspecified => "unspecified",
    }
}
