//! Writes a clip's H.264 access units as fragmented MP4 as they come, so a long event never
//! sits in memory and the clip can stream out while it is recorded: the file only ever grows,
//! each fragment is a group of pictures, and a crash leaves every fragment written before it
//! playable. The muxer is the agent's own ([`fmp4::mux`]): GStreamer's would cost a pipeline
//! per clip and, on a camera that records what it encodes, two libraries (0.4 MiB) mapped for
//! nothing else. A fragment is written to the page cache from the camera thread as its next
//! keyframe arrives; the clip thread makes it durable. A marker beside the clip names its
//! events until the clip is queued (see [`crate::clip_marker`]).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gstreamer as gst;
use tracing::warn;

use super::fmp4::{self, mux};
use super::CaptureError;
use crate::clip_marker::{self, Marker};

/// Clips of earlier versions, written whole and renamed when done.
const LEGACY_PARTIAL: &str = "partial";
/// The longest fragment: one also starts at every keyframe, so with the usual keyframe
/// intervals each fragment is one group of pictures.
const FRAGMENT_MAX: u64 = 4 * mux::TIMESCALE as u64;
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
    file: File,
    /// The stream's caps the init segment was made from.
    caps: gst::Caps,
    /// Fragments written.
    written: u32,
    /// The pictures of the fragment being gathered, in decode order.
    pending: Vec<Picture>,
    /// Decode time of the first unit: the clip's zero.
    base: Option<gst::ClockTime>,
    /// Presentation span so far, for the clip's duration.
    first: Option<gst::ClockTime>,
    end: gst::ClockTime,
}

