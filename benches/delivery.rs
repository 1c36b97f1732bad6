//! An alert's cost from `Session::accept` to the publish handed to the MQTT client and its
//! acknowledgement deleting it from the outbox: the gate, the outbox's encoding, its write and
//! delete, and whatever the session does twice on the way.
//!
//! The outbox lives on tmpfs (`/dev/shm`) so that the figure is the CPU's work, not the
//! disk's fsync; a counting link stands in for the MQTT client (the bytes go nowhere).
//!
//! Run: `cargo bench --bench delivery`. Writes its figures to BENCHMARKS.md.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use camagent::command::ReplayGuard;
use camagent::policy::consent::LedgerFile;
use camagent::policy::disclosure::DisclosureLog;
use camagent::policy::{Admitted, Field, Flow, Gate, Policy, PseudonymKey};
use camagent::record::{Record, Value};
use camagent::state_dir::StateDir;
use camagent::uplink::driver::Net;
use camagent::uplink::link::{Link, NotTaken};
use camagent::uplink::outbox::Outbox;
use camagent::uplink::session::{Session, Stores};
use camagent::uplink::upload::Uploads;

mod common;

const ALERTS: u32 = 400;
const RUNS: usize = 7;
/// A 640×360 snapshot's JPEG is about this size.
const JPEG_BYTES: usize = 48 * 1024;

/// Counts publishes and the bytes they carry.
#[derive(Default)]
struct CountingLink {
    publishes: Cell<u64>,
    bytes: Cell<u64>,
}

impl Link for CountingLink {
    fn publish(&self, admitted: &Admitted) -> Result<(), NotTaken> {
        self.publishes.set(self.publishes.get() + 1);
        self.bytes
            .set(self.bytes.get() + admitted.payload().len() as u64);
        Ok(())
    }
    fn subscribe(&self, _: &str) -> Result<(), NotTaken> {
        Ok(())
    }
    fn unsubscribe(&self, _: &str) -> Result<(), NotTaken> {
        Ok(())
    }
    fn reconnect(&self) -> Result<(), NotTaken> {
        Ok(())
    }
    async fn disconnect(&self) -> Result<(), NotTaken> {
        Ok(())
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary state directory");
    let state = StateDir::new(tmp.path());
    let policy = Policy::load(&root.join("policies/reolink.toml")).expect("reolink profile");
    let gate = Gate::new(
        policy,
        PseudonymKey::from_bytes(&[7; 32]),
        "acme/cams",
        Some("CAMSN0042".into()),
    );
    let (outbox, _) = Outbox::open(&state.outbox(), 1 << 30).expect("outbox");
    let stores = Stores {
        ledger: LedgerFile::new(state.consent_ledger()),
        disclosures: DisclosureLog::new(state.disclosure_log(), 1 << 20),
        replay: ReplayGuard::new(state.replay_guard()),
        verify_key: None,
        uploads: Uploads::open(&state.clips()),
        upload_rate: None,
        clips_max_bytes: 1 << 20,
        state_dir: state.clone(),
    };
    let (will, _) = tokio::sync::watch::channel(None);
    let mut session = Session::new(
        gate,
        outbox,
        CountingLink::default(),
        stores,
        16,
        Arc::new(AtomicBool::new(false)),
        will,
    );
    session.on_net(Net::Up {
        session_present: false,
    });
    // The online status took packet id 1.
    session.on_net(Net::Sent(1));
    session.on_net(Net::Acked(1));
    let mut pkid: u16 = 1;

    let jpeg: Vec<u8> = (0..JPEG_BYTES).map(|_| fastrand::u8(..)).collect();
    let alert = Record::new(
        Flow::Alarm,
        BTreeMap::from([
            (Field::SerialNumber, Value::Text("CAMSN0042".into())),
            (
                Field::EventData,
                Value::Json(serde_json::json!({
                    "event_id": "0b7e6c3e-8f1a-4d7e-9c55-2f1f6a1f0b9d",
                    "phase": "start",
                    "time": "2026-11-23T22:00:00.000Z",
                    "score": 0.42,
                    "regions": [[10, 20, 64, 48]],
                })),
            ),
            (Field::Snapshot, Value::jpeg(jpeg)),
        ]),
    )
    .unwrap();

    let per_alert_ns = common::median_ns(RUNS, ALERTS, || {
        session.accept(alert.clone());
        pkid = pkid.wrapping_add(1).max(1);
        session.on_net(Net::Sent(pkid));
        session.on_net(Net::Acked(pkid));
    });
    let clone_ns = common::median_ns(RUNS, ALERTS, || {
        std::hint::black_box(alert.clone());
    });
    let stats = session.stats();
    assert_eq!(
        stats.delivered,
        u64::from(ALERTS) * RUNS as u64,
        "every alert was published and acknowledged"
    );
    assert_eq!(session.status().outbox_records, 0);
    let cost_us = (per_alert_ns - clone_ns) / 1000.0;

    let cpu = common::cpu();
    let section = format!(
        "## Alert path: accept to publish\n\n\
         `cargo bench --bench delivery` — median of {RUNS} runs of {ALERTS} alerts, one core of {cpu}.\n\
         An alert with a {} KiB JPEG snapshot under the Reolink profile, from `Session::accept`\n\
         to the publish handed to the client and its acknowledgement deleting it from the outbox\n\
         (tmpfs, so this is CPU work, not fsync; a counting link stands in for the client).\n\n\
         | work | µs per alert |\n| --- | ---: |\n\
         | accept → gate → outbox → publish → ack → delete | {cost_us:.0} |\n",
        JPEG_BYTES / 1024,
    );
    println!("{section}");
    common::update_benchmarks(&root.join("BENCHMARKS.md"), "## Alert path", &section);
}
