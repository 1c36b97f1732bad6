//! Records: typed values of one flow, the only thing producers hand to the uplink.
//!
//! A record is not yet something that may be sent; the privacy gate
//! ([`crate::Gate`]) finds the purpose that governs its flow and decides which of its
//! fields leave, and how.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use camagent_wire::vocabulary::{ContentType, Field, Flow, ValueKind};
use camagent_wire::{ClipEvents, Manifest};

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

/// A field given a value of a kind it does not hold: a bug in the producer, refused before the
/// record exists.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("field `{field}` holds {expected:?}, not {found:?}")]
pub struct WrongKind {
    pub field: Field,
    pub expected: &'static [ValueKind],
    pub found: ValueKind,
}

impl Value {
    /// Its kind; `None` when the value is unavailable, which any field may be.
    pub fn kind(&self) -> Option<ValueKind> {
        match self {
            Value::Text(_) => Some(ValueKind::Text),
            Value::Count(_) => Some(ValueKind::Count),
            Value::Zone { .. } => Some(ValueKind::Zone),
            Value::Json(_) => Some(ValueKind::Structured),
            Value::Media { .. } => Some(ValueKind::Media),
            Value::Unavailable(_) => None,
        }
    }

    /// Whether `field` may hold this value.
    pub fn fits(&self, field: Field) -> Result<(), WrongKind> {
        match self.kind() {
            Some(found) if !field.kinds().contains(&found) => Err(WrongKind {
                field,
                expected: field.kinds(),
                found,
            }),
            _ => Ok(()),
        }
    }
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
    /// A record of `flow`, once every field holds a value of its kind.
    pub fn new(flow: Flow, fields: BTreeMap<Field, Value>) -> Result<Self, WrongKind> {
        for (field, value) in &fields {
            value.fits(*field)?;
        }
        Ok(Self::unchecked(flow, fields))
    }

    fn unchecked(flow: Flow, fields: BTreeMap<Field, Value>) -> Self {
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
        Self::unchecked(Flow::Status, fields)
    }

    /// A clip's record: the events it covers and its manifest.
    pub fn clip(manifest: &Manifest) -> Result<Self, WrongKind> {
        let events = ClipEvents {
            event_ids: manifest.event_ids.clone(),
        };
        Self::new(
            Flow::Clip,
            BTreeMap::from([
                (Field::EventData, Value::structured(&events)),
                (Field::Clip, Value::structured(manifest)),
            ]),
        )
    }

    /// A record holding one structured value, for the agent's own flows.
    pub fn json(flow: Flow, field: Field, payload: &impl Serialize) -> Result<Self, WrongKind> {
        Self::new(flow, BTreeMap::from([(field, Value::structured(payload))]))
    }
}

impl Value {
    /// A structured payload of the wire contract.
    pub fn structured(payload: &impl Serialize) -> Self {
        match serde_json::to_value(payload) {
            Ok(value) => Value::Json(value),
            Err(e) => Value::Unavailable(format!("cannot encode: {e}")),
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_given_the_wrong_kind_of_value_makes_no_record() {
        let wrong = BTreeMap::from([(Field::Uptime, Value::Text("42 s".into()))]);
        assert_eq!(
            Record::new(Flow::Telemetry, wrong),
            Err(WrongKind {
                field: Field::Uptime,
                expected: &[ValueKind::Count],
                found: ValueKind::Text,
            })
        );
        let media_as_model = BTreeMap::from([(Field::Model, Value::jpeg(vec![0xff, 0xd8]))]);
        assert!(Record::new(Flow::Activation, media_as_model).is_err());
    }

    #[test]
    fn any_field_may_be_unavailable() {
        for field in Field::ALL {
            let fields = BTreeMap::from([(*field, Value::Unavailable("gone".into()))]);
            assert!(Record::new(Flow::Activation, fields).is_ok(), "{field}");
        }
    }

    #[test]
    fn the_agent_s_own_records_fit_their_fields() {
        let status = Record::status(true);
        for (field, value) in &status.fields {
            assert_eq!(value.fits(*field), Ok(()));
        }
        for field in [
            Field::AgentStatus,
            Field::UsageStatistics,
            Field::ConsentRecord,
            Field::ErasureRecord,
            Field::EventData,
            Field::Clip,
            Field::Snapshot,
        ] {
            assert!(Record::json(Flow::Alarm, field, &serde_json::json!({})).is_ok());
        }
    }
}
