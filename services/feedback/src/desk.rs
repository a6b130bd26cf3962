//! The feedback desk: everything cabin-feedbackd does, without the bus. Submissions and
//! imports are checked, redacted, kept for local summaries ([`History`]) and queued for
//! upload ([`Outbox`]) — each on disk before the caller hears "accepted". Consent and the
//! vehicle's pseudonym live in the state folder too.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cabin_common::fsutil::write_atomic;
use cabin_proto::feedback::v1::RedactedItem;
use serde::{Deserialize, Serialize};

use crate::analysis;
use crate::history::{History, Retention};
use crate::intake::{self, IntakeError, Submission};
use crate::journal::JournalError;
use crate::outbox::{Counters, Limits, Outbox, OutboxError, Outgoing, new_batch_id};

#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    /// Bad input: the caller can fix it.
    #[error(transparent)]
    Intake(#[from] IntakeError),
    #[error("{0}")]
    InvalidArgument(String),
    /// The outbox is full and the policy refuses new items.
    #[error(transparent)]
    Full(OutboxError),
    /// The disk failed us.
    #[error("storage: {0}")]
    Storage(String),
}

impl From<OutboxError> for DeskError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Full { .. } => DeskError::Full(e),
            OutboxError::ItemTooLarge(n) => {
                DeskError::InvalidArgument(format!("item of {n} bytes is too large for a batch"))
            }
            other => DeskError::Storage(other.to_string()),
        }
    }
}

impl From<JournalError> for DeskError {
    fn from(e: JournalError) -> Self {
        DeskError::Storage(e.to_string())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Settings {
    consent: bool,
    /// A random name for this car at the collector; never the VIN.
    vehicle_pseudonym: String,
}

/// Options of [`Desk::summary`].
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryOptions {
    pub max_quotes: usize,
    /// Only these channels (empty: all).
    pub channels: Vec<String>,
    /// At most this many problems, largest first.
    pub max_problems: usize,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        Self {
            max_quotes: 3,
            channels: Vec::new(),
            max_problems: 50,
        }
    }
}

pub struct Desk {
    settings_path: PathBuf,
    settings: Mutex<Settings>,
    outbox: Mutex<Outbox>,
    history: Mutex<History>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Desk {
    /// Opens (or creates) the desk's state in `dir`. `consent_default` applies until someone
    /// sets consent.
    pub fn open(
        dir: &Path,
        limits: Limits,
        retention: Retention,
        consent_default: bool,
    ) -> Result<Self, DeskError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| DeskError::Storage(format!("{}: {e}", dir.display())))?;
        let settings_path = dir.join("settings.json");
        let settings = match std::fs::read(&settings_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok(),
            Err(_) => None,
        };
        let settings = match settings {
            Some(s) => s,
            None => {
                let fresh = Settings {
                    consent: consent_default,
                    vehicle_pseudonym: format!("veh-{}", new_batch_id()),
                };
                save(&settings_path, &fresh)?;
                fresh
            }
        };
        let outbox = Outbox::open(dir, limits, &settings.vehicle_pseudonym)?;
        let history = History::open(dir, retention)?;
        for q in outbox
            .recovery()
            .quarantined
            .iter()
            .chain(&history.recovery().quarantined)
        {
            tracing::warn!(path = %q.display(), "damaged record quarantined");
        }
        Ok(Self {
            settings_path,
            settings: Mutex::new(settings),
            outbox: Mutex::new(outbox),
            history: Mutex::new(history),
        })
    }

    /// Checks, redacts and stores one submission; the id is returned once it is on disk.
    pub fn submit(&self, sub: &Submission, now_unix_ms: i64) -> Result<String, DeskError> {
        let item = intake::accept(sub, new_batch_id(), now_unix_ms)?;
        let id = item.id.clone();
        self.store(vec![item], now_unix_ms, false)?;
        Ok(id)
    }

