//! Real camera sources: an IP camera over RTSP (gst-rtsp-server on loopback, with a
//! password), taken as a deployment takes it.

mod support;

use std::path::Path;

use base64::Engine;

use support::rtsp::RtspCamera;
use support::scenes::*;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");

/// The camera's password, as it is and as the URL carries it (percent-encoded).
const PASSWORD: &str = "c0rrect:h0rse@battery";
const PASSWORD_IN_URL: &str = "c0rrect%3Ah0rse%40battery";

/// An agent on the RTSP camera at `url`; `more` adds `[capture]` lines.
fn rtsp_config(world: &World, broker_port: u16, url: &str, more: &str) -> std::path::PathBuf {
    let mut setup = AgentSetup::new(world, broker_port);
    setup.extra = format!(
        "[capture]\nsource = \"rtsp\"\nurl = \"{url}\"\npreroll = \"1s\"\npostroll = \"1s\"\n{more}\
         [motion.events]\ngap = \"1s\"\n"
    );
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/policy.toml");
    setup.write(world, &world.path().join("agent"), &policy)
}

/// The alerts of motion starting the cloud got, oldest first.
fn start_alerts(cloud: &Subscriber) -> Vec<serde_json::Value> {
    cloud
        .on("/alarm")
        .iter()
        .map(|m| m.json())
        .filter(|a| a["fields"]["event_data"]["phase"] == "start")
        .collect()
}

fn starts(cloud: &Subscriber) -> usize {
    start_alerts(cloud).len()
}

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
    out
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// An IP camera over RTSP, its password in the URL: motion there raises an alert; the camera
/// loses power and comes back, and the agent takes it up again and alerts again. The password
/// reaches no log line, no file the agent keeps, and nothing the cloud receives.
#[test]
fn an_rtsp_camera_that_goes_away_and_comes_back_alerts_and_never_leaks_its_password() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    cloud.wait_subscribed(0);
    let tmp = tempfile::tempdir().unwrap();
    let clip = encode(tmp.path(), "walk", &walk(), Codec::H264);
    let port = free_port();
    let mut camera = RtspCamera::start(port, "viewer", PASSWORD, &[("main", &clip)]);
    let url = format!("rtsp://viewer:{PASSWORD_IN_URL}@127.0.0.1:{port}/main");
    let agent = Agent::start(BIN, &rtsp_config(&world, broker.port, &url, ""));

    let Some(()) = wait_for(PATIENCE, || (starts(&cloud) >= 1).then_some(())) else {
        panic!("no alert from the RTSP camera; agent log:\n{}", agent.log());
    };
    camera.kill();
    agent.wait_log("capture source failed");
    let _camera = RtspCamera::start(port, "viewer", PASSWORD, &[("main", &clip)]);
    let Some(()) = wait_for(PATIENCE, || (starts(&cloud) >= 2).then_some(())) else {
        panic!(
            "no alert after the camera came back; agent log:\n{}",
            agent.log()
        );
    };

    let log = agent.log();
    assert!(log.contains("127.0.0.1"), "the camera's address is logged");
    for secret in [PASSWORD, PASSWORD_IN_URL] {
        assert!(!log.contains(secret), "the password is in the log:\n{log}");
        for m in cloud.snapshot() {
            assert!(!holds(&m.payload, secret), "sent on {}", m.topic);
        }
        for (path, bytes) in files_under(&world.path().join("agent/state")) {
            assert!(!holds(&bytes, secret), "in {}", path.display());
        }
    }
}

