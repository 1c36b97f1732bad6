//! How each kind of stream joins the graph: raw pictures (masked, encoded, analysed), H.264
//! (passed through, and decoded for analysis unless a detection stream does that), RTSP
//! cameras, and the decoder and encoder as a camera wants them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;
use tracing::warn;

use super::{
    add_linked, capsfilter, discard, on_new_pad, small_queue, static_pad, sync_states, Parts,
};
use crate::capture::elements::{h264_decoder, make, pipeline_error, raw_caps, DecoderFor};
use crate::capture::mask::{self, Plane};
use crate::capture::CaptureError;
use crate::config::capture::{Decoding, Encoder};
use crate::config::RtspUrl;

/// Raw pictures: scaled to the encoding size, masked, then encoded and sent to analysis.
pub(super) fn attach_raw(parts: &Arc<Parts>, pad: &gst::Pad) -> Result<(), CaptureError> {
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
pub(super) fn attach_h264(parts: &Arc<Parts>, pad: &gst::Pad) -> Result<(), CaptureError> {
    if !parts.capture.privacy_masks.is_empty() {
        let parse = make("h264parse")?;
        let decode = h264_decoder(DecoderFor::Throughput)?;
        add_linked(parts, &[&parse, &decode], pad)?;
        return attach_raw(parts, &static_pad(&decode, "src")?);
    }
    if parts.attached.swap(true, Ordering::SeqCst) {
        return discard(parts, pad);
    }
    match parts.capture.decode {
        Decoding::Always => decode_for_frames(parts, &parts.encoded)?,
        Decoding::OnDemand => on_demand_decoder(parts)?,
    }
    link_units(parts, pad)
}

/// H.264 from the source, only passed through to the pre-roll ring and clips: only the first
/// video stream a source offers.
pub(super) fn attach_units(parts: &Arc<Parts>, pad: &gst::Pad) -> Result<(), CaptureError> {
    if parts.attached.swap(true, Ordering::SeqCst) {
        return discard(parts, pad);
    }
    link_units(parts, pad)
}

fn link_units(parts: &Arc<Parts>, pad: &gst::Pad) -> Result<(), CaptureError> {
    pad.link(&static_pad(&parts.h264_in, "sink")?)
        .map_err(pipeline_error)?;
    Ok(())
}

/// The detector's decoder as the camera feeds it when it decodes on demand: the units the
/// planner picks go in through an appsrc, and its pictures to the frames branch.
pub(super) fn on_demand_decoder(parts: &Arc<Parts>) -> Result<(), CaptureError> {
    let feed = gst_app::AppSrc::builder()
        .format(gst::Format::Time)
        .is_live(parts.capture.source.is_live())
        .build();
    // The segment comes with the units, so frames keep the units' running time.
    feed.set_property("handle-segment-change", true);
    // Not decodebin: it would hold the pipeline's preroll until it had decoded a picture,
    // and the camera feeds it only once the pipeline plays. The parser hands the decoder the
    // stream format it takes (some take only byte-stream).
    let parse = make("h264parse")?;
    let decode = h264_decoder(parts.detector_decodes())?;
    #[cfg(feature = "fault-injection")]
    stall_once(&decode);
    let added = [feed.upcast_ref(), &parse, &decode];
    parts.pipeline()?.add_many(added).map_err(pipeline_error)?;
    gst::Element::link_many([feed.upcast_ref(), &parse, &decode, &parts.frames_in])
        .map_err(pipeline_error)?;
    sync_states(&added)?;
    // One decoder per graph: the cell is empty.
    let _ = parts.decoder.set(feed);
    Ok(())
}

/// A test build can make the on-demand decoder stall once, as on a board busy elsewhere just
/// when motion begins: `CAMAGENT_FAULT_DECODER_STALL=SECONDS:MS` holds the first unit at or
/// after SECONDS of media time for MS milliseconds.
#[cfg(feature = "fault-injection")]
fn stall_once(decode: &gst::Element) {
    let Some((at, ms)) = std::env::var("CAMAGENT_FAULT_DECODER_STALL")
        .ok()
        .and_then(|v| {
            let (at, ms) = v.split_once(':')?;
            Some((at.parse::<f64>().ok()?, ms.parse::<u64>().ok()?))
        })
    else {
        return;
    };
    let Some(pad) = decode.static_pad("sink") else {
        return;
    };
    let stalled = std::sync::atomic::AtomicBool::new(false);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let due = info
            .buffer()
            .and_then(|b| b.pts())
            .is_some_and(|pts| pts.seconds_f64() >= at);
        if due && !stalled.swap(true, Ordering::SeqCst) {
            tracing::error!(ms, "fault injection: the detector's decoder stalls");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        gst::PadProbeReturn::Ok
    });
}

