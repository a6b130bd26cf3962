//! An append-only journal of checksummed records: the write-ahead log the outbox keeps
//! everything in. An append returns once the record is on disk; concurrent appends share one
//! `fdatasync` (group commit). A caller that holds its own lock can [`Journal::write`] under it
//! and [`Journal::sync`] after letting go, so its callers share the fsync too.
//!
//! Record: `magic "CBJ1" | len u32 LE | crc32 u32 LE | payload`. At open the file is read
//! back: a torn record at the end (a crash mid-write) is cut off; a damaged record with good
//! records after it is copied to `quarantine/` and skipped, never fatal. Compaction writes the
//! live records to a new file and renames it over the old one (atomic, folder fsynced).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

const MAGIC: [u8; 4] = *b"CBJ1";
const HEADER: usize = 12;
/// Larger records are refused (a batch is capped far below this).
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("record of {0} bytes is over the {MAX_RECORD}-byte limit")]
    TooLarge(usize),
}

/// What reading the journal back found besides good records.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Bytes cut from the end: a record torn by a crash.
    pub torn_tail_bytes: u64,
    /// Damaged records set aside in `quarantine/`.
    pub quarantined: Vec<PathBuf>,
}

struct Writer {
    file: File,
    /// Bytes written (not necessarily synced).
    written: u64,
    /// Bytes known to be on disk.
    synced: u64,
    /// Someone is syncing now.
    syncing: bool,
    /// Bumped by every rewrite: offsets of an older file are all on disk (the rewrite synced
    /// everything live).
    epoch: u64,
}

/// Where a write ended: [`Journal::sync`] returns once the journal is on disk up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "the records are not on disk until the ticket is synced"]
pub struct SyncTicket {
    epoch: u64,
    at: u64,
}

pub struct Journal {
    path: PathBuf,
    writer: Mutex<Writer>,
    synced: Condvar,
}

fn io(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits `bytes` into records; damaged stretches come back separately.
fn parse(bytes: &[u8]) -> (Vec<Vec<u8>>, Vec<(usize, usize)>, usize) {
    let mut records = Vec::new();
    let mut damaged = Vec::new();
    let mut at = 0;
    let mut good_end = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let ok = rest.len() >= HEADER && rest[..4] == MAGIC && {
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default()) as usize;
            let crc = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default());
            len <= MAX_RECORD
                && rest.len() >= HEADER + len
                && crc32fast::hash(&rest[HEADER..HEADER + len]) == crc
        };
        if ok {
            let len = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default()) as usize;
            records.push(rest[HEADER..HEADER + len].to_vec());
            at += HEADER + len;
            good_end = at;
            continue;
        }
        // Find the next magic that starts a good record.
        let next = (at + 1..bytes.len().saturating_sub(3))
            .find(|&i| bytes[i..i + 4] == MAGIC && parse_one(&bytes[i..]).is_some());
        match next {
            Some(n) => {
                damaged.push((at, n));
                at = n;
            }
            None => break,
        }
    }
    (records, damaged, good_end)
}