/// A camera that hangs (its process stopped, its connection open) is noticed by its silence,
/// reported, and taken up again once it answers. Every unit is decoded here (`decode =
/// "always"`), the other way a single stream is analysed.
#[test]
fn a_camera_that_hangs_is_noticed_by_its_silence_and_taken_up_again() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    cloud.wait_subscribed(0);
    let tmp = tempfile::tempdir().unwrap();
    let clip = encode(tmp.path(), "walk", &walk(), Codec::H264);
    let port = free_port();
    let camera = RtspCamera::start(port, "viewer", PASSWORD, &[("main", &clip)]);
    let url = format!("rtsp://viewer:{PASSWORD_IN_URL}@127.0.0.1:{port}/main");
    let always = "decode = \"always\"\n";
    let agent = Agent::start(BIN, &rtsp_config(&world, broker.port, &url, always));
    agent.wait_log("capture source running");

    camera.freeze();
    // Logged as the reason the source failed, and so restarted.
    agent.wait_log("the camera was silent for 10s");
    let before = starts(&cloud);
    camera.thaw();
    let Some(()) = wait_for(PATIENCE, || (starts(&cloud) > before).then_some(())) else {
        panic!(
            "no alert after the camera woke; agent log:\n{}",
            agent.log()
        );
    };
}

/// A wrong password: the agent says the camera refused it, retries, and still never logs it.
#[test]
fn a_wrong_rtsp_password_is_reported_without_the_password() {
    let world = World::new();
    let broker = world.broker(false);
    let tmp = tempfile::tempdir().unwrap();
    let clip = encode(tmp.path(), "walk", &walk(), Codec::H264);
    let port = free_port();
    let _camera = RtspCamera::start(port, "viewer", PASSWORD, &[("main", &clip)]);
    let url = format!("rtsp://viewer:wrong-{PASSWORD_IN_URL}@127.0.0.1:{port}/main");
    let agent = Agent::start(BIN, &rtsp_config(&world, broker.port, &url, ""));
    agent.wait_log("capture source failed");
    let log = agent.log();
    assert!(
        !log.contains(PASSWORD_IN_URL) && !log.contains(PASSWORD),
        "{log}"
    );
    assert!(
        log.contains("the camera refused the user name or password in capture.url"),
        "{log}"
    );
}

/// The camera's second stream made from `main`: half its size, through `filter` (GStreamer
/// elements, each followed by `!`).
fn sub_stream(main: &Path, filter: &str) -> std::path::PathBuf {
    let sub = main.with_extension("sub.mp4");
    host_gst_launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! avdec_h264 ! {filter} videoscale \
         ! video/x-raw,width={},height={} ! x264enc key-int-max={FPS} speed-preset=superfast \
         ! h264parse ! mp4mux ! filesink location={}",
        main.display(),
        W / 2,
        H / 2,
        sub.display()
    ));
    sub
}

/// The camera's second, smaller stream as the detection stream (`detect_url`): motion seen
/// there raises the alert, and the clip is the main stream's, at its full size (the main
/// stream is recorded, never decoded). Only the detection stream shows the walk here, so an
/// alert can only come from it.
#[test]
fn with_a_detection_stream_motion_is_seen_there_and_the_main_stream_recorded() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    cloud.wait_subscribed(0);
    let tmp = tempfile::tempdir().unwrap();
    let receiver = ReceiverProcess::start(BIN, &world, broker.port, tmp.path(), &[]);
    let walk = encode(tmp.path(), "walk", &walk(), Codec::H264);
    let still = Scene {
        seconds: 12,
        brightness: |_| 1.0,
        object: |_| None,
    };
    let main = encode(tmp.path(), "still", &still, Codec::H264);
    let sub = sub_stream(&walk, "");
    let port = free_port();
    let _camera = RtspCamera::start(port, "viewer", PASSWORD, &[("main", &main), ("sub", &sub)]);
    let url = |path: &str| format!("rtsp://viewer:{PASSWORD_IN_URL}@127.0.0.1:{port}/{path}");
    let detect = format!("detect_url = \"{}\"\n", url("sub"));
    let agent = Agent::start(
        BIN,
        &rtsp_config(&world, broker.port, &url("main"), &detect),
    );

    let Some(()) = wait_for(PATIENCE, || (starts(&cloud) >= 1).then_some(())) else {
        panic!(
            "no alert from the detection stream; agent log:\n{}",
            agent.log()
        );
    };
    let Some(clip) = wait_for(PATIENCE, || receiver.of("clip").into_iter().next()) else {
        panic!("no clip; agent log:\n{}", agent.log());
    };
    assert_eq!(clip["verified"], true, "{clip}");
    let discovered = host_command("gst-discoverer-1.0")
        .arg(clip["path"].as_str().unwrap())
        .output()
        .expect("gst-discoverer-1.0");
    let report = String::from_utf8_lossy(&discovered.stdout);
    assert!(
        report.contains(&format!("Width: {W}")) && report.contains(&format!("Height: {H}")),
        "the clip is the main stream's, {W}×{H}:\n{report}"
    );
    // The detection stream is decoded on demand: once the walk is over, only its keyframes
    // (the main stream's units, never decoded, are not among those counted).
    let after_walk = |log: &str| {
        let started = log.find("motion started")?;
        Some(log[started..].find(KEYFRAMES_ONLY)? + started)
    };
    let Some(still) = wait_for(PATIENCE, || after_walk(&agent.log())) else {
        panic!(
            "the detection stream never went to keyframes only; agent log:\n{}",
            agent.log()
        );
    };
    let log = agent.log();
    let (units, decoded) = (
        log_field(&log[still..], KEYFRAMES_ONLY, "units="),
        log_field(&log[still..], KEYFRAMES_ONLY, "decoded="),
    );
    assert!(
        decoded < units,
        "{decoded} of {units} units decoded:\n{log}"
    );
    assert!(!log.contains(PASSWORD_IN_URL));
    // The agent's own decoder takes the detection stream, and nothing decodes the main one:
    // GStreamer lists neither libav's elements nor OpenH264's.
    let plugins = log_field_text(&log, "GStreamer confined", "plugins=");
    assert!(
        !plugins.contains("openh264") && !plugins.contains("libav"),
        "{plugins}"
    );
    assert_eq!(
        log_field_text(&log, "H.264 decoder chosen", "decoder="),
        "camagenth264dec"
    );
}

