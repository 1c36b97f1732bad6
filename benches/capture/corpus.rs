//! camagent and the Motion daemon side by side on the motion corpus (`scripts/build-corpus`):
//! the sets the detector was not tuned on. camagent through `camagent eval`; Motion (its
//! defaults, with `event_gap` set to camagent's 3 s gap) playing each clip as a file camera,
//! several at once, its events counted by its `on_event_start` hook. Motion does not say
//! where in a file an event starts, so its row compares counts: every event on a clip with no
//! truth is false; on a clip with entries, events beyond the truth are false and entries
//! beyond its events missed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{common, motion_version, FPS, HEIGHT, WIDTH};

/// Motion instances playing at once (each is mostly idle, waiting for frames).
const PARALLEL: usize = 6;

struct Row {
    set: &'static str,
    clip: String,
    what: String,
    truth: u64,
    ours_found: u64,
    ours_false: u64,
    ours_missed: u64,
    motion_events: u64,
}

pub(crate) fn corpus_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("CAMAGENT_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/corpus"));
    let status = Command::new(root.join("scripts/build-corpus"))
        .arg(&dir)
        .status()
        .expect("scripts/build-corpus");
    assert!(status.success());
    dir
}

/// Events Motion raises on a clip played in real time, with camagent's event gap.
fn motion_events(work: &Path, clip: &Path, seconds: f64) -> u64 {
    let (mut child, events) = super::spawn_motion(work, clip, "event_gap 3\n");
    std::thread::sleep(Duration::from_secs_f64(seconds + 4.0));
    let _ = child.kill();
    let _ = child.wait();
    super::motion_events(&events) as u64
}

fn rows_for(set: &'static str, dir: &Path, work: &Path) -> Vec<Row> {
    let (ok, out, err) = super::support::cli(
        env!("CARGO_BIN_EXE_camagent"),
        &["eval", "--json", dir.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let clips = report["clips"].as_array().unwrap().clone();
    let mut rows: Vec<Row> = clips
        .iter()
        .map(|c| Row {
            set,
            clip: c["clip"].as_str().unwrap().to_owned(),
            what: c["what"].as_str().unwrap().to_owned(),
            truth: c["truth"].as_u64().unwrap(),
            ours_found: c["found"].as_u64().unwrap(),
            ours_false: c["false_events"].as_u64().unwrap(),
            ours_missed: c["missed"].as_u64().unwrap(),
            motion_events: 0,
        })
        .collect();
    for batch in rows.chunks_mut(PARALLEL) {
        std::thread::scope(|scope| {
            for row in batch.iter_mut() {
                let truth: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(dir.join(format!("{}.truth.json", row.clip))).unwrap(),
                )
                .unwrap();
                let clip = dir.join(truth["clip"].as_str().unwrap());
                let seconds = truth["seconds"].as_f64().unwrap_or(30.0);
                let work = work.join(set).join(&row.clip);
                scope.spawn(move || row.motion_events = motion_events(&work, &clip, seconds));
            }
        });
        eprintln!("{set}: Motion played {} clips", batch.len());
    }
    rows
}

pub fn against_motion() {
    let corpus = corpus_dir();
    let work = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    for set in ["held-out", "unseen", "fresh"] {
        rows.extend(rows_for(set, &corpus.join(set), work.path()));
    }
    let mut table = String::new();
    let (mut ours_false, mut ours_missed, mut theirs_false, mut theirs_missed) = (0, 0, 0, 0);
    let (mut truth, mut nuisance_clips, mut theirs_quiet) = (0, 0, 0);
    for r in &rows {
        let motion_false = r.motion_events.saturating_sub(r.truth);
        let motion_missed = r.truth.saturating_sub(r.motion_events);
        ours_false += r.ours_false;
        ours_missed += r.ours_missed;
        theirs_false += motion_false;
        theirs_missed += motion_missed;
        truth += r.truth;
        if r.truth == 0 {
            nuisance_clips += 1;
            theirs_quiet += u64::from(r.motion_events == 0);
        }
        table.push_str(&format!(
            "| {}/{} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.set,
            r.clip,
            r.what,
            r.truth,
            r.ours_found,
            r.ours_false,
            r.ours_missed,
            r.motion_events,
            if motion_false > 0 {
                format!("{motion_false} false")
            } else if motion_missed > 0 {
                format!("{motion_missed} missed")
            } else {
                "ok".into()
            }
        ));
    }
    let when = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let section = format!(
        "## Motion corpus: camagent and the Motion daemon side by side\n\n\
         `cargo bench --bench capture -- corpus` — {when}, {cpu}. The `held-out`, `unseen` \
         and `fresh` sets of `scripts/build-corpus` (packaged footage under light changes, \
         compression and nuisance motion; the detector was tuned on `tune`), {n} clips with {truth} true \
         events, analysed at {FPS} fps by both (camagent at its default 320×180, Motion at \
         {WIDTH}×{HEIGHT}: its sides are multiples of 16). camagent: `camagent eval` \
         with the shipped settings. Motion {motion}: its defaults with `event_gap 3`, each clip \
         played as a file camera; Motion does not report where in a file an event starts, so \
         its events are counted per clip (beyond the truth: false; short of it: missed).\n\n\
         | clip | what | true events | camagent events | camagent false | camagent missed | Motion events | Motion |\n\
         |---|---|---:|---:|---:|---:|---:|---|\n{table}\n\
         Totals: camagent {ours_false} false events and {ours_missed} missed; Motion \
         {theirs_false} false events and {theirs_missed} missed, quiet on {theirs_quiet} of \
         {nuisance_clips} clips with nothing to find. camagent's onsets and ends are in \
         `camagent eval`'s totals (the previous section).\n",
        cpu = common::cpu(),
        n = rows.len(),
        motion = motion_version(),
    );
    print!("{section}");
    common::update_benchmarks(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "## Motion corpus",
        &section,
    );
}
