//! How well a grouping matches labelled truth: purity, adjusted Rand index, and the problems
//! split by language.
//!
//! Architecture invariant: pure arithmetic on labels; used by tests and the evaluation report,
//! never by the service's own decisions.

use std::collections::HashMap;

/// Purity and adjusted Rand index of `predicted` against `truth` labels.
pub fn clustering_quality(predicted: &[usize], truth: &[&str]) -> (f64, f64) {
    let n = predicted.len();
    let mut table: HashMap<(usize, &str), usize> = HashMap::new();
    for (p, t) in predicted.iter().zip(truth) {
        *table.entry((*p, *t)).or_insert(0) += 1;
    }
    let mut by_cluster: HashMap<usize, usize> = HashMap::new();
    for ((p, _), c) in &table {
        let best = by_cluster.entry(*p).or_insert(0);
        *best = (*best).max(*c);
    }
    let purity = by_cluster.values().sum::<usize>() as f64 / n.max(1) as f64;
    let choose2 = |x: usize| (x * x.saturating_sub(1)) as f64 / 2.0;
    let sum_ij: f64 = table.values().map(|c| choose2(*c)).sum();
    let mut a: HashMap<usize, usize> = HashMap::new();
    let mut b: HashMap<&str, usize> = HashMap::new();
    for ((p, t), c) in &table {
        *a.entry(*p).or_insert(0) += c;
        *b.entry(*t).or_insert(0) += c;
    }
    let sum_a: f64 = a.values().map(|c| choose2(*c)).sum();
    let sum_b: f64 = b.values().map(|c| choose2(*c)).sum();
    let expected = sum_a * sum_b / choose2(n).max(1.0);
    let max = (sum_a + sum_b) / 2.0;
    let ari = if (max - expected).abs() < f64::EPSILON {
        1.0
    } else {
        (sum_ij - expected) / (max - expected)
    };
    (purity, ari)
}

/// The labelled problems whose Chinese and English statements mostly land in different
/// groups (each language's most common group differs).
pub fn language_splits<'a>(predicted: &[usize], truth: &[&'a str], zh: &[bool]) -> Vec<&'a str> {
    let mut votes: HashMap<(&str, bool), HashMap<usize, usize>> = HashMap::new();
    for ((p, t), z) in predicted.iter().zip(truth).zip(zh) {
        *votes.entry((*t, *z)).or_default().entry(*p).or_insert(0) += 1;
    }
    let majority = |v: &HashMap<usize, usize>| {
        v.iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(g, _)| *g)
    };
    let mut split: Vec<&str> = truth
        .iter()
        .copied()
        .filter(
            |t| match (votes.get(&(*t, true)), votes.get(&(*t, false))) {
                (Some(z), Some(e)) => majority(z) != majority(e),
                _ => false,
            },
        )
        .collect();
    split.sort_unstable();
    split.dedup();
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_and_split_groupings_score_as_expected() {
        let truth = ["a", "a", "b", "b"];
        assert_eq!(clustering_quality(&[0, 0, 1, 1], &truth), (1.0, 1.0));
        let (purity, ari) = clustering_quality(&[0, 1, 2, 3], &truth);
        assert_eq!(purity, 1.0);
        assert!(ari <= 0.0);
        let zh = [true, false, true, false];
        assert_eq!(language_splits(&[0, 1, 2, 2], &truth, &zh), vec!["a"]);
    }
}
