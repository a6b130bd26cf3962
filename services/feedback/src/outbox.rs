//! The outbox: redacted items wait here until they leave the car in a `FeedbackBatch`, and
//! nothing is lost or sent twice across SIGKILL or a power cut.
//!
//! Everything is a [`Journal`] record, written ahead of acting on it:
//! an item when it is accepted; a batch (id, sequence, the item ids, creation time) *before*
//! the batch is first handed to the uploader, so a retry after a crash rebuilds the same
//! bytes under the same id (the collector de-duplicates by it); an ack or a rejection when the
//! collector answered. Compaction rewrites only what is still live.
//!
//! Bounded: past `max_bytes` the policy drops the oldest waiting items (counted, and the
//! count survives restarts) or refuses new ones.

use std::path::{Path, PathBuf};

use cabin_proto::feedback::v1::{
    FeedbackBatch, ProblemSummary, RedactedItem, SCHEMA_VERSION, TimeWindow,
};
use prost::Message;
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::journal::{Journal, JournalError, Recovery, SyncTicket};
use cabin_common::fsutil::write_atomic;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the outbox is full ({bytes} of {max} bytes) and the policy refuses new items")]
    Full { bytes: u64, max: u64 },
    #[error("no batch {0:?} is waiting")]
    NoSuchBatch(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("item of {0} bytes is larger than a whole batch may be")]
    ItemTooLarge(usize),
}

/// What happens when the outbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Drop the oldest waiting items (never a batch already cut) and count them.
    #[default]
    DropOldest,
    /// Refuse new items until uploads make room.
    RefuseNew,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Live bytes (waiting items and cut batches) the outbox may hold.
    pub max_bytes: u64,
    /// Encoded size cap of one batch.
    pub max_batch_bytes: usize,
    pub max_batch_items: usize,
    pub when_full: FullPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 32 * 1024 * 1024,
            max_batch_bytes: 256 * 1024,
            max_batch_items: 500,
            when_full: FullPolicy::DropOldest,
        }
    }
}

/// Counters that survive restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub accepted_items: u64,
    pub uploaded_batches: u64,
    pub uploaded_items: u64,
    pub dropped_items: u64,
    pub rejected_batches: u64,
    pub quarantined_records: u64,
    pub last_sequence: u64,
}

/// A batch ready to send: the same id and bytes every time it is handed out.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub batch_id: String,
    pub sequence: u64,
    pub items: usize,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BatchRecord {
    id: String,
    sequence: u64,
    created_unix_ms: i64,
    items: Vec<String>,
    /// The caller's summary of the batch, made once when it was cut (each `ProblemSummary`
    /// protobuf-encoded), so a retry sends the same bytes even after the analysis changes.
    /// None in journals written before summaries were kept.
    #[serde(default)]
    problems: Option<Vec<Vec<u8>>>,
}

/// What the caller makes of a batch's items when it is cut (the car's own reading of them;
/// the outbox knows nothing of how).
pub type Summariser<'a> = &'a dyn Fn(&[RedactedItem]) -> Vec<ProblemSummary>;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Control {
    Batch(BatchRecord),
    Ack { id: String },
    Reject { id: String, reason: String },
    Dropped { ids: Vec<String> },
    Counters(Counters),
}

const ITEM: u8 = b'I';
const CONTROL: u8 = b'C';

struct Sealed {
    record: BatchRecord,
    items: Vec<RedactedItem>,
}

pub struct Outbox {
    dir: PathBuf,
    journal: Arc<Journal>,
    limits: Limits,
    vehicle: String,
    waiting: Vec<RedactedItem>,
    sealed: Vec<Sealed>,
    counters: Counters,
    recovery: Recovery,
}

fn item_record(item: &RedactedItem) -> Vec<u8> {
    let mut out = vec![ITEM];
    item.encode(&mut out).ok();
    out
}

fn control_record(c: &Control) -> Vec<u8> {
    let mut out = vec![CONTROL];
    out.extend(serde_json::to_vec(c).unwrap_or_default());
    out
}

