//! The durable outbox: records accepted for sending, kept on disk until the broker acks them.
//!
//! One file per record, named by its sequence number, so delivery order survives restarts.
//! Writes are crash-safe (write a temp file, fsync, rename, fsync the directory) and each
//! entry is framed with its length and CRC-32, so a torn or corrupt entry found at start is
//! moved to `quarantine/` and reported, while the entries around it are still delivered.
//! The size bound is enforced at [`Outbox::append`]: a record that does not fit is refused
//! there, and a record once accepted is never dropped for space.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::policy::Flow;
use crate::record::Record;

mod frame;
pub use frame::{decode, encode};

const SUFFIX: &str = "rec";
/// Sequence numbers are reserved on disk in blocks, so a restart never reuses one.
const SEQ_BLOCK: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("outbox is full ({used} of {max} bytes); record of {size} bytes refused")]
    Full { used: u64, max: u64, size: u64 },
    #[error("outbox entry {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The entry's file is gone (deleted by hand, lost to the file system): it is forgotten.
    #[error("outbox entry {0} vanished; it is forgotten")]
    Vanished(PathBuf),
    #[error("cannot encode record")]
    Encode(#[from] serde_json::Error),
}

impl OutboxError {
    /// The file system (or the user's quota on it) is full: freeing space may help.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Io { source, .. } if crate::os::is_full(source))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An entry moved aside at start because it could not be read back.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub file: PathBuf,
    pub reason: String,
}

/// What the outbox remembers of an entry without reading it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    pub flow: Flow,
    pub created_ms: u64,
}

impl Meta {
    fn of(record: &Record, size: u64) -> Self {
        Self {
            size,
            flow: record.flow,
            created_ms: record.created_ms,
        }
    }
}

/// Where bad entries are moved, in the outbox directory.
const QUARANTINE: &str = "quarantine";

/// The sequence counter's file in the outbox directory.
pub const COUNTER_FILE: &str = "seq";

/// What the sequence counter file said at open.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Counter {
    Missing,
    Read(u64),
    Damaged(String),
}

#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    max_bytes: u64,
    /// Sequence number → what it holds, in delivery order.
    entries: BTreeMap<u64, Meta>,
    used: u64,
    next_seq: u64,
    /// First sequence number not yet reserved on disk.
    reserved_until: u64,
    counter: Counter,
    /// Entries in `quarantine/`, for the status.
    quarantined: u64,
}

impl Outbox {
    /// Opens (creating if needed) the outbox in `dir`, quarantining unreadable entries.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Self, Vec<Quarantined>), OutboxError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut entries = BTreeMap::new();
        let mut quarantined = Vec::new();
        for dirent in fs::read_dir(dir).map_err(io_err(dir))? {
            let path = match dirent {
                Ok(dirent) => dirent.path(),
                Err(_) => continue,
            };
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if name.ends_with(".tmp") {
                // A write that never reached its rename was never accepted.
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(&format!(".{SUFFIX}")) {
                continue; // `seq`, `quarantine/`
            }
            // One bad entry (alien name, a directory, unreadable, corrupt) never stops the
            // rest: it is moved aside with its reason.
            let seq = name
                .strip_suffix(SUFFIX)
                .and_then(|s| s.strip_suffix('.'))
                .and_then(|s| s.parse::<u64>().ok());
            let outcome = match seq {
                None => Err("not an outbox entry name".to_owned()),
                Some(seq) => fs::read(&path)
                    .map_err(|e| format!("unreadable: {e}"))
                    .and_then(|bytes| decode(&bytes).map(|r| (seq, r, bytes.len() as u64))),
            };
            match outcome {
                Ok((seq, record, len)) => {
                    entries.insert(seq, Meta::of(&record, len));
                }
                Err(reason) => quarantined.push(quarantine(dir, &path, reason)),
            }
        }
        let used = entries.values().map(|m| m.size).sum();
        let in_quarantine = fs::read_dir(dir.join(QUARANTINE)).map_or(0, |d| d.count() as u64);
        let counter = read_counter(&dir.join(COUNTER_FILE));
        let reserved = match counter {
            Counter::Read(n) => n,
            _ => 0,
        };
        let next_seq = entries
            .keys()
            .next_back()
            .map_or(0, |last| last + 1)
            .max(reserved);
        let outbox = Self {
            dir: dir.to_owned(),
            max_bytes,
            entries,
            used,
            next_seq,
            reserved_until: next_seq,
            counter,
            quarantined: in_quarantine,
        };
        Ok((outbox, quarantined))
    }

