//! The session's privacy duties: consent changes reach the gate before the next publish (the
//! ledger file is checked on every pass), records of a purpose that may no longer send are
//! purged from the outbox, retention expires what waited too long, and signed commands from
//! the cloud change consent or erase the owner's data. A purge while offline has the driver
//! discard its replay list, so a withdrawn record handed over before the outage is not sent.

use std::sync::atomic::Ordering;

use rumqttc::LastWill;
use tracing::{error, info, warn};

use super::driver::will_of;
use super::link::Link;
use super::outbox::Outbox;
use super::session::{command_topic, Session};
use super::upload::Uploads;
use crate::command::{self, Action};
use crate::policy::consent::{self, Via};
use crate::policy::{Field, Flow, PseudonymKey};
use crate::record::{now_ms, Record};
use crate::report::Chain;

impl<L: Link> Session<L> {
    /// Takes in the consent ledger if it changed, purges what may no longer leave, and queues
    /// receipts for changes not yet acknowledged to the cloud.
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
            match Record::json(Flow::ConsentReceipt, Field::ConsentRecord, receipt) {
                Ok(record) => self.enqueue(record),
                Err(e) => error!("consent receipt not queued: {e}"),
            }
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
                Err(e) => error!(
                    "receipts queued but not marked in the ledger: {}",
                    Chain(&e)
                ),
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
            Err(e) => error!("{}", Chain(&e)),
        }
        let topic = |w: &Option<LastWill>| w.as_ref().map(|w| w.topic.clone());
        let offline = self.gate.admit(&Record::status(false), None).ok();
        if offline.as_ref().map(|o| o.topic().to_owned()) == topic(&self.will.borrow()) {
            return;
        }
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
    pub(super) fn expire(&mut self) {
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

    /// Purged records: their kept gate output goes, and as they may sit in the client's replay
    /// list, while offline have it discarded.
    fn forget_in_flight(&mut self, gone: &[u64]) {
        self.ready.forget(gone);
        if !self.connected && self.window.holds_any(gone) {
            self.discard.store(true, Ordering::SeqCst);
        }
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
            error!("{}", Chain(&e));
        }
        let erased = match crate::uplink::erase::wipe(&self.stores.state_dir) {
            Ok(erased) => erased,
            Err(e) => {
                error!("erase incomplete: {}", Chain(&e));
                return;
            }
        };
        self.outbox.quarantine_erased();
        // The clips (and their progress) are gone with the rest.
        let fresh = Uploads::open(self.stores.uploads.dir());
        self.stores.uploads = fresh;
        match PseudonymKey::load_or_create(&self.stores.state_dir.pseudonym_key()) {
            Ok(key) => self.gate.set_key(key),
            Err(e) => error!("erase: cannot create a new pseudonym key: {}", Chain(&e)),
        }
        self.ledger_stamp = None;
        self.refresh_consent();
        let old_topic = std::mem::replace(&mut self.command_topic, command_topic(&self.gate));
        let _ = self.link.unsubscribe(&old_topic);
        let _ = self.link.subscribe(&self.command_topic);
        // The new id stays on the device: the log is local, the confirmation does not carry it.
        warn!(?erased, device_id = %self.gate.anchor_id(), "owner data erased on command");
        match crate::uplink::erase::confirmation(
            &erased,
            &retired,
            "signed command",
            Some(issued_ms),
        ) {
            Ok(record) => self.enqueue(record),
            Err(e) => error!("erase confirmation not queued: {e}"),
        }
        self.pump();
    }
}

/// Deletes the outbox entries `doomed` picks, logging any that could not be deleted.
fn purge(outbox: &mut Outbox, doomed: impl Fn(&super::outbox::Meta) -> bool) -> Vec<u64> {
    let (removed, errors) = outbox.purge(doomed);
    for e in errors {
        error!("cannot delete a queued record: {}", Chain(&e));
    }
    removed
}
