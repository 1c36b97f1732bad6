//! Writes H.264 as fragmented MP4 (ISO/IEC 14496-12 and -15): an init segment, then one
//! fragment (`moof` and its `mdat`) per group of pictures. Only the headers are made here; the
//! caller writes each fragment's samples, as they are, after its header. No I/O, so it is
//! tested byte for byte and read back by [`super::scan`].

/// Media time units per second: the RTP clock's, fine enough for any frame rate.
pub const TIMESCALE: u32 = 90_000;

/// The one video track: its size and its `avcC` record (the caps' `codec_data`).
pub struct Track<'a> {
    pub width: u16,
    pub height: u16,
    pub avcc: &'a [u8],
}

/// One access unit of a fragment, in [`TIMESCALE`] units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub duration: u32,
    pub size: u32,
    /// Presentation time minus decode time (B-frames are shown after they are decoded).
    pub composition_offset: u32,
    pub keyframe: bool,
}

/// `ftyp` and `moov`: what a player needs before the first fragment.
pub fn init_segment(track: &Track) -> Vec<u8> {
    let mut out = Vec::with_capacity(700 + track.avcc.len());
    boxed(&mut out, b"ftyp", |b| {
        b.extend_from_slice(b"isom");
        b.extend_from_slice(&0x200u32.to_be_bytes());
        for brand in [b"isom", b"iso6", b"avc1", b"mp41"] {
            b.extend_from_slice(brand);
        }
    });
    boxed(&mut out, b"moov", |b| {
        full(b, b"mvhd", 0, |b| {
            b.extend_from_slice(&[0; 8]); // creation, modification
            put32(b, 1000); // timescale
            put32(b, 0); // duration: the fragments say
            put32(b, 0x0001_0000); // rate 1.0
            b.extend_from_slice(&0x0100u16.to_be_bytes()); // volume 1.0
            b.extend_from_slice(&[0; 10]);
            matrix(b);
            b.extend_from_slice(&[0; 24]);
            put32(b, 2); // next track id
        });
        boxed(b, b"trak", |b| {
            full(b, b"tkhd", 3, |b| {
                b.extend_from_slice(&[0; 8]);
                put32(b, 1); // track id
                put32(b, 0);
                put32(b, 0); // duration
                b.extend_from_slice(&[0; 16]); // reserved, layer, group, volume, reserved
                matrix(b);
                put32(b, u32::from(track.width) << 16);
                put32(b, u32::from(track.height) << 16);
            });
            boxed(b, b"mdia", |b| {
                full(b, b"mdhd", 0, |b| {
                    b.extend_from_slice(&[0; 8]);
                    put32(b, TIMESCALE);
                    put32(b, 0);
                    b.extend_from_slice(&0x55c4u16.to_be_bytes()); // language "und"
                    b.extend_from_slice(&[0; 2]);
                });
                full(b, b"hdlr", 0, |b| {
                    put32(b, 0);
                    b.extend_from_slice(b"vide");
                    b.extend_from_slice(&[0; 12]);
                    b.extend_from_slice(b"camagent\0");
                });
                boxed(b, b"minf", |b| {
                    full(b, b"vmhd", 1, |b| b.extend_from_slice(&[0; 8]));
                    boxed(b, b"dinf", |b| {
                        full(b, b"dref", 0, |b| {
                            put32(b, 1);
                            full(b, b"url ", 1, |_| {}); // the media is in this file
                        });
                    });
                    boxed(b, b"stbl", |b| {
                        full(b, b"stsd", 0, |b| {
                            put32(b, 1);
                            avc1(b, track);
                        });
                        // Empty: the samples are in the fragments.
                        full(b, b"stts", 0, |b| put32(b, 0));
                        full(b, b"stsc", 0, |b| put32(b, 0));
                        full(b, b"stsz", 0, |b| b.extend_from_slice(&[0; 8]));
                        full(b, b"stco", 0, |b| put32(b, 0));
                    });
                });
            });
        });
        boxed(b, b"mvex", |b| {
            full(b, b"trex", 0, |b| {
                put32(b, 1); // track id
                put32(b, 1); // sample description
                b.extend_from_slice(&[0; 12]); // defaults: each fragment gives its own
            });
        });
    });
    out
}

/// The header of fragment `sequence` (from 1) that starts at decode time `decode_time`: its
/// `moof` and the head of its `mdat`, which the samples' bytes, in order, complete.
pub fn fragment_header(sequence: u32, decode_time: u64, samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(120 + samples.len() * 16);
    boxed(&mut out, b"moof", |b| {
        full(b, b"mfhd", 0, |b| put32(b, sequence));
        boxed(b, b"traf", |b| {
            // Offsets count from the start of the `moof`.
            full(b, b"tfhd", 0x02_0000, |b| put32(b, 1));
            full(b, b"tfdt", 1 << 24, |b| {
                b.extend_from_slice(&decode_time.to_be_bytes())
            });
            // Data offset, then each sample's duration, size, flags, composition offset.
            full(b, b"trun", 0xf01, |b| {
                put32(b, samples.len() as u32);
                put32(b, 0); // the data offset, set below
                for s in samples {
                    put32(b, s.duration);
                    put32(b, s.size);
                    // A keyframe depends on nothing; any other picture is not a sync sample.
                    put32(b, if s.keyframe { 0x0200_0000 } else { 0x0101_0000 });
                    put32(b, s.composition_offset);
                }
            });
        });
    });
    // `moof` 8, `mfhd` 16, `traf` 8, `tfhd` 16, `tfdt` 20, then `trun`'s header and count.
    let data_offset = (out.len() + 8) as u32;
    out[84..88].copy_from_slice(&data_offset.to_be_bytes());
    let media: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    put32(&mut out, (media + 8) as u32);
    out.extend_from_slice(b"mdat");
    out
}

