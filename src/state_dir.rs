//! The state directory's layout (`agent.state_dir`), spelled out once. Each store takes the
//! path of its own file or directory from here and knows nothing of the rest.

use std::path::{Path, PathBuf};

/// What an erase removes, and what the confirmation calls it (ETSI EN 303 645 5.11). The
/// replay guard, the outbox's sequence counter and the retained-topic list stay: see
/// `crate::erase`.
const OWNER_DATA: [(&str, &str); 6] = [
    (OUTBOX, "queued records"),
    (CLIPS, "clips"),
    (CONSENT_LEDGER, "consent ledger"),
    (DISCLOSURE_LOG, "disclosure log"),
    (DISCLOSURE_LOG_ROTATED, "disclosure log (rotated)"),
    (KEYS, "pseudonym keys"),
];

const OUTBOX: &str = "outbox";
const CLIPS: &str = "clips";
const KEYS: &str = "keys";
const PSEUDONYM_KEY: &str = "keys/pseudonym.key";
const CONSENT_LEDGER: &str = "consent.json";
const DISCLOSURE_LOG: &str = "disclosures.jsonl";
const DISCLOSURE_LOG_ROTATED: &str = "disclosures.jsonl.1";
const REPLAY_GUARD: &str = "commands.json";
const RETAINED_TOPICS: &str = "retained.json";
const OPEN_EVENT: &str = "event.open";
const STATUS: &str = "status.json";
const LOCK: &str = "agent.lock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Records waiting for the broker, one file each, with the sequence counter.
    pub fn outbox(&self) -> PathBuf {
        self.root.join(OUTBOX)
    }

    /// Clips and chunked snapshots waiting to go up, with their upload progress.
    pub fn clips(&self) -> PathBuf {
        self.root.join(CLIPS)
    }

    pub fn pseudonym_key(&self) -> PathBuf {
        self.root.join(PSEUDONYM_KEY)
    }

    pub fn consent_ledger(&self) -> PathBuf {
        self.root.join(CONSENT_LEDGER)
    }

    /// What left the device, one line per publish (rotated beside it).
    pub fn disclosure_log(&self) -> PathBuf {
        self.root.join(DISCLOSURE_LOG)
    }

    /// The newest signed command accepted, so an old one cannot be replayed.
    pub fn replay_guard(&self) -> PathBuf {
        self.root.join(REPLAY_GUARD)
    }

    /// Retained topics used, so they can be cleared when their purpose stops.
    pub fn retained_topics(&self) -> PathBuf {
        self.root.join(RETAINED_TOPICS)
    }

    /// The motion event in progress, so a crash still gets its end alert.
    pub fn open_event(&self) -> PathBuf {
        self.root.join(OPEN_EVENT)
    }

    /// The running agent's view of itself, for `camagent status`.
    pub fn status(&self) -> PathBuf {
        self.root.join(STATUS)
    }

    /// Held by the running agent, so two never share the directory.
    pub fn lock(&self) -> PathBuf {
        self.root.join(LOCK)
    }

    /// The owner's data, with what to call each part.
    pub fn owner_data(&self) -> impl Iterator<Item = (PathBuf, &'static str)> + '_ {
        OWNER_DATA
            .iter()
            .map(|(name, what)| (self.root.join(name), *what))
    }
}
