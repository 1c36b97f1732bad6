//! The session's orderings without a broker: a recording [`Link`] stands in for the MQTT
//! client, and the tests play the driver's part by feeding [`Net`] events. The outbox, the
//! uploads and the ledger are the real ones, in a temporary directory.
//!
//! Over 400 lines: one rig, and one test per ordering the session promises.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::*;
use crate::command::ReplayGuard;
use crate::policy::consent::{uuid, Choice, LedgerFile, Via};
use crate::policy::{Field, Flow, Policy, PseudonymKey};
use crate::record::Value;
use crate::uplink::link::NotTaken;
use crate::uplink::window::CHUNKS_IN_FLIGHT;
use crate::vocabulary::ContentType;
use crate::wire::Manifest;

const POLICY: &str = r#"
schema = 1
name = "t"
version = "1"
[[purpose]]
id = "alerts"
flow = "alarm"
legal_basis = "contract"
fields = ["event_data", "snapshot"]
[[purpose]]
id = "presence"
flow = "status"
legal_basis = "contract"
fields = ["online_status"]
[[purpose]]
id = "clips"
flow = "clip"
legal_basis = "consent"
fields = ["event_data", "clip"]
"#;

/// What the session handed to the client, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Status,
    Record(u64),
    Chunk(String, u32),
}

#[derive(Default)]
struct Wire {
    out: Vec<Out>,
    /// The topic and payload of each publish, beside `out`.
    topics: Vec<String>,
    payloads: Vec<Vec<u8>>,
    /// The client's queue is full: requests are refused.
    full: bool,
    reconnects: u32,
}

/// Records every publish; numbers them as the client would (pkid = position + 1).
#[derive(Clone, Default)]
struct FakeLink(Rc<RefCell<Wire>>);

impl Link for FakeLink {
    fn publish(&self, admitted: &Admitted) -> Result<(), NotTaken> {
        let mut wire = self.0.borrow_mut();
        if wire.full {
            return Err(NotTaken("the queue is full".into()));
        }
        let out = if let Ok(chunk) = crate::wire::chunk::parse(admitted.payload()) {
            Out::Chunk(chunk.0.clip_id, chunk.0.index)
        } else {
            let body: Json = serde_json::from_slice(admitted.payload()).unwrap_or_default();
            match body["seq"].as_u64() {
                Some(seq) => Out::Record(seq),
                None => Out::Status,
            }
        };
        wire.out.push(out);
        wire.topics.push(admitted.topic().to_owned());
        wire.payloads.push(admitted.payload().to_vec());
        Ok(())
    }

    fn subscribe(&self, _: &str) -> Result<(), NotTaken> {
        Ok(())
    }

    fn unsubscribe(&self, _: &str) -> Result<(), NotTaken> {
        Ok(())
    }

    fn reconnect(&self) -> Result<(), NotTaken> {
        self.0.borrow_mut().reconnects += 1;
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), NotTaken> {
        Ok(())
    }
}

struct Rig {
    dir: TempDir,
    link: FakeLink,
    session: Session<FakeLink>,
    discard: Arc<AtomicBool>,
    /// Packet ids given so far, in the order publishes left.
    pkids: u16,
}

impl Rig {
    fn new(window: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let policy = Policy::parse(POLICY, Path::new("t")).unwrap();
        let gate = Gate::new(policy, PseudonymKey::from_bytes(&[3; 32]), "acme", None);
        let (outbox, _) = Outbox::open(&state.outbox(), 1 << 20).unwrap();
        let stores = Stores {
            ledger: LedgerFile::new(state.consent_ledger()),
            disclosures: DisclosureLog::new(state.disclosure_log(), 1 << 20),
            replay: ReplayGuard::new(state.replay_guard()),
            verify_key: None,
            uploads: Uploads::open(&state.clips()),
            upload_rate: None,
            clips_max_bytes: 1 << 20,
            state_dir: state,
        };
        let link = FakeLink::default();
        let discard = Arc::new(AtomicBool::new(false));
        let (will, _) = watch::channel(None);
        let session = Session::new(
            gate,
            outbox,
            link.clone(),
            stores,
            window,
            discard.clone(),
            will,
        );
        Self {
            dir,
            link,
            session,
            discard,
            pkids: 0,
        }
    }

    fn up(&mut self, session_present: bool) {
        self.session.on_net(Net::Up { session_present });
    }

    fn down(&mut self) {
        let (resume, resumed) = oneshot::channel();
        self.session.on_net(Net::Down {
            error: "test".into(),
            resume,
        });
        // The driver goes on only once the session has let it.
        assert!(resumed.blocking_recv().is_ok());
    }