impl Outbox {
    /// Opens the outbox in `dir`, replaying its journal.
    pub fn open(dir: &Path, limits: Limits, vehicle: &str) -> Result<Self, OutboxError> {
        let (journal, records, recovery) = Journal::open(&dir.join("outbox.journal"))?;
        let mut outbox = Self {
            dir: dir.to_path_buf(),
            journal: Arc::new(journal),
            limits,
            vehicle: vehicle.to_string(),
            waiting: Vec::new(),
            sealed: Vec::new(),
            counters: Counters::default(),
            recovery,
        };
        for record in records {
            outbox.replay(&record);
        }
        outbox.counters.quarantined_records += outbox.recovery.quarantined.len() as u64;
        Ok(outbox)
    }

    fn replay(&mut self, record: &[u8]) {
        match record.split_first() {
            Some((&ITEM, body)) => match RedactedItem::decode(body) {
                Ok(item) => {
                    self.counters.accepted_items += 1;
                    self.waiting.push(item);
                }
                Err(e) => tracing::warn!(error = %e, "undecodable item in the outbox skipped"),
            },
            Some((&CONTROL, body)) => match serde_json::from_slice::<Control>(body) {
                Ok(control) => self.apply(control),
                Err(e) => tracing::warn!(error = %e, "undecodable outbox record skipped"),
            },
            _ => tracing::warn!("unknown outbox record skipped"),
        }
    }

    fn apply(&mut self, control: Control) {
        match control {
            Control::Batch(record) => {
                let mut items = Vec::new();
                for id in &record.items {
                    if let Some(at) = self.waiting.iter().position(|i| &i.id == id) {
                        items.push(self.waiting.remove(at));
                    }
                }
                self.counters.last_sequence = self.counters.last_sequence.max(record.sequence);
                self.sealed.push(Sealed { record, items });
            }
            Control::Ack { id } => {
                if let Some(at) = self.sealed.iter().position(|b| b.record.id == id) {
                    let batch = self.sealed.remove(at);
                    self.counters.uploaded_batches += 1;
                    self.counters.uploaded_items += batch.items.len() as u64;
                }
            }
            Control::Reject { id, .. } => {
                if let Some(at) = self.sealed.iter().position(|b| b.record.id == id) {
                    self.sealed.remove(at);
                    self.counters.rejected_batches += 1;
                }
            }
            Control::Dropped { ids } => {
                self.waiting.retain(|i| !ids.contains(&i.id));
                self.counters.dropped_items += ids.len() as u64;
            }
            Control::Counters(c) => {
                // Written at compaction: the totals of everything compacted away.
                self.counters = c;
            }
        }
    }

    fn live_bytes(&self) -> u64 {
        let items = self
            .waiting
            .iter()
            .chain(self.sealed.iter().flat_map(|b| b.items.iter()));
        items.map(|i| i.encoded_len() as u64 + 16).sum()
    }

    /// Accepts an item (already redacted); returns once it is on disk.
    pub fn submit(&mut self, item: RedactedItem) -> Result<(), OutboxError> {
        self.submit_many(vec![item])
    }

    /// Accepts items together (one write, one sync); returns once all are on disk.
    pub fn submit_many(&mut self, items: Vec<RedactedItem>) -> Result<(), OutboxError> {
        let ticket = self.stage_many(items)?;
        Ok(self.journal.sync(ticket)?)
    }

    /// The journal, to sync a ticket of [`Outbox::stage_many`] without holding the outbox.
    pub fn journal(&self) -> Arc<Journal> {
        self.journal.clone()
    }

    /// The ids of the items waiting or in a batch not yet delivered.
    pub fn item_ids(&self) -> impl Iterator<Item = &str> {
        self.waiting
            .iter()
            .chain(self.sealed.iter().flat_map(|b| b.items.iter()))
            .map(|i| i.id.as_str())
    }

