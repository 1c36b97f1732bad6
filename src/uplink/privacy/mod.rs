//! The session's privacy duties, carried out: consent changes reach the gate before the next
//! publish (the ledger file is checked on every pass), records of a purpose that may no
//! longer send are purged from the outbox, retention expires what waited too long, and signed
//! commands from the cloud change consent or erase the owner's data. What each of these asks
//! is decided by the controller ([`duties`], no I/O); this file does it. A purge while
//! offline has the driver discard its replay list, so a withdrawn record handed over before
//! the outage is not sent.

mod duties;

use std::sync::atomic::Ordering;

use tracing::{error, info, warn};

use super::driver::will_of;
use super::link::Link;
use super::session::{command_topic, Session};
use super::upload::Uploads;
use crate::command::{self, Action};
use crate::policy::consent::{self, ConsentEvent, Via};
use crate::policy::{Field, Flow};
use crate::record::{now_ms, Record};
use crate::report::Chain;
use duties::{Duty, Purged};

impl<L: Link> Session<L> {
    /// Takes in the consent ledger if it changed, and does what the change asks.
    pub(super) fn refresh_consent(&mut self) {
        let stamp = self.stores.ledger.stamp();
        if stamp == self.ledger_stamp {
            return;
        }
        self.ledger_stamp = stamp;
        let ledger = match self.stores.ledger.load() {
            Ok(ledger) => ledger,
            Err(e) => {
                error!("{}; keeping the consent state already loaded", Chain(&e));
                return;
            }
        };
        self.gate.set_consent(ledger.clone());
        let will_topic = self.will.borrow().as_ref().map(|w| w.topic.clone());
        let duties = duties::consent_changed(
            &self.gate,
            self.outbox.queued(),
            &ledger,
            will_topic.as_deref(),
        );
        self.perform(duties);
    }

    /// Deletes queued records and clips older than their purpose's retention.
    pub(super) fn expire(&mut self) {
        let duties = duties::retention(self.gate.policy(), self.outbox.queued(), now_ms());
        self.perform(duties);
    }

