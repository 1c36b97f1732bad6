//! Property tests of the gate: random policies × random records. Whatever the policy, no value
//! of a field it does not permit for the record's purpose — and no field it forbids outright —
//! appears in the published bytes or the topic.

use std::collections::BTreeMap;
use std::path::Path;

use camagent::policy::secrets::MIN_SECRET_LEN;
use camagent::policy::{Field, Flow, Gate, Policy, PseudonymKey, Secrets, Transform};
use camagent::record::{Record, Value};
use camagent::vocabulary::{ContentType, ValueKind};
use proptest::prelude::*;

/// `text` in a value of a kind `field` holds (a JSON string where it holds structured data).
fn holding(field: Field, text: String) -> Value {
    let kinds = field.kinds();
    if kinds.contains(&ValueKind::Text) {
        Value::Text(text)
    } else if kinds.contains(&ValueKind::Structured) {
        Value::Json(serde_json::Value::String(text))
    } else {
        Value::Count(text.len() as u64)
    }
}

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
                _ => holding(*f, marker(*f, salt.wrapping_add(i as u64 * 7919))),
            };
            fields.insert(*f, value);
        }
        let record = Record::new(flow, fields.clone()).unwrap();
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
                        let raw = match value { Value::Text(s) | Value::Json(serde_json::Value::String(s)) => s.clone(), Value::Zone { name, .. } => name.clone(), _ => continue };
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

/// A secret: printable ASCII with the characters JSON escapes, or any Unicode.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::string::string_regex(r#"[ -~"\\]{4,24}"#).unwrap(),
        proptest::string::string_regex(r#"\PC{4,12}"#).unwrap(),
    ]
    .prop_filter("long enough to be searched for", |s| {
        s.trim().trim_matches(['"', '\'']).trim().len() >= MIN_SECRET_LEN
    })
}

/// Every form the gate's own output could carry `secret` in: raw, JSON-escaped, and base64 at
/// each of the three byte alignments (media leaves as base64).
fn forms(secret: &str) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let secret = secret.trim().trim_matches(['"', '\'']).trim();
    let escaped = serde_json::Value::from(secret).to_string();
    let mut forms = vec![
        secret.as_bytes().to_vec(),
        escaped.as_bytes()[1..escaped.len() - 1].to_vec(),
    ];
    for pad in 0..3usize {
        let mut bytes = vec![0u8; pad];
        bytes.extend_from_slice(secret.as_bytes());
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        // Only the characters that depend on the secret's bytes alone.
        let (from, to) = ((8 * pad).div_ceil(6), 8 * bytes.len() / 6);
        forms.push(text.as_bytes()[from..to].to_vec());
    }
    forms
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

static SECRET_RUNS_ADMITTED: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Secrets known to the device (never-leave facts, credentials, a config file's secret
    /// keys) planted inside every other field, under every transform, in text, JSON and media:
    /// none reaches the payload or the topic in any form.
    #[test]
    fn no_secret_leaves_by_value(
        purposes in proptest::collection::vec(purpose_spec(), 1..6),
        never in proptest::sample::subsequence(device_fields(), 0..6),
        pick in any::<proptest::sample::Index>(),
        secrets in proptest::collection::vec(secret(), 4),
        carrier in proptest::collection::vec(any::<proptest::sample::Index>(), 24),
        salt in any::<u64>(),
    ) {
        let flow = purposes[pick.index(purposes.len())].flow;
        let policy = Policy::parse(&policy_text(&purposes, &never), Path::new("gen.toml")).expect("generated policy is valid");
        // What the board holds: the secrets themselves, and a config file that names one.
        let mut facts = BTreeMap::from([
            (Field::WifiSsid, Value::Text(secrets[0].clone())),
            (Field::DeviceCredentials, Value::Text(secrets[1].clone())),
            (Field::EmailAlertCredentials, Value::Text(secrets[2].clone())),
            (Field::Configuration, Value::Text(format!("resolution=1080p\nwifi_psk={}\n", secrets[3]))),
        ]);
        let mut known = Secrets::from_facts(&facts, &policy.never_leave);
        known.add(&secrets[0]); // the SSID is a secret of this board even where no policy says so
        let mut gate = Gate::new(policy, PseudonymKey::from_bytes(&salt.to_le_bytes().repeat(4)), "pfx", Some(format!("SN{salt:x}")));
        gate.set_secrets(known);

        // Every field the record may carry holds one of the secrets, somewhere in its value.
        for (i, field) in device_fields().into_iter().enumerate() {
            let s = &secrets[carrier[i].index(secrets.len())];
            let value = match field {
                Field::WifiSsid | Field::DeviceCredentials | Field::EmailAlertCredentials | Field::Configuration => continue,
                Field::Snapshot | Field::Clip => Value::Media { content_type: ContentType::Jpeg, data: [b"\xff\xd8".as_slice(), s.as_bytes(), b"\xff\xd9"].concat() },
                Field::UsageStatistics | Field::EventData | Field::AgentStatus | Field::Logs => Value::Json(serde_json::json!({ "note": format!("x{s}y"), "n": i })),
                Field::Timezone => Value::Zone { name: format!("Europe/{s}"), utc_offset_secs: 3600 },
                _ => holding(field, format!("{i}:{s}")),
            };
            facts.insert(field, value);
        }
        let record = Record::new(flow, facts).unwrap();
        if let Ok(admitted) = gate.admit(&record, Some(1)) {
            SECRET_RUNS_ADMITTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for s in &secrets {
                for form in forms(s) {
                    prop_assert!(!contains(admitted.payload(), &form), "secret {s:?} as {:?} in {}", String::from_utf8_lossy(&form), String::from_utf8_lossy(admitted.payload()));
                    prop_assert!(!contains(admitted.topic().as_bytes(), &form), "secret {s:?} in topic {}", admitted.topic());
                }
            }
        }
    }
}

/// The secrets property means little if nothing was ever admitted (a field left unavailable
/// or transformed beyond recognition still admits the record).
#[test]
fn secret_runs_admit_records() {
    no_secret_leaves_by_value();
    let admitted = SECRET_RUNS_ADMITTED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        admitted > 30,
        "only {admitted} of 300 generated records were admitted"
    );
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
