//! Writes a clip's H.264 access units as fragmented MP4 (`appsrc ! mp4mux ! appsink`, the
//! file written here) as they come, so a long event never sits in memory and the clip can
//! stream out while it is recorded: the file only ever grows, each fragment is a group of
//! pictures, and a crash leaves every fragment written before it playable. A marker beside
//! the clip names its events until the clip is queued (see [`crate::clip_marker`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::warn;

use super::elements::{make, pipeline_error};
use super::{fmp4, CaptureError};
use crate::clip_marker::{self, Marker};

/// Clips of earlier versions, written whole and renamed when done.
const LEGACY_PARTIAL: &str = "partial";
/// The longest fragment: the muxer also starts one at every keyframe, so with the usual
/// keyframe intervals each fragment is one group of pictures.
const FRAGMENT_MAX_MS: u32 = 4000;
/// How often the clip's new fragments are made durable and handed to the uploader.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);

/// A finished clip on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFile {
    pub id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub duration: Duration,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
    /// Where the init segment and each fragment end ([`fmp4::Layout::pieces`]).
    pub fragments: Vec<u64>,
    /// A crash or power cut ended the recording: the clip ends at its last whole fragment.
    pub cut_short: bool,
}

pub struct ClipWriter {
    id: String,
    dir: PathBuf,
    path: PathBuf,
    /// When the clip's fragments were last handed to be made durable.
    synced: Instant,
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    /// Decode time of the first unit: the clip's zero.
    base: Option<gst::ClockTime>,
    /// Presentation span so far, for the clip's duration.
    first: Option<gst::ClockTime>,
    end: gst::ClockTime,
}

impl ClipWriter {
    /// Starts `dir/<id>.mp4` for H.264 of `caps` (avc, au-aligned), marked as covering
    /// `event_ids`.
    pub fn open(
        dir: &Path,
        id: &str,
        caps: &gst::Caps,
        event_ids: &[String],
    ) -> Result<Self, CaptureError> {
        let storage = |e: std::io::Error| CaptureError::Storage(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(storage)?;
        let marker = Marker {
            event_ids: event_ids.to_vec(),
            finished_ms: None,
        };
        clip_marker::write(dir, id, &marker).map_err(storage)?;
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .caps(caps)
            .format(gst::Format::Time)
            .max_bytes(0)
            .block(false)
            .build();
        let mux = make("mp4mux")?;
        mux.set_property("fragment-duration", FRAGMENT_MAX_MS);
        mux.set_property("streamable", true);
        let path = dir.join(format!("{id}.mp4"));
        let sink = appending_sink(&path).map_err(storage)?;
        pipeline
            .add_many([src.upcast_ref(), &mux, sink.upcast_ref()])
            .map_err(pipeline_error)?;
        // Asked for by name: left to itself, linking may pick the muxer's audio pad.
        let video = mux
            .request_pad_simple("video_%u")
            .ok_or_else(|| CaptureError::Pipeline("mp4mux has no video pad".into()))?;
        let src_pad = src
            .static_pad("src")
            .ok_or_else(|| CaptureError::Pipeline("appsrc has no src pad".into()))?;
        src_pad.link(&video).map_err(pipeline_error)?;
        mux.link(&sink).map_err(pipeline_error)?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| CaptureError::Storage(format!("cannot write {}", path.display())))?;
        Ok(Self {
            id: id.to_owned(),
            dir: dir.to_owned(),
            path,
            synced: Instant::now(),
            pipeline,
            src,
            base: None,
            first: None,
            end: gst::ClockTime::ZERO,
        })
    }

    /// Appends one access unit, its timestamps moved so the clip starts at zero.
    pub fn write(&mut self, sample: &gst::Sample) -> Result<(), CaptureError> {
        let Some(buffer) = sample.buffer() else {
            return Ok(());
        };
        let time = |b: &gst::BufferRef| b.dts_or_pts().unwrap_or(gst::ClockTime::ZERO);
        let base = *self.base.get_or_insert(time(buffer));
        let mut unit = buffer.copy();
        {
            let unit = unit.make_mut();
            unit.set_pts(buffer.pts().map(|t| t.saturating_sub(base)));
            unit.set_dts(buffer.dts().map(|t| t.saturating_sub(base)));
            if let Some(pts) = unit.pts() {
                self.first = Some(self.first.map_or(pts, |f| f.min(pts)));
                self.end = self
                    .end
                    .max(pts + buffer.duration().unwrap_or(gst::ClockTime::ZERO));
            }
        }
        self.src
            .push_buffer(unit)
            .map(|_| ())
            .map_err(|e| CaptureError::Storage(format!("clip {}: {e:?}", self.id)))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the clip's new fragments are due to be made durable and handed on; `true`
    /// once per [`SYNC_EVERY`].
    pub fn sync_due(&mut self) -> bool {
        let due = self.synced.elapsed() >= SYNC_EVERY;
        if due {
            self.synced = Instant::now();
        }
        due
    }

    /// Ends the stream, waits for the muxer to finish the file, syncs it and marks it
    /// finished, covering `event_ids`. A clip with no video is deleted. Blocks: call it off
    /// the streaming path.
    pub fn finish(self, event_ids: &[String]) -> Result<ClipFile, CaptureError> {
        let result = self.drain();
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Err(e) = result {
            discard(&self.dir, &self.id, &self.path);
            return Err(e);
        }
        let duration = Duration::from_nanos(
            self.end
                .saturating_sub(self.first.unwrap_or(gst::ClockTime::ZERO))
                .nseconds(),
        );
        let clip = seal(&self.dir, &self.id, &self.path, Some(duration))?;
        let marker = Marker {
            event_ids: event_ids.to_vec(),
            finished_ms: Some(duration.as_millis() as u64),
        };
        clip_marker::write(&self.dir, &self.id, &marker)
            .map_err(|e| CaptureError::Storage(format!("clip {}: {e}", self.id)))?;
        Ok(clip)
    }

    fn drain(&self) -> Result<(), CaptureError> {
        if self.base.is_none() {
            return Err(CaptureError::Storage(format!(
                "clip {} has no video",
                self.id
            )));
        }
        let _ = self.src.end_of_stream();
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| CaptureError::Pipeline("clip pipeline without a bus".into()))?;
        let done = bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        );
        match done.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Eos(_)) => Ok(()),
            Some(gst::MessageView::Error(e)) => Err(CaptureError::Storage(format!(
                "clip {}: {}",
                self.id,
                e.error()
            ))),
            _ => Err(CaptureError::Storage(format!(
                "clip {}: the muxer did not finish in 30 s",
                self.id
            ))),
        }
    }
}

