//! The disclosure log: an append-only, bounded record on the device of everything it sent —
//! time, purpose, legal basis, topic, the names of the fields (never their values), size.
//!
//! One JSON object a line; when the file passes its bound it is rotated to `.1` (the previous
//! `.1` is dropped), so the log keeps between one and two bounds' worth of history.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Admitted;
use crate::record::now_ms;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disclosure {
    pub time_ms: u64,
    pub purpose: String,
    pub legal_basis: String,
    pub topic: String,
    pub fields: Vec<String>,
    pub bytes: usize,
    /// The record's outbox sequence number: the log then also tells which numbers were used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Disclosure {
    pub fn of(admitted: &Admitted) -> Self {
        Self {
            time_ms: now_ms(),
            purpose: admitted.purpose().to_owned(),
            legal_basis: admitted.legal_basis().to_owned(),
            topic: admitted.topic().to_owned(),
            fields: admitted
                .fields()
                .iter()
                .map(|f| f.name().to_owned())
                .collect(),
            bytes: admitted.payload().len(),
            seq: admitted.seq(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DisclosureLog {
    path: PathBuf,
    max_bytes: u64,
}

impl DisclosureLog {
    /// The log at `path` (`StateDir::disclosure_log`), rotated beside it.
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        Self { path, max_bytes }
    }

    fn rotated(&self) -> PathBuf {
        self.path.with_extension("jsonl.1")
    }

    pub fn append(&self, entry: &Disclosure) -> std::io::Result<()> {
        if fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0) >= self.max_bytes {
            fs::rename(&self.path, self.rotated())?;
        }
        let mut line = serde_json::to_vec(entry)?;
        line.push(b'\n');
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?
            .write_all(&line)
    }

    /// Every entry still kept, oldest first. Lines that do not parse are skipped.
    pub fn read(&self) -> std::io::Result<Vec<Disclosure>> {
        let mut out = Vec::new();
        for path in [self.rotated(), self.path.clone()] {
            match fs::read_to_string(&path) {
                Ok(text) => out.extend(text.lines().filter_map(|l| serde_json::from_str(l).ok())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The highest outbox sequence number the log shows as sent.
    pub fn highest_seq(&self) -> Option<u64> {
        self.read().ok()?.iter().filter_map(|d| d.seq).max()
    }

    pub fn files(&self) -> [PathBuf; 2] {
        [self.path.clone(), self.rotated()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Disclosure {
        Disclosure {
            time_ms: n as u64,
            purpose: "p".into(),
            legal_basis: "contract".into(),
            topic: "t/x/facts".into(),
            fields: vec!["model".into()],
            bytes: n,
            seq: Some(n as u64),
        }
    }

    #[test]
    fn appends_and_rotates_within_bound() {
        let dir = tempfile::tempdir().unwrap();
        let log = DisclosureLog::new(dir.path().join("disclosures.jsonl"), 400);
        for n in 0..50 {
            log.append(&entry(n)).unwrap();
        }
        let kept = log.read().unwrap();
        assert!(kept.len() < 50 && !kept.is_empty());
        assert_eq!(kept.last().unwrap().bytes, 49);
        // Oldest first, no gaps in what is kept.
        let first = kept[0].bytes;
        assert_eq!(
            kept.iter().map(|d| d.bytes).collect::<Vec<_>>(),
            (first..50).collect::<Vec<_>>()
        );
        let total: u64 = log
            .files()
            .iter()
            .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        assert!(total <= 2 * 400 + 200);
        assert_eq!(log.highest_seq(), Some(49));
    }
}
