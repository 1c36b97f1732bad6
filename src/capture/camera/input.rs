//! What the pipeline's sinks hand the camera thread, and the clocks their samples carry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::capture::pipeline::{Graph, Stream};
use crate::capture::CaptureError;

/// What the pipeline's sinks hand the camera thread.
pub(super) enum Input {
    /// An access unit of one of the camera's streams.
    Unit(Stream, gst::Sample),
    /// A stream's units ended (the stream did).
    UnitsEnded(Stream),
    Frame(gst::Sample),
}

/// Whether the detector's decoder (when it decodes on demand) takes `stream`'s units.
pub(super) fn decoded(stream: Stream, graph: &Graph) -> bool {
    stream == Stream::Detection || !graph.detection
}

/// Samples between the pipeline and the camera thread.
pub(super) const INPUT_BACKLOG: usize = 64;

/// Wires the sinks, and the camera's feeds, to the camera thread. Units are never dropped
/// (recording must be whole): when the camera thread is [`INPUT_BACKLOG`] behind, the
/// pipeline (or the feed) waits for it. Frames are dropped when analysis is behind by two,
/// or when the channel is full.
pub(super) fn connect(
    graph: &mut Graph,
    tx: std_mpsc::SyncSender<Input>,
    pending: Arc<AtomicUsize>,
) -> Result<(), CaptureError> {
    if let Some(units) = &graph.units {
        connect_units(units, Stream::Main, &tx);
    }
    if let Some(detection) = &graph.detect_units {
        connect_units(detection, Stream::Detection, &tx);
    }
    let units = tx.clone();
    graph.start_feeds(move |stream, sample| units.send(Input::Unit(stream, sample)).is_ok())?;
    let queued = pending.clone();
    graph.frames.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if queued.fetch_add(1, Ordering::SeqCst) < 2 {
                    match tx.try_send(Input::Frame(sample)) {
                        Ok(()) => return Ok(gst::FlowSuccess::Ok),
                        Err(std_mpsc::TrySendError::Full(_)) => {}
                        Err(std_mpsc::TrySendError::Disconnected(_)) => {
                            return Err(gst::FlowError::Flushing)
                        }
                    }
                }
                queued.fetch_sub(1, Ordering::SeqCst);
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// Units from `sink`, and their end, go to the camera as `stream`'s.
fn connect_units(sink: &gst_app::AppSink, stream: Stream, tx: &std_mpsc::SyncSender<Input>) {
    let units = tx.clone();
    let ended = tx.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .eos(move |_| {
                let _ = ended.send(Input::UnitsEnded(stream));
            })
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                units
                    .send(Input::Unit(stream, sample))
                    .map_err(|_| gst::FlowError::Flushing)?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// `time` on the pipeline's clock (running time), by the segment the sample came in.
pub(super) fn running_time(sample: &gst::Sample, time: Option<gst::ClockTime>) -> Duration {
    let running = sample
        .segment()
        .and_then(|s| s.downcast_ref::<gst::ClockTime>())
        .zip(time)
        .and_then(|(segment, time)| segment.to_running_time(time));
    running.or(time).map_or(Duration::ZERO, Duration::from)
}

/// The wall-clock time at which the frame with running time `pts` was captured.
pub(super) fn captured_ms(graph: &Graph, pts: Duration) -> u64 {
    let now = crate::record::now_ms();
    let (Some(clock), Some(base)) = (graph.pipeline.clock(), graph.pipeline.base_time()) else {
        return now;
    };
    let running = clock.time().saturating_sub(base);
    let age = Duration::from(running).saturating_sub(pts);
    now.saturating_sub(age.as_millis() as u64)
}
