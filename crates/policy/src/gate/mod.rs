//! The privacy gate: the only code that turns a [`Record`](crate::record::Record) into bytes that may be sent.
//!
//! [`Admitted`] has private fields and no public constructor, so the uplink — which publishes
//! nothing but `Admitted` values — cannot send bytes that did not pass [`Gate::admit`].

use std::collections::BTreeSet;

use super::consent::Ledger;
use super::{Field, Flow, KeyScope, LegalBasis, Policy, PseudonymKey, Secrets};
use camagent_wire::topic::{self, TopicError};

mod admit;

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
}

#[cfg(test)]
mod tests;
