//! Consent, signed commands, erase, the disclosure log and `policy check`, end to end: the
//! agent binary, a real mutual-TLS mosquitto, and the cloud's side as a subscriber.

mod support;

use std::os::unix::fs::PermissionsExt;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");
const POLICY: &str = "schema = 1\nname = \"test\"\nversion = \"9\"\n\
    [[purpose]]\nid = \"device_activation\"\nflow = \"activation\"\nlegal_basis = \"contract\"\nfields = [\"model\"]\n\
    [[purpose]]\nid = \"device_status\"\nflow = \"status\"\nlegal_basis = \"contract\"\nfields = [\"online_status\"]\n\
    [[purpose]]\nid = \"user_experience\"\nflow = \"usage_statistics\"\nlegal_basis = \"consent\"\nfields = [\"usage_statistics\"]\n";

fn now_ms() -> u64 {
    camagent::record::now_ms()
}

/// A policy file, an agent config (through `port`) and its directory.
fn setup(
    world: &World,
    port: u16,
    cloud: Option<&Cloud>,
    telemetry: &'static str,
) -> (PathBuf, PathBuf) {
    setup_with_broker(world, port, cloud, telemetry, "")
}

/// [`setup`], with `broker_extra` lines in `[broker]`.
fn setup_with_broker(
    world: &World,
    port: u16,
    cloud: Option<&Cloud>,
    telemetry: &'static str,
    broker_extra: &str,
) -> (PathBuf, PathBuf) {
    let policy = world.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let dir = world.path().join("agent");
    let mut s = AgentSetup::new(world, port);
    s.telemetry_interval = telemetry;
    s.broker_extra = broker_extra.to_owned();
    if let Some(c) = cloud {
        s.extra = format!("[commands]\nverify_key = \"{}\"\n", c.public_hex());
    }
    (s.write(world, &dir, &policy), dir)
}

fn receipts(cloud: &Subscriber, status: &str) -> usize {
    cloud
        .on("/consent_receipt")
        .iter()
        .filter(|m| m.json()["fields"]["consent_record"]["purposes"][0]["status"] == status)
        .count()
}

#[test]
fn withdrawal_while_offline_purges_queued_records_and_sends_the_receipt() {
    let world = World::new();
    let broker = world.broker(false);
    let link = Link::new(broker.port);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let (config, dir) = setup(&world, link.port, None, "100ms");
    let (ok, _, err) = cli_with(BIN, &config, &["consent", "grant", "user_experience"]);
    assert!(ok, "{err}");
    let agent = Agent::start(BIN, &config);
    cloud.wait_message("/usage_statistics", |_| true);
    assert_eq!(receipts(&cloud, "given"), 1);

    link.cut();
    agent.wait_log("broker connection lost");
    let queued = || queued_records(&dir);
    wait_for(PATIENCE, || (queued() >= 5).then_some(()))
        .expect("usage records queue while offline");
    std::thread::sleep(Duration::from_millis(300));
    let before = cloud.on("/usage_statistics").len();

    let (ok, out, err) = cli_with(BIN, &config, &["consent", "withdraw", "user_experience"]);
    assert!(ok && out.contains("withdrawn"), "{out}{err}");
    agent.wait_log("queued records purged");
    link.restore();

    // The receipt of the withdrawal arrives; none of the queued usage records do.
    wait_for(PATIENCE, || {
        (receipts(&cloud, "withdrawn") == 1).then_some(())
    })
    .expect("withdrawal receipt");
    let activations = cloud.on("/activation").len();
    let (ok, _, _) = cli_with(BIN, &config, &["consent", "show"]);
    assert!(ok);
    std::thread::sleep(Duration::from_millis(800)); // several telemetry ticks
    assert_eq!(
        cloud.on("/usage_statistics").len(),
        before,
        "usage records sent after withdrawal"
    );
    assert!(cloud.on("/activation").len() >= activations);
    assert!(agent
        .log()
        .contains("consent changed purpose=user_experience choice=Withdrawn"));
}