    pub(super) fn on_command(&mut self, payload: &[u8]) {
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
                warn!("command refused: {}", Chain(&e));
                return;
            }
        };
        if let Err(e) = self.stores.replay.accept(action.issued_ms()) {
            error!(
                "command refused: cannot record it against replay: {}",
                Chain(&e)
            );
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
                    Err(e) => warn!("consent command refused: {}", Chain(&e)),
                }
            }
            Action::Erase { issued_ms, .. } => {
                let duties = duties::erase(self.gate.anchor_id(), issued_ms, self.outbox.queued());
                self.perform(duties);
            }
            Action::ClipVerified {
                clip_id, sha256, ..
            } => self.clip_confirmed(&clip_id, &sha256),
            Action::ClipMissing {
                clip_id, chunks, ..
            } => self.clip_missing(&clip_id, &chunks),
        }
    }

    /// Carries out `duties` in order.
    fn perform(&mut self, duties: Vec<Duty>) {
        let mut erased = Vec::new();
        for duty in duties {
            match duty {
                Duty::Purge { seqs, why } => self.purge(&seqs, why),
                Duty::ExpireClips { before_ms } => {
                    let expired = self.stores.uploads.expire_before(before_ms);
                    for id in &expired {
                        warn!(clip = %id, "clip expired unsent (purpose retention)");
                    }
                    self.media_lost(expired);
                }
                Duty::ClearStoppedRetained => {
                    let gate = &self.gate;
                    match self.retained.clear_where(|p| !gate.purpose_runs(p)) {
                        Ok(0) => {}
                        Ok(topics) => info!(
                            topics,
                            "clearing the retained messages of a purpose that may no longer run"
                        ),
                        Err(e) => error!("{}", Chain(&e)),
                    }
                }
                Duty::ClearAllRetained => {
                    if let Err(e) = self.retained.clear_where(|_| true) {
                        error!("{}", Chain(&e));
                    }
                }
                Duty::RenewWill => self.renew_will(),
                Duty::Receipts(events) => self.send_receipts(&events),
                Duty::Wipe => match self.wipe() {
                    Some(list) => erased = list,
                    None => return,
                },
                Duty::ReloadConsent => {
                    self.ledger_stamp = None;
                    self.refresh_consent();
                }
                Duty::Resubscribe => {
                    let new = command_topic(&self.gate);
                    let old = std::mem::replace(&mut self.command_topic, new);
                    let _ = self.link.unsubscribe(&old);
                    let _ = self.link.subscribe(&self.command_topic);
                }
                Duty::ConfirmErase { retired, issued_ms } => {
                    // The new id stays on the device: the log is local, the confirmation does
                    // not carry it.
                    warn!(?erased, device_id = %self.gate.anchor_id(), "owner data erased on command");
                    let confirmation = crate::uplink::erase::confirmation(
                        &erased,
                        &retired,
                        "signed command",
                        Some(issued_ms),
                    );
                    self.enqueue_made(confirmation);
                    self.pump();
                }
            }
        }
    }

    /// Deletes queued records unsent. As they may sit in the client's replay list, while
    /// offline it is discarded.
    fn purge(&mut self, seqs: &[u64], why: Purged) {
        let (gone, errors) = self.outbox.purge(seqs);
        for e in errors {
            error!("cannot delete a queued record: {}", Chain(&e));
        }
        if gone.is_empty() {
            return;
        }
        match why {
            Purged::Refused => info!(
                count = gone.len(),
                "queued records purged: their purpose may no longer send"
            ),
            Purged::Expired => warn!(
                count = gone.len(),
                "queued records expired unsent (purpose retention)"
            ),
            Purged::Erased => {}
        }
        self.ready.forget(&gone);
        if !self.connected && self.window.holds_any(&gone) {
            self.discard.store(true, Ordering::SeqCst);
        }
    }

    /// Registers the offline status as the last will again. A will already registered stays
    /// with the broker until the connection ends, so the session reconnects at once.
    fn renew_will(&mut self) {
        let offline = self.gate.admit(&Record::status(false), None).ok();
        let will = offline.as_ref().and_then(|offline| {
            if let Err(e) = self.retained.used(offline.topic(), offline.purpose()) {
                error!("{}", Chain(&e));
            }
            will_of(offline, &self.stores.disclosures)
        });
        self.will.send_replace(will);
        if self.connected {
            info!("the last will changed: reconnecting so the broker registers the new one");
            if let Err(e) = self.link.reconnect() {
                warn!("cannot reconnect now; the new last will applies at the next connect: {e}");
            }
        }
    }

    /// Queues the receipts of `events` and marks them receipted in the ledger.
    fn send_receipts(&mut self, events: &[ConsentEvent]) {
        for event in events {
            info!(purpose = %event.purpose, choice = ?event.choice, via = ?event.via, "consent changed");
            let receipt = consent::receipt(self.gate.policy(), event);
            self.enqueue_made(Record::json(
                Flow::ConsentReceipt,
                Field::ConsentRecord,
                &receipt,
            ));
        }
        let ids: Vec<&str> = events.iter().map(|e| e.receipt_id.as_str()).collect();
        let marked = self.stores.ledger.update(|l| {
            l.events
                .iter_mut()
                .filter(|e| ids.contains(&e.receipt_id.as_str()))
                .for_each(|e| e.receipted = true);
            Ok(())
        });
        match marked {
            Ok(()) => self.ledger_stamp = self.stores.ledger.stamp(),
            Err(e) => error!(
                "receipts queued but not marked in the ledger: {}",
                Chain(&e)
            ),
        }
    }

    /// Wipes the owner's data on disk and starts new pseudonyms; `None` if the wipe failed.
    fn wipe(&mut self) -> Option<Vec<&'static str>> {
        let erased = match crate::uplink::erase::wipe(&self.stores.state_dir) {
            Ok(erased) => erased,
            Err(e) => {
                error!("erase incomplete: {}", Chain(&e));
                return None;
            }
        };
        self.outbox.quarantine_erased();
        // The clips (and their progress) are gone with the rest.
        self.stores.uploads = Uploads::open(self.stores.uploads.dir());
        match crate::policy::key_file::load_or_create(&self.stores.state_dir.pseudonym_key()) {
            Ok(key) => self.gate.set_key(key),
            Err(e) => error!("erase: cannot create a new pseudonym key: {}", Chain(&e)),
        }
        Some(erased)
    }
}
