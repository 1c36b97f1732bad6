//! The structured payloads the agent makes itself, each the value of one field: consent
//! receipts (`consent_record`), erase confirmations (`erasure_record`) and usage counters
//! (`usage_statistics`). Event data is in [`crate::event`], manifests in [`crate::manifest`].

use serde::{Deserialize, Serialize};

/// The receipt format the agent writes.
pub const RECEIPT_VERSION: &str = "camagent-cr-1 (ISO/IEC TS 27560, Kantara CR 1.1)";

/// A consent receipt: one change of the owner's choice for one purpose. Absent facts are
/// `null`, never guessed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentReceipt {
    pub receipt_version: String,
    pub receipt_id: String,
    /// RFC 3339.
    pub timestamp: String,
    /// `device command line` or `signed cloud command`.
    pub collection_method: String,
    pub policy: PolicyVersion,
    pub controller: Option<ReceiptController>,
    pub jurisdiction: Option<String>,
    pub policy_url: Option<String>,
    pub purposes: Vec<ReceiptPurpose>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptController {
    pub name: String,
    pub contact: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptPurpose {
    pub purpose: String,
    /// The purpose's DPV category, where the policy names one.
    pub purpose_category: Option<String>,
    /// DPV identifier of the legal basis.
    pub legal_basis: String,
    /// DPV identifiers of the fields the purpose carries.
    pub data_categories: Vec<String>,
    pub status: ConsentStatus,
}

/// The owner's choice as a receipt states it. Withdrawing a purpose on legitimate interest is
/// an objection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    Given,
    Withdrawn,
    Objected,
}

/// An erase confirmation. Published under `device_id`, the id the erase retired (the one the
/// cloud knows); the device's new id is not in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErasureRecord {
    /// What existed and is gone.
    pub erased: Vec<String>,
    /// `device command line` or `signed command`.
    pub via: String,
    pub device_id: String,
    /// The signed command's `issued_ms`, when a command asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_issued_ms: Option<u64>,
}

/// Counters of the agent's own activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageStatistics {
    pub records_delivered: u64,
    pub records_refused: u64,
    pub reconnects: u64,
    pub outbox_depth: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_names_the_command_only_when_there_was_one() {
        let mut record = ErasureRecord {
            erased: vec!["clips".into()],
            via: "device command line".into(),
            device_id: "d1".into(),
            command_issued_ms: None,
        };
        let value = serde_json::to_value(&record).unwrap();
        assert!(value.get("command_issued_ms").is_none(), "{value}");
        record.command_issued_ms = Some(7);
        assert_eq!(
            serde_json::to_value(&record).unwrap()["command_issued_ms"],
            7
        );
    }

    #[test]
    fn a_receipt_says_null_where_the_policy_is_silent() {
        let receipt = ConsentReceipt {
            receipt_version: RECEIPT_VERSION.into(),
            receipt_id: "r".into(),
            timestamp: "t".into(),
            collection_method: "device command line".into(),
            policy: PolicyVersion {
                name: "p".into(),
                version: "1".into(),
            },
            controller: None,
            jurisdiction: None,
            policy_url: None,
            purposes: vec![ReceiptPurpose {
                purpose: "ux".into(),
                purpose_category: None,
                legal_basis: "dpv:Consent".into(),
                data_categories: vec![],
                status: ConsentStatus::Objected,
            }],
        };
        let value = serde_json::to_value(&receipt).unwrap();
        assert!(value["controller"].is_null() && value["policy_url"].is_null());
        assert_eq!(value["purposes"][0]["status"], "objected");
    }
}
