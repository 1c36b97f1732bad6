//! The privacy gate: the only code that turns a [`Record`] into bytes that may be sent.
//!
//! [`Admitted`] has private fields and no public constructor, so the uplink — which publishes
//! nothing but `Admitted` values — cannot send bytes that did not pass [`Gate::admit`].

use std::collections::BTreeSet;

use serde_json::{json, Map};

use super::consent::Ledger;
use super::{transform, Field, Flow, KeyScope, LegalBasis, Policy, PseudonymKey, Secrets};
use crate::record::{rfc3339, Record, Value};
use crate::vocabulary::ContentType;
use crate::wire::topic::{self, TopicError};
use crate::wire::{chunk, ChunkHeader, Envelope, Manifest, PAYLOAD_SCHEMA};

/// Scope of the pseudonym that replaces the serial number in topics.
const DEVICE_ID_SCOPE: &str = "camagent/device-id";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no purpose in the policy claims flow `{0}`")]
    NoPurpose(Flow),
    #[error("purpose `{0}` needs the owner's consent, which is not given")]
    NoConsent(String),
    #[error("the owner withdrew consent to (or objected to) purpose `{0}`")]
    Withdrawn(String),
    #[error("the policy permits none of this record's fields for purpose `{0}`")]
    NothingPermitted(String),
    #[error("cannot build the topic")]
    Topic(#[from] TopicError),
    #[error("the topic or every permitted field of purpose `{0}` holds a secret value")]
    HoldsSecret(String),
}

/// Gate output: a topic and payload holding only what the policy permits.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    purpose: String,
    legal_basis: &'static str,
    fields: Vec<Field>,
    withheld: Vec<Field>,
    /// The outbox sequence number it carries, if any.
    seq: Option<u64>,
}

#[cfg(test)]
impl Admitted {
    /// Gate output of a given payload, for tests of what carries it.
    pub(crate) fn for_test(payload: Vec<u8>) -> Self {
        Self {
            topic: "t/d/alarm".into(),
            payload,
            retain: false,
            purpose: "p".into(),
            legal_basis: LegalBasis::Contract.name(),
            fields: Vec::new(),
            withheld: Vec::new(),
            seq: None,
        }
    }
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
    pub fn legal_basis(&self) -> &str {
        self.legal_basis
    }
    /// Names of the fields that left (values never appear here).
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }
    /// The outbox sequence number the payload carries (records from the outbox).
    pub fn seq(&self) -> Option<u64> {
        self.seq
    }
    /// Permitted fields kept back because their value holds a secret; only their names leave.
    pub fn withheld(&self) -> &[Field] {
        &self.withheld
    }
}

/// What governs a record once its flow is resolved: the policy's purpose, or a built-in one.
struct Rule<'a> {
    id: &'a str,
    basis: LegalBasis,
    fields: Fields<'a>,
    transforms: Option<&'a std::collections::BTreeMap<Field, super::Transform>>,
    key: KeyScope,
}

/// The fields a rule permits: a purpose's list, or a built-in flow's one field.
enum Fields<'a> {
    One(Field),
    Listed(&'a BTreeSet<Field>),
}

impl Fields<'_> {
    fn contains(&self, field: &Field) -> bool {
        match self {
            Fields::One(one) => one == field,
            Fields::Listed(list) => list.contains(field),
        }
    }
}

pub struct Gate {
    policy: Policy,
    key: PseudonymKey,
    consent: Ledger,
    prefix: String,
    /// The board's serial, when known: the device id in topics where the policy permits it.
    serial: Option<String>,
    /// Values that never leave in any field (see [`Secrets`]).
    secrets: Secrets,
    /// Counts the changes to what the gate decides (consent, key, secrets): a decision taken
    /// at an earlier epoch may no longer hold.
    epoch: u64,
}

impl Gate {
    pub fn new(policy: Policy, key: PseudonymKey, prefix: &str, serial: Option<String>) -> Self {
        Self {
            policy,
            key,
            consent: Ledger::default(),
            prefix: prefix.to_owned(),
            serial,
            secrets: Secrets::default(),
            epoch: 0,
        }
    }