    /// Imports an export: every row is checked first, so one bad row stores nothing. Each
    /// row's id is derived from its content (and which repeat of that content it is in the
    /// file), so importing the same export again — say after a crash kept only a prefix of the
    /// first run — adds only the rows not already there. Returns how many rows were added.
    pub fn import(
        &self,
        bytes: &[u8],
        format: &str,
        default_channel: &str,
        now_unix_ms: i64,
    ) -> Result<usize, DeskError> {
        let subs = intake::parse_export(bytes, format, default_channel)?;
        let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
        let items = subs
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let content = import_key(s);
                let repeat = seen.entry(content.clone()).or_default();
                *repeat += 1;
                let id = import_id(&content, *repeat);
                intake::accept(s, id, now_unix_ms).map_err(|e| IntakeError::BadLine {
                    line: n + 1,
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.store(items, now_unix_ms, true)
    }

    /// Stores items (with `skip_known`, those whose id is not already kept); returns how many
    /// went into the outbox.
    ///
    /// The outbox is written and synced first, the history after: a history record on disk
    /// means its outbox record reached the disk before it (and is still queued, delivered or
    /// dropped by policy), so an item found in the history is never queued again. Each lock is
    /// held only to write; the fsyncs come after, shared with whoever else submitted meanwhile
    /// (group commit).
    fn store(
        &self,
        items: Vec<RedactedItem>,
        now_unix_ms: i64,
        skip_known: bool,
    ) -> Result<usize, DeskError> {
        // Outbox first: a submission it refuses (full, refuse_new) leaves no trace anywhere.
        // Older items it drops to make room stay in the history, still summarised on the car.
        let (queue, outbox, written) = {
            let mut outbox = lock(&self.outbox);
            let queue: Vec<RedactedItem> = if skip_known {
                let history = lock(&self.history);
                let queued: std::collections::HashSet<&str> = outbox.item_ids().collect();
                items
                    .iter()
                    .filter(|i| !queued.contains(i.id.as_str()) && !history.contains(&i.id))
                    .cloned()
                    .collect()
            } else {
                items.clone()
            };
            if queue.is_empty() {
                (queue, outbox.journal(), None)
            } else {
                let written = outbox.stage_many(queue.clone())?;
                (queue, outbox.journal(), Some(written))
            }
        };
        if let Some(written) = written {
            outbox.sync(written).map_err(OutboxError::from)?;
        }
        // Into the history: the new items, and any queued item a crash kept from it.
        let (history, written) = {
            let mut history = lock(&self.history);
            let missing: Vec<RedactedItem> = items
                .into_iter()
                .filter(|i| !history.contains(&i.id))
                .collect();
            if missing.is_empty() {
                return Ok(queue.len());
            }
            let written = history.stage(&missing, now_unix_ms)?;
            (history.journal(), written)
        };
        history.sync(written)?;
        Ok(queue.len())
    }

    /// The recurring problems of `since..until` (Unix ms; 0 and `i64::MAX` for open ends),
    /// with trends against the window of the same length before, as JSON.
    pub fn summary(
        &self,
        since: i64,
        until: i64,
        options: &SummaryOptions,
    ) -> Result<serde_json::Value, DeskError> {
        if since < 0 || until <= since {
            return Err(DeskError::InvalidArgument(format!(
                "empty window: since {since} must be ≥ 0 and before until {until}"
            )));
        }
        let channels = options
            .channels
            .iter()
            .map(|c| intake::parse_channel(c).map(|c| c as i32))
            .collect::<Result<Vec<_>, _>>()?;
        let keep = |items: Vec<RedactedItem>| -> Vec<RedactedItem> {
            items
                .into_iter()
                .filter(|i| channels.is_empty() || channels.contains(&i.channel))
                .collect()
        };
        let (items, previous) = {
            let history = lock(&self.history);
            let items = keep(history.between(since, until));
            let previous = if since > 0 && until < i64::MAX {
                keep(history.between(since.saturating_sub(until - since), since))
            } else {
                Vec::new()
            };
            (items, previous)
        };
        let mut problems = analysis::summarise(&items, &previous, options.max_quotes);
        problems.truncate(options.max_problems);
        Ok(serde_json::json!({
            "since": since,
            "until": until,
            "items": items.len(),
            "previous_items": previous.len(),
            "problems": problems.iter().map(problem_json).collect::<Vec<_>>(),
        }))
    }

    pub fn consent(&self) -> bool {
        lock(&self.settings).consent
    }

    pub fn set_consent(&self, consent: bool) -> Result<(), DeskError> {
        let mut settings = lock(&self.settings);
        let mut next = settings.clone();
        next.consent = consent;
        save(&self.settings_path, &next)?;
        *settings = next;
        Ok(())
    }

    pub fn vehicle_pseudonym(&self) -> String {
        lock(&self.settings).vehicle_pseudonym.clone()
    }

    pub fn pending(&self) -> usize {
        lock(&self.outbox).pending_items()
    }

    pub fn counters(&self) -> Counters {
        lock(&self.outbox).counters().clone()
    }

    /// The next batch to upload (the same id and bytes until it is acked or rejected), with
    /// the car's reading of its items made once, when it is cut.
    pub fn next_batch(&self, now_unix_ms: i64) -> Result<Option<Outgoing>, DeskError> {
        let summarise = |items: &[RedactedItem]| crate::analysis::summarise(items, &[], 3);
        Ok(lock(&self.outbox).next_batch(now_unix_ms, &summarise)?)
    }

    pub fn ack(&self, batch_id: &str) -> Result<(), DeskError> {
        Ok(lock(&self.outbox).ack(batch_id)?)
    }

    /// Sets a refused batch aside (with the reason) in `rejected/`.
    pub fn reject(&self, batch_id: &str, reason: &str) -> Result<PathBuf, DeskError> {
        Ok(lock(&self.outbox).reject(batch_id, reason)?)
    }
}

/// What identifies an imported row: everything it says, not when it was imported.
fn import_key(s: &Submission) -> String {
    format!(
        "{}\u{0}{}\u{0}{:?}\u{0}{:?}\u{0}{:?}",
        s.channel.trim().to_ascii_lowercase(),
        s.text.trim(),
        s.rating,
        s.locale,
        s.time_unix_ms
    )
}

/// `imp-` and 128 bits of the SHA-256 of the row's content and repeat number.
fn import_id(content: &str, repeat: u32) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(content.as_bytes())
        .chain_update(repeat.to_le_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("imp-{hex}")
}

fn save(path: &Path, settings: &Settings) -> Result<(), DeskError> {
    let bytes = serde_json::to_vec_pretty(settings).unwrap_or_default();
    write_atomic(path, &bytes).map_err(|e| DeskError::Storage(format!("{}: {e}", path.display())))
}

fn problem_json(p: &cabin_proto::feedback::v1::ProblemSummary) -> serde_json::Value {
    serde_json::json!({
        "label": p.label,
        "keywords": p.keywords,
        "count": p.count,
        "previous_count": p.previous_count,
        "trend": p.trend().as_str_name().trim_start_matches("TREND_").to_ascii_lowercase(),
        "channels": p.channels.iter().map(|c| analysis::channel_name(*c)).collect::<Vec<_>>(),
        "sentiment": p.sentiment,
        "severity": p.severity().as_str_name().trim_start_matches("SEVERITY_").to_ascii_lowercase(),
        "quotes": p.quotes,
        "improvement": p.improvement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk(dir: &Path) -> Desk {
        Desk::open(dir, Limits::default(), Retention::default(), false).unwrap()
    }

    fn sub(channel: &str, text: &str, t: i64) -> Submission {
        Submission {
            channel: channel.into(),
            text: text.into(),
            time_unix_ms: Some(t),
            ..Default::default()
        }
    }

    #[test]
    fn an_import_cut_short_by_a_crash_completes_when_run_again_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut export = String::new();
        for i in 0..40 {
            export.push_str(&format!(
                "{{\"text\": \"第{i}次：导航卡顿 the screen lags again ({i})\", \"channel\": \"app\", \"time\": {}}}\n",
                1_000 + i
            ));
        }
        // The same words twice in one export are two statements, kept both.
        for _ in 0..2 {
            export.push_str("{\"text\": \"座椅加热不热\", \"channel\": \"dealer\"}\n");
        }
        let d = desk(dir.path());
        assert_eq!(
            d.import(export.as_bytes(), "jsonl", "app", 5_000).unwrap(),
            42
        );
        assert_eq!(d.pending(), 42);
        assert_eq!(
            d.import(export.as_bytes(), "jsonl", "app", 6_000).unwrap(),
            0,
            "the same export again adds nothing"
        );
        drop(d);
        // A crash in the middle of the first run: only a prefix of its records reached the
        // outbox journal, and a shorter one the history (it is written after).
        for (name, keep) in [("outbox.journal", 0.6), ("history.journal", 0.3)] {
            let path = dir.path().join(name);
            let len = std::fs::metadata(&path).unwrap().len();
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len((len as f64 * keep) as u64).unwrap();
        }
        let d = desk(dir.path());
        let survived = d.pending();
        assert!((1..42).contains(&survived), "{survived}");
        assert_eq!(
            d.import(export.as_bytes(), "jsonl", "app", 7_000).unwrap(),
            42 - survived
        );
        assert_eq!(d.pending(), 42);
        let mut ids = std::collections::HashSet::new();
        while let Some(batch) = d.next_batch(8_000).unwrap() {
            let message = <cabin_proto::feedback::v1::FeedbackBatch as prost::Message>::decode(
                &batch.bytes[..],
            )
            .unwrap();
            for item in message.items {
                assert!(ids.insert(item.id.clone()), "{} queued twice", item.id);
            }
            d.ack(&batch.batch_id).unwrap();
        }
        assert_eq!(ids.len(), 42);
        let summary = d.summary(0, i64::MAX, &SummaryOptions::default()).unwrap();
        assert_eq!(summary["items"], 42, "the history has each row once");
        // Delivered rows are not queued again either.
        assert_eq!(
            d.import(export.as_bytes(), "jsonl", "app", 9_000).unwrap(),
            0
        );
    }

    #[test]
    fn a_submission_is_redacted_kept_and_queued_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let d = desk(dir.path());
        let id = d
            .submit(
                &sub("voice", "导航老是卡，打我电话13812345678", 1_000),
                2_000,
            )
            .unwrap();
        assert!(!id.is_empty());
        let pseudonym = d.vehicle_pseudonym();
        drop(d);
        let d = desk(dir.path());
        assert_eq!(d.pending(), 1);
        assert_eq!(d.vehicle_pseudonym(), pseudonym);
        let batch = d.next_batch(3_000).unwrap().unwrap();
        let text = String::from_utf8_lossy(&batch.bytes);
        assert!(text.contains("[PHONE]") && !text.contains("13812345678"));
        let summary = d.summary(0, i64::MAX, &SummaryOptions::default()).unwrap();
        assert_eq!(summary["items"], 1);
    }

    #[test]
    fn an_import_with_one_bad_row_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = desk(dir.path());
        let good = "{\"text\":\"the seat heater does not work\"}\n{\"text\":\"座椅加热不热\"}\n";
        assert_eq!(d.import(good.as_bytes(), "jsonl", "app", 5).unwrap(), 2);
        let bad = "{\"text\":\"fine\"}\n{\"text\":\"x\",\"rating\":9}\n";
        let err = d.import(bad.as_bytes(), "jsonl", "app", 5).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert_eq!(d.pending(), 2);
        assert!(matches!(
            d.import(b"a,b\n", "xml", "app", 5),
            Err(DeskError::Intake(IntakeError::UnknownFormat(_)))
        ));
    }

    #[test]
    fn a_refused_submission_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_bytes: 400,
            when_full: crate::outbox::FullPolicy::RefuseNew,
            ..Limits::default()
        };
        let d = Desk::open(dir.path(), limits, Retention::default(), false).unwrap();
        let mut refused = 0;
        for k in 0..20 {
            match d.submit(&sub("app", &format!("the screen lags, case {k}"), k), 100) {
                Ok(_) => {}
                Err(DeskError::Full(_)) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(refused > 0);
        let kept = d.summary(0, i64::MAX, &SummaryOptions::default()).unwrap()["items"].clone();
        assert_eq!(kept, d.pending());
    }

    #[test]
    fn consent_persists_and_summaries_compare_windows() {
        let dir = tempfile::tempdir().unwrap();
        let d = desk(dir.path());
        assert!(!d.consent());
        d.set_consent(true).unwrap();
        let day = 86_400_000;
        for k in 0..3 {
            d.submit(&sub("hmi", "the screen lags a lot", 10 * day + k), 11 * day)
                .unwrap();
        }
        d.submit(&sub("hmi", "the screen lags", 9 * day), 11 * day)
            .unwrap();
        drop(d);
        let d = desk(dir.path());
        assert!(d.consent());
        let s = d
            .summary(10 * day, 11 * day, &SummaryOptions::default())
            .unwrap();
        assert_eq!(s["items"], 3);
        assert_eq!(s["problems"][0]["count"], 3);
        assert_eq!(s["problems"][0]["previous_count"], 1);
        assert_eq!(s["problems"][0]["trend"], "rising");
        assert!(d.summary(5, 5, &SummaryOptions::default()).is_err());
        let only = SummaryOptions {
            channels: vec!["dealer".into()],
            ..Default::default()
        };
        assert_eq!(d.summary(0, i64::MAX, &only).unwrap()["items"], 0);
    }
}
