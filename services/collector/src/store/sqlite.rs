//! The embedded backend: one SQLite file (WAL, `synchronous=FULL`: an answered upload survives
//! a power cut of the collector) behind one connection, for desks and the simulator. The
//! blocking calls run on tokio's blocking pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cabin_proto::feedback::v1::FeedbackBatch;
use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    FleetRows, LabelRow, Put, QUOTES, STATS_SQL, StoreError, TOP_KEYWORDS, TOP_LABELS, Window,
    problem_key,
};

/// Versioned schema steps; `cabin_schema` records which ran. Version 1 is the schema of the
/// first collector (created with IF NOT EXISTS, so its databases migrate too).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE IF NOT EXISTS batches (
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
        CREATE INDEX IF NOT EXISTS problems_by_label ON problems(label);",
    ),
    (
        2,
        "ALTER TABLE problems ADD COLUMN label_key TEXT NOT NULL DEFAULT '';
        UPDATE problems SET label_key = lower(trim(label));
        DROP INDEX IF EXISTS problems_by_label;
        CREATE INDEX problems_by_time ON problems(window_end_unix_ms);
        CREATE INDEX problems_by_key ON problems(label_key);
        ALTER TABLE batches ADD COLUMN window_end_unix_ms INTEGER NOT NULL DEFAULT 0;
        UPDATE batches SET window_end_unix_ms = created_unix_ms;
        CREATE INDEX batches_by_vehicle ON batches(vehicle, sequence);
        CREATE INDEX batches_by_time ON batches(window_end_unix_ms);",
    ),
];

pub struct SqliteStore {
    db: Arc<Mutex<Connection>>,
}

