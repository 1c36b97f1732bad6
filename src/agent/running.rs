//! The running agent: the MQTT driver on its thread, the facts reporter and the camera feed
//! the session, one event at a time, until shutdown; then the camera finishes its clip, the
//! session says goodbye, and the last status is written.

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::alerts::{self, end_alert, on_camera, CameraView};
use super::facts::{report_facts, telemetry_record};
use super::{fault, AgentError, Mqtt};
use crate::capture::camera::{CameraEvent, CameraHandle};
use crate::config::Config;
use crate::motion::EndReason;
use crate::open_event::OpenEvent;
use crate::policy::{Flow, Gate};
use crate::record::Record;
use crate::status::{CameraState, Status, StatusFile};
use crate::systemd::Notifier;
use crate::uplink::backoff::Backoff;
use crate::uplink::driver::{self, Net};
use crate::uplink::mqtt::{self, Client};
use crate::uplink::outbox::Outbox;
use crate::uplink::session::{Session, Stores};

/// How long a clean shutdown waits for the broker to acknowledge the offline status.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often consent changes from the command line and retention are looked at.
const TICK: Duration = Duration::from_millis(250);
/// How long a stopping camera may take to finish its clip.
const CAMERA_GRACE: Duration = Duration::from_secs(15);

pub(super) struct Running {
    config: Config,
    session: Session<Client>,
    net: mpsc::Receiver<Net>,
    driver: oneshot::Receiver<()>,
    records: mpsc::Receiver<Record>,
    reporter: JoinHandle<()>,
    camera: Option<CameraHandle>,
    camera_events: mpsc::Receiver<CameraEvent>,
    camera_view: CameraView,
    open_event: OpenEvent,
    notifier: Option<Notifier>,
    status_file: StatusFile,
}

