//! Clip uploads on a real directory: progress, resumption, damage.

use super::*;

fn manifest(id: &str, bytes: u64, chunk: u32) -> Manifest {
    Manifest {
        clip_id: id.into(),
        content_type: crate::vocabulary::ContentType::Mp4,
        bytes,
        duration_ms: 1000,
        sha256: "00".into(),
        chunk_bytes: chunk,
        chunks: Manifest::chunk_count(bytes, chunk),
        event_ids: vec!["e".into()],
        fragments: Vec::new(),
        cut_short: false,
    }
}

#[test]
fn chunks_cover_the_clip_and_progress_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clip: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("a.mp4"), &clip).unwrap();
    let mut uploads = Uploads::open(dir.path());
    uploads.add(manifest("a", 1000, 64)).unwrap();
    let chunks = uploads.get("a").unwrap().manifest.chunks;
    assert_eq!(chunks, 16);
    let joined: Vec<u8> = (0..chunks)
        .flat_map(|i| uploads.chunk("a", i).unwrap())
        .collect();
    assert_eq!(joined, clip);
    for i in 0..8 {
        assert_eq!(uploads.ack("a", i).unwrap(), None);
    }
    // A restart: the first eight acknowledgements were persisted.
    let mut again = Uploads::open(dir.path());
    let p = again.get("a").unwrap();
    assert_eq!(p.next(&BTreeSet::new()), Some(8));
    assert_eq!(p.next(&BTreeSet::from([8, 9])), Some(10));
    for i in 8..15 {
        assert_eq!(again.ack("a", i).unwrap(), None);
    }
    let done = again.ack("a", 15).unwrap().unwrap();
    assert_eq!(done.clip_id, "a");
    assert!(again.is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "clip and progress deleted"
    );
}

#[test]
fn eviction_takes_the_oldest_clips_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut uploads = Uploads::open(dir.path());
    for id in ["old", "mid", "new"] {
        std::fs::write(dir.path().join(format!("{id}.mp4")), [0u8; 100]).unwrap();
        uploads.add(manifest(id, 100, 64)).unwrap();
    }
    assert_eq!(uploads.bytes(), 300);
    assert_eq!(uploads.evict_to(250), vec!["old".to_owned()]);
    assert_eq!(uploads.evict_to(100), vec!["mid".to_owned()]);
    assert!(!dir.path().join("old.mp4").exists());
    assert_eq!(
        uploads
            .iter()
            .map(|p| p.manifest.clip_id.as_str())
            .collect::<Vec<_>>(),
        ["new"]
    );
    assert!(uploads.expire_before(0).is_empty());
    assert_eq!(uploads.expire_before(u64::MAX), vec!["new".to_owned()]);
}

#[test]
fn a_truncated_clip_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut uploads = Uploads::open(dir.path());
    let m = manifest("t", 10, 4);
    std::fs::write(uploads.path_of(&m), b"0123").unwrap();
    uploads.add(m).unwrap();
    assert_eq!(uploads.chunk("t", 0).unwrap(), b"0123");
    let err = crate::report::Chain(&uploads.chunk("t", 2).unwrap_err()).to_string();
    assert!(
        err.contains("shorter than the 10 bytes") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn damaged_progress_restarts_the_upload_from_its_clip() {
    let dir = tempfile::tempdir().unwrap();
    let mut uploads = Uploads::open(dir.path());
    std::fs::write(dir.path().join("a.mp4"), [7u8; 100]).unwrap();
    uploads.add(manifest("a", 100, 10)).unwrap();
    for i in 0..8 {
        uploads.ack("a", i).unwrap();
    }
    let acked = dir.path().join("a.acked");
    assert_eq!(Uploads::open(dir.path()).get("a").unwrap().acked.len(), 8);
    // One flipped index, or a torn file: no chunk is taken as delivered.
    let good = std::fs::read(&acked).unwrap();
    let flipped = String::from_utf8(good.clone())
        .unwrap()
        .replacen('7', "9", 1);
    for damage in [flipped.into_bytes(), good[..good.len() / 2].to_vec()] {
        std::fs::write(&acked, damage).unwrap();
        let again = Uploads::open(dir.path());
        let p = again
            .get("a")
            .expect("the upload restarts, it is not dropped");
        assert!(p.acked.is_empty());
        assert_eq!(p.next(&BTreeSet::new()), Some(0));
    }
}

#[test]
fn a_damaged_manifest_is_set_aside_and_a_missing_clip_dropped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.upload"), b"{torn").unwrap();
    std::fs::write(dir.path().join("x.mp4"), b"kept").unwrap();
    let mut uploads = Uploads::open(dir.path());
    uploads.add(manifest("y", 10, 4)).unwrap();
    let uploads = Uploads::open(dir.path());
    assert!(uploads.is_empty());
    assert_eq!(uploads.damaged(), 1);
    assert_eq!(
        Uploads::open(dir.path()).damaged(),
        1,
        "still counted at the next start"
    );
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["x.mp4", "x.upload.damaged"]);
}

/// A clip's pieces as they grow: `ends` are where its init segment and fragments end.
fn growing(id: &str, ends: &[u64], chunk: u32) -> Manifest {
    let bytes = ends.last().copied().unwrap_or(0);
    Manifest::mp4(id.into(), vec!["e".into()], ends.to_vec(), bytes, chunk)
}

