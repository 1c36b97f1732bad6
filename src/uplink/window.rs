//! The send window: what has been handed to the MQTT client and not yet acknowledged, in the
//! order it was handed over, and the outbox cursor behind it. Pure bookkeeping with no I/O, so
//! every ordering (a replay after a resumed session, a lost session, acknowledgements out of
//! step with packet ids) is unit-tested here without a broker.
//!
//! The session asks the window whether there is room, hands a publish to the client, and
//! records it with [`Window::handed`]. The client numbers publishes as they leave, in the order
//! they were handed over, so the first entry without a packet id takes the next id reported.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

/// Clip chunks handed to the client and not yet acknowledged, at most: an alert queued behind
/// them waits for no more than this many.
pub const CHUNKS_IN_FLIGHT: usize = 4;

/// One publish handed to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The outbox entry with this sequence number.
    Record(u64),
    /// The retained status (not in the outbox: a newer one supersedes it).
    Status,
    Chunk {
        clip: String,
        index: u32,
    },
    /// An empty retained publish deleting what this topic held at the broker.
    Clear(String),
}

#[derive(Debug)]
struct InFlight {
    what: Sent,
    /// Known once the client reports the publish leaving.
    pkid: Option<u16>,
}

/// Publishes in flight, oldest first, and the newest outbox entry handed over.
#[derive(Debug)]
pub struct Window {
    in_flight: VecDeque<InFlight>,
    cursor: Option<u64>,
    max: usize,
}

impl Window {
    /// A window of at most `max` unacknowledged publishes (the client's in-flight limit).
    pub fn new(max: usize) -> Self {
        Self {
            in_flight: VecDeque::new(),
            cursor: None,
            max: max.max(1),
        }
    }

    /// Whether another publish may be handed over.
    pub fn has_room(&self) -> bool {
        self.in_flight.len() < self.max
    }

    /// Whether another clip chunk may be handed over.
    pub fn has_chunk_room(&self) -> bool {
        self.has_room() && self.chunks() < CHUNKS_IN_FLIGHT
    }

    fn chunks(&self) -> usize {
        self.in_flight
            .iter()
            .filter(|f| matches!(f.what, Sent::Chunk { .. }))
            .count()
    }

    /// The newest outbox entry handed over (or passed over): the next is the one after it.
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// Moves the cursor past an entry that was dropped rather than sent.
    pub fn pass_over(&mut self, seq: u64) {
        self.cursor = Some(seq);
    }

    /// Records a publish just handed to the client.
    pub fn handed(&mut self, what: Sent) {
        if let Sent::Record(seq) = what {
            self.cursor = Some(seq);
        }
        self.in_flight.push_back(InFlight { what, pkid: None });
    }

    /// The client reports a publish leaving with `pkid`: a first send takes the oldest entry
    /// still unnumbered; a replay after a resumed session carries an id already known.
    pub fn sent(&mut self, pkid: u16) {
        if self.in_flight.iter().any(|f| f.pkid == Some(pkid)) {
            return;
        }
        if let Some(f) = self.in_flight.iter_mut().find(|f| f.pkid.is_none()) {
            f.pkid = Some(pkid);
        }
    }

    /// The broker acknowledged `pkid`: what it carried, if the window knew it.
    pub fn acked(&mut self, pkid: u16) -> Option<Sent> {
        let i = self.in_flight.iter().position(|f| f.pkid == Some(pkid))?;
        self.in_flight.remove(i).map(|f| f.what)
    }

    /// The broker forgot the session (or its replay list was discarded): nothing handed over
    /// will arrive, and everything unacknowledged goes again from the oldest.
    pub fn session_lost(&mut self) {
        self.in_flight.clear();
        self.cursor = None;
    }

    /// Whether everything handed over has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// The chunks of `clip` on their way.
    pub fn sending(&self, clip: &str) -> BTreeSet<u32> {
        self.in_flight
            .iter()
            .filter_map(|f| match &f.what {
                Sent::Chunk { clip: c, index } if c == clip => Some(*index),
                _ => None,
            })
            .collect()
    }

    /// Whether the clearing publish of `topic` is on its way.
    pub fn clearing(&self, topic: &str) -> bool {
        self.in_flight
            .iter()
            .any(|f| matches!(&f.what, Sent::Clear(t) if t == topic))
    }

    /// Whether any of the outbox entries `seqs` was handed over and not acknowledged.
    pub fn holds_any(&self, seqs: &[u64]) -> bool {
        self.in_flight
            .iter()
            .any(|f| matches!(f.what, Sent::Record(seq) if seqs.contains(&seq)))
    }
}

/// A token bucket for clip bytes: `rate` bytes a second, at most one second's worth banked so
/// an idle link does not save up a burst. Time comes in from the caller.
#[derive(Debug)]
pub struct RateLimit {
    rate: Option<u64>,
    tokens: f64,
    refilled: Instant,
}

impl RateLimit {
    /// `None` is no limit.
    pub fn new(rate: Option<u64>, now: Instant) -> Self {
        Self {
            rate,
            tokens: 0.0,
            refilled: now,
        }
    }

