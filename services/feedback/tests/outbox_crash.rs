//! The outbox under SIGKILL: a child process submits items and "uploads" batches (to a
//! collector folder keyed by batch id, the way the real collector de-duplicates) while the
//! parent kills it at random moments, 200 times, restarting it each time. Afterwards every
//! item whose submit had returned must have arrived exactly once.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cabin_feedback::outbox::{Limits, Outbox};
use cabin_proto::feedback::v1::{Channel, FeedbackBatch, RedactedItem};
use prost::Message;

const CHILD_DIR: &str = "CABIN_OUTBOX_CRASH_DIR";
const CHILD_ROUND: &str = "CABIN_OUTBOX_CRASH_ROUND";
const CHILD_DRAIN: &str = "CABIN_OUTBOX_CRASH_DRAIN";

fn deliver(collector: &Path, batch_id: &str, bytes: &[u8]) {
    // Exactly-once effect at the receiver: the batch id is the key.
    cabin_common::fsutil::write_atomic(&collector.join(format!("{batch_id}.pb")), bytes).unwrap();
}

/// The child's job (only when the parent set the environment): submit, upload, repeat.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let round: u64 = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let drain = std::env::var(CHILD_DRAIN).is_ok();
    let collector = dir.join("collector");
    std::fs::create_dir_all(&collector).unwrap();
    let limits = Limits {
        max_batch_items: 7,
        ..Limits::default()
    };
    let mut outbox = Outbox::open(&dir.join("outbox"), limits, "veh-crash").unwrap();
    let mut n = 0u64;
    loop {
        if !drain {
            let id = format!("r{round}-{n}");
            outbox
                .submit(RedactedItem {
                    id: id.clone(),
                    channel: Channel::Voice as i32,
                    time_unix_ms: n as i64,
                    text: format!("item {id}: the screen lags"),
                    locale: "en".into(),
                    rating: None,
                })
                .unwrap();
            println!("accepted {id}");
            n += 1;
        }
        if drain || n.is_multiple_of(3) {
            match outbox
                .next_batch(round as i64, &|items| {
                    cabin_feedback::analysis::summarise(items, &[], 3)
                })
                .unwrap()
            {
                Some(batch) => {
                    deliver(&collector, &batch.batch_id, &batch.bytes);
                    outbox.ack(&batch.batch_id).unwrap();
                }
                None if drain => return,
                None => {}
            }
        }
    }
}

fn run_child(exe: &Path, dir: &Path, round: u64, drain: bool) -> std::process::Child {
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if drain {
        cmd.env(CHILD_DRAIN, "1");
    }
    cmd.spawn().unwrap()
}

#[test]
fn two_hundred_sigkills_lose_nothing_and_duplicate_nothing() {
    if std::env::var(CHILD_DIR).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut accepted: HashSet<String> = HashSet::new();
    // A small xorshift: the kill moments differ every round but the run is reproducible.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let started = Instant::now();
    for round in 0..200u64 {
        let mut child = run_child(&exe, dir.path(), round, false);
        let stdout = child.stdout.take().unwrap();
        let (first, took_one) = std::sync::mpsc::channel();
        let lines = std::thread::spawn(move || {
            let mut ids = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(id) = line.strip_prefix("accepted ") {
                    ids.push(id.to_string());
                    let _ = first.send(());
                }
            }
            ids
        });
        // The kill comes at a random moment once the child has taken an item, so every round
        // is a crash with work in flight however slow the machine is.
        let _ = took_one.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(rand() % 40));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        accepted.extend(lines.join().unwrap());
    }
    // A last run without a kill sends everything that is left.
    let mut child = run_child(&exe, dir.path(), 1000, true);
    assert!(child.wait().unwrap().success());

    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut batches = 0;
    for entry in std::fs::read_dir(dir.path().join("collector")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pb") {
            let batch = FeedbackBatch::decode(std::fs::read(&path).unwrap().as_slice()).unwrap();
            assert_eq!(path.file_stem().unwrap().to_str().unwrap(), batch.batch_id);
            batches += 1;
            for item in batch.items {
                *seen.entry(item.id).or_default() += 1;
            }
        }
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "delivered twice: {duplicated:?}");
    let lost: Vec<_> = accepted
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} accepted items never arrived, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    println!(
        "200 SIGKILLs in {:?}: {} items accepted, {} delivered in {batches} batches, none lost or doubled",
        started.elapsed(),
        accepted.len(),
        seen.len()
    );
    assert!(
        accepted.len() >= 200,
        "the child barely ran: {}",
        accepted.len()
    );
}
