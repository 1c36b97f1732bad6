//! JPEG snapshots of the newest decoded picture (already masked), scaled to the snapshot size
//! and encoded by GStreamer's `jpegenc`: `appsrc ! videoconvert ! videoscale ! I420 ! jpegenc
//! ! appsink`. The pipeline is built once and kept playing, so a snapshot costs one picture's
//! scaling and encoding, not a pipeline's construction.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::elements::{make, pipeline_error, posted_error};
use super::CaptureError;
use crate::config::capture::SnapshotConfig;

/// How long one picture may take to encode.
const ENCODE_WAIT: gst::ClockTime = gst::ClockTime::from_seconds(5);

pub struct JpegEncoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
}

impl JpegEncoder {
    pub fn new(config: &SnapshotConfig) -> Result<Self, CaptureError> {
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .format(gst::Format::Time)
            .is_live(false)
            .build();
        let convert = make("videoconvert")?;
        let scale = make("videoscale")?;
        let size = make("capsfilter")?;
        size.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", config.width as i32)
                .field("height", config.height as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        );
        let encoder = make("jpegenc")?;
        encoder.set_property("quality", i32::from(config.quality));
        let sink = gst_app::AppSink::builder().sync(false).build();
        let chain = [
            src.upcast_ref(),
            &convert,
            &scale,
            &size,
            &encoder,
            sink.upcast_ref(),
        ];
        pipeline.add_many(chain).map_err(pipeline_error)?;
        gst::Element::link_many(chain).map_err(pipeline_error)?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| CaptureError::Pipeline("the JPEG encoder does not start".into()))?;
        Ok(Self {
            pipeline,
            src,
            sink,
        })
    }

    /// Encodes the picture in `sample` (raw video of any size).
    pub fn encode(&self, sample: &gst::Sample) -> Result<Vec<u8>, CaptureError> {
        let caps = sample
            .caps()
            .ok_or_else(|| CaptureError::Pipeline("snapshot sample without caps".into()))?;
        let mut buffer = sample
            .buffer_owned()
            .ok_or_else(|| CaptureError::Pipeline("snapshot sample without a buffer".into()))?;
        // The encoder keeps no clock: a picture from a restarted source may be older.
        buffer.make_mut().set_pts(gst::ClockTime::NONE);
        let caps = caps.to_owned();
        if self.src.caps().as_ref() != Some(&caps) {
            self.src.set_caps(Some(&caps));
        }
        self.src
            .push_buffer(buffer)
            .map_err(|e| CaptureError::Pipeline(format!("snapshot: {e:?}")))?;
        let jpeg = self.sink.try_pull_sample(ENCODE_WAIT).ok_or_else(|| {
            posted_error(&self.pipeline)
                .unwrap_or_else(|| CaptureError::Pipeline("the JPEG encoder gave nothing".into()))
        })?;
        let buffer = jpeg
            .buffer()
            .ok_or_else(|| CaptureError::Pipeline("empty JPEG".into()))?;
        let map = buffer
            .map_readable()
            .map_err(|_| CaptureError::Pipeline("unreadable JPEG".into()))?;
        Ok(map.to_vec())
    }
}

impl Drop for JpegEncoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
