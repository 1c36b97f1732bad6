//! `camagent detect` on clips through real GStreamer pipelines: synthetic scenes with known
//! ground truth, encoded with GStreamer itself, and real street footage from Debian's
//! opencv-doc.

mod support;

use std::path::Path;

use support::scenes::*;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_camagent");
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
    // The detector spends its first two seconds learning the scene (what always moves
    // there), so people in view from the first frame are reported once that is done.
    assert!(s[0] <= 2.2, "{events:?}");
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
