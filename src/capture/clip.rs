//! Writes a clip's H.264 access units into an MP4 (`appsrc ! mp4mux ! filesink`) as they come,
//! so a long event never sits in memory, and finishes it atomically: `<id>.mp4.partial` is
//! renamed to `<id>.mp4` only once the muxer has written its index and the file is synced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::warn;

use super::elements::{make, pipeline_error};
use super::CaptureError;

pub const PARTIAL: &str = "partial";

/// A finished clip on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFile {
    pub id: String,
    pub path: PathBuf,
    pub bytes: u64,
    pub duration: Duration,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

pub struct ClipWriter {
    id: String,
    dir: PathBuf,
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    /// Decode time of the first unit: the clip's zero.
    base: Option<gst::ClockTime>,
    /// Presentation span so far, for the clip's duration.
    first: Option<gst::ClockTime>,
    end: gst::ClockTime,
}

impl ClipWriter {
    /// Starts `dir/<id>.mp4.partial` for H.264 of `caps` (avc, au-aligned).
    pub fn open(dir: &Path, id: &str, caps: &gst::Caps) -> Result<Self, CaptureError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| CaptureError::Storage(format!("{}: {e}", dir.display())))?;
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .caps(caps)
            .format(gst::Format::Time)
            .max_bytes(0)
            .block(false)
            .build();
        let mux = make("mp4mux")?;
        let sink = make("filesink")?;
        let partial = dir.join(format!("{id}.mp4.{PARTIAL}"));
        sink.set_property("location", partial.to_string_lossy().as_ref());
        pipeline
            .add_many([src.upcast_ref(), &mux, &sink])
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
            .map_err(|_| CaptureError::Storage(format!("cannot write {}", partial.display())))?;
        Ok(Self {
            id: id.to_owned(),
            dir: dir.to_owned(),
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

    /// Ends the stream, waits for the muxer to finish the file, syncs and renames it.
    /// Blocks: call it off the streaming path.
    pub fn finish(self) -> Result<ClipFile, CaptureError> {
        let partial = self.dir.join(format!("{}.mp4.{PARTIAL}", self.id));
        let result = self.drain();
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Err(e) = result {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        let path = self.dir.join(format!("{}.mp4", self.id));
        let storage = |e: std::io::Error| CaptureError::Storage(format!("{}: {e}", path.display()));
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(storage)?;
        std::fs::rename(&partial, &path).map_err(storage)?;
        crate::durable::sync_dir(&self.dir).map_err(storage)?;
        let (bytes, sha256) = sha256_file(&path).map_err(storage)?;
        Ok(ClipFile {
            id: self.id,
            path,
            bytes,
            duration: Duration::from_nanos(
                self.end
                    .saturating_sub(self.first.unwrap_or(gst::ClockTime::ZERO))
                    .nseconds(),
            ),
            sha256,
        })
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

/// Removes clips a crash left unfinished (an MP4 without its index does not play).
pub fn remove_partials(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == PARTIAL) {
            warn!(file = %path.display(), "removing a clip left unfinished by a crash");
            if let Err(e) = std::fs::remove_file(&path) {
                warn!(file = %path.display(), "cannot remove: {e}");
            }
        }
    }
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
