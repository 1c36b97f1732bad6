//! The clip thread: a clip's slow disk work off the camera thread (which only appends each
//! fragment to the page cache). While a clip records, it makes the fragments written so far
//! durable and reports them, so they can stream out; when the clip ends, it writes the last
//! fragment, syncs and hashes the clip, and reports it. At start it adopts the clips a crash
//! or a stop left behind. One thread for the camera's life, joined when the camera stops, so
//! a shutdown never leaves a clip half-done.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::camera::CameraEvent;
use super::clip::{self, ClipFile, ClipWriter};
use super::fmp4;
use crate::clip_marker::{self, Marker};
use crate::report::Chain;

/// Jobs waiting. Past it the camera waits to hand over a clip (a clip is never dropped); a
/// sync that finds no room is skipped, the next one covers it.
const BACKLOG: usize = 2;

enum Job {
    /// Make clip `id`'s new fragments durable and report them.
    Sync {
        id: String,
        path: PathBuf,
        event_ids: Vec<String>,
    },
    Finish {
        event_ids: Vec<String>,
        writer: ClipWriter,
    },
}

pub(super) struct Finisher {
    jobs: Option<std_mpsc::SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    events: mpsc::Sender<CameraEvent>,
}

impl Finisher {
    /// Starts the thread; it first adopts what is left in `dir`.
    pub(super) fn spawn(dir: PathBuf, events: mpsc::Sender<CameraEvent>) -> std::io::Result<Self> {
        let (jobs, queue) = std_mpsc::sync_channel::<Job>(BACKLOG);
        let reports = events.clone();
        let thread = std::thread::Builder::new()
            .name("clip".into())
            .spawn(move || {
                for (event_ids, clip) in clip::adopt(&dir) {
                    warn!(clip = %clip.id, cut_short = clip.cut_short, "adopting a clip left behind");
                    report(event_ids, clip, &reports);
                }
                let mut synced = Synced::default();
                for job in queue {
                    match job {
                        Job::Sync {
                            id,
                            path,
                            event_ids,
                        } => synced.sync(&dir, id, &path, event_ids, &reports),
                        Job::Finish { event_ids, writer } => finish(event_ids, writer, &reports),
                    }
                }
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
            events,
        })
    }

    /// Asks for the fragments `writer` wrote so far to be made durable and reported, unless
    /// the thread is busy.
    pub(super) fn sync(&self, writer: &ClipWriter, event_ids: &[String]) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.try_send(Job::Sync {
                id: writer.id().to_owned(),
                path: writer.path().to_owned(),
                event_ids: event_ids.to_vec(),
            });
        }
    }

    /// Hands `writer` over to be finished; the clip covers `event_ids`. Should the finisher
    /// be gone, the clip is finished here and now rather than lost.
    pub(super) fn finish(&self, event_ids: Vec<String>, writer: ClipWriter) {
        let job = Job::Finish { event_ids, writer };
        let unfinished = match &self.jobs {
            Some(jobs) => jobs.send(job).err().map(|std_mpsc::SendError(job)| job),
            None => Some(job),
        };
        if let Some(Job::Finish { event_ids, writer }) = unfinished {
            warn!(
                clip = writer.id(),
                "the clip finisher has stopped; finishing the clip on the camera thread"
            );
            finish(event_ids, writer, &self.events);
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

/// What was last reported of the clip being recorded.
#[derive(Default)]
struct Synced {
    id: String,
    complete: u64,
    event_ids: Vec<String>,
    /// A sync of this clip failed (said once per clip).
    failed: bool,
}

impl Synced {
    /// Makes the whole fragments of clip `id` durable — the marker first when events joined —
    /// and reports them when there are new ones.
    fn sync(
        &mut self,
        dir: &Path,
        id: String,
        path: &Path,
        event_ids: Vec<String>,
        events: &mpsc::Sender<CameraEvent>,
    ) {
        if self.id != id {
            *self = Self {
                id,
                ..Self::default()
            };
        }
        let result = (|| {
            if event_ids != self.event_ids {
                let marker = Marker {
                    event_ids: event_ids.clone(),
                    finished_ms: None,
                };
                clip_marker::write(dir, &self.id, &marker)?;
                self.event_ids = event_ids;
            }
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            let layout = fmp4::scan(&mut std::io::BufReader::new(&file), len)?;
            if layout.fragments() == 0 || layout.complete() <= self.complete {
                return Ok(None);
            }
            file.sync_data()?;
            Ok::<_, std::io::Error>(Some(layout))
        })();
        match result {
            Ok(Some(layout)) => {
                self.complete = layout.complete();
                let grew = CameraEvent::ClipGrew {
                    clip_id: self.id.clone(),
                    event_ids: self.event_ids.clone(),
                    fragments: layout.pieces,
                };
                let _ = events.blocking_send(grew);
            }
            Ok(None) => {}
            // The clip streams from its next sync, or whole once finished.
            Err(e) if !self.failed => {
                self.failed = true;
                warn!(clip = %self.id, file = %path.display(), "clip fragments not synced: {e}");
            }
            Err(_) => {}
        }
    }
}

fn finish(event_ids: Vec<String>, writer: ClipWriter, events: &mpsc::Sender<CameraEvent>) {
    match writer.finish(&event_ids) {
        Ok(clip) => {
            info!(clip = %clip.id, bytes = clip.bytes, seconds = clip.duration.as_secs_f32(), "clip ready");
            report(event_ids, clip, events);
        }
        Err(e) => warn!("clip lost: {}", Chain(&e)),
    }
}

fn report(event_ids: Vec<String>, clip: ClipFile, events: &mpsc::Sender<CameraEvent>) {
    let id = clip.id.clone();
    if events
        .blocking_send(CameraEvent::ClipReady { event_ids, clip })
        .is_err()
    {
        warn!(clip = %id, "the agent has stopped; the clip stays on disk, adopted at the next start");
    }
}
