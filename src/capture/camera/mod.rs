//! The camera: runs the pipeline on a thread of its own, detects motion on its frames, keeps
//! the pre-roll ring, writes clips and takes snapshots, and reports what happened to the agent
//! as [`CameraEvent`]s. A source that fails or ends restarts with backoff; the camera never
//! takes the daemon down with it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use tokio::sync::mpsc;
use tracing::{info, warn};

mod input;
mod on_demand;
mod recording;
mod snapshot;

use super::clip::{ClipFile, ClipWriter};
use super::elements::Ended;
use super::finisher::Finisher;
use super::on_demand::{DecodePlanner, HOLD};
use super::pipeline::{self, Graph, Stream};
use super::recorder::{Recorder, RecorderConfig};
use super::snapshot::{JpegEncoder, MainPicture};
use super::CaptureError;
use crate::config::capture::CaptureConfig;
use crate::config::MotionConfig;
use crate::motion::{Boundary, Detector, EndReason, EventMachine, Rect};
use crate::report::Chain;
use crate::uplink::backoff::Backoff;
use input::{captured_ms, connect, decoded, running_time, Input, INPUT_BACKLOG};

/// How far behind the newest unit the ring waits for the detector. Catching up after a cue
/// decodes a group of pictures (1–4 s on cameras) at a few times real time; a detector
/// further behind than this has stalled, and the ring stops waiting so that it stays bounded.
const DETECTOR_LAG_LIMIT: Duration = Duration::from_secs(5);

