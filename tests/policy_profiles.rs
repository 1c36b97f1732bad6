//! Each vendor profile in `policies/`, run end to end: the agent's flows against a real TLS
//! mosquitto, on a board that holds every kind of fact (secrets included). On every topic the
//! set of fields received must be exactly what the profile permits for that flow's purpose —
//! no more, and nothing it forbids.
//!
//! The agent runs with GStreamer's moving test scene, so live alerts (event data and the
//! snapshot) go through each profile too. Clips appear when an event ends, which the endless
//! test scene does not do in time; `alarm_and_clip_through_the_gate` covers the clip record
//! through each gate, and `tests/capture.rs` covers clips end to end.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use camagent::policy::{Field, Flow, Policy};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

/// Fields the agent's record of each flow carries, given the rich board.
fn carried(flow: &str) -> BTreeSet<&'static str> {
    let facts = [
        "serial_number",
        "model",
        "firmware_version",
        "timezone",
        "dst",
        "mac_address",
        "uptime",
    ];
    let set: Vec<&'static str> = match flow {
        "activation" => facts
            .iter()
            .copied()
            .chain(RICH_FACTS.iter().map(|(f, _)| *f))
            .collect(),
        "status" => vec!["online_status"],
        "telemetry" => vec!["uptime", "firmware_version", "online_status"],
        "usage_statistics" => vec!["usage_statistics"],
        "location" => vec!["location", "country"],
        "consent_receipt" => vec!["consent_record"],
        "alarm" => vec!["event_data", "snapshot"],
        "clip" => vec!["event_data", "clip"],
        other => panic!("unexpected flow {other}"),
    };
    set.into_iter().collect()
}

/// Every value on the board, with its field.
fn board_values() -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("serial_number", SERIAL),
        ("mac_address", MAC),
        ("model", MODEL),
        ("firmware_version", FIRMWARE),
        ("timezone", TIMEZONE),
    ];
    v.extend(RICH_FACTS);
    v
}

