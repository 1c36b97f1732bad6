//! The owner's consent: a persisted ledger of every grant, withdrawal and objection, and the
//! receipts that acknowledge them.
//!
//! [`Ledger`] is pure data; the agent keeps it on disk (`camagent::policy::ledger_file`: atomic
//! replace under a lock, so the `camagent consent` command and the daemon can both write it).
//! The daemon notices a changed file before its next publish.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{LegalBasis, Policy, Purpose};
use crate::record::{now_ms, rfc3339};
use camagent_wire::payload::{
    ConsentReceipt, ConsentStatus, PolicyVersion, ReceiptController, ReceiptPurpose,
    RECEIPT_VERSION,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Choice {
    Given,
    /// Consent withdrawn, or (for a legitimate-interest purpose) an objection.
    Withdrawn,
}

/// Who changed consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// `camagent consent` on the device.
    Local,
    /// A signed cloud command.
    Cloud,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentEvent {
    pub receipt_id: String,
    pub time_ms: u64,
    pub purpose: String,
    pub choice: Choice,
    pub via: Via,
    pub policy_version: String,
    /// Whether the agent has queued this event's receipt for the cloud.
    #[serde(default)]
    pub receipted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub events: Vec<ConsentEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error("purpose `{0}` is not in the policy; `camagent policy explain` lists them")]
    UnknownPurpose(String),
    #[error("purpose `{purpose}` rests on {basis} ({gdpr}), not on the owner's consent: it can be neither granted nor withdrawn, only the device's data erased (`camagent erase`)")]
    NotOwnersChoice {
        purpose: String,
        basis: &'static str,
        gdpr: &'static str,
    },
    #[error("consent ledger {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("consent ledger {path} is unreadable ({reason}); move it aside to start a new one")]
    Corrupt { path: PathBuf, reason: String },
}

impl Ledger {
    /// The owner's latest choice for `purpose`, if they ever made one.
    pub fn choice(&self, purpose: &str) -> Option<Choice> {
        self.events
            .iter()
            .rev()
            .find(|e| e.purpose == purpose)
            .map(|e| e.choice)
    }

    /// Whether records of `purpose` may leave now.
    pub fn permits(&self, purpose: &Purpose) -> bool {
        match self.choice(&purpose.id) {
            Some(Choice::Given) => true,
            Some(Choice::Withdrawn) => {
                !purpose.legal_basis.owner_can_stop() && !purpose.needs_opt_in()
            }
            None => !purpose.needs_opt_in(),
        }
    }

    /// Records a choice, checking it against the policy; returns the new event.
    pub fn record(
        &mut self,
        policy: &Policy,
        purpose: &str,
        choice: Choice,
        via: Via,
        receipt_id: String,
    ) -> Result<ConsentEvent, ConsentError> {
        let p = policy
            .purpose(purpose)
            .ok_or_else(|| ConsentError::UnknownPurpose(purpose.to_owned()))?;
        // A contract or legal-obligation purpose runs whatever the owner says: recording a
        // choice (and sending a receipt for it) would claim otherwise.
        if !p.legal_basis.owner_can_stop() && !p.needs_opt_in() {
            return Err(ConsentError::NotOwnersChoice {
                purpose: purpose.to_owned(),
                basis: p.legal_basis.name(),
                gdpr: p.legal_basis.gdpr(),
            });
        }
        let event = ConsentEvent {
            receipt_id,
            time_ms: now_ms(),
            purpose: purpose.to_owned(),
            choice,
            via,
            policy_version: policy.version.clone(),
            receipted: false,
        };
        self.events.push(event.clone());
        Ok(event)
    }
}

/// A consent receipt shaped after ISO/IEC TS 27560 and the Kantara Consent Receipt: who (the
/// device's topic id), when, under which policy version, whose (the controller, its
/// jurisdiction and policy URL), which purpose, and its new state.
pub fn receipt(policy: &Policy, event: &ConsentEvent) -> ConsentReceipt {
    let purpose = policy.purpose(&event.purpose);
    let basis = purpose
        .map(|p| p.legal_basis)
        .unwrap_or(LegalBasis::Consent);
    // Null where the controller's own document does not say.
    let controller = policy.controller.as_ref();
    ConsentReceipt {
        receipt_version: RECEIPT_VERSION.into(),
        receipt_id: event.receipt_id.clone(),
        timestamp: rfc3339(event.time_ms),
        collection_method: match event.via {
            Via::Local => "device command line",
            Via::Cloud => "signed cloud command",
        }
        .into(),
        policy: PolicyVersion {
            name: policy.name.clone(),
            version: event.policy_version.clone(),
        },
        controller: controller.map(|c| ReceiptController {
            name: c.name.clone(),
            contact: c.contact.clone(),
        }),
        jurisdiction: controller.and_then(|c| c.jurisdiction.clone()),
        policy_url: controller.and_then(|c| c.policy_url.clone()),
        purposes: vec![ReceiptPurpose {
            purpose: event.purpose.clone(),
            purpose_category: purpose.and_then(|p| p.dpv.clone()),
            legal_basis: basis.dpv().into(),
            data_categories: purpose
                .map(|p| p.fields.iter().map(|f| f.vocabulary_id().into()).collect())
                .unwrap_or_default(),
            status: match (event.choice, basis) {
                (Choice::Given, _) => ConsentStatus::Given,
                (Choice::Withdrawn, LegalBasis::LegitimateInterest) => ConsentStatus::Objected,
                (Choice::Withdrawn, _) => ConsentStatus::Withdrawn,
            },
        }],
    }
}

