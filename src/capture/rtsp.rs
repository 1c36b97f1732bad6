//! RTSP cameras received by [retina] rather than GStreamer's rtspsrc: the same streams for a
//! quarter of the CPU (BENCHMARKS.md), which on a camera with a detection stream was as much
//! as the whole of the rest.
//!
//! One thread per camera runs a small tokio runtime of its own (never the agent's, which
//! drives MQTT) and receives each stream over interleaved TCP: in order, so no jitter buffer.
//! It works in turns ([`TURN`]): it takes what arrived, hands it on, and sleeps.
//! Each stream's access units, in avc form and stamped in the pipeline's running time, go
//! where [`Destination`] says: straight to the camera thread, which records them and hands
//! the detector's decoder what it picks, or into an appsrc when GStreamer decodes the stream
//! whole. The credentials go to retina apart from the address, and no message quotes them. A
//! camera that refuses, fails, goes silent or ends its stream posts an error on the
//! pipeline's bus, and the camera restarts the pipeline as for any failed source.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use retina::client::{Credentials, PlayOptions, Session, SessionOptions, SetupOptions};
use retina::codec::{CodecItem, ParametersRef, VideoFrame};
use tokio::sync::{oneshot, Notify};

use super::CaptureError;
use crate::config::RtspUrl;

/// How long a camera may take to answer, and to send the next picture, before it is taken
/// for gone. rtspsrc's own default is 5 s of silence; a camera's keyframe interval is
/// rarely above 4 s.
const SILENCE: Duration = Duration::from_secs(10);

/// The receiving thread of a camera's RTSP streams; dropping it stops the thread and waits
/// for it.
pub struct RtspFeed {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Where a stream's access units go.
pub enum Destination {
    /// Into the pipeline, by an appsrc made by [`feed_source`].
    Pipeline(gst_app::AppSrc),
    /// To the camera thread, as samples with the stream's caps; the callback says `false`
    /// once nobody takes them. No thread of GStreamer's between: on a camera that records a
    /// stream without decoding it, those hand-offs were most of what receiving it cost.
    Camera(Taker),
}

/// The appsrc a stream's units enter the pipeline by.
pub fn feed_source() -> gst_app::AppSrc {
    let src = gst_app::AppSrc::builder()
        .format(gst::Format::Time)
        .is_live(true)
        .stream_type(gst_app::AppStreamType::Stream)
        // Units are never dropped (recording must be whole): when the pipeline is behind,
        // receiving waits, and TCP holds the camera back.
        .block(true)
        .max_bytes(4 << 20)
        .build();
    src.set_property("min-latency", 0i64);
    src
}

impl RtspFeed {
    /// Starts receiving each camera stream to its destination, stamped in `pipeline`'s
    /// running time; failures are posted on its bus.
    pub fn start(
        pipeline: &gst::Pipeline,
        streams: Vec<(RtspUrl, Destination)>,
    ) -> Result<Self, CaptureError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CaptureError::Init(format!("the RTSP runtime: {e}")))?;
        let (stop, stopped) = oneshot::channel();
        let pipeline = pipeline.downgrade();
        let thread = std::thread::Builder::new()
            .name("rtsp".into())
            .spawn(move || {
                let turn = Turn::new(streams.len());
                let mut takers = Vec::new();
                let receivers: Vec<_> = streams
                    .into_iter()
                    .map(|(url, to)| match to {
                        Destination::Pipeline(src) => (url, Route::Pipeline(src)),
                        Destination::Camera(take) => {
                            takers.push(take);
                            (url, Route::Camera(takers.len() - 1))
                        }
                    })
                    .collect();
                runtime.block_on(async move {
                    let receiving = futures_util::future::join_all(
                        receivers
                            .into_iter()
                            .map(|(url, route)| receive_into(url, route, &turn, &pipeline)),
                    );
                    tokio::select! {
                        _ = receiving => {}
                        _ = turn.hand_over(takers) => {}
                        _ = stopped => {}
                    }
                });
            })
            .map_err(|e| CaptureError::Init(format!("the RTSP thread: {e}")))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// How long the receiving thread sleeps after each turn once every stream has started.
/// Waking cost this thread more than receiving did: a camera's two streams woke it about
/// 45 times a second, half again as often as pictures came. Asleep, it lets the packets
/// gather in the sockets, and the next turn takes them all at once: about 20 wakes a second,
/// and a sixth less CPU for the whole agent on a still scene (0.72 → 0.60 s a minute, side
/// by side on the sub-stream bench's mostly-still scene; on the busy street, where decoding
/// dominates, no difference showed). A picture reaches the detector up to this much later:
/// a quarter of an analysis interval at the default 5 fps.
const TURN: Duration = Duration::from_millis(50);

/// Where a received stream's units go, on the receiving thread.
enum Route {
    Pipeline(gst_app::AppSrc),
    /// To the camera thread, by the taker of this index, at the end of a turn.
    Camera(usize),
}

/// Hands a unit to the camera thread; `false` once it takes no more.
type Taker = Box<dyn FnMut(gst::Sample) -> bool + Send>;

/// The receiving thread's turns: the units its streams received in one go are handed to the
/// camera thread together at the turn's end, which wakes it less often (a third less on
/// the bench) than handing each over as it came.
struct Turn {
    /// Units for the camera thread, in the order they arrived, by their taker.
    received: RefCell<Vec<(usize, gst::Sample)>>,
    arrived: Notify,
    /// Streams that have delivered their first unit; none is paced before all have, so
    /// each stream's first picture is stamped when it arrived and the streams' timelines
    /// stay aligned.
    started: Cell<usize>,
    streams: usize,
}

impl Turn {
    fn new(streams: usize) -> Self {
        Self {
            received: RefCell::default(),
            arrived: Notify::new(),
            started: Cell::new(0),
            streams,
        }
    }

