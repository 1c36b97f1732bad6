//! The walking skeleton end to end: the agent binary, a real mosquitto with mutual TLS, and a
//! subscriber on its own certificate playing the cloud.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

fn seqs(messages: &[Message]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m.json()["seq"].as_u64().expect("facts carry seq"))
        .collect()
}

/// Each value the fake board holds for a field not in `permitted` must appear nowhere.
fn assert_no_forbidden_values(messages: &[Message], permitted: &[&str]) {
    let all = [
        ("serial_number", SERIAL),
        ("mac_address", MAC),
        ("model", MODEL),
        ("firmware_version", FIRMWARE),
        ("timezone", TIMEZONE),
    ];
    for m in messages {
        let text = String::from_utf8_lossy(&m.payload);
        for (field, value) in all.iter().filter(|(f, _)| !permitted.contains(f)) {
            assert!(
                !text.contains(value) && !m.topic.contains(value),
                "{field} value {value:?} leaked on {}: {text}",
                m.topic
            );
        }
    }
}

#[test]
fn facts_arrive_with_exactly_the_permitted_fields() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let policy = world.path().join("policy.toml");
    let permitted = ["serial_number", "model", "firmware_version"];
    write_policy(&policy, &permitted, &["serial_number", "online_status"]);
    let config =
        AgentSetup::new(&world, broker.port).write(&world, &world.path().join("a"), &policy);
    let mut agent = Agent::start(BIN, &config);

    let facts = cloud.wait_message("/activation", |_| true);
    assert_eq!(facts.topic, format!("test/cams/{SERIAL}/activation"));
    let body = facts.json();
    let fields: BTreeSet<&str> = body["fields"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, BTreeSet::from(permitted));
    assert_eq!(body["fields"]["serial_number"], SERIAL);
    assert_eq!(body["fields"]["model"], MODEL);
    assert_eq!(body["fields"]["firmware_version"], FIRMWARE);
    assert_eq!(body["purpose"], "device_activation");
    assert_eq!(body["schema"], 1);
    assert!(!facts.retain);

    let online = cloud.wait_message("/status", |m| {
        m.json()["fields"]["online_status"] == "online"
    });
    assert_eq!(online.topic, format!("test/cams/{SERIAL}/status"));
    // Retained: a subscriber that comes later is told at once (with the retain flag set).
    let late = Subscriber::connect(&world, broker.port, "late", false);
    let kept = late.wait_message("/status", |_| true);
    assert!(kept.retain && kept.json()["fields"]["online_status"] == "online");

    assert!(agent.stop().success());
    let offline = cloud.wait_message("/status", |m| {
        m.json()["fields"]["online_status"] == "offline"
    });
    assert_eq!(offline.topic, online.topic);
    assert_no_forbidden_values(&cloud.snapshot(), &permitted);
}