    /// Changes whenever the gate's decisions may have changed: an [`Admitted`] taken at the
    /// same epoch is what admitting the same record again would give.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The device's secret values: from now on no field, topic or chunk header holding one
    /// leaves. A record's own secret fields are added to these when it is admitted.
    pub fn set_secrets(&mut self, secrets: Secrets) {
        self.secrets = secrets;
        self.epoch += 1;
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn consent(&self) -> &Ledger {
        &self.consent
    }

    /// Takes the owner's current choices; they apply from the next record admitted.
    pub fn set_consent(&mut self, ledger: Ledger) {
        self.consent = ledger;
        self.epoch += 1;
    }

    /// Replaces the pseudonym key (after an erase): every pseudonym changes.
    pub fn set_key(&mut self, key: PseudonymKey) {
        self.key = key;
        self.epoch += 1;
    }

    /// The device's own pseudonymous id: MQTT client id and command topic.
    pub fn anchor_id(&self) -> String {
        self.pseudonym_id(&self.key)
    }

    fn pseudonym_id(&self, key: &PseudonymKey) -> String {
        key.pseudonym(
            DEVICE_ID_SCOPE,
            self.serial.as_deref().unwrap_or_default().as_bytes(),
        )
    }

    fn key_for(&self, scope: KeyScope, purpose: &str) -> PseudonymKey {
        match scope {
            KeyScope::Device => self.key.clone(),
            KeyScope::Purpose => self.key.derive(purpose),
        }
    }

    /// Whether a flow may send now (a purpose claims it and the owner's consent allows it).
    pub fn check_flow(&self, flow: Flow) -> Result<(), Refusal> {
        self.rule(flow).map(|_| ())
    }

    fn rule(&self, flow: Flow) -> Result<Rule<'_>, Refusal> {
        match flow.built_in() {
            Some(built_in) => Ok(Rule {
                id: built_in.id,
                basis: LegalBasis::LegalObligation,
                fields: Fields::One(built_in.field),
                transforms: None,
                key: KeyScope::Device,
            }),
            None => {
                let p = self
                    .policy
                    .purpose_for_flow(flow)
                    .ok_or(Refusal::NoPurpose(flow))?;
                if !self.consent.permits(p) {
                    return Err(if self.consent.choice(&p.id).is_some() {
                        Refusal::Withdrawn(p.id.clone())
                    } else {
                        Refusal::NoConsent(p.id.clone())
                    });
                }
                Ok(Rule {
                    id: &p.id,
                    basis: p.legal_basis,
                    fields: Fields::Listed(&p.fields),
                    transforms: Some(&p.transforms),
                    key: p.pseudonym_key,
                })
            }
        }
    }

    /// The purpose id that governs `flow`, if any.
    pub fn purpose_of(&self, flow: Flow) -> Option<String> {
        match flow.built_in() {
            Some(built_in) => Some(built_in.id.to_owned()),
            None => self.policy.purpose_for_flow(flow).map(|p| p.id.clone()),
        }
    }

    /// The device id in topics of `flow`: the serial number only where its purpose carries
    /// the serial untransformed (and it is topic-safe), otherwise a keyed pseudonym.
    pub fn device_id(&self, flow: Flow) -> String {
        let Ok(rule) = self.rule(flow) else {
            return self.anchor_id();
        };
        let serial_in_clear = rule.fields.contains(&Field::SerialNumber)
            && !self.policy.never_leave.contains(&Field::SerialNumber)
            && rule
                .transforms
                .is_none_or(|t| !t.contains_key(&Field::SerialNumber));
        match &self.serial {
            Some(serial) if serial_in_clear && topic::is_safe_level(serial) => serial.clone(),
            _ => self.pseudonym_id(&self.key_for(rule.key, rule.id)),
        }
    }

    /// Whether records of purpose `id` may leave now (it is in the policy and the owner's
    /// consent allows it).
    pub fn purpose_runs(&self, id: &str) -> bool {
        self.policy
            .purposes
            .iter()
            .any(|p| p.id == id && self.consent.permits(p))
    }

