//! Wires the agent together: producers → gate → outbox → MQTT session, and shuts it down
//! cleanly.

use std::fs::File;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, Transport};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::command::ReplayGuard;
use crate::config::Config;
use crate::motion::EndReason;
use crate::open_event::OpenEvent;
use crate::policy::consent::LedgerFile;
use crate::policy::disclosure::DisclosureLog;
use crate::policy::{Field, Gate, Policy, PolicyError, PseudonymKeyError, Secrets};
use crate::record::Value;
use crate::report::Chain;
use crate::state_dir::StateDir;
use crate::status::CameraState;
use crate::uplink::backoff::Backoff;
use crate::uplink::driver;
use crate::uplink::outbox::{Outbox, OutboxError};
use crate::uplink::session::{Session, Stores};
use crate::uplink::tls::{self, TlsError};
use crate::uplink::upload::Uploads;

mod alerts;
mod facts;
mod fault;

use alerts::{end_alert, on_camera, CameraView};
use facts::{report_facts, telemetry_record};

/// How long a clean shutdown waits for the broker to acknowledge the offline status.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often consent changes from the command line and retention are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How long a stopping camera may take to finish its clip.
const CAMERA_GRACE: Duration = Duration::from_secs(15);

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
    let tls = tls::client_config(&config.broker)?;
    let stores = Stores {
        ledger: LedgerFile::new(state_dir.consent_ledger()),
        disclosures,
        replay: ReplayGuard::new(state_dir.replay_guard()),
        verify_key: config.commands.key_bytes(),
        uploads: Uploads::open(&state_dir.clips()),
        upload_rate: config.outbox.upload_kbps.map(|k| u64::from(k) * 1000),
        clips_max_bytes: config.outbox.clips_max_bytes,
        state_dir,
    };
    if !stores.uploads.is_empty() {
        info!(clips = stores.uploads.len(), "resuming clip uploads");
    }

    let b = &config.broker;
    let mut options = MqttOptions::new(
        format!("camagent-{}", gate.anchor_id()),
        b.host.clone(),
        b.port,
    );
    options
        .set_keep_alive(driver::ping_every(b.keep_alive))
        .set_clean_session(false)
        .set_inflight(b.max_inflight + 2)
        .set_max_packet_size(b.max_packet_bytes, b.max_packet_bytes)
        .set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    // The owner's choices decide the will too: an objected-to status registers none.
    // An unreadable ledger may hold an objection: register no will until it is read.
    let will = match stores.ledger.load() {
        Ok(ledger) => {
            gate.set_consent(ledger);
            driver::last_will(&gate, &stores.disclosures)
        }
        Err(e) => {
            error!("{}; no last will is registered", Chain(&e));
            None
        }
    };
    let without_will = options.clone();
    match &will {
        Some(will) => {
            options.set_last_will(will.clone());
        }
        None => warn!(
            "no status may be sent (policy or consent): the broker cannot mark this device offline"
        ),
    }
    let (will_tx, will_rx) = tokio::sync::watch::channel(will);
    let (client, eventloop) = AsyncClient::new(options, usize::from(b.max_inflight) + 8);

    let discard = Arc::new(AtomicBool::new(false));
    let (net_tx, mut net_rx) = mpsc::channel(driver::NET_BACKLOG);
    let driver = driver::spawn(driver::drive(
        eventloop,
        without_will,
        will_rx,
        net_tx,
        Backoff::new(b.reconnect_min, b.reconnect_max),
        discard.clone(),
        b.keep_alive,
    ))
    .map_err(AgentError::MqttThread)?;
    let (record_tx, mut record_rx) = mpsc::channel(64);
    let reporter = tokio::spawn(report_facts(
        config.device.clone(),
        config.agent.facts_interval,
        record_tx,
    ));

    let mut session = Session::new(
        gate,
        outbox,
        client,
        stores,
        b.max_inflight,
        discard,
        will_tx,
    );
    info!(
        broker = %format!("{}:{}", b.host, b.port),
        device_id = %session.gate().anchor_id(),
        policy = %session.gate().policy().name,
        "camagent started"
    );

    let notifier = crate::systemd::Notifier::from_env();
    let mut watchdog = tokio::time::interval(
        notifier
            .as_ref()
            .and_then(|n| n.watchdog_interval)
            .unwrap_or(Duration::from_secs(3600)),
    );
    if let Some(n) = &notifier {
        n.notify("READY=1\nSTATUS=running; connecting to the broker");
    }
    let hang = fault::hang_after();
    tokio::pin!(hang);

    // An event the last run never ended (a crash, a power cut) ends now, before any new one.
    let open_event = OpenEvent::new(config.agent.state().open_event());
    if let Some(event_id) = open_event.left_open() {
        warn!(%event_id, "an event was cut short when the agent last stopped; its end alert goes now");
        match end_alert(
            &event_id,
            crate::record::now_ms(),
            EndReason::CutShort,
            None,
        ) {
            Ok(record) => session.accept(record),
            Err(e) => error!("{e}"),
        }
        open_event.ended();
    }

    let (camera_tx, mut camera_rx) = mpsc::channel(16);
    let camera = match &config.capture {
        Some(capture) => Some(crate::capture::camera::spawn(
            capture.clone(),
            config.motion.clone(),
            config.agent.state().clips(),
            camera_tx,
        )?),
        None => {
            drop(camera_tx);
            None
        }
    };

    let mut tick = tokio::time::interval(TICK);
    let mut status_file = crate::status::StatusFile::new(config.agent.state().status());
    let mut camera_view = CameraView {
        state: match camera {
            Some(_) => CameraState::Starting,
            None => CameraState::None,
        },
        last_event: None,
    };
    let mut telemetry = tokio::time::interval(config.agent.telemetry_interval);
    telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(event) = net_rx.recv() => session.on_net(event),
            Some(record) = record_rx.recv() => session.accept(record),
            Some(event) = camera_rx.recv() => {
                camera_view.saw(&event);
                on_camera(&mut session, event, &config, &open_event, notifier.as_ref());
            }
            _ = tick.tick() => {
                session.tick();
                let status = crate::status::Status {
                    camera: camera_view.state.clone(),
                    last_event: camera_view.last_event.clone(),
                    ..session.status()
                };
                session.report_status(status.for_cloud());
                status_file.update(status);
            }
            // Pinged from this loop, so a hung loop stops the pings and systemd restarts us.
            _ = watchdog.tick() => {
                if let Some(n) = &notifier {
                    n.notify("WATCHDOG=1");
                }
            }
            () = &mut hang => fault::hang(),
            _ = telemetry.tick() => {
                match telemetry_record(&config.device) {
                    Ok(record) => session.accept(record),
                    Err(e) => error!("telemetry not reported: {e}"),
                }
                match session.usage() {
                    Ok(record) => session.accept(record),
                    Err(e) => error!("usage statistics not reported: {e}"),
                }
            }
            () = &mut shutdown => break,
        }
    }

    info!("shutting down");
    if let Some(n) = &notifier {
        n.notify("STOPPING=1");
    }
    // The camera ends its event and finishes its clip; what it reports is still accepted.
    if let Some(camera) = camera {
        camera.stop();
        let drain = async {
            while let Some(event) = camera_rx.recv().await {
                on_camera(&mut session, event, &config, &open_event, None);
            }
        };
        if tokio::time::timeout(CAMERA_GRACE, drain).await.is_err() {
            warn!("the camera did not stop in time");
        }
        let _ = tokio::task::spawn_blocking(move || camera.join()).await;
    }
    reporter.abort();
    session.go_offline();
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    while session.connected() && !session.settled() {
        tokio::select! {
            Some(event) = net_rx.recv() => session.on_net(event),
            () = &mut grace => break,
        }
    }
    session.save_progress();
    // The driver may be waiting for room in the net channel rather than taking requests.
    if tokio::time::timeout(SHUTDOWN_GRACE, session.disconnect())
        .await
        .is_err()
    {
        warn!("the clean disconnect did not complete in time");
    }
    status_file.write(crate::status::Status {
        connected: false,
        camera: CameraState::Stopped,
        last_event: camera_view.last_event,
        ..session.status()
    });
    let stats = session.stats();
    info!(
        delivered = stats.delivered,
        refused = stats.refused,
        "stopped"
    );
    drop(net_rx);
    if tokio::time::timeout(Duration::from_secs(1), driver)
        .await
        .is_err()
    {
        warn!("MQTT event loop did not stop in time");
    }
    Ok(())
}
