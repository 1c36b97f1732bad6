//! GStreamer building blocks the clip and live pipelines share: elements, the analysis caps,
//! decodebin's late video pad, frames out of samples, errors off the bus.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::h264dec;
use super::on_demand::UnitCue;
use super::{CaptureError, Frame};
use crate::config::MotionConfig;

pub fn make(factory: &str) -> Result<gst::Element, CaptureError> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| CaptureError::MissingElement(factory.to_owned()))
}

/// For `add_many`/`link` failures, which only a programming error can cause.
pub fn pipeline_error(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Pipeline(e.to_string())
}

/// Raw video of one format (or a list of them), size and rate, with square pixels.
pub fn raw_caps(
    format: impl Into<gst::glib::Value> + Send,
    width: usize,
    height: usize,
    fps: u32,
) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", format)
        .field("width", width as i32)
        .field("height", height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .field("framerate", gst::Fraction::new(fps as i32, 1))
        .build()
}

/// Raw formats whose first plane is the picture's luma, a byte a pixel at full size: the
/// detector takes that plane as it is. Decoders give one of them, so the analysis frames need
/// no conversion to GRAY8, which GStreamer makes on a slow general path (unpacking every
/// pixel to AYUV and back).
const LUMA_FIRST: [&str; 7] = ["I420", "NV12", "YV12", "NV21", "Y42B", "Y444", "GRAY8"];

/// Small frames at the analysis size and rate, of a format whose first plane is their luma.
pub fn analysis_caps(motion: &MotionConfig) -> gst::Caps {
    raw_caps(
        gst::List::new(LUMA_FIRST),
        motion.width,
        motion.height,
        motion.fps,
    )
}

/// decodebin makes its pads once it knows the streams: link the first video one to `to`.
pub fn link_decoded_video(decode: &gst::Element, to: &gst::Element) {
    let to = to.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(to) = to.upgrade() else {
            return;
        };
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if let Some(sinkpad) = to.static_pad("sink") {
            if is_video && !sinkpad.is_linked() {
                let _ = pad.link(&sinkpad);
            }
        }
    });
}

/// Whether `factory` makes a decoder that takes H.264.
pub fn decodes_h264(factory: &gst::ElementFactory) -> bool {
    factory.has_type(gst::ElementFactoryType::DECODER)
        && factory.can_sink_any_caps(&gst::Caps::new_empty_simple("video/x-h264"))
}

/// The on-demand cue of an H.264 access unit in AVC form, with the NAL length size its
/// caps' `codec_data` gives (4 if they say nothing).
pub fn unit_cue(buffer: &gst::BufferRef, caps: Option<&gst::CapsRef>) -> Option<UnitCue> {
    let length_size = caps
        .and_then(|c| c.structure(0))
        .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
        .and_then(|data| {
            let map = data.map_readable().ok()?;
            // avcC: version, profile, compatibility, level, then 6 bits set and the size − 1.
            map.get(4).map(|b| usize::from(b & 0x03) + 1)
        })
        .unwrap_or(4);
    let map = buffer.map_readable().ok()?;
    UnitCue::from_avc(&map, length_size)
}

/// The analysis frame in `sample`: its luma plane, checked to be `width × height`.
pub fn frame_of(sample: &gst::Sample, motion: &MotionConfig) -> Result<Frame, CaptureError> {
    let buffer = sample
        .buffer()
        .ok_or_else(|| CaptureError::Pipeline("sample without a buffer".into()))?;
    let info = sample
        .caps()
        .and_then(|caps| gst_video::VideoInfo::from_caps(caps).ok())
        .ok_or_else(|| CaptureError::Pipeline("frame without video caps".into()))?;
    if (info.width() as usize, info.height() as usize) != (motion.width, motion.height) {
        return Err(CaptureError::Pipeline(format!(
            "frame of {}x{}, expected {}x{}",
            info.width(),
            info.height(),
            motion.width,
            motion.height
        )));
    }
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|_| CaptureError::Pipeline("unreadable buffer".into()))?;
    let luma = frame
        .plane_data(0)
        .map_err(|_| CaptureError::Pipeline("frame without a luma plane".into()))?;
    let stride = frame.plane_stride()[0] as usize;
    let mut pixels = Vec::with_capacity(motion.width * motion.height);
    let rows = luma.chunks(stride).take(motion.height);
    for row in rows.filter_map(|row| row.get(..motion.width)) {
        pixels.extend_from_slice(row);
    }
    if pixels.len() != motion.width * motion.height {
        return Err(CaptureError::Pipeline(
            "luma plane shorter than the frame".into(),
        ));
    }
    Ok(Frame {
        pts: Duration::from_nanos(buffer.pts().map_or(0, |t| t.nseconds())),
        pixels,
    })
}

/// How a pipeline said it stopped.
pub enum Ended {
    Eos,
    Error(CaptureError),
}

