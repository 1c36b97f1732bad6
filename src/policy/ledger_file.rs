//! The consent ledger on disk: replaced atomically under a lock, so the command line and the
//! daemon can both change it, and sealed, so damage is seen rather than taken for choices.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::consent::{ConsentError, Ledger};
use crate::durable::SealedError;

/// The ledger on disk.
#[derive(Debug, Clone)]
pub struct LedgerFile {
    path: PathBuf,
}

impl LedgerFile {
    /// The ledger at `path` (`StateDir::consent_ledger`); its lock file sits beside it.
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> ConsentError + '_ {
        |source| ConsentError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The ledger, or an empty one if none was written yet.
    pub fn load(&self) -> Result<Ledger, ConsentError> {
        let corrupt = |reason: String| ConsentError::Corrupt {
            path: self.path.clone(),
            reason,
        };
        match crate::durable::read_sealed(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string())),
            Err(e) if e.is_not_found() => Ok(Ledger::default()),
            Err(SealedError::Damaged) => Err(corrupt(SealedError::Damaged.to_string())),
            Err(SealedError::Io(e)) => Err(self.io()(e)),
        }
    }

    /// Modification stamp, to notice another process's change cheaply.
    pub fn stamp(&self) -> Option<std::time::SystemTime> {
        fs::metadata(&self.path).and_then(|m| m.modified()).ok()
    }

    /// Loads, changes and saves the ledger under an exclusive lock.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Ledger) -> Result<T, ConsentError>,
    ) -> Result<T, ConsentError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(self.io())?;
        let lock = File::create(dir.join("consent.lock")).map_err(self.io())?;
        lock.lock().map_err(self.io())?;
        let mut ledger = self.load()?;
        let out = change(&mut ledger)?;
        let bytes = serde_json::to_vec_pretty(&ledger).unwrap_or_default();
        crate::durable::write_sealed(&self.path, &bytes).map_err(self.io())?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::consent::{uuid, Choice, Via};
    use crate::policy::Policy;

    fn policy() -> Policy {
        let text = "schema = 1\nname = \"t\"\nversion = \"7\"\n[[purpose]]\nid = \"ux\"\n\
                    flow = \"usage_statistics\"\nlegal_basis = \"consent\"\nfields = [\"uptime\"]\n";
        Policy::parse(text, Path::new("t")).unwrap()
    }

    #[test]
    fn ledger_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = LedgerFile::new(dir.path().join("consent.json"));
        let p = policy();
        file.update(|l| l.record(&p, "ux", Choice::Given, Via::Local, uuid()))
            .unwrap();
        assert_eq!(file.load().unwrap().choice("ux"), Some(Choice::Given));
    }
}
