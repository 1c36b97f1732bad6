//! Records: typed values of one flow, the only thing producers hand to the uplink.
//!
//! A record is not yet something that may be sent; the privacy gate
//! ([`crate::policy::Gate`]) finds the purpose that governs its flow and decides which of its
//! fields leave, and how.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::vocabulary::{ContentType, Field, Flow};

/// One field's value as the device knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Text(String),
    Count(u64),
    /// An IANA zone and its UTC offset now, so the offset can leave without the zone.
    Zone {
        name: String,
        utc_offset_secs: i32,
    },
    /// Structured values the agent makes itself (receipts, counters).
    Json(serde_json::Value),
    /// A picture or other media, e.g. the JPEG snapshot of an alert.
    Media {
        content_type: ContentType,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
    },
    /// The device could not read this fact; the reason stays on the device.
    Unavailable(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Count(n) => write!(f, "{n}"),
            Value::Zone { name, .. } => f.write_str(name),
            Value::Json(v) => write!(f, "{v}"),
            Value::Media { content_type, data } => {
                write!(f, "({} bytes of {content_type})", data.len())
            }
            Value::Unavailable(reason) => write!(f, "(unavailable: {reason})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub flow: Flow,
    /// Milliseconds since the Unix epoch when the record was made.
    pub created_ms: u64,
    pub fields: BTreeMap<Field, Value>,
    /// An upload (a snapshot too large for one message) that must reach the broker before
    /// this record does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaits: Option<String>,
}

impl Record {
    pub fn new(flow: Flow, fields: BTreeMap<Field, Value>) -> Self {
        Self {
            flow,
            created_ms: now_ms(),
            fields,
            awaits: None,
        }
    }

    /// The online (`true`) or offline (`false`) marker.
    pub fn status(online: bool) -> Self {
        let state = if online { "online" } else { "offline" };
        let fields = BTreeMap::from([(Field::OnlineStatus, Value::Text(state.into()))]);
        Self::new(Flow::Status, fields)
    }

    /// A record holding one structured value, for the agent's own flows.
    pub fn json(flow: Flow, field: Field, value: serde_json::Value) -> Self {
        Self::new(flow, BTreeMap::from([(field, Value::Json(value))]))
    }
}

impl Value {
    /// A JPEG picture.
    pub fn jpeg(data: Vec<u8>) -> Self {
        Value::Media {
            content_type: ContentType::Jpeg,
            data,
        }
    }
}

/// Media bytes as base64 text, in the outbox and in payloads (JSON has no bytes).
pub mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn encode(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}
