//! An outbox entry on disk: magic, body length, CRC-32 of the body, body.
//!
//! Format 2's body is the record as JSON with its media left out, then the media bytes as
//! they are: a snapshot is stored at its size, and base64 is written once, by the gate, for
//! the wire. Format 1 (the whole record as JSON, media in base64) is still read, so entries
//! queued before an upgrade are delivered.

use serde::{Deserialize, Serialize};

use super::OutboxError;
use crate::record::{Record, Value};

const MAGIC_V1: &[u8; 8] = b"CAMOBX1\n";
const MAGIC_V2: &[u8; 8] = b"CAMOBX2\n";
const HEADER: usize = 8 + 8;

/// Format 2's JSON part: the record without its media bytes, and each media value's length
/// in field order.
#[derive(Serialize, Deserialize)]
struct Head {
    record: Record,
    media: Vec<u64>,
}

/// Frames a record (format 2).
pub fn encode(record: &Record) -> Result<Vec<u8>, OutboxError> {
    let mut bare = Record {
        flow: record.flow,
        created_ms: record.created_ms,
        fields: Default::default(),
        awaits: record.awaits.clone(),
    };
    let mut media = Vec::new();
    let mut lengths = Vec::new();
    for (field, value) in &record.fields {
        let value = match value {
            Value::Media { content_type, data } => {
                media.push(data.as_slice());
                lengths.push(data.len() as u64);
                Value::Media {
                    content_type: *content_type,
                    data: Vec::new(),
                }
            }
            other => other.clone(),
        };
        bare.fields.insert(*field, value);
    }
    let head = serde_json::to_vec(&Head {
        record: bare,
        media: lengths,
    })?;
    let body_len = 4 + head.len() + media.iter().map(|m| m.len()).sum::<usize>();
    let mut body = Vec::with_capacity(body_len);
    body.extend_from_slice(&(head.len() as u32).to_le_bytes());
    body.extend_from_slice(&head);
    for m in media {
        body.extend_from_slice(m);
    }
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(MAGIC_V2);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a frame and returns its record, or why it cannot be trusted.
pub fn decode(bytes: &[u8]) -> Result<Record, String> {
    let (magic, rest) = bytes.split_first_chunk::<8>().ok_or("missing header")?;
    let (len, rest) = rest.split_first_chunk::<4>().ok_or("missing header")?;
    let (crc, body) = rest.split_first_chunk::<4>().ok_or("missing header")?;
    let len = u32::from_le_bytes(*len) as usize;
    if body.len() != len {
        return Err(format!("length {} where the header says {len}", body.len()));
    }
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) {
        return Err("checksum mismatch".into());
    }
    match magic {
        m if m == MAGIC_V2 => decode_v2(body),
        m if m == MAGIC_V1 => {
            serde_json::from_slice(body).map_err(|e| format!("undecodable record: {e}"))
        }
        _ => Err("missing header".into()),
    }
}

fn decode_v2(body: &[u8]) -> Result<Record, String> {
    let (head_len, rest) = body.split_first_chunk::<4>().ok_or("truncated body")?;
    let head_len = u32::from_le_bytes(*head_len) as usize;
    let head = rest.get(..head_len).ok_or("truncated body")?;
    let Head { mut record, media } =
        serde_json::from_slice(head).map_err(|e| format!("undecodable record: {e}"))?;
    let mut bytes = &rest[head_len..];
    let mut lengths = media.into_iter();
    for value in record.fields.values_mut() {
        if let Value::Media { data, .. } = value {
            let len = lengths.next().ok_or("more media than lengths")?;
            let len = usize::try_from(len).map_err(|_| "media length out of range")?;
            if len > bytes.len() {
                return Err("media shorter than its length".into());
            }
            let (taken, left) = bytes.split_at(len);
            *data = taken.to_vec();
            bytes = left;
        }
    }
    if lengths.next().is_some() || !bytes.is_empty() {
        return Err("media and lengths do not match".into());
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::{Field, Flow};

    fn alert() -> Record {
        Record::new(
            Flow::Alarm,
            BTreeMap::from([
                (
                    Field::EventData,
                    Value::Json(serde_json::json!({"phase": "start"})),
                ),
                (
                    Field::Snapshot,
                    Value::jpeg(vec![0xff, 0xd8, 0, 1, 2, 0xff]),
                ),
                (Field::SerialNumber, Value::Text("SN1".into())),
            ]),
        )
        .unwrap()
    }

    #[test]
    fn a_record_with_media_round_trips_and_stores_the_media_raw() {
        let record = alert();
        let frame = encode(&record).unwrap();
        assert_eq!(decode(&frame).unwrap(), record);
        assert!(
            frame.ends_with(&[0xff, 0xd8, 0, 1, 2, 0xff]),
            "raw, not base64"
        );
    }

    #[test]
    fn format_1_entries_are_still_read() {
        let record = alert();
        let body = serde_json::to_vec(&record).unwrap();
        let mut frame = MAGIC_V1.to_vec();
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&body);
        assert_eq!(decode(&frame).unwrap(), record);
    }

    #[test]
    fn every_truncation_and_bit_flip_is_refused() {
        let frame = encode(&alert()).unwrap();
        for len in 0..frame.len() {
            assert!(decode(&frame[..len]).is_err(), "truncated to {len}");
        }
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&bad).is_err(), "bit {bit} flipped");
        }
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for bytes in [
            &b""[..],
            b"CAMOBX1\n",
            b"CAMOBX2\n\xff\xff\xff\xff\0\0\0\0",
            b"nonsense",
        ] {
            assert!(decode(bytes).is_err());
        }
    }
}