#[test]
fn without_serial_permission_topics_carry_a_pseudonym() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let policy = world.path().join("policy.toml");
    write_policy(&policy, &["model"], &["online_status"]);
    let dir = world.path().join("a");
    let config = AgentSetup::new(&world, broker.port).write(&world, &dir, &policy);
    let _agent = Agent::start(BIN, &config);

    let facts = cloud.wait_message("/activation", |_| true);
    cloud.wait_message("/status", |_| true);
    let levels: Vec<&str> = facts.topic.split('/').collect();
    assert_eq!(levels.len(), 4, "{}", facts.topic);
    assert_eq!(levels[2].len(), 24, "pseudonym expected: {}", facts.topic);
    assert!(levels[2].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(facts.json()["fields"], serde_json::json!({"model": MODEL}));
    assert_no_forbidden_values(&cloud.snapshot(), &["model"]);

    let key = dir.join("state/keys/pseudonym.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

/// `setup` written under `a/`, with a policy that lets the serial number out at activation
/// and, with the online status, in the status.
fn serial_config(world: &World, setup: AgentSetup) -> std::path::PathBuf {
    let policy = world.path().join("policy.toml");
    write_policy(
        &policy,
        &["serial_number"],
        &["serial_number", "online_status"],
    );
    setup.write(world, &world.path().join("a"), &policy)
}

fn assert_tls_refused(setup: AgentSetup, world: &World, broker_port: u16, hint: &str) {
    let cloud = Subscriber::connect(world, broker_port, "cloud", false);
    let agent = Agent::start(BIN, &serial_config(world, setup));
    agent.wait_log(hint);
    // Two more failed attempts, then check nothing arrived.
    let attempts = |log: String| log.matches("cannot connect to broker").count();
    let first = attempts(agent.log());
    wait_for(PATIENCE, || {
        (attempts(agent.log()) >= first + 2).then_some(())
    })
    .expect("agent should keep retrying with backoff");
    assert!(cloud.snapshot().is_empty(), "{:?}", cloud.snapshot());
}

#[test]
fn wrong_ca_fails_clearly_and_sends_nothing() {
    let world = World::new();
    let broker = world.broker(false);
    let other = Pki::new(world.path(), "other");
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.ca_file = other.ca_file("other");
    assert_tls_refused(
        setup,
        &world,
        broker.port,
        "not signed by a CA in broker.ca_file",
    );
}

#[test]
fn wrong_server_name_fails_clearly_and_sends_nothing() {
    let world = World::new();
    let broker = world.broker(false);
    let mut setup = AgentSetup::new(&world, broker.port);
    // The broker's certificate names only "localhost".
    setup.host = "127.0.0.1".into();
    assert_tls_refused(setup, &world, broker.port, "does not name \"127.0.0.1\"");
}

/// Cuts the link, restarts the broker while facts keep coming, restores the link and checks
/// that every record arrives, in order. `persistent` decides whether the broker keeps the
/// agent's session across the restart (resume path) or forgets it (re-send path).
fn broker_restart_loses_nothing(persistent: bool) {
    let world = World::new();
    let mut broker = world.broker(persistent);
    let link = Link::new(broker.port);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", persistent);
    let policy = world.path().join("policy.toml");
    write_policy(
        &policy,
        &["serial_number", "uptime"],
        &["serial_number", "online_status"],
    );
    let dir = world.path().join("a");
    let mut setup = AgentSetup::new(&world, link.port);
    setup.facts_interval = "150ms";
    let config = setup.write(&world, &dir, &policy);
    let mut agent = Agent::start(BIN, &config);

    wait_for(PATIENCE, || {
        (cloud.on("/activation").len() >= 5).then_some(())
    })
    .expect("facts flowing before the outage");
    link.cut();
    let subacks = cloud.suback_count();
    broker.stop();
    agent.wait_log("broker connection lost");
    std::thread::sleep(Duration::from_millis(1500)); // records pile up in the outbox
    broker.restart();
    if !persistent {
        cloud.wait_subscribed(subacks);
    } else {
        wait_for(PATIENCE, || (cloud.suback_count() > subacks).then_some(()));
    }
    let before = agent.log().matches("connected to broker").count();
    link.restore();
    wait_for(PATIENCE, || {
        (agent.log().matches("connected to broker").count() > before).then_some(())
    })
    .expect("agent reconnects");
    let resumed = format!("session_present={persistent}");
    assert!(
        agent.log().contains(&resumed),
        "expected {resumed}:\n{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(agent.stop().success());

    // Everything accepted was delivered: the outbox is empty...
    let left = queued_records(&dir);
    assert_eq!(left, 0, "undelivered records left in the outbox");
    // ...and the cloud saw every sequence number, first appearances in order.
    let got = seqs(&cloud.on("/activation"));
    let mut first_seen = Vec::new();
    for s in &got {
        if !first_seen.contains(s) {
            first_seen.push(*s);
        }
    }
    let expected: Vec<u64> = (0..=*first_seen.iter().max().unwrap()).collect();
    assert_eq!(first_seen, expected, "lost or reordered records: {got:?}");
    assert!(
        expected.len() >= 10,
        "too few records to mean anything: {got:?}"
    );
}

#[test]
fn broker_restart_that_forgets_the_session_loses_nothing() {
    broker_restart_loses_nothing(false);
}

#[test]
fn broker_restart_that_keeps_the_session_loses_nothing() {
    broker_restart_loses_nothing(true);
}

/// An agent that reports facts every 100 ms to `port`: its directory and its config.
fn fast_facts_setup(world: &World, port: u16) -> (std::path::PathBuf, std::path::PathBuf) {
    let policy = world.path().join("policy.toml");
    write_policy(&policy, &["uptime"], &["online_status"]);
    let dir = world.path().join("a");
    let mut setup = AgentSetup::new(world, port);
    setup.facts_interval = "100ms";
    let config = setup.write(world, &dir, &policy);
    (dir, config)
}

/// [`fast_facts_setup`] through a link to the broker that starts cut, so records queue.
fn offline_agent_setup(
    world: &World,
    broker_port: u16,
) -> (Link, std::path::PathBuf, std::path::PathBuf) {
    let link = Link::new(broker_port);
    link.cut();
    let (dir, config) = fast_facts_setup(world, link.port);
    (link, dir, config)
}

#[test]
fn records_queued_offline_survive_an_agent_kill() {
    let world = World::new();
    let broker = world.broker(false);
    let (link, dir, config) = offline_agent_setup(&world, broker.port);

    let mut agent = Agent::start(BIN, &config);
    let queued = || queued_records(&dir);
    wait_for(PATIENCE, || (queued() >= 5).then_some(())).expect("records queue while offline");
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let kept = queued();

    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    link.restore();
    let _agent = Agent::start(BIN, &config);
    wait_for(PATIENCE, || {
        (cloud.on("/activation").len() > kept).then_some(())
    })
    .expect("queued records delivered after restart");
    let got = seqs(&cloud.on("/activation"));
    let expected: Vec<u64> = (0..got.len() as u64).collect();
    assert_eq!(
        got[..kept],
        expected[..kept],
        "queued records lost or reordered"
    );
}

#[test]
fn sigkill_leaves_the_retained_offline_status() {
    let world = World::new();
    let broker = world.broker(false);
    let config = serial_config(&world, AgentSetup::new(&world, broker.port));
    let mut agent = Agent::start(BIN, &config);
    {
        let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
        cloud.wait_message("/status", |m| {
            m.json()["fields"]["online_status"] == "online"
        });
    }
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();

    // A subscriber that arrives later learns the device is offline from the retained will.
    let status_is = |want: &'static str| {
        move || {
            let late = Subscriber::connect(&world, broker.port, "late", false);
            let m = late.wait_message("/status", |_| true);
            (m.retain && m.json()["fields"]["online_status"] == want).then_some(m)
        }
    };
    let m = wait_for(PATIENCE, status_is("offline")).expect("retained offline status");
    assert_eq!(m.topic, format!("test/cams/{SERIAL}/status"));
}

#[test]
fn bad_config_exits_nonzero_naming_the_key() {
    let world = World::new();
    let path = world.path().join("bad.toml");
    std::fs::write(
        &path,
        "[broker]\nhost = \"localhost\"\nport = \"eighty\"\nca_file = \"a\"\ncert_file = \"b\"\nkey_file = \"c\"\n",
    )
    .unwrap();
    let out = output(agent_command(BIN).args(["--config", path.to_str().unwrap(), "run"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("port") && err.contains("line 3"), "{err}");

    std::fs::write(&path, "[broker]\nhost = \"localhost\"\nca_file = \"a\"\ncert_file = \"b\"\nkey_file = \"c\"\nkeep_alive = \"1s\"\n").unwrap();
    let out = output(agent_command(BIN).args(["--config", path.to_str().unwrap(), "run"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("`broker.keep_alive`") && err.contains("\"10s\""),
        "{err}"
    );
}

#[test]
fn key_readable_by_others_is_refused_with_the_fix() {
    let world = World::new();
    let broker = world.broker(false);
    let policy = world.path().join("policy.toml");
    write_policy(&policy, &["model"], &["online_status"]);
    let config =
        AgentSetup::new(&world, broker.port).write(&world, &world.path().join("a"), &policy);
    std::fs::set_permissions(&world.device.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = output(agent_command(BIN).args([
        "--config",
        config.to_str().unwrap(),
        "run",
        "--allow-root",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn facts_command_marks_what_may_leave() {
    let world = World::new();
    let policy = world.path().join("policy.toml");
    write_policy(&policy, &["model"], &["online_status"]);
    let config = AgentSetup::new(&world, 8883).write(&world, &world.path().join("a"), &policy);
    let out = output(agent_command(BIN).args(["--config", config.to_str().unwrap(), "facts"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |field: &str| {
        text.lines()
            .find(|l| l.starts_with(field))
            .unwrap()
            .to_owned()
    };
    assert!(
        line("model").contains(MODEL) && line("model").ends_with("device_activation"),
        "{text}"
    );
    assert!(
        line("serial_number").contains(SERIAL) && line("serial_number").contains("never"),
        "{text}"
    );
    assert!(line("mac_address").contains(MAC), "{text}");
}

#[test]
fn version_is_printed() {
    let out = output(agent_command(BIN).arg("--version"));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn refuses_to_run_as_root_unless_told() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: nothing to refuse");
        return;
    }
    let world = World::new();
    let policy = world.path().join("policy.toml");
    write_policy(&policy, &["model"], &["online_status"]);
    let config =
        AgentSetup::new(&world, free_port()).write(&world, &world.path().join("a"), &policy);
    let (ok, _, err) = cli(BIN, &["--config", config.to_str().unwrap(), "run"]);
    assert!(
        !ok && err.contains("refusing to run as root") && err.contains("--allow-root"),
        "{err}"
    );
}

/// One bad file in the outbox never stops delivery: an entry deleted behind the running
/// agent's back, then (across a restart) a directory named like an entry and an alien
/// `garbage.rec`. Every other record arrives, in order, and the daemon runs on.
#[test]
fn one_bad_outbox_entry_never_stops_delivery() {
    let world = World::new();
    let broker = world.broker(false);
    let (link, dir, config) = offline_agent_setup(&world, broker.port);
    let outbox = dir.join("state/outbox");
    let entries = || {
        let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(&outbox)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rec"))
            .collect();
        names.sort();
        names
    };

    // Running, offline: records queue; one vanishes.
    let mut agent = Agent::start(BIN, &config);
    wait_for(PATIENCE, || (queued_records(&dir) >= 5).then_some(())).expect("records queue");
    let vanished = entries()[1].clone();
    std::fs::remove_file(&vanished).unwrap();
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    link.restore();
    wait_for(PATIENCE, || {
        (cloud.on("/activation").len() >= 6).then_some(())
    })
    .unwrap_or_else(|| panic!("delivery stalled; log:\n{}", agent.log()));
    assert!(agent.alive());
    assert!(agent.log().contains("vanished"), "{}", agent.log());
    let seq_of =
        |p: &std::path::Path| -> u64 { p.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
    assert!(!seqs(&cloud.on("/activation")).contains(&seq_of(&vanished)));

    // Stopped, then an alien file and a directory among the entries: the next start goes on.
    link.cut();
    wait_for(PATIENCE, || (queued_records(&dir) >= 3).then_some(())).expect("records queue");
    assert!(agent.stop().success());
    let waiting: Vec<u64> = entries().iter().map(|p| seq_of(p)).collect();
    std::fs::create_dir(outbox.join("00000000000099999999.rec")).unwrap();
    std::fs::write(outbox.join("garbage.rec"), b"junk").unwrap();
    link.restore();
    let mut agent = Agent::start(BIN, &config);
    agent.wait_log("quarantined");
    let delivered = || seqs(&cloud.on("/activation"));
    let newest = waiting.iter().copied().max().unwrap_or(0);
    wait_for(PATIENCE, || {
        (waiting.iter().all(|s| delivered().contains(s)) && delivered().iter().any(|&s| s > newest))
            .then_some(())
    })
    .unwrap_or_else(|| panic!("{waiting:?} and newer not delivered; log:\n{}", agent.log()));
    assert!(agent.alive());
    // At least once, in order: a record unacknowledged at the cut may come twice.
    let mut first_seen = delivered();
    let mut seen = std::collections::BTreeSet::new();
    first_seen.retain(|s| seen.insert(*s));
    assert!(
        first_seen.windows(2).all(|w| w[0] < w[1]),
        "out of order: {first_seen:?}"
    );
    // The two bad entries are counted where the owner looks.
    let quarantined = || status_json(BIN, &config)?["quarantined"].as_u64();
    wait_for(PATIENCE, || (quarantined() == Some(2)).then_some(()))
        .unwrap_or_else(|| panic!("status says {:?} quarantined", quarantined()));
    let (_, out, _) = cli_with(BIN, &config, &["status"]);
    assert!(out.contains("2 damaged records kept aside"), "{out}");
}

/// A damaged sequence counter never makes the agent reuse a number: the cloud would take the
/// new records for duplicates and drop them. With everything delivered (nothing left in the
/// outbox to count from), the disclosure log still shows the numbers used.
#[test]
fn a_damaged_sequence_counter_never_reuses_a_number() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let (dir, config) = fast_facts_setup(&world, broker.port);

    let mut agent = Agent::start(BIN, &config);
    wait_for(PATIENCE, || {
        (cloud.on("/activation").len() >= 4).then_some(())
    })
    .expect("facts");
    assert!(agent.stop().success());
    wait_for(PATIENCE, || (queued_records(&dir) == 0).then_some(())).expect("all delivered");
    let used = seqs(&cloud.on("/activation"));
    let highest = *used.iter().max().unwrap();
    std::fs::write(dir.join("state/outbox/seq"), b"\x00\x00garbage").unwrap();

    let before = used.len();
    let agent = Agent::start(BIN, &config);
    wait_for(PATIENCE, || {
        (cloud.on("/activation").len() > before).then_some(())
    })
    .unwrap_or_else(|| panic!("nothing after restart; log:\n{}", agent.log()));
    agent.wait_log("sequence counter");
    assert!(agent.log().contains("recovered"), "{}", agent.log());
    let after = seqs(&cloud.on("/activation")[before..]);
    assert!(
        after.iter().all(|s| *s > highest && !used.contains(s)),
        "{used:?} then {after:?}"
    );
}

#[test]
fn a_state_directory_that_is_a_file_is_named_with_the_fix() {
    let world = World::new();
    let policy = world.path().join("policy.toml");
    write_policy(&policy, &["model"], &["online_status"]);
    let dir = world.path().join("a");
    let config = AgentSetup::new(&world, 8883).write(&world, &dir, &policy);
    std::fs::write(dir.join("state"), b"not a directory").unwrap();
    let (ok, _, err) = cli_with(BIN, &config, &["run", "--allow-root"]);
    assert!(!ok);
    assert!(
        err.contains("is a file, not a directory") && err.contains("agent.state_dir"),
        "{err}"
    );
}

/// A broker that stops answering (a hung process, a half-open link) is noticed within one
/// keep-alive: the agent pings every half of it, and `camagent status` stops saying
/// `connected` once the ping goes unanswered. Thawed, delivery goes on.
#[test]
fn a_frozen_broker_is_noticed_within_one_keep_alive() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let (_dir, config) = fast_facts_setup(&world, broker.port);
    let agent = Agent::start(BIN, &config);
    cloud.wait_message("/activation", |_| true);
    // The tests' keep_alive is 10 s: the broker is told 5 s, the agent's ping interval.
    let client = format!("as camagent-{}", agent.anchor_id());
    let connect_line = broker
        .log()
        .lines()
        .find(|l| l.contains(&client))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no connect line in:\n{}", broker.log()));
    assert!(connect_line.contains(", k5"), "{connect_line}");

    let connected = || status_json(BIN, &config)?["connected"].as_bool();
    wait_for(PATIENCE, || (connected() == Some(true)).then_some(())).expect("connected");
    broker.freeze(true);
    let frozen = std::time::Instant::now();
    wait_for(PATIENCE, || (connected() == Some(false)).then_some(()))
        .unwrap_or_else(|| panic!("still connected; log:\n{}", agent.log()));
    eprintln!(
        "frozen broker noticed after {:.1} s (keep_alive 10 s)",
        frozen.elapsed().as_secs_f64()
    );
    assert!(
        agent.log().contains("broker connection lost"),
        "{}",
        agent.log()
    );

    broker.freeze(false);
    let before = cloud.on("/activation").len();
    wait_for(PATIENCE, || {
        (cloud.on("/activation").len() > before + 2).then_some(())
    })
    .unwrap_or_else(|| panic!("no delivery after thaw; log:\n{}", agent.log()));
    wait_for(PATIENCE, || (connected() == Some(true)).then_some(())).expect("connected again");
}

/// A slow disk (every durable write takes 4 s, as on a worn SD card) holds up the records but
/// never the connection: the MQTT event loop has a thread of its own, so pings and
/// acknowledgements go on while the main loop waits for the disk.
#[test]
fn a_slow_disk_never_drops_the_connection() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let (_dir, config) = fast_facts_setup(&world, broker.port);
    let agent = Agent::start_with_env(BIN, &config, &[("CAMAGENT_FAULT_SLOW_DISK_MS", "4000")]);
    // Each write blocks the main loop for longer than the 3 s of silence after which the
    // broker drops a client that declared k2.
    wait_for(Duration::from_secs(90), || {
        (cloud.on("/activation").len() >= 4).then_some(())
    })
    .unwrap_or_else(|| panic!("records stopped; log:\n{}", agent.log()));
    let client = format!("as camagent-{}", agent.anchor_id());
    let connects = broker.log().lines().filter(|l| l.contains(&client)).count();
    assert_eq!(connects, 1, "reconnected; broker log:\n{}", broker.log());
}

/// A broker that takes the TLS handshake but refuses the device's identity (CONNACK "not
/// authorised") gets a hint about registering the device, not one about a closed port.
#[test]
fn a_refused_identity_gets_its_own_hint() {
    let world = World::new();
    // Certificates are checked, but nothing is authorised by them: every client is refused.
    let broker = world.broker_with(
        false,
        "use_identity_as_username false\nallow_anonymous false\n",
    );
    let config = serial_config(&world, AgentSetup::new(&world, broker.port));
    let agent = Agent::start(BIN, &config);
    agent.wait_log("does not authorise this device's identity");
    assert!(
        !agent.log().contains("nothing accepts connections"),
        "{}",
        agent.log()
    );
}