#[test]
fn signed_consent_command_is_obeyed_and_bad_ones_change_nothing() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let signer = Cloud::new();
    let (config, _dir) = setup(&world, broker.port, Some(&signer), "100ms");
    let mut agent = Agent::start(BIN, &config);
    let id = agent.anchor_id();
    let topic = format!("test/cams/{id}/cmd");
    cloud.wait_message("/status", |_| true);
    assert!(
        cloud.on("/usage_statistics").is_empty(),
        "consent purpose ran without consent"
    );

    let grant = serde_json::json!({"type": "consent", "device": id, "issued_ms": now_ms(), "purpose": "user_experience", "choice": "given"});
    let signed = signer.sign(&grant);
    cloud.publish(&topic, signed.clone());
    cloud.wait_message("/usage_statistics", |_| true);
    assert_eq!(receipts(&cloud, "given"), 1);
    let receipt = cloud.wait_message("/consent_receipt", |_| true).json();
    assert_eq!(
        receipt["fields"]["consent_record"]["collection_method"],
        "signed cloud command"
    );

    // Forged, replayed, misaddressed, malformed, oversized: each refused and logged.
    let withdraw = |device: &str, issued: u64| serde_json::json!({"type": "consent", "device": device, "issued_ms": issued, "purpose": "user_experience", "choice": "withdrawn"});
    let forger = Cloud::new();
    cloud.publish(&topic, forger.sign(&withdraw(&id, now_ms() + 10)));
    agent.wait_log("signature does not verify");
    cloud.publish(&topic, signed);
    agent.wait_log("replayed or stale");
    cloud.publish(
        &topic,
        signer.sign(&withdraw("someone-else", now_ms() + 20)),
    );
    agent.wait_log("is for device");
    cloud.publish(&topic, b"{\"body\": 42".to_vec());
    agent.wait_log("malformed command");
    cloud.publish(&topic, vec![b'x'; 10_000]);
    agent.wait_log("over the 4096-byte limit");

    // Nothing changed: usage still flows, no withdrawal receipt, the daemon runs on.
    let n = cloud.on("/usage_statistics").len();
    wait_for(PATIENCE, || {
        (cloud.on("/usage_statistics").len() > n + 2).then_some(())
    })
    .expect("usage keeps flowing");
    assert_eq!(receipts(&cloud, "withdrawn"), 0);
    assert!(agent.alive());

    // A genuine withdrawal stops it.
    cloud.publish(&topic, signer.sign(&withdraw(&id, now_ms() + 30)));
    wait_for(PATIENCE, || {
        (receipts(&cloud, "withdrawn") == 1).then_some(())
    })
    .expect("withdrawal receipt");
    std::thread::sleep(Duration::from_millis(300));
    let n = cloud.on("/usage_statistics").len();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(cloud.on("/usage_statistics").len(), n);
}

/// A flood of bad commands is refused without flooding the log: journald would drop the
/// lines that matter. Each kind of line keeps a small budget and says what it suppressed; the
/// daemon still takes the good command behind the flood.
#[test]
fn a_flood_of_bad_commands_is_logged_within_a_budget() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let signer = Cloud::new();
    let (config, _dir) = setup(&world, broker.port, Some(&signer), "100ms");
    let mut agent = Agent::start(BIN, &config);
    let id = agent.anchor_id();
    let topic = format!("test/cams/{id}/cmd");
    cloud.wait_message("/status", |_| true);

    let started = std::time::Instant::now();
    const FLOOD: usize = 2000;
    for _ in 0..FLOOD {
        cloud.publish(&topic, b"{\"body\": 42".to_vec());
    }
    let grant = serde_json::json!({"type": "consent", "device": id, "issued_ms": now_ms(), "purpose": "user_experience", "choice": "given"});
    cloud.publish(&topic, signer.sign(&grant));
    cloud.wait_message("/usage_statistics", |_| true);
    // One more after a pause: its line says how many were left out.
    std::thread::sleep(Duration::from_millis(1100));
    cloud.publish(&topic, b"{\"body\": 42".to_vec());
    let summed_up =
        |l: &str| l.contains("malformed command") && l.ends_with(" more like this suppressed)");
    wait_for(PATIENCE, || {
        agent.log().lines().any(summed_up).then_some(())
    })
    .unwrap_or_else(|| panic!("no line says what it suppressed:\n{}", agent.log()));
    let elapsed = started.elapsed().as_secs() as usize;
    let log = agent.log();
    let lines = log.matches("malformed command").count();
    // A burst of 10, then one a second.
    assert!(
        lines <= 10 + elapsed + 1,
        "{lines} lines in {elapsed} s for {FLOOD} bad commands"
    );
    // Only this kind's: other kinds (a debug line per unsent record) say theirs too.
    let suppressed: usize = log
        .lines()
        .filter(|l| summed_up(l))
        .filter_map(|l| {
            l.split(" (")
                .last()?
                .strip_suffix(" more like this suppressed)")
        })
        .filter_map(|n| n.parse::<usize>().ok())
        .sum();
    assert!(
        suppressed > 0 && lines + suppressed <= FLOOD + 1,
        "{lines} + {suppressed}"
    );
    assert!(agent.alive());
}

