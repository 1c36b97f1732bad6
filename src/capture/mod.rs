//! Capture through GStreamer: the live camera (`[capture]`: H.264 with a pre-roll ring,
//! clips, snapshots, privacy masks, motion events) and offline analysis of recorded clips
//! (`camagent detect`). The pure parts — masks, scaling, the ring — hold no GStreamer types.

pub mod analysis;
pub mod camera;
pub mod clip;
pub mod config;
mod elements;
pub mod eval;
pub mod mask;
mod pipeline;
pub mod recorder;
pub mod scale;
mod snapshot;

pub use config::{CaptureConfig, Source};

use std::path::Path;

use serde::Serialize;

use crate::config::MotionConfig;
use crate::motion::{Boundary, Detector, EndReason, EventMachine, Rect};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("GStreamer cannot start: {0}")]
    Init(String),
    #[error("GStreamer element `{0}` is missing; install the GStreamer plugins that provide it")]
    MissingElement(String),
    #[error("cannot build the pipeline: {0}")]
    Pipeline(String),
    #[error("input: {0}")]
    Input(String),
    #[error("clip storage: {0}")]
    Storage(String),
}

/// A frame the detector cannot take is bad input, like any other.
impl From<crate::motion::FrameSizeError> for CaptureError {
    fn from(e: crate::motion::FrameSizeError) -> Self {
        CaptureError::Input(e.to_string())
    }
}

/// One analysis frame: `width × height` GRAY8 bytes and its media time.
pub struct Frame {
    pub pts: std::time::Duration,
    pub pixels: Vec<u8>,
}

/// One event boundary as `camagent detect` prints it (a JSON line).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DetectLine {
    Start {
        event: u64,
        /// Media time in seconds.
        pts: f64,
        score: f32,
        regions: Vec<Rect>,
    },
    End {
        event: u64,
        pts: f64,
        reason: EndReason,
        peak_score: f32,
    },
}

impl From<Boundary> for DetectLine {
    fn from(b: Boundary) -> Self {
        match b {
            Boundary::Start {
                id,
                pts,
                score,
                regions,
            } => DetectLine::Start {
                event: id,
                pts: pts.as_secs_f64(),
                score,
                regions,
            },
            Boundary::End {
                id,
                pts,
                reason,
                peak_score,
            } => DetectLine::End {
                event: id,
                pts: pts.as_secs_f64(),
                reason,
                peak_score,
            },
        }
    }
}

/// What an offline run saw, beside its events.
pub struct DetectSummary {
    pub frames: u64,
    pub media_seconds: f64,
}

/// Runs detection over a recorded clip as fast as it decodes, calling `on_boundary` for
/// each event start and end.
pub fn detect_file(
    path: &Path,
    motion: &MotionConfig,
    mut on_boundary: impl FnMut(DetectLine),
) -> Result<DetectSummary, CaptureError> {
    let mut frames = analysis::ClipFrames::open(path, motion)?;
    let mut detector = Detector::new(motion.detector(), motion.width, motion.height);
    let mut events = EventMachine::new(motion.events.clone());
    let mut count = 0;
    let mut last = std::time::Duration::ZERO;
    while let Some(frame) = frames.next_frame()? {
        count += 1;
        last = frame.pts;
        let verdict = detector.analyse(&frame.pixels)?;
        if let Some(b) = events.step(frame.pts, &verdict) {
            on_boundary(b.into());
        }
    }
    if let Some(b) = events.finish(last) {
        on_boundary(b.into());
    }
    Ok(DetectSummary {
        frames: count,
        media_seconds: last.as_secs_f64(),
    })
}
