//! `camagent detect` on clips through real GStreamer pipelines: synthetic scenes with known
//! ground truth, encoded with GStreamer itself, and real street footage from Debian's
//! opencv-doc.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");
const W: usize = 320;
const H: usize = 180;
const FPS: usize = 10;

/// An object's box in pixels: x, y, width, height.
type ObjectBox = Option<(usize, usize, usize, usize)>;

/// A scene description: brightness and an optional object box, per frame index.
struct Scene {
    seconds: usize,
    brightness: fn(usize) -> f32,
    object: fn(usize) -> ObjectBox,
}

fn render(scene: &Scene, frame: usize, rng: &mut fastrand::Rng) -> Vec<u8> {
    let gain = (scene.brightness)(frame);
    let mut pixels: Vec<u8> = (0..W * H)
        .map(|i| {
            let (x, y) = ((i % W) as f32, (i / W) as f32);
            let base = 90.0 + 40.0 * ((x / 23.0).sin() * (y / 17.0).cos());
            (base * gain + (rng.f32() - 0.5) * 8.0).clamp(0.0, 255.0) as u8
        })
        .collect();
    if let Some((x, y, w, h)) = (scene.object)(frame) {
        for row in y..(y + h).min(H) {
            for col in x..(x + w).min(W) {
                pixels[row * W + col] = 225;
            }
        }
    }
    pixels
}

/// Encodes the scene to a JPEG-in-AVI clip with GStreamer, as a camera recording would be.
fn clip(dir: &Path, name: &str, scene: &Scene) -> PathBuf {
    let raw = dir.join(format!("{name}.gray"));
    let mut rng = fastrand::Rng::with_seed(11);
    let bytes: Vec<u8> = (0..scene.seconds * FPS)
        .flat_map(|f| render(scene, f, &mut rng))
        .collect();
    std::fs::write(&raw, bytes).unwrap();
    let out = dir.join(format!("{name}.avi"));
    // The host's gst-launch, with the host's plugins even when this test runs under qemu-arm.
    let status = Command::new("gst-launch-1.0")
        .env_remove("GST_PLUGIN_SYSTEM_PATH")
        .env_remove("GST_REGISTRY")
        .env_remove("GST_REGISTRY_FORK")
        .env_remove("QEMU_LD_PREFIX")
        .arg("-q")
        .arg("filesrc")
        .arg(format!("location={}", raw.display()))
        .args([
            "!",
            "rawvideoparse",
            "format=gray8",
            &format!("width={W}"),
            &format!("height={H}"),
            &format!("framerate={FPS}/1"),
        ])
        .args([
            "!",
            "videoconvert",
            "!",
            "jpegenc",
            "quality=90",
            "!",
            "avimux",
            "!",
            "filesink",
        ])
        .arg(format!("location={}", out.display()))
        .status()
        .expect("gst-launch-1.0 must be installed (scripts/install-deps)");
    assert!(status.success());
    out
}

fn detect(input: &Path, config: Option<&Path>) -> Vec<serde_json::Value> {
    let mut args = vec![
        "detect".to_owned(),
        "--input".to_owned(),
        input.display().to_string(),
    ];
    if let Some(c) = config {
        args.splice(0..0, ["--config".to_owned(), c.display().to_string()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = cli(BIN, &refs);
    assert!(ok, "detect failed: {err}");
    assert!(err.contains("analysis frames"), "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn starts(events: &[serde_json::Value]) -> Vec<f64> {
    events
        .iter()
        .filter(|e| e["type"] == "start")
        .map(|e| e["pts"].as_f64().unwrap())
        .collect()
}

fn still(_: usize) -> f32 {
    1.0
}
fn nothing(_: usize) -> ObjectBox {
    None
}

#[test]
fn an_object_entering_starts_one_event_near_its_onset() {
    let tmp = tempfile::tempdir().unwrap();
    // From 4.0 s a person-sized box walks in from the left edge.
    let scene = Scene {
        seconds: 10,
        brightness: still,
        object: |f| (f >= 40).then(|| ((f - 40) * 4, 60, 30, 70)),
    };
    let events = detect(&clip(tmp.path(), "enter", &scene), None);
    let s = starts(&events);
    assert_eq!(s.len(), 1, "{events:?}");
    // Within three analysis frames (5 fps) of the onset, and not before it.
    assert!(s[0] >= 3.9 && s[0] <= 4.0 + 3.0 / 5.0, "start at {}", s[0]);
    assert!(events.iter().any(|e| e["type"] == "end"));
    assert!(!events[0]["regions"].as_array().unwrap().is_empty());
}

#[test]
fn still_noise_brightness_steps_and_ramps_start_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "noise",
            Scene {
                seconds: 8,
                brightness: still,
                object: nothing,
            },
        ),
        (
            "step",
            Scene {
                seconds: 8,
                brightness: |f| if f < 30 { 1.0 } else { 1.45 },
                object: nothing,
            },
        ),
        (
            "ramp",
            Scene {
                seconds: 12,
                brightness: |f| 1.3 - f as f32 * 0.005,
                object: nothing,
            },
        ),
    ];
    for (name, scene) in cases {
        let events = detect(&clip(tmp.path(), name, &scene), None);
        assert!(events.is_empty(), "{name}: {events:?}");
    }
}

#[test]
fn motion_only_outside_the_zones_starts_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let scene = Scene {
        seconds: 8,
        brightness: still,
        // Moves up and down in the left quarter only.
        object: |f| (f >= 20).then(|| (20, (f * 3) % 120, 40, 50)),
    };
    let clip = clip(tmp.path(), "left", &scene);
    assert!(
        !starts(&detect(&clip, None)).is_empty(),
        "without zones the motion is seen"
    );
    let config = tmp.path().join("zones.toml");
    std::fs::write(
        &config,
        "[broker]\nhost = \"localhost\"\nca_file = \"a\"\ncert_file = \"b\"\nkey_file = \"c\"\n\
         [motion]\nzones = [{ x = 0.5, y = 0.0, w = 0.5, h = 1.0 }]\n",
    )
    .unwrap();
    assert!(detect(&clip, Some(&config)).is_empty());
}

#[test]
fn real_street_footage_has_motion() {
    let footage = Path::new("/usr/share/doc/opencv-doc/examples/data/vtest.avi");
    assert!(
        footage.exists(),
        "Debian's opencv-doc must be installed (scripts/install-deps)"
    );
    let events = detect(footage, None);
    let s = starts(&events);
    assert!(
        !s.is_empty(),
        "people walk through vtest.avi from the start: {events:?}"
    );
    assert!(s[0] < 2.0, "{events:?}");
    assert_eq!(
        events.iter().filter(|e| e["type"] == "end").count(),
        s.len(),
        "every event ends"
    );
}

#[test]
fn unreadable_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.mp4");
    std::fs::write(&junk, b"this is not a video").unwrap();
    for input in [junk, tmp.path().join("missing.mp4")] {
        let (ok, _, err) = cli(BIN, &["detect", "--input", input.to_str().unwrap()]);
        assert!(!ok, "{input:?} accepted");
        assert!(
            err.contains("cannot analyse") && err.contains(input.to_str().unwrap()),
            "{err}"
        );
    }
}
