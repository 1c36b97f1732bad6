//! A chunk's payload is binary: a 4-byte big-endian header length, the JSON [`ChunkHeader`],
//! then the clip's bytes. Binary, so a clip costs its size on the wire and not a third more.

use serde::{Deserialize, Serialize};

/// The header of a chunk's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkHeader {
    pub schema: u32,
    pub clip_id: String,
    pub index: u32,
    /// Chunks of the clip; of the part written so far while it is still being recorded.
    pub chunks: u32,
    /// Where the chunk's bytes go in the clip, so a receiver can write a clip that is still
    /// being recorded (no manifest yet) in place, playable as it grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub purpose: String,
    pub legal_basis: String,
}

pub fn frame(header: &ChunkHeader, data: &[u8]) -> Vec<u8> {
    let head = serde_json::to_vec(header).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + head.len() + data.len());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(data);
    out
}

/// Why a payload is not a chunk.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("chunk payload shorter than its header")]
    Truncated,
    #[error("chunk header")]
    Header(#[from] serde_json::Error),
}

/// Splits a chunk payload into its header and data.
pub fn parse(payload: &[u8]) -> Result<(ChunkHeader, &[u8]), ChunkError> {
    let (len, rest) = payload
        .split_first_chunk::<4>()
        .ok_or(ChunkError::Truncated)?;
    let len = u32::from_be_bytes(*len) as usize;
    let head = rest.get(..len).ok_or(ChunkError::Truncated)?;
    Ok((serde_json::from_slice(head)?, &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ChunkHeader {
        ChunkHeader {
            schema: 1,
            clip_id: "c".into(),
            index: 2,
            chunks: 3,
            offset: Some(20),
            purpose: "p".into(),
            legal_basis: "dpv:Contract".into(),
        }
    }

    #[test]
    fn a_framed_chunk_parses_back() {
        let payload = frame(&header(), b"data");
        let (h, data) = parse(&payload).unwrap();
        assert_eq!((h, data), (header(), &b"data"[..]));
    }

    #[test]
    fn every_truncation_is_refused() {
        let payload = frame(&header(), b"");
        for len in 0..payload.len() {
            assert!(parse(&payload[..len]).is_err(), "{len}");
        }
        assert!(parse(&[0, 0, 0, 2, b'{', b'}']).is_err(), "not a header");
    }
}
