//! `camagent eval DIR`: the detector over every clip of a corpus (`NAME.truth.json` beside
//! each clip), scored against its truth by [`crate::motion::eval`].

use std::collections::HashMap;
use std::path::Path;

use super::{detect_file, CaptureError, DetectLine};
use crate::config::MotionConfig;
use crate::motion::eval::{score, ClipScore, Span, Truth};

/// Scores every clip in `dir` that has a truth file, in name order.
pub fn evaluate_dir(dir: &Path, motion: &MotionConfig) -> Result<Vec<ClipScore>, CaptureError> {
    let unreadable = |e: std::io::Error| CaptureError::Input(format!("{}: {e}", dir.display()));
    let mut truths: Vec<_> = std::fs::read_dir(dir)
        .map_err(unreadable)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".truth.json"))
        .collect();
    truths.sort();
    if truths.is_empty() {
        return Err(CaptureError::Input(format!(
            "{} holds no NAME.truth.json files (scripts/build-corpus makes a corpus)",
            dir.display()
        )));
    }
    truths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(unreadable)?;
            let truth: Truth = serde_json::from_str(&text)
                .map_err(|e| CaptureError::Input(format!("{}: {e}", path.display())))?;
            let name = path
                .file_name()
                .map(|n| {
                    n.to_string_lossy()
                        .trim_end_matches(".truth.json")
                        .to_owned()
                })
                .unwrap_or_default();
            let found = events_in(&dir.join(&truth.clip), motion)?;
            Ok(score(&name, &truth, &found))
        })
        .collect()
}

/// The events the detector finds in one clip, as start and end times.
fn events_in(clip: &Path, motion: &MotionConfig) -> Result<Vec<Span>, CaptureError> {
    let mut open = HashMap::new();
    let mut spans = Vec::new();
    detect_file(clip, motion, |line| match line {
        DetectLine::Start { event, pts, .. } => {
            open.insert(event, pts);
        }
        DetectLine::End { event, pts, .. } => {
            if let Some(start) = open.remove(&event) {
                spans.push(Span { start, end: pts });
            }
        }
    })?;
    Ok(spans)
}
