//! Records: typed values with a purpose, the only thing producers hand to the uplink.
//!
//! A record is not yet something that may be sent; the privacy gate
//! ([`crate::policy::Gate`]) decides which of its fields leave, and how.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::policy::Field;

/// One field's value as the device knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Text(String),
    Count(u64),
    /// The device could not read this fact; the reason stays on the device.
    Unavailable(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Text(s) => f.write_str(s),
            Value::Count(n) => write!(f, "{n}"),
            Value::Unavailable(reason) => write!(f, "(unavailable: {reason})"),
        }
    }
}

/// What a record is about; it names the topic's last level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Device facts (serial, MAC, firmware, …).
    Facts,
    /// The retained online / offline marker.
    Status,
}

impl Kind {
    pub fn topic_level(self) -> &'static str {
        match self {
            Kind::Facts => "facts",
            Kind::Status => "status",
        }
    }

    /// Status is retained so a subscriber that comes later still learns it.
    pub fn retained(self) -> bool {
        matches!(self, Kind::Status)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub kind: Kind,
    /// A purpose id from the policy, e.g. `device_activation`.
    pub purpose: String,
    /// Milliseconds since the Unix epoch when the record was made.
    pub created_ms: u64,
    pub fields: BTreeMap<Field, Value>,
}

impl Record {
    pub fn new(kind: Kind, purpose: &str, fields: BTreeMap<Field, Value>) -> Self {
        Self {
            kind,
            purpose: purpose.to_owned(),
            created_ms: now_ms(),
            fields,
        }
    }

    /// The device facts, for purpose `device_activation`.
    pub fn facts(fields: BTreeMap<Field, Value>) -> Self {
        Self::new(Kind::Facts, crate::policy::DEVICE_ACTIVATION, fields)
    }

    /// The online (`true`) or offline (`false`) marker, for purpose `device_status`.
    pub fn status(online: bool) -> Self {
        let state = if online { "online" } else { "offline" };
        let fields = BTreeMap::from([(Field::OnlineStatus, Value::Text(state.into()))]);
        Self::new(Kind::Status, crate::policy::DEVICE_STATUS, fields)
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
