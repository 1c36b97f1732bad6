//! Memory over a long run with an event every few seconds: a recorded walk (one every 6 s)
//! loops as the camera, every event sends its alert and snapshot and streams its clip to the
//! reference receiver, which confirms each one (`outbox.cloud_confirms`), so clips come and go
//! on the device all along. The agent's resident and private memory (VmRSS, RssAnon) are
//! sampled every minute for `CAMAGENT_SOAK_MINUTES` (120 unless set); the growth is the
//! least-squares slope from the tenth minute (start-up over) to the end.
//!
//! Run: `cargo build --release -p camagent-receiver && cargo bench --bench soak` (the receiver
//! is another package's binary: the bench does not build it). Writes its figures to
//! BENCHMARKS.md.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use support::scenes::*;
use support::*;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let minutes: u64 = env_or("CAMAGENT_SOAK_MINUTES", 120);
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Cloud::new();
    let key_file = cloud.key_file(world.path());
    let receiver = ReceiverProcess::start(
        env!("CARGO_BIN_EXE_camagent"),
        &world,
        broker.port,
        world.path(),
        &["--command-key".as_ref(), key_file.as_os_str()],
    );
    let walk = Scene {
        seconds: 6,
        brightness: |_| 1.0,
        object: |f| (10..30).contains(&f).then(|| ((f - 10) * 12, 70, 30, 70)),
    };
    let clip = encode(world.path(), "walk", &walk, Codec::H264);
    let mut setup = AgentSetup::new(&world, broker.port);
    setup.extra = format!(
        "[capture]\nsource = \"file\"\npath = \"{}\"\nloop = true\npreroll = \"1s\"\npostroll = \"1s\"\n\
         [motion.events]\ngap = \"1s\"\n\
         [outbox]\ncloud_confirms = true\n[commands]\nverify_key = \"{}\"\n",
        clip.display(),
        cloud.public_hex()
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    let config = setup.write(&world, &world.path().join("agent"), &policy);
    let agent = Agent::start(env!("CARGO_BIN_EXE_camagent"), &config);

    let started = Instant::now();
    let mut samples = Vec::new();
    for minute in 1..=minutes {
        let due = started + Duration::from_secs(minute * 60);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let (rss, anon) = common::memory_kib(agent.child.id());
        eprintln!("minute {minute}: resident {rss} KiB, private {anon} KiB");
        samples.push((rss, anon));
    }
    let events = agent.log().matches("motion started").count();
    let verified = receiver
        .of("clip")
        .iter()
        .filter(|l| l["verified"] == true)
        .count();
    let warm = samples[9.min(samples.len() - 1)];
    let end = samples[samples.len() - 1];
    let mib = |kib: u64| kib as f64 / 1024.0;
    // One sample swings by about as much as an hour's trend (a clip's buffers come and go):
    // the trend is the least-squares slope over every minute from the tenth.
    let after_warm_up = &samples[9.min(samples.len() - 1)..];
    let per_hour = |pick: fn(&(u64, u64)) -> u64| {
        let points: Vec<(f64, f64)> = after_warm_up
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64 / 60.0, mib(pick(s))))
            .collect();
        common::slope(&points)
    };
    let peak_anon = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let section = format!(
        "## Memory over a soak\n\n\
         `cargo build --release -p camagent-receiver && cargo bench --bench soak` — {when}, {cpu}, 2 cores, {minutes} min. A recorded walk \
         loops as the camera, an event every 6 s: {events} events, each with its alert and \
         snapshot and its clip streamed to the reference receiver, which confirmed \
         {verified} clips verified (`outbox.cloud_confirms`), so clips came and went on the \
         device all along.\n\n\
         | memory | at 10 min | at {minutes} min | growth per hour (least squares, minute 10 on) |\n|---|---:|---:|---:|\n\
         | resident (VmRSS) | {r0:.1} MiB | {r1:.1} MiB | {rg:+.2} MiB |\n\
         | private (RssAnon) | {a0:.1} MiB | {a1:.1} MiB | {ag:+.2} MiB |\n\n\
         Private memory peaked at {peak:.1} MiB.\n",
        when = humantime::format_rfc3339_seconds(SystemTime::now()),
        cpu = common::cpu(),
        r0 = mib(warm.0),
        r1 = mib(end.0),
        rg = per_hour(|s| s.0),
        a0 = mib(warm.1),
        a1 = mib(end.1),
        ag = per_hour(|s| s.1),
        peak = mib(peak_anon),
    );
    print!("{section}");
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## Memory over a soak",
        &section,
    );
}
