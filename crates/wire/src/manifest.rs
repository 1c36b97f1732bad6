//! The manifest of a clip, or of a snapshot too large for one message: what a receiver needs
//! to reassemble the chunks and verify the whole.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::vocabulary::ContentType;

/// What a receiver needs to reassemble and verify a clip; carried by the clip record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub clip_id: String,
    pub content_type: ContentType,
    pub bytes: u64,
    pub duration_ms: u64,
    /// Lowercase hex SHA-256 of the whole clip.
    pub sha256: String,
    pub chunk_bytes: u32,
    pub chunks: u32,
    pub event_ids: Vec<String>,
}

impl Manifest {
    pub fn chunk_count(bytes: u64, chunk_bytes: u32) -> u32 {
        bytes.div_ceil(u64::from(chunk_bytes.max(1))) as u32
    }

    /// Where the media is stored in the upload directory `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!(
            "{}.{}",
            self.clip_id,
            self.content_type.extension()
        ))
    }

    /// Byte range of chunk `index` in the clip.
    pub fn range(&self, index: u32) -> (u64, u64) {
        let start = u64::from(index) * u64::from(self.chunk_bytes);
        (start, (start + u64::from(self.chunk_bytes)).min(self.bytes))
    }
}
