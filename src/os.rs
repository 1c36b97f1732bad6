//! The one module that calls the C library directly (the rest of the crate denies `unsafe`):
//! the file system's size and free space (statvfs: quotas are checked against the partition
//! they live on, and free space is watched, not only the agent's own accounting), the file
//! mode mask, SIGPIPE, malloc's arenas, and the effective user.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Size of the file system; 0 for one without a size (ramfs).
    pub total: u64,
    /// What an unprivileged process may still write.
    pub available: u64,
}

impl Space {
    /// Whether the file system has a size to check against (a ramfs reports none).
    pub fn is_bounded(&self) -> bool {
        self.total > 0
    }
}

/// The space of the file system that holds `path`.
pub fn space(path: &Path) -> std::io::Result<Space> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` a writable statvfs that
    // the call fills; it is read only on success.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat
    };
    // The field types are 32 bits on armv7 and 64 on the host.
    #[allow(clippy::useless_conversion)]
    let block = u64::from(stat.f_frsize);
    #[allow(clippy::useless_conversion)]
    let (blocks, available) = (u64::from(stat.f_blocks), u64::from(stat.f_bavail));
    Ok(Space {
        total: blocks * block,
        available: available * block,
    })
}

/// Makes every file the process creates private to its user (mode mask 077).
pub fn private_files() {
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}

/// Caps glibc's malloc at two arenas. glibc gives each new thread an arena of its own, up to
/// eight per core, and keeps what they hold: every restart of the camera's pipeline starts new
/// streaming threads, and a camera whose source drops out often held tens of MiB more than it
/// needs (BENCHMARKS.md, "Memory over source restarts"). An operator's `MALLOC_ARENA_MAX`
/// stands. Call before any thread exists.
pub fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator tunable; it is called before any other thread
    // exists, and a refusal (0) leaves glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands the pages malloc holds free back to the kernel. A pipeline's run frees its decoder
/// pools and buffers when it ends, but glibc keeps the freed pages mapped between live blocks,
/// so each restart left a little more resident; trimming once per restart keeps it flat.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes the arena locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Restores SIGPIPE's default action (ending the process), as for any Unix tool whose output
/// is piped into `head`. Call before any thread exists.
pub fn default_sigpipe() {
    // SAFETY: sets the action of one signal to its default; no handler is involved.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether an I/O error means the file system (or the user's quota on it) is full.
pub fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_space_of_a_real_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let s = space(dir.path()).unwrap();
        assert!(s.total >= s.available);
        assert!(space(&dir.path().join("missing")).is_err());
        assert!(is_full(&std::io::Error::from_raw_os_error(libc::ENOSPC)));
        assert!(!is_full(&std::io::Error::from_raw_os_error(libc::EACCES)));
    }
}