/// What the camera tells the agent.
#[derive(Debug)]
pub enum CameraEvent {
    MotionStart {
        event_id: String,
        /// Wall-clock time the first moving frame was captured (ms since the epoch).
        captured_ms: u64,
        score: f32,
        regions: Vec<Rect>,
        /// The JPEG of the moment, or why there is none.
        snapshot: Result<Vec<u8>, String>,
    },
    MotionEnd {
        event_id: String,
        captured_ms: u64,
        reason: EndReason,
        peak_score: f32,
    },
    /// The clip being recorded has new whole fragments on disk, durable: they can go up
    /// while it records. `fragments` is where its init segment and each fragment end.
    ClipGrew {
        clip_id: String,
        event_ids: Vec<String>,
        fragments: Vec<u64>,
    },
    /// A finished clip of one or more events (an event starting during the previous one's
    /// post-roll extends its clip).
    ClipReady {
        event_ids: Vec<String>,
        clip: ClipFile,
    },
    Source(SourceState),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceState {
    Running,
    Failed { reason: String, retry_in: Duration },
}

/// The running camera; [`CameraHandle::stop`] finishes the clip in progress and returns.
pub struct CameraHandle {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl CameraHandle {
    /// Asks the camera to stop; it closes its clip and ends its events first.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts the camera. Events arrive on `events` until the camera stops and every clip it
/// was finishing is reported (the channel then closes).
pub fn spawn(
    capture: CaptureConfig,
    motion: MotionConfig,
    clips_dir: PathBuf,
    events: mpsc::Sender<CameraEvent>,
) -> Result<CameraHandle, CaptureError> {
    gst::init().map_err(|e| CaptureError::Init(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    let finisher = Finisher::spawn(clips_dir.clone(), events.clone())
        .map_err(|e| CaptureError::Init(e.to_string()))?;
    let mut camera = Camera::new(capture, motion, clips_dir, events, finisher, stop.clone());
    let thread = std::thread::Builder::new()
        .name("camera".into())
        .spawn(move || {
            camera.run();
            camera.finisher.join();
        })
        .map_err(|e| CaptureError::Init(e.to_string()))?;
    Ok(CameraHandle { stop, thread })
}

/// Why a run of the pipeline stopped.
enum Stopped {
    Closed,
    Ended,
    Failed(CaptureError),
}

struct Camera {
    capture: CaptureConfig,
    motion: MotionConfig,
    clips_dir: PathBuf,
    events: mpsc::Sender<CameraEvent>,
    finisher: Finisher,
    stop: Arc<AtomicBool>,
    detector: Detector,
    machine: EventMachine,
    recorder: Recorder<gst::Sample>,
    /// The id of the event in progress.
    event: Option<String>,
    /// Events the clip being recorded covers, and its writer once the first unit came.
    clip_events: Vec<String>,
    writer: Option<ClipWriter>,
    /// The last event of the clip closed last, and how many clips went on from it: a clip
    /// at its maximum length is continued by the next.
    last_clip_event: Option<String>,
    clip_part: u32,
    /// Media time restarts with each run of the pipeline; this keeps the camera's own
    /// timeline increasing across runs.
    offset: Duration,
    last: Duration,
    running: bool,
    /// Built at the first snapshot and kept.
    jpeg: Option<JpegEncoder>,
    /// Built at the first snapshot taken from the main stream and kept.
    main_picture: Option<MainPicture>,
    /// What the detector's decoder gets, when it decodes on demand; new with each run.
    planner: DecodePlanner<gst::Sample>,
}

impl Camera {
    fn new(
        capture: CaptureConfig,
        motion: MotionConfig,
        clips_dir: PathBuf,
        events: mpsc::Sender<CameraEvent>,
        finisher: Finisher,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let recorder = Recorder::new(RecorderConfig {
            preroll: capture.preroll,
            postroll: capture.postroll,
            // The end is declared one gap after the last motion, plus one analysis frame.
            hold: motion.events.gap + motion.period(),
            max_clip: capture.max_clip,
            max_lag: DETECTOR_LAG_LIMIT,
        });
        Self {
            detector: Detector::new(motion.detector(), motion.width, motion.height),
            planner: DecodePlanner::new(HOLD, motion.period()),
            machine: EventMachine::new(motion.events.clone()),
            recorder,
            capture,
            motion,
            clips_dir,
            events,
            finisher,
            stop,
            event: None,
            clip_events: Vec::new(),
            writer: None,
            last_clip_event: None,
            clip_part: 0,
            offset: Duration::ZERO,
            last: Duration::ZERO,
            running: false,
            jpeg: None,
            main_picture: None,
        }
    }

    fn run(&mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            info!(source = ?self.capture.source, "capture source starting");
            let stopped = self.run_once();
            // Whatever stopped the run, the stream is gone: finish its clip and event.
            self.end_of_stream();
            crate::os::release_free_memory();
            self.offset = self.last + Duration::from_secs(1);
            match stopped {
                Stopped::Closed => return,
                Stopped::Ended => {
                    let looped = matches!(
                        self.capture.source,
                        super::Source::File { looped: true, .. }
                    );
                    if !looped {
                        info!("capture source ended");
                        while !self.closing() {
                            std::thread::sleep(Duration::from_millis(200));
                        }
                        return;
                    }
                    backoff.reset();
                }
                Stopped::Failed(e) => {
                    let delay = backoff.next_delay();
                    warn!(
                        "capture source failed: {}; restarting in {delay:?}",
                        Chain(&e)
                    );
                    self.running = false;
                    self.report(CameraEvent::Source(SourceState::Failed {
                        reason: e.to_string(),
                        retry_in: delay,
                    }));
                    let until = std::time::Instant::now() + delay;
                    while std::time::Instant::now() < until {
                        if self.closing() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }
    }

    fn closing(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.events.is_closed()
    }

    fn run_once(&mut self) -> Stopped {
        let mut graph = match pipeline::build(&self.capture, &self.motion) {
            Ok(g) => g,
            Err(e) => return Stopped::Failed(e),
        };
        self.planner = DecodePlanner::new(HOLD, self.motion.period());
        let (tx, rx) = std_mpsc::sync_channel(INPUT_BACKLOG);
        let pending = Arc::new(AtomicUsize::new(0));
        if let Err(e) = connect(&mut graph, tx, pending.clone()) {
            let _ = graph.pipeline.set_state(gst::State::Null);
            return Stopped::Failed(e);
        }
        if graph.pipeline.set_state(gst::State::Playing).is_err() {
            let error = super::elements::posted_error(&graph.pipeline)
                .unwrap_or_else(|| CaptureError::Input("the source does not start".into()));
            let _ = graph.pipeline.set_state(gst::State::Null);
            return Stopped::Failed(error);
        }
        let stopped = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Input::Unit(stream, sample)) => {
                    if decoded(stream, &graph) {
                        self.feed_decoder(&graph, &sample);
                    }
                    if stream == Stream::Main {
                        self.unit(sample)
                    }
                }
                Ok(Input::UnitsEnded(stream)) => {
                    if decoded(stream, &graph) {
                        self.end_decoder(&graph)
                    }
                }
                Ok(Input::Frame(sample)) => {
                    pending.fetch_sub(1, Ordering::SeqCst);
                    if let Err(e) = self.frame(&graph, &sample) {
                        warn!("analysis frame dropped: {e}");
                    }
                }
                Err(_) => {}
            }
            if self.closing() {
                break Stopped::Closed;
            }
            match super::elements::posted_end(&graph.pipeline) {
                Some(Ended::Eos) => break Stopped::Ended,
                Some(Ended::Error(e)) => break Stopped::Failed(e),
                None => {}
            }
        };
        self.stop_pipeline(&graph, &rx);
        stopped
    }

    /// Stops the pipeline and keeps what it had already encoded: those units still belong to
    /// the clip. Stopping waits for the streaming threads, which may be waiting for room in
    /// the channel, so the channel is emptied while it stops.
    fn stop_pipeline(&mut self, graph: &Graph, rx: &std_mpsc::Receiver<Input>) {
        let stop = || {
            let _ = graph.pipeline.set_state(gst::State::Null);
        };
        std::thread::scope(|scope| {
            match std::thread::Builder::new()
                .name("camera-stop".into())
                .spawn_scoped(scope, stop)
            {
                Ok(stopping) => {
                    while !stopping.is_finished() {
                        self.take_units(rx);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
                Err(_) => {
                    // No thread to stop it on: make room for what is queued, then stop here.
                    self.take_units(rx);
                    stop();
                }
            }
        });
        self.take_units(rx);
    }

    fn take_units(&mut self, rx: &std_mpsc::Receiver<Input>) {
        while let Ok(input) = rx.try_recv() {
            if let Input::Unit(Stream::Main, sample) = input {
                self.unit(sample);
            }
        }
    }

    fn frame(&mut self, graph: &Graph, sample: &gst::Sample) -> Result<(), CaptureError> {
        let frame = super::elements::frame_of(sample, &self.motion)?;
        if !self.running {
            self.running = true;
            info!("capture source running");
            self.report(CameraEvent::Source(SourceState::Running));
        }
        let now = self.offset + running_time(sample, sample.buffer().and_then(|b| b.pts()));
        self.last = now;
        let verdict = self.detector.analyse(now, &frame.pixels)?;
        let boundary = self.machine.step(now, &verdict);
        self.scene(graph, now, verdict.motion || self.machine.active());
        match boundary {
            Some(Boundary::Start {
                pts: first,
                score,
                regions,
                ..
            }) => {
                let id = crate::policy::consent::uuid();
                // How long ago the frame that confirmed the motion was captured: the catch-up
                // after a cue, the decoder's queue and the receive turn.
                let behind_live_ms = crate::record::now_ms()
                    .saturating_sub(captured_ms(graph, now.saturating_sub(self.offset)));
                info!(event = %id, score, media_s = first.as_secs_f32(), behind_live_ms, "motion started");
                // Snapshot first: the alert goes out with its picture.
                let snapshot = self.snapshot(graph, first).map_err(|e| e.to_string());
                if let Err(e) = &snapshot {
                    warn!(event = %id, "no snapshot: {e}");
                }
                let captured_ms = captured_ms(graph, first.saturating_sub(self.offset));
                self.report(CameraEvent::MotionStart {
                    event_id: id.clone(),
                    captured_ms,
                    score,
                    regions,
                    snapshot,
                });
                self.clip_events.push(id.clone());
                self.event = Some(id);
                let out = self.recorder.start(first);
                self.record(out);
            }
            Some(Boundary::End {
                pts: last,
                reason,
                peak_score,
                ..
            }) => {
                let captured_ms = captured_ms(graph, last.saturating_sub(self.offset));
                self.end_event(last, captured_ms, reason, peak_score);
            }
            None => {}
        }
        let out = self.recorder.analysed(now);
        self.record(out);
        Ok(())
    }

    fn end_event(&mut self, at: Duration, captured_ms: u64, reason: EndReason, peak_score: f32) {
        let Some(event_id) = self.event.take() else {
            return;
        };
        info!(event = %event_id, ?reason, media_s = at.as_secs_f32(), "motion ended");
        self.report(CameraEvent::MotionEnd {
            event_id,
            captured_ms,
            reason,
            peak_score,
        });
        let out = self.recorder.end(at);
        self.record(out);
    }

    /// The stream stopped: an event in progress ends, the clip closes with what it has.
    fn end_of_stream(&mut self) {
        if let Some(Boundary::End {
            pts,
            reason,
            peak_score,
            ..
        }) = self.machine.finish(self.last)
        {
            self.end_event(pts, crate::record::now_ms(), reason, peak_score);
        }
        let out = self.recorder.finish();
        self.record(out);
        self.machine = EventMachine::new(self.motion.events.clone());
    }

    fn report(&self, event: CameraEvent) {
        if self.events.blocking_send(event).is_err() {
            // Only at shutdown: `closing()` sees it and the camera stops.
            tracing::debug!("the agent has stopped listening to the camera");
        }
    }
}