fn run_profile(file: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy_path = root.join("policies").join(file);
    let policy = Policy::load(&policy_path).unwrap();
    for p in &policy.purposes {
        let cite = p
            .cite
            .as_ref()
            .unwrap_or_else(|| panic!("{file}: purpose {} cites nothing", p.id));
        assert!(cite.file.starts_with("seeds/") && !cite.passage.is_empty());
    }

    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let dir = world.path().join("agent");
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.facts_interval = "300ms";
    setup.telemetry_interval = "300ms";
    setup.sources = rich_sources();
    // A live camera (GStreamer's moving scene), so the alarm flow runs for real too.
    setup.extra = "[capture]\nsource = \"test\"\npattern = \"ball\"\n".into();
    let config = setup.write(&world, &dir, &policy_path);

    // The owner opts in to every consent purpose, so those flows run too.
    let opt_ins: Vec<&str> = policy
        .purposes
        .iter()
        .filter(|p| p.needs_opt_in())
        .map(|p| p.id.as_str())
        .collect();
    for id in &opt_ins {
        let (ok, _, err) = cli_with(BIN, &config, &["consent", "grant", id]);
        assert!(ok, "{err}");
    }

    let mut agent = Agent::start(BIN, &config);
    let produced = [
        "activation",
        "status",
        "telemetry",
        "usage_statistics",
        "location",
        "alarm",
    ];
    let expected_flows: Vec<&str> = produced
        .iter()
        .copied()
        .filter(|f| {
            policy
                .purposes
                .iter()
                .any(|p| p.flow.is_some_and(|pf| pf.name() == *f))
        })
        .collect();
    for flow in &expected_flows {
        if wait_for(PATIENCE, || cloud.on(&format!("/{flow}")).first().cloned()).is_none() {
            panic!("{file}: no {flow} message; agent log:\n{}", agent.log());
        }
    }
    if !opt_ins.is_empty() {
        wait_for(PATIENCE, || {
            (cloud.on("/consent_receipt").len() >= opt_ins.len()).then_some(())
        })
        .expect("a receipt for each opt-in");
    }
    assert!(agent.stop().success());

    let messages = cloud.snapshot();
    let mut seen_flows = BTreeSet::new();
    for m in &messages {
        if m.topic.ends_with("/clip_data") {
            // A clip's bytes: only where the clip purpose carries the clip itself.
            let (header, _) = camagent::wire::chunk::parse(&m.payload).unwrap();
            let p = policy.purpose_for_flow(Flow::Clip).expect("a clip purpose");
            assert!(p.fields.contains(&Field::Clip), "{file}: clip data sent");
            assert_eq!(header.purpose, p.id);
            continue;
        }
        let body = m.json();
        let flow = body["flow"].as_str().unwrap().to_owned();
        let (allowed, purpose_fields): (BTreeSet<&str>, BTreeSet<Field>) =
            if flow == "consent_receipt" {
                (
                    BTreeSet::from(["consent_record"]),
                    BTreeSet::from([Field::ConsentRecord]),
                )
            } else {
                let p = policy
                    .purposes
                    .iter()
                    .find(|p| p.flow.is_some_and(|f| f.name() == flow))
                    .unwrap_or_else(|| {
                        panic!(
                            "{file}: message on flow {flow} that no purpose claims: {}",
                            m.topic
                        )
                    });
                (
                    p.fields.iter().map(|f| f.name()).collect(),
                    p.fields.clone(),
                )
            };
        let mut expected: BTreeSet<&str> = carried(&flow)
            .intersection(&allowed)
            .copied()
            .filter(|f| !policy.never_leave.iter().any(|n| n.name() == *f))
            .collect();
        // Only the start of an event carries a snapshot.
        if flow == "alarm" && body["fields"]["event_data"]["phase"] != "start" {
            expected.remove("snapshot");
        }
        let mut received: BTreeSet<String> = body["fields"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        if let Some(missing) = body["unavailable"].as_array() {
            received.extend(missing.iter().map(|f| f.as_str().unwrap().to_owned()));
        }
        let received: BTreeSet<&str> = received.iter().map(String::as_str).collect();
        assert_eq!(
            received, expected,
            "{file}: fields on {} differ from the profile",
            m.topic
        );

        // No value of a field this purpose does not carry appears in the topic or payload.
        let text = String::from_utf8_lossy(&m.payload);
        for (field, value) in board_values() {
            let permitted = purpose_fields.iter().any(|f| f.name() == field);
            if !permitted || policy.never_leave.iter().any(|n| n.name() == field) {
                assert!(
                    !text.contains(value) && !m.topic.contains(value),
                    "{file}: {field} value leaked on {}: {text}",
                    m.topic
                );
            }
        }
        // The serial is in the topic only where the purpose carries it.
        let serial_ok = allowed.contains("serial_number");
        assert_eq!(
            m.topic.contains(SERIAL),
            serial_ok && flow != "consent_receipt",
            "{file}: topic {}",
            m.topic
        );
        // Transforms were applied.
        if let Some(loc) = body["fields"]["location"].as_str() {
            assert_eq!(loc, "48.1,11.6", "{file}: location not coarsened");
        }
        seen_flows.insert(flow);
    }
    for flow in &expected_flows {
        assert!(seen_flows.contains(*flow), "{file}: no {flow} message");
    }
    // Flows the profile does not claim sent nothing.
    for flow in produced.iter().filter(|f| !expected_flows.contains(f)) {
        assert!(
            !seen_flows.contains(*flow),
            "{file}: unclaimed flow {flow} sent"
        );
    }
}

#[test]
fn hikvision_profile_sends_exactly_what_it_permits() {
    run_profile("hikvision.toml");
}

#[test]
fn dahua_profile_sends_exactly_what_it_permits() {
    run_profile("dahua.toml");
}

#[test]
fn reolink_profile_sends_exactly_what_it_permits() {
    run_profile("reolink.toml");
}

#[test]
fn imou_profile_sends_exactly_what_it_permits() {
    run_profile("imou.toml");
}

/// Alarm and clip records (made by capture once it lands) through each profile's gate.
#[test]
fn alarm_and_clip_through_the_gate() {
    use camagent::policy::consent::{uuid, Choice, Ledger, Via};
    use camagent::policy::{Gate, PseudonymKey};
    use camagent::record::{Record, Value};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["hikvision.toml", "dahua.toml", "reolink.toml", "imou.toml"] {
        let policy = Policy::load(&root.join("policies").join(file)).unwrap();
        let mut gate = Gate::new(
            policy.clone(),
            PseudonymKey::from_bytes(&[3; 32]),
            "v",
            Some(SERIAL.into()),
        );
        // The owner turned on every optional service (cloud storage by subscription).
        let mut ledger = Ledger::default();
        for p in policy.purposes.iter().filter(|p| p.needs_opt_in()) {
            ledger
                .record(&policy, &p.id, Choice::Given, Via::Local, uuid())
                .unwrap();
        }
        gate.set_consent(ledger);
        let mut fields: BTreeMap<Field, Value> = BTreeMap::new();
        for f in [
            Field::SerialNumber,
            Field::Model,
            Field::EventData,
            Field::Snapshot,
            Field::Clip,
            Field::Channel,
            Field::MacAddress,
            Field::WifiSsid,
        ] {
            let value = format!("value-of-{f}");
            fields.insert(
                f,
                match f {
                    Field::EventData | Field::Snapshot | Field::Clip => Value::Json(value.into()),
                    _ => Value::Text(value),
                },
            );
        }
        for flow in [Flow::Alarm, Flow::Clip] {
            let record = Record::new(flow, fields.clone()).unwrap();
            match (policy.purpose_for_flow(flow), gate.admit(&record, Some(1))) {
                (Some(p), Ok(a)) => {
                    let sent: BTreeSet<Field> = a.fields().iter().copied().collect();
                    let want: BTreeSet<Field> = p
                        .fields
                        .intersection(&fields.keys().copied().collect())
                        .copied()
                        .collect();
                    assert_eq!(sent, want, "{file} {flow}");
                    let text = String::from_utf8_lossy(a.payload());
                    for f in fields.keys().filter(|f| !p.fields.contains(f)) {
                        assert!(
                            !text.contains(&format!("value-of-{f}")),
                            "{file} {flow}: {f} leaked"
                        );
                    }
                }
                (None, Err(_)) => {}
                (p, r) => panic!(
                    "{file} {flow}: purpose {:?} but gate said {r:?}",
                    p.map(|p| &p.id)
                ),
            }
        }
    }
}

#[test]
fn elearning_fixture_represents_its_category_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = Policy::load(&root.join("tests/fixtures/hikvision-elearning.toml")).unwrap();
    let rows: Vec<(&str, &str)> = policy
        .purposes
        .iter()
        .map(|p| (p.id.as_str(), p.legal_basis.name()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("system_data_contract", "contract"),
            ("system_data_legitimate_interest", "legitimate_interest"),
            ("usage_data", "legitimate_interest"),
            ("geographic_data", "legitimate_interest"),
        ]
    );
    // A web service's policy names no agent flow: loaded on a device, it sends nothing.
    assert!(policy.purposes.iter().all(|p| p.flow.is_none()));
    for flow in Flow::ALL.iter().filter(|f| !f.is_built_in()) {
        assert!(policy.purpose_for_flow(*flow).is_none());
    }
}

