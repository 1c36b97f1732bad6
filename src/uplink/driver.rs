//! Drives rumqttc's event loop on its own thread ([`spawn`]), never cancelled mid-poll: connects and
//! reconnects with backoff, reports what the session needs as [`Net`] events, and registers
//! the last will. When the connection drops, it waits until the session has stopped
//! publishing, then moves whatever is still queued in the client into its replay list, so a
//! resumed broker session replays it in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet,
    QoS, StateError,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::error;

use super::backoff::Backoff;
use crate::policy::disclosure::{Disclosure, DisclosureLog};
use crate::policy::{Admitted, Gate};
use crate::record::Record;
use crate::report::Chain;

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

/// Events the driver may have waiting for the session, at most: a bound on the memory a
/// flood of incoming messages can take (each up to `broker.max_packet_bytes`).
pub const NET_BACKLOG: usize = 64;

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
    net: mpsc::Sender<Net>,
    mut backoff: Backoff,
    discard: Arc<AtomicBool>,
    keep_alive: Duration,
) {
    let host = eventloop.mqtt_options.broker_address().0;
    // The last connection ended on a message over the size limit: the next one starts a clean
    // session, and connecting does not count as recovered (a retained one comes back).
    let mut poisoned = false;
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
                if !poisoned {
                    backoff.reset();
                }
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
                poisoned = oversized(&e).is_some();
                let (resume, resumed) = oneshot::channel();
                if net.send(Net::Down { error, resume }).await.is_err() {
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
                // The broker redelivers an unacknowledged message at every reconnect of a
                // persistent session: only a clean one drops it. The connection after goes
                // back to a persistent session.
                options.set_clean_session(poisoned);
                eventloop.mqtt_options = options;
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        // A full channel holds the loop back (nothing is dropped): the broker then keeps what
        // it has not delivered until the session catches up.
        if net.send(report).await.is_err() {
            return;
        }
    }
}

/// Runs the event loop ([`drive`]) on a thread of its own, under a runtime of its own: the
/// session's file writes (an fsync for every record queued) then never delay a ping or an
/// acknowledgement, however slow the SD card. The receiver completes when the loop stops.
pub fn spawn(
    drive: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<oneshot::Receiver<()>> {
    let (done, stopped) = oneshot::channel();
    std::thread::Builder::new()
        .name("mqtt".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(drive),
                Err(e) => error!("the MQTT thread cannot start its runtime: {e}"),
            }
            let _ = done.send(());
        })?;
    Ok(stopped)
}

/// The size of the incoming message that ended the connection for being over
/// `broker.max_packet_bytes` (the client reads its header only, never the message).
pub fn oversized(e: &ConnectionError) -> Option<usize> {
    match e {
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(bytes),
        )) => Some(*bytes),
        _ => None,
    }
}

/// A connection error in words, with the likely fix where one is known.
pub fn describe(e: &ConnectionError, host: &str) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    // The broker answered and said no: the connection itself works.
    let refusal = match e {
        ConnectionError::ConnectionRefused(code) => Some(*code),
        _ => None,
    };
    let hint = if let Some(bytes) = oversized(e) {
        Some(format!(
            "a message of {bytes} bytes came for this device, over broker.max_packet_bytes; it \
             was refused unread and the next connection starts a clean session so the broker \
             drops it, with anything else it held for this device"
        ))
    } else if let Some(code) = refusal {
        Some(match code {
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                "the broker does not authorise this device's identity: register the device \
                 certificate (broker.cert_file) or its client id with the broker"
                    .to_owned()
            }
            ConnectReturnCode::BadClientId => {
                "the broker refused the client id (camagent-<device id>)".to_owned()
            }
            ConnectReturnCode::ServiceUnavailable => {
                "the broker is up but not taking clients now; the agent keeps retrying".to_owned()
            }
            _ => "the broker does not speak MQTT 3.1.1".to_owned(),
        })
    } else if lower.contains("could not resolve") || lower.contains("failed to lookup") {
        Some(format!(
            "the name {host:?} does not resolve; check broker.host and DNS"
        ))
    } else if lower.contains("unknownissuer") {
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
pub(crate) fn will_of(offline: &Admitted, disclosures: &DisclosureLog) -> Option<LastWill> {
    if let Err(e) = disclosures.append(&Disclosure::of(offline)) {
        error!("disclosure log: {}; no last will is registered", Chain(&e));
        return None;
    }
    Some(LastWill::new(
        offline.topic(),
        offline.payload(),
        QoS::AtLeastOnce,
        offline.retain(),
    ))
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

    #[test]
    fn describe_tells_a_refused_identity_from_a_closed_port() {
        let refused = describe(
            &ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized),
            "h",
        );
        assert!(refused.contains("does not authorise"), "{refused}");
        assert!(!refused.contains("nothing accepts"), "{refused}");
        let closed = describe(
            &ConnectionError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)",
            )),
            "h",
        );
        assert!(closed.contains("nothing accepts"), "{closed}");
    }
}
