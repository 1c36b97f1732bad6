//! The agent's TOML configuration.
//!
//! Parsing is strict (`deny_unknown_fields`) so a misspelt key is an error, not a silently
//! ignored setting. Every error names the key; parse errors also carry the line the parser
//! found them on, and semantic errors say what a valid value looks like.

pub mod capture;
mod rtsp;
pub use rtsp::RtspUrl;
mod motion;
mod validate;

pub use motion::MotionConfig;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::device::FactSources;

/// Where the daemon looks for its config when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/camagent/camagent.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML parser's message names the key and, where it knows it, the line and column.
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: `{key}` {problem}; {fix}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub broker: BrokerConfig,
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default)]
    pub outbox: OutboxConfig,
    #[serde(default)]
    pub device: FactSources,
    #[serde(default)]
    pub commands: CommandsConfig,
    #[serde(default)]
    pub motion: MotionConfig,
    /// The camera source; without it the agent runs without capture.
    pub capture: Option<capture::CaptureConfig>,
}

/// Signed cloud commands (consent, erase). Without a key, every command is refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// The cloud's Ed25519 public key, 64 hex digits.
    pub verify_key: Option<String>,
}

impl CommandsConfig {
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        self.verify_key.as_deref().and_then(crate::hex::decode)
    }
}

