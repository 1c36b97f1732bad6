//! Small GRAY8 analysis frames from a recorded clip, as fast as GStreamer can decode:
//! `filesrc ! decodebin ! videoconvert ! videoscale ! videorate ! GRAY8 caps ! appsink`.
//! The live pipeline's analysis branch ends in the same caps.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::elements::{
    analysis_caps, frame_of, link_decoded_video, make, pipeline_error, posted_error,
};
use super::{CaptureError, DetectLine, DetectSummary, Frame};
use crate::config::MotionConfig;
use crate::motion::{Detector, EventMachine};

/// A clip being decoded into analysis frames.
pub struct ClipFrames {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    motion: MotionConfig,
}

impl ClipFrames {
    pub fn open(path: &Path, motion: &MotionConfig) -> Result<Self, CaptureError> {
        gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
        if !path.is_file() {
            return Err(CaptureError::Input(format!(
                "{} is not a readable file",
                path.display()
            )));
        }
        let pipeline = gst::Pipeline::new();
        let src = make("filesrc")?;
        src.set_property("location", path.to_string_lossy().as_ref());
        let decode = make("decodebin")?;
        let convert = make("videoconvert")?;
        let scale = make("videoscale")?;
        let rate = make("videorate")?;
        rate.set_property("drop-only", true);
        let sink = gst_app::AppSink::builder()
            .caps(&analysis_caps(motion))
            .sync(false)
            .max_buffers(8)
            .build();
        pipeline
            .add_many([&src, &decode, &convert, &scale, &rate, sink.upcast_ref()])
            .map_err(pipeline_error)?;
        src.link(&decode).map_err(pipeline_error)?;
        gst::Element::link_many([&convert, &scale, &rate, sink.upcast_ref()])
            .map_err(pipeline_error)?;
        link_decoded_video(&decode, &convert);
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            CaptureError::Input(format!("{}: GStreamer cannot play it", path.display()))
        })?;
        Ok(Self {
            pipeline,
            sink,
            motion: motion.clone(),
        })
    }

    /// The next frame; `None` at the end of the clip. A pipeline error (an undecodable
    /// stream, a missing decoder) ends it with that error instead of waiting forever.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        loop {
            if let Some(sample) = self
                .sink
                .try_pull_sample(gst::ClockTime::from_mseconds(100))
            {
                return frame_of(&sample, &self.motion).map(Some);
            }
            if self.sink.is_eos() {
                return Ok(None);
            }
            if let Some(error) = posted_error(&self.pipeline) {
                return Err(error);
            }
        }
    }
}

impl Drop for ClipFrames {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Runs detection over a recorded clip as fast as it decodes, calling `on_boundary` for
/// each event start and end.
pub fn detect_file(
    path: &Path,
    motion: &MotionConfig,
    mut on_boundary: impl FnMut(DetectLine),
) -> Result<DetectSummary, CaptureError> {
    let mut frames = ClipFrames::open(path, motion)?;
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
