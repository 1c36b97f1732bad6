//! The MQTT session: moves records from the outbox to the broker, in order, and deletes each
//! only once the broker has acknowledged it.
//!
//! rumqttc's event loop runs in its own task ([`drive`]) and is never cancelled mid-poll. This
//! task owns the outbox and is the only one that publishes. The two meet in one place that
//! matters for ordering: when the connection drops, the event loop waits until this side has
//! stopped publishing, then moves whatever is still queued in the client into its replay list.
//! On reconnect, a resumed broker session replays that list in order; a lost session (broker
//! restarted without persistence) discards it and this side re-sends from the oldest
//! unacknowledged outbox entry. Either way the broker sees records in outbox order.

//!
//! Consent changes reach the gate before the next publish: the ledger file is checked on every
//! pass, and records of a purpose that may no longer send are purged from the outbox. If that
//! happens while offline, the event loop is told to discard its replay list on reconnect, so a
//! withdrawn record handed over before the outage is not sent either.
//!
//! Clips go in chunks ([`super::upload`]) when no record is waiting: an alert never queues
//! behind a clip, and at most [`CHUNKS_IN_FLIGHT`] chunks are ahead of it at the broker.
//! Chunks are re-sent from the upload's persisted progress after a lost session or a restart.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::outbox::Outbox;
use super::retained::RetainedTopics;
use super::upload::{Manifest, Uploads};
use crate::command::{self, Action, ReplayGuard};
use crate::policy::consent::{self, LedgerFile, Via};
use crate::policy::disclosure::{Disclosure, DisclosureLog};
use crate::policy::{Admitted, Field, Flow, Gate, PseudonymKey};
use crate::record::{now_ms, Record};

/// What the event loop task reports to the session.
#[derive(Debug)]
pub enum Net {
    Up {
        session_present: bool,
    },
    /// A message arrived on a subscribed topic.
    Incoming {
        topic: String,
        payload: Vec<u8>,
    },
    /// A publish left with this packet id (first send or replay).
    Sent(u16),
    Acked(u16),
    /// The connection failed; the loop waits for `resume` before it reconnects.
    Down {
        error: String,
        resume: oneshot::Sender<()>,
    },
}

/// How often to ping so that a broker that died or froze (a stopped process, a half-open TCP
/// connection) is noticed within `keep_alive`: rumqttc fails the connection when a ping is
/// still unanswered at the next, so pinging every half notices within the whole.
pub fn ping_every(keep_alive: Duration) -> Duration {
    Duration::from_secs((keep_alive.as_secs() / 2).max(1))
}

/// Runs rumqttc's event loop: forwards what the session needs, reconnects with backoff. A
/// poll that does not return within `keep_alive` (a write stuck on a broker that stopped
/// reading; a healthy connection returns at least at every ping) counts as a lost connection.
///
/// `discard` set by the session means records handed over before the outage must not be
/// replayed (consent was withdrawn or the owner's data erased meanwhile): the replay list is
/// dropped at the next connect, which the session then treats as a lost session.
pub async fn drive(
    mut eventloop: EventLoop,
    without_will: MqttOptions,
    will: watch::Receiver<Option<LastWill>>,
    net: mpsc::UnboundedSender<Net>,
    mut backoff: Backoff,
    discard: Arc<AtomicBool>,
    keep_alive: Duration,
) {
    let host = eventloop.mqtt_options.broker_address().0;
    loop {
        let polled = match tokio::time::timeout(keep_alive, eventloop.poll()).await {
            Ok(polled) => polled,
            Err(_) => Err(ConnectionError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the broker stopped answering for {} (broker.keep_alive)",
                    humantime::format_duration(keep_alive)
                ),
            ))),
        };
        let report = match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                let discarded = discard.swap(false, Ordering::SeqCst);
                if discarded {
                    eventloop.pending.clear();
                }
                Net::Up {
                    session_present: ack.session_present && !discarded,
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => Net::Incoming {
                topic: p.topic,
                payload: p.payload.to_vec(),
            },
            Ok(Event::Incoming(Packet::PubAck(ack))) => Net::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => Net::Sent(pkid),
            Ok(_) => continue,
            Err(ConnectionError::RequestsDone) => return,
            Err(e) => {
                let error = describe(&e, &host);
                let (resume, resumed) = oneshot::channel();
                if net.send(Net::Down { error, resume }).is_err() {
                    return;
                }
                // Once the session has stopped publishing, nothing more can enter the
                // client's queue: move what is there into the replay list.
                if resumed.await.is_err() {
                    return;
                }
                eventloop.clean();
                // The will as consent stands now: rumqttc can set one but not remove one, so
                // start from options without it.
                let mut options = without_will.clone();
                if let Some(will) = will.borrow().clone() {
                    options.set_last_will(will);
                }
                eventloop.mqtt_options = options;
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        if net.send(report).is_err() {
            return;
        }
    }
}

