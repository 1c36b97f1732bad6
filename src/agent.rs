//! Wires the agent together: facts → gate → outbox → MQTT session, and shuts it down cleanly.

use std::future::Future;
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, Transport};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::Config;
use crate::policy::{Gate, Policy, PolicyError, PseudonymKey, PseudonymKeyError};
use crate::record::{Record, Value};
use crate::uplink::backoff::Backoff;
use crate::uplink::outbox::{Outbox, OutboxError};
use crate::uplink::session::{self, Session};
use crate::uplink::tls::{self, TlsError};

/// How long a clean shutdown waits for the broker to acknowledge the offline status.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

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
    #[error("no status can be published: the policy does not permit `online_status` for purpose `device_status`, so the broker could not mark the device offline")]
    NoStatus,
}

/// The pieces built from config before anything connects; errors here are fatal and clear.
pub struct Prepared {
    pub gate: Gate,
    pub outbox: Outbox,
}

/// Loads the policy, the pseudonym key and the outbox, and reads the device facts.
pub fn prepare(config: &Config) -> Result<Prepared, AgentError> {
    let policy = Policy::load(&config.agent.policy_file)?;
    let key = PseudonymKey::load_or_create(&config.agent.state_dir.join("keys/pseudonym.key"))?;
    let serial = match config
        .device
        .read()
        .remove(&crate::policy::Field::SerialNumber)
    {
        Some(Value::Text(serial)) => Some(serial),
        _ => None,
    };
    let gate = Gate::new(policy, key, &config.broker.topic_prefix, serial);
    let (outbox, quarantined) = Outbox::open(
        &config.agent.state_dir.join("outbox"),
        config.outbox.max_bytes,
    )?;
    for q in &quarantined {
        warn!(file = %q.file.display(), "outbox entry quarantined: {}", q.reason);
    }
    Ok(Prepared { gate, outbox })
}

/// Runs the agent until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AgentError> {
    let Prepared { gate, outbox } = prepare(&config)?;
    let tls = tls::client_config(&config.broker)?;
    let will = session::last_will(&gate).ok_or(AgentError::NoStatus)?;

    let b = &config.broker;
    let client_id = format!("camagent-{}", gate.device_id(crate::policy::DEVICE_STATUS));
    let mut options = MqttOptions::new(client_id, b.host.clone(), b.port);
    options
        .set_keep_alive(b.keep_alive)
        .set_clean_session(false)
        .set_inflight(b.max_inflight + 2)
        .set_last_will(will)
        .set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls),
        ));
    let (client, eventloop) = AsyncClient::new(options, usize::from(b.max_inflight) + 4);

    let (net_tx, mut net_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(session::drive(
        eventloop,
        net_tx,
        Backoff::new(b.reconnect_min, b.reconnect_max),
    ));
    let (record_tx, mut record_rx) = mpsc::channel(64);
    let reporter = tokio::spawn(report_facts(
        config.device.clone(),
        config.agent.facts_interval,
        record_tx,
    ));

    let mut session = Session::new(gate, outbox, client, b.max_inflight);
    info!(
        broker = %format!("{}:{}", b.host, b.port),
        device_id = %session.gate().device_id(crate::policy::DEVICE_STATUS),
        policy = %session.gate().policy().name,
        "camagent started"
    );

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some(event) = net_rx.recv() => session.on_net(event),
            Some(record) = record_rx.recv() => session.accept(record),
            () = &mut shutdown => break,
        }
    }

    info!("shutting down");
    reporter.abort();
    session.go_offline();
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    while session.connected() && !session.status_settled() {
        tokio::select! {
            Some(event) = net_rx.recv() => session.on_net(event),
            () = &mut grace => break,
        }
    }
    session.disconnect().await;
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

/// Reports the device facts at start and then every `interval`.
async fn report_facts(
    sources: crate::device::FactSources,
    interval: Duration,
    records: mpsc::Sender<Record>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if records.send(Record::facts(sources.read())).await.is_err() {
            return;
        }
    }
}
