//! Motion alerts end to end: a live GStreamer source in the agent, the detector, the gate and
//! a real mutual-TLS mosquitto, with the cloud's subscriber at the other end.

mod support;

use std::path::Path;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

fn agent_with(world: &World, port: u16, capture: &str) -> (Agent, std::path::PathBuf) {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    let mut setup = AgentSetup::new(world, port);
    setup.extra = capture.to_owned();
    let dir = world.path().join("agent");
    let config = setup.write(world, &dir, &policy);
    (Agent::start(BIN, &config), dir)
}

#[test]
fn moving_test_scene_raises_an_alert_through_the_gate() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let (mut agent, _) = agent_with(
        &world,
        broker.port,
        "[capture]\nsource = \"test\"\npattern = \"ball\"\n",
    );
    let alert = cloud.wait_message("/alarm", |m| {
        m.json()["fields"]["event_data"]["phase"] == "start"
    });
    let body = alert.json();
    assert_eq!(body["purpose"], "alarm_notification");
    let fields: Vec<&String> = body["fields"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["event_data", "snapshot"], "{body}");
    assert_eq!(body["fields"]["snapshot"]["content_type"], "image/jpeg");
    let event = &body["fields"]["event_data"];
    assert_eq!(event["event_id"].as_str().unwrap().len(), 36);
    assert!(event["score"].as_f64().unwrap() > 0.0);
    assert!(!event["regions"].as_array().unwrap().is_empty());
    assert!(
        agent.stop().success(),
        "clean stop with capture running:\n{}",
        agent.log()
    );
}

#[test]
fn recorded_street_clip_as_a_source_raises_an_alert() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let capture = "[capture]\nsource = \"file\"\npath = \"/usr/share/doc/opencv-doc/examples/data/vtest.avi\"\n";
    let (agent, _) = agent_with(&world, broker.port, capture);
    let started = |m: &Message| m.json()["fields"]["event_data"]["phase"] == "start";
    if wait_for(PATIENCE, || cloud.on("/alarm").into_iter().find(started)).is_none() {
        panic!("no alert; agent log:\n{}", agent.log());
    }
}

#[test]
fn a_failing_source_is_retried_and_the_daemon_keeps_working() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let capture = "[capture]\nsource = \"file\"\npath = \"/nonexistent/camera.mp4\"\n";
    let (mut agent, _) = agent_with(&world, broker.port, capture);
    agent.wait_log("capture source failed");
    let restarts = |log: String| log.matches("capture source starting").count();
    wait_for(PATIENCE, || (restarts(agent.log()) >= 3).then_some(()))
        .expect("restarts with backoff");
    cloud.wait_message("/activation", |_| true);
    assert!(agent.alive());
    assert!(cloud.on("/alarm").is_empty());
}

/// An event cut short by a crash or a power cut still ends: the next start sends its `end`
/// alert (reason `cut_short`), where the cloud would otherwise show it going on for ever.
#[test]
fn an_event_cut_short_by_a_kill_gets_its_end_alert_at_the_next_start() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let capture = "[capture]\nsource = \"test\"\npattern = \"ball\"\n";
    let (mut agent, dir) = agent_with(&world, broker.port, capture);
    let phase = |m: &Message, p: &str| m.json()["fields"]["event_data"]["phase"] == p;
    let start = cloud.wait_message("/alarm", |m| phase(m, "start"));
    let event_id = start.json()["fields"]["event_data"]["event_id"].clone();
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    assert!(!cloud.on("/alarm").iter().any(|m| phase(m, "end")));

    let config = dir.join("camagent.toml");
    let again = Agent::start(BIN, &config);
    let end = wait_for(PATIENCE, || {
        cloud
            .on("/alarm")
            .into_iter()
            .find(|m| phase(m, "end") && m.json()["fields"]["event_data"]["event_id"] == event_id)
    })
    .unwrap_or_else(|| panic!("no end alert for {event_id}; log:\n{}", again.log()));
    assert_eq!(end.json()["fields"]["event_data"]["reason"], "cut_short");
}

/// A kill just after an event's end alert was queued, before the note of the event in
/// progress was cleared (`CAMAGENT_FAULT_DIE_AT` puts it exactly there): the next start sends
/// that end, and not a second one claiming the event was cut short.
#[test]
fn a_kill_right_after_an_end_was_queued_sends_that_end_once() {
    use support::scenes::*;
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    cloud.wait_subscribed(0);
    let tmp = tempfile::tempdir().unwrap();
    let clip = encode(tmp.path(), "walk", &walk(), Codec::H264);
    let config = camera_config(&world, broker.port, &clip, false, "");
    let mut dying = Agent::start_with_env(BIN, &config, &[("CAMAGENT_FAULT_DIE_AT", "end-queued")]);
    wait_for(PATIENCE * 2, || (!dying.alive()).then_some(()))
        .unwrap_or_else(|| panic!("still running; log:\n{}", dying.log()));
    assert!(
        dying.log().contains("the agent dies here"),
        "{}",
        dying.log()
    );
    let data = |m: &Message| m.json()["fields"]["event_data"].clone();
    let event_id =
        data(&cloud.wait_message("/alarm", |m| data(m)["phase"] == "start"))["event_id"].clone();

    // The file plays again from its start: a second event, whose start alert is queued after
    // anything the restart sends for the first.
    let again = Agent::start(BIN, &config);
    again.wait_log("its end alert is queued");
    cloud.wait_message("/alarm", |m| {
        data(m)["phase"] == "start" && data(m)["event_id"] != event_id
    });
    let ends: std::collections::BTreeMap<u64, serde_json::Value> = cloud
        .on("/alarm")
        .iter()
        .filter(|m| data(m)["phase"] == "end" && data(m)["event_id"] == event_id)
        .map(|m| (m.json()["seq"].as_u64().unwrap(), data(m)))
        .collect();
    assert_eq!(ends.len(), 1, "one end alert for {event_id}: {ends:?}");
    assert_eq!(ends.values().next().unwrap()["reason"], "quiet", "{ends:?}");
}
