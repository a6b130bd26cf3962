//! A fleet load generator: `cabin-collector load --url URL --vehicles N --batches M …` sends
//! what N cars would (real HTTP, protobuf + gzip, `Idempotency-Key`), from C concurrent
//! senders, with a share of batches delivered twice at the same moment, and retries what
//! OTLP/HTTP calls retryable (connection errors, 429, 502, 503, 504) until the collector takes
//! it — so the collector can be killed and restarted mid-run. Before and after, it reads the
//! collector's own counts and says whether they grew by exactly the fleet's batches.

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cabin_proto::feedback::v1::{
    CollectorResponse, FeedbackBatch, ProblemSummary, RedactedItem, TimeWindow, UploadStatus,
};
use prost::Message;
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The collector, e.g. `http://127.0.0.1:8787`.
    pub url: String,
    pub vehicles: usize,
    /// Batches per vehicle.
    pub batches: usize,
    /// Items per batch.
    pub items: usize,
    /// Share of batches delivered twice at once.
    pub dup_rate: f64,
    pub concurrency: usize,
    pub seed: u64,
    /// Give up on a batch that finds no collector for this long.
    pub patience: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            url: "http://127.0.0.1:8787".into(),
            vehicles: 100,
            batches: 5,
            items: 20,
            dup_rate: 0.25,
            concurrency: 16,
            seed: 1,
            patience: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub vehicles: u64,
    pub batches: u64,
    pub items: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub requests: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub retries: u64,
    pub seconds: f64,
    pub items_per_s: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub expected: Counts,
    /// What the collector's own counts (`GET /v1/stats`) grew by during the run.
    pub stored: Counts,
    pub exact: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("batch {batch}: no collector answered within {patience:?}: {last}")]
    Unreachable {
        batch: String,
        patience: Duration,
        last: String,
    },
    #[error("batch {batch}: refused with HTTP {status}: {message}")]
    Refused {
        batch: String,
        status: u16,
        message: String,
    },
    #[error("reading the collector's counts: {0}")]
    Stats(String),
}

/// Problems a fleet reports: (the analysis's key, labels as different cars spell them, a
/// statement, the improvement point). Cars in Chinese and English report the same key.
type Reported = (
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
);
const PROBLEMS: &[Reported] = &[
    (
        "hmi_screen/lag",
        &["screen lag", "Screen lag", "screen  lag"],
        "the centre screen lags when I switch apps",
        "optimise the HMI",
    ),
    (
        "hmi_screen/lag",
        &["车机卡顿", "车机 卡顿"],
        "车机反应很慢，点一下要等两秒",
        "优化车机响应速度",
    ),
    (
        "carplay/disconnect",
        &["CarPlay disconnects", "carplay disconnects"],
        "CarPlay keeps dropping on the highway",
        "stabilise the CarPlay link",
    ),
    (
        "voice_assistant/misrecognition",
        &["语音识别不准", "语音识别 不准"],
        "语音助手总是听错我说的地址",
        "提升语音识别准确率",
    ),
    (
        "seat_heater/not_working",
        &["seat heater fault", "Seat heater fault"],
        "the seat heater stops after five minutes",
        "check the seat heater relay",
    ),
    (
        "range/drops",
        &["续航虚标"],
        "冬天续航掉得太快了，表显400实际250",
        "校准续航估算",
    ),
    (
        "",
        &["wind noise", "Wind noise"],
        "loud wind noise from the driver door above 100",
        "improve door sealing",
    ),
    (
        "ota/failed",
        &["OTA failure", "ota failure"],
        "the update failed twice and rolled back",
        "make OTA resumable",
    ),
];