/// Decodes the H.264 access units `from` gives into the frames branch, behind a queue of
/// its own. The decoder is linked at once, not plugged by decodebin, which holds its pictures
/// back until every stream it found is complete and, on a live source linked before the
/// pipeline plays, never let the first through.
pub(super) fn decode_for_frames(
    parts: &Arc<Parts>,
    from: &gst::Element,
) -> Result<(), CaptureError> {
    let queue = make("queue")?;
    let decode = h264_decoder(parts.detector_decodes())?;
    parts
        .pipeline()?
        .add_many([&queue, &decode])
        .map_err(pipeline_error)?;
    gst::Element::link_many([from, &queue, &decode, &parts.frames_in]).map_err(pipeline_error)?;
    sync_states(&[&queue, &decode])
}

/// An RTSP camera stream: its H.264 video, depayloaded, goes to `attach`; anything else it
/// offers (audio, metadata) is discarded. The credentials go to rtspsrc apart from the
/// address, which is all its messages can quote.
pub(super) fn rtsp_h264(
    parts: &Arc<Parts>,
    url: &RtspUrl,
    latency: std::time::Duration,
    attach: impl Fn(&Arc<Parts>, &gst::Pad) -> Result<(), CaptureError> + Send + Sync + 'static,
) -> Result<(), CaptureError> {
    let src = make("rtspsrc")?;
    src.set_property("location", url.location());
    if let Some(user) = url.user() {
        src.set_property("user-id", user);
    }
    if let Some(password) = url.password() {
        src.set_property("user-pw", password);
    }
    src.set_property("latency", latency.as_millis() as u32);
    parts.pipeline()?.add(&src).map_err(pipeline_error)?;
    on_new_pad(&src, parts, move |parts, pad, name| {
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
        attach(parts, &static_pad(&depay, "src")?)
    });
    Ok(())
}

/// The H.264 encoder, tuned for a camera (the hardware encoder keeps its driver's settings).
fn encoder(e: &crate::config::capture::EncodeConfig) -> Result<gst::Element, CaptureError> {
    let encoder = make(e.encoder.element())?;
    if e.encoder == Encoder::X264 {
        encoder.set_property_from_str("tune", "zerolatency");
        encoder.set_property_from_str("speed-preset", "superfast");
        encoder.set_property("threads", x264_threads(e.width, e.height));
        encoder.set_property("bitrate", e.bitrate_kbps);
        let interval = (e.keyframe_interval.as_secs_f64() * f64::from(e.fps)).round();
        encoder.set_property("key-int-max", (interval as u32).max(1));
    }
    Ok(encoder)
}

/// Pictures up to this size are encoded by x264 on one thread.
const ONE_THREAD_PIXELS: u32 = 640 * 480;

/// x264's threads for a picture (0: as many as x264 chooses, by the cores). Its sliced
/// threads each keep their own copy of the encoder's state: at 640×360 on the emulated board
/// two cores' worth held 0.4 MiB more than one, for the same CPU and no better pictures (one
/// slice per picture compresses a little better). Up to VGA one core keeps up with a camera's
/// rate: superfast took 2.1 ms of a core per 640×360 picture on the x86 host; larger pictures
/// keep the parallelism.
fn x264_threads(width: u32, height: u32) -> u32 {
    if width * height <= ONE_THREAD_PIXELS {
        1
    } else {
        0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x264_takes_one_thread_up_to_vga_and_its_own_choice_above() {
        assert_eq!(x264_threads(640, 360), 1);
        assert_eq!(x264_threads(640, 480), 1);
        assert_eq!(x264_threads(1280, 720), 0);
        assert_eq!(x264_threads(1920, 1080), 0);
    }
}
