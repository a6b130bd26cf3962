//! Feedback throughput: `cargo bench -p cabin-feedback --bench throughput`.
//!
//! Prints one JSON object:
//! - `redact_analyse_items_per_s`: submissions → redacted items → recurring problems, over the
//!   labelled set (546 zh/en items), repeated;
//! - bytes per item on the wire: the gzip'd `FeedbackBatch` protobuf the uploader sends against
//!   gzip'd JSON of the same content (the reference an integrator would otherwise pick), and
//!   their ratio;
//! - fsynced outbox appends/s: one item per fsync, and ten per fsync (an import), on the disk
//!   holding `target/`;
//! - `Submit` with 8 concurrent submitters (the desk: redaction, outbox and history, each item
//!   on disk before the call returns), against the reference a user would otherwise pick for a
//!   durable queue: SQLite in WAL mode with `synchronous=FULL`, one insert per transaction from
//!   8 threads, on the same disk, in the same run.

use std::time::Instant;

use cabin_feedback::analysis::summarise;
use cabin_feedback::intake::{Submission, accept};
use cabin_feedback::outbox::{Limits, Outbox, new_batch_id};
use cabin_feedback::upload::gzip;
use cabin_proto::feedback::v1::{FeedbackBatch, RedactedItem, SCHEMA_VERSION, TimeWindow};
use prost::Message;

fn submissions() -> Vec<Submission> {
    include_str!("../tests/fixtures/feedback_set.jsonl")
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            Submission {
                channel: row["channel"].as_str().unwrap_or("app").into(),
                text: row["text"].as_str().unwrap_or("").into(),
                rating: row["rating"].as_i64(),
                locale: None,
                time_unix_ms: Some(1_790_000_000_000 + i as i64 * 60_000),
            }
        })
        .collect()
}

fn json_of(batch: &FeedbackBatch) -> Vec<u8> {
    let problems: Vec<serde_json::Value> = batch
        .problems
        .iter()
        .map(|p| {
            serde_json::json!({"label": p.label, "keywords": p.keywords, "count": p.count,
                "trend": p.trend, "channels": p.channels, "sentiment": p.sentiment,
                "severity": p.severity, "quotes": p.quotes, "improvement": p.improvement,
                "previous_count": p.previous_count})
        })
        .collect();
    let items: Vec<serde_json::Value> = batch
        .items
        .iter()
        .map(|i| {
            serde_json::json!({"id": i.id, "channel": i.channel, "time_unix_ms": i.time_unix_ms,
                "text": i.text, "locale": i.locale, "rating": i.rating})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "batch_id": batch.batch_id, "sequence": batch.sequence,
        "vehicle_pseudonym": batch.vehicle_pseudonym,
        "window": {"start_unix_ms": batch.window.as_ref().map(|w| w.start_unix_ms),
                   "end_unix_ms": batch.window.as_ref().map(|w| w.end_unix_ms)},
        "schema_version": batch.schema_version, "problems": problems, "items": items,
        "created_unix_ms": batch.created_unix_ms,
    }))
    .unwrap()
}