/// The schema version a database is at after [`migrate`].
pub fn migrate(db: &mut Connection) -> Result<i64, StoreError> {
    db.execute_batch(
        "CREATE TABLE IF NOT EXISTS cabin_schema (version INTEGER PRIMARY KEY, applied_unix_ms INTEGER NOT NULL)",
    )?;
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let at: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM cabin_schema",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if at > known {
        return Err(StoreError::NewerSchema { found: at, known });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > at) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO cabin_schema VALUES (?1, ?2)",
            params![version, now_ms()],
        )?;
    }
    tx.commit()?;
    Ok(known)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn put_sync(
    db: &mut Connection,
    batch: &FeedbackBatch,
    received_unix_ms: i64,
) -> Result<(Put, u64), StoreError> {
    let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let known: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM batches WHERE batch_id = ?1",
            params![batch.batch_id],
            |r| r.get(0),
        )
        .optional()?;
    let put = if known.is_some() {
        Put::Duplicate
    } else {
        let window_end = batch
            .window
            .as_ref()
            .map_or(batch.created_unix_ms, |w| w.end_unix_ms);
        tx.execute(
            "INSERT INTO batches (batch_id, vehicle, sequence, schema_version, created_unix_ms,
                received_unix_ms, items, payload, window_end_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                batch.batch_id,
                batch.vehicle_pseudonym,
                batch.sequence as i64,
                batch.schema_version,
                batch.created_unix_ms,
                received_unix_ms,
                batch.items.len() as i64,
                batch.encode_to_vec(),
                window_end,
            ],
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO items (batch_id, item_id, channel, time_unix_ms, text, locale, rating)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
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
        drop(insert);
        let mut insert = tx.prepare_cached(
            "INSERT INTO problems (batch_id, vehicle, label, label_key, count, severity, sentiment,
                improvement, keywords, channels, quotes, window_end_unix_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        for p in &batch.problems {
            insert.execute(params![
                batch.batch_id,
                batch.vehicle_pseudonym,
                p.label,
                problem_key(p),
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
        drop(insert);
        Put::Accepted
    };
    let seq: Option<i64> = tx.query_row(
        "SELECT MAX(sequence) FROM batches WHERE vehicle = ?1",
        params![batch.vehicle_pseudonym],
        |r| r.get(0),
    )?;
    tx.commit()?;
    Ok((put, seq.unwrap_or(0) as u64))
}

/// The labels' aggregates in a window; the same SQL runs on PostgreSQL.
pub const LABELS_SQL: &str = "
WITH w AS (
    SELECT * FROM problems WHERE window_end_unix_ms >= $1 AND window_end_unix_ms < $2
), latest AS (
    SELECT DISTINCT label_key,
        first_value(label) OVER (PARTITION BY label_key ORDER BY window_end_unix_ms DESC) AS label,
        first_value(improvement) OVER (PARTITION BY label_key
            ORDER BY CASE WHEN improvement = '' THEN 1 ELSE 0 END, window_end_unix_ms DESC) AS improvement
    FROM w
)
SELECT a.label_key, l.label, a.vehicles, a.count, a.severity, a.sentiment, l.improvement, a.last_seen
FROM (
    SELECT label_key,
        COUNT(DISTINCT vehicle) AS vehicles,
        CAST(SUM(count) AS BIGINT) AS count,
        CAST(MAX(severity) AS BIGINT) AS severity,
        CAST(COALESCE(SUM(sentiment * count) / NULLIF(SUM(count), 0), 0) AS DOUBLE PRECISION) AS sentiment,
        CAST(MAX(window_end_unix_ms) AS BIGINT) AS last_seen
    FROM w GROUP BY label_key
) a JOIN latest l ON l.label_key = a.label_key
ORDER BY a.vehicles DESC, a.count DESC, a.label_key
LIMIT $3";

/// Totals in a window; the same SQL runs on PostgreSQL.
pub const TOTALS_SQL: &str = "
SELECT COUNT(DISTINCT vehicle), COUNT(*), CAST(COALESCE(SUM(items), 0) AS BIGINT)
FROM batches WHERE window_end_unix_ms >= $1 AND window_end_unix_ms < $2";

const KEYWORDS_SQL: &str = "
SELECT label_key, kw FROM (
    SELECT p.label_key, k.value AS kw,
        row_number() OVER (PARTITION BY p.label_key
            ORDER BY SUM(MAX(10 - CAST(k.key AS INTEGER), 1)) DESC, k.value) AS rn
    FROM problems p, json_each(p.keywords) k
    WHERE p.window_end_unix_ms >= ?1 AND p.window_end_unix_ms < ?2
    GROUP BY p.label_key, k.value
) WHERE rn <= ?3";

const CHANNELS_SQL: &str = "
SELECT DISTINCT p.label_key, CAST(c.value AS INTEGER)
FROM problems p, json_each(p.channels) c
WHERE p.window_end_unix_ms >= ?1 AND p.window_end_unix_ms < ?2";

const QUOTES_SQL: &str = "
SELECT label_key, q FROM (
    SELECT p.label_key, q.value AS q,
        row_number() OVER (PARTITION BY p.label_key ORDER BY MAX(p.window_end_unix_ms) DESC, q.value) AS rn
    FROM problems p, json_each(p.quotes) q
    WHERE p.window_end_unix_ms >= ?1 AND p.window_end_unix_ms < ?2
    GROUP BY p.label_key, q.value
) WHERE rn <= ?3";

/// SQLite spells PostgreSQL's `$1` as `?1`.
fn sqlite_params(sql: &str) -> String {
    sql.replace('$', "?")
}

fn fleet_sync(db: &Connection, window: Window) -> Result<FleetRows, StoreError> {
    let (since, until) = window.bounds();
    let totals: (i64, i64, i64) =
        db.query_row(&sqlite_params(TOTALS_SQL), params![since, until], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let mut q = db.prepare_cached(&sqlite_params(LABELS_SQL))?;
    let labels = q
        .query_map(params![since, until, TOP_LABELS], |r| {
            Ok(LabelRow {
                key: r.get(0)?,
                label: r.get(1)?,
                vehicles: r.get(2)?,
                count: r.get(3)?,
                severity: r.get(4)?,
                sentiment: r.get(5)?,
                improvement: r.get(6)?,
                last_seen: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let pairs = |sql: &str, limit: i64| -> Result<Vec<(String, String)>, StoreError> {
        let mut q = db.prepare_cached(sql)?;
        let rows = q.query_map(params![since, until, limit], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    };
    let keywords = pairs(KEYWORDS_SQL, TOP_KEYWORDS)?;
    let quotes = pairs(QUOTES_SQL, QUOTES)?;
    let mut q = db.prepare_cached(CHANNELS_SQL)?;
    let channels = q
        .query_map(params![since, until], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FleetRows {
        vehicles: totals.0,
        batches: totals.1,
        items: totals.2,
        labels,
        keywords,
        channels,
        quotes,
    })
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let db = Self::blocking(move || {
            let mut db = Connection::open(&path)?;
            db.busy_timeout(std::time::Duration::from_secs(5))?;
            db.pragma_update(None, "journal_mode", "WAL")?;
            db.pragma_update(None, "synchronous", "FULL")?;
            db.pragma_update(None, "foreign_keys", "ON")?;
            migrate(&mut db)?;
            Ok(db)
        })
        .await?;
        Ok(Self {
            db: Arc::new(Mutex::new(db)),
        })
    }

    async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        Self::blocking(move || f(&mut db.lock().unwrap_or_else(|p| p.into_inner()))).await
    }

    pub async fn put(
        &self,
        batch: FeedbackBatch,
        received_unix_ms: i64,
    ) -> Result<(Put, u64), StoreError> {
        self.with(move |db| put_sync(db, &batch, received_unix_ms))
            .await
    }

    pub async fn fleet(&self, window: Window) -> Result<FleetRows, StoreError> {
        self.with(move |db| fleet_sync(db, window)).await
    }

    pub async fn stats(&self) -> Result<(i64, i64, i64), StoreError> {
        self.with(|db| Ok(db.query_row(STATS_SQL, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?))
            .await
    }

    pub async fn item_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        self.with(|db| {
            let mut q = db.prepare("SELECT item_id, COUNT(*) FROM items GROUP BY item_id")?;
            let rows = q.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    pub async fn item_texts(&self) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            let mut q = db.prepare("SELECT text FROM items ORDER BY rowid")?;
            let rows = q.query_map([], |r| r.get(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