/// The label matches what the broker observes: Imou's telemetry has a pseudonym key of its
/// own, so its topic id matches no other purpose's, and yet the broker sees every purpose's
/// messages arrive from one client; the label says exactly that, and promises no more.
#[test]
fn the_label_tells_what_the_broker_can_link() {
    let world = World::new();
    let broker = world.broker_with(false, "log_type all\n");
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/imou.toml");
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.telemetry_interval = "300ms";
    let config = setup.write(&world, &world.path().join("a"), &policy);
    let mut agent = Agent::start(BIN, &config);
    let telemetry = wait_for(PATIENCE, || cloud.on("/telemetry").first().cloned())
        .unwrap_or_else(|| panic!("no telemetry; log:\n{}", agent.log()));
    let status = cloud.wait_message("/status", |_| true);
    assert!(agent.stop().success());

    // By content, the telemetry's device id matches no other purpose's.
    let id = |topic: &str| topic.split('/').nth(2).unwrap().to_owned();
    assert_ne!(id(&telemetry.topic), id(&status.topic));
    // By the wire, one client published both.
    let log = broker.log();
    let publisher = |topic: &str| {
        log.lines()
            .find(|l| l.contains("Received PUBLISH from") && l.contains(&format!("'{topic}'")))
            .and_then(|l| l.split("Received PUBLISH from ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no PUBLISH of {topic} in the broker's log"))
            .to_owned()
    };
    assert_eq!(publisher(&telemetry.topic), publisher(&status.topic));

    let (ok, label, err) = cli_with(BIN, &config, &["policy", "explain"]);
    assert!(ok, "{err}");
    assert!(
        label.contains("one MQTT connection")
            && label.contains("can link them all")
            && label.contains("can still link"),
        "{label}"
    );
    assert!(
        !label.to_lowercase().contains("cannot be linked"),
        "{label}"
    );
}

/// Each purpose of each profile is justified by its seed: every quoted fragment of its
/// citation (between `"` marks, split at `...`) is in the seed, word for word (whitespace,
/// case and curly quotes aside; the archived seeds are spaced oddly). The seeds live beside
/// the repository (`../shared/seeds`); where they are absent the test says so and checks
/// nothing.
#[test]
fn every_citation_quotes_its_seed_word_for_word() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let normal = |s: &str| -> String {
        s.chars()
            // Markdown list marks too: the archived seeds break sentences into bullets.
            .filter(|c| !c.is_whitespace() && *c != '*')
            .map(|c| match c {
                '\u{2018}' | '\u{2019}' => '\'',
                '\u{201c}' | '\u{201d}' => '"',
                c => c.to_ascii_lowercase(),
            })
            .collect()
    };
    let mut checked = 0;
    let mut missing = Vec::new();
    for profile in ["hikvision", "dahua", "reolink", "imou"] {
        let policy = Policy::load(&root.join(format!("policies/{profile}.toml"))).unwrap();
        for p in &policy.purposes {
            let cite = p.cite.as_ref().unwrap();
            let Ok(seed) = std::fs::read_to_string(root.join("../shared").join(&cite.file)) else {
                eprintln!("{}: seed not here, not checked", cite.file);
                continue;
            };
            let seed = normal(&seed);
            let quotes: Vec<&str> = cite.passage.split('"').skip(1).step_by(2).collect();
            assert!(!quotes.is_empty(), "{profile}/{}: no quotation", p.id);
            for fragment in quotes.iter().flat_map(|q| q.split("...")) {
                let fragment = normal(fragment);
                if fragment.len() >= 12 {
                    if !seed.contains(&fragment) {
                        missing.push(format!("{profile}/{}: {fragment}", p.id));
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "quoted but not in the seed:\n{}",
        missing.join("\n")
    );
    eprintln!("{checked} quoted fragments found in their seeds");
}