    /// The client numbers what it has not numbered yet, as it leaves.
    fn leave(&mut self) -> Vec<u16> {
        let total = self.link.0.borrow().out.len() as u16;
        let ids: Vec<u16> = (self.pkids + 1..=total).collect();
        for &id in &ids {
            self.session.on_net(Net::Sent(id));
        }
        self.pkids = total;
        ids
    }

    fn ack(&mut self, pkid: u16) {
        self.session.on_net(Net::Acked(pkid));
    }

    fn out(&self) -> Vec<Out> {
        self.link.0.borrow().out.clone()
    }

    fn records(&self) -> Vec<u64> {
        self.out()
            .into_iter()
            .filter_map(|o| match o {
                Out::Record(seq) => Some(seq),
                _ => None,
            })
            .collect()
    }

    fn chunks_out(&self) -> usize {
        self.out()
            .iter()
            .filter(|o| matches!(o, Out::Chunk(..)))
            .count()
    }

    fn consent(&mut self, purpose: &str, choice: Choice) {
        let policy = self.session.gate().policy().clone();
        LedgerFile::new(StateDir::new(self.dir.path()).consent_ledger())
            .update(|l| l.record(&policy, purpose, choice, Via::Local, uuid()))
            .unwrap();
        // The ledger's stamp is its modification time: make the change visible at once.
        self.session.ledger_stamp = None;
        self.session.tick();
    }

    /// Stores `bytes` of media under `id` and queues its upload in 1 KiB chunks.
    fn upload(&mut self, id: &str, content_type: ContentType, bytes: usize) {
        let manifest = Manifest {
            clip_id: id.into(),
            content_type,
            bytes: bytes as u64,
            duration_ms: 0,
            sha256: String::new(),
            chunk_bytes: 1024,
            chunks: Manifest::chunk_count(bytes as u64, 1024),
            event_ids: vec![],
            fragments: Vec::new(),
            cut_short: false,
        };
        let dir = StateDir::new(self.dir.path()).clips();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(manifest.path_in(&dir), vec![7u8; bytes]).unwrap();
        self.session.upload(manifest);
    }
}

fn alert() -> Record {
    Record::new(
        Flow::Alarm,
        BTreeMap::from([(Field::EventData, Value::Json(json!({"event": "start"})))]),
    )
    .unwrap()
}

fn clip_record() -> Record {
    Record::new(
        Flow::Clip,
        BTreeMap::from([(Field::EventData, Value::Json(json!({"event_ids": []})))]),
    )
    .unwrap()
}

#[test]
fn records_leave_in_outbox_order_within_the_window() {
    let mut rig = Rig::new(3);
    for _ in 0..5 {
        rig.session.accept(alert());
    }
    assert!(rig.out().is_empty(), "nothing goes before the connection");
    rig.up(false);
    // The online status, then as many records as the window holds.
    assert_eq!(rig.out(), vec![Out::Status, Out::Record(0), Out::Record(1)]);
    rig.leave();
    rig.ack(2);
    assert_eq!(
        rig.records(),
        vec![0, 1, 2],
        "an ack makes room for the next"
    );
    rig.leave();
    for pkid in [1, 3, 4] {
        rig.ack(pkid);
    }
    rig.leave();
    assert_eq!(rig.records(), vec![0, 1, 2, 3, 4]);
    for pkid in 5..=6 {
        rig.ack(pkid);
    }
    assert!(rig.session.settled());
    assert_eq!(rig.session.status().outbox_records, 0);
    assert_eq!(rig.session.stats().delivered, 5);
}

#[test]
fn a_resumed_session_sends_nothing_twice() {
    let mut rig = Rig::new(8);
    rig.up(false);
    for _ in 0..3 {
        rig.session.accept(alert());
    }
    rig.leave();
    rig.ack(2);
    rig.down();
    rig.up(true);
    // Only the new online status: the broker holds the rest, and the client replays them
    // with their ids.
    assert_eq!(rig.records(), vec![0, 1, 2]);
    for pkid in [3, 4] {
        rig.session.on_net(Net::Sent(pkid));
    }
    rig.leave();
    for pkid in [3, 4] {
        rig.ack(pkid);
    }
    assert_eq!(rig.session.status().outbox_records, 0);
    assert_eq!(rig.session.stats().delivered, 3);
}

