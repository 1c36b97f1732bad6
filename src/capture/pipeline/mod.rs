//! The live pipeline, built from `[capture]`:
//!
//! ```text
//! source ─┬─ H.264 ──────────────────────────────▶ h264parse ▶ tee ┬▶ queue ▶ appsink (units)
//!         │                                                        └▶ queue ▶ decoder ───┐
//!         └─ raw ▶ convert/scale/rate ▶ I420 [masks] ▶ tee ┬▶ queue ▶ encoder ▶ h264parse │
//!                                                          └▶ queue ─────────────────────┤
//!           frames: videorate ▶ tee ┬▶ queue ▶ scale ▶ convert ▶ analysis size ▶ appsink
//!                                   └▶ queue (newest picture only) ▶ appsink (snapshots)
//! ```
//!
//! Decoding on demand (`decode = "on-demand"`, a source's own H.264 without masks), the
//! decoder is fed not by the tee but by the camera, through an appsrc (`Graph::decoder`):
//! the camera hands it the units [`crate::capture::on_demand`] picks — of the detection
//! stream, when there is one (`Graph::detect_units`).
//!
//! Encoded access units feed the pre-roll ring and clips. Pictures at the analysis rate are
//! scaled once, straight to the analysis size, for the detector; the newest picture as
//! decoded waits, unscaled, for a snapshot (most are never used, and cost nothing but a
//! reference). An RTSP camera's streams are received by [`super::rtsp`], and their access
//! units go straight to the camera (`Graph::start_feeds`) — recorded, or handed to the
//! on-demand decoder — unless GStreamer decodes the stream whole (`decode = "always"`,
//! masks), which takes them through an appsrc in place of the source. With a detection
//! stream (`detect_url`) the detector decodes only that stream; the main stream is only
//! recorded. A source that delivers H.264 passes it through untouched — unless privacy masks
//! are set: then it is decoded, masked and re-encoded, so no unmasked picture reaches a clip
//! or a snapshot. On a live source the frames branch drops what analysis cannot keep up
//! with; recording never waits for it.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::warn;

mod attach;

use attach::{
    attach_h264, attach_raw, attach_units, decode_for_frames, on_demand_decoder, rtsp_h264,
};

use super::elements::{analysis_caps, make, pipeline_error, DecoderFor};
use super::rtsp::{feed_source, Destination, RtspFeed};
use super::CaptureError;
use crate::config::capture::{CaptureConfig, Decoding, Source};
use crate::config::{MotionConfig, RtspUrl};

pub struct Graph {
    pub pipeline: gst::Pipeline,
    /// Frames at the analysis size and rate, their luma first ([`super::elements::frame_of`]).
    pub frames: gst_app::AppSink,
    /// The newest picture as decoded (and masked), at the analysis rate: pull it for a
    /// snapshot.
    pub newest: gst_app::AppSink,
    /// H.264 access units (avc, one per buffer) to record, when they come through the
    /// pipeline rather than straight from the camera's feed.
    pub units: Option<gst_app::AppSink>,
    /// The detection stream's access units, when they come through the pipeline and the
    /// detector decodes them on demand: only the decoder gets them.
    pub detect_units: Option<gst_app::AppSink>,
    /// The camera has a detection stream (`detect_url`).
    pub detection: bool,
    /// Where the camera feeds the detector's decoder, once a source's own H.264 is being
    /// decoded on demand.
    pub decoder: Arc<OnceLock<gst_app::AppSrc>>,
    /// An RTSP camera's streams, until [`Graph::start_feeds`] starts receiving them.
    feeds: Vec<(RtspUrl, Feed)>,
    /// Receives an RTSP camera's streams; dropped with the graph, after the pipeline stops.
    rtsp: Option<RtspFeed>,
}

/// Which of a camera's streams a unit is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The recorded stream, which the detector also decodes when there is no other.
    Main,
    /// The detection stream (`detect_url`): only the detector's decoder takes it.
    Detection,
}

/// Where a received camera stream goes.
enum Feed {
    Pipeline(gst_app::AppSrc),
    Camera(Stream),
}

