//! The motion event in progress, kept on disk: an event cut short by a crash or a power cut
//! still gets its `end` alert at the next start, where the cloud would otherwise show it as
//! going on for ever.

use std::path::PathBuf;

use tracing::warn;

use crate::durable::{read_sealed, write_sealed};

pub struct OpenEvent {
    path: PathBuf,
}

impl OpenEvent {
    /// The note at `path` (`StateDir::open_event`).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// An event started (its start alert was accepted).
    pub fn started(&self, event_id: &str) {
        if let Err(e) = write_sealed(&self.path, event_id.as_bytes()) {
            warn!(file = %self.path.display(), "cannot note the event in progress: {e}");
        }
    }

    /// The event ended (its end alert was accepted).
    pub fn ended(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(file = %self.path.display(), "cannot clear the event in progress: {e}");
            }
        }
    }

    /// The event a previous run left open, if any. A damaged note names no event: its end
    /// cannot be sent, and that is logged.
    pub fn left_open(&self) -> Option<String> {
        match read_sealed(&self.path) {
            Ok(id) => String::from_utf8(id).ok(),
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                warn!(file = %self.path.display(), "the note of an event cut short is unreadable ({e}); its end alert cannot be sent");
                self.ended();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_left_open_is_found_once_ended_it_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let open = OpenEvent::new(dir.path().join("event.open"));
        assert_eq!(open.left_open(), None);
        open.started("e1");
        assert_eq!(
            OpenEvent::new(dir.path().join("event.open"))
                .left_open()
                .as_deref(),
            Some("e1")
        );
        open.ended();
        assert_eq!(open.left_open(), None);
        std::fs::write(dir.path().join("event.open"), b"torn").unwrap();
        assert_eq!(open.left_open(), None);
        assert!(!dir.path().join("event.open").exists());
    }
}
