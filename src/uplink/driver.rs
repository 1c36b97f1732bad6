//! Drives rumqttc's event loop on its own thread ([`spawn`]), never cancelled mid-poll: connects and
//! reconnects with backoff, reports what the session needs as [`Net`] events, and registers
//! the last will. When the connection drops, it waits until the session has stopped
//! publishing, then moves whatever is still queued in the client into its replay list, so a
//! resumed broker session replays it in order.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::error;

use super::backoff::Backoff;
use super::mqtt::{self, Connection, Polled, Will};
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

/// Runs the connection: forwards what the session needs, reconnects with backoff. A poll that
/// does not return within `keep_alive` (a write stuck on a broker that stopped reading; a
/// healthy connection returns at least at every ping) counts as a lost connection.
///
/// `discard` set by the session means records handed over before the outage must not be
/// replayed (consent was withdrawn or the owner's data erased meanwhile): the replay list is
/// dropped at the next connect, which the session then treats as a lost session.
pub async fn drive(
    mut connection: Connection,
    will: watch::Receiver<Option<Will>>,
    net: mpsc::Sender<Net>,
    mut backoff: Backoff,
    discard: Arc<AtomicBool>,
    keep_alive: Duration,
) {
    // The last connection ended on a message over the size limit: the next one starts a clean
    // session, and connecting does not count as recovered (a retained one comes back).
    let mut poisoned = false;
    loop {
        let polled = match tokio::time::timeout(keep_alive, connection.poll()).await {
            Ok(polled) => polled,
            Err(_) => Err(mqtt::stopped_answering(keep_alive)),
        };
        let report = match polled {
            Ok(Polled::Connected { session_present }) => {
                if !poisoned {
                    backoff.reset();
                }
                let discarded = discard.swap(false, Ordering::SeqCst);
                if discarded {
                    connection.drop_replay();
                }
                Net::Up {
                    session_present: session_present && !discarded,
                }
            }
            Ok(Polled::Message { topic, payload }) => Net::Incoming { topic, payload },
            Ok(Polled::Acked(pkid)) => Net::Acked(pkid),
            Ok(Polled::Sent(pkid)) => Net::Sent(pkid),
            Ok(Polled::Other) => continue,
            Err(failure) if failure.done => return,
            Err(failure) => {
                poisoned = failure.oversized;
                let (resume, resumed) = oneshot::channel();
                let down = Net::Down {
                    error: failure.message,
                    resume,
                };
                if net.send(down).await.is_err() {
                    return;
                }
                // Once the session has stopped publishing, nothing more can enter the
                // client's queue: move what is there into the replay list. The broker
                // redelivers an unacknowledged message at every reconnect of a persistent
                // session: only a clean one drops it. The connection after goes back to a
                // persistent session.
                if resumed.await.is_err() {
                    return;
                }
                connection.prepare_reconnect(will.borrow().as_ref(), poisoned);
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

/// The retained offline status the broker publishes if the agent vanishes. Registering it
/// discloses it, so it is logged as sent; without that line there is no will.
pub fn last_will(gate: &Gate, disclosures: &DisclosureLog) -> Option<Will> {
    will_of(&gate.admit(&Record::status(false), None).ok()?, disclosures)
}

/// The last will that publishes `offline`, once its disclosure line is written.
pub(crate) fn will_of(offline: &Admitted, disclosures: &DisclosureLog) -> Option<Will> {
    if let Err(e) = disclosures.append(&Disclosure::of(offline)) {
        error!("disclosure log: {}; no last will is registered", Chain(&e));
        return None;
    }
    Some(Will {
        topic: offline.topic().to_owned(),
        payload: offline.payload().to_vec(),
        retain: offline.retain(),
    })
}