/// A 10 MB publish on the command topic. Over MQTT 5 (the default) the device declared its
/// Maximum Packet Size, so the broker drops the message and the connection never notices.
/// Delivery, the reference receiver (subscribed to everything, over 3.1.1: it refuses the
/// message and starts a clean session) and the next signed command all work on.
#[test]
fn a_10_mb_message_on_the_command_topic_wedges_neither_the_agent_nor_the_receiver() {
    let poisoned = poison_the_command_topic("");
    assert_eq!(poisoned.reconnections, 0, "{}", poisoned.log);
    assert_eq!(poisoned.refusals, 0, "{}", poisoned.log);
}

/// The same over MQTT 3.1.1, which has no way to declare a maximum: the client refuses the
/// message unread and drops the connection, and the next connection starts a clean session so
/// the persistent session does not redeliver it at every reconnect.
#[test]
fn over_mqtt_3_1_1_a_10_mb_message_costs_one_reconnection() {
    let poisoned = poison_the_command_topic("protocol = \"3.1.1\"\n");
    assert!(poisoned.reconnections >= 1, "{}", poisoned.log);
    assert!(
        (1..=2).contains(&poisoned.refusals),
        "refused once, not at every reconnect: {}",
        poisoned.refusals
    );
}

struct Poisoned {
    /// Connections after the first.
    reconnections: usize,
    /// Log lines that refused an oversized message.
    refusals: usize,
    log: String,
}

/// Publishes 10 MB on the command topic of an agent with `broker_extra`, then signed commands
/// until one is taken.
fn poison_the_command_topic(broker_extra: &str) -> Poisoned {
    let world = World::new();
    let broker = world.broker(true);
    let tmp = tempfile::tempdir().unwrap();
    let receiver = ReceiverProcess::start(BIN, &world, broker.port, tmp.path(), &[]);
    let signer = Cloud::new();
    let (config, _dir) =
        setup_with_broker(&world, broker.port, Some(&signer), "100ms", broker_extra);
    let mut agent = Agent::start(BIN, &config);
    let id = agent.anchor_id();
    let topic = format!("test/cams/{id}/cmd");
    let flow = |name: &str| {
        let lines = receiver.of("record");
        lines.iter().filter(|l| l["flow"] == name).count()
    };
    wait_for(PATIENCE, || (flow("activation") > 0).then_some(())).expect("the agent delivers");

    let poison = tmp.path().join("poison.bin");
    std::fs::write(&poison, vec![b'x'; 10 << 20]).unwrap();
    let connections = || agent.log().matches("connected to broker").count();
    let before = connections();
    publish_file(&world, broker.port, &topic, &poison);
    // Over 3.1.1 the agent refuses it and is back within seconds; over MQTT 5 nothing comes
    // (the wait gives it the time to).
    let refused_and_back = || {
        let refused = agent.log().contains("over broker.max_packet_bytes");
        (refused && connections() > before).then_some(())
    };
    wait_for(Duration::from_secs(5), refused_and_back);

    // A command sent in the moment the device resubscribes can still be missed: the cloud
    // sends it again after a few seconds, as it would for any command without its effect.
    let command = tmp.path().join("grant.json");
    let taken = (0..3).any(|_| {
        let grant = serde_json::json!({"type": "consent", "device": id, "issued_ms": now_ms(), "purpose": "user_experience", "choice": "given"});
        std::fs::write(&command, signer.sign(&grant)).unwrap();
        publish_file(&world, broker.port, &topic, &command);
        wait_for(Duration::from_secs(5), || (flow("usage_statistics") > 3).then_some(())).is_some()
    });
    let log = agent.log();
    let reconnections = connections() - before;
    assert!(taken, "the next command was not taken; agent log:\n{log}");
    assert!(agent.alive());
    Poisoned {
        reconnections,
        refusals: log.matches("over broker.max_packet_bytes").count(),
        log,
    }
}

