//! Small GRAY8 analysis frames from a recorded clip, as fast as GStreamer can decode:
//! `filesrc ! decodebin ! videoconvert ! videoscale ! videorate ! GRAY8 caps ! appsink`.
//! The live pipeline's analysis branch ends in the same caps.

use std::path::Path;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::CaptureError;
use crate::config::MotionConfig;

/// One analysis frame: `width × height` GRAY8 bytes and its media time.
pub struct Frame {
    pub pts: Duration,
    pub pixels: Vec<u8>,
}

/// A clip being decoded into analysis frames.
pub struct ClipFrames {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    expected_len: usize,
}

fn make(factory: &str) -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| CaptureError::MissingElement(factory.to_owned()))
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
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "GRAY8")
            .field("width", motion.width as i32)
            .field("height", motion.height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .field("framerate", gst::Fraction::new(motion.fps as i32, 1))
            .build();
        let sink = gst_app::AppSink::builder()
            .caps(&caps)
            .sync(false)
            .max_buffers(8)
            .build();
        pipeline
            .add_many([&src, &decode, &convert, &scale, &rate, sink.upcast_ref()])
            .map_err(|e| CaptureError::Pipeline(e.to_string()))?;
        src.link(&decode)
            .map_err(|e| CaptureError::Pipeline(e.to_string()))?;
        gst::Element::link_many([&convert, &scale, &rate, sink.upcast_ref()])
            .map_err(|e| CaptureError::Pipeline(e.to_string()))?;
        // decodebin makes its pads once it knows the streams: link the first video one.
        let convert_weak = convert.downgrade();
        decode.connect_pad_added(move |_, pad| {
            let Some(convert) = convert_weak.upgrade() else {
                return;
            };
            let is_video = pad
                .current_caps()
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(false);
            if let Some(sinkpad) = convert.static_pad("sink") {
                if is_video && !sinkpad.is_linked() {
                    let _ = pad.link(&sinkpad);
                }
            }
        });
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            CaptureError::Input(format!("{}: GStreamer cannot play it", path.display()))
        })?;
        Ok(Self {
            pipeline,
            sink,
            expected_len: motion.width * motion.height,
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
                return self.frame(&sample).map(Some);
            }
            if self.sink.is_eos() {
                return Ok(None);
            }
            if let Some(error) = self.bus_error() {
                return Err(error);
            }
        }
    }

    fn frame(&self, sample: &gst::Sample) -> Result<Frame, CaptureError> {
        let buffer = sample
            .buffer()
            .ok_or_else(|| CaptureError::Pipeline("sample without a buffer".into()))?;
        let map = buffer
            .map_readable()
            .map_err(|_| CaptureError::Pipeline("unreadable buffer".into()))?;
        if map.len() != self.expected_len {
            return Err(CaptureError::Pipeline(format!(
                "frame of {} bytes, expected {}",
                map.len(),
                self.expected_len
            )));
        }
        Ok(Frame {
            pts: Duration::from_nanos(buffer.pts().map_or(0, |t| t.nseconds())),
            pixels: map.to_vec(),
        })
    }

    /// The first error the pipeline posted, if any.
    fn bus_error(&self) -> Option<CaptureError> {
        let bus = self.pipeline.bus()?;
        while let Some(msg) = bus.pop() {
            if let gst::MessageView::Error(err) = msg.view() {
                let debug = err.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                return Some(CaptureError::Input(format!("{}{debug}", err.error())));
            }
        }
        None
    }
}

impl Drop for ClipFrames {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
