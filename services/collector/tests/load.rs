//! A fleet against the collector binary over real HTTP, on both backends: concurrent senders,
//! a quarter of the batches delivered twice at the same moment, and a SIGKILL of the collector
//! in the middle; after a restart on the same database the totals are exact.

mod support;

use std::time::Duration;

use cabin_collector::load::{LoadConfig, run, stored_counts};
use support::Collector;
use support::postgres::Postgres;

fn fleet_survives_a_kill(db: &str) {
    let mut collector = Collector::start(db, "127.0.0.1:0");
    let base = collector.base.clone();
    let listen = base.trim_start_matches("http://").to_string();
    let config = LoadConfig {
        url: base.clone(),
        vehicles: 30,
        batches: 4,
        items: 6,
        dup_rate: 0.25,
        concurrency: 8,
        seed: 7,
        patience: Duration::from_secs(60),
    };
    let load = std::thread::spawn(move || run(&config));
    // Kill it once a part of the fleet is in.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stored_counts(&base).map_or(0, |c| c.batches) < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the load never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    collector.kill();
    std::thread::sleep(Duration::from_millis(300));
    let _collector = Collector::start(db, &listen);
    let report = load.join().unwrap().unwrap();
    assert!(report.exact, "{report:?}");
    assert_eq!(report.stored.batches, 120);
    assert_eq!(report.stored.items, 720);
    assert!(report.retries > 0, "the kill was not noticed: {report:?}");
    assert!(report.duplicates > 0, "{report:?}");
}

#[test]
fn a_fleet_survives_a_kill_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    fleet_survives_a_kill(&dir.path().join("fleet.db").display().to_string());
}

#[test]
fn a_fleet_survives_a_kill_on_postgresql() {
    let pg = Postgres::start();
    fleet_survives_a_kill(&pg.url);
}
