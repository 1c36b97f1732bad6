//! Evidence that survives, measured with the shipped settings (pre-roll, post-roll, event gap,
//! clip length): a recorded scene loops as the camera, one walk every 20 s, the agent sends to a
//! loopback mutual-TLS mosquitto and a subscriber stands for the cloud.
//!
//! - **Streaming**: for each event that opens a clip, the time from motion start (the start
//!   alert's `time`, the first moving frame's capture) to the clip's first chunk at the cloud,
//!   and to its clip record (the finished clip's manifest).
//! - **Kills**: SIGKILLs at random moments 2.5–5 s after an event's start alert
//!   (`CAMAGENT_FAULT_KILLS`, 20 unless set), then what the cloud holds.
//!
//! Run: `cargo bench --bench evidence`. Writes its figures to BENCHMARKS.md.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use support::scenes::*;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");
const EVENTS: usize = 6;

fn config(world: &World, port: u16, clip: &Path) -> PathBuf {
    let mut setup = AgentSetup::new(world, port);
    setup.extra = format!(
        "[capture]\nsource = \"file\"\npath = \"{}\"\nloop = true\n",
        clip.display()
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    setup.write(world, &world.path().join("agent"), &policy)
}

fn walks(dir: &Path) -> PathBuf {
    let scene = Scene {
        seconds: 20,
        brightness: |_| 1.0,
        object: |f| (20..60).contains(&f).then(|| ((f - 20) * 6, 70, 30, 70)),
    };
    encode(dir, "walks", &scene, Codec::H264)
}

/// Seconds from each clip-opening event's motion start to its clip's first chunk and to its
/// clip record at the cloud.
fn streaming(world: &World, port: u16, clip: &Path) -> Vec<(f64, f64)> {
    let cloud = Subscriber::connect(world, port, "cloud", false);
    cloud.wait_subscribed(0);
    let agent = Agent::start(BIN, &config(world, port, clip));
    let measured = || {
        let starts: Vec<(String, SystemTime)> = cloud
            .on("/alarm")
            .iter()
            .map(|m| m.json()["fields"]["event_data"].clone())
            .filter(|e| e["phase"] == "start")
            .filter_map(|e| {
                let time = humantime::parse_rfc3339(e["time"].as_str()?).ok()?;
                Some((e["event_id"].as_str()?.to_owned(), time))
            })
            .collect();
        let chunks = cloud.on("/clip_data");
        let records = cloud.on("/clip");
        let mut out = Vec::new();
        for (id, start) in starts {
            let first_chunk = chunks
                .iter()
                .filter(|m| {
                    camagent::wire::chunk::parse(&m.payload).is_ok_and(|(h, _)| h.clip_id == id)
                })
                .map(|m| m.received)
                .min();
            let record = records
                .iter()
                .find(|m| m.json()["fields"]["clip"]["clip_id"] == id.as_str())
                .map(|m| m.received);
            if let (Some(chunk), Some(record)) = (first_chunk, record) {
                let after = |t: SystemTime| t.duration_since(start).unwrap_or_default();
                out.push((after(chunk).as_secs_f64(), after(record).as_secs_f64()));
            }
        }
        (out.len() >= EVENTS).then_some(out)
    };
    let result = wait_for(Duration::from_secs(EVENTS as u64 * 40), measured);
    result.unwrap_or_else(|| panic!("not {EVENTS} clips; agent log:\n{}", agent.log()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let kills: usize = env_or("CAMAGENT_FAULT_KILLS", 20);
    let seed = fastrand::u64(..);
    let tmp = tempfile::tempdir().unwrap();
    let clip = walks(tmp.path());

    let world = World::new();
    let broker = world.broker(false);
    let times = streaming(&world, broker.port, &clip);
    drop(broker);
    let rows: String = times
        .iter()
        .enumerate()
        .map(|(i, (chunk, record))| format!("| {} | {chunk:.2} | {record:.2} |\n", i + 1))
        .collect();
    let first = median(times.iter().map(|t| t.0).collect());
    let worst = times.iter().map(|t| t.0).fold(0.0, f64::max);
    let whole = median(times.iter().map(|t| t.1).collect());

    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    cloud.wait_subscribed(0);
    let config = config(&world, broker.port, &clip);
    let run = faults::kill_during_events(
        BIN,
        &config,
        &world.path().join("agent"),
        &cloud,
        kills,
        seed,
    );
    let cut_short = run
        .clips
        .iter()
        .filter(|(m, _)| m["cut_short"] == true)
        .count();
    let section = format!(
        "## Evidence: clips stream out, kills cost nothing written\n\n\
         `cargo bench --bench evidence` — {when}, {cpu}, 2 cores. The shipped capture and event \
         settings; a recorded scene (one walk every 20 s, H.264 with a keyframe a second) loops \
         as the camera; a mutual-TLS mosquitto on loopback; a subscriber as the cloud.\n\n\
         **Streaming.** From motion start (the first moving frame's capture, the start alert's \
         `time`) to the clip's first chunk at the cloud, and to its clip record (the finished \
         clip's manifest), per event that opens a clip:\n\n\
         | event | first chunk (s) | clip record (s) |\n|---:|---:|---:|\n{rows}\n\
         The first chunk comes {first:.2} s after motion start (median; at worst {worst:.2} s), \
         {ratio:.1}× sooner than the finished clip ({whole:.2} s), which is when the whole clip \
         used to start going up.\n\n\
         **Kills.** {kills} SIGKILLs, each at a random moment 2.5–5 s after an event's start \
         alert reached the cloud (seed {seed}), the agent restarted each time:\n\n\
         | events started | with their footage verified | ended | clips | cut short | records sent | records missing |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | {started} | {footage} | {ended} | {clips} | {cut_short} | {sent} | {missing} |\n",
        when = humantime::format_rfc3339_seconds(SystemTime::now()),
        cpu = common::cpu(),
        ratio = whole / first,
        started = run.started.len(),
        footage = run.started.len() - run.without_footage.len(),
        ended = run.ended.intersection(&run.started).count(),
        clips = run.clips.len(),
        sent = run.records_sent,
        missing = run.records_missing,
    );
    print!("{section}");
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## Evidence:",
        &section,
    );
}