/// A version-4 UUID from the run's seeded generator, so a run is the same batches every time.
fn uuid(rng: &mut u64) -> String {
    let mut next = || {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng
    };
    let bytes = (u128::from(next()) << 64 | u128::from(next())).to_le_bytes();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// The batches of one run, deterministic for a seed.
pub fn fleet_batches(c: &LoadConfig) -> Vec<FeedbackBatch> {
    let mut rng = c.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let start = 1_796_083_200_000i64;
    let mut out = Vec::with_capacity(c.vehicles * c.batches);
    for v in 0..c.vehicles {
        for b in 0..c.batches {
            let id = uuid(&mut rng);
            let day = start + (b as i64) * 86_400_000;
            let (key, spellings, text, improvement) = PROBLEMS[(v * 3 + b) % PROBLEMS.len()];
            let label = spellings[v % spellings.len()];
            let items: Vec<RedactedItem> = (0..c.items)
                .map(|i| RedactedItem {
                    id: format!("s{}-v{v}-b{b}-i{i}", c.seed),
                    channel: 1 + (i % 5) as i32,
                    time_unix_ms: day + i as i64 * 1000,
                    text: format!("{text} ({i})"),
                    locale: if text.is_ascii() {
                        "en".into()
                    } else {
                        "zh".into()
                    },
                    rating: Some(1 + (i % 5) as u32),
                })
                .collect();
            out.push(FeedbackBatch {
                batch_id: id,
                sequence: b as u64 + 1,
                vehicle_pseudonym: format!("load-{}-vehicle-{v:06}", c.seed),
                window: Some(TimeWindow {
                    start_unix_ms: day,
                    end_unix_ms: day + 86_400_000,
                }),
                schema_version: 1,
                problems: vec![ProblemSummary {
                    label: label.into(),
                    key: key.into(),
                    keywords: text
                        .split_whitespace()
                        .take(3)
                        .map(str::to_string)
                        .collect(),
                    count: c.items as u32,
                    severity: 2,
                    channels: vec![1, 3],
                    quotes: vec![text.into()],
                    improvement: improvement.into(),
                    sentiment: -0.5,
                    ..Default::default()
                }],
                items,
                created_unix_ms: day + 86_400_000,
            });
        }
    }
    out
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

struct Tally {
    requests: AtomicUsize,
    accepted: AtomicUsize,
    duplicates: AtomicUsize,
    retries: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
}

/// Sends one batch until the collector answers 200 (accepted or duplicate).
fn deliver(
    agent: &ureq::Agent,
    c: &LoadConfig,
    batch_id: &str,
    body: &[u8],
    tally: &Tally,
) -> Result<(), LoadError> {
    let since = Instant::now();
    let mut backoff = Duration::from_millis(20);
    loop {
        let t = Instant::now();
        tally.requests.fetch_add(1, Ordering::Relaxed);
        let sent = agent
            .post(format!("{}/v1/feedback", c.url))
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .header("idempotency-key", batch_id)
            .send(body);
        let last = match sent {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                let bytes = resp.body_mut().read_to_vec().unwrap_or_default();
                let answer = CollectorResponse::decode(&bytes[..]).unwrap_or_default();
                match status {
                    200 => {
                        let us = t.elapsed().as_micros() as u64;
                        tally
                            .latencies_us
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(us);
                        let counter = if answer.status() == UploadStatus::Duplicate {
                            &tally.duplicates
                        } else {
                            &tally.accepted
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                    429 | 502 | 503 | 504 => format!("HTTP {status}"),
                    _ => {
                        return Err(LoadError::Refused {
                            batch: batch_id.into(),
                            status,
                            message: answer.message,
                        });
                    }
                }
            }
            Err(e) => e.to_string(),
        };
        if since.elapsed() > c.patience {
            return Err(LoadError::Unreachable {
                batch: batch_id.into(),
                patience: c.patience,
                last,
            });
        }
        tally.retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// What the collector holds, by its own count.
pub fn stored_counts(url: &str) -> Result<Counts, LoadError> {
    let mut resp = agent()
        .get(format!("{url}/v1/stats"))
        .call()
        .map_err(|e| LoadError::Stats(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(
        &resp
            .body_mut()
            .read_to_vec()
            .map_err(|e| LoadError::Stats(e.to_string()))?,
    )
    .map_err(|e| LoadError::Stats(e.to_string()))?;
    let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    Ok(Counts {
        vehicles: n("vehicles"),
        batches: n("batches"),
        items: n("items"),
    })
}

pub fn run(c: &LoadConfig) -> Result<LoadReport, LoadError> {
    let batches = fleet_batches(c);
    let bodies: Vec<(String, Vec<u8>, bool)> = {
        let mut rng = c.seed ^ 0x5eed;
        batches
            .iter()
            .map(|b| {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                let _ = e.write_all(&b.encode_to_vec());
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let twice = (rng % 10_000) as f64 / 10_000.0 < c.dup_rate;
                (b.batch_id.clone(), e.finish().unwrap_or_default(), twice)
            })
            .collect()
    };
    let tally = Tally {
        requests: AtomicUsize::new(0),
        accepted: AtomicUsize::new(0),
        duplicates: AtomicUsize::new(0),
        retries: AtomicUsize::new(0),
        latencies_us: Mutex::new(Vec::new()),
    };
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<LoadError>> = Mutex::new(None);
    let before = stored_counts(&c.url)?;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..c.concurrency.max(1) {
            scope.spawn(|| {
                let agent = agent();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, body, twice)) = bodies.get(k) else {
                        break;
                    };
                    if failure.lock().map_or(true, |f| f.is_some()) {
                        break;
                    }
                    let result = if *twice {
                        // The same batch from two connections at the same moment.
                        std::thread::scope(|pair| {
                            let other = pair.spawn(|| deliver(&self::agent(), c, id, body, &tally));
                            let mine = deliver(&agent, c, id, body, &tally);
                            let theirs = other.join().unwrap_or(Ok(()));
                            mine.and(theirs)
                        })
                    } else {
                        deliver(&agent, c, id, body, &tally)
                    };
                    if let Err(e) = result
                        && let Ok(mut f) = failure.lock()
                    {
                        f.get_or_insert(e);
                    }
                }
            });
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    if let Some(e) = failure.into_inner().unwrap_or(None) {
        return Err(e);
    }
    let mut lat = tally.latencies_us.into_inner().unwrap_or_default();
    lat.sort_unstable();
    let at = |q: f64| {
        lat.get(((lat.len().max(1) - 1) as f64 * q) as usize)
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    let expected = Counts {
        vehicles: c.vehicles as u64,
        batches: batches.len() as u64,
        items: batches.iter().map(|b| b.items.len() as u64).sum(),
    };
    let after = stored_counts(&c.url)?;
    let stored = Counts {
        vehicles: after.vehicles.saturating_sub(before.vehicles),
        batches: after.batches.saturating_sub(before.batches),
        items: after.items.saturating_sub(before.items),
    };
    Ok(LoadReport {
        requests: tally.requests.load(Ordering::Relaxed) as u64,
        accepted: tally.accepted.load(Ordering::Relaxed) as u64,
        duplicates: tally.duplicates.load(Ordering::Relaxed) as u64,
        retries: tally.retries.load(Ordering::Relaxed) as u64,
        seconds,
        items_per_s: expected.items as f64 / seconds.max(1e-9),
        latency_p50_ms: at(0.5),
        latency_p99_ms: at(0.99),
        exact: stored == expected,
        expected,
        stored,
    })
}
