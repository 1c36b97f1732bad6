//! Crash-safe file replacement, and sealed files that say when they were damaged, shared by
//! everything the agent keeps in its state directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `bytes` so that a crash or power cut leaves either the old content or
/// the new, never a torn mix: write a temporary file (mode 0600) beside it, fsync it, rename it
/// over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, bytes, true)
}

/// Writes a private temporary file beside `path` and renames it over `path`; with `durable`,
/// fsyncs the file before and the directory after the rename.
fn replace(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    // Everything the agent keeps is the owner's data or a key: private to the agent's user.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    if durable {
        file.sync_all()?;
        slow_disk();
    }
    fs::rename(&tmp, path)?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// A test build can make every durable write slow, as on a worn SD card
/// (`CAMAGENT_FAULT_SLOW_DISK_MS`); compiled out otherwise.
fn slow_disk() {
    #[cfg(feature = "fault-injection")]
    {
        static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
        let delay = DELAY.get_or_init(|| {
            std::env::var("CAMAGENT_FAULT_SLOW_DISK_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(std::time::Duration::from_millis)
        });
        if let Some(delay) = delay {
            std::thread::sleep(*delay);
        }
    }
}

/// The last line of a sealed file: the CRC-32 of everything before it.
const SEAL: &str = "\ncrc32 ";
const SEAL_LEN: usize = SEAL.len() + 8 + 1;

/// Why a sealed file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    #[error(transparent)]
    Io(#[from] io::Error),
    /// Torn, truncated, flipped or written by something else: its content cannot be trusted.
    #[error("damaged: its checksum or its format does not check out")]
    Damaged,
}

impl SealedError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// [`write_atomic`] with a checksum line after `bytes`, so damage is seen when it is read back
/// rather than taken for content (a flipped digit is still a number, a flipped key still a key).
pub fn write_sealed(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, &seal(bytes))
}

/// [`write_sealed`] without waiting for the disk: for a file that is only a view of the
/// present (the status), which a power cut may leave behind but never half-written as
/// content (the reader sees the damage), and which a slow SD card must not hold up.
pub fn write_sealed_unsynced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    replace(path, &seal(bytes), false)
}

fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(bytes.len() + SEAL_LEN);
    sealed.extend_from_slice(bytes);
    sealed.extend_from_slice(format!("{SEAL}{:08x}\n", crc32fast::hash(bytes)).as_bytes());
    sealed
}

/// Reads a file written by [`write_sealed`] and returns its content, checked.
pub fn read_sealed(path: &Path) -> Result<Vec<u8>, SealedError> {
    let mut bytes = fs::read(path)?;
    let body_len = bytes
        .len()
        .checked_sub(SEAL_LEN)
        .ok_or(SealedError::Damaged)?;
    let seal = std::str::from_utf8(&bytes[body_len..]).map_err(|_| SealedError::Damaged)?;
    let crc = seal
        .strip_prefix(SEAL)
        .and_then(|s| s.strip_suffix('\n'))
        .ok_or(SealedError::Damaged)?;
    // Compared as written: lowercase hex, so a flipped case bit is damage too.
    if format!("{:08x}", crc32fast::hash(&bytes[..body_len])) != crc {
        return Err(SealedError::Damaged);
    }
    bytes.truncate(body_len);
    Ok(bytes)
}

/// [`read_sealed`], then JSON: content that checks out but does not parse is damage too.
pub fn read_sealed_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SealedError> {
    serde_json::from_slice(&read_sealed(path)?).map_err(|_| SealedError::Damaged)
}

/// Moves a damaged file aside (`<name>.damaged`) so it is kept for a look but never read
/// again; returns where it went.
pub fn set_aside(path: &Path) -> io::Result<std::path::PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".damaged");
    let aside = std::path::PathBuf::from(aside);
    fs::rename(path, &aside)?;
    Ok(aside)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_sealed_file_reads_back_and_any_damage_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        write_sealed(&path, b"{\"acked\":[1,2,3]}").unwrap();
        assert_eq!(read_sealed(&path).unwrap(), b"{\"acked\":[1,2,3]}");
        let good = fs::read(&path).unwrap();
        // Every single flipped bit, every truncation, and the unsealed body.
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            fs::write(&path, &bad).unwrap();
            assert!(
                matches!(read_sealed(&path), Err(SealedError::Damaged)),
                "bit {i}"
            );
        }
        for len in 0..good.len() {
            fs::write(&path, &good[..len]).unwrap();
            assert!(matches!(read_sealed(&path), Err(SealedError::Damaged)));
        }
        assert!(read_sealed(&dir.path().join("none"))
            .unwrap_err()
            .is_not_found());
        write_sealed(&path, b"").unwrap();
        assert_eq!(read_sealed(&path).unwrap(), b"");
        let aside = set_aside(&path).unwrap();
        assert!(!path.exists() && aside.ends_with("p.damaged"));
    }
}