    /// Notes that a stream delivered its first unit.
    fn started(&self) {
        self.started.set(self.started.get() + 1);
    }

    fn receive(&self, taker: usize, unit: gst::Sample) {
        self.received.borrow_mut().push((taker, unit));
        self.arrived.notify_one();
    }

    /// Hands each turn's units to their takers, then sleeps the rest of the turn; returns
    /// once a taker takes no more.
    async fn hand_over(&self, mut takers: Vec<Taker>) {
        loop {
            self.arrived.notified().await;
            // No await while it is borrowed: the takers never touch the turn.
            for (taker, unit) in self.received.borrow_mut().drain(..) {
                if !takers[taker](unit) {
                    return;
                }
            }
            if self.started.get() == self.streams {
                // Blocking on purpose: this runtime is the receiving thread's alone (never
                // the agent's, which drives MQTT), and while it sleeps the sockets fill.
                std::thread::sleep(TURN);
            }
        }
    }
}

impl Drop for RtspFeed {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Why a stream stopped being received.
enum Failure {
    /// The camera refused the credentials.
    Refused(String),
    Other(String),
}

/// Receives `url` to `to` until it ends, fails or nobody takes its units any more, and
/// says which on the pipeline's bus.
async fn receive_into(
    url: RtspUrl,
    to: Route,
    turn: &Turn,
    pipeline: &gst::glib::WeakRef<gst::Pipeline>,
) {
    let received = receive(&url, &to, turn, pipeline).await;
    let Some(pipeline) = pipeline.upgrade() else {
        return;
    };
    match received {
        Ok(Received::Stopped) => {}
        // A camera does not end: it restarts, or its stream was cut. Either way it is
        // taken up again, with backoff, as after any failure.
        Ok(Received::Ended) => {
            let message = format!("{url}: the camera ended the stream");
            gst::element_error!(pipeline, gst::ResourceError::Read, ("{}", message));
        }
        Err(Failure::Refused(message)) => {
            gst::element_error!(pipeline, gst::ResourceError::NotAuthorized, ("{}", message));
        }
        Err(Failure::Other(message)) => {
            gst::element_error!(pipeline, gst::ResourceError::Read, ("{}", message));
        }
    }
}

enum Received {
    /// The camera ended the stream.
    Ended,
    /// The pipeline stopped taking units.
    Stopped,
}

async fn receive(
    url: &RtspUrl,
    to: &Route,
    turn: &Turn,
    pipeline: &gst::glib::WeakRef<gst::Pipeline>,
) -> Result<Received, Failure> {
    let failed = |what: &str, e: retina::Error| {
        // retina's messages add their connection's context on further lines.
        let message = e.to_string().replace("\n\n", "; ").replace('\n', "; ");
        let message = format!("{url}: {what}: {message}");
        if e.status_code() == Some(401) {
            Failure::Refused(message)
        } else {
            Failure::Other(message)
        }
    };
    let silent = |what: &str| {
        Failure::Other(format!(
            "{url}: the camera was silent for {SILENCE:?} (waiting for {what})"
        ))
    };
    let location = url::Url::parse(url.location())
        .map_err(|e| Failure::Other(format!("{url}: not an address retina takes: {e}")))?;
    let credentials = url.user().map(|user| Credentials {
        username: user.to_owned(),
        password: url.password().unwrap_or_default().to_owned(),
    });
    let options = SessionOptions::default()
        .creds(credentials)
        .user_agent(concat!("camagent/", env!("CARGO_PKG_VERSION")).to_owned());
    let mut session = tokio::time::timeout(SILENCE, Session::describe(location, options))
        .await
        .map_err(|_| silent("the answer to DESCRIBE"))?
        .map_err(|e| failed("DESCRIBE", e))?;
    let video = session
        .streams()
        .iter()
        .position(|s| s.media() == "video" && s.encoding_name() == "h264")
        .ok_or_else(|| Failure::Other(format!("{url}: the camera offers no H.264 video")))?;
    tokio::time::timeout(SILENCE, session.setup(video, SetupOptions::default()))
        .await
        .map_err(|_| silent("the answer to SETUP"))?
        .map_err(|e| failed("SETUP", e))?;
    let playing = tokio::time::timeout(SILENCE, session.play(PlayOptions::default()))
        .await
        .map_err(|_| silent("the answer to PLAY"))?
        .map_err(|e| failed("PLAY", e))?;
    let mut demuxed = playing.demuxed().map_err(|e| failed("PLAY", e))?;
    let mut timeline = Timeline::default();
    let mut caps: Option<gst::Caps> = None;
    loop {
        let item = tokio::time::timeout(SILENCE, demuxed.next())
            .await
            .map_err(|_| silent("a picture"))?;
        let frame = match item {
            None => return Ok(Received::Ended),
            Some(Err(e)) => return Err(failed("receiving", e)),
            Some(Ok(CodecItem::VideoFrame(frame))) => frame,
            Some(Ok(_)) => continue,
        };
        if caps.is_none() || frame.has_new_parameters() {
            let Some(ParametersRef::Video(video)) = demuxed
                .streams()
                .get(frame.stream_id())
                .and_then(|s| s.parameters())
            else {
                // No SPS/PPS yet (the camera sends them in band with its next keyframe).
                continue;
            };
            let (width, height) = video.pixel_dimensions();
            let new = gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .field("width", width as i32)
                .field("height", height as i32)
                .field(
                    "codec_data",
                    gst::Buffer::from_slice(video.extra_data().to_vec()),
                )
                .build();
            if let Route::Pipeline(src) = to {
                src.set_caps(Some(&new));
            }
            if caps.is_none() {
                turn.started();
            }
            caps = Some(new);
        }
        let Some(arrival) = pipeline.upgrade().map(|p| p.current_running_time()) else {
            return Ok(Received::Stopped);
        };
        let buffer = unit(
            frame,
            arrival.map_or(Duration::ZERO, Into::into),
            &mut timeline,
        );
        match to {
            Route::Pipeline(src) => {
                if src.push_buffer(buffer).is_err() {
                    return Ok(Received::Stopped);
                }
            }
            Route::Camera(taker) => turn.receive(
                *taker,
                gst::Sample::builder()
                    .buffer(&buffer)
                    .caps_if_some(caps.as_ref())
                    .build(),
            ),
        }
    }
}

/// The frame as a buffer stamped in the pipeline's running time.
fn unit(frame: VideoFrame, arrival: Duration, timeline: &mut Timeline) -> gst::Buffer {
    let timestamp = frame.timestamp();
    let elapsed =
        timestamp.elapsed() as i128 * 1_000_000_000 / i128::from(timestamp.clock_rate().get());
    let keyframe = frame.is_random_access_point();
    let mut buffer = gst::Buffer::from_mut_slice(frame.into_data());
    if let Some(buffer) = buffer.get_mut() {
        buffer.set_pts(gst::ClockTime::from_nseconds(
            timeline.pts(arrival, elapsed),
        ));
        if !keyframe {
            buffer.set_flags(gst::BufferFlags::DELTA_UNIT);
        }
    }
    buffer
}

/// Places a stream's RTP times on the pipeline's running time: its first picture at the
/// moment it arrived, the rest as far from it as the camera's clock says. Streams of one
/// camera start together, so their pictures of one moment get one time.
#[derive(Default)]
struct Timeline {
    /// Running time minus media time, in nanoseconds.
    offset: Option<i128>,
}

impl Timeline {
    /// The running time, in nanoseconds, of the picture `elapsed` ns into the stream that
    /// arrived at `arrival`.
    fn pts(&mut self, arrival: Duration, elapsed: i128) -> u64 {
        let offset = *self
            .offset
            .get_or_insert(arrival.as_nanos() as i128 - elapsed);
        u64::try_from(offset + elapsed).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn unit(pts: u64) -> gst::Sample {
        let mut buffer = gst::Buffer::new();
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(pts));
        gst::Sample::builder().buffer(&buffer).build()
    }

