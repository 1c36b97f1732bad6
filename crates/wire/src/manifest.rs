//! The manifest of a clip, or of a snapshot too large for one message: what a receiver needs
//! to reassemble the chunks and verify the whole.
//!
//! A clip streamed while it is recorded is fragmented MP4, and its chunks follow its pieces:
//! the init segment, then each fragment, each cut into chunks of at most `chunk_bytes`. A
//! chunk never straddles two pieces, so a chunk sent while the clip was still being written is
//! the same chunk (index, offset and bytes) in the finished clip.

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
    /// Where each piece of a fragmented MP4 ends: the init segment, then each fragment. Bytes
    /// past the last (the fragment index) are one more piece. Empty: the file is one piece.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fragments: Vec<u64>,
    /// The recording was cut short (a crash or power cut): the clip ends at the last fragment
    /// written before it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut_short: bool,
}

impl Manifest {
    /// The manifest of `bytes` of fragmented MP4 whose pieces end at `fragments` (see
    /// [`Manifest::fragments`]), in chunks of at most `chunk_bytes`: no hash or duration yet.
    pub fn mp4(
        clip_id: String,
        event_ids: Vec<String>,
        fragments: Vec<u64>,
        bytes: u64,
        chunk_bytes: u32,
    ) -> Self {
        let mut manifest = Self {
            clip_id,
            content_type: ContentType::Mp4,
            bytes,
            duration_ms: 0,
            sha256: String::new(),
            chunk_bytes,
            chunks: 0,
            event_ids,
            fragments,
            cut_short: false,
        };
        manifest.chunks = manifest.count_chunks();
        manifest
    }

    /// Chunks of a file of `bytes` in one piece.
    pub fn chunk_count(bytes: u64, chunk_bytes: u32) -> u32 {
        bytes.div_ceil(u64::from(chunk_bytes.max(1))) as u32
    }

    /// Chunks of this manifest's pieces.
    pub fn count_chunks(&self) -> u32 {
        self.pieces()
            .map(|(start, end)| Self::chunk_count(end - start, self.chunk_bytes))
            .sum()
    }

    /// Where the media is stored in the upload directory `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!(
            "{}.{}",
            self.clip_id,
            self.content_type.extension()
        ))
    }

    /// Byte range of chunk `index` in the clip; empty past the last chunk.
    pub fn range(&self, index: u32) -> (u64, u64) {
        let step = u64::from(self.chunk_bytes.max(1));
        let mut index = u64::from(index);
        for (start, end) in self.pieces() {
            let here = (end - start).div_ceil(step);
            if index < here {
                let from = start + index * step;
                return (from, (from + step).min(end));
            }
            index -= here;
        }
        (self.bytes, self.bytes)
    }

    /// The pieces, in order, none empty.
    fn pieces(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let ends = self
            .fragments
            .iter()
            .copied()
            .take_while(|&end| end <= self.bytes)
            .chain(std::iter::once(self.bytes));
        ends.scan(0, |start, end| {
            let piece = (*start, end);
            *start = end.max(*start);
            Some(piece)
        })
        .filter(|(start, end)| end > start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(bytes: u64, chunk_bytes: u32, fragments: Vec<u64>) -> Manifest {
        Manifest::mp4("c".into(), Vec::new(), fragments, bytes, chunk_bytes)
    }

    fn ranges(m: &Manifest) -> Vec<(u64, u64)> {
        (0..m.chunks).map(|i| m.range(i)).collect()
    }

    #[test]
    fn one_piece_is_cut_into_fixed_chunks() {
        let m = manifest(25, 10, Vec::new());
        assert_eq!(ranges(&m), [(0, 10), (10, 20), (20, 25)]);
        assert_eq!(m.range(3), (25, 25));
    }

    #[test]
    fn chunks_never_straddle_a_fragment_and_the_tail_is_a_piece() {
        let m = manifest(40, 10, vec![4, 16, 36]);
        assert_eq!(
            ranges(&m),
            [(0, 4), (4, 14), (14, 16), (16, 26), (26, 36), (36, 40)]
        );
    }

    #[test]
    fn a_growing_clip_keeps_the_chunks_it_had() {
        let early = manifest(16, 10, vec![4, 16]);
        let later = manifest(90, 10, vec![4, 16, 50, 90]);
        assert!(ranges(&later).starts_with(&ranges(&early)));
        assert_eq!(later.chunks, 1 + 2 + 4 + 4);
    }

    #[test]
    fn the_manifest_of_a_plain_clip_reads_as_before() {
        let m = manifest(25, 10, Vec::new());
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("fragments").is_none() && json.get("cut_short").is_none());
        let back: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }
}
