//! The live source: analysis frames from a camera source in real time, on a thread of its own
//! (GStreamer's appsink blocks), restarted with backoff when the source fails or ends.
//!
//! So far the presets are `test` (videotestsrc) and `file` (a clip, looped); the H.264 tee,
//! pre-roll ring, snapshots and clips build on this.

use std::path::PathBuf;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::elements::{
    analysis_caps, frame_of, link_decoded_video, make, pipeline_error, posted_error,
};
use super::{CaptureError, Frame};
use crate::config::MotionConfig;
use crate::uplink::backoff::Backoff;

/// `[capture]`: where pictures come from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// GStreamer's synthetic scene: a moving ball (always motion) or a still pattern.
    Test {
        #[serde(default = "default_pattern")]
        pattern: String,
    },
    /// A recorded clip, played in real time, looped.
    File { path: PathBuf },
}

fn default_pattern() -> String {
    "ball".into()
}

/// Builds `SOURCE ! videoconvert ! videoscale ! videorate ! GRAY8 ! leaky queue ! appsink`.
fn build(
    source: &SourceConfig,
    motion: &MotionConfig,
) -> Result<(gst::Pipeline, gst_app::AppSink), CaptureError> {
    let pipeline = gst::Pipeline::new();
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    let rate = make("videorate")?;
    // A live source must never stall: slow analysis drops old frames. A file is paced by the
    // sink's clock instead — dropping there would race through the clip to its end.
    let live = matches!(source, SourceConfig::Test { .. });
    let queue = make("queue")?;
    queue.set_property("max-size-buffers", 2u32);
    if live {
        queue.set_property_from_str("leaky", "downstream");
    }
    let sink = gst_app::AppSink::builder()
        .caps(&analysis_caps(motion))
        .sync(true)
        .max_buffers(2)
        .drop(live)
        .build();
    let tail = [&convert, &scale, &rate, &queue, sink.upcast_ref()];
    pipeline.add_many(tail).map_err(pipeline_error)?;
    gst::Element::link_many(tail).map_err(pipeline_error)?;
    match source {
        SourceConfig::Test { pattern } => {
            let src = make("videotestsrc")?;
            src.set_property("is-live", true);
            src.set_property_from_str("pattern", pattern);
            pipeline.add(&src).map_err(pipeline_error)?;
            src.link(&convert).map_err(pipeline_error)?;
        }
        SourceConfig::File { path } => {
            let src = make("filesrc")?;
            src.set_property("location", path.to_string_lossy().as_ref());
            let decode = make("decodebin")?;
            pipeline.add_many([&src, &decode]).map_err(pipeline_error)?;
            src.link(&decode).map_err(pipeline_error)?;
            link_decoded_video(&decode, &convert);
        }
    }
    Ok((pipeline, sink))
}

/// Why a run of the pipeline stopped.
enum Stopped {
    /// The receiver is gone: the agent is shutting down.
    Closed,
    /// End of a file source: play it again.
    Ended,
    Failed(CaptureError),
}

fn run_once(source: &SourceConfig, motion: &MotionConfig, frames: &mpsc::Sender<Frame>) -> Stopped {
    let (pipeline, sink) = match build(source, motion) {
        Ok(p) => p,
        Err(e) => return Stopped::Failed(e),
    };
    if pipeline.set_state(gst::State::Playing).is_err() {
        let _ = pipeline.set_state(gst::State::Null);
        return Stopped::Failed(CaptureError::Input("the source does not start".into()));
    }
    // Media time restarts with each run; frames carry running time since the first run.
    let stopped = loop {
        if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            match frame_of(&sample, motion) {
                Ok(frame) => {
                    if frames.blocking_send(frame).is_err() {
                        break Stopped::Closed;
                    }
                }
                Err(e) => warn!("analysis frame dropped: {e}"),
            }
            continue;
        }
        if frames.is_closed() {
            break Stopped::Closed;
        }
        if sink.is_eos() {
            break Stopped::Ended;
        }
        if let Some(error) = posted_error(&pipeline) {
            break Stopped::Failed(error);
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    stopped
}

/// Runs the source on its own thread until the receiver of `frames` is dropped.
pub fn spawn(
    source: SourceConfig,
    motion: MotionConfig,
    frames: mpsc::Sender<Frame>,
) -> Result<std::thread::JoinHandle<()>, CaptureError> {
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
    std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
            loop {
                info!(?source, "capture source starting");
                match run_once(&source, &motion, &frames) {
                    Stopped::Closed => return,
                    Stopped::Ended => {
                        backoff.reset();
                        continue;
                    }
                    Stopped::Failed(e) => {
                        let delay = backoff.next_delay();
                        warn!("capture source failed: {e}; restarting in {delay:?}");
                        std::thread::sleep(delay);
                    }
                }
            }
        })
        .map_err(|e| CaptureError::Init(e.to_string()))
}
