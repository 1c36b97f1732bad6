//! The live pipeline, built from `[capture]`:
//!
//! ```text
//! source ─┬─ H.264 ──────────────────────────────▶ h264parse ▶ tee ┬▶ queue ▶ appsink (units)
//!         │                                                        └▶ queue ▶ decodebin ─┐
//!         └─ raw ▶ convert/scale/rate ▶ I420 [masks] ▶ tee ┬▶ queue ▶ encoder ▶ h264parse │
//!                                                          └▶ queue ─────────────────────┤
//!           frames: videorate ▶ tee ┬▶ queue ▶ convert ▶ scale ▶ GRAY8 analysis size ▶ appsink
//!                                   └▶ queue (newest picture only) ▶ appsink (snapshots)
//! ```
//!
//! Encoded access units feed the pre-roll ring and clips. Pictures at the analysis rate are
//! scaled once, straight to the analysis size, for the detector; the newest picture as
//! decoded waits, unscaled, for a snapshot (most are never used, and cost nothing but a
//! reference). A source that delivers H.264 passes it
//! through untouched — unless privacy masks are set: then it is decoded, masked and
//! re-encoded, so no unmasked picture reaches a clip or a snapshot. On a live source the
//! frames branch drops what analysis cannot keep up with; recording never waits for it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use tracing::warn;

use super::elements::{analysis_caps, make, pipeline_error, raw_caps};
use super::mask::{self, Plane};
use super::CaptureError;
use crate::config::capture::{CaptureConfig, Encoder, Source};
use crate::config::MotionConfig;

pub struct Graph {
    pub pipeline: gst::Pipeline,
    /// GRAY8 frames at the analysis size and rate.
    pub frames: gst_app::AppSink,
    /// The newest picture as decoded (and masked), at the analysis rate: pull it for a
    /// snapshot.
    pub newest: gst_app::AppSink,
    /// H.264 access units (avc, one per buffer).
    pub units: gst_app::AppSink,
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
}

pub fn build(capture: &CaptureConfig, motion: &MotionConfig) -> Result<Graph, CaptureError> {
    let pipeline = gst::Pipeline::new();
    let sync = !capture.source.is_live();

    let h264_in = make("h264parse")?;
    let avc = capsfilter(
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build(),
    )?;
    let encoded = make("tee")?;
    let unit_queue = make("queue")?;
    let units = gst_app::AppSink::builder().sync(sync).build();
    let units_chain = [&h264_in, &avc, &encoded, &unit_queue, units.upcast_ref()];
    pipeline.add_many(units_chain).map_err(pipeline_error)?;
    gst::Element::link_many(units_chain).map_err(pipeline_error)?;

    let frames_in = make("videorate")?;
    frames_in.set_property("drop-only", true);
    let pictures = make("tee")?;
    let frame_queue = small_queue(!sync)?;
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    let analysis = capsfilter(analysis_caps(motion))?;
    let frames = gst_app::AppSink::builder().sync(sync).build();
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
    let frames_chain = [
        &frames_in,
        &pictures,
        &frame_queue,
        &convert,
        &scale,
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
    });
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
        Source::Rtsp { url, latency } => {
            let src = make("rtspsrc")?;
            src.set_property("location", url.location());
            if let Some(user) = url.user() {
                src.set_property("user-id", user);
            }
            if let Some(password) = url.password() {
                src.set_property("user-pw", password);
            }
            src.set_property("latency", latency.as_millis() as u32);
            pipeline.add(&src).map_err(pipeline_error)?;
            on_new_pad(&src, &parts, |parts, pad, name| {
                let h264 = pad.current_caps().is_some_and(|caps| {
                    caps.structure(0)
                        .and_then(|s| s.get::<&str>("encoding-name").ok())
                        == Some("H264")
                });
                if name != "application/x-rtp" || !h264 {
                    return discard(parts, pad);
                }
                let depay = make("rtph264depay")?;
                add_linked(parts, &[&depay], pad)?;
                attach_h264(parts, &static_pad(&depay, "src")?)
            });
        }
    }
    Ok(Graph {
        pipeline,
        frames,
        newest,
        units,
    })
}

