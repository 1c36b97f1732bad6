//! `camagent eval DIR`: the detector over every clip of a corpus (`NAME.truth.json` beside
//! each clip), scored against its truth by [`crate::motion::eval`].

use std::collections::HashMap;
use std::path::Path;

use super::{detect_file, CaptureError, DetectLine};
use crate::config::capture::Decoding;
use crate::config::MotionConfig;
use crate::motion::eval::{score, ClipScore, Span, Truth};

/// H.264 units over a whole corpus, and how many the detector's decoder needed.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Decoded {
    pub units: u64,
    pub decoded: u64,
}

/// Scores every clip in `dir` that has a truth file, in name order, with the detector seeing
/// what `decoding` decodes.
pub fn evaluate_dir(
    dir: &Path,
    motion: &MotionConfig,
    decoding: Decoding,
) -> Result<(Vec<ClipScore>, Decoded), CaptureError> {
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
    let mut decoded = Decoded::default();
    let scores = truths
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
            let found = events_in(&dir.join(&truth.clip), motion, decoding, &mut decoded)?;
            Ok(score(&name, &truth, &found))
        })
        .collect::<Result<_, CaptureError>>()?;
    Ok((scores, decoded))
}

/// The events the detector finds in one clip, as start and end times.
fn events_in(
    clip: &Path,
    motion: &MotionConfig,
    decoding: Decoding,
    decoded: &mut Decoded,
) -> Result<Vec<Span>, CaptureError> {
    let mut open = HashMap::new();
    let mut spans = Vec::new();
    let summary = detect_file(clip, motion, decoding, |line| match line {
        DetectLine::Start { event, pts, .. } => {
            open.insert(event, pts);
        }
        DetectLine::End { event, pts, .. } => {
            if let Some(start) = open.remove(&event) {
                spans.push(Span { start, end: pts });
            }
        }
    })?;
    decoded.units += summary.units;
    decoded.decoded += summary.decoded;
    Ok(spans)
}
