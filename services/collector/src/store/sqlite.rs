//! Batches in SQLite, each stored once: the batch row, its items and its problem summaries
//! go in one transaction keyed by the batch id, so a retry after a lost answer is a no-op.
//! `synchronous=FULL` in WAL mode: an answered upload survives a power cut of the collector.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cabin_proto::feedback::v1::FeedbackBatch;
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
#[error("collector database: {0}")]
pub struct StoreError(#[from] rusqlite::Error);

/// What storing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Accepted,
    /// Stored before under this id: nothing changed.
    Duplicate,
}

pub struct Store {
    db: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    vehicle TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    schema_version INTEGER NOT NULL,
    created_unix_ms INTEGER NOT NULL,
    received_unix_ms INTEGER NOT NULL,
    items INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    item_id TEXT NOT NULL,
    channel INTEGER NOT NULL,
    time_unix_ms INTEGER NOT NULL,
    text TEXT NOT NULL,
    locale TEXT NOT NULL,
    rating INTEGER
);
CREATE INDEX IF NOT EXISTS items_by_id ON items(item_id);
CREATE TABLE IF NOT EXISTS problems (
    batch_id TEXT NOT NULL REFERENCES batches(batch_id),
    vehicle TEXT NOT NULL,
    label TEXT NOT NULL,
    count INTEGER NOT NULL,
    severity INTEGER NOT NULL,
    sentiment REAL NOT NULL,
    improvement TEXT NOT NULL,
    keywords TEXT NOT NULL,
    channels TEXT NOT NULL,
    quotes TEXT NOT NULL,
    window_end_unix_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS problems_by_label ON problems(label);
";

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Connection::open(path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.execute_batch(SCHEMA)?;
        Ok(Self { db })
    }

    /// Stores a verified batch unless its id is already there.
    pub fn put(&mut self, batch: &FeedbackBatch, received_unix_ms: i64) -> Result<Put, StoreError> {
        let tx = self.db.transaction()?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM batches WHERE batch_id = ?1",
                params![batch.batch_id],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_some() {
            return Ok(Put::Duplicate);
        }
        tx.execute(
            "INSERT INTO batches VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                batch.batch_id,
                batch.vehicle_pseudonym,
                batch.sequence as i64,
                batch.schema_version,
                batch.created_unix_ms,
                received_unix_ms,
                batch.items.len() as i64,
                batch.encode_to_vec(),
            ],
        )?;
        {
            let mut insert = tx.prepare("INSERT INTO items VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
            for item in &batch.items {
                insert.execute(params![
                    batch.batch_id,
                    item.id,
                    item.channel,
                    item.time_unix_ms,
                    item.text,
                    item.locale,
                    item.rating,
                ])?;
            }
            let mut insert = tx.prepare(
                "INSERT INTO problems VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let window_end = batch
                .window
                .as_ref()
                .map_or(batch.created_unix_ms, |w| w.end_unix_ms);
            for p in &batch.problems {
                insert.execute(params![
                    batch.batch_id,
                    batch.vehicle_pseudonym,
                    p.label,
                    p.count,
                    p.severity,
                    f64::from(p.sentiment),
                    p.improvement,
                    serde_json::to_string(&p.keywords).unwrap_or_default(),
                    serde_json::to_string(&p.channels).unwrap_or_default(),
                    serde_json::to_string(&p.quotes).unwrap_or_default(),
                    window_end,
                ])?;
            }
        }
        tx.commit()?;
        Ok(Put::Accepted)
    }

    /// The highest sequence stored for a vehicle.
    pub fn acknowledged_sequence(&self, vehicle: &str) -> Result<u64, StoreError> {
        let seq: Option<i64> = self.db.query_row(
            "SELECT MAX(sequence) FROM batches WHERE vehicle = ?1",
            params![vehicle],
            |r| r.get(0),
        )?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// How often each item id was stored (exactly-once checks).
    pub fn item_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut q = self
            .db
            .prepare("SELECT item_id, COUNT(*) FROM items GROUP BY item_id")?;
        let rows = q.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored item's (redacted) text, oldest batch first.
    pub fn item_texts(&self) -> Result<Vec<String>, StoreError> {
        let mut q = self.db.prepare("SELECT text FROM items ORDER BY rowid")?;
        let rows = q.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Problems across the fleet: per label, how many vehicles and items, worst severity,
    /// channels, top keywords, a few quotes and the improvement point; most vehicles first.
    pub fn fleet(&self) -> Result<serde_json::Value, StoreError> {
        #[derive(Default)]
        struct Agg {
            vehicles: BTreeSet<String>,
            count: u64,
            severity: i64,
            sentiment_sum: f64,
            channels: BTreeSet<i64>,
            keywords: BTreeMap<String, u64>,
            quotes: Vec<String>,
            improvement: String,
            last_seen: i64,
        }
        let mut by_label: BTreeMap<String, Agg> = BTreeMap::new();
        let mut q = self.db.prepare(
            "SELECT vehicle, label, count, severity, sentiment, improvement, keywords, channels, quotes, window_end_unix_ms
             FROM problems ORDER BY window_end_unix_ms DESC",
        )?;
        let mut rows = q.query([])?;
        while let Some(r) = rows.next()? {
            let label: String = r.get(1)?;
            let a = by_label.entry(label).or_default();
            let count: i64 = r.get(2)?;
            a.vehicles.insert(r.get(0)?);
            a.count += count.max(0) as u64;
            a.severity = a.severity.max(r.get(3)?);
            a.sentiment_sum += r.get::<_, f64>(4)? * count as f64;
            if a.improvement.is_empty() {
                a.improvement = r.get(5)?;
            }
            let keywords: Vec<String> =
                serde_json::from_str(&r.get::<_, String>(6)?).unwrap_or_default();
            for (rank, k) in keywords.into_iter().enumerate() {
                *a.keywords.entry(k).or_default() += 10u64.saturating_sub(rank as u64).max(1);
            }
            let channels: Vec<i64> =
                serde_json::from_str(&r.get::<_, String>(7)?).unwrap_or_default();
            a.channels.extend(channels);
            let quotes: Vec<String> =
                serde_json::from_str(&r.get::<_, String>(8)?).unwrap_or_default();
            for quote in quotes {
                if a.quotes.len() < 3 && !a.quotes.contains(&quote) {
                    a.quotes.push(quote);
                }
            }
            a.last_seen = a.last_seen.max(r.get(9)?);
        }
        let mut problems: Vec<(String, Agg)> = by_label.into_iter().collect();
        problems.sort_by_key(|p| std::cmp::Reverse((p.1.vehicles.len(), p.1.count)));
        let severity = |s: i64| {
            cabin_proto::feedback::v1::Severity::try_from(s as i32)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("SEVERITY_")
                        .to_ascii_lowercase()
                })
                .unwrap_or_else(|_| "unspecified".into())
        };
        let channel = |c: i64| {
            cabin_proto::feedback::v1::Channel::try_from(c as i32)
                .map(|c| {
                    c.as_str_name()
                        .trim_start_matches("CHANNEL_")
                        .to_ascii_lowercase()
                        .replace('_', "-")
                })
                .unwrap_or_else(|_| "unspecified".into())
        };
        let totals: (i64, i64, i64) = self.db.query_row(
            "SELECT COUNT(DISTINCT vehicle), COUNT(*), COALESCE(SUM(items), 0) FROM batches",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(serde_json::json!({
            "vehicles": totals.0,
            "batches": totals.1,
            "items": totals.2,
            "problems": problems.into_iter().map(|(label, a)| {
                let mut keywords: Vec<(String, u64)> = a.keywords.into_iter().collect();
                keywords.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(&y.0)));
                serde_json::json!({
                    "label": label,
                    "vehicles": a.vehicles.len(),
                    "count": a.count,
                    "severity": severity(a.severity),
                    "sentiment": if a.count > 0 { a.sentiment_sum / a.count as f64 } else { 0.0 },
                    "channels": a.channels.into_iter().map(channel).collect::<Vec<_>>(),
                    "keywords": keywords.into_iter().take(6).map(|k| k.0).collect::<Vec<_>>(),
                    "quotes": a.quotes,
                    "improvement": a.improvement,
                    "last_seen_unix_ms": a.last_seen,
                })
            }).collect::<Vec<_>>(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_proto::feedback::v1::{ProblemSummary, RedactedItem};

    fn batch(id: &str, vehicle: &str, seq: u64, label: &str) -> FeedbackBatch {
        FeedbackBatch {
            batch_id: id.into(),
            sequence: seq,
            vehicle_pseudonym: vehicle.into(),
            schema_version: 1,
            items: vec![RedactedItem {
                id: format!("{id}-item"),
                channel: 1,
                time_unix_ms: 5,
                text: "the screen lags".into(),
                locale: "en".into(),
                rating: None,
            }],
            problems: vec![ProblemSummary {
                label: label.into(),
                keywords: vec!["lag".into()],
                count: 2,
                severity: 2,
                channels: vec![1],
                quotes: vec!["the screen lags".into()],
                improvement: "faster screen".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_batch_is_stored_once_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut s = Store::open(&path).unwrap();
        assert_eq!(
            s.put(&batch("b1", "v1", 1, "screen lag"), 9).unwrap(),
            Put::Accepted
        );
        assert_eq!(
            s.put(&batch("b1", "v1", 1, "screen lag"), 9).unwrap(),
            Put::Duplicate
        );
        drop(s);
        let mut s = Store::open(&path).unwrap();
        assert_eq!(
            s.put(&batch("b1", "v1", 1, "screen lag"), 9).unwrap(),
            Put::Duplicate
        );
        s.put(&batch("b2", "v2", 1, "screen lag"), 9).unwrap();
        s.put(&batch("b3", "v1", 2, "seat heater"), 9).unwrap();
        assert_eq!(s.acknowledged_sequence("v1").unwrap(), 2);
        assert!(s.item_counts().unwrap().values().all(|&n| n == 1));
        let fleet = s.fleet().unwrap();
        assert_eq!(fleet["vehicles"], 2);
        assert_eq!(fleet["batches"], 3);
        assert_eq!(fleet["problems"][0]["label"], "screen lag");
        assert_eq!(fleet["problems"][0]["vehicles"], 2);
        assert_eq!(fleet["problems"][0]["count"], 4);
        assert_eq!(fleet["problems"][0]["severity"], "medium");
        assert_eq!(fleet["problems"][0]["channels"][0], "voice");
    }
}
