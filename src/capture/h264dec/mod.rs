//! `camagenth264dec`: the detection stream's H.264 decoder, a GStreamer element around
//! [rusty_h264_decoder], pure Rust without `unsafe`.
//!
//! A detection stream is small, decoded on demand, and the agent's largest cost in memory
//! was its decoder: OpenH264 zeroes a fixed 3 MiB bitstream buffer and held 4.6 MiB in all
//! on a 320×180 stream; libav's pulls in FFmpeg's whole tree. This one holds its pictures and
//! little else (the agent held 9.7 MiB private instead of 13.6 on the sub-stream bench,
//! BENCHMARKS.md), gives libav's pictures on every clip of the motion corpus
//! (`tests/corpus.rs`), for about OpenH264's CPU: 80 s of a 320×180 street took it
//! 0.64–0.75 s, OpenH264's GStreamer element 0.64–0.74 s (four runs side by side).
//!
//! It is registered in-process (no plugin file) at rank marginal, so that nothing plugs it
//! on its own; [`super::elements::h264_decoder`] takes it for a detection stream.
//! `GST_PLUGIN_FEATURE_RANK=camagenth264dec:NONE` turns it down, as for any element, and the
//! installed decoders take its place.

mod reorder;

use std::sync::{Mutex, Once};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;

use super::CaptureError;

/// The element's factory name.
pub const NAME: &str = "camagenth264dec";

glib::wrapper! {
    pub struct RustH264Dec(ObjectSubclass<imp::RustH264Dec>)
        @extends gst_video::VideoDecoder, gst::Element, gst::Object;
}

/// Registers the element, once per process, at rank marginal or at the rank
/// `GST_PLUGIN_FEATURE_RANK` gives it (GStreamer applies that variable only to the plugins
/// it loads itself).
pub fn register() -> Result<(), CaptureError> {
    static REGISTERED: Once = Once::new();
    let mut result = Ok(());
    REGISTERED.call_once(|| {
        let rank = std::env::var("GST_PLUGIN_FEATURE_RANK")
            .ok()
            .and_then(|ranks| rank_in(&ranks))
            .unwrap_or(gst::Rank::MARGINAL);
        result = gst::Element::register(None, NAME, rank, RustH264Dec::static_type())
            .map_err(|e| CaptureError::Init(format!("registering {NAME}: {e}")));
    });
    result
}

/// This element's rank in a `GST_PLUGIN_FEATURE_RANK` list (`name:rank,…`, a rank by number
/// or as NONE, MARGINAL, SECONDARY, PRIMARY).
fn rank_in(ranks: &str) -> Option<gst::Rank> {
    let (_, rank) = ranks
        .split(',')
        .filter_map(|entry| entry.split_once(':'))
        .find(|(name, _)| name.trim() == NAME)?;
    Some(match rank.trim().to_ascii_uppercase().as_str() {
        "NONE" => gst::Rank::NONE,
        "MARGINAL" => gst::Rank::MARGINAL,
        "SECONDARY" => gst::Rank::SECONDARY,
        "PRIMARY" => gst::Rank::PRIMARY,
        number => gst::Rank::from(number.parse::<i32>().ok()?),
    })
}

/// Keyframes in a row that use what the decoder does not implement before it gives up on
/// the stream: a rare coding tool (PCM macroblocks) costs a group of pictures, a stream of a
/// kind it does not decode (interlaced fields, 10 bits) stops with an error that says what to
/// use instead.
const UNSUPPORTED_KEYFRAMES: u32 = 2;

/// Whether an access unit in byte-stream form holds an IDR slice (NAL type 5).
fn holds_idr(annex_b: &[u8]) -> bool {
    annex_b
        .windows(4)
        .any(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 5)
}

mod imp {
    use std::sync::LazyLock;

    use gst_video::prelude::*;
    use gst_video::subclass::prelude::*;
    use rusty_h264_decoder::{DecodeError, Decoder};