impl Running {
    /// Starts the MQTT driver, the facts reporter and the camera around a new session.
    pub(super) fn start(
        config: Config,
        gate: Gate,
        outbox: Outbox,
        stores: Stores,
        mqtt: Mqtt,
    ) -> Result<Self, AgentError> {
        let b = &config.broker;
        let (client, connection) = mqtt::client(
            b,
            mqtt.client_id,
            mqtt.tls,
            mqtt.will.as_ref(),
            usize::from(b.max_inflight) + 8,
        );
        let (will_tx, will_rx) = tokio::sync::watch::channel(mqtt.will);
        let discard = Arc::new(AtomicBool::new(false));
        let (net_tx, net) = mpsc::channel(driver::NET_BACKLOG);
        let driver = driver::spawn(driver::drive(
            connection,
            will_rx,
            net_tx,
            Backoff::new(b.reconnect_min, b.reconnect_max),
            discard.clone(),
            b.keep_alive,
        ))
        .map_err(AgentError::MqttThread)?;
        let (record_tx, records) = mpsc::channel(64);
        let reporter = tokio::spawn(report_facts(
            config.device.clone(),
            config.agent.facts_interval,
            record_tx,
        ));
        let session = Session::new(
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
        let state = config.agent.state();
        let mut running = Self {
            open_event: OpenEvent::new(state.open_event()),
            status_file: StatusFile::new(state.status()),
            notifier: Notifier::from_env(),
            camera: None,
            camera_events: mpsc::channel(1).1,
            camera_view: CameraView::default(),
            config,
            session,
            net,
            driver,
            records,
            reporter,
        };
        running.end_event_cut_short();
        running.start_camera()?;
        Ok(running)
    }

    /// An event the last run never ended (a crash, a power cut) ends now, before any new one.
    fn end_event_cut_short(&mut self) {
        let Some(event_id) = self.open_event.left_open() else {
            return;
        };
        // A kill after the end was queued and before the note went: the end is on its way.
        if self
            .session
            .holds_queued(Flow::Alarm, |record| alerts::ends(record, &event_id))
        {
            info!(%event_id, "the event in progress when the agent last stopped had ended; its end alert is queued");
        } else {
            warn!(%event_id, "an event was cut short when the agent last stopped; its end alert goes now");
            let now = crate::record::now_ms();
            self.session
                .accept_made(end_alert(&event_id, now, EndReason::CutShort, None));
        }
        self.open_event.ended();
    }

    fn start_camera(&mut self) -> Result<(), AgentError> {
        let Some(capture) = &self.config.capture else {
            return Ok(());
        };
        let (camera_tx, camera_events) = mpsc::channel(16);
        self.camera = Some(crate::capture::camera::spawn(
            capture.clone(),
            self.config.motion.clone(),
            self.config.agent.state().clips(),
            camera_tx,
        )?);
        self.camera_events = camera_events;
        self.camera_view.state = CameraState::Starting;
        Ok(())
    }

    /// Feeds the session until `shutdown` completes.
    pub(super) async fn serve(&mut self, shutdown: impl Future<Output = ()>) {
        let mut watchdog = tokio::time::interval(
            self.notifier
                .as_ref()
                .and_then(|n| n.watchdog_interval)
                .unwrap_or(Duration::from_secs(3600)),
        );
        if let Some(n) = &self.notifier {
            n.notify("READY=1\nSTATUS=running; connecting to the broker");
        }
        let hang = fault::hang_after();
        tokio::pin!(hang);
        let mut tick = tokio::time::interval(TICK);
        let mut telemetry = tokio::time::interval(self.config.agent.telemetry_interval);
        telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                Some(event) = self.net.recv() => self.session.on_net(event),
                Some(record) = self.records.recv() => {
                    self.session.accept(record);
                }
                Some(event) = self.camera_events.recv() => self.on_camera(event, true),
                _ = tick.tick() => self.tick(),
                // Pinged from this loop, so a hung loop stops the pings and systemd restarts us.
                _ = watchdog.tick() => {
                    if let Some(n) = &self.notifier {
                        n.notify("WATCHDOG=1");
                    }
                }
                () = &mut hang => fault::hang(),
                _ = telemetry.tick() => self.report_health(),
                () = &mut shutdown => break,
            }
        }
    }

    fn on_camera(&mut self, event: CameraEvent, notify: bool) {
        self.camera_view.saw(&event);
        let notifier = self.notifier.as_ref().filter(|_| notify);
        on_camera(
            &mut self.session,
            event,
            &self.config,
            &self.open_event,
            notifier,
        );
    }

    fn tick(&mut self) {
        self.session.tick();
        let status = Status {
            camera: self.camera_view.state.clone(),
            last_event: self.camera_view.last_event.clone(),
            ..self.session.status()
        };
        self.session.report_status(status.for_cloud());
        self.status_file.update(status);
    }

    fn report_health(&mut self) {
        self.session
            .accept_made(telemetry_record(&self.config.device));
        let usage = self.session.usage();
        self.session.accept_made(usage);
    }

    /// Stops cleanly: the camera ends its event and finishes its clip (what it reports is
    /// still accepted), the offline status goes out and is acknowledged if the broker allows,
    /// upload progress is saved, and the last status is written.
    pub(super) async fn stop(mut self) {
        info!("shutting down");
        if let Some(n) = &self.notifier {
            n.notify("STOPPING=1");
        }
        if let Some(camera) = self.camera.take() {
            camera.stop();
            let drain = async {
                while let Some(event) = self.camera_events.recv().await {
                    self.on_camera(event, false);
                }
            };
            if tokio::time::timeout(CAMERA_GRACE, drain).await.is_err() {
                warn!("the camera did not stop in time");
            }
            let _ = tokio::task::spawn_blocking(move || camera.join()).await;
        }
        self.reporter.abort();
        self.session.go_offline();
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        while self.session.connected() && !self.session.settled() {
            tokio::select! {
                Some(event) = self.net.recv() => self.session.on_net(event),
                () = &mut grace => break,
            }
        }
        self.session.save_progress();
        // The driver may be waiting for room in the net channel rather than taking requests.
        if tokio::time::timeout(SHUTDOWN_GRACE, self.session.disconnect())
            .await
            .is_err()
        {
            warn!("the clean disconnect did not complete in time");
        }
        self.status_file.write(Status {
            connected: false,
            camera: CameraState::Stopped,
            last_event: self.camera_view.last_event.clone(),
            ..self.session.status()
        });
        let stats = self.session.stats();
        info!(
            delivered = stats.delivered,
            refused = stats.refused,
            "stopped"
        );
        drop(self.net);
        if tokio::time::timeout(Duration::from_secs(1), self.driver)
            .await
            .is_err()
        {
            warn!("MQTT event loop did not stop in time");
        }
    }
}