/// `snapshot.stream = "main"`: the alert's picture is the main stream's, decoded from its last
/// keyframe, not the detection stream's. Here the detection stream is much darker than the
/// main one, so the snapshot's brightness says which stream it came from.
#[test]
fn a_snapshot_can_come_from_the_main_stream() {
    let world = World::new();
    let broker = world.broker(false);
    let cloud = Subscriber::connect(&world, broker.port, "cloud", false);
    cloud.wait_subscribed(0);
    let tmp = tempfile::tempdir().unwrap();
    let main = encode(tmp.path(), "walk", &walk(), Codec::H264);
    let dark = sub_stream(&main, "videobalance brightness=-0.25 !");
    let port = free_port();
    let _camera = RtspCamera::start(port, "viewer", PASSWORD, &[("main", &main), ("sub", &dark)]);
    let url = |path: &str| format!("rtsp://viewer:{PASSWORD_IN_URL}@127.0.0.1:{port}/{path}");
    let more = format!(
        "detect_url = \"{}\"\n[capture.snapshot]\nstream = \"main\"\n",
        url("sub")
    );
    let agent = Agent::start(BIN, &rtsp_config(&world, broker.port, &url("main"), &more));
    let Some(alert) = wait_for(PATIENCE, || start_alerts(&cloud).into_iter().next()) else {
        panic!("no alert; agent log:\n{}", agent.log());
    };
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(alert["fields"]["snapshot"]["base64"].as_str().unwrap())
        .unwrap();
    let brightness = |jpeg: &[u8]| {
        let file = tmp.path().join("snapshot.jpg");
        std::fs::write(&file, jpeg).unwrap();
        let gray = tmp.path().join("snapshot.gray");
        host_gst_launch(&format!(
            "filesrc location={} ! jpegdec ! videoconvert ! video/x-raw,format=GRAY8 \
             ! filesink location={}",
            file.display(),
            gray.display()
        ));
        let pixels = std::fs::read(&gray).unwrap();
        pixels.iter().map(|&p| f64::from(p)).sum::<f64>() / pixels.len() as f64
    };
    // The scene's mean is about 90; the detection stream's about 90 − 0.25 × 255.
    let mean = brightness(&jpeg);
    assert!(
        mean > 70.0,
        "a snapshot of mean {mean:.0} is the dark detection stream's"
    );
    assert!(agent.log().contains("motion started"));
}
