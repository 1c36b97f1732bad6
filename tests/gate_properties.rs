//! Property tests of the gate: random policies × random records. Whatever the policy, no value
//! of a field it does not permit for the record's purpose — and no field it forbids outright —
//! appears in the published bytes or the topic.

use std::collections::BTreeMap;
use std::path::Path;

use camagent::policy::{Field, Flow, Gate, Policy, PseudonymKey, Transform};
use camagent::record::{Record, Value};
use proptest::prelude::*;

/// Device fields a policy may name (the built-in records' fields excluded).
fn device_fields() -> Vec<Field> {
    Field::ALL
        .iter()
        .copied()
        .filter(|f| !matches!(f, Field::ConsentRecord | Field::ErasureRecord))
        .collect()
}

fn agent_flows() -> Vec<Flow> {
    Flow::ALL
        .iter()
        .copied()
        .filter(|f| !f.is_built_in())
        .collect()
}

#[derive(Debug, Clone)]
struct PurposeSpec {
    flow: Flow,
    basis: &'static str,
    fields: Vec<Field>,
    transforms: Vec<(Field, Transform)>,
}

fn purpose_spec() -> impl Strategy<Value = PurposeSpec> {
    let fields = device_fields();
    (
        proptest::sample::select(agent_flows()),
        proptest::sample::select(vec!["contract", "legitimate_interest", "legal_obligation"]),
        proptest::sample::subsequence(fields, 0..8),
        proptest::collection::vec(proptest::sample::select(Transform::ALL.to_vec()), 0..4),
    )
        .prop_map(|(flow, basis, fields, ts)| {
            // Only transforms that fit a listed field, as `policy check` demands.
            let transforms = ts
                .into_iter()
                .filter_map(|t| fields.iter().find(|f| t.applies_to(**f)).map(|f| (*f, t)))
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect();
            PurposeSpec {
                flow,
                basis,
                fields,
                transforms,
            }
        })
}

fn policy_text(purposes: &[PurposeSpec], never: &[Field]) -> String {
    let list = |fs: &[Field]| {
        fs.iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut text = format!(
        "schema = 1\nname = \"p\"\nversion = \"1\"\nnever_leave = [{}]\n",
        list(never)
    );
    let mut claimed = Vec::new();
    for (i, p) in purposes.iter().enumerate() {
        if claimed.contains(&p.flow) {
            continue;
        }
        claimed.push(p.flow);
        let fields: Vec<Field> = p
            .fields
            .iter()
            .copied()
            .filter(|f| !never.contains(f))
            .collect();
        let transforms: Vec<String> = p
            .transforms
            .iter()
            .filter(|(f, _)| fields.contains(f))
            .map(|(f, t)| format!("{f} = \"{t}\""))
            .collect();
        text += &format!(
            "[[purpose]]\nid = \"p{i}\"\nflow = \"{}\"\nlegal_basis = \"{}\"\nfields = [{}]\ntransforms = {{ {} }}\n",
            p.flow,
            p.basis,
            list(&fields),
            transforms.join(", ")
        );
    }
    text
}

/// A distinctive value no JSON key, pseudonym or transform output can contain by chance.
fn marker(field: Field, salt: u64) -> String {
    format!("QX{salt:x}{}ZQ", field.name().len())
}

static ADMITTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn nothing_unpermitted_reaches_bytes_or_topic(
        purposes in proptest::collection::vec(purpose_spec(), 0..6),
        never in proptest::sample::subsequence(device_fields(), 0..6),
        any_flow in proptest::sample::select(agent_flows()),
        pick in any::<proptest::sample::Index>(),
        present in proptest::sample::subsequence(device_fields(), 1..12),
        salt in any::<u64>(),
        serial_safe in any::<bool>(),
    ) {
        // Mostly a flow the policy claims, so most records get through the gate.
        let flow = if purposes.is_empty() || pick.index(4) == 0 { any_flow } else { purposes[pick.index(purposes.len())].flow };
        let text = policy_text(&purposes, &never);
        let policy = Policy::parse(&text, Path::new("gen.toml")).expect("generated policy is valid");
        let serial = if serial_safe { format!("SN{salt:x}") } else { format!("SN/{salt:x}+#") };
        let gate = Gate::new(policy.clone(), PseudonymKey::from_bytes(&salt.to_le_bytes().repeat(4)), "pfx", Some(serial.clone()));

        let mut fields = BTreeMap::new();
        for (i, f) in present.iter().enumerate() {
            let value = match f {
                Field::SerialNumber => Value::Text(serial.clone()),
                // The last octet is never 0, so a truncated address differs from the original.
                Field::IpAddress => Value::Text(format!("10.{}.{}.{}", i, salt % 200, 1 + salt % 200)),
                Field::Location => Value::Text(format!("{}.123456,{}.654321", salt % 80, salt % 170)),
                Field::Timezone => Value::Zone { name: marker(*f, salt), utc_offset_secs: 3600 },
                _ => Value::Text(marker(*f, salt.wrapping_add(i as u64 * 7919))),
            };
            fields.insert(*f, value);
        }
        let record = Record::new(flow, fields.clone());
        let purpose = policy.purpose_for_flow(flow);
        match gate.admit(&record, Some(1)) {
            Err(_) => {}
            Ok(admitted) => {
                ADMITTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let purpose = purpose.expect("admitted without a purpose");
                let bytes = String::from_utf8_lossy(admitted.payload()).into_owned();
                let body: serde_json::Value = serde_json::from_str(&bytes).unwrap();
                for name in body["fields"].as_object().unwrap().keys() {
                    let field = device_fields().into_iter().find(|f| f.name() == name).unwrap();
                    prop_assert!(purpose.fields.contains(&field) && !policy.never_leave.contains(&field));
                }
                for (field, value) in &fields {
                    let permitted = purpose.fields.contains(field) && !policy.never_leave.contains(field);
                    let transformed = purpose.transforms.contains_key(field);
                    if !permitted || transformed {
                        let raw = match value { Value::Text(s) => s.clone(), Value::Zone { name, .. } => name.clone(), _ => continue };
                        prop_assert!(!bytes.contains(&raw), "{field} value {raw} in payload {bytes}");
                        prop_assert!(!admitted.topic().contains(&raw), "{field} value {raw} in topic {}", admitted.topic());
                    }
                }
                let levels: Vec<&str> = admitted.topic().split('/').collect();
                prop_assert_eq!(levels.len(), 3);
                prop_assert!(admitted.topic().len() <= 256);
            }
        }
    }
}

/// The property above means little if the gate refused nearly everything.
#[test]
fn most_generated_records_are_admitted() {
    nothing_unpermitted_reaches_bytes_or_topic();
    let admitted = ADMITTED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        admitted > 100,
        "only {admitted} of 400 generated records were admitted"
    );
}