    #[test]
    fn a_turn_hands_its_units_over_in_arrival_order_until_a_taker_refuses() {
        gst::init().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let taken = Arc::new(Mutex::new(Vec::new()));
        let taker = |stream: usize, refuse_at: u64| -> Taker {
            let taken = taken.clone();
            Box::new(move |unit: gst::Sample| {
                let pts = unit.buffer().unwrap().pts().unwrap().mseconds();
                taken.lock().unwrap().push((stream, pts));
                pts != refuse_at
            })
        };
        // Stream 0 goes to the pipeline (no taker); streams 1 and 2 to the camera, by takers
        // 0 and 1.
        let takers = vec![taker(1, u64::MAX), taker(2, 50)];
        let by_stream = |stream: usize| stream - 1;
        let turn = Turn::new(3);
        runtime.block_on(async {
            let receiving = async {
                (0..3).for_each(|_| turn.started());
                turn.receive(by_stream(1), unit(1));
                turn.receive(by_stream(2), unit(2));
                // A turn's units, interleaved; the camera stops taking at stream 2's 50 ms.
                tokio::task::yield_now().await;
                for (stream, pts) in [(1, 40), (2, 40), (1, 80), (2, 50), (1, 120)] {
                    turn.receive(by_stream(stream), unit(pts));
                }
                std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = receiving => unreachable!(),
                _ = turn.hand_over(takers) => {}
            }
        });
        assert_eq!(
            *taken.lock().unwrap(),
            [(1, 1), (2, 2), (1, 40), (2, 40), (1, 80), (2, 50)]
        );
    }

    #[test]
    fn the_first_picture_is_placed_at_its_arrival_and_the_rest_by_the_camera_clock() {
        let mut timeline = Timeline::default();
        let ms = |n: u64| Duration::from_millis(n);
        let ns = |n: u64| n as i128 * 1_000_000;
        // The stream starts 2 s into the camera's timeline and arrives 5 s into the run.
        assert_eq!(timeline.pts(ms(5_000), ns(2_000)), 5_000_000_000);
        // Later pictures keep the camera's spacing whenever they arrive (late or in a burst).
        assert_eq!(timeline.pts(ms(5_900), ns(2_040)), 5_040_000_000);
        assert_eq!(timeline.pts(ms(5_900), ns(2_080)), 5_080_000_000);
        // A B-frame shown before the first picture stays before it; never below zero.
        assert_eq!(timeline.pts(ms(5_950), ns(1_960)), 4_960_000_000);
        let mut early = Timeline::default();
        assert_eq!(early.pts(ms(10), ns(0)), 10_000_000);
        assert_eq!(early.pts(ms(20), -ns(40)), 0);
    }
}
