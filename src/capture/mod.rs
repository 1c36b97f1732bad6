//! Capture through GStreamer: the live camera (`[capture]`: H.264 with a pre-roll ring,
//! clips, snapshots, privacy masks, motion events) and offline analysis of recorded clips
//! (`camagent detect`). The pure parts — masks, scaling, the ring — hold no GStreamer types.

#[cfg(feature = "capture")]
pub mod analysis;
#[cfg(feature = "capture")]
pub mod camera;
#[cfg(feature = "capture")]
pub mod clip;
#[cfg(feature = "capture")]
mod elements;
#[cfg(feature = "capture")]
pub mod eval;
#[cfg(feature = "capture")]
mod finisher;
pub mod fmp4;
#[cfg(feature = "capture")]
pub mod h264dec;
pub mod mask;
pub mod on_demand;
#[cfg(feature = "capture")]
mod pipeline;
pub mod plugins;
pub mod recorder;
#[cfg(feature = "capture")]
mod rtsp;
#[cfg(feature = "capture")]
mod snapshot;

pub use crate::config::capture::{CaptureConfig, Source};
#[cfg(feature = "capture")]
pub use analysis::detect_file;

use serde::Serialize;

use crate::motion::{Boundary, EndReason, Rect};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("GStreamer cannot start: {0}")]
    Init(String),
    #[error("GStreamer element `{0}` is missing; install the GStreamer plugins that provide it (the agent loads only those its pipeline uses and those `capture.plugins` names)")]
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

/// One analysis frame: `width × height` bytes of luma and its media time.
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
    /// Analysis frames the detector saw.
    pub frames: u64,
    pub media_seconds: f64,
    /// H.264 units in the clip, and how many the detector's decoder needed.
    pub units: u64,
    pub decoded: u64,
}