    /// Durably stores `record` and returns its sequence number; on `Ok` it is accepted.
    pub fn append(&mut self, record: &Record) -> Result<u64, OutboxError> {
        let frame = encode(record)?;
        let size = frame.len() as u64;
        if self.used + size > self.max_bytes {
            return Err(OutboxError::Full {
                used: self.used,
                max: self.max_bytes,
                size,
            });
        }
        let seq = self.next_seq;
        if seq >= self.reserved_until {
            self.reserved_until = seq + SEQ_BLOCK;
            write_atomic(&self.dir, COUNTER_FILE, &counter_text(self.reserved_until))?;
        }
        write_atomic(&self.dir, &entry_name(seq), &frame)?;
        self.next_seq += 1;
        self.entries.insert(seq, Meta::of(record, size));
        self.used += size;
        Ok(seq)
    }

    /// Makes sure no sequence number is used twice, given the highest one the disclosure log
    /// shows as sent. A counter that is damaged, missing while numbers were used, or behind
    /// the log is recovered past everything seen, plus a gap of a reserved block for what
    /// neither shows (numbers whose lines the bounded log has rotated away); returns what was
    /// recovered, to be logged.
    pub fn recover_sequence(
        &mut self,
        disclosed: Option<u64>,
    ) -> Result<Option<String>, OutboxError> {
        let seen = self.next_seq.max(disclosed.map_or(0, |d| d + 1));
        let problem = match &self.counter {
            Counter::Damaged(reason) => reason.clone(),
            Counter::Missing if seen > 0 => "is missing".to_owned(),
            Counter::Read(n) if *n < seen => format!("says {n}, behind numbers already used"),
            _ => return Ok(None),
        };
        self.next_seq = seen + SEQ_BLOCK;
        self.reserved_until = self.next_seq;
        write_atomic(&self.dir, COUNTER_FILE, &counter_text(self.next_seq))?;
        self.counter = Counter::Read(self.next_seq);
        Ok(Some(format!(
            "sequence counter {problem}; recovered: the next record is {} (highest seen {}, plus a gap of {SEQ_BLOCK})",
            self.next_seq,
            seen.saturating_sub(1)
        )))
    }

    /// The sequence number the next record appended gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// How many more bytes the quota admits.
    pub fn room(&self) -> u64 {
        self.max_bytes.saturating_sub(self.used)
    }

    /// How many bad entries are kept in quarantine.
    pub fn quarantined(&self) -> u64 {
        self.quarantined
    }

    /// After an erase emptied the quarantine with the rest of the owner's data.
    pub fn quarantine_erased(&mut self) {
        self.quarantined = 0;
    }

