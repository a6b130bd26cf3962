//! The fleet backend: PostgreSQL through a connection pool (deadpool-postgres over
//! tokio-postgres, no TLS: the collector and its database share a host or a private network).
//!
//! A batch is one prepared statement ([`PUT_SQL`]), so it costs one round trip and one
//! transaction however many items it carries: items go in as an `unnest` of arrays, problems
//! as a `jsonb_to_recordset`.

use std::collections::BTreeMap;

use cabin_proto::feedback::v1::FeedbackBatch;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use prost::Message;
use tokio_postgres::NoTls;

use super::sqlite::{LABELS_SQL, TOTALS_SQL};
use super::{
    FleetRows, LabelRow, Put, QUOTES, STATS_SQL, StoreError, TOP_KEYWORDS, TOP_LABELS, Window,
    problem_key,
};

/// Connections in the pool: enough for 16 concurrent senders.
pub const POOL_SIZE: usize = 16;

/// Versioned schema steps; `cabin_schema` records which ran. Applied under an advisory lock,
/// so collectors started together migrate once.
pub const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    "CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        vehicle TEXT NOT NULL,
        sequence BIGINT NOT NULL,
        schema_version INTEGER NOT NULL,
        created_unix_ms BIGINT NOT NULL,
        received_unix_ms BIGINT NOT NULL,
        window_end_unix_ms BIGINT NOT NULL,
        items INTEGER NOT NULL,
        payload BYTEA NOT NULL
    );
    CREATE INDEX batches_by_vehicle ON batches (vehicle, sequence);
    CREATE INDEX batches_by_time ON batches (window_end_unix_ms);
    CREATE TABLE items (
        batch_id TEXT NOT NULL REFERENCES batches (batch_id) ON DELETE CASCADE,
        item_id TEXT NOT NULL,
        channel INTEGER NOT NULL,
        time_unix_ms BIGINT NOT NULL,
        text TEXT NOT NULL,
        locale TEXT NOT NULL,
        rating INTEGER
    );
    CREATE INDEX items_by_batch ON items (batch_id);
    CREATE TABLE problems (
        batch_id TEXT NOT NULL REFERENCES batches (batch_id) ON DELETE CASCADE,
        vehicle TEXT NOT NULL,
        label TEXT NOT NULL,
        label_key TEXT NOT NULL,
        count INTEGER NOT NULL,
        severity INTEGER NOT NULL,
        sentiment DOUBLE PRECISION NOT NULL,
        improvement TEXT NOT NULL,
        keywords TEXT[] NOT NULL,
        channels INTEGER[] NOT NULL,
        quotes TEXT[] NOT NULL,
        window_end_unix_ms BIGINT NOT NULL
    );
    CREATE INDEX problems_by_time ON problems (window_end_unix_ms);
    CREATE INDEX problems_by_key ON problems (label_key);",
)];

/// A whole batch in one statement (one round trip, one implicit transaction): the batch row
/// decides exactly-once (`ON CONFLICT DO NOTHING`; a concurrent duplicate waits on the primary
/// key, then inserts nothing), and its items and problems go in only where it went in. The
/// statement's snapshot does not see its own batch row, hence `GREATEST` for the sequence.
const PUT_SQL: &str = "
WITH b AS (
    INSERT INTO batches (batch_id, vehicle, sequence, schema_version, created_unix_ms,
        received_unix_ms, window_end_unix_ms, items, payload)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (batch_id) DO NOTHING
    RETURNING batch_id, sequence
), i AS (
    INSERT INTO items (batch_id, item_id, channel, time_unix_ms, text, locale, rating)
    SELECT b.batch_id, u.* FROM b,
        unnest($10::text[], $11::int4[], $12::int8[], $13::text[], $14::text[], $15::int4[]) AS u
), p AS (
    INSERT INTO problems (batch_id, vehicle, label, label_key, count, severity, sentiment,
        improvement, keywords, channels, quotes, window_end_unix_ms)
    SELECT b.batch_id, $2, x.label, x.label_key, x.count, x.severity, x.sentiment,
        x.improvement, x.keywords, x.channels, x.quotes, $7
    FROM b, jsonb_to_recordset($16::jsonb) AS x(label text, label_key text, count int4,
        severity int4, sentiment float8, improvement text, keywords text[], channels int4[],
        quotes text[])
)
SELECT EXISTS (SELECT 1 FROM b),
    GREATEST((SELECT MAX(sequence) FROM batches WHERE vehicle = $2), (SELECT sequence FROM b))";

const KEYWORDS_SQL: &str = "
SELECT label_key, kw FROM (
    SELECT p.label_key, k.kw,
        row_number() OVER (PARTITION BY p.label_key
            ORDER BY SUM(GREATEST(11 - k.ord, 1)) DESC, k.kw) AS rn
    FROM problems p, unnest(p.keywords) WITH ORDINALITY AS k(kw, ord)
    WHERE p.window_end_unix_ms >= $1 AND p.window_end_unix_ms < $2
    GROUP BY p.label_key, k.kw
) t WHERE rn <= $3";

const CHANNELS_SQL: &str = "
SELECT DISTINCT p.label_key, CAST(c AS BIGINT)
FROM problems p, unnest(p.channels) AS c
WHERE p.window_end_unix_ms >= $1 AND p.window_end_unix_ms < $2";

