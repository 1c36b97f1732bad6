//! An objection reaches the broker: after `consent withdraw` of Hikvision's
//! legitimate-interest status purpose, the agent registers no last will, clears the retained
//! status it published, and a SIGKILL leaves nothing behind for a new subscriber. A real
//! mutual-TLS mosquitto; the agent a real process.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

/// Retained messages a subscriber arriving now receives.
fn retained_now(world: &World, port: u16, name: &str) -> Vec<Message> {
    let late = Subscriber::connect(world, port, name, false);
    // The broker sends retained messages right after the SUBACK.
    std::thread::sleep(Duration::from_secs(1));
    late.snapshot().into_iter().filter(|m| m.retain).collect()
}

#[test]
fn an_objection_clears_the_retained_status_and_registers_no_last_will() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/hikvision.toml");
    let config =
        AgentSetup::new(&world, broker.port).write(&world, &world.path().join("a"), &policy);

    let mut agent = Agent::start(BIN, &config);
    cloud.wait_message("/status", |m| m.payload.windows(6).any(|w| w == b"online"));
    assert_eq!(retained_now(&world, broker.port, "before").len(), 1);

    // The owner objects while the agent runs.
    let (ok, _, err) = cli_with(BIN, &config, &["consent", "withdraw", "service_operation"]);
    assert!(ok, "{err}");
    agent.wait_log("retained message cleared at the broker");
    agent.wait_log("the last will changed: reconnecting");
    wait_for(PATIENCE, || {
        (agent.log().matches("connected to broker").count() >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("no reconnect; log:\n{}", agent.log()));

    // Killed: a will still registered would now publish a retained offline status.
    signal(agent.child.id(), "KILL");
    let _ = agent.child.wait();
    let retained = retained_now(&world, broker.port, "after-kill");
    assert!(
        retained.is_empty(),
        "retained after the objection: {retained:?}"
    );

    // Started again with the objection on file: no will from the first connect.
    let mut agent = Agent::start(BIN, &config);
    agent.wait_log("connected to broker");
    assert!(
        agent.log().contains("no status may be sent"),
        "{}",
        agent.log()
    );
    signal(agent.child.id(), "KILL");
    let _ = agent.child.wait();
    let retained = retained_now(&world, broker.port, "after-restart");
    assert!(
        retained.is_empty(),
        "retained after a restart: {retained:?}"
    );
    // On the wire: the online status, then only the empty publish that cleared it.
    let statuses: Vec<usize> = cloud
        .on("/status")
        .iter()
        .map(|m| m.payload.len())
        .collect();
    let cleared = statuses
        .iter()
        .position(|&len| len == 0)
        .expect("a clearing publish");
    assert!(
        cleared > 0 && statuses[cleared..].iter().all(|&len| len == 0),
        "{statuses:?}"
    );
}