#[test]
fn signed_erase_wipes_owner_data_and_confirms() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let signer = Cloud::new();
    let (config, dir) = setup(&world, broker.port, Some(&signer), "1h");
    let (ok, _, err) = cli_with(BIN, &config, &["consent", "grant", "user_experience"]);
    assert!(ok, "{err}");
    let agent = Agent::start(BIN, &config);
    let id = agent.anchor_id();
    cloud.wait_message("/consent_receipt", |_| true);
    let state = dir.join("state");
    let key_before = std::fs::read(state.join("keys/pseudonym.key")).unwrap();
    assert!(state.join("consent.json").exists());

    let erase = serde_json::json!({"type": "erase", "device": id, "issued_ms": now_ms()});
    cloud.publish(&format!("test/cams/{id}/cmd"), signer.sign(&erase));
    let confirmation = cloud.wait_message("/erasure_confirmation", |_| true);
    let record = &confirmation.json()["fields"]["erasure_record"];
    let erased: Vec<&str> = record["erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        erased.contains(&"consent ledger")
            && erased.contains(&"pseudonym keys")
            && erased.contains(&"disclosure log"),
        "{erased:?}"
    );
    // Confirmed under the retired id the cloud addressed; the new id is not beside it.
    assert_eq!(record["device_id"], id.as_str());
    assert!(confirmation.topic.contains(&id), "{}", confirmation.topic);
    agent.wait_log("owner data erased on command");
    let log = agent.log();
    let at = log.find("owner data erased").unwrap();
    let at = at + log[at..].find("device_id=").unwrap() + "device_id=".len();
    let new_id = log[at..].split_whitespace().next().unwrap().to_owned();
    assert_ne!(new_id, id);
    // The broker holds nothing retained under the retired id: a subscriber that comes now
    // learns nothing of it.
    agent.wait_log("retained message cleared at the broker");
    let late = Subscriber::connect(&world, broker.port, "late", false);
    std::thread::sleep(std::time::Duration::from_secs(1));
    let retained: Vec<String> = late
        .snapshot()
        .iter()
        .filter(|m| m.retain && m.topic.contains(&id))
        .map(|m| m.topic.clone())
        .collect();
    assert!(retained.is_empty(), "still retained: {retained:?}");
    for m in cloud.snapshot() {
        if m.topic.contains(&id) {
            assert!(
                !String::from_utf8_lossy(&m.payload).contains(&new_id),
                "{} links the old id to the new: {:?}",
                m.topic,
                String::from_utf8_lossy(&m.payload)
            );
        }
    }

    assert!(!state.join("consent.json").exists());
    let key_after = std::fs::read(state.join("keys/pseudonym.key")).unwrap();
    assert_ne!(key_before, key_after, "pseudonym key not renewed");
    // The consent given before the erase is gone with the ledger.
    let (_, out, _) = cli_with(BIN, &config, &["consent", "show"]);
    assert!(out.contains("off until granted"), "{out}");
    // The command again, even re-addressed to the new id, is refused: the replay guard
    // survives the erase.
    let new_id = new_id.as_str();
    cloud.publish(&format!("test/cams/{new_id}/cmd"), signer.sign(&erase));
    agent.wait_log("is for device");
    let again =
        serde_json::json!({"type": "erase", "device": new_id, "issued_ms": erase["issued_ms"]});
    cloud.publish(&format!("test/cams/{new_id}/cmd"), signer.sign(&again));
    agent.wait_log("replayed or stale");
}