/// A sink that appends what the muxer writes to a new file at `path`, except the muxer's
/// closing rewrite of its header (unchanged in a streamable file but for its position): the
/// file only grows, so what was sent of it while recording is what the finished clip holds.
/// The muxer goes back only through a new segment that starts past zero.
fn appending_sink(path: &Path) -> std::io::Result<gst_app::AppSink> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    let sink = gst_app::AppSink::builder().sync(false).build();
    let path = path.to_owned();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let rewrite = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::format::Bytes>())
                    .and_then(|s| s.start())
                    .is_some_and(|start| *start > 0);
                let Some(buffer) = sample.buffer().filter(|_| !rewrite) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                file.write_all(&map).map_err(|e| {
                    warn!(file = %path.display(), "clip not written: {e}");
                    gst::FlowError::Error
                })?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(sink)
}

/// Syncs clip `id` at `path`, cut back to its last whole fragment, and describes it.
/// `finished` is its duration when it was finished; without it the recording was cut short,
/// and the duration is read from the fragments.
fn seal(
    dir: &Path,
    id: &str,
    path: &Path,
    finished: Option<Duration>,
) -> Result<ClipFile, CaptureError> {
    let storage = |e: std::io::Error| CaptureError::Storage(format!("{}: {e}", path.display()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(storage)?;
    let len = file.metadata().map_err(storage)?.len();
    let layout = fmp4::scan(&mut std::io::BufReader::new(&file), len).map_err(storage)?;
    if layout.fragments() == 0 {
        discard(dir, id, path);
        return Err(CaptureError::Storage(format!(
            "clip {id}: no fragment of it was written"
        )));
    }
    if layout.complete() < len {
        file.set_len(layout.complete()).map_err(storage)?;
    }
    file.sync_all().map_err(storage)?;
    let (bytes, sha256) = sha256_file(path).map_err(storage)?;
    Ok(ClipFile {
        id: id.to_owned(),
        path: path.to_owned(),
        bytes,
        duration: finished.unwrap_or(layout.duration),
        sha256,
        fragments: layout.pieces,
        cut_short: finished.is_none(),
    })
}

fn discard(dir: &Path, id: &str, path: &Path) {
    for file in [path.to_owned(), clip_marker::path(dir, id)] {
        if let Err(e) = std::fs::remove_file(&file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(file = %file.display(), "cannot remove: {e}");
            }
        }
    }
}

/// The clips a crash, a power cut or a stop before they were queued left in `dir`, each
/// with the events it covers: cut back to their last whole fragment where the recording was
/// cut short. Clips of earlier versions, never finished, are removed.
pub fn adopt(dir: &Path) -> Vec<(Vec<String>, ClipFile)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut adopted = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        let Some(ext) = path.extension() else {
            continue;
        };
        if ext == LEGACY_PARTIAL {
            warn!(file = %path.display(), "removing a clip an earlier version left unfinished");
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(file = %path.display(), "cannot remove: {e}");
            }
            continue;
        }
        if ext != clip_marker::EXTENSION {
            continue;
        }
        let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let marker = clip_marker::read(&path).unwrap_or_else(|e| {
            warn!(file = %path.display(), "clip marker unreadable ({e}): its clip goes without its event ids");
            Marker { event_ids: Vec::new(), finished_ms: None }
        });
        let media = dir.join(format!("{id}.mp4"));
        if !media.exists() {
            discard(dir, id, &media);
            continue;
        }
        let finished = marker.finished_ms.map(Duration::from_millis);
        match seal(dir, id, &media, finished) {
            Ok(clip) => adopted.push((marker.event_ids, clip)),
            Err(e) => warn!("clip left behind is lost: {e}"),
        }
    }
    adopted
}

fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        context.update(&buf[..n]);
    }
    Ok((bytes, crate::hex::encode(context.finish().as_ref())))
}