const QUOTES_SQL: &str = "
SELECT label_key, q FROM (
    SELECT p.label_key, q,
        row_number() OVER (PARTITION BY p.label_key ORDER BY MAX(p.window_end_unix_ms) DESC, q) AS rn
    FROM problems p, unnest(p.quotes) AS q
    WHERE p.window_end_unix_ms >= $1 AND p.window_end_unix_ms < $2
    GROUP BY p.label_key, q
) t WHERE rn <= $3";

pub struct PostgresStore {
    pool: Pool,
}

/// The error with its causes ("error connecting to server: Connection refused"), which
/// tokio-postgres keeps out of its own message.
fn pool_error(e: impl std::error::Error) -> StoreError {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    StoreError::Pool(text)
}

impl PostgresStore {
    /// Connects to `postgresql://USER@HOST:PORT/DB` and migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Url(url.into(), e.to_string()))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(pool_error)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<i64, StoreError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await?;
        // One collector migrates; the others wait here and then find nothing to do.
        tx.execute("SELECT pg_advisory_xact_lock(7431201)", &[])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS cabin_schema (version BIGINT PRIMARY KEY, applied_unix_ms BIGINT NOT NULL)",
        )
        .await?;
        let at: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM cabin_schema", &[])
            .await?
            .get(0);
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        if at > known {
            return Err(StoreError::NewerSchema { found: at, known });
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > at) {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO cabin_schema VALUES ($1, $2)", &[version, &now])
                .await?;
        }
        tx.commit().await?;
        Ok(known)
    }

    pub async fn put(
        &self,
        batch: &FeedbackBatch,
        received_unix_ms: i64,
    ) -> Result<(Put, u64), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client.prepare_cached(PUT_SQL).await?;
        let window_end = batch
            .window
            .as_ref()
            .map_or(batch.created_unix_ms, |w| w.end_unix_ms);
        let items = &batch.items;
        let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
        let channels: Vec<i32> = items.iter().map(|i| i.channel).collect();
        let times: Vec<i64> = items.iter().map(|i| i.time_unix_ms).collect();
        let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
        let locales: Vec<&str> = items.iter().map(|i| i.locale.as_str()).collect();
        let ratings: Vec<Option<i32>> = items.iter().map(|i| i.rating.map(|r| r as i32)).collect();
        let problems = serde_json::Value::Array(
            batch
                .problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "label": p.label,
                        "label_key": problem_key(p),
                        "count": p.count.min(i32::MAX as u32),
                        "severity": p.severity,
                        "sentiment": f64::from(p.sentiment),
                        "improvement": p.improvement,
                        "keywords": p.keywords,
                        "channels": p.channels,
                        "quotes": p.quotes,
                    })
                })
                .collect(),
        );
        let row = client
            .query_one(
                &statement,
                &[
                    &batch.batch_id,
                    &batch.vehicle_pseudonym,
                    &(batch.sequence as i64),
                    &(batch.schema_version as i32),
                    &batch.created_unix_ms,
                    &received_unix_ms,
                    &window_end,
                    &(batch.items.len() as i32),
                    &batch.encode_to_vec(),
                    &ids,
                    &channels,
                    &times,
                    &texts,
                    &locales,
                    &ratings,
                    &problems,
                ],
            )
            .await?;
        let inserted: bool = row.get(0);
        let seq: Option<i64> = row.get(1);
        let put = if inserted {
            Put::Accepted
        } else {
            Put::Duplicate
        };
        Ok((put, seq.unwrap_or(0) as u64))
    }

    pub async fn fleet(&self, window: Window) -> Result<FleetRows, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let (since, until) = window.bounds();
        let totals = client.query_one(TOTALS_SQL, &[&since, &until]).await?;
        let labels = client
            .query(LABELS_SQL, &[&since, &until, &TOP_LABELS])
            .await?
            .into_iter()
            .map(|r| LabelRow {
                key: r.get(0),
                label: r.get(1),
                vehicles: r.get(2),
                count: r.get(3),
                severity: r.get(4),
                sentiment: r.get(5),
                improvement: r.get(6),
                last_seen: r.get(7),
            })
            .collect();
        let pairs = |rows: Vec<tokio_postgres::Row>| -> Vec<(String, String)> {
            rows.into_iter().map(|r| (r.get(0), r.get(1))).collect()
        };
        let keywords = pairs(
            client
                .query(KEYWORDS_SQL, &[&since, &until, &TOP_KEYWORDS])
                .await?,
        );
        let quotes = pairs(client.query(QUOTES_SQL, &[&since, &until, &QUOTES]).await?);
        let channels = client
            .query(CHANNELS_SQL, &[&since, &until])
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(FleetRows {
            vehicles: totals.get(0),
            batches: totals.get(1),
            items: totals.get(2),
            labels,
            keywords,
            channels,
            quotes,
        })
    }

    pub async fn stats(&self) -> Result<(i64, i64, i64), StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let r = client.query_one(STATS_SQL, &[]).await?;
        Ok((r.get(0), r.get(1), r.get(2)))
    }

    pub async fn item_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        Ok(client
            .query("SELECT item_id, COUNT(*) FROM items GROUP BY item_id", &[])
            .await?
            .into_iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    pub async fn item_texts(&self) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        Ok(client
            .query("SELECT text FROM items ORDER BY ctid", &[])
            .await?
            .into_iter()
            .map(|r| r.get(0))
            .collect())
    }
}