/// The first error or end of stream the pipeline posted, if any.
pub fn posted_end(pipeline: &gst::Pipeline) -> Option<Ended> {
    let bus = pipeline.bus()?;
    while let Some(msg) = bus.pop() {
        match msg.view() {
            gst::MessageView::Error(err) => {
                let debug = err.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                let hint = if err.error().matches(gst::ResourceError::NotAuthorized) {
                    "; the camera refused the user name or password in capture.url"
                } else {
                    ""
                };
                let error = CaptureError::Input(format!("{}{hint}{debug}", err.error()));
                return Some(Ended::Error(error));
            }
            gst::MessageView::Eos(_) => return Some(Ended::Eos),
            _ => {}
        }
    }
    None
}

/// The first error the pipeline posted, if any (for callers that see the end elsewhere).
pub fn posted_error(pipeline: &gst::Pipeline) -> Option<CaptureError> {
    match posted_end(pipeline)? {
        Ended::Error(error) => Some(error),
        Ended::Eos => None,
    }
}

/// What an H.264 decoder is chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderFor {
    /// Pictures decoded all along, as large as the camera's main stream: the fastest.
    Throughput,
    /// A detection stream's small pictures: the one that holds the least memory.
    Footprint,
}

/// The best-ranked H.264 decoder (a board's hardware decoder where it has one), on one thread
/// ([`one_thread`]). For [`DecoderFor::Footprint`], the agent's own decoder stands in for a
/// software one: libav's pulls in FFmpeg's whole tree (its filters, formats and their codec
/// libraries), and OpenH264 zeroes a fixed 3 MiB bitstream buffer; detecting on a 320×180
/// sub-stream the agent held 20.1, 13.6 and 9.7 MiB private with libav's, OpenH264 and its
/// own (BENCHMARKS.md, "Camera with a sub-stream").
pub fn h264_decoder(purpose: DecoderFor) -> Result<gst::Element, CaptureError> {
    if let Err(e) = h264dec::register() {
        // The installed decoders take its place.
        tracing::warn!("{e}");
    }
    let decoders: Vec<_> = gst::ElementFactory::factories_with_type(
        gst::ElementFactoryType::DECODER | gst::ElementFactoryType::MEDIA_VIDEO,
        gst::Rank::MARGINAL,
    )
    .into_iter()
    .filter(decodes_h264)
    .collect();
    let best = decoders.iter().max_by_key(|f| f.rank()).ok_or_else(|| {
        CaptureError::MissingElement("openh264dec or avdec_h264 (an H.264 decoder)".into())
    })?;
    let own = decoders.iter().find(|f| f.name() == h264dec::NAME);
    let factory = match own {
        Some(own) if purpose == DecoderFor::Footprint && !is_hardware(best) => own,
        _ => best,
    };
    let decoder = factory
        .create()
        .build()
        .map_err(|_| CaptureError::MissingElement(factory.name().to_string()))?;
    one_thread(&decoder);
    tracing::info!(decoder = %factory.name(), ?purpose, "H.264 decoder chosen");
    Ok(decoder)
}

/// A decoder in the board's hardware ("Codec/Decoder/Video/Hardware").
fn is_hardware(factory: &gst::ElementFactory) -> bool {
    factory
        .metadata(gst::ELEMENT_METADATA_KLASS)
        .is_some_and(|klass| klass.split('/').any(|part| part == "Hardware"))
}

fn is_libav(factory: &gst::ElementFactory) -> bool {
    factory.name().starts_with("avdec_")
}

/// libav's software decoders on one thread. libav's default, frame threading with a thread
/// per core plus one, holds a picture per thread and delays each picture by as many; on a
/// camera the other cores have the agent's own work.
fn one_thread(element: &gst::Element) {
    let software = element.factory().is_some_and(|f| is_libav(&f));
    if software && element.has_property("max-threads") {
        element.set_property("max-threads", 1i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chosen(purpose: DecoderFor) -> String {
        let decoder = h264_decoder(purpose).unwrap();
        decoder.factory().unwrap().name().to_string()
    }

    #[test]
    fn a_detection_stream_gets_the_agents_own_decoder_where_a_software_one_would_be_chosen() {
        gst::init().unwrap();
        let fastest = chosen(DecoderFor::Throughput);
        let hardware = gst::ElementFactory::find(&fastest).is_some_and(|f| is_hardware(&f));
        let expected = match hardware {
            true => fastest.clone(),
            false => h264dec::NAME.to_owned(),
        };
        assert_eq!(chosen(DecoderFor::Footprint), expected);
        // The host the tests run on has libav's (scripts/install-deps), and no hardware.
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                (fastest.as_str(), expected.as_str()),
                ("avdec_h264", h264dec::NAME)
            );
        }
    }
}
