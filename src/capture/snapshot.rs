//! JPEG snapshots of the newest decoded picture (already masked), scaled to the snapshot size
//! and encoded by GStreamer's `jpegenc`: `appsrc ! videoconvert ! videoscale ! I420 ! jpegenc
//! ! appsink`. The pipeline is built once and kept playing, so a snapshot costs one picture's
//! scaling and encoding, not a pipeline's construction. With a detection stream, the picture
//! can come from the main stream instead ([`MainPicture`]).

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::elements::{h264_decoder, make, pipeline_error, posted_error, DecoderFor};
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

/// The main stream's picture at a moment, decoded from the start of its group of pictures:
/// `appsrc ! h264parse ! decoder ! appsink`, built once and kept (ready between pictures).
pub struct MainPicture {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
}

impl MainPicture {
    pub fn new() -> Result<Self, CaptureError> {
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .format(gst::Format::Time)
            .is_live(false)
            .build();
        // The units' own segments come with them: pictures keep the units' running time.
        src.set_property("handle-segment-change", true);
        let parse = make("h264parse")?;
        // Not OpenH264: its element (GStreamer 1.22) holds a High-profile stream's first
        // picture back for reordering and drains nothing at end of stream until it has output
        // a picture, so a lone keyframe ends as "No valid frames decoded before end of
        // stream"; libav's drains it.
        let decode = h264_decoder(DecoderFor::Throughput)?;
        let sink = gst_app::AppSink::builder().sync(false).build();
        let chain = [src.upcast_ref(), &parse, &decode, sink.upcast_ref()];
        pipeline.add_many(chain).map_err(pipeline_error)?;
        gst::Element::link_many(chain).map_err(pipeline_error)?;
        Ok(Self {
            pipeline,
            src,
            sink,
        })
    }

    /// Decodes `units` (a keyframe first, in decode order) and returns the last picture at or
    /// before running time `at` (the first picture when all are later). `running_time` maps a
    /// picture's sample and PTS to running time, as the camera's clock reads them.
    pub fn at<'a>(
        &self,
        units: impl IntoIterator<Item = &'a gst::Sample>,
        at: Duration,
        running_time: impl Fn(&gst::Sample) -> Duration,
    ) -> Result<gst::Sample, CaptureError> {
        let failed = |what: &str| CaptureError::Pipeline(format!("main stream picture: {what}"));
        self.pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| failed("the decoder does not start"))?;
        let result = (|| {
            for unit in units {
                self.src
                    .push_sample(unit)
                    .map_err(|e| failed(&format!("{e:?}")))?;
            }
            self.src
                .end_of_stream()
                .map_err(|e| failed(&format!("{e:?}")))?;
            let mut chosen = None;
            while let Some(picture) = self.sink.try_pull_sample(ENCODE_WAIT) {
                let later = running_time(&picture) > at;
                if chosen.is_none() || !later {
                    chosen = Some(picture);
                }
                if later {
                    break;
                }
            }
            chosen.ok_or_else(|| {
                posted_error(&self.pipeline).unwrap_or_else(|| failed("nothing decoded"))
            })
        })();
        // Ready again for the next picture: the decoder starts afresh at a keyframe.
        let _ = self.pipeline.set_state(gst::State::Ready);
        result
    }
}

impl Drop for MainPicture {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