#[test]
fn a_lost_session_sends_again_from_the_oldest_unacknowledged() {
    let mut rig = Rig::new(8);
    rig.up(false);
    for _ in 0..3 {
        rig.session.accept(alert());
    }
    rig.leave();
    rig.ack(2); // record 0
    rig.down();
    rig.up(false);
    assert_eq!(rig.records(), vec![0, 1, 2, 1, 2]);
    // Acks of the old connection's ids mean nothing now.
    rig.ack(3);
    assert_eq!(rig.session.status().outbox_records, 2);
}

#[test]
fn a_purge_while_offline_has_the_replay_list_discarded() {
    let mut rig = Rig::new(8);
    rig.consent("clips", Choice::Given);
    rig.up(false);
    rig.session.accept(clip_record());
    rig.leave();
    assert_eq!(rig.records(), vec![0, 1], "seq 0 is the consent receipt");
    rig.down();
    assert!(!rig.discard.load(Ordering::SeqCst));
    rig.consent("clips", Choice::Withdrawn);
    assert!(
        rig.discard.load(Ordering::SeqCst),
        "the withdrawn record sits in the client's replay list"
    );
    // The driver drops its list and reports the session as lost.
    rig.up(false);
    assert!(
        !rig.records()[2..].contains(&1),
        "the withdrawn record went again: {:?}",
        rig.records()
    );
}

#[test]
fn a_purge_while_connected_leaves_the_replay_list_alone() {
    let mut rig = Rig::new(8);
    rig.consent("clips", Choice::Given);
    rig.up(false);
    rig.session.accept(clip_record());
    rig.consent("clips", Choice::Withdrawn);
    assert!(!rig.discard.load(Ordering::SeqCst));
}

#[test]
fn chunks_stay_within_their_window_and_alerts_pass_them() {
    let mut rig = Rig::new(16);
    rig.consent("clips", Choice::Given);
    rig.up(false);
    rig.leave();
    rig.ack(1);
    rig.ack(2);
    rig.upload("c1", ContentType::Mp4, 10 * 1024);
    assert_eq!(rig.chunks_out(), CHUNKS_IN_FLIGHT);
    rig.session.accept(alert());
    assert_eq!(
        rig.out().last(),
        Some(&Out::Record(1)),
        "the alert does not wait behind the clip"
    );
    let ids = rig.leave();
    // Each acknowledged chunk lets the next go, and no chunk goes twice.
    rig.ack(ids[0]);
    assert_eq!(rig.chunks_out(), CHUNKS_IN_FLIGHT + 1);
    let mut pending = ids[1..].to_vec();
    while !pending.is_empty() {
        for id in std::mem::take(&mut pending) {
            rig.ack(id);
        }
        pending = rig.leave();
    }
    let mut chunks: Vec<u32> = Vec::new();
    for o in rig.out() {
        if let Out::Chunk(_, i) = o {
            chunks.push(i);
        }
    }
    assert_eq!(chunks, (0..10).collect::<Vec<_>>(), "{:?}", rig.out());
    assert_eq!(
        rig.session.stats().clips_delivered,
        1,
        "{:?}",
        rig.session.status()
    );
}

#[test]
fn an_alert_waits_for_its_chunked_snapshot() {
    let mut rig = Rig::new(16);
    rig.up(false);
    rig.leave();
    rig.ack(1);
    rig.upload("e1-snapshot", ContentType::Jpeg, 6 * 1024);
    let mut waiting = alert();
    waiting.awaits = Some("e1-snapshot".into());
    rig.session.accept(waiting);
    assert!(rig.records().is_empty(), "the picture goes first");
    while rig.records().is_empty() {
        let ids = rig.leave();
        assert!(!ids.is_empty(), "delivery stalled: {:?}", rig.out());
        for id in ids {
            rig.ack(id);
        }
    }
    assert_eq!(rig.chunks_out(), 6);
    assert!(matches!(rig.out().last(), Some(Out::Record(0))));
}

#[test]
fn a_full_client_queue_loses_nothing() {
    let mut rig = Rig::new(8);
    rig.up(false);
    rig.link.0.borrow_mut().full = true;
    rig.session.accept(alert());
    assert!(rig.records().is_empty());
    rig.link.0.borrow_mut().full = false;
    rig.session.tick();
    assert_eq!(rig.records(), vec![0]);
}

#[test]
fn nothing_new_goes_after_going_offline() {
    let mut rig = Rig::new(8);
    rig.up(false);
    rig.session.go_offline();
    rig.session.accept(alert());
    assert_eq!(
        rig.out(),
        vec![Out::Status, Out::Status],
        "online, then offline"
    );
    assert_eq!(
        rig.session.status().outbox_records,
        1,
        "kept for the next start"
    );
}

