//! The pseudonym key's file: made at first start (mode 0600), read at every start, set aside
//! and replaced when damaged.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};

use super::{PseudonymKey, KEY_LEN};
use crate::durable::{read_sealed, write_sealed, SealedError};

#[derive(Debug, thiserror::Error)]
pub enum PseudonymKeyError {
    #[error("pseudonym key {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pseudonym key {path} is {len} bytes, expected {KEY_LEN}; delete it to create a new one (this changes the device's pseudonyms)")]
    Length { path: PathBuf, len: usize },
    #[error("pseudonym key {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("the system random generator failed")]
    Random,
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> PseudonymKeyError + '_ {
    move |source| PseudonymKeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads `path`, or creates it (mode 0600) with fresh random bytes on first start. A key
/// that is damaged (its checksum fails) is set aside and replaced: the device's pseudonyms
/// change, which unlinks rather than exposes, and the start goes on.
pub fn load_or_create(path: &Path) -> Result<PseudonymKey, PseudonymKeyError> {
    let io = io_at(path);
    match read_sealed(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(PseudonymKeyError::Exposed {
                    path: path.to_owned(),
                    mode,
                });
            }
            if bytes.len() != KEY_LEN {
                return Err(PseudonymKeyError::Length {
                    path: path.to_owned(),
                    len: bytes.len(),
                });
            }
            Ok(PseudonymKey::from_bytes(&bytes))
        }
        Err(SealedError::Damaged) => {
            let aside = crate::durable::set_aside(path).map_err(io)?;
            tracing::error!(file = %path.display(), aside = %aside.display(), "pseudonym key damaged: set aside and replaced; the device's pseudonyms change");
            create(path)
        }
        Err(e) if e.is_not_found() => create(path),
        Err(SealedError::Io(e)) => Err(io(e)),
    }
}

/// A fresh key, written whole or not at all: a power cut at first start leaves no empty
/// key.
fn create(path: &Path) -> Result<PseudonymKey, PseudonymKeyError> {
    let mut bytes = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PseudonymKeyError::Random)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_at(path))?;
    }
    write_sealed(path, &bytes).map_err(io_at(path))?;
    Ok(PseudonymKey::from_bytes(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_600_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/pseudonym.key");
        let a = load_or_create(&path).unwrap().pseudonym("s", b"SN1");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create(&path).unwrap().pseudonym("s", b"SN1");
        assert_eq!(a, b);
        assert_eq!(a.len(), 24);
        assert!(!a.contains("SN1"));
    }

    #[test]
    fn a_damaged_key_is_set_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let before = load_or_create(&path).unwrap().pseudonym("s", b"SN");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let after = load_or_create(&path).unwrap().pseudonym("s", b"SN");
        assert_ne!(before, after, "a flipped key bit is not taken for a key");
        assert_eq!(std::fs::read(dir.path().join("k.damaged")).unwrap(), bytes);
        let again = load_or_create(&path).unwrap().pseudonym("s", b"SN");
        assert_eq!(after, again);
    }

    #[test]
    fn exposed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        crate::durable::write_sealed(&path, &[7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