/// An access unit waiting for its fragment to be written; times in [`mux::TIMESCALE`] units
/// from the clip's zero.
struct Picture {
    buffer: gst::Buffer,
    decode: u64,
    composition_offset: u32,
    keyframe: bool,
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
        let init = init_segment(caps).ok_or_else(|| {
            CaptureError::Input(format!(
                "clip {id}: the stream's caps give no size or codec_data: {caps}"
            ))
        })?;
        std::fs::create_dir_all(dir).map_err(storage)?;
        let marker = Marker {
            event_ids: event_ids.to_vec(),
            finished_ms: None,
        };
        clip_marker::write(dir, id, &marker).map_err(storage)?;
        let path = dir.join(format!("{id}.mp4"));
        let mut file = File::create(&path).map_err(storage)?;
        file.write_all(&init).map_err(storage)?;
        Ok(Self {
            id: id.to_owned(),
            dir: dir.to_owned(),
            path,
            synced: Instant::now(),
            file,
            caps: caps.clone(),
            written: 0,
            pending: Vec::new(),
            base: None,
            first: None,
            end: gst::ClockTime::ZERO,
        })
    }

    /// Adds one access unit, its timestamps moved so the clip starts at zero; the fragment
    /// before it is written when it is a keyframe.
    pub fn write(&mut self, sample: &gst::Sample) -> Result<(), CaptureError> {
        let Some(buffer) = sample.buffer_owned() else {
            return Ok(());
        };
        let base = *self
            .base
            .get_or_insert(buffer.dts_or_pts().unwrap_or(gst::ClockTime::ZERO));
        let since = |t: gst::ClockTime| t.saturating_sub(base);
        let pts = buffer.pts().map(since);
        let dts = buffer.dts().map(since).or(pts).unwrap_or_default();
        if let Some(pts) = pts {
            self.first = Some(self.first.map_or(pts, |f| f.min(pts)));
            self.end = self.end.max(pts + buffer.duration().unwrap_or_default());
        }
        // Decode times never go back, and a picture is not shown before it is decoded.
        let last = self.pending.last().map_or(0, |p| p.decode);
        let decode = ticks(dts).max(last);
        let shown = pts.map_or(decode, ticks).max(decode);
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if let Some(start) = self.pending.first().map(|p| p.decode) {
            if keyframe || decode - start >= FRAGMENT_MAX {
                self.write_fragment(Some(decode))?;
            }
        }
        self.pending.push(Picture {
            buffer,
            decode,
            composition_offset: u32::try_from(shown - decode).unwrap_or(u32::MAX),
            keyframe,
        });
        Ok(())
    }

    /// Writes the gathered pictures as one fragment; `next` is the decode time of the picture
    /// after them, which ends the last one.
    fn write_fragment(&mut self, next: Option<u64>) -> Result<(), CaptureError> {
        let Some(last) = self.pending.last() else {
            return Ok(());
        };
        // The last picture lasts as its buffer says (nothing if it does not).
        let end =
            next.unwrap_or_else(|| last.decode + ticks(last.buffer.duration().unwrap_or_default()));
        let ends = self.pending.iter().skip(1).map(|p| p.decode).chain([end]);
        let samples: Vec<mux::Sample> = self
            .pending
            .iter()
            .zip(ends)
            .map(|(p, end)| mux::Sample {
                duration: u32::try_from(end - p.decode).unwrap_or(u32::MAX),
                size: p.buffer.size() as u32,
                composition_offset: p.composition_offset,
                keyframe: p.keyframe,
            })
            .collect();
        self.written += 1;
        let header = mux::fragment_header(self.written, self.pending[0].decode, &samples);
        let storage = |e: std::io::Error| CaptureError::Storage(format!("clip {}: {e}", self.id));
        self.file.write_all(&header).map_err(storage)?;
        for picture in self.pending.drain(..) {
            let map = picture
                .buffer
                .map_readable()
                .map_err(|_| CaptureError::Input(format!("clip {}: unreadable unit", self.id)))?;
            self.file.write_all(&map).map_err(storage)?;
        }
        Ok(())
    }

    /// Whether units of `caps` belong in this clip. A clip has one set of stream parameters
    /// (size, SPS and PPS), in its init segment: after the camera changes them, the event goes
    /// on in a clip of its own.
    pub fn takes(&self, caps: &gst::CapsRef) -> bool {
        caps.as_ptr() == self.caps.as_ptr() || init_segment(caps) == init_segment(&self.caps)
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

    /// Writes the last fragment, syncs the file and marks it finished, covering `event_ids`.
    /// A clip with no video is deleted. Blocks: call it off the streaming path.
    pub fn finish(mut self, event_ids: &[String]) -> Result<ClipFile, CaptureError> {
        let result = match self.base {
            None => Err(CaptureError::Storage(format!(
                "clip {} has no video",
                self.id
            ))),
            Some(_) => self.write_fragment(None),
        };
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
}

/// The init segment for H.264 of `caps`; `None` if they lack the size or the `avcC` record.
fn init_segment(caps: &gst::CapsRef) -> Option<Vec<u8>> {
    let s = caps.structure(0)?;
    let size = |field| s.get::<i32>(field).ok().and_then(|v| u16::try_from(v).ok());
    let avcc = s.get::<gst::Buffer>("codec_data").ok()?;
    let avcc = avcc.map_readable().ok()?;
    Some(mux::init_segment(&mux::Track {
        width: size("width")?,
        height: size("height")?,
        avcc: &avcc,
    }))
}

/// `time` in [`mux::TIMESCALE`] units, rounded.
fn ticks(time: gst::ClockTime) -> u64 {
    let units = u128::from(time.nseconds()) * u128::from(mux::TIMESCALE);
    ((units + 500_000_000) / 1_000_000_000) as u64
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h264(width: i32, sps: &[u8]) -> gst::Caps {
        let mut avcc = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, sps.len() as u8];
        avcc.extend_from_slice(sps);
        avcc.extend_from_slice(&[1, 0, 2, 0x68, 0xce]);
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("width", width)
            .field("height", 180)
            .field("codec_data", gst::Buffer::from_slice(avcc))
            .build()
    }

    #[test]
    fn a_clip_takes_units_of_its_own_parameters_only() {
        gst::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let caps = h264(320, &[0x67, 0x42, 0xc0, 0x1e]);
        let writer = ClipWriter::open(dir.path(), "c", &caps, &["e".into()]).unwrap();
        assert!(writer.takes(&caps));
        // The same parameters in caps of their own (a renegotiation that changed nothing).
        assert!(writer.takes(&h264(320, &[0x67, 0x42, 0xc0, 0x1e])));
        assert!(
            !writer.takes(&h264(640, &[0x67, 0x42, 0xc0, 0x1e])),
            "another size"
        );
        assert!(
            !writer.takes(&h264(320, &[0x67, 0x4d, 0x40, 0x1f])),
            "another SPS"
        );
    }
}
