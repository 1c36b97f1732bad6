//! JPEG snapshots of an analysis-branch picture (already masked), through GStreamer's
//! `jpegenc`: `appsrc ! jpegenc ! appsink`, one picture per motion event.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::elements::{make, pipeline_error, posted_error};
use super::CaptureError;

/// Encodes the picture in `sample` (raw video) as a JPEG of `quality` (1–100).
pub fn jpeg(sample: &gst::Sample, quality: u8) -> Result<Vec<u8>, CaptureError> {
    let caps = sample
        .caps()
        .ok_or_else(|| CaptureError::Pipeline("snapshot sample without caps".into()))?;
    let buffer = sample
        .buffer_owned()
        .ok_or_else(|| CaptureError::Pipeline("snapshot sample without a buffer".into()))?;
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&caps.to_owned())
        .format(gst::Format::Time)
        .build();
    let encoder = make("jpegenc")?;
    encoder.set_property("quality", i32::from(quality));
    let sink = gst_app::AppSink::builder().sync(false).build();
    let chain = [src.upcast_ref(), &encoder, sink.upcast_ref()];
    pipeline.add_many(chain).map_err(pipeline_error)?;
    gst::Element::link_many(chain).map_err(pipeline_error)?;
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| CaptureError::Pipeline("the JPEG encoder does not start".into()))?;
        src.push_buffer(buffer)
            .map_err(|e| CaptureError::Pipeline(format!("snapshot: {e:?}")))?;
        let _ = src.end_of_stream();
        match sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
            Some(jpeg) => {
                let buffer = jpeg
                    .buffer()
                    .ok_or_else(|| CaptureError::Pipeline("empty JPEG".into()))?;
                let map = buffer
                    .map_readable()
                    .map_err(|_| CaptureError::Pipeline("unreadable JPEG".into()))?;
                Ok(map.to_vec())
            }
            None => Err(posted_error(&pipeline)
                .unwrap_or_else(|| CaptureError::Pipeline("the JPEG encoder gave nothing".into()))),
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}
