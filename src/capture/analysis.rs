//! Small analysis frames from a recorded clip, as fast as GStreamer can decode:
//! `filesrc ! decodebin ! videorate ! videoscale ! videoconvert ! appsink`, taking their luma.
//! The live pipeline's analysis branch ends in the same caps.
//!
//! On demand ([`Decoding::OnDemand`]), the clip is decoded whole and the units a decoder on
//! demand would not have decoded are left out: a unit decodes to the same picture whichever
//! of the units after it are decoded, so what the detector sees is what the camera's decoder
//! would give it (to within half an analysis period, where a plain B-frame was thinned),
//! with the detector's verdicts reaching the planner at once.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::elements::{
    analysis_caps, decodes_h264, frame_of, link_decoded_video, make, pipeline_error, posted_error,
    unit_cue,
};
use super::on_demand::{DecodePlanner, UnitCue};
use super::{CaptureError, DetectLine, DetectSummary, Frame};
use crate::config::capture::Decoding;
use crate::config::MotionConfig;
use crate::motion::{Detector, EventMachine};

/// A clip being decoded into analysis frames.
pub struct ClipFrames {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    motion: MotionConfig,
    /// The cue of every H.264 unit the decoder took, in decode order, with its PTS.
    cues: Arc<Mutex<Vec<(Duration, UnitCue)>>>,
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
        // Frames the analysis rate drops are neither scaled nor converted; scaled before
        // converted, as the camera's frames are (capture::pipeline).
        gst::Element::link_many([&rate, &scale, &convert, sink.upcast_ref()])
            .map_err(pipeline_error)?;
        link_decoded_video(&decode, &rate);
        let cues = Arc::new(Mutex::new(Vec::new()));
        record_cues(&decode, cues.clone());
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            CaptureError::Input(format!("{}: GStreamer cannot play it", path.display()))
        })?;
        Ok(Self {
            pipeline,
            sink,
            motion: motion.clone(),
            cues,
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

impl ClipFrames {
    /// The cues recorded so far, taken.
    fn take_cues(&mut self) -> Result<Vec<(Duration, UnitCue)>, CaptureError> {
        let mut cues = self
            .cues
            .lock()
            .map_err(|_| CaptureError::Pipeline("the cue recorder panicked".into()))?;
        Ok(std::mem::take(&mut *cues))
    }
}

impl Drop for ClipFrames {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Records the cue of each H.264 unit decodebin's H.264 decoder takes.
fn record_cues(decode: &gst::Element, cues: Arc<Mutex<Vec<(Duration, UnitCue)>>>) {
    let Some(bin) = decode.downcast_ref::<gst::Bin>() else {
        return;
    };
    bin.connect_deep_element_added(move |_, _, element| {
        let h264_decoder = element.factory().is_some_and(|f| decodes_h264(&f));
        let Some(sink) = element.static_pad("sink").filter(|_| h264_decoder) else {
            return;
        };
        let cues = cues.clone();
        sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(buffer) = info.buffer() {
                let caps = pad.current_caps();
                if let (Some(cue), Some(pts)) = (unit_cue(buffer, caps.as_deref()), buffer.pts()) {
                    if let Ok(mut cues) = cues.lock() {
                        cues.push((pts.into(), cue));
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });
    });
}

/// Runs detection over a recorded clip as fast as it decodes, calling `on_boundary` for
/// each event start and end; `decoding` says which pictures the detector gets to see.
pub fn detect_file(
    path: &Path,
    motion: &MotionConfig,
    decoding: Decoding,
    mut on_boundary: impl FnMut(DetectLine),
) -> Result<DetectSummary, CaptureError> {
    let mut clip = ClipFrames::open(path, motion)?;
    let mut detector = Detector::new(motion.detector(), motion.width, motion.height);
    let mut events = EventMachine::new(motion.events.clone());
    let (mut count, mut last) = (0, Duration::ZERO);
    let mut analyse = |frame: &Frame| -> Result<bool, CaptureError> {
        count += 1;
        last = frame.pts;
        let verdict = detector.analyse(frame.pts, &frame.pixels)?;
        if let Some(b) = events.step(frame.pts, &verdict) {
            on_boundary(b.into());
        }
        Ok(verdict.motion || events.active())
    };
    let (units, decoded) = match decoding {
        Decoding::Always => {
            while let Some(frame) = clip.next_frame()? {
                analyse(&frame)?;
            }
            let units = clip.take_cues()?.len() as u64;
            (units, units)
        }
        Decoding::OnDemand => {
            let mut frames = Vec::new();
            while let Some(frame) = clip.next_frame()? {
                frames.push(frame);
            }
            replay_on_demand(&clip.take_cues()?, &frames, motion.period(), analyse)?
        }
    };
    if let Some(b) = events.finish(last) {
        on_boundary(b.into());
    }
    Ok(DetectSummary {
        frames: count,
        media_seconds: last.as_secs_f64(),
        units,
        decoded,
    })
}

/// What a unit came to, on demand.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    /// Not decoded yet; a cue may still bring it in.
    Waiting,
    Decoded,
    /// Not decoded: a picture within half an analysis period was, which the camera's
    /// analysis rate takes instead.
    Thinned,
    /// Its group ended without it.
    Dropped,
}

/// Feeds `analyse` the frames a [`DecodePlanner`] gives pictures for, in order, and the
/// planner the verdicts; `cues` in decode order. Returns units seen and decoded. Without
/// cues (not H.264) every frame is analysed.
///
/// An analysis frame is the picture of the unit nearest it in time. Where that unit was
/// thinned, the frame stands for the decoded picture near it, at most half an analysis
/// period away, that the camera's analysis rate would take instead.
fn replay_on_demand(
    cues: &[(Duration, UnitCue)],
    frames: &[Frame],
    period: Duration,
    mut analyse: impl FnMut(&Frame) -> Result<bool, CaptureError>,
) -> Result<(u64, u64), CaptureError> {
    if cues.is_empty() {
        for frame in frames {
            analyse(frame)?;
        }
        return Ok((0, 0));
    }
    let mut by_pts: Vec<usize> = (0..cues.len()).collect();
    by_pts.sort_by_key(|&i| cues[i].0);
    let unit_of = |pts: Duration| {
        let at = by_pts.partition_point(|&i| cues[i].0 < pts);
        [at.checked_sub(1), Some(at)]
            .into_iter()
            .flatten()
            .filter_map(|j| by_pts.get(j))
            .min_by_key(|&&i| cues[i].0.abs_diff(pts))
            .copied()
    };
    let frame_units: Vec<Option<usize>> = frames.iter().map(|f| unit_of(f.pts)).collect();
    let mut fate = vec![Fate::Waiting; cues.len()];
    let mut planner = DecodePlanner::new(super::on_demand::HOLD, period);
    let mut next = 0;
    for (i, (pts, cue)) in cues.iter().enumerate() {
        let picked = planner.push(*cue, Some(*pts), i);
        for (units, to) in [
            (picked.decode, Fate::Decoded),
            (picked.thinned, Fate::Thinned),
            (picked.dropped, Fate::Dropped),
        ] {
            for unit in units {
                fate[unit] = to;
            }
        }
        let last_unit = i + 1 == cues.len();
        while let Some(frame) = frames.get(next) {
            match frame_units[next].map_or(Fate::Decoded, |u| fate[u]) {
                Fate::Decoded | Fate::Thinned => {
                    let busy = analyse(frame)?;
                    planner.scene(frame.pts, busy);
                }
                Fate::Waiting if !last_unit => break,
                Fate::Waiting | Fate::Dropped => {}
            }
            next += 1;
        }
    }
    let (units, decoded) = planner.counts();
    Ok((units, decoded))
}