impl Graph {
    /// Starts receiving the camera's RTSP streams, if it has any: the units of those that go
    /// straight to the camera are handed to `to_camera`, which says `false` once it takes no
    /// more. Call it once the units' takers are connected.
    pub fn start_feeds(
        &mut self,
        to_camera: impl Fn(Stream, gst::Sample) -> bool + Clone + Send + 'static,
    ) -> Result<(), CaptureError> {
        if self.feeds.is_empty() {
            return Ok(());
        }
        let streams = std::mem::take(&mut self.feeds)
            .into_iter()
            .map(|(url, feed)| {
                let to = match feed {
                    Feed::Pipeline(src) => Destination::Pipeline(src),
                    Feed::Camera(stream) => {
                        let to_camera = to_camera.clone();
                        Destination::Camera(Box::new(move |unit| to_camera(stream, unit)))
                    }
                };
                (url, to)
            })
            .collect();
        self.rtsp = Some(RtspFeed::start(&self.pipeline, streams)?);
        Ok(())
    }
}

/// What the dynamic parts of the graph link to.
struct Parts {
    pipeline: gst::glib::WeakRef<gst::Pipeline>,
    capture: CaptureConfig,
    /// Where H.264 enters: the parser in front of the encoded tee.
    h264_in: gst::Element,
    encoded: gst::Element,
    /// Where raw pictures enter the frames branch.
    frames_in: gst::Element,
    /// Only the first video stream of a source is used.
    attached: AtomicBool,
    decoder: Arc<OnceLock<gst_app::AppSrc>>,
}

impl Parts {
    /// What the detector's decoder is chosen for: a detection stream's small pictures cost
    /// little to decode, so its memory weighs more than its speed.
    fn detector_decodes(&self) -> DecoderFor {
        if self.capture.source.has_detection_stream() {
            DecoderFor::Footprint
        } else {
            DecoderFor::Throughput
        }
    }
}

