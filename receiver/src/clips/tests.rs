//! Reassembly on a real directory: the budget for chunks without a manifest, streamed clips.

use super::*;
use std::collections::HashSet;

fn receiver(max_bytes: usize, ttl: Duration) -> Receiver {
    Receiver {
        out: std::env::temp_dir(),
        audit: None,
        prefix_levels: 1,
        seen: HashSet::new(),
        clips: BTreeMap::new(),
        orphans: OrphanLimits { max_bytes, ttl },
        confirmer: None,
        replies: Vec::new(),
    }
}

fn chunk(clip: &str, index: u32, bytes: usize) -> Vec<u8> {
    let header = camagent::wire::ChunkHeader {
        schema: 1,
        clip_id: clip.into(),
        index,
        chunks: 100,
        offset: None,
        purpose: "p".into(),
        legal_basis: "dpv:Contract".into(),
    };
    chunk::frame(&header, &vec![0; bytes])
}

fn held(r: &Receiver) -> usize {
    r.clips.values().map(Assembly::early_bytes).sum()
}

#[test]
fn chunks_without_a_manifest_stay_within_their_budget_oldest_dropped_first() {
    let mut r = receiver(10_000, Duration::from_secs(3600));
    for clip in ["a", "b", "c"] {
        for i in 0..4 {
            r.on_chunk("dev", &chunk(clip, i, 1000)).unwrap();
        }
    }
    assert_eq!(held(&r), 8000, "a's 4000 bytes made room");
    assert!(!r.clips.contains_key("a"), "the oldest orphan goes first");
    assert!(r.clips.contains_key("c"));
    for i in 0..100 {
        r.on_chunk("dev", &chunk("d", i, 1000)).unwrap();
        assert!(held(&r) <= 10_000);
    }
}

#[test]
fn chunks_whose_manifest_never_comes_are_dropped_in_time() {
    let mut r = receiver(usize::MAX, Duration::ZERO);
    r.on_chunk("dev", &chunk("a", 0, 10)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    r.on_chunk("dev", &chunk("b", 0, 10)).unwrap();
    assert!(!r.clips.contains_key("a"));
}

mod streamed {
    use super::*;

    #[test]
    fn a_streamed_clip_is_written_in_place_playable_from_its_start_then_verified() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Receiver {
            out: dir.path().to_owned(),
            audit: None,
            prefix_levels: 1,
            seen: HashSet::new(),
            clips: BTreeMap::new(),
            orphans: OrphanLimits {
                max_bytes: 0,
                ttl: Duration::ZERO,
            },
            confirmer: None,
            replies: Vec::new(),
        };
        let clip: Vec<u8> = (0..90u8).collect();
        let mut manifest = Manifest {
            clip_id: "c".into(),
            content_type: ContentType::Mp4,
            bytes: 90,
            duration_ms: 0,
            sha256: camagent::hex::encode(
                ring::digest::digest(&ring::digest::SHA256, &clip).as_ref(),
            ),
            chunk_bytes: 40,
            chunks: 0,
            event_ids: Vec::new(),
            fragments: vec![10, 60],
            cut_short: false,
        };
        manifest.chunks = manifest.count_chunks();
        let send = |r: &mut Receiver, index: u32| {
            let (start, end) = manifest.range(index);
            let header = camagent::wire::ChunkHeader {
                schema: 1,
                clip_id: "c".into(),
                index,
                chunks: 0,
                offset: Some(start),
                purpose: "p".into(),
                legal_basis: "dpv:Contract".into(),
            };
            let data = &clip[start as usize..end as usize];
            r.on_chunk("dev", &chunk::frame(&header, data)).unwrap();
        };
        let playable = |r: &Receiver| r.clips["c"].playable;
        // Chunks: [0,10) [10,50) [50,60) [60,90). The second is late.
        send(&mut r, 0);
        send(&mut r, 2);
        assert_eq!(playable(&r), 10, "held, not playable past the gap");
        send(&mut r, 1);
        assert_eq!(playable(&r), 60, "no budget was needed: it is on disk");
        let part = std::fs::read(dir.path().join("c.part")).unwrap();
        assert_eq!(part, clip[..60]);
        r.on_manifest("dev", manifest.clone()).unwrap();
        send(&mut r, 3);
        assert_eq!(
            std::fs::read(dir.path().join("c.mp4")).unwrap(),
            clip,
            "verified"
        );
    }
}
