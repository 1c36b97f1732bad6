//! Keyed pseudonyms: HMAC-SHA256 under a per-device secret key.
//!
//! Without the key, a pseudonym cannot be tied back to the serial number; erasing the key
//! (a later `camagent erase`) rotates every pseudonym the device ever used.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::durable::{read_sealed, write_sealed, SealedError};

const KEY_LEN: usize = 32;

/// The pseudonym key, relative to the state directory.
pub const KEY_FILE: &str = "keys/pseudonym.key";

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

#[derive(Clone)]
pub struct PseudonymKey(hmac::Key);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<secret>)")
    }
}

impl PseudonymKey {
    /// Loads `path`, or creates it (mode 0600) with fresh random bytes on first start. A key
    /// that is damaged (its checksum fails) is set aside and replaced: the device's pseudonyms
    /// change, which unlinks rather than exposes, and the start goes on.
    pub fn load_or_create(path: &Path) -> Result<Self, PseudonymKeyError> {
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
                Ok(Self::from_bytes(&bytes))
            }
            Err(SealedError::Damaged) => {
                let aside = crate::durable::set_aside(path).map_err(io)?;
                tracing::error!(file = %path.display(), aside = %aside.display(), "pseudonym key damaged: set aside and replaced; the device's pseudonyms change");
                Self::create(path)
            }
            Err(e) if e.is_not_found() => Self::create(path),
            Err(SealedError::Io(e)) => Err(io(e)),
        }
    }

    /// A fresh key, written whole or not at all: a power cut at first start leaves no empty
    /// key.
    fn create(path: &Path) -> Result<Self, PseudonymKeyError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| PseudonymKeyError::Random)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io_at(path))?;
        }
        write_sealed(path, &bytes).map_err(io_at(path))?;
        Ok(Self::from_bytes(&bytes))
    }

    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// A key of its own for `label` (a purpose id): pseudonyms made with it cannot be linked
    /// to those of the device key or of other labels without the device key itself.
    pub fn derive(&self, label: &str) -> Self {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(b"camagent/purpose-key\0");
        ctx.update(label.as_bytes());
        Self::from_bytes(ctx.sign().as_ref())
    }

    /// A stable, topic-safe pseudonym of `input` within `scope` (24 hex digits, 96 bits).
    pub fn pseudonym(&self, scope: &str, input: &[u8]) -> String {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(scope.as_bytes());
        ctx.update(&[0]);
        ctx.update(input);
        let tag = ctx.sign();
        crate::hex::encode(&tag.as_ref()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_600_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/pseudonym.key");
        let a = PseudonymKey::load_or_create(&path)
            .unwrap()
            .pseudonym("s", b"SN1");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = PseudonymKey::load_or_create(&path)
            .unwrap()
            .pseudonym("s", b"SN1");
        assert_eq!(a, b);
        assert_eq!(a.len(), 24);
        assert!(!a.contains("SN1"));
    }

    #[test]
    fn a_damaged_key_is_set_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let before = PseudonymKey::load_or_create(&path)
            .unwrap()
            .pseudonym("s", b"SN");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let after = PseudonymKey::load_or_create(&path)
            .unwrap()
            .pseudonym("s", b"SN");
        assert_ne!(before, after, "a flipped key bit is not taken for a key");
        assert_eq!(std::fs::read(dir.path().join("k.damaged")).unwrap(), bytes);
        let again = PseudonymKey::load_or_create(&path)
            .unwrap()
            .pseudonym("s", b"SN");
        assert_eq!(after, again);
    }

    #[test]
    fn exposed_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        crate::durable::write_sealed(&path, &[7u8; KEY_LEN]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = PseudonymKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn scopes_and_keys_give_unlinkable_pseudonyms() {
        let k1 = PseudonymKey::from_bytes(&[1; KEY_LEN]);
        let k2 = PseudonymKey::from_bytes(&[2; KEY_LEN]);
        assert_ne!(k1.pseudonym("a", b"SN"), k1.pseudonym("b", b"SN"));
        assert_ne!(k1.pseudonym("a", b"SN"), k2.pseudonym("a", b"SN"));
    }
}