/// Raw pictures: scaled to the encoding size, masked, then encoded and sent to analysis.
fn attach_raw(parts: &Arc<Parts>, pad: &gst::Pad) -> Result<(), CaptureError> {
    if parts.attached.swap(true, Ordering::SeqCst) {
        return discard(parts, pad);
    }
    let e = &parts.capture.encode;
    let convert = make("videoconvert")?;
    let scale = make("videoscale")?;
    let rate = make("videorate")?;
    let caps = capsfilter(raw_caps("I420", e.width as usize, e.height as usize, e.fps))?;
    let masks = parts.capture.privacy_masks.clone();
    if !masks.is_empty() {
        static_pad(&caps, "src")?.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                if let Err(e) = paint_masks(pad, buffer.make_mut(), &masks) {
                    // An unmasked picture must not go on: drop it.
                    warn!("privacy mask not applied, picture dropped: {e}");
                    return gst::PadProbeReturn::Drop;
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    let raw = make("tee")?;
    let to_encoder = make("queue")?;
    let encoder = encoder(e)?;
    let to_frames = small_queue(parts.capture.source.is_live())?;
    let pipeline = parts.pipeline()?;
    let added = [
        &convert,
        &scale,
        &rate,
        &caps,
        &raw,
        &to_encoder,
        &encoder,
        &to_frames,
    ];
    pipeline.add_many(added).map_err(pipeline_error)?;
    gst::Element::link_many([&convert, &scale, &rate, &caps, &raw]).map_err(pipeline_error)?;
    gst::Element::link_many([&raw, &to_encoder, &encoder, &parts.h264_in])
        .map_err(pipeline_error)?;
    gst::Element::link_many([&raw, &to_frames, &parts.frames_in]).map_err(pipeline_error)?;
    sync_states(&added)?;
    pad.link(&static_pad(&convert, "sink")?)
        .map_err(pipeline_error)?;
    Ok(())
}

/// H.264 from the source: passed through and decoded for analysis — or, with privacy masks,
/// decoded and handed to [`attach_raw`] to be masked and encoded again.
fn attach_h264(parts: &Arc<Parts>, pad: &gst::Pad) -> Result<(), CaptureError> {
    if !parts.capture.privacy_masks.is_empty() {
        let decode = camera_decoder()?;
        add_linked(parts, &[&decode], pad)?;
        on_new_pad(&decode, parts, |parts, pad, name| match name {
            "video/x-raw" => attach_raw(parts, pad),
            _ => discard(parts, pad),
        });
        return Ok(());
    }
    if parts.attached.swap(true, Ordering::SeqCst) {
        return discard(parts, pad);
    }
    let queue = make("queue")?;
    let decode = camera_decoder()?;
    let pipeline = parts.pipeline()?;
    pipeline
        .add_many([&queue, &decode])
        .map_err(pipeline_error)?;
    gst::Element::link_many([&parts.encoded, &queue, &decode]).map_err(pipeline_error)?;
    let frames_in = parts.frames_in.clone();
    on_new_pad(&decode, parts, move |parts, pad, name| match name {
        "video/x-raw" => pad
            .link(&static_pad(&frames_in, "sink")?)
            .map(|_| ())
            .map_err(pipeline_error),
        _ => discard(parts, pad),
    });
    sync_states(&[&queue, &decode])?;
    pad.link(&static_pad(&parts.h264_in, "sink")?)
        .map_err(pipeline_error)?;
    Ok(())
}

/// decodebin, its software H.264 decoder on one thread. libav's default, frame threading with
/// a thread per core plus one, holds a picture per thread and delays each picture by as many;
/// on a camera the other cores have the agent's own work, and a stream too heavy for one core
/// is what a detection sub-stream is for.
fn camera_decoder() -> Result<gst::Element, CaptureError> {
    let decode = make("decodebin")?;
    if let Some(bin) = decode.downcast_ref::<gst::Bin>() {
        bin.connect_deep_element_added(|_, _, element| {
            let software = element
                .factory()
                .is_some_and(|f| f.name().starts_with("avdec_"));
            if software && element.has_property("max-threads") {
                element.set_property("max-threads", 1i32);
            }
        });
    }
    Ok(decode)
}

/// The H.264 encoder, tuned for a camera (the hardware encoder keeps its driver's settings).
fn encoder(e: &crate::config::capture::EncodeConfig) -> Result<gst::Element, CaptureError> {
    let encoder = make(e.encoder.element())?;
    if e.encoder == Encoder::X264 {
        encoder.set_property_from_str("tune", "zerolatency");
        encoder.set_property_from_str("speed-preset", "superfast");
        encoder.set_property("bitrate", e.bitrate_kbps);
        let interval = (e.keyframe_interval.as_secs_f64() * f64::from(e.fps)).round();
        encoder.set_property("key-int-max", (interval as u32).max(1));
    }
    Ok(encoder)
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

fn paint_masks(
    pad: &gst::Pad,
    buffer: &mut gst::BufferRef,
    masks: &[crate::motion::Rect],
) -> Result<(), String> {
    let caps = pad.current_caps().ok_or("no caps")?;
    let info = gst_video::VideoInfo::from_caps(&caps).map_err(|e| e.to_string())?;
    let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, &info)
        .map_err(|e| e.to_string())?;
    for (plane, value) in mask::I420_BLACK.iter().enumerate() {
        let (width, height) = (
            frame.comp_width(plane as u32) as usize,
            frame.comp_height(plane as u32) as usize,
        );
        let stride = frame.plane_stride()[plane] as usize;
        let data = frame
            .plane_data_mut(plane as u32)
            .map_err(|e| e.to_string())?;
        mask::paint(
            Plane {
                data,
                stride,
                width,
                height,
            },
            masks,
            *value,
        );
    }
    Ok(())
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
