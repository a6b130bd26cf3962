//! The store's contract on both backends, each for real (a SQLite file; a private PostgreSQL
//! server): a batch stored once even when duplicates arrive at the same moment, labels from
//! different cars meeting, the fleet view's window, the same JSON from both, and versioned
//! migrations (a first-version SQLite file and a newer schema).

mod support;

use std::sync::Arc;

use cabin_collector::{Put, Store, StoreError, Window};
use cabin_proto::feedback::v1::{FeedbackBatch, ProblemSummary, RedactedItem, TimeWindow};
use support::postgres::Postgres;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_796_083_200_000;

fn uuid(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

fn batch(
    n: u32,
    vehicle: &str,
    seq: u64,
    day: i64,
    problems: &[(&str, &[&str], u32, i32)],
) -> FeedbackBatch {
    FeedbackBatch {
        batch_id: uuid(n),
        sequence: seq,
        vehicle_pseudonym: vehicle.into(),
        schema_version: 1,
        window: Some(TimeWindow {
            start_unix_ms: T0 + day * DAY,
            end_unix_ms: T0 + (day + 1) * DAY,
        }),
        items: (0..3)
            .map(|i| RedactedItem {
                id: format!("{n}-{i}"),
                channel: 1 + i,
                time_unix_ms: T0 + day * DAY + i as i64,
                text: format!("statement {i} of batch {n}"),
                locale: "en".into(),
                rating: if i == 0 { None } else { Some(i as u32) },
            })
            .collect(),
        problems: problems
            .iter()
            .map(|(label, keywords, count, severity)| ProblemSummary {
                label: label.to_string(),
                keywords: keywords.iter().map(|k| k.to_string()).collect(),
                count: *count,
                severity: *severity,
                channels: vec![1, 3],
                quotes: vec![format!("{label} quote from {vehicle}")],
                improvement: format!("fix {label}"),
                sentiment: -0.5,
                ..Default::default()
            })
            .collect(),
        created_unix_ms: T0 + (day + 1) * DAY,
    }
}

fn keyed(mut b: FeedbackBatch, key: &str) -> FeedbackBatch {
    for p in &mut b.problems {
        p.key = key.into();
    }
    b
}

/// The same story told to a store: three cars, labels spelt three ways, a duplicate.
async fn tell(store: &Store) -> Vec<Put> {
    let mut puts = Vec::new();
    for b in [
        batch(
            1,
            "car-a",
            1,
            0,
            &[("Screen lag", &["lag", "screen"], 4, 2)],
        ),
        batch(
            2,
            "car-b",
            1,
            1,
            &[("screen  lag", &["screen", "freeze"], 2, 3)],
        ),
        batch(
            3,
            "car-c",
            1,
            2,
            &[
                ("seat heater", &["heater"], 1, 1),
                ("screen-lag", &["lag"], 1, 1),
            ],
        ),
        batch(4, "car-a", 2, 9, &[("车机 卡顿", &["卡顿"], 5, 2)]),
        keyed(
            batch(6, "car-e", 1, 4, &[("座椅加热不热", &["加热"], 2, 2)]),
            "seat_heater/not_working",
        ),
        keyed(
            batch(
                7,
                "car-f",
                1,
                5,
                &[("Seat heater: not working", &["heater"], 1, 2)],
            ),
            "seat_heater/not_working",
        ),
        batch(
            1,
            "car-a",
            1,
            0,
            &[("Screen lag", &["lag", "screen"], 4, 2)],
        ),
    ] {
        puts.push(store.put(b, T0).await.unwrap().0);
    }
    puts
}

async fn contract(store: Store) -> serde_json::Value {
    let store = Arc::new(store);
    assert_eq!(
        tell(&store).await,
        [
            Put::Accepted,
            Put::Accepted,
            Put::Accepted,
            Put::Accepted,
            Put::Accepted,
            Put::Accepted,
            Put::Duplicate
        ]
    );
    // The highest stored sequence comes back with every answer.
    let (put, seq) = store.put(batch(4, "car-a", 2, 9, &[]), T0).await.unwrap();
    assert_eq!((put, seq), (Put::Duplicate, 2));

    // Eight deliveries of one new batch at the same moment: one is stored.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put(
                        batch(5, "car-d", 1, 3, &[("wind noise", &["wind"], 1, 1)]),
                        T0,
                    )
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    for r in racers {
        if r.await.unwrap().unwrap().0 == Put::Accepted {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1);
    assert!(store.item_counts().await.unwrap().values().all(|n| *n == 1));
    assert_eq!(store.item_counts().await.unwrap().len(), 21);

    let all = store.fleet(Window::default()).await.unwrap();
    assert_eq!(
        (
            all["vehicles"].as_i64(),
            all["batches"].as_i64(),
            all["items"].as_i64()
        ),
        (Some(6), Some(7), Some(21))
    );
    let lag = &all["problems"][0];
    assert_eq!(lag["key"], "screen lag");
    assert_eq!(
        lag["label"], "screen-lag",
        "the most recent spelling is shown"
    );
    assert_eq!(lag["vehicles"], 3);
    assert_eq!(lag["count"], 7);
    assert_eq!(lag["severity"], "high");
    assert_eq!(lag["keywords"][0], "lag");
    assert_eq!(lag["channels"], serde_json::json!(["voice", "app"]));
    assert_eq!(lag["quotes"].as_array().map(Vec::len), Some(3));
    // A car reporting in Chinese and one in English meet under the analysis's own key.
    let heater = all["problems"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["key"] == "seat_heater/not_working"))
        .expect("the keyed problem");
    assert_eq!(
        (heater["vehicles"].as_i64(), heater["count"].as_i64()),
        (Some(2), Some(3))
    );

    // The first two days only: car-c's report (day 2) and the later ones fall outside.
    let early = store
        .fleet(Window {
            since: Some(T0),
            until: Some(T0 + 2 * DAY + 1),
        })
        .await
        .unwrap();
    assert_eq!(early["batches"], 2);
    assert_eq!(early["problems"].as_array().map(Vec::len), Some(1));
    assert_eq!(early["problems"][0]["vehicles"], 2);
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats["batches"].as_i64(), stats["items"].as_i64()),
        (Some(7), Some(21))
    );
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_backends_keep_the_contract_and_give_the_same_fleet_view() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = contract(
        Store::open(&dir.path().join("c.db").display().to_string())
            .await
            .unwrap(),
    )
    .await;
    let pg = Postgres::start();
    let postgres = contract(Store::open(&pg.url).await.unwrap()).await;
    assert_eq!(sqlite, postgres);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_versioned_and_a_first_version_file_migrates() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    // A database the first collector wrote (its schema, no version table).
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(
            "CREATE TABLE batches (batch_id TEXT PRIMARY KEY, vehicle TEXT NOT NULL, sequence INTEGER NOT NULL,
                schema_version INTEGER NOT NULL, created_unix_ms INTEGER NOT NULL, received_unix_ms INTEGER NOT NULL,
                items INTEGER NOT NULL, payload BLOB NOT NULL);
             CREATE TABLE items (batch_id TEXT NOT NULL REFERENCES batches(batch_id), item_id TEXT NOT NULL,
                channel INTEGER NOT NULL, time_unix_ms INTEGER NOT NULL, text TEXT NOT NULL, locale TEXT NOT NULL, rating INTEGER);
             CREATE INDEX items_by_id ON items(item_id);
             CREATE TABLE problems (batch_id TEXT NOT NULL REFERENCES batches(batch_id), vehicle TEXT NOT NULL,
                label TEXT NOT NULL, count INTEGER NOT NULL, severity INTEGER NOT NULL, sentiment REAL NOT NULL,
                improvement TEXT NOT NULL, keywords TEXT NOT NULL, channels TEXT NOT NULL, quotes TEXT NOT NULL,
                window_end_unix_ms INTEGER NOT NULL);
             INSERT INTO batches VALUES ('0f8fad5b-d9cb-469f-a165-70867728950e', 'car-old', 3, 1, 5, 5, 1, x'');
             INSERT INTO items VALUES ('0f8fad5b-d9cb-469f-a165-70867728950e', 'old-1', 1, 5, 'old text', 'en', NULL);
             INSERT INTO problems VALUES ('0f8fad5b-d9cb-469f-a165-70867728950e', 'car-old', 'Screen Lag', 2, 2, -0.5,
                'fix it', '[\"lag\"]', '[1]', '[\"old quote\"]', 5);",
        )
        .unwrap();
    }
    let store = Store::open(&path.display().to_string()).await.unwrap();
    let fleet = store.fleet(Window::default()).await.unwrap();
    assert_eq!(fleet["problems"][0]["key"], "screen lag");
    assert_eq!(fleet["batches"], 1);
    let (put, seq) = store
        .put(
            batch(9, "car-old", 4, 0, &[("screen lag", &["lag"], 1, 1)]),
            T0,
        )
        .await
        .unwrap();
    assert_eq!((put, seq), (Put::Accepted, 4));
    let fleet = store.fleet(Window::default()).await.unwrap();
    assert_eq!(
        fleet["problems"][0]["count"], 3,
        "old and new rows meet under one key"
    );
    drop(store);

    // A schema newer than this collector knows is refused by name, not guessed at.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("INSERT INTO cabin_schema VALUES (99, 0)", [])
        .unwrap();
    match Store::open(&path.display().to_string()).await {
        Err(StoreError::NewerSchema { found: 99, .. }) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer schema was opened"),
    }

    // PostgreSQL: a second collector on the same database finds nothing left to migrate.
    let pg = Postgres::start();
    let (first, second) = tokio::join!(Store::open(&pg.url), Store::open(&pg.url));
    let (first, second) = (first.unwrap(), second.unwrap());
    first.put(batch(1, "car-a", 1, 0, &[]), T0).await.unwrap();
    assert_eq!(
        second
            .put(batch(1, "car-a", 1, 0, &[]), T0)
            .await
            .unwrap()
            .0,
        Put::Duplicate
    );
}
