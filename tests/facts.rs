//! Facts are true: the time zone's UTC offset and DST come from the configured zone's own
//! rules, not from the agent process's clock, and a zone that does not exist is not reported.
//! The agent runs with `TZ=UTC` (as a systemd service usually does) against a real mutual-TLS
//! mosquitto; the expected offsets come from Python's `zoneinfo`, not from camagent.

mod support;

use std::process::Command;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

/// The zone's offset now as `+01:00`, and whether it is in DST, by Python's `zoneinfo`.
fn python_says(zone: &str) -> (String, bool) {
    let script = "import sys, datetime, zoneinfo\n\
                  now = datetime.datetime.now(zoneinfo.ZoneInfo(sys.argv[1]))\n\
                  off = now.strftime('%z')\n\
                  print(off[:3] + ':' + off[3:], bool(now.dst()))";
    let out = output(Command::new("python3").args(["-c", script, zone]));
    let text = String::from_utf8(out.stdout).unwrap();
    let (offset, dst) = text
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("python3: {text:?} {}", String::from_utf8_lossy(&out.stderr)));
    (offset.to_owned(), dst == "True")
}

/// The activation an agent on a board set to `zone` sends, with `TZ=UTC` for the agent.
fn activation(zone: &str) -> serde_json::Value {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let policy = world.path().join("policy.toml");
    write_policy(&policy, &["timezone", "dst", "model"], &["online_status"]);
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "fields = [\"timezone\", \"dst\", \"model\"]",
        "fields = [\"timezone\", \"dst\", \"model\"]\ntransforms = { timezone = \"utc_offset\" }",
    );
    std::fs::write(&policy, text).unwrap();
    let dir = world.path().join("agent");
    let config = AgentSetup::new(&world, broker.port).write(&world, &dir, &policy);
    std::fs::write(dir.join("board/timezone"), format!("{zone}\n")).unwrap();
    let mut agent = Agent::start_with_env(BIN, &config, &[("TZ", "UTC")]);
    let message = wait_for(PATIENCE, || cloud.on("/activation").first().cloned())
        .unwrap_or_else(|| panic!("no activation; log:\n{}", agent.log()));
    assert!(agent.stop().success());
    message.json()
}

#[test]
fn berlin_and_new_york_report_their_own_offsets_on_a_utc_system() {
    for zone in ["Europe/Berlin", "America/New_York", "Asia/Kolkata"] {
        let (offset, dst) = python_says(zone);
        let body = activation(zone);
        assert_eq!(
            body["fields"]["timezone"],
            offset.as_str(),
            "{zone}: {body}"
        );
        assert_eq!(
            body["fields"]["dst"],
            if dst { "on" } else { "off" },
            "{zone}: {body}"
        );
    }
}

#[test]
fn a_zone_that_does_not_exist_is_unavailable_not_invented() {
    let body = activation("Mars/Olympus");
    assert!(body["fields"].get("timezone").is_none(), "{body}");
    let unavailable = body["unavailable"].as_array().unwrap();
    assert!(
        unavailable.contains(&"timezone".into()) && unavailable.contains(&"dst".into()),
        "{body}"
    );
}
