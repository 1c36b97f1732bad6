//! Fragmented MP4, the clips' format: [`mux`] writes it; [`scan`] reads its layout back, where
//! the init segment and each complete fragment end and the media time they cover. A clip is
//! streamed, and after a crash cut back, by these pieces. Only box headers, `moov` and `moof`
//! are read; the media (`mdat`) is skipped.

pub mod mux;

use std::io::{self, Read, Seek, SeekFrom};
use std::time::Duration;

/// The complete part of a fragmented MP4.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// Where each complete piece ends: the init segment (`ftyp`, `moov`), then each fragment
    /// (`moof` and its `mdat`).
    pub pieces: Vec<u64>,
    /// Media time the complete fragments cover.
    pub duration: Duration,
}

impl Layout {
    /// Where the complete part ends: everything before plays.
    pub fn complete(&self) -> u64 {
        self.pieces.last().copied().unwrap_or(0)
    }

    /// Complete fragments (pieces past the init segment).
    pub fn fragments(&self) -> usize {
        self.pieces.len().saturating_sub(1)
    }
}

/// A `moof` larger than this is not one our muxer wrote.
const MOOF_MAX: u64 = 1 << 20;

/// Scans the first `len` bytes of `file`.
pub fn scan<R: Read + Seek>(file: &mut R, len: u64) -> io::Result<Layout> {
    let mut layout = Layout::default();
    let mut track = Track::default();
    let mut moov = false;
    // The fragment whose `mdat` is awaited, and the media time span of the complete ones.
    let mut open: Option<(u64, u64)> = None;
    let mut span: Option<(u64, u64)> = None;
    let mut at = 0;
    while let Some((kind, body, end)) = next_box(file, at, len)? {
        match &kind {
            b"moov" => {
                track = Track::from_moov(&read_body(file, body, end, MOOF_MAX)?);
                moov = true;
            }
            b"moof" if moov => {
                if layout.pieces.is_empty() {
                    layout.pieces.push(at);
                }
                open = track.fragment_times(&read_body(file, body, end, MOOF_MAX)?);
            }
            b"mdat" => {
                if let Some((start, stop)) = open.take() {
                    layout.pieces.push(end);
                    span = Some(span.map_or((start, stop), |(first, _)| (first, stop)));
                }
            }
            _ => {}
        }
        at = end;
    }
    if let Some((first, last)) = span {
        let nanos = u128::from(last.saturating_sub(first)) * 1_000_000_000
            / u128::from(track.timescale.max(1));
        layout.duration = Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64);
    }
    Ok(layout)
}

/// The next complete top-level box at `at`: its type, where its body starts and where it
/// ends. `None` at the end of the complete part.
fn next_box<R: Read + Seek>(
    file: &mut R,
    at: u64,
    len: u64,
) -> io::Result<Option<([u8; 4], u64, u64)>> {
    if at + 8 > len {
        return Ok(None);
    }
    let mut head = [0u8; 16];
    file.seek(SeekFrom::Start(at))?;
    let avail = (len - at).min(16) as usize;
    file.read_exact(&mut head[..avail])?;
    let size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
    let kind = [head[4], head[5], head[6], head[7]];
    let (size, body) = match size {
        1 if avail == 16 => (
            u64::from_be_bytes(head[8..16].try_into().unwrap_or_default()),
            16,
        ),
        // Runs to the end of the file (still being written) or is damaged: not complete.
        0 | 1 => return Ok(None),
        size => (size, 8),
    };
    if size < body || at + size > len {
        return Ok(None);
    }
    Ok(Some((kind, at + body, at + size)))
}

fn read_body<R: Read + Seek>(file: &mut R, body: u64, end: u64, max: u64) -> io::Result<Vec<u8>> {
    if end - body > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "box too large"));
    }
    let mut buf = vec![0; (end - body) as usize];
    file.seek(SeekFrom::Start(body))?;
    file.read_exact(&mut buf)?;
    Ok(buf)
}

/// What the init segment says about timing.
#[derive(Debug, Default)]
struct Track {
    timescale: u32,
    /// `trex`'s default sample duration.
    default_duration: u32,
}

impl Track {
    fn from_moov(moov: &[u8]) -> Self {
        let mdhd = find(moov, &[b"trak", b"mdia", b"mdhd"]);
        let timescale = mdhd.and_then(|b| match b.first() {
            Some(1) => be32(b, 20),
            _ => be32(b, 12),
        });
        let trex = find(moov, &[b"mvex", b"trex"]);
        Self {
            timescale: timescale.unwrap_or(0),
            default_duration: trex.and_then(|b| be32(b, 12)).unwrap_or(0),
        }
    }

