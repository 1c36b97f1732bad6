//! The MQTT session: moves records from the outbox to the broker, in order, and deletes each
//! only once the broker has acknowledged it.
//!
//! rumqttc's event loop runs in its own task ([`super::driver::drive`]). This side owns the
//! outbox and is the only one that publishes, through a [`Link`]. The two meet in one place
//! that matters for ordering: when the connection drops, the event loop waits until this side
//! has stopped publishing, then moves whatever is still queued in the client into its replay
//! list. On reconnect, a resumed broker session replays that list in order; a lost session
//! (broker restarted without persistence) discards it and this side re-sends from the oldest
//! unacknowledged outbox entry. Either way the broker sees records in outbox order. The
//! bookkeeping of what is in flight is the [`Window`]'s.
//!
//! The session's other duties are its own files, as `impl Session` blocks over the same state:
//! consent, purge, retention, commands and erase (`privacy`); clip uploads, their quota and
//! disk pressure (`clips`: chunks go only when no record is waiting, at most
//! [`CHUNKS_IN_FLIGHT`](super::window::CHUNKS_IN_FLIGHT) ahead of an alert); the retained
//! status and the local status (`presence`). This file is the pump and the acknowledgements,
//! a little over 500 lines because the two share one ordering argument, best read whole.

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::driver::Net;
use super::link::Link;
use super::outbox::Outbox;
use super::ready::{Ready, ReadyRecords};
use super::retained::RetainedTopics;
use super::upload::Uploads;
use super::window::{RateLimit, Sent, Window};
use crate::command::ReplayGuard;
use crate::policy::consent::LedgerFile;
use crate::policy::disclosure::{Disclosure, DisclosureLog};
use crate::policy::{Admitted, Field, Flow, Gate};
use crate::record::{Record, Value, WrongKind};
use crate::report::Chain;
use crate::state_dir::StateDir;

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
    pub state_dir: StateDir,
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

pub struct Session<L: Link> {
    pub(super) gate: Gate,
    pub(super) outbox: Outbox,
    pub(super) link: L,
    pub(super) stores: Stores,
    pub(super) connected: bool,
    /// When the file system's free space was last checked.
    pub(super) space_checked: Option<Instant>,
    /// Uploads dropped unsent (evicted, expired, refused), newest last: an alert that waits
    /// for one of these pictures goes without it rather than name a picture that never comes.
    pub(super) lost_media: VecDeque<String>,
    /// Set at shutdown: nothing new is handed to the client; what is in flight may finish.
    stopping: bool,
    pub(super) window: Window,
    /// Gate output of records just queued, so they are gated and encoded once.
    pub(super) ready: ReadyRecords,
    pub(super) stats: Stats,
    /// Set to have the driver drop its replay list at the next connect.
    pub(super) discard: Arc<AtomicBool>,
    pub(super) ledger_stamp: Option<std::time::SystemTime>,
    pub(super) command_topic: String,
    pub(super) upload_rate: RateLimit,
    /// The agent's state for the retained status, and when it was last published.
    pub(super) agent_status: Option<serde_json::Value>,
    pub(super) agent_status_sent: Option<(serde_json::Value, std::time::Instant)>,
    /// Retained topics used, and those waiting to be cleared.
    pub(super) retained: RetainedTopics,
    /// The last will the driver registers at the next connect.
    pub(super) will: watch::Sender<Option<super::mqtt::Will>>,
    /// The disclosure log could not be written at the last try (logged once).
    disclosures_blocked: bool,
}

/// Memory for gate output of records waiting to be sent; beyond it, records are read back
/// from the outbox and gated again when their turn comes.
const READY_MAX_BYTES: usize = 1 << 20;