/// A random RFC 4122 version-4 UUID (ring's system random).
pub fn uuid() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    // The system RNG failing is not recoverable; a zero id would still be unique enough
    // only by accident, so fall back to time-derived bytes rather than panic.
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        b[..8].copy_from_slice(&now_ms().to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = camagent_wire::hex::encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const POLICY_TEXT: &str = "schema = 1\nname = \"t\"\nversion = \"7\"\n\
         [[purpose]]\nid = \"ux\"\nflow = \"usage_statistics\"\nlegal_basis = \"consent\"\nfields = [\"uptime\"]\n\
         [[purpose]]\nid = \"stats\"\nflow = \"telemetry\"\nlegal_basis = \"legitimate_interest\"\nfields = [\"uptime\"]\n\
         [[purpose]]\nid = \"bind\"\nflow = \"activation\"\nlegal_basis = \"contract\"\nfields = [\"model\"]\n";

    fn policy() -> Policy {
        Policy::parse(POLICY_TEXT, Path::new("t")).unwrap()
    }

    #[test]
    fn opt_in_needs_a_grant_and_stops_on_withdrawal() {
        let p = policy();
        let ux = p.purpose("ux").unwrap();
        let mut l = Ledger::default();
        assert!(!l.permits(ux));
        l.record(&p, "ux", Choice::Given, Via::Local, uuid())
            .unwrap();
        assert!(l.permits(ux));
        l.record(&p, "ux", Choice::Withdrawn, Via::Cloud, uuid())
            .unwrap();
        assert!(!l.permits(ux));
    }

    #[test]
    fn objection_stops_legitimate_interest_but_contract_is_not_the_owners_choice() {
        let p = policy();
        let mut l = Ledger::default();
        assert!(l.permits(p.purpose("stats").unwrap()));
        let e = l
            .record(&p, "stats", Choice::Withdrawn, Via::Local, uuid())
            .unwrap();
        assert!(!l.permits(p.purpose("stats").unwrap()));
        let wire = |policy: &Policy| serde_json::to_value(receipt(policy, &e)).unwrap();
        assert_eq!(wire(&p)["purposes"][0]["status"], "objected");
        // Whose policy: null where it names no controller, never guessed.
        assert!(wire(&p)["controller"].is_null());
        let named = Policy::parse(
            &format!("{}\n[controller]\nname = \"Acme Ltd\"\ncontact = \"dpo@acme.test\"\npolicy_url = \"https://acme.test/p\"\n", POLICY_TEXT),
            Path::new("t"),
        )
        .unwrap();
        let r = wire(&named);
        assert_eq!(r["controller"]["name"], "Acme Ltd");
        assert_eq!(r["controller"]["contact"], "dpo@acme.test");
        assert_eq!(r["policy_url"], "https://acme.test/p");
        assert!(r["jurisdiction"].is_null());
        let err = l
            .record(&p, "bind", Choice::Withdrawn, Via::Local, uuid())
            .unwrap_err();
        assert!(err.to_string().contains("contract"), "{err}");
        // Nor can it be "granted": that would send a receipt for a choice that changes nothing.
        assert!(matches!(
            l.record(&p, "bind", Choice::Given, Via::Local, uuid()),
            Err(ConsentError::NotOwnersChoice { .. })
        ));
        assert!(l.events.iter().all(|e| e.purpose == "stats"));
        assert!(matches!(
            l.record(&p, "nope", Choice::Given, Via::Local, uuid()),
            Err(ConsentError::UnknownPurpose(_))
        ));
    }

    #[test]
    fn uuids_are_v4_shaped_and_distinct() {
        let (a, b) = (uuid(), uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
