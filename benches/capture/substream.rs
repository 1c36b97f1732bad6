//! An IP camera with two streams, as RTSP cameras give them: a 720p clip as the main stream
//! and the same scene at 320×180 as the sub-stream, served by a real RTSP server
//! (gst-rtsp-server, Basic auth). Two scenes: the busy street, and the mostly-still street
//! (two minutes of nobody, then people walking in) where decoding on demand matters most.
//! Side by side, one after the other, each for the clip's length: camagent detecting on the
//! sub-stream (`capture.detect_url`), every unit and on demand (by its own decoder, and by
//! libav's and OpenH264 for comparison; and with every installed GStreamer plugin
//! registered, as before the agent listed only those it uses), and recording the main one without decoding it; and
//! Motion as its users set it up there (`netcam_url` the sub-stream, `netcam_high_url` the
//! main one, movies by `movie_passthrough`). On the street, camagent decoding the main stream
//! too, every unit and on demand. And the motion-to-alert latency of camagent detecting on the
//! sub-stream on demand, at a subscriber of a real mutual-TLS mosquitto.
//!
//! Run: `cargo bench --bench capture -- substream` (about twenty-five minutes). Writes its
//! figures to BENCHMARKS.md. `-- substream quick [mostly-still]`: one scene (the street
//! unless named), camagent on the sub-stream on demand (by its own decoder with its plugins
//! and with all, and by OpenH264) and Motion, printed only (a few minutes, for A/B runs).

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use super::support::rtsp::RtspCamera;
use super::support::scenes::{host_command, host_gst_launch};
use super::support::*;
use super::{
    alert_latencies, common, latency_summary, measure_until_played, mostly_still, motion_events,
    motion_version, spawn_motion_on, street, Cost, Latency, FPS, HEIGHT, SECONDS, WIDTH,
};

const USER: &str = "viewer";
const PASSWORD: &str = "bench-password";
/// The source packages of every GStreamer plugin Debian ships (`gst-inspect-1.0 PLUGIN`,
/// "Source module").
const ALL_DEBIAN_PLUGINS: &str =
    "gstreamer:gst-plugins-base:gst-plugins-good:gst-plugins-bad:gst-plugins-ugly:gst-libav";

struct Row {
    what: &'static str,
    cost: Cost,
    events: usize,
    /// Motion to alert, per alert (none for Motion, which sends none).
    latencies: Vec<Latency>,
}

/// One scene's camera: its clip as the main stream, and the sub-stream made from it.
struct Scene {
    name: &'static str,
    main: PathBuf,
    seconds: u64,
    /// Also measure camagent decoding the main stream.
    main_rows: bool,
}

