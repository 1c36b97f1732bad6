//! Memory over source restarts: a 1 s still recording loops as the camera, so the pipeline
//! is torn down and built again every second, as it is for an RTSP camera that keeps
//! dropping out. The agent's resident and private memory (VmRSS, RssAnon) are sampled all
//! along and compared over restarts 50–99 (start-up over) and the last 50 of
//! `CAMAGENT_RESTARTS` (500 unless set), side by side with the same agent under glibc's
//! default arenas (`MALLOC_ARENA_MAX=16`, eight per core on this 2-core machine).
//!
//! Run: `cargo bench --bench restarts`. Writes its figures to BENCHMARKS.md.

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use support::scenes::*;
use support::*;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let restarts: usize = env_or("CAMAGENT_RESTARTS", 500);
    let world = World::new();
    let broker = world.broker(false);
    let still = Scene {
        seconds: 1,
        brightness: |_| 1.0,
        object: |_| None,
    };
    let clip = encode(world.path(), "still", &still, Codec::H264);
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    let agent = |name: &str, env: &[(&str, &str)]| {
        let mut setup = AgentSetup::new(&world, broker.port);
        setup.extra = format!(
            "[capture]\nsource = \"file\"\npath = \"{}\"\nloop = true\n",
            clip.display()
        );
        let config = setup.write(&world, &world.path().join(name), &policy);
        Agent::start_with_env(env!("CARGO_BIN_EXE_camagent"), &config, env)
    };
    let capped = agent("capped", &[]);
    let default = agent("default", &[("MALLOC_ARENA_MAX", "16")]);
    // Memory is sampled four times a second all along: a restart frees and takes back tens of
    // MiB (decoder pools, buffers), so one sample says more about when it fell than about
    // the trend. Each agent's figure is the median over a window of 50 restarts.
    let started = |a: &Agent| a.log().matches("capture source starting").count();
    let mut samples: [Vec<(usize, u64, u64)>; 2] = [Vec::new(), Vec::new()];
    let deadline = std::time::Instant::now() + Duration::from_secs(restarts as u64 * 3 + 60);
    loop {
        let mut done = true;
        for (agent, into) in [&capped, &default].into_iter().zip(samples.iter_mut()) {
            let n = started(agent);
            let (rss, anon) = common::memory_kib(agent.child.id());
            into.push((n, rss, anon));
            done &= n > restarts;
        }
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not {restarts} restarts; agent log:\n{}",
            capped.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let window = |agent: usize, from: usize| {
        let median = |pick: fn(&(usize, u64, u64)) -> u64| {
            let mut v: Vec<u64> = samples[agent]
                .iter()
                .filter(|s| (from..from + 50).contains(&s.0))
                .map(pick)
                .collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        (median(|s| s.1), median(|s| s.2))
    };
    let (warm, end) = (
        (window(0, 50), window(1, 50)),
        (window(0, restarts - 50), window(1, restarts - 50)),
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    let row = |what: &str, pick: fn(&(u64, u64)) -> u64, (a, b): (&(u64, u64), &(u64, u64))| {
        format!(
            "| {what} | {:.1} MiB | {:.1} MiB | {:+.2} MiB |\n",
            mib(pick(a)),
            mib(pick(b)),
            mib(pick(b)) - mib(pick(a))
        )
    };
    let rss = |m: &(u64, u64)| m.0;
    let anon = |m: &(u64, u64)| m.1;
    let section = format!(
        "## Memory over source restarts\n\n\
         `cargo bench --bench restarts` — {when}, {cpu}, 2 cores. A 1 s still H.264 recording \
         loops as the camera: the pipeline is torn down and built again every second, and \
         malloc's free pages are handed back after each run (`os::release_free_memory`). Two \
         agents side by side: as shipped (glibc's malloc held to two arenas, \
         `os::limit_malloc_arenas`), and under glibc's default (`MALLOC_ARENA_MAX=16`, eight \
         per core), where every restart's new streaming threads take arenas of their own. \
         Memory is sampled every 250 ms; each figure is the median over restarts 50–99 \
         (start-up over) and over the last 50 of {restarts}:\n\n\
         | agent, memory | restarts 50–99 | restarts {last}–{restarts} | growth |\n|---|---:|---:|---:|\n\
         {a}{b}{c}{d}\n\
         As shipped, the agent holds {ratio:.2}× the private memory of the default arenas over \
         the last 50 restarts.\n",
        when = humantime::format_rfc3339_seconds(SystemTime::now()),
        cpu = common::cpu(),
        last = restarts - 49,
        a = row("shipped, resident (VmRSS)", rss, (&warm.0, &end.0)),
        b = row("shipped, private (RssAnon)", anon, (&warm.0, &end.0)),
        c = row("default arenas, resident", rss, (&warm.1, &end.1)),
        d = row("default arenas, private", anon, (&warm.1, &end.1)),
        ratio = end.0 .1 as f64 / end.1 .1 as f64,
    );
    print!("{section}");
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## Memory over source restarts",
        &section,
    );
}
