//! Where the collector keeps batches: PostgreSQL for a fleet (`postgresql://…`), or one SQLite
//! file for a desk and the simulator. Both keep the same contract:
//! - a batch is stored once, keyed by its id, in one transaction with its items and problem
//!   summaries; a duplicate delivery, even at the same moment as the first, changes nothing;
//! - the schema is versioned and migrated at start ([`MIGRATIONS`] per backend);
//! - the fleet view is aggregated by the database over a time window, never by reading every
//!   row into the process, and is the same JSON on both ([`fleet_json`]);
//! - problems are grouped by a key ([`problem_key`]: the car's language-free key, else the
//!   normalised label), so the same problem from different cars meets.

mod postgres;
mod sqlite;

use std::collections::BTreeMap;

use cabin_proto::feedback::v1::FeedbackBatch;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("collector database (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("collector database (PostgreSQL): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("collector database (PostgreSQL pool): {0}")]
    Pool(String),
    #[error("collector database URL {0:?}: {1}")]
    Url(String, String),
    #[error(
        "collector database: schema version {found} is newer than this collector knows ({known})"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("collector database: a storage task failed: {0}")]
    Task(String),
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Accepted,
    /// Stored before under this id: nothing changed.
    Duplicate,
}

/// The time window of a fleet query, by the end of each batch's window (unix ms), `until`
/// excluded; `None` is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    fn bounds(self) -> (i64, i64) {
        (
            self.since.unwrap_or(i64::MIN),
            self.until.unwrap_or(i64::MAX),
        )
    }
}

/// The collector's database, either backend.
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Opens `postgresql://USER@HOST:PORT/DB` (or `postgres://`) with a connection pool, or a
    /// SQLite file for anything else; migrates the schema either way.
    pub async fn open(db: &str) -> Result<Store, StoreError> {
        if db.starts_with("postgresql://") || db.starts_with("postgres://") {
            Ok(Store::Postgres(PostgresStore::connect(db).await?))
        } else {
            Ok(Store::Sqlite(
                SqliteStore::open(std::path::Path::new(db)).await?,
            ))
        }
    }

    /// Which backend, for logs.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgresql",
        }
    }

    /// Stores a verified batch unless its id is already there; answers with the highest
    /// sequence now stored for its vehicle.
    pub async fn put(
        &self,
        batch: FeedbackBatch,
        received_unix_ms: i64,
    ) -> Result<(Put, u64), StoreError> {
        match self {
            Store::Sqlite(s) => s.put(batch, received_unix_ms).await,
            Store::Postgres(s) => s.put(&batch, received_unix_ms).await,
        }
    }

    /// Problems across the fleet in a window, aggregated by the database.
    pub async fn fleet(&self, window: Window) -> Result<serde_json::Value, StoreError> {
        let rows = match self {
            Store::Sqlite(s) => s.fleet(window).await?,
            Store::Postgres(s) => s.fleet(window).await?,
        };
        Ok(fleet_json(rows))
    }

    /// Exact counts of what is stored (`GET /v1/stats`): vehicles, batches and item rows.
    pub async fn stats(&self) -> Result<serde_json::Value, StoreError> {
        let (vehicles, batches, items) = match self {
            Store::Sqlite(s) => s.stats().await?,
            Store::Postgres(s) => s.stats().await?,
        };
        Ok(serde_json::json!({
            "backend": self.backend(),
            "vehicles": vehicles,
            "batches": batches,
            "items": items,
        }))
    }

    /// How often each item id was stored (exactly-once checks).
    pub async fn item_counts(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.item_counts().await,
            Store::Postgres(s) => s.item_counts().await,
        }
    }

    /// Every stored item's (redacted) text, oldest batch first.
    pub async fn item_texts(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.item_texts().await,
            Store::Postgres(s) => s.item_texts().await,
        }
    }
}

/// The key a reported problem is grouped by: the car analysis's own language-free key when it
/// sends one (`ProblemSummary.key`, e.g. `hmi_screen/lag`, so reports in Chinese and English
/// meet), else its normalised label.
pub fn problem_key(p: &cabin_proto::feedback::v1::ProblemSummary) -> String {
    let key = p.key.trim();
    if key.is_empty() {
        label_key(&p.label)
    } else {
        key.to_lowercase()
    }
}