/// The MQTT broker and the TLS identity used to reach it. There is no plaintext mode.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Host name or address; it is also the name the broker's certificate must carry.
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// PEM bundle of the CA certificates that may sign the broker's certificate.
    pub ca_file: PathBuf,
    /// PEM certificate chain presented to the broker (mutual TLS).
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`; must not be readable by group or others.
    pub key_file: PathBuf,
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    #[serde(default = "default_keep_alive", with = "crate::human_duration")]
    pub keep_alive: Duration,
    #[serde(default = "default_reconnect_min", with = "crate::human_duration")]
    pub reconnect_min: Duration,
    #[serde(default = "default_reconnect_max", with = "crate::human_duration")]
    pub reconnect_max: Duration,
    /// Publishes handed to the MQTT client and not yet acknowledged, at most.
    #[serde(default = "default_inflight")]
    pub max_inflight: u16,
    /// The MQTT version the broker speaks: "5" (the broker drops a message over
    /// `max_packet_bytes` before sending it) or "3.1.1" for brokers that speak only that.
    #[serde(default)]
    pub protocol: crate::uplink::mqtt::Protocol,
    /// Largest MQTT packet sent or received. 128 KiB is AWS IoT Core's message limit; the
    /// alert snapshot is sized to fit it.
    #[serde(default = "default_max_packet_bytes")]
    pub max_packet_bytes: usize,
}

fn default_max_packet_bytes() -> usize {
    128 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Durable state: outbox, pseudonym key, sequence counter.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_policy_file")]
    pub policy_file: PathBuf,
    /// How often device facts are reported after the one at start-up.
    #[serde(default = "default_facts_interval", with = "crate::human_duration")]
    pub facts_interval: Duration,
    /// How often telemetry and usage statistics are reported.
    #[serde(default = "default_telemetry_interval", with = "crate::human_duration")]
    pub telemetry_interval: Duration,
    /// Bytes of disclosure log kept before it is rotated (up to twice this is kept).
    #[serde(default = "default_disclosure_log_max_bytes")]
    pub disclosure_log_max_bytes: u64,
}

impl AgentConfig {
    /// The state directory's layout under `state_dir`.
    pub fn state(&self) -> crate::state_dir::StateDir {
        crate::state_dir::StateDir::new(&self.state_dir)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxConfig {
    /// Bytes the outbox may occupy on disk; records beyond it are refused, never dropped later.
    #[serde(default = "default_outbox_max_bytes")]
    pub max_bytes: u64,
    /// Clip bytes per chunk message; with its header and topic it must fit
    /// `broker.max_packet_bytes`.
    #[serde(default = "default_chunk_bytes")]
    pub chunk_bytes: u32,
    /// Bandwidth cap for clip uploads, in kilobytes (1000 bytes) per second; none if unset.
    pub upload_kbps: Option<u32>,
    /// Disk the clips waiting to go up may use; beyond it the oldest clip is evicted (alerts
    /// and other records are never evicted for clips).
    #[serde(default = "default_clips_max_bytes")]
    pub clips_max_bytes: u64,
    /// Keep each clip until the cloud confirms it with a signed `clip_verified` command
    /// (which needs `commands.verify_key`), and send again what it says it lacks; without
    /// it, a clip is deleted once the broker acknowledged every chunk.
    #[serde(default)]
    pub cloud_confirms: bool,
}

fn default_clips_max_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_chunk_bytes() -> u32 {
    127 * 1024
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            state_dir: default_state_dir(),
            policy_file: default_policy_file(),
            facts_interval: default_facts_interval(),
            telemetry_interval: default_telemetry_interval(),
            disclosure_log_max_bytes: default_disclosure_log_max_bytes(),
        }
    }
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_bytes: default_outbox_max_bytes(),
            chunk_bytes: default_chunk_bytes(),
            upload_kbps: None,
            clips_max_bytes: default_clips_max_bytes(),
            cloud_confirms: false,
        }
    }
}

fn default_port() -> u16 {
    8883
}
fn default_topic_prefix() -> String {
    "camagent".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_reconnect_min() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_max() -> Duration {
    Duration::from_secs(60)
}
fn default_inflight() -> u16 {
    32
}
fn default_state_dir() -> PathBuf {
    "/var/lib/camagent".into()
}
fn default_policy_file() -> PathBuf {
    "/etc/camagent/policy.toml".into()
}
fn default_facts_interval() -> Duration {
    Duration::from_secs(3600)
}
fn default_telemetry_interval() -> Duration {
    Duration::from_secs(900)
}
fn default_disclosure_log_max_bytes() -> u64 {
    256 * 1024
}
fn default_outbox_max_bytes() -> u64 {
    8 * 1024 * 1024
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        validate::check(&config).map_err(|invalid| ConfigError::Invalid {
            path: path.to_owned(),
            key: invalid.key,
            problem: invalid.problem,
            fix: invalid.fix,
        })?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[broker]
host = "localhost"
ca_file = "ca.pem"
cert_file = "device.crt"
key_file = "device.key"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn shipped_example_is_valid() {
        let c = parse(include_str!("../../etc/camagent.toml")).unwrap();
        assert_eq!(c.broker.host, "mqtt.example.com");
    }

    #[test]
    fn board_profiles_are_valid_configs() {
        let boards = Path::new(env!("CARGO_MANIFEST_DIR")).join("board");
        let mut seen = 0;
        for board in std::fs::read_dir(&boards).unwrap() {
            let board = board.unwrap().path();
            if !board.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&board).unwrap() {
                let profile = file.unwrap().path();
                if profile.extension().is_some_and(|e| e == "toml") {
                    let c = Config::load(&profile).unwrap_or_else(|e| panic!("{e}"));
                    assert!(
                        c.capture.is_some(),
                        "{}: a board has a camera",
                        profile.display()
                    );
                    seen += 1;
                }
            }
        }
        assert_eq!(
            seen, 4,
            "qemu-virt (file and vivid cameras), raspberry-pi, generic-soc"
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.broker.port, 8883);
        assert_eq!(c.broker.topic_prefix, "camagent");
        assert_eq!(c.agent.facts_interval, Duration::from_secs(3600));
        assert_eq!(c.device.interface, "eth0");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse(&format!("{MINIMAL}colour = \"red\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let err = parse(&format!("{MINIMAL}keep_alive = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("keep_alive") || err.contains("line 7"),
            "{err}"
        );
        assert!(err.contains("\"30s\""), "{err}");
    }

    #[test]
    fn semantic_error_names_key_and_fix() {
        let err = parse(&MINIMAL.replace("[broker]", "[broker]\nport = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`broker.port`"), "{err}");
        assert!(err.contains("8883"), "{err}");
    }

    #[test]
    fn motion_absorb_of_zero_is_refused_with_a_fix() {
        let err = parse(&format!("{MINIMAL}\n[motion]\nabsorb = \"0s\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`motion.absorb`") && err.contains("\"1s\""),
            "{err}"
        );
        let ok = parse(&format!(
            "{MINIMAL}\n[motion]\nabsorb = \"5s\"\nsuppress_nuisance = false\n"
        ))
        .unwrap();
        assert_eq!(ok.motion.detector().absorb, Duration::from_secs(5));
        assert!(!ok.motion.detector().suppress_nuisance);
    }

    #[test]
    fn wildcard_in_topic_prefix_is_refused() {
        let err = parse(&MINIMAL.replace("[broker]", "[broker]\ntopic_prefix = \"a/+\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`broker.topic_prefix`"), "{err}");
    }

    #[test]
    fn sources_name_only_board_facts_and_real_zones() {
        let with = |sources: &str| {
            parse(&format!("{MINIMAL}[device.sources]\n{sources}\n"))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let err = with("online_status = { value = \"online\" }").unwrap_err();
        assert!(
            err.contains("`device.sources`") && err.contains("online_status"),
            "{err}"
        );
        let err = with("timezone = { value = \"Mars/Olympus\" }").unwrap_err();
        assert!(
            err.contains("`device.sources.timezone`") && err.contains("Mars/Olympus"),
            "{err}"
        );
        with("timezone = { value = \"America/New_York\" }").unwrap();
    }

    #[test]
    fn missing_section_is_named() {
        let err = parse("[agent]\n").unwrap_err().to_string();
        assert!(err.contains("broker"), "{err}");
    }
}