/// The `avc1` sample entry, which carries the `avcC` record.
fn avc1(b: &mut Vec<u8>, track: &Track) {
    boxed(b, b"avc1", |b| {
        b.extend_from_slice(&[0; 6]);
        b.extend_from_slice(&1u16.to_be_bytes()); // data reference
        b.extend_from_slice(&[0; 16]);
        b.extend_from_slice(&track.width.to_be_bytes());
        b.extend_from_slice(&track.height.to_be_bytes());
        put32(b, 0x0048_0000); // 72 dpi
        put32(b, 0x0048_0000);
        put32(b, 0);
        b.extend_from_slice(&1u16.to_be_bytes()); // frames per sample
        b.extend_from_slice(&[0; 32]); // compressor name
        b.extend_from_slice(&0x0018u16.to_be_bytes()); // depth
        b.extend_from_slice(&(-1i16).to_be_bytes());
        boxed(b, b"avcC", |b| b.extend_from_slice(track.avcc));
    });
}

/// The identity transform.
fn matrix(b: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        put32(b, v);
    }
}

fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}

/// Appends box `kind` with the body `body` writes.
fn boxed(out: &mut Vec<u8>, kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    let size = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Appends full box `kind`: version (the top byte of `version_flags`) and flags, then `body`.
fn full(out: &mut Vec<u8>, kind: &[u8; 4], version_flags: u32, body: impl FnOnce(&mut Vec<u8>)) {
    boxed(out, kind, |b| {
        put32(b, version_flags);
        body(b);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::time::Duration;

    const AVCC: &[u8] = &[
        1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 1, 0x68,
    ];

    /// A clip of `fragments`, each a keyframe then `n − 1` other pictures of 3000 ticks
    /// (30 fps), with the samples' bytes.
    fn clip(fragments: &[usize]) -> Vec<u8> {
        let mut out = init_segment(&Track {
            width: 640,
            height: 360,
            avcc: AVCC,
        });
        let mut time = 0;
        for (i, &n) in fragments.iter().enumerate() {
            let samples: Vec<Sample> = (0..n)
                .map(|k| Sample {
                    duration: 3000,
                    size: 10 + k as u32,
                    composition_offset: 3000,
                    keyframe: k == 0,
                })
                .collect();
            out.extend(fragment_header(i as u32 + 1, time, &samples));
            for s in &samples {
                out.extend(std::iter::repeat_n(0xab, s.size as usize));
            }
            time += 3000 * n as u64;
        }
        out
    }

    #[test]
    fn the_reader_finds_every_fragment_and_the_time_they_cover() {
        let bytes = clip(&[30, 30, 7]);
        let layout = super::super::scan(&mut Cursor::new(&bytes), bytes.len() as u64).unwrap();
        assert_eq!(layout.fragments(), 3);
        assert_eq!(layout.complete(), bytes.len() as u64);
        assert_eq!(
            layout.duration,
            Duration::from_nanos(67 * 3000 * 1_000_000_000 / 90_000)
        );
    }

    #[test]
    fn the_data_offset_points_at_the_first_sample() {
        let init = init_segment(&Track {
            width: 1,
            height: 1,
            avcc: AVCC,
        });
        let bytes = clip(&[3]);
        let moof = &bytes[init.len()..];
        let offset = u32::from_be_bytes(moof[84..88].try_into().unwrap()) as usize;
        assert_eq!(&moof[offset - 4..offset], b"mdat");
        assert_eq!(moof[offset], 0xab);
        assert_eq!(bytes.len() - init.len() - offset, 10 + 11 + 12);
    }

    #[test]
    fn the_init_segment_carries_the_size_and_the_avcc_record() {
        let init = init_segment(&Track {
            width: 1280,
            height: 720,
            avcc: AVCC,
        });
        let at = init.windows(4).position(|w| w == b"avcC").unwrap();
        assert_eq!(&init[at + 4..at + 4 + AVCC.len()], AVCC);
        let size = u32::from_be_bytes(init[at - 4..at].try_into().unwrap()) as usize;
        assert_eq!(size, 8 + AVCC.len());
        // The last "avc1": the first is a brand in `ftyp`.
        let entry = init.windows(4).rposition(|w| w == b"avc1").unwrap();
        assert_eq!(&init[entry + 28..entry + 32], &[5, 0, 2, 208]);
    }
}