#[test]
fn a_record_queued_before_the_gate_changed_is_gated_again() {
    let mut rig = Rig::new(8);
    rig.session.accept(alert());
    // Queued (and gated) offline; then the device gets a new identity, as after an erase.
    rig.session.gate.set_key(PseudonymKey::from_bytes(&[4; 32]));
    let now = rig.session.gate.admit(&alert(), Some(0)).unwrap();
    rig.up(false);
    let wire = rig.link.0.borrow();
    let sent = wire.out.iter().position(|o| *o == Out::Record(0)).unwrap();
    assert_eq!(
        wire.topics[sent],
        now.topic(),
        "sent under the old identity"
    );
}

#[test]
fn a_record_just_queued_is_sent_without_reading_the_outbox_back() {
    let mut rig = Rig::new(8);
    rig.up(false);
    rig.link.0.borrow_mut().full = true;
    rig.session.accept(alert());
    // The entry's file goes bad after it was written: the gate output kept in memory is what
    // is sent, so the outbox was not read back (a read would quarantine it).
    let entry = std::fs::read_dir(StateDir::new(rig.dir.path()).outbox())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "rec"))
        .unwrap();
    std::fs::write(&entry, b"torn").unwrap();
    rig.link.0.borrow_mut().full = false;
    rig.session.tick();
    assert_eq!(rig.records(), vec![0]);
    assert_eq!(rig.session.status().quarantined, 0);
}

/// A clip whose record the outbox cannot take never goes up: its chunks could never be
/// assembled. It is deleted and counted as evicted.
#[test]
fn a_clip_whose_record_is_not_queued_is_not_uploaded() {
    let mut rig = Rig::new(16);
    rig.consent("clips", Choice::Given);
    // Offline, fill the outbox (1 MiB) until not even a bare alert fits.
    for bytes in [100 * 1024, 10 * 1024, 1024, 0] {
        let picture = || {
            let fields = BTreeMap::from([(Field::Snapshot, Value::jpeg(vec![0xff; bytes]))]);
            Record::new(Flow::Alarm, fields).unwrap()
        };
        while rig.session.accept(picture()) {}
    }
    let clip = |id: &str| Manifest {
        clip_id: id.into(),
        content_type: ContentType::Mp4,
        bytes: 4096,
        duration_ms: 1000,
        sha256: String::new(),
        chunk_bytes: 1024,
        chunks: 4,
        event_ids: vec![id.into()],
        fragments: Vec::new(),
        cut_short: false,
    };
    let clips = StateDir::new(rig.dir.path()).clips();
    std::fs::create_dir_all(&clips).unwrap();
    std::fs::write(clip("c1").path_in(&clips), vec![7u8; 4096]).unwrap();
    rig.session.deliver_clip(clip_record(), clip("c1"));
    assert!(!clip("c1").path_in(&clips).exists(), "the clip is deleted");
    assert_eq!(rig.session.stats().clips_evicted, 1);
    rig.up(false);
    while !rig.leave().is_empty() {}
    assert_eq!(rig.chunks_out(), 0, "{:?}", rig.out());
}

/// An alert whose chunked snapshot was evicted before it went does not name a picture that
/// will never come: it goes without it, the snapshot listed as unavailable.
#[test]
fn an_alert_whose_snapshot_was_evicted_goes_without_it() {
    let mut rig = Rig::new(16);
    rig.upload("e1-snapshot", ContentType::Jpeg, 6 * 1024);
    let manifest = rig
        .session
        .stores
        .uploads
        .get("e1-snapshot")
        .unwrap()
        .manifest
        .clone();
    let mut waiting = Record::new(
        Flow::Alarm,
        BTreeMap::from([
            (Field::EventData, Value::Json(json!({"event": "start"}))),
            (Field::Snapshot, Value::structured(&manifest)),
        ]),
    )
    .unwrap();
    waiting.awaits = Some("e1-snapshot".into());
    rig.session.accept(waiting);
    // Offline, the clip quota evicts the picture.
    assert!(rig.session.evict_clips(u64::MAX, "test"));
    rig.up(false);
    while rig.records().is_empty() {
        let ids = rig.leave();
        assert!(!ids.is_empty(), "delivery stalled: {:?}", rig.out());
    }
    assert_eq!(rig.chunks_out(), 0);
    let wire = rig.link.0.borrow();
    let sent: Json = serde_json::from_slice(wire.payloads.last().unwrap()).unwrap();
    assert!(sent["fields"].get("snapshot").is_none(), "{sent}");
    assert_eq!(sent["unavailable"], json!(["snapshot"]), "{sent}");
}
