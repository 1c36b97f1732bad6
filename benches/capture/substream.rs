//! An IP camera with two streams, as RTSP cameras give them: the 720p street clip as the main
//! stream and the same scene at 320×180 as the sub-stream, served by a real RTSP server
//! (gst-rtsp-server, Basic auth). Side by side, one after the other, each for the clip's
//! 60 s: camagent decoding the main stream, every unit and on demand; camagent detecting on
//! the sub-stream
//! (`capture.detect_url`) and recording the main one without decoding it; and Motion as its
//! users set it up there (`netcam_url` the sub-stream, `netcam_high_url` the main one, movies
//! by `movie_passthrough`).
//!
//! Run: `cargo bench --bench capture -- substream`. Writes its figures to BENCHMARKS.md.

use std::path::Path;
use std::time::{Instant, SystemTime};

use super::support::rtsp::RtspCamera;
use super::support::scenes::host_gst_launch;
use super::support::*;
use super::{
    common, measure_until_played, motion_events, motion_version, spawn_motion_on, street, Cost,
    FPS, HEIGHT, SECONDS, WIDTH,
};

const USER: &str = "viewer";
const PASSWORD: &str = "bench-password";

struct Row {
    what: &'static str,
    cost: Cost,
    events: usize,
}

pub fn against_motion() {
    let tmp = tempfile::tempdir().unwrap();
    let main = street(tmp.path());
    let sub = tmp.path().join("street-sub.mp4");
    host_gst_launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! videoscale \
         ! video/x-raw,width=320,height=180 ! x264enc speed-preset=superfast bitrate=300 \
         key-int-max=30 ! h264parse ! mp4mux ! filesink location={}",
        main.display(),
        sub.display()
    ));
    let port = free_port();
    let _camera = RtspCamera::start(port, USER, PASSWORD, &[("main", &main), ("sub", &sub)]);
    let url = |path: &str| format!("rtsp://{USER}:{PASSWORD}@127.0.0.1:{port}/{path}");
    let world = World::new();
    let broker = world.broker(false);

    let camagent = |what: &'static str, name: &str, extra: String| {
        let mut setup = AgentSetup::new(&world, broker.port);
        setup.extra = format!(
            "[capture]\nsource = \"rtsp\"\nurl = \"{}\"\n{extra}\n\
             [motion]\nwidth = {WIDTH}\nheight = {HEIGHT}\nfps = {FPS}\n",
            url("main")
        );
        let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
        let config = setup.write(&world, &world.path().join(name), &policy);
        let started = Instant::now();
        let mut agent = Agent::start(env!("CARGO_BIN_EXE_camagent"), &config);
        let cost = measure_until_played(&mut agent.child, started, SECONDS);
        Row {
            what,
            cost,
            events: agent.log().matches("motion started").count(),
        }
    };
    let decoding_main = camagent(
        "camagent, the main stream decoded, every unit (`decode = \"always\"`)",
        "main",
        "decode = \"always\"\n".into(),
    );
    let on_demand = camagent(
        "camagent, the main stream decoded on demand (the default)",
        "on-demand",
        String::new(),
    );
    let on_sub = camagent(
        "camagent, detecting on the sub-stream (`detect_url`)",
        "sub",
        format!("detect_url = \"{}\"\n", url("sub")),
    );
    let motion = {
        let started = Instant::now();
        let (mut child, events) = spawn_motion_on(
            &tmp.path().join("motion"),
            &url("sub"),
            &format!(
                "netcam_high_url {}\nnetcam_userpass {USER}:{PASSWORD}\n\
                 movie_output on\nmovie_passthrough on\n",
                url("main")
            ),
        );
        let cost = measure_until_played(&mut child, started, SECONDS);
        Row {
            what: "Motion, `netcam_url` the sub-stream, `netcam_high_url` the main one, `movie_passthrough on`",
            cost,
            events: motion_events(&events),
        }
    };

    let per_minute = |r: &Row| r.cost.cpu_s * 60.0 / SECONDS as f64;
    let rows: String = [&decoding_main, &on_demand, &on_sub, &motion]
        .iter()
        .map(|r| {
            format!(
                "| {} | {:.2} | {:.2}× | {:.1} | {:.1} | {} |\n",
                r.what,
                per_minute(r),
                r.cost.cpu_s / motion.cost.cpu_s,
                r.cost.peak_rss_kib as f64 / 1024.0,
                r.cost.private_kib as f64 / 1024.0,
                r.events
            )
        })
        .collect();
    let section = format!(
        "## Camera with a sub-stream: camagent against the Motion daemon\n\n\
         `cargo bench --bench capture -- substream` — {when}, {cpu}, 2 cores. An RTSP camera \
         (gst-rtsp-server on loopback, Basic auth) serves the 60 s street clip (opencv-doc \
         vtest.avi, people walking) as its main stream, 1280×720 at 15 fps, and the same scene \
         at 320×180 as its sub-stream; each program runs alone for the clip's minute, \
         analysing {WIDTH}×{HEIGHT} at {FPS} fps (Motion {version}). CPU is user + system \
         seconds of the whole process, scaled to a minute; peak RSS is VmHWM, private memory \
         the most RssAnon sampled (every 200 ms) while the clip played.\n\n\
         | configuration | CPU s/min | × Motion's CPU | peak RSS MiB | private MiB | events |\n\
         |---|---:|---:|---:|---:|---:|\n{rows}\n\
         With the sub-stream camagent used {ratio:.2}× Motion's CPU, and {own:.2}× its own \
         with the main stream decoded.\n",
        when = humantime::format_rfc3339_seconds(SystemTime::now()),
        cpu = common::cpu(),
        version = motion_version(),
        ratio = on_sub.cost.cpu_s / motion.cost.cpu_s,
        own = on_sub.cost.cpu_s / decoding_main.cost.cpu_s,
    );
    print!("{section}");
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## Camera with a sub-stream",
        &section,
    );
}