    /// The media time span of the fragment whose `moof` body is `moof`: its decode time and
    /// that plus its samples' durations.
    fn fragment_times(&self, moof: &[u8]) -> Option<(u64, u64)> {
        let traf = find(moof, &[b"traf"])?;
        let start = match find(traf, &[b"tfdt"]) {
            Some(b) if b.first() == Some(&1) => be64(b, 4)?,
            Some(b) => u64::from(be32(b, 4)?),
            None => 0,
        };
        let tfhd = find(traf, &[b"tfhd"])?;
        let tfhd_flags = be32(tfhd, 0)? & 0x00ff_ffff;
        let mut default = self.default_duration;
        if tfhd_flags & 0x08 != 0 {
            let at = 8
                + if tfhd_flags & 0x01 != 0 { 8 } else { 0 }
                + if tfhd_flags & 0x02 != 0 { 4 } else { 0 };
            default = be32(tfhd, at)?;
        }
        let mut total = 0u64;
        for trun in children(traf).filter(|(k, _)| k == b"trun").map(|(_, b)| b) {
            let flags = be32(trun, 0)? & 0x00ff_ffff;
            let count = be32(trun, 4)? as usize;
            let mut at = 8;
            at += if flags & 0x01 != 0 { 4 } else { 0 };
            at += if flags & 0x04 != 0 { 4 } else { 0 };
            let per_sample = [0x100, 0x200, 0x400, 0x800]
                .iter()
                .filter(|&&f| flags & f != 0)
                .count()
                * 4;
            if flags & 0x100 == 0 {
                total += count as u64 * u64::from(default);
                continue;
            }
            for i in 0..count {
                total += u64::from(be32(trun, at + i * per_sample)?);
            }
        }
        Some((start, start + total))
    }
}

/// The child boxes of a box body.
fn children(body: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let size = be32(body, at)? as usize;
        let kind: [u8; 4] = body.get(at + 4..at + 8)?.try_into().ok()?;
        if size < 8 {
            return None;
        }
        let child = body.get(at + 8..at + size)?;
        at += size;
        Some((kind, child))
    })
}

/// The body of the box at `path` below `body`; full boxes keep their version and flags.
fn find<'a>(body: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    let (first, rest) = path.split_first()?;
    let (_, child) = children(body).find(|(k, _)| k == *first)?;
    if rest.is_empty() {
        Some(child)
    } else {
        find(child, rest)
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn boxed(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(version_flags: u32, rest: &[u8]) -> Vec<u8> {
        let mut out = version_flags.to_be_bytes().to_vec();
        out.extend_from_slice(rest);
        out
    }

    /// `ftyp`, a `moov` at timescale 1000, then fragments of `samples` samples of 100 each.
    fn file(fragments: &[u32]) -> Vec<u8> {
        let mut mdhd = vec![0u8; 8];
        mdhd.extend_from_slice(&1000u32.to_be_bytes());
        mdhd.extend_from_slice(&[0; 8]);
        let trak = boxed(b"trak", &boxed(b"mdia", &boxed(b"mdhd", &full(0, &mdhd))));
        let mut out = boxed(b"ftyp", b"isom");
        out.extend(boxed(b"moov", &trak));
        let mut time = 0u64;
        for &samples in fragments {
            let mut trun = samples.to_be_bytes().to_vec();
            for _ in 0..samples {
                trun.extend_from_slice(&100u32.to_be_bytes());
                trun.extend_from_slice(&5u32.to_be_bytes());
            }
            let traf = [
                boxed(b"tfhd", &full(0, &1u32.to_be_bytes())),
                boxed(b"tfdt", &full(1 << 24, &time.to_be_bytes())),
                boxed(b"trun", &full(0x300, &trun)),
            ]
            .concat();
            out.extend(boxed(b"moof", &boxed(b"traf", &traf)));
            out.extend(boxed(b"mdat", &vec![0; samples as usize * 5]));
            time += u64::from(samples) * 100;
        }
        out
    }

    fn scan_all(bytes: &[u8]) -> Layout {
        scan(&mut Cursor::new(bytes), bytes.len() as u64).unwrap()
    }

    #[test]
    fn pieces_end_where_the_init_segment_and_each_fragment_end() {
        let bytes = file(&[10, 5]);
        let layout = scan_all(&bytes);
        assert_eq!(layout.fragments(), 2);
        assert_eq!(layout.complete(), bytes.len() as u64);
        assert_eq!(layout.duration, Duration::from_millis(1500));
        let init = layout.pieces[0] as usize;
        assert_eq!(&bytes[init + 4..init + 8], b"moof");
    }

    #[test]
    fn a_torn_tail_is_left_out_at_every_cut() {
        let bytes = file(&[10, 5, 7]);
        let whole = scan_all(&bytes);
        for cut in 0..bytes.len() {
            let layout = scan_all(&bytes[..cut]);
            assert!(layout.complete() <= cut as u64, "{cut}");
            assert!(whole.pieces.starts_with(&layout.pieces), "{cut}");
            if cut < whole.pieces[0] as usize {
                assert!(layout.pieces.is_empty(), "no fragment, no init: {cut}");
            }
        }
    }

    #[test]
    fn garbage_is_no_layout_and_no_panic() {
        for bytes in [vec![0xff; 64], vec![0; 64], b"\0\0\0\x01mdat".to_vec()] {
            assert_eq!(scan_all(&bytes).complete(), 0);
        }
    }
}