pub fn against_motion(quick: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let mut scenes = vec![
        Scene {
            name: "street (people walking, 60 s)",
            main: street(tmp.path()),
            seconds: SECONDS,
            main_rows: true,
        },
        Scene {
            name: "mostly-still (120 s of nobody, then people walk in; 127 s)",
            main: mostly_still(tmp.path()),
            seconds: 127,
            main_rows: false,
        },
    ];
    if quick {
        // The scene named after `quick` (its first word), else the street.
        let named = |s: &Scene| {
            let word = s.name.split(' ').next().unwrap_or_default();
            std::env::args().any(|a| a == word)
        };
        let mut scene = scenes.swap_remove(scenes.iter().position(named).unwrap_or(0));
        scene.main_rows = false;
        scenes = vec![scene];
    }
    let world = World::new();
    let broker = world.broker(false);
    let mut tables = String::new();
    let mut ratios = Vec::new();
    let mut latencies = Vec::new();
    for (i, scene) in scenes.iter().enumerate() {
        let dir = tmp.path().join(format!("scene-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let m = measure(&world, broker.port, &dir, scene, quick);
        latencies.extend(m.on_demand_latencies.iter().copied());
        let per_minute = |r: &Row| r.cost.cpu_s * 60.0 / scene.seconds as f64;
        let rows: String = m
            .rows
            .iter()
            .map(|r| {
                format!(
                    "| {} | {:.2} | {:.2}× | {:.1} | {:.1} | {} |\n",
                    r.what,
                    per_minute(r),
                    r.cost.cpu_s / m.motion.cpu_s,
                    r.cost.peak_rss_kib as f64 / 1024.0,
                    r.cost.private_kib as f64 / 1024.0,
                    r.events
                )
            })
            .collect();
        tables += &format!(
            "**{}**\n\n\
             | configuration | CPU s/min | × Motion's CPU | peak RSS MiB | private MiB | events |\n\
             |---|---:|---:|---:|---:|---:|\n{rows}\n",
            scene.name
        );
        tables += &format!(
            "Where camagent's CPU went, detecting on the sub-stream on demand (s/min, by \
             thread; threads that ended are left out): {}.\n\n",
            m.on_sub
                .threads
                .iter()
                .take(8)
                .map(|(name, s)| format!("{name} {:.2}", s * 60.0 / scene.seconds as f64))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let against_whole = m.sub_always.as_ref().map_or(String::new(), |whole| {
            format!(
                " ({:.2}× its own decoding every unit of the sub-stream)",
                m.on_sub.cpu_s / whole.cpu_s
            )
        });
        ratios.push(format!(
            "{:.2}× Motion's CPU on {}{against_whole}",
            m.on_sub.cpu_s / m.motion.cpu_s,
            scene.name.split(' ').next().unwrap_or_default(),
        ));
    }
    let section = format!(
        "## Camera with a sub-stream: camagent against the Motion daemon\n\n\
         `cargo bench --bench capture -- substream` — {when}, {cpu}, 2 cores. An RTSP camera \
         (gst-rtsp-server on loopback, Basic auth) serves a 720p clip at 15 fps as its main \
         stream and the same scene at 320×180 as its sub-stream; camagent receives both with \
         retina over TCP, Motion with its own client (FFmpeg's); each program runs alone for \
         the clip's length, analysing {WIDTH}×{HEIGHT} at {FPS} fps (Motion {version}). CPU is \
         user + system seconds of the whole process, scaled to a minute; peak RSS is VmHWM, \
         private memory the most RssAnon sampled (every 200 ms) while the clip played.\n\n\
         {tables}\
         Detecting on the sub-stream, decoded on demand, camagent used {ratios}.\n\n\
         Motion-to-alert latency detecting on the sub-stream on demand (the first moving \
         frame's arrival → the alert with its snapshot at the subscriber, over TLS), every \
         scene and decoder above: {latency}. The agent receives a camera's streams in turns \
         of 50 ms (`capture::rtsp`), so a picture reaches the detector up to one turn after it \
         arrived.\n",
        when = humantime::format_rfc3339_seconds(SystemTime::now()),
        cpu = common::cpu(),
        version = motion_version(),
        ratios = ratios.join(", and "),
        latency = latency_summary(latencies),
    );
    print!("{section}");
    if quick {
        return;
    }
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## Camera with a sub-stream",
        &section,
    );
}

/// A scene's rows, and the costs the summary compares.
struct Measured {
    rows: Vec<Row>,
    /// The alerts' latencies of the runs that detect on the sub-stream on demand.
    on_demand_latencies: Vec<Latency>,
    on_sub: Cost,
    /// Not measured in a quick run.
    sub_always: Option<Cost>,
    motion: Cost,
}

/// Serves `scene` and measures each configuration on it.
fn measure(world: &World, broker: u16, dir: &Path, scene: &Scene, quick: bool) -> Measured {
    let sub = dir.join("sub.mp4");
    host_gst_launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videoscale \
         ! video/x-raw,width=320,height=180 ! x264enc speed-preset=superfast bitrate=300 \
         key-int-max=30 ! h264parse ! mp4mux ! filesink location={}",
        scene.main.display(),
        sub.display()
    ));
    let port = free_port();
    let _camera = RtspCamera::start(
        port,
        USER,
        PASSWORD,
        &[("main", &scene.main), ("sub", &sub)],
    );
    let url = |path: &str| format!("rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/{path}");

    let camagent_with = |what: &'static str, name: &str, extra: String, env: &[(&str, &str)]| {
        let mut setup = AgentSetup::new(world, broker);
        setup.extra = format!(
            "[capture]\nsource = \"rtsp\"\nurl = \"{}\"\n{extra}\n\
             [motion]\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = {FPS}\n",
            url("main")
        );
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
        let config = setup.write(world, &dir.join(name), &policy);
        let client = format!("cloud-{}-{name}", dir.display()).replace('/', "-");
        let cloud = Subscriber::connect(world, broker, &client, false);
        let started = Instant::now();
        let mut agent = Agent::start_with_env(env!("CARGO_BIN_EXE_camagent"), &config, env);
        let cost = measure_until_played(&mut agent.child, started, scene.seconds);
        let log = agent.log();
        let latencies = alert_latencies(&cloud, &log);
        for l in &latencies {
            eprintln!(
                "{name}: alert after {:?}, {:?} behind live",
                l.total, l.behind_live
            );
        }
        Row {
            what,
            cost,
            events: log.matches("motion started").count(),
            latencies,
        }
    };
    let camagent = |what, name: &str, extra| camagent_with(what, name, extra, &[]);
    let mut rows = Vec::new();
    if scene.main_rows {
        rows.push(camagent(
            "camagent, the main stream decoded, every unit (`decode = \"always\"`)",
            "main",
            "decode = \"always\"\n".into(),
        ));
        rows.push(camagent(
            "camagent, the main stream decoded on demand (the default)",
            "on-demand",
            String::new(),
        ));
    }
    let sub_always = (!quick).then(|| {
        camagent(
            "camagent, detecting on the sub-stream (`detect_url`), every unit of it decoded",
            "sub-always",
            format!("detect_url = \"{}\"\ndecode = \"always\"\n", url("sub")),
        )
    });
    // The installed decoders in place of the agent's own: libav's, which it takes for a main
    // stream, and OpenH264, which it took for a detection stream before.
    let sub_libav = (!quick).then(|| {
        camagent_with(
            "camagent, detecting on the sub-stream (`detect_url`), decoded on demand by libav's \
             decoder (`plugins = [\"libav\"]`, `GST_PLUGIN_FEATURE_RANK=camagenth264dec:NONE`)",
            "sub-libav",
            format!("detect_url = \"{}\"\nplugins = [\"libav\"]\n", url("sub")),
            &[("GST_PLUGIN_FEATURE_RANK", "camagenth264dec:NONE")],
        )
    });
    let sub_openh264 = camagent_with(
        "camagent, detecting on the sub-stream (`detect_url`), decoded on demand by OpenH264 \
         (`plugins = [\"openh264\"]`, `GST_PLUGIN_FEATURE_RANK=camagenth264dec:NONE`)",
        "sub-openh264",
        format!(
            "detect_url = \"{}\"\nplugins = [\"openh264\"]\n",
            url("sub")
        ),
        &[("GST_PLUGIN_FEATURE_RANK", "camagenth264dec:NONE")],
    );
    // GStreamer as it starts by default: every installed plugin in its registry, cached
    // beforehand (as the agent's own list is by the runs before, or by an earlier bench).
    let registry = dir.join("all-plugins-registry.bin");
    let all_plugins = [
        ("GST_PLUGIN_LOADING_WHITELIST", ALL_DEBIAN_PLUGINS),
        ("GST_REGISTRY_1_0", registry.to_str().unwrap()),
    ];
    let scanned = host_command("gst-inspect-1.0")
        .arg("coreelements")
        .envs(all_plugins)
        .output()
        .expect("gst-inspect-1.0");
    assert!(scanned.status.success() && registry.exists());
    let sub_all_plugins = camagent_with(
        "camagent, detecting on the sub-stream (`detect_url`), decoded on demand by its own \
         decoder, every installed GStreamer plugin registered (`GST_PLUGIN_LOADING_WHITELIST` = all of \
         Debian's GStreamer packages)",
        "sub-all-plugins",
        format!("detect_url = \"{}\"\n", url("sub")),
        &all_plugins,
    );
    let on_sub = camagent(
        "camagent, detecting on the sub-stream (`detect_url`), decoded on demand by its own \
         decoder (`camagenth264dec`, the default)",
        "sub",
        format!("detect_url = \"{}\"\n", url("sub")),
    );
    let motion = {
        let started = Instant::now();
        let (mut child, events) = spawn_motion_on(
            &dir.join("motion"),
            &url("sub"),
            &format!(
                "netcam_high_url {}\nnetcam_userpass {USER}:{PASSWORD}\n\
                 movie_output on\nmovie_passthrough on\n",
                url("main")
            ),
        );
        let cost = measure_until_played(&mut child, started, scene.seconds);
        Row {
            what: "Motion, `netcam_url` the sub-stream, `netcam_high_url` the main one, `movie_passthrough on`",
            cost,
            events: motion_events(&events),
            latencies: Vec::new(),
        }
    };
    let on_demand_latencies = sub_libav
        .iter()
        .chain([&sub_openh264, &sub_all_plugins, &on_sub])
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    let measured = Measured {
        on_demand_latencies,
        on_sub: on_sub.cost.clone(),
        sub_always: sub_always.as_ref().map(|r| r.cost.clone()),
        motion: motion.cost.clone(),
        rows: Vec::new(),
    };
    rows.extend(sub_always);
    rows.extend(sub_libav);
    rows.extend([sub_openh264, sub_all_plugins, on_sub, motion]);
    Measured { rows, ..measured }
}