#[test]
fn erase_command_line_waits_for_the_agent_to_stop_then_confirms_at_next_start() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let (config, dir) = setup(&world, broker.port, None, "1h");
    let mut agent = Agent::start(BIN, &config);
    cloud.wait_message("/status", |_| true);

    let (ok, _, err) = cli_with(BIN, &config, &["erase", "--yes"]);
    assert!(!ok && err.contains("stop the agent first"), "{err}");
    assert!(agent.stop().success());
    let used_before = cloud
        .snapshot()
        .iter()
        .filter_map(|m| m.json()["seq"].as_u64())
        .max();
    assert!(used_before.is_some());
    let (ok, _, err) = cli_with(BIN, &config, &["erase"]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, err) = cli_with(BIN, &config, &["erase", "--yes"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("pseudonym keys") && out.contains("disclosure log"),
        "{out}"
    );
    assert!(!dir.join("state/disclosures.jsonl").exists());

    let _agent = Agent::start(BIN, &config);
    let m = cloud.wait_message("/erasure_confirmation", |_| true);
    assert_eq!(
        m.json()["fields"]["erasure_record"]["via"],
        "device command line"
    );
    // Sequence numbers go on across the erase: the cloud de-duplicates by them, and a
    // number used again would drop the confirmation as a duplicate.
    let confirmed = m.json()["seq"].as_u64();
    assert!(
        confirmed > used_before,
        "{confirmed:?} after {used_before:?}"
    );
}