fn main() {
    let subs = submissions();
    // Real ids are random UUIDs: they cost the same few bytes in either format.
    let ids: Vec<String> = (0..subs.len()).map(|_| new_batch_id()).collect();
    let id = |i: usize| ids[i % ids.len()].clone();

    // Redact + analyse.
    let rounds = 5;
    let started = Instant::now();
    let mut items: Vec<RedactedItem> = Vec::new();
    for _ in 0..rounds {
        items = subs
            .iter()
            .enumerate()
            .map(|(i, s)| accept(s, id(i), 0).unwrap())
            .collect();
        std::hint::black_box(summarise(&items, &[], 3));
    }
    let per_s = (rounds * subs.len()) as f64 / started.elapsed().as_secs_f64();

    // Wire size: batches of 100 items, as the uploader cuts them.
    let (mut proto_bytes, mut json_bytes, mut raw_proto, mut raw_json) =
        (0usize, 0usize, 0usize, 0usize);
    for (n, chunk) in items.chunks(100).enumerate() {
        let batch = FeedbackBatch {
            batch_id: id(n),
            sequence: n as u64 + 1,
            vehicle_pseudonym: "veh-0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            window: Some(TimeWindow {
                start_unix_ms: chunk[0].time_unix_ms,
                end_unix_ms: chunk[chunk.len() - 1].time_unix_ms,
            }),
            schema_version: SCHEMA_VERSION,
            problems: summarise(chunk, &[], 3),
            items: chunk.to_vec(),
            created_unix_ms: 1_790_000_000_000,
        };
        let bytes = batch.encode_to_vec();
        raw_proto += bytes.len();
        proto_bytes += gzip(&bytes).len();
        let json = json_of(&batch);
        raw_json += json.len();
        json_bytes += gzip(&json).len();
    }
    let per_item = |b: usize| b as f64 / items.len() as f64;

    // Fsynced appends, on the disk that holds target/.
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let limits = Limits {
        max_bytes: 1 << 30,
        ..Limits::default()
    };
    let mut outbox = Outbox::open(dir.path(), limits, "veh-bench").unwrap();
    let n = 400;
    let started = Instant::now();
    for i in 0..n {
        outbox.submit(items[i % items.len()].clone()).unwrap();
    }
    let single = n as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for k in 0..n / 10 {
        let group: Vec<RedactedItem> = (0..10)
            .map(|j| items[(k * 10 + j) % items.len()].clone())
            .collect();
        outbox.submit_many(group).unwrap();
    }
    let grouped = n as f64 / started.elapsed().as_secs_f64();

    // 8 concurrent submitters through the desk, and the SQLite reference.
    let threads = 8;
    let per_thread = 250;
    let desk_dir = tempfile::tempdir_in(&base).unwrap();
    let desk = cabin_feedback::desk::Desk::open(
        desk_dir.path(),
        limits,
        cabin_feedback::history::Retention::default(),
        true,
    )
    .unwrap();
    let subs = submissions();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (desk, subs) = (&desk, &subs);
            scope.spawn(move || {
                for k in 0..per_thread {
                    let mut sub = subs[(t * per_thread + k) % subs.len()].clone();
                    sub.time_unix_ms = Some(1_790_000_000_000);
                    desk.submit(&sub, 1_790_000_000_000).unwrap();
                }
            });
        }
    });
    let concurrent = (threads * per_thread) as f64 / started.elapsed().as_secs_f64();
    let sqlite_dir = tempfile::tempdir_in(&base).unwrap();
    let db_path = sqlite_dir.path().join("queue.db");
    {
        let db = rusqlite::Connection::open(&db_path).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.execute_batch("CREATE TABLE queue (id TEXT PRIMARY KEY, item BLOB NOT NULL)")
            .unwrap();
    }
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (db_path, items) = (&db_path, &items);
            scope.spawn(move || {
                let db = rusqlite::Connection::open(db_path).unwrap();
                db.busy_timeout(std::time::Duration::from_secs(30)).unwrap();
                db.pragma_update(None, "synchronous", "FULL").unwrap();
                for k in 0..per_thread {
                    let item = &items[(t * per_thread + k) % items.len()];
                    db.execute(
                        "INSERT INTO queue VALUES (?1, ?2)",
                        rusqlite::params![format!("{t}-{k}"), item.encode_to_vec()],
                    )
                    .unwrap();
                }
            });
        }
    });
    let sqlite = (threads * per_thread) as f64 / started.elapsed().as_secs_f64();

    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "items": items.len(),
            "redact_analyse_items_per_s": per_s.round(),
            "wire_bytes_per_item_protobuf_gzip": per_item(proto_bytes),
            "wire_bytes_per_item_json_gzip": per_item(json_bytes),
            "wire_bytes_per_item_protobuf_raw": per_item(raw_proto),
            "wire_bytes_per_item_json_raw": per_item(raw_json),
            "protobuf_gzip_vs_json_gzip": proto_bytes as f64 / json_bytes as f64,
            "outbox_fsynced_appends_per_s": single.round(),
            "outbox_items_per_s_ten_per_fsync": grouped.round(),
            "submit_items_per_s_8_submitters": concurrent.round(),
            "sqlite_wal_full_items_per_s_8_threads": sqlite.round(),
            "submit_vs_sqlite": concurrent / sqlite,
            "cpu": cabin_common::host::cpu_name(),
        }))
        .unwrap()
    );
}
