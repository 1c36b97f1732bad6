//! What a config must hold beyond its syntax, section by section. Each refusal names the key,
//! what is wrong with its value, and how to fix it.

use std::time::Duration;

use super::{AgentConfig, BrokerConfig, CommandsConfig, Config, MotionConfig, OutboxConfig};
use crate::device::FactSources;
use crate::uplink::mqtt::Protocol;

/// A key whose value the agent cannot work with.
pub(super) struct Invalid {
    pub key: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

fn invalid(key: &'static str, problem: String, fix: &'static str) -> Invalid {
    Invalid { key, problem, fix }
}

pub(super) fn check(config: &Config) -> Result<(), Invalid> {
    broker(&config.broker)?;
    outbox(&config.outbox, &config.broker)?;
    agent(&config.agent)?;
    commands(&config.commands)?;
    if config.outbox.cloud_confirms && config.commands.verify_key.is_none() {
        return Err(invalid(
            "outbox.cloud_confirms",
            "is true without commands.verify_key: no confirmation could be verified".into(),
            "set commands.verify_key to the cloud's Ed25519 public key, or cloud_confirms = false",
        ));
    }
    motion(&config.motion)?;
    device(&config.device)
}

fn broker(b: &BrokerConfig) -> Result<(), Invalid> {
    if b.host.trim().is_empty() {
        return Err(invalid(
            "broker.host",
            "is empty".into(),
            "set it to the broker's DNS name as written in its certificate",
        ));
    }
    if b.port == 0 {
        return Err(invalid(
            "broker.port",
            "is 0".into(),
            "use the broker's TLS port, usually 8883",
        ));
    }
    crate::wire::topic::check_prefix(&b.topic_prefix).map_err(|problem| {
        invalid(
            "broker.topic_prefix",
            problem,
            "use one or two levels of letters, digits, '-' or '_', e.g. \"acme/cams\"",
        )
    })?;
    // The agent pings every half of keep_alive; rumqttc pings at most every 5 s over MQTT 5
    // and every second over 3.1.1.
    let (least, fix) = match b.protocol {
        Protocol::V5 => (
            10,
            "use at least \"10s\" (or \"5s\" with broker.protocol = \"3.1.1\")",
        ),
        Protocol::V311 => (5, "use at least \"5s\""),
    };
    if b.keep_alive < Duration::from_secs(least) {
        return Err(invalid(
            "broker.keep_alive",
            format!("is {}", humantime::format_duration(b.keep_alive)),
            fix,
        ));
    }
    if b.reconnect_min.is_zero() || b.reconnect_min > b.reconnect_max {
        return Err(invalid(
            "broker.reconnect_min",
            "must be above zero and not above broker.reconnect_max".into(),
            "e.g. reconnect_min = \"500ms\", reconnect_max = \"60s\"",
        ));
    }
    if b.max_packet_bytes < 16 * 1024 {
        return Err(invalid(
            "broker.max_packet_bytes",
            format!("is {}", b.max_packet_bytes),
            "use at least 16384; 131072 (AWS IoT Core's limit) is the default",
        ));
    }
    if b.max_inflight == 0 {
        return Err(invalid(
            "broker.max_inflight",
            "is 0".into(),
            "use a value from 1 to 100; 32 is a good default",
        ));
    }
    Ok(())
}

fn outbox(o: &OutboxConfig, b: &BrokerConfig) -> Result<(), Invalid> {
    let chunk = o.chunk_bytes as usize;
    if chunk < 1024 || chunk + 1024 > b.max_packet_bytes {
        return Err(invalid(
            "outbox.chunk_bytes",
            format!(
                "is {chunk}, which with its header does not fit broker.max_packet_bytes ({})",
                b.max_packet_bytes
            ),
            "use at least 1024 and at most broker.max_packet_bytes − 1024 (the default, 130048, suits 128 KiB)",
        ));
    }
    if o.upload_kbps == Some(0) {
        return Err(invalid(
            "outbox.upload_kbps",
            "is 0, which would never upload a clip".into(),
            "remove it for no cap, or give the cap in kB/s, e.g. 256",
        ));
    }
    if o.max_bytes < 64 * 1024 {
        return Err(invalid(
            "outbox.max_bytes",
            format!("is {} bytes", o.max_bytes),
            "give the outbox at least 65536 bytes",
        ));
    }
    Ok(())
}

fn agent(a: &AgentConfig) -> Result<(), Invalid> {
    if a.facts_interval < Duration::from_millis(100) {
        return Err(invalid(
            "agent.facts_interval",
            "is below 100ms".into(),
            "use a duration such as \"1h\"",
        ));
    }
    if a.telemetry_interval < Duration::from_millis(100) {
        return Err(invalid(
            "agent.telemetry_interval",
            "is below 100ms".into(),
            "use a duration such as \"15m\"",
        ));
    }
    if a.disclosure_log_max_bytes < 4096 {
        return Err(invalid(
            "agent.disclosure_log_max_bytes",
            format!("is {} bytes", a.disclosure_log_max_bytes),
            "keep at least 4096 bytes of disclosure log",
        ));
    }
    Ok(())
}

fn commands(c: &CommandsConfig) -> Result<(), Invalid> {
    if let Some(key) = &c.verify_key {
        if key.len() != 64 || c.key_bytes().is_none() {
            return Err(invalid(
                "commands.verify_key",
                "is not 64 hex digits".into(),
                "give the cloud's raw Ed25519 public key (32 bytes) in hex, or remove the key to refuse all commands",
            ));
        }
    }
    Ok(())
}

fn motion(m: &MotionConfig) -> Result<(), Invalid> {
    if m.width < 32 || m.width > 1920 || !m.width.is_multiple_of(4) {
        return Err(invalid(
            "motion.width",
            format!("is {}", m.width),
            "use a multiple of 4 from 32 to 1920; about 320 is plenty for motion",
        ));
    }
    if m.height < 16 || m.height > 1080 {
        return Err(invalid(
            "motion.height",
            format!("is {}", m.height),
            "use 16 to 1080, in the source's aspect ratio (180 for 320 wide at 16:9)",
        ));
    }
    if m.fps == 0 || m.fps > 30 {
        return Err(invalid(
            "motion.fps",
            format!("is {}", m.fps),
            "use 1 to 30; 5 to 10 is typical",
        ));
    }
    if m.absorb.is_zero() || m.absorb > Duration::from_secs(600) {
        return Err(invalid(
            "motion.absorb",
            format!("is {:?}", m.absorb),
            "use \"1s\" to \"10m\"; a few seconds ends events soon after motion stops",
        ));
    }
    if !(1..=100).contains(&m.sensitivity) {
        return Err(invalid(
            "motion.sensitivity",
            format!("is {}", m.sensitivity),
            "use 1 (least) to 100 (most)",
        ));
    }
    if !(0.0..=1.0).contains(&m.min_area) || !(0.0..=1.0).contains(&m.learning_rate) {
        return Err(invalid(
            "motion.min_area",
            "or motion.learning_rate is outside 0.0–1.0".into(),
            "write fractions, e.g. min_area = 0.005, learning_rate = 0.05",
        ));
    }
    Ok(())
}

fn device(d: &FactSources) -> Result<(), Invalid> {
    if d.interface.is_empty() || d.interface.contains('/') {
        return Err(invalid(
            "device.interface",
            format!("{:?} is not a network interface name", d.interface),
            "name the interface whose MAC identifies the board, e.g. \"eth0\"",
        ));
    }
    if let Some(field) = d.sources.keys().find(|f| f.made_by_agent()) {
        return Err(invalid(
            "device.sources",
            format!("names `{field}`, which the agent makes itself"),
            "remove it: sources are for facts the board holds (uptime has device.uptime_file)",
        ));
    }
    if let Some(name) = d
        .sources
        .get(&crate::policy::Field::Timezone)
        .and_then(|s| s.value.as_deref())
    {
        crate::timezone::offset_now(name, &d.zoneinfo_dir).map_err(|e| {
            invalid(
                "device.sources.timezone",
                e.to_string(),
                "use an IANA zone name from the board's tz database (device.zoneinfo_dir), e.g. \"Europe/Berlin\"",
            )
        })?;
    }
    Ok(())
}