#[test]
fn disclosure_log_lists_what_left_without_values() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let (config, _dir) = setup(&world, broker.port, None, "1h");
    let mut agent = Agent::start(BIN, &config);
    cloud.wait_message("/activation", |_| true);
    assert!(agent.stop().success());

    let (ok, out, err) = cli_with(BIN, &config, &["disclosures", "--json"]);
    assert!(ok, "{err}");
    let entries: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = entries.as_array().unwrap();
    let find = |purpose: &str| {
        entries
            .iter()
            .find(|e| e["purpose"] == purpose)
            .unwrap_or_else(|| panic!("no {purpose} in {out}"))
    };
    let activation = find("device_activation");
    assert_eq!(activation["legal_basis"], "contract");
    assert_eq!(activation["fields"], serde_json::json!(["model"]));
    assert!(activation["bytes"].as_u64().unwrap() > 0);
    assert!(activation["topic"]
        .as_str()
        .unwrap()
        .ends_with("/activation"));
    find("device_status");
    // Names, never values.
    assert!(!out.contains(MODEL) && !out.contains(SERIAL), "{out}");
    let (ok, table, _) = cli_with(BIN, &config, &["disclosures"]);
    assert!(
        ok && table.lines().count() >= 3 && table.contains("device_activation"),
        "{table}"
    );

    // The owner's data is private even outside systemd (no UMask there).
    let state = config.parent().unwrap().join("state");
    for (path, mode) in [
        ("disclosures.jsonl", 0o600),
        ("outbox", 0o700),
        ("consent.json", 0o600),
    ] {
        if let Ok(meta) = std::fs::metadata(state.join(path)) {
            assert_eq!(meta.permissions().mode() & 0o777, mode, "{path}");
        }
    }
    // Piped into a reader that is gone (`| true`): no panic, the usual quiet end.
    let mut child = agent_command(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "disclosures",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn policy_check_names_the_line_of_each_error() {
    let world = World::new();
    let head = "schema = 1\nname = \"t\"\nversion = \"1\"\n";
    let purpose = |id: &str, flow: &str, basis: &str, fields: &str| {
        format!("\n[[purpose]]\nid = \"{id}\"\nflow = \"{flow}\"\nlegal_basis = \"{basis}\"\nfields = [{fields}]\n")
    };
    let cases = [
        (
            "unknown field",
            format!(
                "{head}{}",
                purpose("a", "activation", "contract", "\"shoe_size\"")
            ),
            vec!["line 9", "shoe_size"],
        ),
        (
            "unknown basis",
            format!("{head}{}", purpose("a", "activation", "vibes", "\"model\"")),
            vec!["line 8", "vibes"],
        ),
        (
            "consent without consent",
            format!(
                "{head}{}runs_without_consent = true\n",
                purpose("a", "usage_statistics", "consent", "\"uptime\"")
            ),
            vec!["line 10", "based on consent"],
        ),
        (
            "duplicate purpose",
            format!(
                "{head}{}{}",
                purpose("a", "activation", "contract", "\"model\""),
                purpose("a", "telemetry", "contract", "\"uptime\"")
            ),
            vec!["line 12", "listed twice"],
        ),
        (
            "an error in each of two purposes",
            format!(
                "{head}{}{}",
                purpose("a", "activation", "contract", "\"shoe_size\""),
                purpose("b", "telemetry", "vibes", "\"uptime\"")
            ),
            vec!["line 9", "shoe_size", "line 14", "vibes"],
        ),
    ];
    for (name, text, wants) in cases {
        let file = world
            .path()
            .join(format!("{}.toml", name.replace(' ', "_")));
        std::fs::write(&file, text).unwrap();
        let (ok, _, err) = cli(BIN, &["policy", "check", file.to_str().unwrap()]);
        assert!(!ok, "{name}: accepted");
        for want in wants {
            assert!(err.contains(want), "{name}: {want:?} not in {err}");
        }
    }
    for profile in ["hikvision", "dahua", "reolink", "imou"] {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("policies/{profile}.toml"));
        let (ok, out, err) = cli(BIN, &["policy", "check", file.to_str().unwrap()]);
        assert!(ok && out.contains("valid"), "{profile}: {err}");
        let (ok, label, _) = cli(
            BIN,
            &["policy", "explain", "--json", file.to_str().unwrap()],
        );
        assert!(ok);
        let label: serde_json::Value = serde_json::from_str(&label).unwrap();
        assert!(label["never_sent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["field"] == "device_credentials"));
    }
}

/// Every test docs/CONFORMANCE.md cites exists, so the mapping cannot rot silently.
#[test]
fn conformance_document_names_real_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/CONFORMANCE.md")).unwrap();
    let mut checked = 0;
    for cited in doc.split('`').skip(1).step_by(2) {
        let parts: Vec<&str> = cited.split("::").collect();
        let (Some(test), true) = (parts.last(), parts.len() >= 2) else {
            continue;
        };
        if test.contains('*') || !test.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        // `camagent_wire::…` is the crate in `crates/wire`; `a::b::tests::t` is in `a/b.rs`,
        // `a/b/mod.rs` or `a/b/tests.rs`; `itest::t` in `tests/itest.rs`.
        let (src, parts) = match parts[0].strip_prefix("camagent_") {
            Some(krate) => (root.join("crates").join(krate).join("src"), &parts[1..]),
            None => (root.join("src"), &parts[..]),
        };
        let file = if let Some(i) = parts.iter().position(|p| *p == "tests") {
            let module = src.join(parts[..i].join("/"));
            [
                module.with_extension("rs"),
                module.join("mod.rs"),
                module.join("tests.rs"),
            ]
            .into_iter()
            .find(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(&format!("fn {test}("))))
            .unwrap_or(module.with_extension("rs"))
        } else {
            root.join("tests").join(format!("{}.rs", parts[0]))
        };
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|_| panic!("{cited}: no {}", file.display()));
        assert!(
            text.contains(&format!("fn {test}(")),
            "{cited}: no fn {test} in {}",
            file.display()
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} citations checked");
}

/// What the device sent and what it says it sent never differ: while the disclosure log
/// cannot be written (here a directory stands at its path), nothing is published, and once it
/// can, every message the broker delivers has its line.
#[test]
fn nothing_is_published_without_its_disclosure_line() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let (config, dir) = setup(&world, broker.port, None, "1h");
    let log_path = dir.join("state/disclosures.jsonl");
    std::fs::create_dir_all(&log_path).unwrap();

    let agent = Agent::start(BIN, &config);
    agent.wait_log("nothing is sent until it can be written");
    agent.wait_log("connected to broker");
    std::thread::sleep(Duration::from_secs(1));
    assert!(cloud.snapshot().is_empty(), "{:?}", cloud.snapshot());

    std::fs::remove_dir(&log_path).unwrap();
    cloud.wait_message("/activation", |_| true);
    agent.wait_log("sending resumes");
    let (ok, out, err) = cli_with(BIN, &config, &["disclosures", "--json"]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    for m in cloud.snapshot() {
        assert!(
            lines
                .iter()
                .any(|l| l["topic"] == m.topic.as_str() && l["bytes"] == m.payload.len()),
            "{} ({} bytes) has no disclosure line: {out}",
            m.topic,
            m.payload.len()
        );
    }
}