/// The key a problem label is grouped by when there is no key: the car's analysis writes labels in the driver's
/// language and its own casing and spacing ("Screen lag", "screen  lag ", "ＣａｒＰｌａｙ断连"),
/// so case, full-width forms, runs of spaces and separators and trailing punctuation are
/// folded away.
pub fn label_key(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    let mut gap = false;
    for c in label.chars() {
        let c = match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            c => c,
        };
        if c.is_whitespace()
            || matches!(
                c,
                '_' | '-'
                    | '/'
                    | '·'
                    | '、'
                    | ','
                    | '，'
                    | '.'
                    | '。'
                    | ':'
                    | '：'
                    | ';'
                    | '；'
                    | '!'
                    | '！'
                    | '?'
                    | '？'
            )
        {
            gap = !out.is_empty();
            continue;
        }
        if gap {
            out.push(' ');
            gap = false;
        }
        out.extend(c.to_lowercase());
    }
    out
}

/// One label's aggregate, as both backends' SQL returns it.
#[derive(Debug, Clone, Default)]
pub struct LabelRow {
    pub key: String,
    /// The label as the most recent car wrote it.
    pub label: String,
    pub vehicles: i64,
    pub count: i64,
    pub severity: i64,
    pub sentiment: f64,
    pub improvement: String,
    pub last_seen: i64,
}

/// What the fleet queries return, before it becomes JSON.
#[derive(Debug, Clone, Default)]
pub struct FleetRows {
    pub vehicles: i64,
    pub batches: i64,
    pub items: i64,
    /// Most vehicles first, then most items.
    pub labels: Vec<LabelRow>,
    /// (key, keyword), best first per key, at most [`TOP_KEYWORDS`] each.
    pub keywords: Vec<(String, String)>,
    /// (key, channel number).
    pub channels: Vec<(String, i64)>,
    /// (key, quote), most recent first, at most [`QUOTES`] each.
    pub quotes: Vec<(String, String)>,
}

/// How many labels, keywords per label and quotes per label the view holds.
pub const TOP_LABELS: i64 = 200;
pub const TOP_KEYWORDS: i64 = 6;
pub const QUOTES: i64 = 3;

/// Exact counts: vehicles, batches, item rows.
pub const STATS_SQL: &str = "SELECT (SELECT COUNT(DISTINCT vehicle) FROM batches), (SELECT COUNT(*) FROM batches), (SELECT COUNT(*) FROM items)";

fn severity_name(s: i64) -> String {
    cabin_proto::feedback::v1::Severity::try_from(s as i32)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("SEVERITY_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| "unspecified".into())
}

fn channel_name(c: i64) -> String {
    cabin_proto::feedback::v1::Channel::try_from(c as i32)
        .map(|c| {
            c.as_str_name()
                .trim_start_matches("CHANNEL_")
                .to_ascii_lowercase()
                .replace('_', "-")
        })
        .unwrap_or_else(|_| "unspecified".into())
}

/// The `GET /v1/fleet` document, the same for both backends.
pub fn fleet_json(rows: FleetRows) -> serde_json::Value {
    let mut keywords: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, w) in &rows.keywords {
        keywords.entry(k).or_default().push(w);
    }
    let mut channels: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for (k, c) in &rows.channels {
        channels.entry(k).or_default().push(*c);
    }
    let mut quotes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, q) in &rows.quotes {
        quotes.entry(k).or_default().push(q);
    }
    let problems: Vec<serde_json::Value> = rows
        .labels
        .iter()
        .map(|l| {
            let mut ch = channels.remove(l.key.as_str()).unwrap_or_default();
            ch.sort_unstable();
            ch.dedup();
            serde_json::json!({
                "label": l.label,
                "key": l.key,
                "vehicles": l.vehicles,
                "count": l.count,
                "severity": severity_name(l.severity),
                "sentiment": (l.sentiment * 1000.0).round() / 1000.0,
                "channels": ch.into_iter().map(channel_name).collect::<Vec<_>>(),
                "keywords": keywords.remove(l.key.as_str()).unwrap_or_default(),
                "quotes": quotes.remove(l.key.as_str()).unwrap_or_default(),
                "improvement": l.improvement,
                "last_seen_unix_ms": l.last_seen,
            })
        })
        .collect();
    serde_json::json!({
        "vehicles": rows.vehicles,
        "batches": rows.batches,
        "items": rows.items,
        "problems": problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_different_cars_meet() {
        assert_eq!(label_key("Screen lag"), "screen lag");
        assert_eq!(label_key("  screen   lag. "), "screen lag");
        assert_eq!(label_key("screen-lag"), "screen lag");
        assert_eq!(label_key("ＣａｒＰｌａｙ 断连！"), "carplay 断连");
        assert_eq!(label_key("车机 卡顿"), label_key("车机　卡顿"));
        assert_ne!(label_key("seat heater"), label_key("seat heater fault"));
    }
}
