//! Power loss at any instant: cabin-feedbackd is SIGKILLed at random moments while clients
//! submit and while it uploads to the reference collector, 200 times, restarted each time.
//! Afterwards every Submit that was answered with an id has arrived at the collector exactly
//! once (the batch id is the idempotency key, and the outbox journals before it acts).

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cabin_testbus::{TestBus, eventually};
use support::*;

const CYCLES: usize = 200;

/// A small deterministic generator: the kill moments are random but replayable.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_submit_arrives_exactly_once_across_200_kills() {
    let collector = Collector::start().await;
    let bus = TestBus::start().unwrap();
    let conn = bus.connect().await.unwrap();
    // Small batches and no delay: uploads are in flight most of the time.
    let mut daemon = Daemon::new(&format!(
        "upload_url = {:?}\nconsent_default = true\nbatch_delay_ms = 0\nbackoff_initial_ms = 20\nbackoff_max_secs = 1\n[outbox]\nmax_batch_items = 3\n",
        collector.url
    ));
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let seed = std::env::var("CABIN_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Lcg(seed);
    let mut kills_with_pending = 0;
    for cycle in 0..CYCLES {
        daemon.spawn(&bus, &conn).await;
        let fb = proxy(&conn).await;
        // Two clients submitting as fast as answers come.
        let mut clients = Vec::new();
        for client in 0..2 {
            let fb = fb.clone();
            let accepted = accepted.clone();
            clients.push(tokio::spawn(async move {
                for n in 0.. {
                    let text =
                        format!("cycle {cycle} client {client} item {n}: the screen freezes");
                    match fb.submit("hmi", &text, meta(&[])).await {
                        Ok(id) => {
                            accepted.lock().unwrap().insert(id);
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        // The kill comes at a random moment once this life has taken a submission, so every
        // cycle is a crash with work in flight however slow the machine is.
        let before = accepted.lock().unwrap().len();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while accepted.lock().unwrap().len() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "cycle {cycle}: no submit accepted"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
        if fb.pending().await.map(|p| p > 0).unwrap_or(false) {
            kills_with_pending += 1;
        }
        daemon.kill();
        for c in clients {
            let _ = c.await;
        }
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= CYCLES,
        "only {} submits got through",
        accepted.len()
    );

    // One last start, left alone: it delivers what is left.
    daemon.spawn(&bus, &conn).await;
    let fb = proxy(&conn).await;
    assert!(
        eventually(Duration::from_secs(120), || async {
            fb.pending().await.unwrap_or(1) == 0
        })
        .await,
        "outbox never drained: {:?}",
        fb.last_error().await
    );
    let counts = collector.item_counts().await;
    let missing: Vec<_> = accepted
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    eprintln!(
        "{CYCLES} kills ({kills_with_pending} with uploads pending); {} submits accepted, {} items at the collector",
        accepted.len(),
        counts.len()
    );
    assert!(
        missing.is_empty(),
        "{} accepted items never arrived: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(twice.is_empty(), "items stored more than once: {twice:?}");
    assert_eq!(fb.uploaded().await.unwrap(), counts.len() as u64);
}