    /// An empty retained publish on `topic`, which a retained record of `purpose` used: it
    /// deletes that record at the broker (after an objection, a withdrawal or an erase). It
    /// carries no data; it is logged like any send, under the legal obligation to stop.
    pub fn admit_clear(&self, topic: &str, purpose: &str) -> Admitted {
        Admitted {
            topic: topic.to_owned(),
            payload: Vec::new(),
            retain: true,
            purpose: purpose.to_owned(),
            legal_basis: LegalBasis::LegalObligation.name(),
            fields: Vec::new(),
            withheld: Vec::new(),
            seq: None,
        }
    }

    /// Admits chunk `index` of a clip, with the decision the clip record gets: the clip
    /// flow's purpose must permit the `clip` field, and the owner's consent must allow it.
    pub fn admit_chunk(
        &self,
        manifest: &Manifest,
        index: u32,
        data: &[u8],
    ) -> Result<Admitted, Refusal> {
        // A snapshot sent in chunks is the alarm purpose's snapshot; anything else a clip.
        let (flow, field) = match manifest.content_type {
            ContentType::Jpeg => (Flow::Alarm, Field::Snapshot),
            ContentType::Mp4 => (Flow::Clip, Field::Clip),
        };
        let rule = self.rule(flow)?;
        if !rule.fields.contains(&field) || self.policy.never_leave.contains(&field) {
            return Err(Refusal::NothingPermitted(rule.id.to_owned()));
        }
        let topic = topic::build(&self.prefix, &self.device_id(flow), topic::CLIP_DATA_LEVEL)?;
        let header = ChunkHeader {
            schema: PAYLOAD_SCHEMA,
            clip_id: manifest.clip_id.clone(),
            index,
            chunks: manifest.chunks,
            purpose: rule.id.to_owned(),
            legal_basis: rule.basis.dpv().to_owned(),
        };
        // The chunk's data is encoder output (pixels), not device text; the parts the gate
        // writes are checked.
        let payload = chunk::frame(&header, data);
        let header_len = payload.len() - data.len();
        if self.secrets.found_in(topic.as_bytes()) || self.secrets.found_in(&payload[..header_len])
        {
            return Err(Refusal::HoldsSecret(rule.id.to_owned()));
        }
        Ok(Admitted {
            topic,
            payload,
            retain: false,
            purpose: rule.id.to_owned(),
            legal_basis: rule.basis.name(),
            fields: vec![field],
            withheld: Vec::new(),
            seq: None,
        })
    }

