//! The whole camera, against the Motion daemon (Debian's `motion`), on the same 720p H.264
//! clips at the same analysis size and rate: CPU seconds per minute of input, peak resident
//! and private memory, events on each clip — and camagent's motion-to-alert latency at a
//! real mutual-TLS mosquitto (from the capture time of the first moving frame to the alert at
//! a subscriber). camagent runs twice per clip: decoding on demand (its default) and
//! decoding every unit (`decode = "always"`).
//!
//! Each program reads each clip in real time, alone. Run with `cargo bench --bench capture`
//! (needs `motion`, `gst-launch-1.0`, x264enc, opencv-doc, and the motion corpus's tools:
//! `scripts/install-deps` and `apt-get install motion`). Takes about fifteen minutes, and then
//! both detectors on the motion corpus (`corpus.rs`; alone: `cargo bench --bench capture --
//! corpus`; the camera alone: `-- camera`; one clip, printed only: `-- camera street`), a few
//! minutes more. The share of units decoded on demand comes from `camagent detect` on the
//! same clip.

#[path = "../common/mod.rs"]
mod common;
mod corpus;
mod substream;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use support::scenes::{self, host_gst_launch, Scene};
use support::*;

const SECONDS: u64 = 60;
/// The analysis both programs use: Motion wants sides that are multiples of 16.
const WIDTH: u32 = 320;
const HEIGHT: u32 = 176;
const FPS: u32 = 5;

/// The time between two analysed frames.
fn analysis_frame() -> Duration {
    Duration::from_secs(1) / FPS
}

struct Clip {
    name: &'static str,
    what: &'static str,
    path: PathBuf,
    seconds: u64,
    /// Events a person watching would count.
    truth: &'static str,
}

/// Encodes raw frames, or any clip GStreamer reads, to 1280×720 H.264 at 15 fps, a keyframe
/// every 2 s.
fn to_720p(source: &str, out: &Path) {
    host_gst_launch(&format!(
        "{source} ! videoconvert ! videoscale ! video/x-raw,width=1280,height=720,pixel-aspect-ratio=1/1 \
         ! videorate ! video/x-raw,framerate=15/1 ! x264enc speed-preset=superfast bitrate=2500 key-int-max=30 \
         ! h264parse ! mp4mux ! filesink location={}",
        out.display()
    ));
}

fn synthetic(dir: &Path, name: &str, scene: &Scene) -> PathBuf {
    let small = scenes::clip(dir, name, scene);
    let out = dir.join(format!("{name}-720p.mp4"));
    to_720p(
        &format!("filesrc location={} ! decodebin", small.display()),
        &out,
    );
    out
}

/// The first 60 s of opencv-doc's street scene, people walking, at 720p.
fn street(dir: &Path) -> PathBuf {
    let street = dir.join("street-720p.mp4");
    to_720p(
        &format!(
            "filesrc location=/usr/share/doc/opencv-doc/examples/data/vtest.avi ! decodebin \
             ! videorate ! video/x-raw,framerate=10/1 ! identity eos-after={}",
            SECONDS * 10
        ),
        &street,
    );
    street
}