impl<L: Link> Session<L> {
    pub fn new(
        gate: Gate,
        outbox: Outbox,
        link: L,
        stores: Stores,
        max_in_flight: u16,
        discard: Arc<AtomicBool>,
        will: watch::Sender<Option<super::mqtt::Will>>,
    ) -> Self {
        let command_topic = command_topic(&gate);
        let (retained, damaged) = RetainedTopics::open(stores.state_dir.retained_topics());
        if let Some(e) = damaged {
            error!(
                "{}; retained messages it named can no longer be cleared by the device",
                Chain(&e)
            );
        }
        let mut session = Self {
            gate,
            outbox,
            link,
            upload_rate: RateLimit::new(stores.upload_rate, Instant::now()),
            stores,
            connected: false,
            space_checked: None,
            lost_media: VecDeque::new(),
            stopping: false,
            window: Window::new(usize::from(max_in_flight)),
            ready: ReadyRecords::new(READY_MAX_BYTES),
            stats: Stats::default(),
            discard,
            ledger_stamp: None,
            command_topic,
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

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Accepts a record: checks it against the policy and consent, then stores it durably.
    /// A record the gate refuses is never stored; one that does not fit is refused loudly.
    /// Returns whether it was queued.
    pub fn accept(&mut self, record: Record) -> bool {
        self.refresh_consent();
        let queued = self.enqueue(record);
        self.pump();
        queued
    }

    /// [`accept`](Self::accept) for a record the agent made itself: one it could not make (a
    /// field given a value of the wrong kind, a bug) is logged and nothing is sent.
    pub fn accept_made(&mut self, made: Result<Record, WrongKind>) -> bool {
        match made {
            Ok(record) => self.accept(record),
            Err(e) => {
                error!("record not made: {e}");
                false
            }
        }
    }

    /// Whether a record of `flow` still waiting in the outbox satisfies `is_it`, newest first.
    pub fn holds_queued(&mut self, flow: Flow, is_it: impl Fn(&Record) -> bool) -> bool {
        let queued: Vec<u64> = self
            .outbox
            .queued()
            .filter(|(_, meta)| meta.flow == flow)
            .map(|(seq, _)| seq)
            .collect();
        queued
            .into_iter()
            .rev()
            .any(|seq| self.outbox.get(seq).is_ok_and(|record| is_it(&record)))
    }

    /// [`enqueue`](Self::enqueue) for a record the agent made itself, as for `accept_made`.
    pub(super) fn enqueue_made(&mut self, made: Result<Record, WrongKind>) {
        match made {
            Ok(record) => {
                self.enqueue(record);
            }
            Err(e) => error!("record not made: {e}"),
        }
    }

    pub(super) fn enqueue(&mut self, record: Record) -> bool {
        // Gated with the number it is about to get, so the pump can send this very output.
        let seq = self.outbox.next_seq();
        let admitted = match self.gate.admit(&record, Some(seq)) {
            Err(refusal) => {
                self.stats.refused += 1;
                debug!(flow = %record.flow, "record not sent: {refusal}");
                return false;
            }
            Ok(admitted) => admitted,
        };
        if !admitted.withheld().is_empty() {
            warn!(
                flow = %record.flow,
                withheld = ?admitted.withheld(),
                "fields kept back: their values hold a secret (a never_leave value, a credential or key material)"
            );
        }
        let appended = loop {
            match self.outbox.append(&record) {
                Ok(appended) => break appended,
                // Clips give way to records: the oldest goes, and the record is tried again.
                Err(e) if e.is_disk_full() && self.evict_clips(1, "the disk is full") => {}
                Err(e) => {
                    error!("record not accepted: {}", Chain(&e));
                    return false;
                }
            }
        };
        debug!(seq = appended, depth = self.outbox.len(), "record queued");
        if appended == seq {
            let ready = Ready {
                admitted,
                awaits: record.awaits,
            };
            self.ready.keep(seq, ready, self.gate.epoch());
        }
        true
    }

    /// Periodic upkeep: consent changes from `camagent consent`, retention, the send window.
    pub fn tick(&mut self) {
        self.refresh_consent();
        self.expire();
        self.keep_space_free();
        self.announce_unconfirmed();
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
                    self.window.session_lost();
                }
                info!(
                    session_present,
                    queued = self.outbox.len(),
                    "connected to broker"
                );
                if let Err(e) = self.link.subscribe(&self.command_topic) {
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
            Net::Sent(pkid) => self.window.sent(pkid),
            Net::Acked(pkid) => {
                if let Some(what) = self.window.acked(pkid) {
                    match what {
                        Sent::Record(seq) => {
                            self.stats.delivered += 1;
                            if let Err(e) = self.outbox.remove(seq) {
                                error!(
                                    "delivered record {seq} could not be deleted: {}",
                                    Chain(&e)
                                );
                            }
                        }
                        Sent::Clear(topic) => {
                            info!(%topic, "retained message cleared at the broker");
                            if let Err(e) = self.retained.cleared(&topic) {
                                error!("{}", Chain(&e));
                            }
                        }
                        Sent::Chunk { clip, index } => {
                            match self.stores.uploads.ack(&clip, index) {
                                Ok(Some(done)) => self.clip_delivered(&done),
                                Ok(None) => {}
                                Err(e) => error!("{}", Chain(&e)),
                            }
                        }
                        Sent::Status => {}
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
        self.window.is_empty()
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

    pub async fn disconnect(&self) {
        if let Err(e) = self.link.disconnect().await {
            debug!("disconnect: {e}");
        }
    }

    /// Hands outbox entries to the client, oldest first, while the window has room.
    pub(super) fn pump(&mut self) {
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
            .filter(|(topic, _)| !self.window.clearing(topic))
            .map(|(topic, purpose)| (topic.to_owned(), purpose.to_owned()))
            .collect();
        for (topic, purpose) in waiting {
            if !self.connected || !self.window.has_room() {
                return false;
            }
            if !self.hand_over(&self.gate.admit_clear(&topic, &purpose)) {
                return false;
            }
            self.window.handed(Sent::Clear(topic));
        }
        true
    }

    /// Hands queued records to the client; `true` when none is left waiting.
    fn pump_records(&mut self) -> bool {
        while self.connected && self.window.has_room() {
            let Some(seq) = self.outbox.next_after(self.window.cursor()) else {
                return true;
            };
            let epoch = self.gate.epoch();
            let ready = match self.ready.take(seq, epoch) {
                Some(ready) => match self.outbox.still_queued(seq) {
                    Ok(()) => ready,
                    Err(e) => {
                        error!("{}; continuing with the next entry", Chain(&e));
                        continue;
                    }
                },
                None => match self.read_and_admit(seq, false) {
                    Some(ready) => ready,
                    None => continue,
                },
            };
            // An alert whose snapshot was dropped unsent goes without it.
            let lost = ready
                .awaits
                .as_ref()
                .is_some_and(|media| self.lost_media.contains(media));
            let ready = match lost {
                true => match self.read_and_admit(seq, true) {
                    Some(ready) => ready,
                    None => continue,
                },
                false => ready,
            };
            // An alert whose snapshot goes in chunks waits for them: the picture arrives first.
            let waiting = ready
                .awaits
                .as_deref()
                .filter(|media| self.stores.uploads.get(media).is_some())
                .map(str::to_owned);
            if let Some(media) = waiting {
                self.ready.keep(seq, ready, epoch);
                self.pump_chunks(Some(&media));
                return false;
            }
            if !self.hand_over(&ready.admitted) {
                self.ready.keep(seq, ready, epoch);
                return false;
            }
            self.window.handed(Sent::Record(seq));
        }
        false
    }

    /// Reads a queued record back and gates it again: the policy and consent may have changed
    /// since it was queued, or it was queued before a restart. With `snapshot_lost`, the
    /// record's snapshot is marked unavailable first. `None` when it is not sent (unreadable,
    /// or no longer permitted); the cursor is then past it.
    fn read_and_admit(&mut self, seq: u64, snapshot_lost: bool) -> Option<Ready> {
        let mut record = match self.outbox.get(seq) {
            Ok(record) => record,
            // The entry is forgotten (quarantined, or gone): delivery goes on.
            Err(e) => {
                error!("{}; continuing with the next entry", Chain(&e));
                return None;
            }
        };
        if snapshot_lost {
            let reason = "the snapshot was dropped unsent (clip quota, disk space or retention)";
            record
                .fields
                .insert(Field::Snapshot, Value::Unavailable(reason.into()));
            record.awaits = None;
        }
        match self.gate.admit(&record, Some(seq)) {
            Ok(admitted) => Some(Ready {
                admitted,
                awaits: record.awaits,
            }),
            Err(refusal) => {
                self.stats.refused += 1;
                warn!(
                    seq,
                    "queued record dropped, the policy no longer permits it: {refusal}"
                );
                if let Err(e) = self.outbox.remove(seq) {
                    error!("{}", Chain(&e));
                }
                self.window.pass_over(seq);
                None
            }
        }
    }

    /// The one place bytes go to the broker, and it takes only gate output.
    pub(super) fn hand_over(&mut self, admitted: &Admitted) -> bool {
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
                error!(
                    "disclosure log: {}; nothing is sent until it can be written",
                    Chain(&e)
                );
                return false;
            }
            Err(_) => return false,
        }
        match self.link.publish(admitted) {
            Ok(()) => {
                if admitted.retain() && !admitted.payload().is_empty() {
                    if let Err(e) = self.retained.used(admitted.topic(), admitted.purpose()) {
                        error!("{}", Chain(&e));
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

/// Where signed commands for this device arrive.
pub fn command_topic(gate: &Gate) -> String {
    format!(
        "{}/{}/{}",
        gate.prefix(),
        gate.anchor_id(),
        crate::wire::topic::COMMAND_LEVEL
    )
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