#[test]
fn a_clip_streams_while_recorded_and_its_finished_manifest_keeps_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.mp4"), [1u8; 300]).unwrap();
    crate::clip_marker::write(
        dir.path(),
        "a",
        &crate::clip_marker::Marker {
            event_ids: vec![],
            finished_ms: None,
        },
    )
    .unwrap();
    let mut uploads = Uploads::open(dir.path());
    uploads.stream(growing("a", &[20, 100], 64)).unwrap();
    let p = uploads.get("a").unwrap();
    assert!(p.recording && p.manifest.chunks == 3);
    for i in 0..3 {
        assert_eq!(
            uploads.ack("a", i).unwrap(),
            None,
            "more is coming: not done"
        );
    }
    uploads.stream(growing("a", &[20, 100, 250], 64)).unwrap();
    assert_eq!(uploads.get("a").unwrap().next(&BTreeSet::new()), Some(3));
    // The clip being recorded is never the one evicted.
    assert!(uploads.evict_to(0).is_empty());
    assert!(uploads.expire_before(u64::MAX).is_empty());

    // Finished, with the last fragment the muxer closed at the end: the upload goes on from
    // there.
    let finished = growing("a", &[20, 100, 250, 300], 64);
    assert_eq!(uploads.add(finished.clone()).unwrap(), None);
    assert!(
        !dir.path().join("a.rec").exists(),
        "queued: its marker goes"
    );
    let again = Uploads::open(dir.path());
    let p = again.get("a").unwrap();
    assert!(!p.recording);
    assert_eq!(p.manifest, finished);
    let mut uploads = again;
    let last = finished.chunks - 1;
    for i in 3..last {
        assert_eq!(uploads.ack("a", i).unwrap(), None);
    }
    assert_eq!(uploads.ack("a", last).unwrap(), Some(finished));
}

#[test]
fn a_clip_cut_short_whose_every_chunk_went_while_recording_is_done_when_added() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.mp4"), [1u8; 100]).unwrap();
    let mut uploads = Uploads::open(dir.path());
    let streamed = growing("a", &[20, 100], 64);
    uploads.stream(streamed.clone()).unwrap();
    for i in 0..streamed.chunks {
        uploads.ack("a", i).unwrap();
    }
    let mut cut_short = streamed;
    cut_short.cut_short = true;
    assert_eq!(uploads.add(cut_short.clone()).unwrap(), Some(cut_short));
    assert!(uploads.is_empty());
    assert!(!dir.path().join("a.mp4").exists());
}

#[test]
fn with_cloud_confirmation_a_clip_stays_until_the_cloud_verifies_it_and_missing_chunks_go_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.mp4"), [1u8; 100]).unwrap();
    let mut uploads = Uploads::open(dir.path());
    uploads.set_cloud_confirms(true);
    let mut m = manifest("a", 100, 40);
    m.sha256 = "ab".into();
    uploads.add(m.clone()).unwrap();
    for i in 0..3 {
        assert_eq!(
            uploads.ack("a", i).unwrap(),
            None,
            "acknowledged is not confirmed"
        );
    }
    assert!(dir.path().join("a.mp4").exists());
    assert!(uploads
        .unconfirmed(std::time::Duration::from_secs(3600))
        .is_empty());
    assert_eq!(
        uploads.unconfirmed(std::time::Duration::ZERO),
        [m.clone()],
        "announced again"
    );

    // The cloud lacks chunk 1: it is the next to go, and the wait starts over once it is acked.
    uploads.missing("a", &[1]).unwrap();
    assert_eq!(uploads.get("a").unwrap().next(&BTreeSet::new()), Some(1));
    assert!(uploads.unconfirmed(std::time::Duration::ZERO).is_empty());
    assert_eq!(uploads.ack("a", 1).unwrap(), None);

    // A restart keeps the clip, all sent, still waiting.
    let mut uploads = Uploads::open(dir.path());
    uploads.set_cloud_confirms(true);
    assert!(uploads.get("a").unwrap().all_sent());
    assert_eq!(
        uploads.confirmed("a", "cd"),
        None,
        "another clip's hash: kept"
    );
    assert_eq!(uploads.confirmed("a", "ab"), Some(m));
    assert!(uploads.is_empty() && !dir.path().join("a.mp4").exists());
}

#[test]
fn without_cloud_confirmation_an_upload_left_all_sent_is_done_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.mp4"), [1u8; 100]).unwrap();
    let mut uploads = Uploads::open(dir.path());
    uploads.set_cloud_confirms(true);
    uploads.add(manifest("a", 100, 40)).unwrap();
    for i in 0..3 {
        uploads.ack("a", i).unwrap();
    }
    let mut uploads = Uploads::open(dir.path());
    uploads.set_cloud_confirms(false);
    assert!(uploads.is_empty());
    assert!(!dir.path().join("a.mp4").exists());
}

#[test]
fn a_chunked_snapshot_is_done_once_acknowledged_even_when_the_cloud_confirms_clips() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("e-snapshot.jpg"), [1u8; 100]).unwrap();
    let mut uploads = Uploads::open(dir.path());
    uploads.set_cloud_confirms(true);
    let mut m = manifest("e-snapshot", 100, 40);
    m.content_type = crate::vocabulary::ContentType::Jpeg;
    uploads.add(m.clone()).unwrap();
    assert_eq!(uploads.ack("e-snapshot", 0).unwrap(), None);
    assert_eq!(uploads.ack("e-snapshot", 1).unwrap(), None);
    // Its manifest goes in its alert, which waits for exactly this.
    assert_eq!(uploads.ack("e-snapshot", 2).unwrap(), Some(m));
    assert!(uploads.is_empty());
}