    /// Applies the policy to `record`. `seq` is the outbox sequence number, if queued.
    pub fn admit(&self, record: &Record, seq: Option<u64>) -> Result<Admitted, Refusal> {
        let rule = self.rule(record.flow)?;
        let key = self.key_for(rule.key, rule.id);

        // The record's own secret fields (a fresh Wi-Fi key) count as well as those known.
        let own = Secrets::from_facts(&record.fields, &self.policy.never_leave);
        let holds_secret = |bytes: &[u8]| self.secrets.found_in(bytes) || own.found_in(bytes);

        let mut values = Map::new();
        let mut unavailable = Vec::new();
        let mut withheld = Vec::new();
        let mut fields = Vec::new();
        for (field, value) in &record.fields {
            if !rule.fields.contains(field) || self.policy.never_leave.contains(field) {
                continue;
            }
            let value = match rule.transforms.and_then(|t| t.get(field)) {
                Some(t) => transform::apply(*t, value, &key, field.name()),
                None => Some(value.clone()),
            };
            let out = match value {
                Some(Value::Text(s)) => json!(s),
                Some(Value::Count(n)) => json!(n),
                Some(Value::Zone { name, .. }) => json!(name),
                Some(Value::Json(v)) => v,
                Some(Value::Media { content_type, data }) => json!({
                    "content_type": content_type,
                    "bytes": data.len(),
                    "base64": crate::record::base64_bytes::encode(&data),
                }),
                // The reason may name local paths; only the fact that it is missing leaves.
                // A value its transform cannot handle safely does not leave either.
                Some(Value::Unavailable(_)) | None => {
                    fields.push(*field);
                    unavailable.push(field.name());
                    continue;
                }
            };
            // Media is searched as the bytes it holds (base64 only re-encodes them).
            let holds = match record.fields.get(field) {
                Some(Value::Media { data, .. }) => holds_secret(data),
                _ => holds_secret(out.to_string().as_bytes()),
            };
            if holds {
                withheld.push(*field);
                continue;
            }
            fields.push(*field);
            values.insert(field.name().into(), out);
        }
        if fields.is_empty() {
            return Err(if withheld.is_empty() {
                Refusal::NothingPermitted(rule.id.to_owned())
            } else {
                Refusal::HoldsSecret(rule.id.to_owned())
            });
        }

        // An erasure is confirmed under the id the erase retired (see `erase::confirmation`).
        let device_id = match (record.flow, record.fields.get(&Field::ErasureRecord)) {
            (Flow::ErasureConfirmation, Some(Value::Json(body))) => body["device_id"]
                .as_str()
                .filter(|id| topic::is_safe_level(id))
                .map_or_else(|| self.device_id(record.flow), str::to_owned),
            _ => self.device_id(record.flow),
        };
        let topic = topic::build(&self.prefix, &device_id, record.flow.name())?;
        let payload = Envelope {
            schema: PAYLOAD_SCHEMA,
            flow: record.flow.name().to_owned(),
            purpose: rule.id.to_owned(),
            legal_basis: rule.basis.dpv().to_owned(),
            time: rfc3339(record.created_ms),
            fields: values,
            seq,
            unavailable: unavailable.iter().map(|f: &&str| (*f).to_owned()).collect(),
            withheld: withheld
                .iter()
                .map(|f: &Field| f.name().to_owned())
                .collect(),
        };
        if holds_secret(topic.as_bytes()) {
            return Err(Refusal::HoldsSecret(rule.id.to_owned()));
        }
        Ok(Admitted {
            topic,
            payload: payload.to_bytes(),
            retain: record.flow.retained(),
            purpose: rule.id.to_owned(),
            legal_basis: rule.basis.name(),
            fields,
            withheld,
            seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::consent::{uuid, Choice, Via};
    use std::collections::BTreeMap;
    use std::path::Path;

    fn gate_with(extra: &str, fields: &str) -> Gate {
        let text = format!(
            "schema = 1\nname = \"t\"\nversion = \"1\"\n[[purpose]]\nid = \"bind\"\nflow = \"activation\"\nlegal_basis = \"contract\"\nfields = [{fields}]\n{extra}\n\
             [[purpose]]\nid = \"ux\"\nflow = \"usage_statistics\"\nlegal_basis = \"consent\"\nfields = [\"usage_statistics\"]\n"
        );
        let policy = Policy::parse(&text, Path::new("t")).unwrap();
        Gate::new(
            policy,
            PseudonymKey::from_bytes(&[9; 32]),
            "acme",
            Some("SN-777".into()),
        )
    }

    fn gate(fields: &str) -> Gate {
        gate_with("", fields)
    }

    fn facts() -> Record {
        Record::new(
            Flow::Activation,
            BTreeMap::from([
                (Field::SerialNumber, Value::Text("SN-777".into())),
                (Field::MacAddress, Value::Text("aa:bb:cc:dd:ee:ff".into())),
                (Field::Model, Value::Text("Cam-1".into())),
                (Field::IpAddress, Value::Text("192.168.7.42".into())),
                (
                    Field::Timezone,
                    Value::Zone {
                        name: "Europe/Berlin".into(),
                        utc_offset_secs: 3600,
                    },
                ),
                (
                    Field::Country,
                    Value::Unavailable("/etc/country: gone".into()),
                ),
            ]),
        )
        .unwrap()
    }

    fn json(a: &Admitted) -> serde_json::Value {
        serde_json::from_slice(a.payload()).unwrap()
    }

    #[test]
    fn only_permitted_fields_leave() {
        let a = gate("\"model\", \"country\"")
            .admit(&facts(), Some(4))
            .unwrap();
        let body = json(&a);
        assert_eq!(body["fields"], json!({"model": "Cam-1"}));
        assert_eq!(body["unavailable"], json!(["country"]));
        assert_eq!(body["seq"], 4);
        assert_eq!(body["legal_basis"], "dpv:Contract");
        let bytes = String::from_utf8(a.payload().to_vec()).unwrap();
        for secret in ["SN-777", "aa:bb", "/etc/country", "192.168", "Berlin"] {
            assert!(
                !bytes.contains(secret) && !a.topic().contains(secret),
                "{secret} leaked"
            );
        }
        assert_eq!(a.fields(), &[Field::Model, Field::Country]);
    }

    #[test]
    fn transforms_change_values_before_they_leave() {
        let g = gate_with(
            "transforms = { ip_address = \"truncate_ip\", timezone = \"utc_offset\", mac_address = \"pseudonym\" }",
            "\"ip_address\", \"timezone\", \"mac_address\"",
        );
        let body = json(&g.admit(&facts(), None).unwrap());
        assert_eq!(body["fields"]["ip_address"], "192.168.7.0");
        assert_eq!(body["fields"]["timezone"], "+01:00");
        let mac = body["fields"]["mac_address"].as_str().unwrap();
        assert_eq!(mac.len(), 24);
        assert!(!mac.contains("aa:bb"));
    }

    #[test]
    fn topic_carries_serial_only_where_permitted_in_clear() {
        let with = gate("\"serial_number\"").admit(&facts(), None).unwrap();
        assert_eq!(with.topic(), "acme/SN-777/activation");
        let without = gate("\"model\"").admit(&facts(), None).unwrap();
        assert!(!without.topic().contains("SN-777"));
        let hashed = gate_with(
            "transforms = { serial_number = \"pseudonym\" }",
            "\"serial_number\"",
        )
        .admit(&facts(), None)
        .unwrap();
        assert!(
            !hashed.topic().contains("SN-777") && !json(&hashed).to_string().contains("SN-777")
        );
    }

    #[test]
    fn purpose_keys_make_unlinkable_device_ids() {
        let shared = gate("\"model\"");
        let separate = gate_with("pseudonym_key = \"purpose\"", "\"model\"");
        assert_eq!(shared.device_id(Flow::Activation), shared.anchor_id());
        assert_ne!(separate.device_id(Flow::Activation), separate.anchor_id());
    }

    #[test]
    fn consent_gates_opt_in_purposes() {
        let mut g = gate("\"model\"");
        let usage = Record::json(
            Flow::UsageStatistics,
            Field::UsageStatistics,
            json!({"n": 1}),
        )
        .unwrap();
        assert_eq!(g.admit(&usage, None), Err(Refusal::NoConsent("ux".into())));
        let mut ledger = Ledger::default();
        ledger
            .record(g.policy(), "ux", Choice::Given, Via::Local, uuid())
            .unwrap();
        g.set_consent(ledger.clone());
        assert!(g.admit(&usage, None).is_ok());
        ledger
            .record(g.policy(), "ux", Choice::Withdrawn, Via::Local, uuid())
            .unwrap();
        g.set_consent(ledger);
        assert_eq!(g.admit(&usage, None), Err(Refusal::Withdrawn("ux".into())));
    }

    #[test]
    fn unclaimed_flows_and_empty_results_are_refused() {
        let g = gate("\"model\"");
        assert_eq!(
            g.admit(&Record::status(true), None),
            Err(Refusal::NoPurpose(Flow::Status))
        );
        let g = gate("\"uptime\"");
        assert_eq!(
            g.admit(&facts(), None),
            Err(Refusal::NothingPermitted("bind".into()))
        );
    }

    #[test]
    fn built_in_receipts_pass_without_a_policy_purpose() {
        let g = gate("\"model\"");
        let r = Record::json(
            Flow::ConsentReceipt,
            Field::ConsentRecord,
            json!({"receipt_id": "x"}),
        )
        .unwrap();
        let a = g.admit(&r, None).unwrap();
        assert_eq!(a.purpose(), "consent_management");
        assert!(a.topic().ends_with("/consent_receipt"));
    }
}
