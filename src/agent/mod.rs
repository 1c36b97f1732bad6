//! Wires the agent together: producers → gate → outbox → MQTT session, and shuts it down
//! cleanly.

use std::fs::File;
use std::future::Future;
use std::sync::Arc;

use tracing::{error, info, warn};

use crate::command::ReplayGuard;
use crate::config::capture::Source;
use crate::config::Config;
use crate::policy::consent::LedgerFile;
use crate::policy::disclosure::DisclosureLog;
use crate::policy::{Field, Gate, Policy, PolicyError, PseudonymKeyError, Secrets};
use crate::record::Value;
use crate::report::Chain;
use crate::state_dir::StateDir;
use crate::uplink::driver;
use crate::uplink::mqtt::Will;
use crate::uplink::outbox::{Outbox, OutboxError};
use crate::uplink::session::Stores;
use crate::uplink::tls::{self, TlsError};
use crate::uplink::upload::Uploads;

mod alerts;
mod facts;
mod fault;
mod running;

use running::Running;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Key(#[from] PseudonymKeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("state directory {path}")]
    State {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Capture(#[from] crate::capture::CaptureError),
    #[error("cannot start the MQTT thread")]
    MqttThread(#[source] std::io::Error),
    #[error("another camagent is running with state directory {0}")]
    AlreadyRunning(std::path::PathBuf),
    #[error("outbox.max_bytes ({outbox} bytes) and outbox.clips_max_bytes ({clips} bytes) add up to more than the {total}-byte file system that holds agent.state_dir ({}); lower them so both fit", path.display())]
    QuotasExceedDisk {
        outbox: u64,
        clips: u64,
        total: u64,
        path: std::path::PathBuf,
    },
}

/// Refuses quotas the state directory's file system cannot hold: the agent would promise to
/// keep what the disk cannot.
fn check_quotas_fit(config: &Config) -> Result<(), AgentError> {
    let path = &config.agent.state_dir;
    let space = crate::os::space(path).map_err(|source| AgentError::State {
        path: path.clone(),
        source,
    })?;
    let (outbox, clips) = (config.outbox.max_bytes, config.outbox.clips_max_bytes);
    if space.is_bounded() && outbox.saturating_add(clips) > space.total {
        return Err(AgentError::QuotasExceedDisk {
            outbox,
            clips,
            total: space.total,
            path: path.clone(),
        });
    }
    Ok(())
}

/// Holds the state directory for this process; `camagent erase` refuses while it is held.
pub fn lock_state(state: &StateDir) -> Result<File, AgentError> {
    let state_dir = state.root();
    let state_error = |source| AgentError::State {
        path: state_dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(state_dir).map_err(|e| {
        if state_dir.exists() && !state_dir.is_dir() {
            state_error(std::io::Error::other(
                "it is a file, not a directory: move it away or set agent.state_dir elsewhere",
            ))
        } else {
            state_error(e)
        }
    })?;
    let file = File::create(state.lock()).map_err(state_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(AgentError::AlreadyRunning(state_dir.to_owned()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(state_error(e)),
    }
}

/// The gate as the daemon builds it: policy, pseudonym key, consent, the board's serial, and
/// the secret values it must stop in any field: never-leave facts, credentials, the keys.
pub fn build_gate(config: &Config) -> Result<Gate, AgentError> {
    let policy = Policy::load(&config.agent.policy_file)?;
    let key_file = config.agent.state().pseudonym_key();
    let key = crate::policy::key_file::load_or_create(&key_file)?;
    let facts = config.device.read();
    let serial = match facts.get(&Field::SerialNumber) {
        Some(Value::Text(serial)) => Some(serial.clone()),
        _ => None,
    };
    let mut secrets = Secrets::from_facts(&facts, &policy.never_leave);
    if let Some(Source::Rtsp { url, detect, .. }) = config.capture.as_ref().map(|c| &c.source) {
        for password in [Some(url), detect.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|u| u.password())
        {
            secrets.add(password);
        }
    }
    for file in [&config.broker.key_file, &key_file] {
        if let Ok(bytes) = std::fs::read(file) {
            secrets.add_key_material(&bytes);
        }
    }
    let mut gate = Gate::new(policy, key, &config.broker.topic_prefix, serial);
    gate.set_secrets(secrets);
    Ok(gate)
}

/// Runs the agent until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let state_dir = config.agent.state();
    let _lock = lock_state(&state_dir)?;
    check_quotas_fit(&config)?;
    let mut gate = build_gate(&config)?;
    let (outbox, stores) = open_stores(&config, state_dir)?;
    let tls = tls::client_config(&config.broker)?;
    let mqtt = Mqtt::new(tls, &mut gate, &stores);
    let mut agent = Running::start(config, gate, outbox, stores, mqtt)?;
    agent.serve(shutdown).await;
    agent.stop().await;
    Ok(())
}

/// Opens the outbox and the other stores of the state directory, reporting what it found
/// damaged or left behind.
fn open_stores(config: &Config, state_dir: StateDir) -> Result<(Outbox, Stores), AgentError> {
    let (mut outbox, quarantined) = Outbox::open(&state_dir.outbox(), config.outbox.max_bytes)?;
    for q in &quarantined {
        warn!(file = %q.file.display(), "outbox entry quarantined: {}", q.reason);
    }
    let disclosures = DisclosureLog::new(
        state_dir.disclosure_log(),
        config.agent.disclosure_log_max_bytes,
    );
    if let Some(recovered) = outbox.recover_sequence(disclosures.highest_seq())? {
        warn!("{recovered}");
    }
    let mut uploads = Uploads::open(&state_dir.clips());
    uploads.set_cloud_confirms(config.outbox.cloud_confirms);
    let stores = Stores {
        ledger: LedgerFile::new(state_dir.consent_ledger()),
        disclosures,
        replay: ReplayGuard::new(state_dir.replay_guard()),
        verify_key: config.commands.key_bytes(),
        uploads,
        upload_rate: config.outbox.upload_kbps.map(|k| u64::from(k) * 1000),
        clips_max_bytes: config.outbox.clips_max_bytes,
        state_dir,
    };
    if !stores.uploads.is_empty() {
        info!(clips = stores.uploads.len(), "resuming clip uploads");
    }
    Ok((outbox, stores))
}

/// What the MQTT client is made from: its id, its TLS identity and the last will the owner's
/// choices allow.
struct Mqtt {
    client_id: String,
    tls: Arc<rustls::ClientConfig>,
    will: Option<Will>,
}

impl Mqtt {
    /// Takes the consent ledger into `gate`: it decides the will too (an objected-to status
    /// registers none, and so does a ledger that cannot be read, as it may hold an objection).
    fn new(tls: Arc<rustls::ClientConfig>, gate: &mut Gate, stores: &Stores) -> Self {
        let will = match stores.ledger.load() {
            Ok(ledger) => {
                gate.set_consent(ledger);
                driver::last_will(gate, &stores.disclosures)
            }
            Err(e) => {
                error!("{}; no last will is registered", Chain(&e));
                None
            }
        };
        if will.is_none() {
            warn!(
                "no status may be sent (policy or consent): the broker cannot mark this device offline"
            );
        }
        Self {
            client_id: format!("camagent-{}", gate.anchor_id()),
            tls,
            will,
        }
    }
}