pub fn build(capture: &CaptureConfig, motion: &MotionConfig) -> Result<Graph, CaptureError> {
    let pipeline = gst::Pipeline::new();
    let sync = !capture.source.is_live();

    let (h264_in, avc) = access_units()?;
    let encoded = make("tee")?;
    // A camera's main stream received to the camera never enters the pipeline: nor does
    // this branch then.
    let main_direct = main_to_camera(capture);
    let units = if main_direct {
        None
    } else {
        let unit_queue = make("queue")?;
        let units = gst_app::AppSink::builder().sync(sync).build();
        let units_chain = [&h264_in, &avc, &encoded, &unit_queue, units.upcast_ref()];
        pipeline.add_many(units_chain).map_err(pipeline_error)?;
        gst::Element::link_many(units_chain).map_err(pipeline_error)?;
        Some(units)
    };

    let frames_in = make("videorate")?;
    frames_in.set_property("drop-only", true);
    let pictures = make("tee")?;
    let frame_queue = small_queue(!sync)?;
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    let analysis = capsfilter(analysis_caps(motion))?;
    let frames = gst_app::AppSink::builder().sync(sync).build();
    // The frames may come from the camera itself (decoding on demand), which only feeds the
    // decoder once the units flow: the sinks of pictures must not hold the pipeline's
    // preroll back waiting for them.
    frames.set_async(false);
    // Never holds the pipeline back: one picture, replaced by each newer one.
    let newest_queue = small_queue(true)?;
    newest_queue.set_property("max-size-buffers", 1u32);
    let newest = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(1)
        .drop(true)
        // A picture nobody took must not hold the end of the stream back.
        .wait_on_eos(false)
        .build();
    newest.set_async(false);
    // Scaled, and converted only when the decoder's format does not start with a luma plane
    // (`analysis_caps`): the detector reads that plane as it is.
    let frames_chain = [
        &frames_in,
        &pictures,
        &frame_queue,
        &scale,
        &convert,
        &analysis,
        frames.upcast_ref(),
    ];
    pipeline.add_many(frames_chain).map_err(pipeline_error)?;
    pipeline
        .add_many([&newest_queue, newest.upcast_ref()])
        .map_err(pipeline_error)?;
    gst::Element::link_many(frames_chain).map_err(pipeline_error)?;
    gst::Element::link_many([&pictures, &newest_queue, newest.upcast_ref()])
        .map_err(pipeline_error)?;

    let parts = Arc::new(Parts {
        pipeline: pipeline.downgrade(),
        capture: capture.clone(),
        h264_in,
        encoded,
        frames_in,
        attached: AtomicBool::new(false),
        decoder: Arc::default(),
    });
    let mut detect_units = None;
    let mut feeds = Vec::new();
    match &capture.source {
        Source::Test { pattern } => {
            let src = make("videotestsrc")?;
            src.set_property("is-live", true);
            src.set_property_from_str("pattern", pattern);
            // Drawn small and scaled up, so the scene (the ball's share of the picture) is the
            // same whatever the encoding size.
            let scene = capsfilter(
                gst::Caps::builder("video/x-raw")
                    .field("width", 320)
                    .field("height", 180)
                    .build(),
            )?;
            pipeline.add_many([&src, &scene]).map_err(pipeline_error)?;
            src.link(&scene).map_err(pipeline_error)?;
            attach_raw(&parts, &static_pad(&scene, "src")?)?;
        }
        Source::File { path, .. } => {
            let src = make("filesrc")?;
            src.set_property("location", path.to_string_lossy().as_ref());
            let decode = make("decodebin")?;
            // Stop at H.264 so it passes through, unless masks need the pixels.
            let stop_at = if capture.privacy_masks.is_empty() {
                "video/x-raw(ANY); video/x-h264"
            } else {
                "video/x-raw(ANY)"
            };
            let stop_at: gst::Caps = stop_at.parse().map_err(pipeline_error)?;
            decode.set_property("caps", stop_at);
            pipeline.add_many([&src, &decode]).map_err(pipeline_error)?;
            src.link(&decode).map_err(pipeline_error)?;
            on_new_pad(&decode, &parts, |parts, pad, name| match name {
                "video/x-h264" => attach_h264(parts, pad),
                "video/x-raw" => attach_raw(parts, pad),
                _ => discard(parts, pad),
            });
        }
        Source::V4l2 { device, encoded } => {
            let src = make("v4l2src")?;
            src.set_property("device", device.to_string_lossy().as_ref());
            let media = if *encoded {
                "video/x-h264"
            } else {
                "video/x-raw"
            };
            let caps = capsfilter(gst::Caps::new_empty_simple(media))?;
            pipeline.add_many([&src, &caps]).map_err(pipeline_error)?;
            src.link(&caps).map_err(pipeline_error)?;
            let pad = static_pad(&caps, "src")?;
            if *encoded {
                attach_h264(&parts, &pad)?;
            } else {
                attach_raw(&parts, &pad)?;
            }
        }
        Source::Rtsp {
            url,
            detect,
            latency,
        } => {
            // With a detection stream the main one is only recorded: never decoded.
            let record_only = detect.is_some();
            if main_direct {
                if !record_only {
                    on_demand_decoder(&parts)?;
                }
                feeds.push((url.clone(), Feed::Camera(Stream::Main)));
            } else {
                camera_stream(&parts, url, *latency, &mut feeds, move |parts, pad| {
                    if record_only {
                        attach_units(parts, pad)
                    } else {
                        attach_h264(parts, pad)
                    }
                })?;
            }
            match (detect, capture.decode) {
                (Some(detect), Decoding::OnDemand) if !detect.tls() => {
                    on_demand_decoder(&parts)?;
                    feeds.push((detect.clone(), Feed::Camera(Stream::Detection)));
                }
                (Some(detect), Decoding::OnDemand) => {
                    // Its units go to the camera, which hands the decoder what the planner
                    // picks, as for a single stream.
                    let (parse, avc) = access_units()?;
                    let sink = gst_app::AppSink::builder().sync(false).build();
                    let chain = [&parse, &avc, sink.upcast_ref()];
                    pipeline.add_many(chain).map_err(pipeline_error)?;
                    gst::Element::link_many(chain).map_err(pipeline_error)?;
                    on_demand_decoder(&parts)?;
                    camera_stream(&parts, detect, *latency, &mut feeds, move |parts, pad| {
                        let head = static_pad(&parse, "sink")?;
                        if head.is_linked() {
                            // Only its first video stream.
                            return discard(parts, pad);
                        }
                        pad.link(&head).map(|_| ()).map_err(pipeline_error)
                    })?;
                    detect_units = Some(sink);
                }
                (Some(detect), Decoding::Always) => {
                    camera_stream(&parts, detect, *latency, &mut feeds, |parts, pad| {
                        let parse = make("h264parse")?;
                        add_linked(parts, &[&parse], pad)?;
                        decode_for_frames(parts, &parse)
                    })?;
                }
                (None, _) => {}
            }
        }
    }
    Ok(Graph {
        pipeline,
        frames,
        newest,
        units,
        detect_units,
        detection: capture.source.has_detection_stream(),
        decoder: parts.decoder.clone(),
        feeds,
        rtsp: None,
    })
}

/// Whether a camera's main stream goes straight to the camera: received by retina, and
/// only recorded, or decoded on demand (by the camera's choice of units) without masks.
fn main_to_camera(capture: &CaptureConfig) -> bool {
    match &capture.source {
        Source::Rtsp { url, detect, .. } => {
            !url.tls()
                && (detect.is_some()
                    || capture.decode == Decoding::OnDemand && capture.privacy_masks.is_empty())
        }
        _ => false,
    }
}