    /// Accepts items with one write and no sync: they are on disk once the ticket is synced on
    /// [`Outbox::journal`]. Callers sync after letting go of the outbox, so concurrent
    /// submissions share one fsync instead of queueing behind each other's.
    pub fn stage_many(&mut self, items: Vec<RedactedItem>) -> Result<SyncTicket, OutboxError> {
        let mut need = 0u64;
        for item in &items {
            let size = item.encoded_len();
            if size + 256 > self.limits.max_batch_bytes {
                return Err(OutboxError::ItemTooLarge(size));
            }
            need += size as u64 + 16;
        }
        if self.live_bytes() + need > self.limits.max_bytes {
            match self.limits.when_full {
                FullPolicy::RefuseNew => {
                    return Err(OutboxError::Full {
                        bytes: self.live_bytes(),
                        max: self.limits.max_bytes,
                    });
                }
                FullPolicy::DropOldest => {
                    let mut ids = Vec::new();
                    let mut freed = 0u64;
                    let over = self.live_bytes() + need - self.limits.max_bytes;
                    for old in &self.waiting {
                        if freed >= over {
                            break;
                        }
                        freed += old.encoded_len() as u64 + 16;
                        ids.push(old.id.clone());
                    }
                    if freed < over {
                        return Err(OutboxError::Full {
                            bytes: self.live_bytes(),
                            max: self.limits.max_bytes,
                        });
                    }
                    tracing::warn!(
                        dropped = ids.len(),
                        "outbox full: oldest waiting items dropped"
                    );
                    let control = Control::Dropped { ids };
                    // Synced with the items below (it is written before them).
                    let _ = self.journal.write(&[control_record(&control)])?;
                    self.apply(control);
                }
            }
        }
        let records: Vec<Vec<u8>> = items.iter().map(item_record).collect();
        let ticket = self.journal.write(&records)?;
        self.counters.accepted_items += items.len() as u64;
        self.waiting.extend(items);
        Ok(ticket)
    }

    /// The next batch to send: the oldest one already cut, else a new one cut from the waiting
    /// items and summarised once by `summarise` (its record, summary included, is on disk
    /// before this returns).
    pub fn next_batch(
        &mut self,
        now_unix_ms: i64,
        summarise: Summariser,
    ) -> Result<Option<Outgoing>, OutboxError> {
        if self.sealed.is_empty() && !self.waiting.is_empty() {
            self.cut(now_unix_ms, summarise)?;
        }
        Ok(self.sealed.first().map(|b| self.outgoing(b, summarise)))
    }

    fn cut(&mut self, now_unix_ms: i64, summarise: Summariser) -> Result<(), OutboxError> {
        let mut ids = Vec::new();
        let mut size = 256usize;
        for item in &self.waiting {
            let s = item.encoded_len() + 8;
            if !ids.is_empty()
                && (size + s > self.limits.max_batch_bytes
                    || ids.len() >= self.limits.max_batch_items)
            {
                break;
            }
            size += s;
            ids.push(item.id.clone());
        }
        let problems = summarise(&self.waiting[..ids.len()])
            .iter()
            .map(Message::encode_to_vec)
            .collect();
        let record = BatchRecord {
            id: new_batch_id(),
            sequence: self.counters.last_sequence + 1,
            created_unix_ms: now_unix_ms,
            items: ids,
            problems: Some(problems),
        };
        let control = Control::Batch(record);
        self.journal.append(&control_record(&control))?;
        self.apply(control);
        Ok(())
    }

    fn outgoing(&self, batch: &Sealed, summarise: Summariser) -> Outgoing {
        let times = batch.items.iter().map(|i| i.time_unix_ms);
        let window = TimeWindow {
            start_unix_ms: times.clone().min().unwrap_or(batch.record.created_unix_ms),
            end_unix_ms: times.max().unwrap_or(batch.record.created_unix_ms),
        };
        let message = FeedbackBatch {
            batch_id: batch.record.id.clone(),
            sequence: batch.record.sequence,
            vehicle_pseudonym: self.vehicle.clone(),
            window: Some(window),
            schema_version: SCHEMA_VERSION,
            // The car's own reading of the batch; the items are there to check it against.
            problems: match &batch.record.problems {
                Some(kept) => kept
                    .iter()
                    .filter_map(|b| ProblemSummary::decode(b.as_slice()).ok())
                    .collect(),
                None => summarise(&batch.items),
            },
            items: batch.items.clone(),
            created_unix_ms: batch.record.created_unix_ms,
        };
        Outgoing {
            batch_id: batch.record.id.clone(),
            sequence: batch.record.sequence,
            items: batch.items.len(),
            bytes: message.encode_to_vec(),
        }
    }

    /// The collector has the batch.
    pub fn ack(&mut self, batch_id: &str) -> Result<(), OutboxError> {
        if !self.sealed.iter().any(|b| b.record.id == batch_id) {
            return Err(OutboxError::NoSuchBatch(batch_id.into()));
        }
        let control = Control::Ack {
            id: batch_id.into(),
        };
        self.journal.append(&control_record(&control))?;
        self.apply(control);
        self.maybe_compact()?;
        Ok(())
    }