    /// Checks, without reading it, that an entry's file is still there (a record whose gate
    /// output is in memory is sent only while it is queued); one that vanished is forgotten.
    pub fn still_queued(&mut self, seq: u64) -> Result<(), OutboxError> {
        let path = self.dir.join(entry_name(seq));
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(seq);
                Err(OutboxError::Vanished(path))
            }
            _ => Ok(()),
        }
    }

    /// Reads an entry back. An entry that went bad since start is forgotten: quarantined
    /// when its file is still there (unreadable or corrupt), reported as vanished when not.
    /// Either way delivery goes on with the next.
    pub fn get(&mut self, seq: u64) -> Result<Record, OutboxError> {
        let path = self.dir.join(entry_name(seq));
        let reason = match fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Ok(record) => return Ok(record),
                Err(reason) => reason,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.forget(seq);
                return Err(OutboxError::Vanished(path));
            }
            Err(e) => format!("unreadable: {e}"),
        };
        self.forget(seq);
        let q = quarantine(&self.dir, &path, reason);
        self.quarantined += 1;
        Err(OutboxError::Corrupt {
            path: q.file,
            reason: q.reason,
        })
    }

    /// Deletes an entry once the broker has acknowledged it (or the gate refused it).
    pub fn remove(&mut self, seq: u64) -> Result<(), OutboxError> {
        let path = self.dir.join(entry_name(seq));
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        self.forget(seq);
        Ok(())
    }

    fn forget(&mut self, seq: u64) {
        if let Some(meta) = self.entries.remove(&seq) {
            self.used -= meta.size;
        }
    }

    /// Every entry, oldest first, with what the outbox knows of it.
    pub fn queued(&self) -> impl Iterator<Item = (u64, &Meta)> {
        self.entries.iter().map(|(seq, meta)| (*seq, meta))
    }

    /// Deletes the entries `seqs` (consent withdrawn, retention expired, erase). Returns the
    /// sequence numbers deleted, and the errors of any that could not be.
    pub fn purge(&mut self, seqs: &[u64]) -> (Vec<u64>, Vec<OutboxError>) {
        let mut removed = Vec::new();
        let mut errors = Vec::new();
        for &seq in seqs {
            match self.remove(seq) {
                Ok(()) => removed.push(seq),
                Err(e) => errors.push(e),
            }
        }
        (removed, errors)
    }

    /// The first queued sequence number after `after` (or the oldest, given `None`).
    pub fn next_after(&self, after: Option<u64>) -> Option<u64> {
        let from = after.map_or(0, |s| s + 1);
        self.entries.range(from..).next().map(|(seq, _)| *seq)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.used
    }
}

fn entry_name(seq: u64) -> String {
    format!("{seq:020}.{SUFFIX}")
}

/// The counter file: the number and the CRC-32 of its digits, so damage is seen, not read
/// as another number.
fn counter_text(n: u64) -> Vec<u8> {
    let digits = n.to_string();
    format!("{digits} {:08x}\n", crc32fast::hash(digits.as_bytes())).into_bytes()
}

fn read_counter(path: &Path) -> Counter {
    let text = match fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Counter::Missing,
        Err(e) => return Counter::Damaged(format!("is unreadable ({e})")),
    };
    let mut parts = text.split_whitespace();
    let (Some(digits), crc, None) = (parts.next(), parts.next(), parts.next()) else {
        return Counter::Damaged(format!("holds {:?}", text.trim()));
    };
    let checked = match crc {
        // Written before the checksum was added: taken as it is.
        None => true,
        Some(crc) => format!("{:08x}", crc32fast::hash(digits.as_bytes())) == crc,
    };
    match digits.parse() {
        Ok(n) if checked => Counter::Read(n),
        _ => Counter::Damaged(format!("holds {:?}", text.trim())),
    }
}

/// Moves a bad entry to `quarantine/` so it is kept for inspection but never sent. One that
/// cannot be moved stays where it is, skipped, and the reason says so.
fn quarantine(dir: &Path, path: &Path, reason: String) -> Quarantined {
    let qdir = dir.join(QUARANTINE);
    let target = qdir.join(path.file_name().unwrap_or_default());
    match fs::create_dir_all(&qdir).and_then(|()| fs::rename(path, &target)) {
        Ok(()) => Quarantined {
            file: target,
            reason,
        },
        Err(e) => Quarantined {
            file: path.to_owned(),
            reason: format!("{reason}; left in place, cannot move it: {e}"),
        },
    }
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), OutboxError> {
    let path = dir.join(name);
    crate::durable::write_atomic(&path, bytes).map_err(io_err(&path))
}

#[cfg(test)]
mod tests;
