//! The detector on the motion corpus: clips made by `scripts/build-corpus` from packaged real
//! footage (opencv-doc's street and tree) under light that is not a gain, compression and
//! nuisance motion, each with a truth file. `camagent eval` scores the sets the detector was
//! not tuned on (`held-out`, `unseen`): no false event, no missed entry, onsets within 1 s,
//! ends within 4 s of motion stopping.
//!
//! The corpus is built once and cached (`CAMAGENT_CORPUS`, else under cargo's target
//! directory); the script rebuilds it only when it changes.

mod support;

use std::path::PathBuf;
use std::process::Command;

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

fn eval(dir: &std::path::Path) -> serde_json::Value {
    let (ok, out, err) = support::cli(
        env!("CARGO_BIN_EXE_camagent"),
        &["eval", "--json", dir.to_str().unwrap()],
    );
    assert!(ok, "camagent eval failed: {err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
#[cfg_attr(
    target_arch = "arm",
    ignore = "decoding the corpus under qemu-arm takes too long; the detector's unit tests run there"
)]
fn the_sets_the_detector_was_not_tuned_on_give_no_false_event_and_miss_nothing() {
    let root = corpus();
    for set in ["held-out", "unseen"] {
        let report = eval(&root.join(set));
        let totals = &report["totals"];
        let table = report["clips"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["false_events"] != 0 || c["missed"] != 0)
            .map(|c| format!("{} ({}): {}", c["clip"], c["what"], c))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(totals["clips"].as_u64().unwrap() >= 20, "{set}: {totals}");
        assert_eq!(totals["false_events"], 0, "{set}: {totals}\n{table}");
        assert_eq!(totals["missed"], 0, "{set}: {totals}\n{table}");
        assert!(
            totals["onset_max"].as_f64().unwrap() <= 1.0,
            "{set}: onsets within 1 s: {totals}"
        );
        assert!(
            totals["end_max"].as_f64().unwrap() <= 4.0,
            "{set}: events end within 4 s of motion stopping: {totals}"
        );
    }
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