    use super::reorder::Reorder;
    use super::*;

    /// A decoded picture, planar 4:2:0, cropped.
    struct Picture {
        width: usize,
        height: usize,
        planes: [Vec<u8>; 3],
    }

    #[derive(Default)]
    struct State {
        decoder: Decoder,
        /// Decoded pictures by the frame they belong to, until they can go out in order.
        reorder: Reorder<(u32, Picture)>,
        input: Option<gst_video::VideoCodecState<'static, gst_video::video_codec_state::Readable>>,
        /// Units in a row the decoder refused, to say so once.
        refused: u32,
        /// Keyframes in a row that used what the decoder does not implement.
        unsupported_keyframes: u32,
    }

    #[derive(Default)]
    pub struct RustH264Dec {
        state: Mutex<State>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for RustH264Dec {
        const NAME: &'static str = "CamagentH264Dec";
        type Type = super::RustH264Dec;
        type ParentType = gst_video::VideoDecoder;
    }

    impl ObjectImpl for RustH264Dec {}
    impl GstObjectImpl for RustH264Dec {}

    impl ElementImpl for RustH264Dec {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
                gst::subclass::ElementMetadata::new(
                    "camagent H.264 decoder",
                    "Codec/Decoder/Video",
                    "Decodes H.264 with rusty_h264, in Rust",
                    "camagent",
                )
            });
            Some(&METADATA)
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
                let sink = gst::Caps::builder("video/x-h264")
                    .field("stream-format", "byte-stream")
                    .field("alignment", "au")
                    .build();
                let src = gst_video::VideoCapsBuilder::new()
                    .format(gst_video::VideoFormat::I420)
                    .build();
                [
                    (gst::PadDirection::Sink, "sink", sink),
                    (gst::PadDirection::Src, "src", src),
                ]
                .into_iter()
                .filter_map(|(direction, name, caps)| {
                    gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps).ok()
                })
                .collect()
            });
            TEMPLATES.as_ref()
        }
    }

    impl VideoDecoderImpl for RustH264Dec {
        fn start(&self) -> Result<(), gst::ErrorMessage> {
            *self.state() = State::default();
            self.obj().set_packetized(true);
            Ok(())
        }

        fn set_format(
            &self,
            input: &gst_video::VideoCodecState<'static, gst_video::video_codec_state::Readable>,
        ) -> Result<(), gst::LoggableError> {
            self.state().input = Some(input.clone());
            Ok(())
        }

        fn handle_frame(
            &self,
            frame: gst_video::VideoCodecFrame,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            let number = frame.system_frame_number();
            let pts = frame.pts().map(gst::ClockTime::nseconds);
            let (idr, decoded) = {
                let buffer = frame.input_buffer().ok_or(gst::FlowError::Error)?;
                let unit = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                (holds_idr(&unit), self.state().decoder.decode(&unit))
            };
            let released = match decoded {
                Ok(Some(p)) => {
                    let picture = Picture {
                        width: p.width,
                        height: p.height,
                        planes: [p.y, p.u, p.v],
                    };
                    let mut state = self.state();
                    state.refused = 0;
                    if idr {
                        state.unsupported_keyframes = 0;
                    }
                    state.reorder.push(pts, idr, (number, picture))
                }
                // Parameter sets only.
                Ok(None) => {
                    self.obj().release_frame(frame);
                    return Ok(gst::FlowSuccess::Ok);
                }
                Err(e) => {
                    let (refused, unsupported_keyframes) = {
                        let mut state = self.state();
                        state.refused += 1;
                        if idr && matches!(e, DecodeError::Unsupported(_)) {
                            state.unsupported_keyframes += 1;
                        }
                        (state.refused, state.unsupported_keyframes)
                    };
                    if unsupported_keyframes >= UNSUPPORTED_KEYFRAMES {
                        // The stream itself is beyond this decoder: say what to use instead.
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::CodecNotFound,
                            (
                                "the detection stream uses H.264 that {} cannot decode ({}); \
                                 set GST_PLUGIN_FEATURE_RANK={}:NONE in the agent's \
                                 environment and capture.plugins = [\"libav\"] to decode it \
                                 with libav's",
                                NAME,
                                e,
                                NAME
                            )
                        );
                        self.obj().drop_frame(frame)?;
                        return Err(gst::FlowError::NotSupported);
                    }
                    // Once per run of refusals: a damaged unit costs the pictures up to the
                    // next keyframe, which decodes without them.
                    if refused == 1 {
                        tracing::warn!("a unit of the detection stream did not decode: {e}");
                    }
                    return self.obj().drop_frame(frame);
                }
            };
            drop(frame);
            if let Some((late, _)) = released.late {
                if let Some(frame) = self.obj().frame(late as i32) {
                    self.obj().drop_frame(frame)?;
                }
            }
            self.send(released.out)
        }

        fn drain(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
            let held = self.state().reorder.drain();
            self.send(held)
        }

        fn finish(&self) -> Result<gst::FlowSuccess, gst::FlowError> {
            self.drain()
        }

        fn flush(&self) -> bool {
            self.state().reorder.clear();
            true
        }
    }

    impl RustH264Dec {
        fn state(&self) -> std::sync::MutexGuard<'_, State> {
            // A panic while it was held left it whole: every field is replaced at once.
            self.state.lock().unwrap_or_else(|e| e.into_inner())
        }

        /// Sends each picture on as its frame's output, in order.
        fn send(&self, pictures: Vec<(u32, Picture)>) -> Result<gst::FlowSuccess, gst::FlowError> {
            let element = self.obj();
            for (number, picture) in pictures {
                let Some(mut frame) = element.frame(number as i32) else {
                    continue;
                };
                self.negotiate_for(&picture)?;
                element.allocate_output_frame(&mut frame, None)?;
                let info = element
                    .output_state()
                    .map(|state| state.info().clone())
                    .ok_or(gst::FlowError::NotNegotiated)?;
                let buffer = frame.output_buffer_mut().ok_or(gst::FlowError::Error)?;
                copy_into(buffer, &info, &picture)?;
                element.finish_frame(frame)?;
            }
            Ok(gst::FlowSuccess::Ok)
        }

        /// Sets the output caps to the picture's size, when they are not already.
        fn negotiate_for(&self, picture: &Picture) -> Result<(), gst::FlowError> {
            let element = self.obj();
            let (width, height) = (picture.width as u32, picture.height as u32);
            let current = element.output_state().map(|s| {
                let info = s.info();
                (info.width(), info.height())
            });
            if current == Some((width, height)) {
                return Ok(());
            }
            let input = self.state().input.clone();
            let state = element.set_output_state(
                gst_video::VideoFormat::I420,
                width,
                height,
                input.as_ref(),
            )?;
            element
                .negotiate(state)
                .map_err(|_| gst::FlowError::NotNegotiated)
        }
    }

    /// Copies the picture's planes into `buffer`, row by row at the buffer's strides.
    fn copy_into(
        buffer: &mut gst::BufferRef,
        info: &gst_video::VideoInfo,
        picture: &Picture,
    ) -> Result<(), gst::FlowError> {
        let mut frame = gst_video::VideoFrameRef::from_buffer_ref_writable(buffer, info)
            .map_err(|_| gst::FlowError::Error)?;
        for (plane, source) in picture.planes.iter().enumerate() {
            // The decoder's chroma planes are half the width, rounded down.
            let width = if plane == 0 {
                picture.width
            } else {
                picture.width / 2
            };
            let stride = frame.plane_stride()[plane] as usize;
            let rows = frame
                .plane_data_mut(plane as u32)
                .map_err(|_| gst::FlowError::Error)?
                .chunks_mut(stride);
            for (row, from) in rows.zip(source.chunks(width)) {
                let n = from.len().min(row.len());
                row[..n].copy_from_slice(&from[..n]);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use gstreamer_app as gst_app;

    use super::*;

    const STREET: &str = "/usr/share/doc/opencv-doc/examples/data/vtest.avi";

    /// Eight seconds of opencv-doc's street at 320×180, 15 fps, a keyframe every 2 s, with
    /// `bframes` B-frames: access units in byte-stream form, in decoding order.
    fn street_units(bframes: u32) -> Vec<gst::Buffer> {
        encoded_street(&format!(
            "x264enc speed-preset=superfast key-int-max=30 bframes={bframes}"
        ))
    }

    fn encoded_street(encoder: &str) -> Vec<gst::Buffer> {
        let pipeline = gst::parse::launch(&format!(
            "filesrc location={STREET} ! decodebin ! videoconvert ! videoscale \
             ! video/x-raw,width=320,height=180 ! videorate ! video/x-raw,framerate=15/1 \
             ! identity eos-after=120 ! videoconvert ! {encoder} ! h264parse \
             ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out sync=false"
        ))
        .unwrap();
        let (samples, error) = run(pipeline.downcast().unwrap(), |_| {});
        assert_eq!(error, None);
        samples
            .into_iter()
            .filter_map(|sample| sample.buffer_owned())
            .collect()
    }

    /// Plays `pipeline` to its end; `feed` is given it once it plays. Returns what its
    /// appsink `out` took, and the error it stopped with.
    fn run(
        pipeline: gst::Pipeline,
        feed: impl FnOnce(&gst::Pipeline),
    ) -> (Vec<gst::Sample>, Option<String>) {
        let sink: gst_app::AppSink = pipeline.by_name("out").unwrap().downcast().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        feed(&pipeline);
        let mut samples = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            samples.push(sample);
        }
        let bus = pipeline.bus().unwrap();
        let error =
            bus.pop_filtered(&[gst::MessageType::Error])
                .map(|message| match message.view() {
                    gst::MessageView::Error(e) => e.error().to_string(),
                    _ => unreachable!("filtered"),
                });
        pipeline.set_state(gst::State::Null).unwrap();
        (samples, error)
    }

    /// The pictures `decoder` makes of `units`: presentation time and I420 bytes.
    fn decode(decoder: &str, units: &[gst::Buffer]) -> Vec<(u64, Vec<u8>)> {
        let (pictures, error) = decode_or_fail(decoder, units);
        assert_eq!(error, None);
        pictures
    }

    fn decode_or_fail(
        decoder: &str,
        units: &[gst::Buffer],
    ) -> (Vec<(u64, Vec<u8>)>, Option<String>) {
        register().unwrap();
        let pipeline = gst::parse::launch(&format!(
            "appsrc name=in format=time caps=video/x-h264,stream-format=byte-stream,alignment=au \
             ! h264parse ! {decoder} ! video/x-raw,format=I420 ! appsink name=out sync=false"
        ))
        .unwrap();
        let (samples, error) = run(pipeline.downcast().unwrap(), |pipeline| {
            let src: gst_app::AppSrc = pipeline.by_name("in").unwrap().downcast().unwrap();
            for unit in units {
                // Refused once the decoder has stopped the stream.
                let _ = src.push_buffer(unit.clone());
            }
            let _ = src.end_of_stream();
        });
        let pictures = samples
            .iter()
            .map(|sample| {
                let buffer = sample.buffer().unwrap();
                let bytes = buffer.map_readable().unwrap().to_vec();
                (buffer.pts().unwrap().nseconds(), bytes)
            })
            .collect();
        (pictures, error)
    }

    #[test]
    fn a_camera_stream_decodes_as_libav_decodes_it() {
        gst::init().unwrap();
        let units = street_units(0);
        let libav = decode("avdec_h264", &units);
        assert_eq!(libav.len(), units.len());
        assert_eq!(decode(NAME, &units), libav);
    }

    #[test]
    fn b_frames_come_out_in_order_and_as_libav_decodes_them() {
        gst::init().unwrap();
        let units = street_units(2);
        let libav = decode("avdec_h264", &units);
        let own = decode(NAME, &units);
        // Learning the stream's reordering drops the first B-frames, and nothing after.
        assert!(
            own.len() >= libav.len() - 2,
            "{} of {}",
            own.len(),
            libav.len()
        );
        assert!(own.windows(2).all(|w| w[0].0 < w[1].0), "out of order");
        for (pts, picture) in &own {
            let theirs = libav.iter().find(|(at, _)| at == pts).map(|(_, p)| p);
            assert_eq!(Some(picture), theirs, "the picture at {pts} ns");
        }
        assert_eq!(own.last(), libav.last());
    }

    #[test]
    fn a_damaged_unit_costs_pictures_up_to_the_next_keyframe_and_no_more() {
        gst::init().unwrap();
        let mut units = street_units(0);
        // The fifth unit's slice data overwritten with noise, its start code and header kept.
        let damaged = {
            let map = units[4].map_readable().unwrap();
            let mut bytes = map.to_vec();
            let mut noise = 0x2545_f491_u32;
            for byte in bytes.iter_mut().skip(8) {
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                *byte = noise as u8;
            }
            let mut buffer = gst::Buffer::from_mut_slice(bytes);
            units[4]
                .copy_into(
                    buffer.make_mut(),
                    gst::BufferCopyFlags::TIMESTAMPS | gst::BufferCopyFlags::FLAGS,
                    ..,
                )
                .unwrap();
            buffer
        };
        units[4] = damaged;
        let libav = decode("avdec_h264", &units);
        let own = decode(NAME, &units);
        // From the next keyframe on, every picture is whole and libav's.
        let keyframe = units[5..]
            .iter()
            .find(|unit| !unit.flags().contains(gst::BufferFlags::DELTA_UNIT))
            .unwrap();
        let from = keyframe.pts().unwrap().nseconds();
        let after = |pictures: &[(u64, Vec<u8>)]| {
            pictures
                .iter()
                .filter(|(pts, _)| *pts >= from)
                .cloned()
                .collect::<Vec<_>>()
        };
        let units_after = units.iter().filter(|u| u.pts().unwrap().nseconds() >= from);
        assert_eq!(after(&own).len(), units_after.count());
        assert_eq!(after(&own), after(&libav));
    }

    #[test]
    fn a_stream_beyond_the_decoder_stops_with_an_error_that_names_the_fix() {
        gst::init().unwrap();
        // High 10: ten bits a sample, which it does not decode.
        let units = encoded_street("video/x-raw,format=I420_10LE ! x264enc key-int-max=30");
        let (pictures, error) = decode_or_fail(NAME, &units);
        assert!(pictures.is_empty());
        let error = error.expect("an error");
        assert!(
            error.contains("bit depth")
                && error.contains("GST_PLUGIN_FEATURE_RANK=camagenth264dec:NONE"),
            "{error}"
        );
    }

    #[test]
    fn the_rank_comes_from_gstreamers_variable_when_it_names_this_element() {
        assert_eq!(rank_in("openh264dec:NONE"), None);
        assert_eq!(
            rank_in("openh264dec:NONE, camagenth264dec:none"),
            Some(gst::Rank::NONE)
        );
        assert_eq!(rank_in("camagenth264dec:300"), Some(gst::Rank::from(300)));
        assert_eq!(rank_in("camagenth264dec:high"), None);
    }

    #[test]
    fn an_idr_unit_is_told_from_one_without() {
        // AUD, then an IDR slice (type 5) behind a 4-byte start code.
        assert!(holds_idr(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x65, 0x88]));
        // AUD, then a P slice (type 1).
        assert!(!holds_idr(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x41, 0x9a]));
    }
}
