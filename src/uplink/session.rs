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

use std::collections::VecDeque;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, LastWill, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::outbox::{Outbox, OutboxError};
use crate::policy::{Admitted, Gate};
use crate::record::Record;

/// What the event loop task reports to the session.
#[derive(Debug)]
pub enum Net {
    Up {
        session_present: bool,
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

/// Runs rumqttc's event loop: forwards what the session needs, reconnects with backoff.
pub async fn drive(
    mut eventloop: EventLoop,
    net: mpsc::UnboundedSender<Net>,
    mut backoff: Backoff,
) {
    let host = eventloop.mqtt_options.broker_address().0;
    loop {
        let report = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff.reset();
                Net::Up {
                    session_present: ack.session_present,
                }
            }
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

/// The retained offline status the broker publishes if the agent vanishes.
pub fn last_will(gate: &Gate) -> Option<LastWill> {
    let offline = gate.admit(&Record::status(false), None).ok()?;
    Some(LastWill::new(
        offline.topic(),
        offline.payload(),
        QoS::AtLeastOnce,
        offline.retain(),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Record(u64),
    Status,
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
    pub refused: u64,
}

pub struct Session {
    gate: Gate,
    outbox: Outbox,
    client: AsyncClient,
    connected: bool,
    in_flight: VecDeque<InFlight>,
    /// The newest outbox entry handed to the client.
    cursor: Option<u64>,
    max_in_flight: usize,
    stats: Stats,
}

impl Session {
    pub fn new(gate: Gate, outbox: Outbox, client: AsyncClient, max_in_flight: u16) -> Self {
        Self {
            gate,
            outbox,
            client,
            connected: false,
            in_flight: VecDeque::new(),
            cursor: None,
            max_in_flight: usize::from(max_in_flight),
            stats: Stats::default(),
        }
    }

    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Accepts a record: checks it against the policy, then stores it durably.
    /// A record the policy refuses is never stored; one that does not fit is refused loudly.
    pub fn accept(&mut self, record: Record) {
        if let Err(refusal) = self.gate.admit(&record, None) {
            self.stats.refused += 1;
            warn!(purpose = %record.purpose, "record refused by the privacy gate: {refusal}");
            return;
        }
        match self.outbox.append(&record) {
            Ok(seq) => debug!(seq, depth = self.outbox.len(), "record queued"),
            Err(e) => error!("record not accepted: {e}"),
        }
        self.pump();
    }

    pub fn on_net(&mut self, event: Net) {
        match event {
            Net::Up { session_present } => {
                self.connected = true;
                if !session_present {
                    // The broker forgot the session and rumqttc dropped its replay list:
                    // everything not acknowledged goes again, from the oldest.
                    self.in_flight.clear();
                    self.cursor = None;
                }
                info!(
                    session_present,
                    queued = self.outbox.len(),
                    "connected to broker"
                );
                self.publish_status(true);
                self.pump();
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
                    if let Some(InFlight {
                        what: Sent::Record(seq),
                        ..
                    }) = self.in_flight.remove(i)
                    {
                        self.stats.delivered += 1;
                        if let Err(e) = self.outbox.remove(seq) {
                            error!("delivered record {seq} could not be deleted: {e}");
                        }
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

    /// Whether the offline status handed over at shutdown has been acknowledged.
    pub fn status_settled(&self) -> bool {
        !self.in_flight.iter().any(|f| f.what == Sent::Status)
    }

    pub fn connected(&self) -> bool {
        self.connected
    }

    /// Marks the device offline on purpose (a clean disconnect suppresses the last will).
    pub fn go_offline(&mut self) {
        if self.connected {
            self.publish_status(false);
        }
    }

    pub async fn disconnect(&self) {
        if let Err(e) = self.client.disconnect().await {
            debug!("disconnect: {e}");
        }
    }

    fn publish_status(&mut self, online: bool) {
        match self.gate.admit(&Record::status(online), None) {
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
        while self.connected && self.in_flight.len() < self.max_in_flight {
            let Some(seq) = self.outbox.next_after(self.cursor) else {
                return;
            };
            let record = match self.outbox.get(seq) {
                Ok(record) => record,
                Err(e @ OutboxError::Corrupt { .. }) => {
                    error!("{e}; moved to quarantine, continuing with the next entry");
                    continue;
                }
                Err(e) => {
                    error!("cannot read outbox entry {seq}: {e}");
                    return;
                }
            };
            // The policy may have changed since the record was queued: it decides again now.
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
                return;
            }
            self.cursor = Some(seq);
            self.in_flight.push_back(InFlight {
                what: Sent::Record(seq),
                pkid: None,
            });
        }
    }

    /// The one place bytes go to the broker, and it takes only gate output.
    fn hand_over(&self, admitted: &Admitted) -> bool {
        match self.client.try_publish(
            admitted.topic(),
            QoS::AtLeastOnce,
            admitted.retain(),
            admitted.payload(),
        ) {
            Ok(()) => true,
            Err(e) => {
                debug!("client queue full, will retry: {e}");
                false
            }
        }
    }
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
