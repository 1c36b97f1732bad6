//! The marker beside a clip not yet queued for the cloud (`<id>.rec`): the events the clip
//! covers. The camera writes it when the clip opens, and again as events join; the session
//! removes it once the clip's record is queued or the clip is dropped. A marker found at start
//! is a clip a crash or a power cut left behind, and the camera adopts it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable::{read_sealed_json, write_sealed, SealedError};

pub const EXTENSION: &str = "rec";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub event_ids: Vec<String>,
    /// Set once the clip is finished, to its duration: a clip without it was cut short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
}

pub fn path(dir: &Path, clip_id: &str) -> PathBuf {
    dir.join(format!("{clip_id}.{EXTENSION}"))
}

pub fn write(dir: &Path, clip_id: &str, marker: &Marker) -> std::io::Result<()> {
    write_sealed(
        &path(dir, clip_id),
        &serde_json::to_vec(marker).unwrap_or_default(),
    )
}

pub fn read(path: &Path) -> Result<Marker, SealedError> {
    read_sealed_json(path)
}

/// Removes clip `clip_id`'s marker; a missing one is not an error.
pub fn remove(dir: &Path, clip_id: &str) -> std::io::Result<()> {
    match std::fs::remove_file(path(dir, clip_id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
