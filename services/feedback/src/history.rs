//! What the car remembers of its owners' feedback for local summaries: every accepted item
//! (already redacted), kept after it was uploaded and also when consent forbids uploading.
//!
//! One [`Journal`] of `RedactedItem` records, bounded by count and age: when either bound is
//! passed the journal is rewritten with what is left (oldest go first).

use std::path::Path;

use cabin_proto::feedback::v1::RedactedItem;
use prost::Message;
use serde::Deserialize;

use std::collections::HashSet;
use std::sync::Arc;

use crate::journal::{Journal, JournalError, Recovery, SyncTicket};

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    pub max_items: usize,
    pub max_age_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_items: 50_000,
            max_age_days: 400,
        }
    }
}

pub struct History {
    journal: Arc<Journal>,
    items: Vec<RedactedItem>,
    /// The ids of `items`: an import run again finds what it already added.
    ids: HashSet<String>,
    retention: Retention,
    recovery: Recovery,
}

impl History {
    pub fn open(dir: &Path, retention: Retention) -> Result<Self, JournalError> {
        let (journal, records, recovery) = Journal::open(&dir.join("history.journal"))?;
        let items: Vec<RedactedItem> = records
            .iter()
            .filter_map(|r| RedactedItem::decode(r.as_slice()).ok())
            .collect();
        Ok(Self {
            journal: Arc::new(journal),
            ids: items.iter().map(|i| i.id.clone()).collect(),
            items,
            retention,
            recovery,
        })
    }

    /// Records items; returns once they are on disk.
    pub fn add(&mut self, items: &[RedactedItem], now_unix_ms: i64) -> Result<(), JournalError> {
        let ticket = self.stage(items, now_unix_ms)?;
        self.journal.sync(ticket)
    }

    /// Records items without waiting for the disk: they are there once the ticket is synced
    /// on [`History::journal`] (which callers do after letting go of their lock).
    pub fn stage(
        &mut self,
        items: &[RedactedItem],
        now_unix_ms: i64,
    ) -> Result<SyncTicket, JournalError> {
        let records: Vec<Vec<u8>> = items.iter().map(|i| i.encode_to_vec()).collect();
        let ticket = self.journal.write(&records)?;
        self.items.extend_from_slice(items);
        self.ids.extend(items.iter().map(|i| i.id.clone()));
        self.enforce(now_unix_ms)?;
        Ok(ticket)
    }

    pub fn journal(&self) -> Arc<Journal> {
        self.journal.clone()
    }

    /// Whether an item with this id is kept.
    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn enforce(&mut self, now_unix_ms: i64) -> Result<(), JournalError> {
        let oldest = now_unix_ms - i64::from(self.retention.max_age_days) * 86_400_000;
        let before = self.items.len();
        self.items.retain(|i| i.time_unix_ms >= oldest);
        // Over the count, drop a tenth more than needed so rewrites stay rare.
        if self.items.len() > self.retention.max_items {
            let keep = self.retention.max_items - self.retention.max_items / 10;
            self.items.sort_by_key(|i| i.time_unix_ms);
            self.items.drain(..self.items.len() - keep);
        }
        if self.items.len() != before {
            self.ids = self.items.iter().map(|i| i.id.clone()).collect();
            let records: Vec<Vec<u8>> = self.items.iter().map(|i| i.encode_to_vec()).collect();
            self.journal.rewrite(&records)?;
        }
        Ok(())
    }

    /// Items whose time lies in `since..until` (Unix ms, end exclusive).
    pub fn between(&self, since: i64, until: i64) -> Vec<RedactedItem> {
        self.items
            .iter()
            .filter(|i| i.time_unix_ms >= since && i.time_unix_ms < until)
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, t: i64) -> RedactedItem {
        RedactedItem {
            id: id.into(),
            channel: 2,
            time_unix_ms: t,
            text: format!("item {id}"),
            locale: "en".into(),
            rating: None,
        }
    }

    #[test]
    fn items_survive_a_reopen_and_old_ones_age_out() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000;
        let now = 1_000 * day;
        let retention = Retention {
            max_items: 100,
            max_age_days: 30,
        };
        let mut h = History::open(dir.path(), retention).unwrap();
        h.add(
            &[item("old", now - 40 * day), item("a", now - day)],
            now - 40 * day,
        )
        .unwrap();
        h.add(&[item("b", now)], now).unwrap();
        drop(h);
        let h = History::open(dir.path(), retention).unwrap();
        let ids: Vec<String> = h.between(0, i64::MAX).into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(h.between(now - day, now).len(), 1);
    }

    #[test]
    fn the_count_bound_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention {
            max_items: 20,
            max_age_days: 10_000,
        };
        let mut h = History::open(dir.path(), retention).unwrap();
        for k in 0..25 {
            h.add(&[item(&k.to_string(), 1_000 + k)], 2_000).unwrap();
        }
        assert!(h.len() <= 20);
        let kept = h.between(0, i64::MAX);
        assert_eq!(kept.last().unwrap().id, "24");
        assert!(kept.iter().all(|i| i.time_unix_ms > 1_004));
        drop(h);
        assert_eq!(
            History::open(dir.path(), retention).unwrap().len(),
            kept.len()
        );
    }
}
