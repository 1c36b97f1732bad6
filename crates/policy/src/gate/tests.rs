//! The gate's decisions on small policies.

use super::*;
use crate::consent::{uuid, Choice, Via};
use crate::record::{Record, Value};
use serde_json::json;
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
    assert!(!hashed.topic().contains("SN-777") && !json(&hashed).to_string().contains("SN-777"));
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
        &json!({"n": 1}),
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
        &json!({"receipt_id": "x"}),
    )
    .unwrap();
    let a = g.admit(&r, None).unwrap();
    assert_eq!(a.purpose(), "consent_management");
    assert!(a.topic().ends_with("/consent_receipt"));
}