/// A camera's stream, its H.264 as access units on the pad handed to `attach`. Received by
/// retina ([`RtspFeed`]); an `rtsps://` camera, which retina cannot reach, by rtspsrc.
fn camera_stream(
    parts: &Arc<Parts>,
    url: &RtspUrl,
    latency: std::time::Duration,
    feeds: &mut Vec<(RtspUrl, Feed)>,
    attach: impl Fn(&Arc<Parts>, &gst::Pad) -> Result<(), CaptureError> + Send + Sync + 'static,
) -> Result<(), CaptureError> {
    if url.tls() {
        return rtsp_h264(parts, url, latency, attach);
    }
    let src = feed_source();
    parts.pipeline()?.add(&src).map_err(pipeline_error)?;
    attach(parts, &static_pad(src.upcast_ref(), "src")?)?;
    feeds.push((url.clone(), Feed::Pipeline(src)));
    Ok(())
}

/// The parser that takes H.264 in and the filter after it that makes it access units, one
/// per buffer in avc form, as the ring, the clips and the planner take them.
fn access_units() -> Result<(gst::Element, gst::Element), CaptureError> {
    let avc = capsfilter(
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build(),
    )?;
    Ok((make("h264parse")?, avc))
}

/// Streams a source offers that camagent does not use (audio, a second video) end here.
fn discard(parts: &Arc<Parts>, pad: &gst::Pad) -> Result<(), CaptureError> {
    let sink = make("fakesink")?;
    sink.set_property("sync", false);
    add_linked(parts, &[&sink], pad)
}

/// Adds `chain` to the pipeline, links it in order, starts it and links `pad` to its head.
fn add_linked(
    parts: &Arc<Parts>,
    chain: &[&gst::Element],
    pad: &gst::Pad,
) -> Result<(), CaptureError> {
    let pipeline = parts.pipeline()?;
    pipeline
        .add_many(chain.iter().copied())
        .map_err(pipeline_error)?;
    gst::Element::link_many(chain.iter().copied()).map_err(pipeline_error)?;
    sync_states(chain)?;
    pad.link(&static_pad(chain[0], "sink")?)
        .map_err(pipeline_error)?;
    Ok(())
}

/// Calls `attach` for each pad `element` adds, with the pad's media type; a failure there
/// becomes a pipeline error, so the source restarts instead of hanging.
fn on_new_pad(
    element: &gst::Element,
    parts: &Arc<Parts>,
    attach: impl Fn(&Arc<Parts>, &gst::Pad, &str) -> Result<(), CaptureError> + Send + Sync + 'static,
) {
    // Parts holds no element that holds this closure: no reference cycle.
    let parts = parts.clone();
    element.connect_pad_added(move |element, pad| {
        let caps = pad.current_caps().or_else(|| Some(pad.query_caps(None)));
        let name = caps
            .as_ref()
            .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
            .unwrap_or_default();
        if let Err(e) = attach(&parts, pad, &name) {
            warn!("cannot use the {name} stream of {}: {e}", element.name());
            gst::element_error!(element, gst::CoreError::Negotiation, ("{}", e));
        }
    });
}

impl Parts {
    fn pipeline(&self) -> Result<gst::Pipeline, CaptureError> {
        self.pipeline
            .upgrade()
            .ok_or_else(|| CaptureError::Pipeline("the pipeline is gone".into()))
    }
}

fn capsfilter(caps: gst::Caps) -> Result<gst::Element, CaptureError> {
    let filter = make("capsfilter")?;
    filter.set_property("caps", caps);
    Ok(filter)
}

/// A queue of two buffers that, on a live source, drops the oldest instead of blocking.
fn small_queue(leaky: bool) -> Result<gst::Element, CaptureError> {
    let queue = make("queue")?;
    queue.set_property("max-size-buffers", 2u32);
    queue.set_property("max-size-bytes", 0u32);
    queue.set_property("max-size-time", 0u64);
    if leaky {
        queue.set_property_from_str("leaky", "downstream");
    }
    Ok(queue)
}

fn static_pad(element: &gst::Element, name: &str) -> Result<gst::Pad, CaptureError> {
    element
        .static_pad(name)
        .ok_or_else(|| CaptureError::Pipeline(format!("{} has no {name} pad", element.name())))
}

fn sync_states(elements: &[&gst::Element]) -> Result<(), CaptureError> {
    for element in elements.iter().rev() {
        element.sync_state_with_parent().map_err(pipeline_error)?;
    }
    Ok(())
}