/// A connection error in words, with the likely fix where one is known.
pub fn describe(e: &ConnectionError, host: &str) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("unknownissuer") {
        Some("the broker's certificate is not signed by a CA in broker.ca_file".to_owned())
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        Some(format!(
            "the broker's certificate does not name {host:?}; set broker.host to a name in that certificate"
        ))
    } else if lower.contains("expired") || lower.contains("notvalidyet") {
        Some("a certificate is outside its validity period; check the device clock".to_owned())
    } else if ["certificaterequired", "badcertificate", "unknownca"]
        .iter()
        .any(|alert| lower.contains(alert))
    {
        Some(
            "the broker refused the device certificate (broker.cert_file, broker.key_file)"
                .to_owned(),
        )
    } else if lower.contains("connection refused") {
        Some("nothing accepts connections at broker.host:broker.port".to_owned())
    } else {
        None
    };
    match hint {
        Some(hint) => format!("{text} ({hint})"),
        None => text,
    }
}

/// The retained offline status the broker publishes if the agent vanishes. Registering it
/// discloses it, so it is logged as sent; without that line there is no will.
pub fn last_will(gate: &Gate, disclosures: &DisclosureLog) -> Option<LastWill> {
    will_of(&gate.admit(&Record::status(false), None).ok()?, disclosures)
}

/// The last will that publishes `offline`, once its disclosure line is written.
fn will_of(offline: &Admitted, disclosures: &DisclosureLog) -> Option<LastWill> {
    if let Err(e) = disclosures.append(&Disclosure::of(offline)) {
        error!("disclosure log: {e}; no last will is registered");
        return None;
    }
    Some(LastWill::new(
        offline.topic(),
        offline.payload(),
        QoS::AtLeastOnce,
        offline.retain(),
    ))
}

/// How often the file system's free space is checked.
const SPACE_EVERY: Duration = Duration::from_secs(1);
/// Free space kept beyond the outbox's unused quota, for the small files beside it (status,
/// progress, ledger, disclosure log lines).
const SPACE_MARGIN: u64 = 256 * 1024;

/// Clip chunks handed to the client and not yet acknowledged, at most.
pub const CHUNKS_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Record(u64),
    Status,
    Chunk {
        clip: String,
        index: u32,
    },
    /// An empty retained publish deleting what `topic` held at the broker.
    Clear(String),
}

#[derive(Debug)]
struct InFlight {
    what: Sent,
    /// Known once the event loop reports the publish leaving.
    pkid: Option<u16>,
}

/// Counters for status reporting and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub delivered: u64,
    pub clips_delivered: u64,
    /// Clips deleted unsent to stay within the clip quota.
    pub clips_evicted: u64,
    pub refused: u64,
    pub reconnects: u64,
}

/// Where the session keeps what it needs beside the outbox.
pub struct Stores {
    pub state_dir: PathBuf,
    pub ledger: LedgerFile,
    pub disclosures: DisclosureLog,
    pub replay: ReplayGuard,
    /// The cloud's Ed25519 key; without it every command is refused.
    pub verify_key: Option<Vec<u8>>,
    /// Clips on their way up, with their progress.
    pub uploads: Uploads,
    /// Clip upload bandwidth cap in bytes per second, if any.
    pub upload_rate: Option<u64>,
    /// Disk the clips waiting to go up may use.
    pub clips_max_bytes: u64,
}

