//! The detector on the motion corpus: clips made by `scripts/build-corpus` from packaged real
//! footage (opencv-doc's street and tree) under light that is not a gain, compression and
//! nuisance motion, each with a truth file. `camagent eval` scores the sets the detector was
//! not tuned on (`held-out`, `unseen`, `fresh`): no false event, no missed entry, onsets
//! within 1 s, ends within 4 s of motion stopping.
//!
//! Decoding on demand (`camagent eval --decode on-demand`) must find every event that decoding
//! everything finds, on the same sets.
//!
//! The corpus is built once and cached (`CAMAGENT_CORPUS`, else under cargo's target
//! directory); the script rebuilds it only when it changes.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use gstreamer as gst;

fn corpus() -> PathBuf {
    let dir = std::env::var_os("CAMAGENT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("corpus"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-corpus");
    let status = Command::new(script)
        .arg(&dir)
        .status()
        .expect("scripts/build-corpus runs (python3-numpy and ffmpeg: scripts/install-deps)");
    assert!(status.success(), "building the corpus failed");
    dir
}

/// The sets the detector was not tuned on.
const UNTUNED: [&str; 3] = ["held-out", "unseen", "fresh"];

fn eval(dir: &std::path::Path, decode: &str) -> serde_json::Value {
    let (ok, out, err) = support::cli(
        env!("CARGO_BIN_EXE_camagent"),
        &["eval", "--json", "--decode", decode, dir.to_str().unwrap()],
    );
    assert!(ok, "camagent eval failed: {err}");
    serde_json::from_str(&out).unwrap()
}

/// A clip's hits' onset errors (found − true start, seconds), as `camagent eval` scores them.
fn onset_errors(clip: &serde_json::Value) -> Vec<f64> {
    clip["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["onset_error"].as_f64().unwrap())
        .collect()
}

#[test]
#[cfg_attr(
    target_arch = "arm",
    ignore = "decoding the corpus under qemu-arm takes too long; the detector's unit tests run there"
)]
fn the_sets_the_detector_was_not_tuned_on_are_exactly_right() {
    let root = corpus();
    for set in UNTUNED {
        let report = eval(&root.join(set), "always");
        let clips = report["clips"].as_array().unwrap();
        assert!(clips.len() >= 25, "{set}: {}", report["totals"]);
        for c in clips {
            let name = c["clip"].as_str().unwrap();
            let (false_events, missed) = (c["false_events"].as_u64(), c["missed"].as_u64());
            let onsets: Vec<f64> = onset_errors(c).iter().map(|o| o.abs()).collect();
            let ends_ok = c["hits"]
                .as_array()
                .unwrap()
                .iter()
                .all(|h| h["end_error"].as_f64().unwrap() <= 4.0);
            let latest = onsets.iter().cloned().fold(0.0, f64::max);
            let why = format!("{set}/{name} ({}): {c}", c["what"]);
            assert!(ends_ok, "events end within 4 s of motion stopping: {why}");
            assert!(
                false_events == Some(0) && missed == Some(0) && latest <= 1.0,
                "no false event, no miss, onsets within 1 s: {why}"
            );
        }
    }
}

/// Every event found with every unit decoded is found on demand, with no false one, at most
/// a group of pictures (2 s in the corpus) and an analysis frame later; and most units are
/// never decoded.
#[test]
#[cfg_attr(
    target_arch = "arm",
    ignore = "decoding the corpus under qemu-arm takes too long; the planner's unit tests run there"
)]
fn decoding_on_demand_finds_every_event_that_decoding_everything_finds() {
    let root = corpus();
    for set in UNTUNED {
        let always = eval(&root.join(set), "always");
        let on_demand = eval(&root.join(set), "on-demand");
        let clips = |r: &serde_json::Value| r["clips"].as_array().unwrap().clone();
        for (a, d) in clips(&always).iter().zip(clips(&on_demand).iter()) {
            let why = format!("{set}/{}: always {a}, on demand {d}", a["clip"]);
            assert_eq!(a["clip"], d["clip"]);
            assert_eq!(d["false_events"], 0, "{why}");
            assert_eq!(d["missed"], a["missed"], "{why}");
            let (a_onsets, d_onsets) = (onset_errors(a), onset_errors(d));
            assert_eq!(a_onsets.len(), d_onsets.len(), "{why}");
            for (a, d) in a_onsets.iter().zip(&d_onsets) {
                assert!(*d - *a <= 2.2, "at most a group of pictures later: {why}");
            }
        }
        let decoded = &on_demand["decoded"];
        let share = decoded["decoded"].as_f64().unwrap() / decoded["units"].as_f64().unwrap();
        assert!(share < 0.5, "{set}: decoded {decoded}");
    }
}

/// Each picture `decoder` makes of `clip`: its presentation time and the CRC-32 of its I420
/// bytes, in the order they came out.
fn pictures(clip: &Path, decoder: &str) -> Vec<(u64, u32)> {
    let tail = format!("qtdemux ! h264parse ! {decoder} ! video/x-raw,format=I420");
    support::pull_all(clip, &tail, |sample| {
        let buffer = sample.buffer().unwrap();
        let map = buffer.map_readable().unwrap();
        (buffer.pts().unwrap().nseconds(), crc32fast::hash(&map))
    })
}

/// The agent's own decoder (a detection stream's) on every clip of the corpus, none of which
/// it was written against: x264 at veryfast (B-pyramids, weighted prediction, CABAC, 8×8
/// transforms), CRF and starved CBR. Every picture it gives is libav's at the same time, in
/// presentation order, and it leaves out at most the B-frames before it has learnt how far
/// the stream reorders.
#[test]
#[cfg_attr(
    target_arch = "arm",
    ignore = "decoding the corpus under qemu-arm takes too long; the decoder's unit tests run there"
)]
fn the_agents_own_decoder_decodes_every_clip_as_libav_does() {
    gst::init().unwrap();
    camagent::capture::h264dec::register().unwrap();
    let root = corpus();
    let mut clips: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|set| std::fs::read_dir(set.ok()?.path()).ok())
        .flatten()
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "mp4"))
        .collect();
    clips.sort();
    assert!(
        clips.len() >= 100,
        "{} clips in {}",
        clips.len(),
        root.display()
    );
    let mut left_out = 0;
    for clip in &clips {
        let libav = pictures(clip, "avdec_h264");
        let own = pictures(clip, camagent::capture::h264dec::NAME);
        let why = clip.display();
        assert!(
            own.windows(2).all(|w| w[0].0 < w[1].0),
            "{why}: out of order"
        );
        for picture in &own {
            assert!(
                libav.contains(picture),
                "{why}: the picture at {} ns",
                picture.0
            );
        }
        assert!(
            libav.len() - own.len() <= 3,
            "{why}: {} of {}",
            own.len(),
            libav.len()
        );
        left_out += libav.len() - own.len();
    }
    eprintln!(
        "{} clips, {left_out} pictures left out while learning",
        clips.len()
    );
}

#[test]
fn eval_without_truth_files_says_how_to_make_a_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = support::cli(
        env!("CARGO_BIN_EXE_camagent"),
        &["eval", tmp.path().to_str().unwrap()],
    );
    assert!(!ok);
    assert!(err.contains("scripts/build-corpus"), "{err}");
}