/// Two minutes of a real street with nobody in it, then people walking in: the motion
/// corpus's `held-out/entries` (its clean plate of opencv-doc's street, with sensor noise).
fn mostly_still(dir: &Path) -> PathBuf {
    let entries = corpus::corpus_dir().join("held-out/entries.mp4");
    // The still opening (0–4.8 s) forward and back, twelve times over (no seam where the
    // picture jumps), then forward on into the walk (4.8–12 s).
    let graph = "[0:v]trim=0:4.8,setpts=PTS-STARTPTS,split[a][b];[b]reverse[r];\
                 [a][r]concat=n=2:v=1,loop=loop=11:size=96:start=0,setpts=N/10/TB[still];\
                 [0:v]trim=0:12,setpts=PTS-STARTPTS[walk];[still][walk]concat=n=2:v=1[out]";
    let joined = dir.join("mostly-still-joined.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&entries)
        .args(["-filter_complex", graph, "-map", "[out]", "-r", "10"])
        .args(["-c:v", "libx264", "-crf", "12", "-preset", "veryfast"])
        .arg(&joined)
        .status()
        .expect("ffmpeg (scripts/install-deps)");
    assert!(status.success());
    let out = dir.join("mostly-still-720p.mp4");
    to_720p(
        &format!("filesrc location={} ! decodebin", joined.display()),
        &out,
    );
    out
}

fn clips(dir: &Path) -> Vec<Clip> {
    let mostly_still = mostly_still(dir);
    let street = street(dir);
    let lights = synthetic(
        dir,
        "lights",
        &Scene {
            seconds: SECONDS as usize,
            // Lights on and off every 10 s, then a slow dusk over the last 20 s.
            brightness: |f| match f / 100 {
                0 | 2 => 1.0,
                1 | 3 => 1.6,
                _ => 1.0 - (f - 400) as f32 / 200.0 * 0.5,
            },
            object: |_| None,
        },
    );
    let visits = synthetic(
        dir,
        "visits",
        &Scene {
            seconds: SECONDS as usize,
            brightness: |_| 1.0,
            // Someone walks through for 3 s, every 10 s from 5 s on.
            object: |f| {
                let t = f % 100;
                (f >= 50 && (50..80).contains(&t)).then(|| ((t - 50) * 10, 60, 30, 70))
            },
        },
    );
    vec![
        Clip {
            name: "mostly-still",
            what: "the corpus's held-out entries clip: its still first 4.8 s forward and back for \
                   120 s, then people walk in",
            path: mostly_still,
            seconds: 127,
            truth: "1",
        },
        Clip {
            name: "street",
            what: "opencv-doc vtest.avi, people walking (first 60 s)",
            path: street,
            seconds: SECONDS,
            truth: "people in view most of the time",
        },
        Clip {
            name: "lights",
            what: "still scene, lights ×1.6 on/off every 10 s, then a slow dusk",
            path: lights,
            seconds: SECONDS,
            truth: "0",
        },
        Clip {
            name: "visits",
            what: "still scene, a person-sized box crosses for 3 s every 10 s",
            path: visits,
            seconds: SECONDS,
            truth: "6",
        },
    ]
}

struct Measured {
    cost: Cost,
    events: usize,
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// What a process cost over a clip.
#[derive(Clone)]
struct Cost {
    cpu_s: f64,
    peak_rss_kib: u64,
    /// The most RssAnon sampled while the clip played. Not at its end: once a clip ends the
    /// agent tears its pipeline down and gives the decoder's memory back.
    private_kib: u64,
    /// CPU seconds of the threads alive at the end, by name, most first.
    threads: Vec<(String, f64)>,
}

/// Lets `child` play `seconds` of a clip, then measures it and stops it.
fn measure_until_played(child: &mut Child, started: Instant, seconds: u64) -> Cost {
    let pid = child.id();
    let playing = started + Duration::from_secs(seconds);
    let until = playing + Duration::from_secs(3);
    let mut private_kib = 0;
    while Instant::now() < until {
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        if Instant::now() < playing {
            private_kib = private_kib.max(common::memory_kib(pid).1);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let measured = Cost {
        cpu_s: common::cpu_seconds(pid),
        peak_rss_kib: peak_rss_kib(pid),
        private_kib,
        threads: common::thread_cpu_seconds(pid),
    };
    signal(pid, "TERM");
    let _ = child.wait();
    measured
}

/// Starts Motion playing `clip` as a file camera at the analysis size and rate, movie and
/// picture output off, with `extra` config lines; returns it and the file its
/// `on_event_start` hook writes a line to per event.
fn spawn_motion(work: &Path, clip: &Path, extra: &str) -> (Child, PathBuf) {
    spawn_motion_on(work, &format!("file://{}", clip.display()), extra)
}

/// [`spawn_motion`] with `netcam_url` = `camera`; `extra` may turn movie output back on.
fn spawn_motion_on(work: &Path, camera: &str, extra: &str) -> (Child, PathBuf) {
    std::fs::create_dir_all(work).unwrap();
    let events = work.join("events.txt");
    let config = work.join("motion.conf");
    std::fs::write(
        &config,
        format!(
            "daemon off\nsetup_mode off\nlog_level 4\ntarget_dir {out}\nnetcam_url {camera}\n\
             width {WIDTH}\nheight {HEIGHT}\nframerate {FPS}\n\
             movie_output off\npicture_output off\nwebcontrol_port 0\nstream_port 0\n\
             on_event_start echo start >> {events}\n{extra}",
            out = work.display(),
            events = events.display()
        ),
    )
    .unwrap();
    let child = Command::new("motion")
        .args(["-n", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("motion must be installed: apt-get install motion");
    (child, events)
}

/// Events Motion's hook recorded.
fn motion_events(events: &Path) -> usize {
    std::fs::read_to_string(events)
        .unwrap_or_default()
        .lines()
        .count()
}

fn run_motion(dir: &Path, clip: &Clip) -> Measured {
    let started = Instant::now();
    let (mut child, events) =
        spawn_motion(&dir.join(format!("motion-{}", clip.name)), &clip.path, "");
    let cost = measure_until_played(&mut child, started, clip.seconds);
    Measured {
        cost,
        events: motion_events(&events),
    }
}

/// Runs the agent on `clip` against a real broker, decoding as `decode` says; returns its
/// figures and, per alert, the latency from the first moving frame's capture to the
/// subscriber.
fn run_camagent(
    world: &World,
    broker: &Broker,
    clip: &Clip,
    decode: &str,
) -> (Measured, Vec<Latency>) {
    let name = format!("{}-{decode}", clip.name);
    let cloud = Subscriber::connect(world, broker.port, &format!("cloud-{name}"), false);
    let mut setup = AgentSetup::new(world, broker.port);
    setup.extra = format!(
        "[capture]\nsource = \"file\"\npath = \"{}\"\nloop = false\ndecode = \"{decode}\"\n\n\
         [motion]\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = {FPS}\n",
        clip.path.display()
    );
    let dir = world.path().join(format!("agent-{name}"));
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    let config = setup.write(world, &dir, &policy);
    let started = Instant::now();
    let mut agent = Agent::start(env!("CARGO_BIN_EXE_camagent"), &config);
    let cost = measure_until_played(&mut agent.child, started, clip.seconds);
    let log = agent.log();
    let events = log.matches("motion started").count();
    (Measured { cost, events }, alert_latencies(&cloud, &log))
}

/// One alert's motion-to-alert latency.
#[derive(Debug, Clone, Copy)]
struct Latency {
    /// From its event's first moving frame (as the agent stamped it) to the alert's arrival.
    total: Duration,
    /// How far behind live the detector was at the frame that confirmed the motion (the
    /// agent's `behind_live_ms`): the catch-up after a cue, the decoder's queue.
    behind_live: Duration,
}

/// Per alert that reached `cloud`, its latency, with the lag the agent's `log` gives for it.
fn alert_latencies(cloud: &Subscriber, log: &str) -> Vec<Latency> {
    cloud
        .on("/alarm")
        .iter()
        .filter_map(|m| {
            let body = m.json();
            let event = &body["fields"]["event_data"];
            if event["phase"] != "start" {
                return None;
            }
            let captured = humantime::parse_rfc3339(event["time"].as_str()?).ok()?;
            let id = event["event_id"].as_str()?;
            let (started, line) = log
                .lines()
                .enumerate()
                .find(|(_, l)| l.contains("motion started") && l.contains(id))?;
            let behind_live_ms = line
                .split("behind_live_ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            let latency = Latency {
                total: m.received.duration_since(captured).unwrap_or_default(),
                behind_live: Duration::from_millis(behind_live_ms),
            };
            let beyond = latency.total.saturating_sub(latency.behind_live);
            if beyond > 2 * analysis_frame() {
                // Rare, and not reproduced at will: the agent's own account of the alert,
                // from its start to the record queued for the broker, says where it waited.
                let trail: Vec<&str> = log.lines().skip(started).take(40).collect();
                let end = trail
                    .iter()
                    .position(|l| l.contains("record queued"))
                    .map_or(trail.len(), |i| i + 1);
                eprintln!(
                    "an alert {beyond:?} beyond the detector's lag; the agent's log from its \
                     start:\n{}",
                    trail[..end].join("\n")
                );
            }
            Some(latency)
        })
        .collect()
}

/// `latencies` in a sentence: how many, min, median, p90, max, the median in analysis
/// frames; then what each took beyond the detector's lag behind live (the catch-up).
fn latency_summary(latencies: Vec<Latency>) -> String {
    if latencies.is_empty() {
        return "no alerts arrived".to_owned();
    }
    let frame = analysis_frame();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let sorted = |pick: fn(&Latency) -> Duration| {
        let mut all: Vec<Duration> = latencies.iter().map(pick).collect();
        all.sort();
        all
    };
    let total = sorted(|l| l.total);
    let beyond = sorted(|l| l.total.saturating_sub(l.behind_live));
    let lag = sorted(|l| l.behind_live);
    let max = |all: &[Duration]| *all.last().unwrap();
    format!(
        "{} alerts: min {:.0} ms, median {:.0} ms, p90 {:.0} ms, max {:.0} ms \
         (median {:.1} analysis frames of {:.0} ms). The detector was behind live by a \
         median {:.0} ms and at most {:.0} ms at the frame that confirmed the motion (the \
         catch-up after a cue, the decoder's queue); beyond that lag, the alerts took a median \
         {:.0} ms and at most {:.0} ms ({:.1} analysis frames)",
        total.len(),
        ms(total[0]),
        ms(percentile(&total, 0.5)),
        ms(percentile(&total, 0.9)),
        ms(max(&total)),
        percentile(&total, 0.5).as_secs_f64() / frame.as_secs_f64(),
        ms(frame),
        ms(percentile(&lag, 0.5)),
        ms(max(&lag)),
        ms(percentile(&beyond, 0.5)),
        ms(max(&beyond)),
        max(&beyond).as_secs_f64() / frame.as_secs_f64(),
    )
}

/// CPU seconds the clip's H.264 decode alone costs (`avdec_h264` into `fakesink`, as fast as
/// it goes): the floor under both programs, which must decode every frame to see any.
fn decode_floor(clip: &Clip) -> f64 {
    let before = common::children_cpu_seconds();
    let status = scenes::host_command("gst-launch-1.0")
        .args(["-q", "filesrc"])
        .arg(format!("location={}", clip.path.display()))
        .args([
            "!",
            "qtdemux",
            "!",
            "h264parse",
            "!",
            "avdec_h264",
            "!",
            "fakesink",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    common::children_cpu_seconds() - before
}

/// The share of the clip's H.264 units the planner decodes, by `camagent detect` (the same
/// planner and detector, offline).
fn decoded_on_demand(clip: &Clip) -> f64 {
    let (ok, _, summary) = cli(
        env!("CARGO_BIN_EXE_camagent"),
        &[
            "detect",
            "--decode",
            "on-demand",
            "--input",
            clip.path.to_str().unwrap(),
        ],
    );
    assert!(ok, "camagent detect: {summary}");
    let count = |after: &str| -> f64 {
        let at = summary.rfind(after).unwrap() + after.len();
        summary[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    count("decoded ") / count(" of ")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::args().any(|a| a == "substream") {
        return substream::against_motion(std::env::args().any(|a| a == "quick"));
    }
    let only = |part: &str| std::env::args().any(|a| a == part);
    if !only("corpus") {
        camera_against_motion();
    }
    if !only("camera") {
        corpus::against_motion();
    }
}

fn camera_against_motion() {
    let tmp = tempfile::tempdir().unwrap();
    let mut clips = clips(tmp.path());
    // `-- camera street` runs that clip alone, and only prints: BENCHMARKS holds whole runs.
    let named: Vec<String> = std::env::args()
        .filter(|a| clips.iter().any(|c| c.name == a))
        .collect();
    if !named.is_empty() {
        clips.retain(|c| named.iter().any(|n| n == c.name));
    }
    let world = World::new();
    let broker = world.broker(false);
    let mut rows = String::new();
    let mut latencies = Vec::new();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let (mut on_demand_cpu, mut always_cpu) = (0.0, 0.0);
    for clip in &clips {
        let (d, mut l) = run_camagent(&world, &broker, clip, "on-demand");
        let (a, _) = run_camagent(&world, &broker, clip, "always");
        let m = run_motion(tmp.path(), clip);
        let floor = decode_floor(clip);
        let decoded = decoded_on_demand(clip);
        let per_minute = |cpu_s: f64| cpu_s * 60.0 / clip.seconds as f64;
        eprintln!(
            "{}: camagent {:.2} s CPU ({:.2} decoding always), {} KiB private, {} events; \
             motion {:.2} s CPU, {} KiB private, {} events",
            clip.name,
            d.cost.cpu_s,
            a.cost.cpu_s,
            d.cost.private_kib,
            d.events,
            m.cost.cpu_s,
            m.cost.private_kib,
            m.events
        );
        rows.push_str(&format!(
            "| {} ({}, {} s) | {:.2} | {:.0} % | {:.2} | {:.2} | {:.2} | **{:.2}×** | {:.2}× | {:.1} / {:.1} | {:.1} / {:.1} | {} | {} / {} | {} |\n",
            clip.name,
            clip.what,
            clip.seconds,
            per_minute(floor),
            decoded * 100.0,
            per_minute(d.cost.cpu_s),
            per_minute(a.cost.cpu_s),
            per_minute(m.cost.cpu_s),
            d.cost.cpu_s / m.cost.cpu_s,
            a.cost.cpu_s / m.cost.cpu_s,
            mib(d.cost.peak_rss_kib),
            mib(d.cost.private_kib),
            mib(m.cost.peak_rss_kib),
            mib(m.cost.private_kib),
            clip.truth,
            d.events,
            a.events,
            m.events,
        ));
        latencies.append(&mut l);
        on_demand_cpu += d.cost.cpu_s;
        always_cpu += a.cost.cpu_s;
    }
    let latency = latency_summary(latencies);
    let when = humantime::format_rfc3339_seconds(SystemTime::now());
    let section = format!(
        "## Camera: camagent against the Motion daemon\n\n\
         `cargo bench --bench capture` — {when}, {cpu}, 2 cores. Each program plays each \
         1280×720 H.264 clip (15 fps, a keyframe every 2 s) in real time, alone, analysing \
         {WIDTH}×{HEIGHT} at {FPS} fps (Motion {motion}: `netcam_url file://…`, movie and picture \
         output off; camagent: the agent daemon with the default policy, H.264 passed through \
         to its pre-roll ring and clips, snapshots with alerts, a real mutual-TLS mosquitto), \
         camagent once decoding on demand (the default) and once decoding every unit \
         (`decode = \"always\"`). CPU is user + system seconds of the whole process (all \
         threads) over the clip, scaled to a minute of input; peak RSS is VmHWM, private is the \
         most RssAnon sampled (every 200 ms) while the clip played.\n\n\
         | clip | H.264 decode alone, CPU s/min | units decoded on demand | camagent CPU s/min | camagent decoding always | Motion CPU s/min | camagent ÷ Motion | always ÷ Motion | camagent MiB peak / private | Motion MiB peak / private | events (truth) | camagent events (on demand / always) | Motion events |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n{rows}\n\
         Over all clips, decoding on demand cost {ratio:.2}× the CPU of decoding every unit. \
         Units decoded on demand are counted offline by `camagent detect --decode on-demand` \
         (the same planner and detector). Motion \
         counts one event on `visits` because its default `event_gap` (60 s) merges events \
         closer than a minute.\n\n\
         Motion-to-alert latency, decoding on demand (first moving frame's capture → alert with \
         snapshot at the subscriber, over TLS), all clips: {latency}. An event needs two moving \
         analysis frames (`min_frames = 2`), so one frame interval of it is the detector \
         waiting for the second.\n",
        cpu = common::cpu(),
        motion = motion_version(),
        ratio = on_demand_cpu / always_cpu,
    );
    print!("{section}");
    if !named.is_empty() {
        return;
    }
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## Camera: camagent against the Motion daemon",
        &section,
    );
}

pub(crate) fn motion_version() -> String {
    Command::new("motion")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.split_whitespace()
                .skip_while(|w| *w != "Version")
                .nth(1)
                .map(|v| v.trim_end_matches(',').to_owned())
        })
        .unwrap_or_else(|| "unknown version".into())
}