pub struct Session {
    gate: Gate,
    outbox: Outbox,
    client: AsyncClient,
    stores: Stores,
    connected: bool,
    /// When the file system's free space was last checked.
    space_checked: Option<std::time::Instant>,
    /// Set at shutdown: nothing new is handed to the client; what is in flight may finish.
    stopping: bool,
    in_flight: VecDeque<InFlight>,
    /// The newest outbox entry handed to the client.
    cursor: Option<u64>,
    max_in_flight: usize,
    stats: Stats,
    discard: Arc<AtomicBool>,
    ledger_stamp: Option<std::time::SystemTime>,
    command_topic: String,
    /// Bytes the upload cap still allows now, and when it was last refilled.
    upload_budget: (f64, std::time::Instant),
    /// The agent's state for the retained status, and when it was last published.
    agent_status: Option<serde_json::Value>,
    agent_status_sent: Option<(serde_json::Value, std::time::Instant)>,
    /// Retained topics used, and those waiting to be cleared.
    retained: RetainedTopics,
    /// The last will the driver registers at the next connect.
    will: watch::Sender<Option<LastWill>>,
    /// The disclosure log could not be written at the last try (logged once).
    disclosures_blocked: bool,
}

/// The retained status is republished when the agent's state changes, at most this often.
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl Session {
    pub fn new(
        gate: Gate,
        outbox: Outbox,
        client: AsyncClient,
        stores: Stores,
        max_in_flight: u16,
        discard: Arc<AtomicBool>,
        will: watch::Sender<Option<LastWill>>,
    ) -> Self {
        let command_topic = command_topic(&gate);
        let (retained, damaged) = RetainedTopics::open(&stores.state_dir);
        if let Some(e) = damaged {
            error!("{e}; retained messages it named can no longer be cleared by the device");
        }
        let mut session = Self {
            gate,
            outbox,
            client,
            stores,
            connected: false,
            space_checked: None,
            stopping: false,
            in_flight: VecDeque::new(),
            cursor: None,
            max_in_flight: usize::from(max_in_flight),
            stats: Stats::default(),
            discard,
            ledger_stamp: None,
            command_topic,
            upload_budget: (0.0, std::time::Instant::now()),
            agent_status: None,
            agent_status_sent: None,
            retained,
            will,
            disclosures_blocked: false,
        };
        session.refresh_consent();
        session
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The uplink's part of the status; the agent adds the camera's.
    pub fn status(&self) -> crate::status::Status {
        crate::status::Status {
            connected: self.connected,
            outbox_records: self.outbox.len(),
            outbox_bytes: self.outbox.bytes(),
            uploads: self
                .stores
                .uploads
                .iter()
                .map(|p| crate::status::UploadStatus {
                    clip_id: p.manifest.clip_id.clone(),
                    bytes: p.manifest.bytes,
                    chunks: p.manifest.chunks,
                    acknowledged: p.acked.len() as u32,
                })
                .collect(),
            delivered: self.stats.delivered,
            clips_delivered: self.stats.clips_delivered,
            clips_evicted: self.stats.clips_evicted,
            refused: self.stats.refused,
            quarantined: self.outbox.quarantined() + self.stores.uploads.damaged(),
            reconnects: self.stats.reconnects,
            ..Default::default()
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Counters of the agent's own activity, for the usage-statistics flow.
    pub fn usage(&self) -> Record {
        Record::json(
            Flow::UsageStatistics,
            Field::UsageStatistics,
            json!({
                "records_delivered": self.stats.delivered,
                "records_refused": self.stats.refused,
                "reconnects": self.stats.reconnects,
                "outbox_depth": self.outbox.len(),
            }),
        )
    }

    /// Accepts a record: checks it against the policy and consent, then stores it durably.
    /// A record the gate refuses is never stored; one that does not fit is refused loudly.
    pub fn accept(&mut self, record: Record) {
        self.refresh_consent();
        self.enqueue(record);
        self.pump();
    }

    fn enqueue(&mut self, record: Record) {
        match self.gate.admit(&record, None) {
            Err(refusal) => {
                self.stats.refused += 1;
                debug!(flow = %record.flow, "record not sent: {refusal}");
                return;
            }
            Ok(admitted) if !admitted.withheld().is_empty() => warn!(
                flow = %record.flow,
                withheld = ?admitted.withheld(),
                "fields kept back: their values hold a secret (a never_leave value, a credential or key material)"
            ),
            Ok(_) => {}
        }
        loop {
            match self.outbox.append(&record) {
                Ok(seq) => {
                    debug!(seq, depth = self.outbox.len(), "record queued");
                    return;
                }
                // Clips give way to records: the oldest goes, and the record is tried again.
                Err(e) if e.is_disk_full() && self.evict_clips(1, "the disk is full") => {}
                Err(e) => {
                    error!("record not accepted: {e}");
                    return;
                }
            }
        }
    }

    /// Evicts the oldest clips until `bytes` are freed; `false` when there was none.
    fn evict_clips(&mut self, bytes: u64, why: &str) -> bool {
        let keep = self.stores.uploads.bytes().saturating_sub(bytes);
        let evicted = self.stores.uploads.evict_to(keep);
        for id in &evicted {
            self.stats.clips_evicted += 1;
            warn!(clip = %id, "clip evicted unsent: {why} (oldest first)");
        }
        !evicted.is_empty()
    }

    /// Keeps the room alerts may still need free on the disk (the outbox's unused quota and a
    /// margin for the small files beside it), evicting clips when it runs short. Checked at
    /// most every [`SPACE_EVERY`].
    fn keep_space_free(&mut self) {
        if self
            .space_checked
            .is_some_and(|at| at.elapsed() < SPACE_EVERY)
        {
            return;
        }
        self.space_checked = Some(std::time::Instant::now());
        let Ok(space) = crate::disk::space(self.stores.uploads.dir()) else {
            return;
        };
        let reserve = self.outbox.room() + SPACE_MARGIN;
        if space.is_bounded() && space.available < reserve {
            self.evict_clips(reserve - space.available, "the disk is nearly full");
        }
    }

    /// Periodic upkeep: consent changes from `camagent consent`, retention, the send window.
    pub fn tick(&mut self) {
        self.refresh_consent();
        self.expire();
        self.keep_space_free();
        self.pump();
    }

    pub fn on_net(&mut self, event: Net) {
        match event {
            Net::Up { session_present } => {
                self.connected = true;
                self.stats.reconnects += 1;
                if !session_present {
                    // The broker forgot the session, or the replay list was discarded:
                    // everything not acknowledged goes again, from the oldest.
                    self.in_flight.clear();
                    self.cursor = None;
                }
                info!(
                    session_present,
                    queued = self.outbox.len(),
                    "connected to broker"
                );
                if let Err(e) = self
                    .client
                    .try_subscribe(&self.command_topic, QoS::AtLeastOnce)
                {
                    warn!("cannot subscribe to commands: {e}");
                }
                self.publish_status(true);
                self.tick();
            }
            Net::Incoming { topic, payload } => {
                if topic == self.command_topic {
                    self.on_command(&payload);
                } else {
                    debug!(%topic, "message on an unexpected topic ignored");
                }
            }
            Net::Sent(pkid) => {
                if !self.in_flight.iter().any(|f| f.pkid == Some(pkid)) {
                    if let Some(f) = self.in_flight.iter_mut().find(|f| f.pkid.is_none()) {
                        f.pkid = Some(pkid);
                    }
                }
            }
            Net::Acked(pkid) => {
                if let Some(i) = self.in_flight.iter().position(|f| f.pkid == Some(pkid)) {
                    match self.in_flight.remove(i).map(|f| f.what) {
                        Some(Sent::Record(seq)) => {
                            self.stats.delivered += 1;
                            if let Err(e) = self.outbox.remove(seq) {
                                error!("delivered record {seq} could not be deleted: {e}");
                            }
                        }
                        Some(Sent::Clear(topic)) => {
                            info!(%topic, "retained message cleared at the broker");
                            if let Err(e) = self.retained.cleared(&topic) {
                                error!("{e}");
                            }
                        }
                        Some(Sent::Chunk { clip, index }) => {
                            match self.stores.uploads.ack(&clip, index) {
                                Ok(Some(done)) => {
                                    self.stats.clips_delivered += 1;
                                    info!(clip = %done.clip_id, bytes = done.bytes, chunks = done.chunks, "clip delivered");
                                }
                                Ok(None) => {}
                                Err(e) => error!("{e}"),
                            }
                        }
                        _ => {}
                    }
                }
                self.pump();
            }
            Net::Down { error, resume } => {
                if self.connected {
                    warn!(
                        queued = self.outbox.len(),
                        "broker connection lost: {error}"
                    );
                } else {
                    error!("cannot connect to broker: {error}");
                }
                self.connected = false;
                let _ = resume.send(());
            }
        }
    }

    /// Whether everything handed to the client has been acknowledged (at shutdown: the
    /// offline status, and the last chunks, which would otherwise go again at the next start).
    pub fn settled(&self) -> bool {
        self.in_flight.is_empty()
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Marks the device offline on purpose (a clean disconnect suppresses the last will) and
    /// stops handing out anything new.
    pub fn go_offline(&mut self) {
        self.stopping = true;
        if self.connected {
            self.publish_status(false);
        }
    }

    /// Persists every upload's progress, once the last acknowledgements are in.
    pub fn save_progress(&self) {
        self.stores.uploads.save_all();
    }

    /// Starts uploading a clip whose record was just accepted — if its purpose lets the clip
    /// itself leave. Otherwise the clip stays on the device.
    pub fn upload(&mut self, manifest: Manifest) {
        if let Err(refusal) = self.gate.admit_chunk(&manifest, 0, &[]) {
            // Nothing may carry it off the device: do not fill the flash with it.
            info!(clip = %manifest.clip_id, "clip deleted, it may not leave: {refusal}");
            let _ = std::fs::remove_file(self.stores.uploads.path_of(&manifest));
            return;
        }
        if let Err(e) = self.stores.uploads.add(manifest) {
            error!("clip not queued for upload: {e}");
            return;
        }
        let over = self
            .stores
            .uploads
            .bytes()
            .saturating_sub(self.stores.clips_max_bytes);
        self.evict_clips(over, "the clip quota (outbox.clips_max_bytes) is full");
        self.pump();
    }

    pub async fn disconnect(&self) {
        if let Err(e) = self.client.disconnect().await {
            debug!("disconnect: {e}");
        }
    }

    /// Takes in the consent ledger if it changed, purges what may no longer leave, and queues
    /// receipts for changes not yet acknowledged to the cloud.
    fn refresh_consent(&mut self) {
        let stamp = self.stores.ledger.stamp();
        if stamp == self.ledger_stamp {
            return;
        }
        self.ledger_stamp = stamp;
        let ledger = match self.stores.ledger.load() {
            Ok(ledger) => ledger,
            Err(e) => {
                error!("{e}; keeping the consent state already loaded");
                return;
            }
        };
        self.gate.set_consent(ledger.clone());
        self.purge_refused();
        self.apply_stops();
        let fresh: Vec<_> = ledger
            .events
            .iter()
            .filter(|e| !e.receipted)
            .cloned()
            .collect();
        for event in &fresh {
            info!(purpose = %event.purpose, choice = ?event.choice, via = ?event.via, "consent changed");
            let receipt = consent::receipt(self.gate.policy(), event);
            self.enqueue(Record::json(
                Flow::ConsentReceipt,
                Field::ConsentRecord,
                receipt,
            ));
        }
        if !fresh.is_empty() {
            let ids: Vec<String> = fresh.iter().map(|e| e.receipt_id.clone()).collect();
            let marked = self.stores.ledger.update(|l| {
                l.events
                    .iter_mut()
                    .filter(|e| ids.contains(&e.receipt_id))
                    .for_each(|e| e.receipted = true);
                Ok(())
            });
            match marked {
                Ok(()) => self.ledger_stamp = self.stores.ledger.stamp(),
                Err(e) => error!("receipts queued but not marked in the ledger: {e}"),
            }
        }
    }

    /// After a consent change or an erase: marks for clearing the retained topics of purposes
    /// that may no longer run, and re-registers the last will. A will already registered
    /// stays with the broker until the connection ends, so the session reconnects at once.
    fn apply_stops(&mut self) {
        let gate = &self.gate;
        match self
            .retained
            .clear_where(|purpose| !gate.purpose_runs(purpose))
        {
            Ok(0) => {}
            Ok(topics) => info!(
                topics,
                "clearing the retained messages of a purpose that may no longer run"
            ),
            Err(e) => error!("{e}"),
        }
        let topic = |w: &Option<LastWill>| w.as_ref().map(|w| w.topic.clone());
        let offline = self.gate.admit(&Record::status(false), None).ok();
        if offline.as_ref().map(|o| o.topic().to_owned()) == topic(&self.will.borrow()) {
            return;
        }
        let will = offline.as_ref().and_then(|offline| {
            if let Err(e) = self.retained.used(offline.topic(), offline.purpose()) {
                error!("{e}");
            }
            will_of(offline, &self.stores.disclosures)
        });
        self.will.send_replace(will);
        if self.connected {
            info!("the last will changed: reconnecting so the broker registers the new one");
            if let Err(e) = self.client.try_disconnect() {
                warn!("cannot reconnect now; the new last will applies at the next connect: {e}");
            }
        }
    }

    /// Deletes queued records whose flow may no longer send (consent withdrawn, objection).
    fn purge_refused(&mut self) {
        let gate = &self.gate;
        let gone = purge(&mut self.outbox, |m| gate.check_flow(m.flow).is_err());
        if !gone.is_empty() {
            info!(
                count = gone.len(),
                "queued records purged: their purpose may no longer send"
            );
            self.forget_in_flight(&gone);
        }
    }

    /// Deletes queued records older than their purpose's retention.
    fn expire(&mut self) {
        let now = now_ms();
        let policy = self.gate.policy();
        let gone = purge(&mut self.outbox, |m| {
            policy
                .purpose_for_flow(m.flow)
                .and_then(|p| p.retention)
                .is_some_and(|r| m.created_ms.saturating_add(r.as_millis() as u64) < now)
        });
        if !gone.is_empty() {
            warn!(
                count = gone.len(),
                "queued records expired unsent (purpose retention)"
            );
            self.forget_in_flight(&gone);
        }
        let clip_retention = self
            .gate
            .policy()
            .purpose_for_flow(Flow::Clip)
            .and_then(|p| p.retention);
        if let Some(retention) = clip_retention {
            let cutoff = now.saturating_sub(retention.as_millis() as u64);
            for id in self.stores.uploads.expire_before(cutoff) {
                warn!(clip = %id, "clip expired unsent (purpose retention)");
            }
        }
    }

    /// Purged records may sit in the client's replay list: while offline, have it discarded.
    fn forget_in_flight(&mut self, gone: &[u64]) {
        let handed = self
            .in_flight
            .iter()
            .any(|f| matches!(f.what, Sent::Record(seq) if gone.contains(&seq)));
        if handed && !self.connected {
            self.discard.store(true, Ordering::SeqCst);
        }
    }

    fn on_command(&mut self, payload: &[u8]) {
        let Some(key) = &self.stores.verify_key else {
            warn!("command refused: no commands.verify_key is configured");
            return;
        };
        let action = match command::verify(
            payload,
            key,
            &self.gate.anchor_id(),
            self.stores.replay.last(),
        ) {
            Ok(action) => action,
            Err(e) => {
                warn!("command refused: {e}");
                return;
            }
        };
        if let Err(e) = self.stores.replay.accept(action.issued_ms()) {
            error!("command refused: cannot record it against replay: {e}");
            return;
        }
        match action {
            Action::Consent {
                purpose, choice, ..
            } => {
                let policy = self.gate.policy().clone();
                let recorded = self
                    .stores
                    .ledger
                    .update(|l| l.record(&policy, &purpose, choice, Via::Cloud, consent::uuid()));
                match recorded {
                    Ok(_) => self.tick(),
                    Err(e) => warn!("consent command refused: {e}"),
                }
            }
            Action::Erase { issued_ms, .. } => self.erase(issued_ms),
        }
    }

    /// Wipes the owner's data, clears the retained topics, starts new pseudonyms and queues
    /// the confirmation (which goes after the clearing publishes).
    fn erase(&mut self, issued_ms: u64) {
        let retired = self.gate.anchor_id();
        let gone = purge(&mut self.outbox, |_| true);
        self.forget_in_flight(&gone);
        if let Err(e) = self.retained.clear_where(|_| true) {
            error!("{e}");
        }
        let erased = match crate::erase::wipe(&self.stores.state_dir) {
            Ok(erased) => erased,
            Err(e) => {
                error!("erase incomplete: {e}");
                return;
            }
        };
        self.outbox.quarantine_erased();
        // The clips (and their progress) are gone with the rest.
        let fresh = Uploads::open(self.stores.uploads.dir());
        self.stores.uploads = fresh;
        match PseudonymKey::load_or_create(&self.stores.state_dir.join(crate::agent::KEY_FILE)) {
            Ok(key) => self.gate.set_key(key),
            Err(e) => error!("erase: cannot create a new pseudonym key: {e}"),
        }
        self.ledger_stamp = None;
        self.refresh_consent();
        let old_topic = std::mem::replace(&mut self.command_topic, command_topic(&self.gate));
        let _ = self.client.try_unsubscribe(old_topic);
        let _ = self
            .client
            .try_subscribe(&self.command_topic, QoS::AtLeastOnce);
        // The new id stays on the device: the log is local, the confirmation does not carry it.
        warn!(?erased, device_id = %self.gate.anchor_id(), "owner data erased on command");
        self.enqueue(crate::erase::confirmation(
            &erased,
            &retired,
            "signed command",
            Some(issued_ms),
        ));
        self.pump();
    }

    /// Takes the agent's current state; the retained status carries it (where the policy
    /// lets it) when it changed, at most every [`STATUS_EVERY`].
    pub fn report_status(&mut self, state: serde_json::Value) {
        let permitted = self
            .gate
            .policy()
            .purpose_for_flow(Flow::Status)
            .is_some_and(|p| p.fields.contains(&Field::AgentStatus));
        self.agent_status = Some(state.clone());
        let due = match &self.agent_status_sent {
            Some((sent, at)) => *sent != state && at.elapsed() >= STATUS_EVERY,
            None => true,
        };
        if permitted && due && self.connected {
            self.publish_status(true);
        }
    }

    fn publish_status(&mut self, online: bool) {
        let mut record = Record::status(online);
        if let (true, Some(state)) = (online, &self.agent_status) {
            record.fields.insert(
                Field::AgentStatus,
                crate::record::Value::Json(state.clone()),
            );
            self.agent_status_sent = Some((state.clone(), std::time::Instant::now()));
        }
        match self.gate.admit(&record, None) {
            Ok(admitted) => {
                if self.hand_over(&admitted) {
                    self.in_flight.push_back(InFlight {
                        what: Sent::Status,
                        pkid: None,
                    });
                }
            }
            Err(refusal) => debug!("no status published: {refusal}"),
        }
    }

    /// Hands outbox entries to the client, oldest first, while the window has room.
    fn pump(&mut self) {
        if self.stopping {
            return;
        }
        if self.pump_clears() && self.pump_records() {
            self.pump_chunks(None);
        }
    }

    /// Hands the clearing publishes of retained topics to the client, before anything else
    /// (an erase confirms only after them); `true` when none is left waiting.
    fn pump_clears(&mut self) -> bool {
        let waiting: Vec<(String, String)> = self
            .retained
            .to_clear()
            .filter(|(topic, _)| {
                !self
                    .in_flight
                    .iter()
                    .any(|f| matches!(&f.what, Sent::Clear(t) if t == topic))
            })
            .map(|(topic, purpose)| (topic.to_owned(), purpose.to_owned()))
            .collect();
        for (topic, purpose) in waiting {
            if !self.connected || self.in_flight.len() >= self.max_in_flight {
                return false;
            }
            if !self.hand_over(&self.gate.admit_clear(&topic, &purpose)) {
                return false;
            }
            self.in_flight.push_back(InFlight {
                what: Sent::Clear(topic),
                pkid: None,
            });
        }
        true
    }

    /// Hands queued records to the client; `true` when none is left waiting.
    fn pump_records(&mut self) -> bool {
        while self.connected && self.in_flight.len() < self.max_in_flight {
            let Some(seq) = self.outbox.next_after(self.cursor) else {
                return true;
            };
            let record = match self.outbox.get(seq) {
                Ok(record) => record,
                // The entry is forgotten (quarantined, or gone): delivery goes on.
                Err(e) => {
                    error!("{e}; continuing with the next entry");
                    continue;
                }
            };
            // An alert whose snapshot goes in chunks waits for them: the picture arrives first.
            if let Some(media) = record.awaits.clone() {
                if self.stores.uploads.get(&media).is_some() {
                    self.pump_chunks(Some(&media));
                    return false;
                }
            }
            // The policy and consent may have changed since the record was queued.
            let admitted = match self.gate.admit(&record, Some(seq)) {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    self.stats.refused += 1;
                    warn!(
                        seq,
                        "queued record dropped, the policy no longer permits it: {refusal}"
                    );
                    if let Err(e) = self.outbox.remove(seq) {
                        error!("{e}");
                    }
                    self.cursor = Some(seq);
                    continue;
                }
            };
            if !self.hand_over(&admitted) {
                return false;
            }
            self.cursor = Some(seq);
            self.in_flight.push_back(InFlight {
                what: Sent::Record(seq),
                pkid: None,
            });
        }
        false
    }

    /// Hands chunks to the client — of upload `only`, or of the oldest first — within the
    /// bandwidth cap.
    fn pump_chunks(&mut self, only: Option<&str>) {
        if let Some(rate) = self.stores.upload_rate {
            // Refill, capped at one second's worth so an idle link does not bank a burst.
            let (tokens, last) = self.upload_budget;
            let now = std::time::Instant::now();
            let refilled = tokens + rate as f64 * now.duration_since(last).as_secs_f64();
            self.upload_budget = (refilled.min(rate as f64), now);
        }
        loop {
            let chunks = self
                .in_flight
                .iter()
                .filter(|f| matches!(f.what, Sent::Chunk { .. }))
                .count();
            if !self.connected
                || chunks >= CHUNKS_IN_FLIGHT
                || self.in_flight.len() >= self.max_in_flight
                || (self.stores.upload_rate.is_some() && self.upload_budget.0 <= 0.0)
            {
                return;
            }
            let Some((manifest, index)) = self.next_chunk(only) else {
                return;
            };
            let data = match self.stores.uploads.chunk(&manifest.clip_id, index) {
                Ok(data) => data,
                Err(e) => {
                    error!("{e}; the upload is abandoned");
                    self.stores.uploads.remove(&manifest.clip_id);
                    continue;
                }
            };
            let admitted = match self.gate.admit_chunk(&manifest, index, &data) {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    warn!(clip = %manifest.clip_id, "clip upload stopped: {refusal}");
                    self.stores.uploads.remove(&manifest.clip_id);
                    continue;
                }
            };
            if !self.hand_over(&admitted) {
                return;
            }
            self.upload_budget.0 -= data.len() as f64;
            self.in_flight.push_back(InFlight {
                what: Sent::Chunk {
                    clip: manifest.clip_id.clone(),
                    index,
                },
                pkid: None,
            });
        }
    }

    /// The next chunk to send: the oldest clip's first chunk neither acknowledged nor on its
    /// way.
    fn next_chunk(&self, only: Option<&str>) -> Option<(Manifest, u32)> {
        self.stores.uploads.iter().find_map(|p| {
            if only.is_some_and(|id| id != p.manifest.clip_id) {
                return None;
            }
            let sending = self
                .in_flight
                .iter()
                .filter_map(|f| match &f.what {
                    Sent::Chunk { clip, index } if *clip == p.manifest.clip_id => Some(*index),
                    _ => None,
                })
                .collect();
            p.next(&sending).map(|i| (p.manifest.clone(), i))
        })
    }

    /// The one place bytes go to the broker, and it takes only gate output.
    fn hand_over(&mut self, admitted: &Admitted) -> bool {
        // The log line first: what the device says it sent never falls short of what it
        // sent. Without it, nothing goes; the pump tries again at the next tick.
        match self.stores.disclosures.append(&Disclosure::of(admitted)) {
            Ok(()) if self.disclosures_blocked => {
                self.disclosures_blocked = false;
                info!("the disclosure log is writable again: sending resumes");
            }
            Ok(()) => {}
            Err(e) if !self.disclosures_blocked => {
                self.disclosures_blocked = true;
                error!("disclosure log: {e}; nothing is sent until it can be written");
                return false;
            }
            Err(_) => return false,
        }
        match self.client.try_publish(
            admitted.topic(),
            QoS::AtLeastOnce,
            admitted.retain(),
            admitted.payload(),
        ) {
            Ok(()) => {
                if admitted.retain() && !admitted.payload().is_empty() {
                    if let Err(e) = self.retained.used(admitted.topic(), admitted.purpose()) {
                        error!("{e}");
                    }
                }
                true
            }
            Err(e) => {
                debug!("client queue full, will retry: {e}");
                false
            }
        }
    }
}

/// Deletes the outbox entries `doomed` picks, logging any that could not be deleted.
fn purge(outbox: &mut Outbox, doomed: impl Fn(&super::outbox::Meta) -> bool) -> Vec<u64> {
    let (removed, errors) = outbox.purge(doomed);
    for e in errors {
        error!("cannot delete a queued record: {e}");
    }
    removed
}

/// Where signed commands for this device arrive.
pub fn command_topic(gate: &Gate) -> String {
    format!("{}/{}/cmd", gate.prefix(), gate.anchor_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_adds_hints_for_tls_failures() {
        let e = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(describe(&e, "h").contains("broker.ca_file"));
        let e = ConnectionError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid peer certificate: certificate not valid for name \"10.0.0.1\"",
        ));
        assert!(describe(&e, "10.0.0.1").contains("\"10.0.0.1\""));
    }
}
