//! Secrets are stopped by value: a board whose config file, device name and channel carry its
//! Wi-Fi key, admin password, mail password and TLS key, run under a profile that lets
//! `configuration`, `device_name` and `channel` leave (Imou's). A real mutual-TLS mosquitto and a
//! subscriber on `#` see every byte the agent publishes; no secret is among them.

mod support;

use std::path::Path;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

const WIFI_SSID: &str = "HomeNet-5G-Attic";
const WIFI_PSK: &str = "correct-horse-battery";
const SMTP_PASS: &str = "m4il-s3cret-pw";
const ADMIN_PASS: &str = "hunter2-admin";

#[test]
fn secrets_planted_in_facts_and_a_board_config_never_reach_the_broker() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    let dir = world.path().join("agent");
    std::fs::create_dir_all(&dir).unwrap();
    // The board's own config file, as vendors keep it: the secrets sit among plain settings.
    let ini = dir.join("device.ini");
    std::fs::write(
        &ini,
        format!(
            "[network]\nwifi_ssid={WIFI_SSID}\nwifi_psk=\"{WIFI_PSK}\"\n[mail]\nsmtp_user=owner@mail.test\nsmtp_pass: {SMTP_PASS}\n[video]\nresolution=1080p\n"
        ),
    )
    .unwrap();
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.sources = format!(
        "configuration = {{ file = {ini:?} }}\n\
         device_credentials = {{ value = \"admin:{ADMIN_PASS}\" }}\n\
         wifi_ssid = {{ file = {ini:?}, key = \"wifi_ssid\" }}\n\
         device_name = {{ value = \"Porch (admin:{ADMIN_PASS})\" }}\n\
         channel = {{ file = {key:?} }}\n",
        key = world.device.key,
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/imou.toml");
    let config = setup.write(&world, &dir, &policy);

    let mut agent = Agent::start(BIN, &config);
    let activation = wait_for(PATIENCE, || cloud.on("/activation").first().cloned())
        .unwrap_or_else(|| panic!("no activation; agent log:\n{}", agent.log()));
    assert!(agent.stop().success());

    // The fields that held a secret were kept back whole, and said so; the rest left.
    let body = activation.json();
    assert_eq!(
        body["withheld"],
        serde_json::json!(["device_name", "channel", "configuration"]),
        "{body}"
    );
    assert_eq!(body["fields"]["model"], MODEL, "{body}");
    assert!(agent.log().contains("fields kept back"), "{}", agent.log());

    let key_pem = std::fs::read_to_string(&world.device.key).unwrap();
    let key_lines = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16);
    let secrets: Vec<&str> = [WIFI_SSID, WIFI_PSK, SMTP_PASS, ADMIN_PASS]
        .into_iter()
        .chain(key_lines)
        .collect();
    let messages = cloud.snapshot();
    assert!(messages.len() >= 3, "{messages:?}");
    for m in &messages {
        let payload = String::from_utf8_lossy(&m.payload);
        for secret in &secrets {
            assert!(
                !payload.contains(secret) && !m.topic.contains(secret),
                "{secret:?} reached the broker on {}: {payload}",
                m.topic
            );
        }
    }
    // Nor the agent's log (journald).
    for secret in &secrets {
        assert!(!agent.log().contains(secret), "{secret:?} in the log");
    }
}

#[test]
fn facts_command_shows_every_field_but_no_secret() {
    let world = World::new();
    let mut setup = AgentSetup::new(&world, 8883);
    setup.sources = rich_sources();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/imou.toml");
    let config = setup.write(&world, &world.path().join("a"), &policy);
    let (ok, out, err) = cli_with(BIN, &config, &["facts"]);
    assert!(ok, "{err}");
    for (field, value) in RICH_FACTS {
        let line = out
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} line: {out}"));
        let secret = matches!(
            field,
            "wifi_ssid" | "device_credentials" | "email_alert_credentials"
        );
        assert_eq!(line.contains(value), !secret, "{line}");
        assert_eq!(line.contains("not shown"), secret, "{line}");
    }
}