    /// The collector refused the batch for good: keep it aside with the reason, move on.
    pub fn reject(&mut self, batch_id: &str, reason: &str) -> Result<PathBuf, OutboxError> {
        let Some(batch) = self.sealed.iter().find(|b| b.record.id == batch_id) else {
            return Err(OutboxError::NoSuchBatch(batch_id.into()));
        };
        let aside = self.dir.join("rejected");
        std::fs::create_dir_all(&aside).map_err(|e| OutboxError::Io {
            path: aside.clone(),
            source: e,
        })?;
        let path = aside.join(format!("{batch_id}.pb"));
        let io = |path: &Path, e: std::io::Error| OutboxError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        // What was sent, with the summary made at the cut (a batch from a journal older than
        // kept summaries is set aside with its items only).
        let sent = self.outgoing(batch, &|_: &[RedactedItem]| Vec::new());
        write_atomic(&path, &sent.bytes).map_err(|e| io(&path, e))?;
        let why = aside.join(format!("{batch_id}.reason"));
        write_atomic(&why, reason.as_bytes()).map_err(|e| io(&why, e))?;
        let control = Control::Reject {
            id: batch_id.into(),
            reason: reason.into(),
        };
        self.journal.append(&control_record(&control))?;
        self.apply(control);
        Ok(path)
    }

    fn maybe_compact(&mut self) -> Result<(), OutboxError> {
        let live = self.live_bytes();
        if self.journal.len() < 1024 * 1024 || self.journal.len() < live * 4 {
            return Ok(());
        }
        self.compact()
    }

    /// Rewrites the journal with only what is live (and the running totals).
    pub fn compact(&mut self) -> Result<(), OutboxError> {
        let mut records = vec![control_record(&Control::Counters(Counters {
            // Replay adds the live items back.
            accepted_items: self.counters.accepted_items
                - self.waiting.len() as u64
                - self
                    .sealed
                    .iter()
                    .map(|b| b.items.len() as u64)
                    .sum::<u64>(),
            ..self.counters.clone()
        }))];
        for batch in &self.sealed {
            records.extend(batch.items.iter().map(item_record));
            records.push(control_record(&Control::Batch(batch.record.clone())));
        }
        records.extend(self.waiting.iter().map(item_record));
        self.journal.rewrite(&records)?;
        Ok(())
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Items waiting (not yet uploaded), in batches or not.
    pub fn pending_items(&self) -> usize {
        self.waiting.len() + self.sealed.iter().map(|b| b.items.len()).sum::<usize>()
    }

    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    pub fn journal_bytes(&self) -> u64 {
        self.journal.len()
    }
}

/// A random (version 4) UUID: batch and item ids, and the vehicle pseudonym.
pub fn new_batch_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_proto::feedback::v1::Channel;

    fn item(i: usize) -> RedactedItem {
        RedactedItem {
            id: format!("item-{i}"),
            channel: Channel::Hmi as i32,
            time_unix_ms: 1_700_000_000_000 + i as i64,
            text: format!("the screen lags ({i})"),
            locale: "en".into(),
            rating: None,
        }
    }

    /// A stand-in summary: one problem whose label counts the items.
    fn counting(items: &[RedactedItem]) -> Vec<ProblemSummary> {
        vec![ProblemSummary {
            label: format!("{} items", items.len()),
            count: items.len() as u32,
            ..ProblemSummary::default()
        }]
    }

    fn open(dir: &Path, limits: Limits) -> Outbox {
        Outbox::open(dir, limits, "veh-test").unwrap()
    }