    /// Adds what the time since the last refill earned.
    pub fn refill(&mut self, now: Instant) {
        if let Some(rate) = self.rate {
            let earned = rate as f64 * now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + earned).min(rate as f64);
        }
        self.refilled = now;
    }

    /// Whether a chunk may go now; it may overdraw, and the next waits until it is repaid.
    pub fn allows(&self) -> bool {
        self.rate.is_none() || self.tokens > 0.0
    }

    pub fn spend(&mut self, bytes: usize) {
        self.tokens -= bytes as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn chunk(index: u32) -> Sent {
        Sent::Chunk {
            clip: "c".into(),
            index,
        }
    }

    #[test]
    fn packet_ids_go_to_publishes_in_hand_over_order() {
        let mut w = Window::new(8);
        w.handed(Sent::Record(1));
        w.handed(Sent::Status);
        w.handed(Sent::Record(2));
        w.sent(10);
        w.sent(11);
        w.sent(12);
        assert_eq!(w.acked(11), Some(Sent::Status));
        assert_eq!(w.acked(12), Some(Sent::Record(2)));
        assert_eq!(w.acked(10), Some(Sent::Record(1)));
        assert!(w.is_empty());
        assert_eq!(w.cursor(), Some(2));
    }

    #[test]
    fn an_unknown_or_repeated_ack_changes_nothing() {
        let mut w = Window::new(8);
        w.handed(Sent::Record(1));
        w.sent(5);
        assert_eq!(w.acked(6), None);
        assert_eq!(w.acked(5), Some(Sent::Record(1)));
        assert_eq!(w.acked(5), None);
    }

    #[test]
    fn a_resumed_session_replays_with_the_ids_it_had() {
        let mut w = Window::new(8);
        w.handed(Sent::Record(1));
        w.handed(Sent::Record(2));
        w.sent(1);
        w.sent(2);
        // Connection lost, session kept: the client replays both with their ids, then the
        // next new publish leaves.
        w.sent(1);
        w.sent(2);
        w.handed(Sent::Record(3));
        w.sent(3);
        assert_eq!(w.acked(3), Some(Sent::Record(3)));
        assert_eq!(w.acked(1), Some(Sent::Record(1)));
        assert_eq!(w.acked(2), Some(Sent::Record(2)));
        assert_eq!(w.cursor(), Some(3));
    }

    #[test]
    fn a_lost_session_starts_again_from_the_oldest() {
        let mut w = Window::new(2);
        w.handed(Sent::Record(4));
        w.handed(Sent::Record(5));
        w.sent(1);
        assert!(!w.has_room());
        w.session_lost();
        assert!(w.has_room());
        assert_eq!(w.cursor(), None);
        // The ids of the old connection mean nothing now.
        assert_eq!(w.acked(1), None);
    }

    #[test]
    fn chunks_take_at_most_their_share_of_the_window() {
        let mut w = Window::new(10);
        for i in 0..CHUNKS_IN_FLIGHT as u32 {
            assert!(w.has_chunk_room());
            w.handed(chunk(i));
        }
        assert!(!w.has_chunk_room());
        assert!(w.has_room(), "records still go beside the chunks");
        assert_eq!(w.sending("c"), (0..CHUNKS_IN_FLIGHT as u32).collect());
        assert!(w.sending("other").is_empty());
        w.sent(1);
        assert_eq!(w.acked(1), Some(chunk(0)));
        assert!(w.has_chunk_room());
    }

    #[test]
    fn a_full_window_leaves_no_chunk_room() {
        let mut w = Window::new(1);
        w.handed(Sent::Record(1));
        assert!(!w.has_chunk_room());
    }

    #[test]
    fn purged_records_in_flight_and_clears_are_seen() {
        let mut w = Window::new(8);
        w.handed(Sent::Record(7));
        w.handed(Sent::Clear("a/b".into()));
        assert!(w.holds_any(&[3, 7]));
        assert!(!w.holds_any(&[3]));
        assert!(w.clearing("a/b"));
        assert!(!w.clearing("a/c"));
    }

    #[test]
    fn passing_over_moves_the_cursor_without_a_publish() {
        let mut w = Window::new(8);
        w.pass_over(9);
        assert_eq!(w.cursor(), Some(9));
        assert!(w.is_empty());
    }

    #[test]
    fn the_rate_limit_banks_at_most_one_second() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(Some(1000), t0);
        assert!(!r.allows(), "nothing is banked at the start");
        r.refill(t0 + Duration::from_secs(10));
        assert!(r.allows());
        r.spend(1500);
        assert!(!r.allows(), "a chunk may overdraw; the next waits");
        r.refill(t0 + Duration::from_millis(10_400));
        assert!(!r.allows());
        r.refill(t0 + Duration::from_millis(10_600));
        assert!(r.allows());
    }

    #[test]
    fn no_rate_limit_always_allows() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(None, t0);
        r.spend(1 << 30);
        r.refill(t0);
        assert!(r.allows());
    }
}
