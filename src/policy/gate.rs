//! The privacy gate: the only code that turns a [`Record`] into bytes that may be sent.
//!
//! [`Admitted`] has private fields and no public constructor, so the uplink — which publishes
//! nothing but `Admitted` values — cannot send bytes that did not pass [`Gate::admit`].

use serde_json::{json, Map};

use super::{Field, Policy, PseudonymKey};
use crate::record::{Record, Value};
use crate::uplink::topic::{self, TopicError};

/// Scope of the pseudonym that replaces the serial number in topics.
const DEVICE_ID_SCOPE: &str = "camagent/device-id";

/// Version of the JSON payload schema, carried in every payload as `schema`.
pub const PAYLOAD_SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("purpose `{0}` is not in the policy")]
    UnknownPurpose(String),
    #[error("the policy permits none of this record's fields for purpose `{0}`")]
    NothingPermitted(String),
    #[error("cannot build topic: {0}")]
    Topic(#[from] TopicError),
}

/// Gate output: a topic and payload holding only what the policy permits.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    purpose: String,
    fields: Vec<Field>,
}

impl Admitted {
    pub fn topic(&self) -> &str {
        &self.topic
    }
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    pub fn retain(&self) -> bool {
        self.retain
    }
    pub fn purpose(&self) -> &str {
        &self.purpose
    }
    /// Names of the fields that left (values never appear here).
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }
}

pub struct Gate {
    policy: Policy,
    key: PseudonymKey,
    prefix: String,
    /// The board's serial, when known: the device id in topics where the policy permits it.
    serial: Option<String>,
}

impl Gate {
    pub fn new(policy: Policy, key: PseudonymKey, prefix: &str, serial: Option<String>) -> Self {
        Self {
            policy,
            key,
            prefix: prefix.to_owned(),
            serial,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The device id that topics of `purpose` carry: the serial number only where the policy
    /// permits it for that purpose (and it is topic-safe), otherwise a keyed pseudonym.
    pub fn device_id(&self, purpose: &str) -> String {
        match &self.serial {
            Some(serial)
                if self.policy.permits(purpose, Field::SerialNumber)
                    && topic::is_safe_level(serial) =>
            {
                serial.clone()
            }
            serial => self.key.pseudonym(
                DEVICE_ID_SCOPE,
                serial.as_deref().unwrap_or_default().as_bytes(),
            ),
        }
    }

    /// Applies the policy to `record`. `seq` is the outbox sequence number, if queued.
    pub fn admit(&self, record: &Record, seq: Option<u64>) -> Result<Admitted, Refusal> {
        let purpose = self
            .policy
            .purpose(&record.purpose)
            .ok_or_else(|| Refusal::UnknownPurpose(record.purpose.clone()))?;

        let mut values = Map::new();
        let mut unavailable = Vec::new();
        let mut fields = Vec::new();
        for (field, value) in &record.fields {
            if !purpose.fields.contains(field) {
                continue;
            }
            fields.push(*field);
            match value {
                Value::Text(s) => {
                    values.insert(field.name().into(), json!(s));
                }
                Value::Count(n) => {
                    values.insert(field.name().into(), json!(n));
                }
                // The reason may name local paths; only the fact that it is missing leaves.
                Value::Unavailable(_) => unavailable.push(field.name()),
            }
        }
        if fields.is_empty() {
            return Err(Refusal::NothingPermitted(record.purpose.clone()));
        }

        let topic = topic::build(
            &self.prefix,
            &self.device_id(&record.purpose),
            record.kind.topic_level(),
        )?;
        let mut payload = json!({
            "schema": PAYLOAD_SCHEMA,
            "kind": record.kind,
            "purpose": record.purpose,
            "time": humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.created_ms),
            )
            .to_string(),
            "fields": values,
        });
        if let Some(seq) = seq {
            payload["seq"] = json!(seq);
        }
        if !unavailable.is_empty() {
            payload["unavailable"] = json!(unavailable);
        }
        Ok(Admitted {
            topic,
            payload: payload.to_string().into_bytes(),
            retain: record.kind.retained(),
            purpose: record.purpose.clone(),
            fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DEVICE_ACTIVATION;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn gate(fields: &str) -> Gate {
        let text = format!(
            "schema = 1\nname = \"t\"\nversion = \"1\"\n[[purpose]]\nid = \"device_activation\"\nfields = [{fields}]\n"
        );
        let policy = Policy::parse(&text, Path::new("t")).unwrap();
        Gate::new(
            policy,
            PseudonymKey::from_bytes(&[9; 32]),
            "acme",
            Some("SN-777".into()),
        )
    }

    fn facts() -> Record {
        Record::facts(BTreeMap::from([
            (Field::SerialNumber, Value::Text("SN-777".into())),
            (Field::MacAddress, Value::Text("aa:bb:cc:dd:ee:ff".into())),
            (Field::Model, Value::Text("Cam-1".into())),
            (
                Field::Timezone,
                Value::Unavailable("/etc/timezone: gone".into()),
            ),
        ]))
    }

    fn json(a: &Admitted) -> serde_json::Value {
        serde_json::from_slice(a.payload()).unwrap()
    }

    #[test]
    fn only_permitted_fields_leave() {
        let a = gate("\"model\", \"timezone\"")
            .admit(&facts(), Some(4))
            .unwrap();
        let body = json(&a);
        assert_eq!(body["fields"], json!({"model": "Cam-1"}));
        assert_eq!(body["unavailable"], json!(["timezone"]));
        assert_eq!(body["seq"], 4);
        let bytes = String::from_utf8(a.payload().to_vec()).unwrap();
        for secret in ["SN-777", "aa:bb", "/etc/timezone"] {
            assert!(
                !bytes.contains(secret) && !a.topic().contains(secret),
                "{secret} leaked"
            );
        }
        assert_eq!(a.fields(), &[Field::Model, Field::Timezone]);
    }

    #[test]
    fn topic_carries_serial_only_where_permitted() {
        let with = gate("\"serial_number\"").admit(&facts(), None).unwrap();
        assert_eq!(with.topic(), "acme/SN-777/facts");
        let without = gate("\"model\"").admit(&facts(), None).unwrap();
        assert!(without.topic().starts_with("acme/"), "{}", without.topic());
        assert!(!without.topic().contains("SN-777"));
    }

    #[test]
    fn unknown_purpose_and_empty_result_are_refused() {
        let g = gate("\"model\"");
        let mut r = facts();
        r.purpose = "marketing".into();
        assert_eq!(
            g.admit(&r, None),
            Err(Refusal::UnknownPurpose("marketing".into()))
        );
        let status = Record::status(true);
        assert!(matches!(
            g.admit(&status, None),
            Err(Refusal::UnknownPurpose(_))
        ));
        let g = gate("\"uptime\"");
        assert_eq!(
            g.admit(&facts(), None),
            Err(Refusal::NothingPermitted(DEVICE_ACTIVATION.into()))
        );
    }
}