    #[test]
    fn a_batch_keeps_its_id_and_bytes_across_a_restart_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let mut outbox = open(dir.path(), Limits::default());
            for i in 0..5 {
                outbox.submit(item(i)).unwrap();
            }
            outbox.next_batch(42, &counting).unwrap().unwrap()
        };
        assert_eq!(first.items, 5);
        let decoded = FeedbackBatch::decode(first.bytes.as_slice()).unwrap();
        assert_eq!(decoded.batch_id, first.batch_id);
        assert_eq!(decoded.sequence, 1);
        assert_eq!(decoded.schema_version, SCHEMA_VERSION);

        assert_eq!(decoded.problems.len(), 1);
        assert_eq!(decoded.problems[0].label, "5 items");

        // The summary was made once, at the cut: after a restart, even with an analysis that
        // reads the items differently now, the retry is the very same bytes.
        let mut outbox = open(dir.path(), Limits::default());
        let again = outbox
            .next_batch(99, &|_: &[RedactedItem]| Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(
            again, first,
            "a retry after a crash sends the very same batch"
        );
        outbox.submit(item(5)).unwrap();
        outbox.ack(&first.batch_id).unwrap();
        let next = outbox.next_batch(100, &counting).unwrap().unwrap();
        assert_ne!(next.batch_id, first.batch_id);
        assert_eq!(next.sequence, 2);
        assert_eq!(next.items, 1);
        outbox.ack(&next.batch_id).unwrap();
        assert!(outbox.next_batch(101, &counting).unwrap().is_none());
        assert_eq!(outbox.counters().uploaded_items, 6);
        drop(outbox);
        let outbox = open(dir.path(), Limits::default());
        assert_eq!(outbox.pending_items(), 0);
        assert_eq!(outbox.counters().uploaded_batches, 2);
    }

    #[test]
    fn batches_respect_the_size_and_count_caps() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_batch_items: 3,
            ..Limits::default()
        };
        let mut outbox = open(dir.path(), limits);
        for i in 0..7 {
            outbox.submit(item(i)).unwrap();
        }
        let mut sizes = Vec::new();
        while let Some(b) = outbox.next_batch(0, &counting).unwrap() {
            sizes.push(b.items);
            outbox.ack(&b.batch_id).unwrap();
        }
        assert_eq!(sizes, [3, 3, 1]);
    }

    #[test]
    fn full_outbox_drops_oldest_and_counts_or_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let one = item(0).encoded_len() as u64 + 16;
        let limits = Limits {
            max_bytes: one * 3,
            ..Limits::default()
        };
        let mut outbox = open(dir.path(), limits);
        for i in 0..5 {
            outbox.submit(item(i)).unwrap();
        }
        assert_eq!(outbox.pending_items(), 3);
        assert_eq!(outbox.counters().dropped_items, 2);
        drop(outbox);
        let outbox = open(dir.path(), limits);
        assert_eq!(
            outbox.counters().dropped_items,
            2,
            "the count survives a restart"
        );
        let batch_ids: Vec<String> = outbox.waiting.iter().map(|i| i.id.clone()).collect();
        assert_eq!(batch_ids, ["item-2", "item-3", "item-4"]);

        let dir = tempfile::tempdir().unwrap();
        let refusing = Limits {
            when_full: FullPolicy::RefuseNew,
            ..limits
        };
        let mut outbox = open(dir.path(), refusing);
        for i in 0..3 {
            outbox.submit(item(i)).unwrap();
        }
        assert!(matches!(
            outbox.submit(item(3)),
            Err(OutboxError::Full { .. })
        ));
    }

    #[test]
    fn rejected_batches_are_set_aside_with_their_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = open(dir.path(), Limits::default());
        outbox.submit(item(0)).unwrap();
        let batch = outbox.next_batch(0, &counting).unwrap().unwrap();
        let path = outbox
            .reject(&batch.batch_id, "HTTP 400: bad schema")
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), batch.bytes);
        assert!(outbox.next_batch(0, &counting).unwrap().is_none());
        assert_eq!(outbox.counters().rejected_batches, 1);
    }

    #[test]
    fn compaction_shrinks_the_journal_and_keeps_everything_live() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = open(dir.path(), Limits::default());
        for i in 0..50 {
            outbox.submit(item(i)).unwrap();
            let b = outbox.next_batch(0, &counting).unwrap().unwrap();
            outbox.ack(&b.batch_id).unwrap();
        }
        outbox.submit(item(99)).unwrap();
        let before = outbox.journal_bytes();
        outbox.compact().unwrap();
        assert!(outbox.journal_bytes() < before / 5);
        drop(outbox);
        let outbox = open(dir.path(), Limits::default());
        assert_eq!(outbox.pending_items(), 1);
        assert_eq!(outbox.counters().uploaded_batches, 50);
        assert_eq!(outbox.counters().accepted_items, 51);
    }
}