fn parse_one(rest: &[u8]) -> Option<usize> {
    if rest.len() < HEADER || rest[..4] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(rest[4..8].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(rest[8..12].try_into().ok()?);
    (len <= MAX_RECORD
        && rest.len() >= HEADER + len
        && crc32fast::hash(&rest[HEADER..HEADER + len]) == crc)
        .then_some(HEADER + len)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads back its records.
    pub fn open(path: &Path) -> Result<(Self, Vec<Vec<u8>>, Recovery), JournalError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io(path, e))?;
        let (records, damaged, good_end) = parse(&bytes);
        let mut recovery = Recovery::default();
        if !damaged.is_empty() {
            let qdir = dir.join("quarantine");
            fs::create_dir_all(&qdir).map_err(|e| io(&qdir, e))?;
            for (i, (start, end)) in damaged.iter().enumerate() {
                let q = qdir.join(format!(
                    "{}-{}-{i}.bin",
                    path.file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_millis())
                        .unwrap_or(0)
                ));
                fs::write(&q, &bytes[*start..*end]).map_err(|e| io(&q, e))?;
                tracing::warn!(journal = %path.display(), quarantined = %q.display(), bytes = end - start, "damaged journal record set aside");
                recovery.quarantined.push(q);
            }
        }
        // After the last good record nothing was quarantined: it is a write torn by a crash.
        let mut end = bytes.len() as u64;
        if (good_end as u64) < end {
            recovery.torn_tail_bytes = end - good_end as u64;
            file.set_len(good_end as u64).map_err(|e| io(path, e))?;
            file.sync_all().map_err(|e| io(path, e))?;
            end = good_end as u64;
        }
        if !damaged.is_empty() {
            // Rewrite without the damaged stretches so they are not met again.
            let journal = Self::from_file(path, file, end);
            journal.rewrite(&records)?;
            return Ok((journal, records, recovery));
        }
        file.seek(SeekFrom::End(0)).map_err(|e| io(path, e))?;
        Ok((Self::from_file(path, file, end), records, recovery))
    }

    fn from_file(path: &Path, file: File, len: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer {
                file,
                written: len,
                synced: len,
                syncing: false,
                epoch: 0,
            }),
            synced: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a record; returns when it is on disk.
    pub fn append(&self, payload: &[u8]) -> Result<(), JournalError> {
        self.append_many(std::slice::from_ref(&payload))
    }

    /// Appends records with one write and one sync; returns when all are on disk. A crash
    /// may keep a prefix of them (each record stands alone).
    pub fn append_many<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<(), JournalError> {
        let ticket = self.write(payloads)?;
        self.sync(ticket)
    }

    /// Writes records with one write and no sync; they are on disk once the ticket is synced.
    pub fn write<P: AsRef<[u8]>>(&self, payloads: &[P]) -> Result<SyncTicket, JournalError> {
        let mut record = Vec::new();
        for payload in payloads {
            let payload = payload.as_ref();
            if payload.len() > MAX_RECORD {
                return Err(JournalError::TooLarge(payload.len()));
            }
            record.extend(encode(payload));
        }
        let mut w = self.lock();
        if !record.is_empty() {
            w.file.write_all(&record).map_err(|e| io(&self.path, e))?;
            w.written += record.len() as u64;
        }
        Ok(SyncTicket {
            epoch: w.epoch,
            at: w.written,
        })
    }

    /// Returns once the journal is on disk up to the ticket; concurrent callers share one
    /// `fdatasync`: the first to come leads it for everything written so far.
    pub fn sync(&self, ticket: SyncTicket) -> Result<(), JournalError> {
        let mut w = self.lock();
        loop {
            if w.epoch != ticket.epoch || w.synced >= ticket.at {
                return Ok(());
            }
            if !w.syncing {
                w.syncing = true;
                let (target, epoch) = (w.written, w.epoch);
                let file = w.file.try_clone().map_err(|e| io(&self.path, e))?;
                drop(w);
                let result = file.sync_data();
                w = self.lock();
                if w.epoch == epoch {
                    w.syncing = false;
                    if result.is_ok() {
                        w.synced = w.synced.max(target);
                    }
                }
                self.synced.notify_all();
                result.map_err(|e| io(&self.path, e))?;
            } else {
                w = self.synced.wait(w).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Replaces the journal with exactly `records` (compaction), atomically.
    pub fn rewrite(&self, records: &[Vec<u8>]) -> Result<(), JournalError> {
        let mut w = self.lock();
        let temp = self.path.with_extension("compact");
        let mut out = File::create(&temp).map_err(|e| io(&temp, e))?;
        let mut len = 0u64;
        for r in records {
            let bytes = encode(r);
            out.write_all(&bytes).map_err(|e| io(&temp, e))?;
            len += bytes.len() as u64;
        }
        out.sync_all().map_err(|e| io(&temp, e))?;
        fs::rename(&temp, &self.path).map_err(|e| io(&self.path, e))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        sync_dir(dir).map_err(|e| io(dir, e))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io(&self.path, e))?;
        *w = Writer {
            file,
            written: len,
            synced: len,
            syncing: false,
            epoch: w.epoch + 1,
        };
        self.synced.notify_all();
        Ok(())
    }

    /// Bytes on disk.
    pub fn len(&self) -> u64 {
        self.lock().written
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("record {i}").into_bytes()).collect()
    }

    #[test]
    fn records_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        {
            let (j, back, _) = Journal::open(&path).unwrap();
            assert!(back.is_empty());
            for p in payloads(5) {
                j.append(&p).unwrap();
            }
        }
        let (_, back, recovery) = Journal::open(&path).unwrap();
        assert_eq!(back, payloads(5));
        assert_eq!(recovery, Recovery::default());
    }

    #[test]
    fn a_torn_tail_is_cut_and_appending_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        {
            let (j, _, _) = Journal::open(&path).unwrap();
            for p in payloads(3) {
                j.append(&p).unwrap();
            }
        }
        let full = fs::read(&path).unwrap();
        fs::write(&path, &full[..full.len() - 4]).unwrap();
        let (j, back, recovery) = Journal::open(&path).unwrap();
        assert_eq!(back, payloads(2));
        assert!(recovery.torn_tail_bytes > 0);
        j.append(b"after").unwrap();
        drop(j);
        let (_, back, _) = Journal::open(&path).unwrap();
        assert_eq!(back.last().unwrap(), b"after");
        assert_eq!(back.len(), 3);
    }

    #[test]
    fn a_damaged_record_in_the_middle_is_quarantined_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        {
            let (j, _, _) = Journal::open(&path).unwrap();
            for p in payloads(3) {
                j.append(&p).unwrap();
            }
        }
        let mut bytes = fs::read(&path).unwrap();
        let second = encode(b"record 0").len() + HEADER + 2;
        bytes[second] ^= 0xff; // flip a payload byte of record 1
        fs::write(&path, &bytes).unwrap();
        let (_, back, recovery) = Journal::open(&path).unwrap();
        assert_eq!(back, vec![b"record 0".to_vec(), b"record 2".to_vec()]);
        assert_eq!(recovery.quarantined.len(), 1);
        assert!(recovery.quarantined[0].exists());
        // Rewritten: the damage is not met again.
        let (_, back, recovery) = Journal::open(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert!(recovery.quarantined.is_empty());
    }

    #[test]
    fn concurrent_appends_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let (j, _, _) = Journal::open(&path).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let j = &j;
                s.spawn(move || {
                    for i in 0..50 {
                        j.append(format!("{t}-{i}").as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(j);
        let (_, back, _) = Journal::open(&path).unwrap();
        assert_eq!(back.len(), 200);
    }

    #[test]
    fn a_ticket_written_before_a_compaction_counts_as_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (j, _, _) = Journal::open(&path).unwrap();
        let ticket = j.write(&payloads(50)).unwrap();
        // The compaction keeps (and syncs) less than was written before it.
        j.rewrite(&payloads(2)).unwrap();
        j.sync(ticket).unwrap();
        let later = j.write(&payloads(1)).unwrap();
        j.sync(later).unwrap();
        drop(j);
        let (_, records, _) = Journal::open(&path).unwrap();
        assert_eq!(records.len(), 3);
    }

    #[test]
    fn compaction_keeps_only_what_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.log");
        let (j, _, _) = Journal::open(&path).unwrap();
        for p in payloads(10) {
            j.append(&p).unwrap();
        }
        j.rewrite(&payloads(10)[7..]).unwrap();
        j.append(b"new").unwrap();
        drop(j);
        let (_, back, _) = Journal::open(&path).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(back[0], b"record 7");
    }
}
