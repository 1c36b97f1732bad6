//! Erasing the owner's data on the device (ETSI EN 303 645 provision 5.11): queued records,
//! clips and chunked snapshots, the consent ledger, the disclosure log and the pseudonym keys.
//!
//! The replay guard of signed commands is kept: it holds no personal data, and without it an
//! old command could be replayed after the erase. So is the outbox's sequence counter: the
//! cloud de-duplicates by sequence number, and numbers that started again at 0 would be taken
//! for duplicates and dropped. So is the list of retained topics
//! (`uplink::retained`): the erase clears those at the broker, and each leaves the list once
//! cleared.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use crate::policy::{Field, Flow};
use crate::record::{Record, WrongKind};
use crate::state_dir::StateDir;
use crate::wire::payload::ErasureRecord;

/// The erasure confirmation for the cloud. It names the device id the erase retired — the one
/// the cloud knows — and is published under it; the device's new pseudonyms are not
/// disclosed beside it, so the two identities stay unlinked.
pub fn confirmation(
    erased: &[&str],
    retired_device_id: &str,
    via: &str,
    command_issued_ms: Option<u64>,
) -> Result<Record, WrongKind> {
    let body = ErasureRecord {
        erased: erased.iter().map(|e| (*e).to_owned()).collect(),
        via: via.to_owned(),
        device_id: retired_device_id.to_owned(),
        command_issued_ms,
    };
    Record::json(Flow::ErasureConfirmation, Field::ErasureRecord, &body)
}

/// Removes the owner's data under `state_dir`; returns the names of what existed and is gone.
pub fn wipe(state_dir: &StateDir) -> std::io::Result<Vec<&'static str>> {
    let mut erased = Vec::new();
    for (path, what) in state_dir.owner_data() {
        let result = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && path == state_dir.outbox() => empty_outbox(&path),
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => Err(e),
        };
        result?;
        if !erased.contains(&what) {
            erased.push(what);
        }
    }
    if let Ok(dir) = fs::File::open(state_dir.root()) {
        dir.sync_all()?;
    }
    Ok(erased)
}

/// Removes every queued and quarantined record; keeps the directory (the daemon goes on
/// queueing, the confirmation first) and its sequence counter.
fn empty_outbox(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == super::outbox::COUNTER_FILE {
            continue;
        }
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    crate::durable::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipes_owner_data_and_keeps_the_replay_guard() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("outbox/quarantine")).unwrap();
        fs::write(p.join("outbox/00000000000000000001.rec"), b"x").unwrap();
        fs::write(p.join("outbox/seq"), b"1024 x").unwrap();
        fs::create_dir_all(p.join("keys")).unwrap();
        fs::write(p.join("keys/pseudonym.key"), [0u8; 32]).unwrap();
        fs::write(p.join("consent.json"), b"{}").unwrap();
        fs::write(p.join("commands.json"), b"{}").unwrap();
        let state = StateDir::new(p);
        let erased = wipe(&state).unwrap();
        assert_eq!(
            erased,
            vec!["queued records", "consent ledger", "pseudonym keys"]
        );
        assert!(!p.join("keys").exists());
        let left: Vec<_> = fs::read_dir(p.join("outbox")).unwrap().collect();
        assert_eq!(left.len(), 1, "only the sequence counter is left");
        assert_eq!(fs::read(p.join("outbox/seq")).unwrap(), b"1024 x");
        assert!(p.join("commands.json").exists());
        assert_eq!(wipe(&state).unwrap(), vec!["queued records"]);
    }
}
