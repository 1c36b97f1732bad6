//! Finishes clips off the camera thread — the muxer writes its index, the file is synced and
//! hashed — one at a time and in order, and reports each to the agent. One thread for the
//! camera's life, joined when the camera stops, so a shutdown never leaves a clip half-done.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::camera::CameraEvent;
use super::clip::ClipWriter;
use crate::report::Chain;

/// Clips waiting to be finished. Past it the camera waits for room: a clip is never dropped.
const BACKLOG: usize = 2;

struct Job {
    event_ids: Vec<String>,
    writer: ClipWriter,
}

pub(super) struct Finisher {
    jobs: Option<std_mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    events: mpsc::Sender<CameraEvent>,
}

impl Finisher {
    pub(super) fn spawn(events: mpsc::Sender<CameraEvent>) -> std::io::Result<Self> {
        let (jobs, queue) = std_mpsc::sync_channel::<Job>(BACKLOG);
        let reports = events.clone();
        let thread = std::thread::Builder::new()
            .name("clip".into())
            .spawn(move || {
                for job in queue {
                    finish(job, &reports);
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
            events,
        })
    }

    /// Hands `writer` over to be finished; the clip covers `event_ids`. Should the finisher
    /// be gone, the clip is finished here and now rather than lost.
    pub(super) fn finish(&self, event_ids: Vec<String>, writer: ClipWriter) {
        let job = Job { event_ids, writer };
        let unfinished = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|std_mpsc::SendError(job)| job),
            None => Some(job),
        };
        if let Some(job) = unfinished {
            warn!(
                clip = job.writer.id(),
                "the clip finisher has stopped; finishing the clip on the camera thread"
            );
            finish(job, &self.events);
        }
    }

    /// Waits until every clip handed over is finished and reported.
    pub(super) fn join(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the clip finisher stopped abnormally");
            }
        }
    }
}

fn finish(job: Job, events: &mpsc::Sender<CameraEvent>) {
    match job.writer.finish() {
        Ok(clip) => {
            info!(clip = %clip.id, bytes = clip.bytes, seconds = clip.duration.as_secs_f32(), "clip ready");
            let id = clip.id.clone();
            let ready = CameraEvent::ClipReady {
                event_ids: job.event_ids,
                clip,
            };
            if events.blocking_send(ready).is_err() {
                warn!(clip = %id, "the agent has stopped; the clip stays on disk, not queued");
            }
        }
        Err(e) => warn!("clip lost: {}", Chain(&e)),
    }
}
