//! A record's payload: JSON that names the purpose and legal basis it leaves for, beside the
//! fields the gate let through.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The payload format's version; a receiver refuses what it does not know.
pub const PAYLOAD_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub schema: u32,
    /// The flow's name, which is also the topic's last level.
    pub flow: String,
    /// The policy purpose this record leaves for.
    pub purpose: String,
    /// Its legal basis, as a DPV identifier.
    pub legal_basis: String,
    /// When the record was made (RFC 3339, UTC).
    pub time: String,
    /// Field name to value, only the fields the purpose permits.
    pub fields: Map<String, Value>,
    /// The device's outbox sequence number: unique per device, so a receiver drops the
    /// duplicates QoS 1 may deliver. Absent on the retained status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Permitted fields the device could not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
    /// Permitted fields kept back because their values hold a secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withheld: Vec<String>,
}

impl Envelope {
    pub fn to_bytes(&self) -> Vec<u8> {
        // A map of strings and JSON values always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
