//! Clip and snapshot reassembly: chunks are written in place as they come, verified against
//! the manifest's SHA-256 once all are there. A clip streamed while it is recorded comes
//! before its manifest, each chunk naming its offset: it is written in place too, and the
//! part received from its start on plays as it grows (`<id>.part`, reported as
//! `clip_progress`). Chunks without an offset that come before their manifest are held in
//! memory within a budget and for a limited time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use camagent::vocabulary::ContentType;
use camagent::wire::{chunk, Manifest};
use serde_json::json;

use super::{emit, safe_name, Receiver};

/// A clip being reassembled.
pub(crate) struct Assembly {
    manifest: Option<Manifest>,
    /// Chunks that came before the manifest.
    early: BTreeMap<u32, Vec<u8>>,
    have: BTreeSet<u32>,
    /// The byte ranges written (start to end), and how far from the start they run unbroken.
    written: BTreeMap<u64, u64>,
    playable: u64,
    done: bool,
    /// When its first chunk or manifest came.
    since: Instant,
}

impl Assembly {
    pub(crate) fn new() -> Self {
        Self {
            manifest: None,
            early: BTreeMap::new(),
            have: BTreeSet::new(),
            written: BTreeMap::new(),
            playable: 0,
            done: false,
            since: Instant::now(),
        }
    }

    fn early_bytes(&self) -> usize {
        self.early.values().map(Vec::len).sum()
    }
}

/// The largest clip a chunk may write into before its manifest came.
const STREAMED_MAX_BYTES: u64 = 1 << 30;

/// What chunks without a manifest may hold.
pub(crate) struct OrphanLimits {
    pub(crate) max_bytes: usize,
    pub(crate) ttl: Duration,
}

impl Receiver {
    /// A clip's or snapshot's manifest: chunks that came before it are stored now.
    pub(crate) fn on_manifest(&mut self, manifest: Manifest) -> anyhow::Result<()> {
        let id = manifest.clip_id.clone();
        let assembly = self.clips.entry(id.clone()).or_insert_with(Assembly::new);
        if assembly.manifest.is_some() {
            return Ok(());
        }
        assembly.manifest = Some(manifest);
        let early = std::mem::take(&mut assembly.early);
        for (index, data) in early {
            self.store_chunk(&id, index, &data)?;
        }
        self.finish_if_complete(&id)
    }

    pub(crate) fn on_chunk(&mut self, payload: &[u8]) -> anyhow::Result<()> {
        let (header, data) = chunk::parse(payload)?;
        let id = header.clip_id.clone();
        let assembly = self.clips.entry(id.clone()).or_insert_with(Assembly::new);
        if assembly.done || assembly.have.contains(&header.index) {
            return Ok(());
        }
        if assembly.manifest.is_some() {
            self.store_chunk(&id, header.index, data)?;
            return self.finish_if_complete(&id);
        }
        match header.offset {
            Some(offset) if offset + data.len() as u64 <= STREAMED_MAX_BYTES => {
                self.write_at(&id, header.index, offset, data)
            }
            Some(offset) => bail!(
                "chunk {} of clip {id} at {offset} is past the largest clip",
                header.index
            ),
            None => {
                assembly.early.insert(header.index, data.to_vec());
                self.drop_orphans();
                Ok(())
            }
        }
    }

    /// Drops chunks whose manifest has not come in time, then the oldest such chunks while
    /// they hold more than their budget.
    fn drop_orphans(&mut self) {
        let mut orphans: Vec<(Instant, String, usize)> = self
            .clips
            .iter()
            .filter(|(_, a)| a.manifest.is_none())
            .map(|(id, a)| (a.since, id.clone(), a.early_bytes()))
            .collect();
        orphans.sort();
        let mut held: usize = orphans.iter().map(|(_, _, bytes)| bytes).sum();
        for (since, id, bytes) in orphans {
            let reason = if since.elapsed() > self.orphans.ttl {
                "no manifest in time"
            } else if held > self.orphans.max_bytes {
                "over the memory budget for chunks without a manifest"
            } else {
                continue;
            };
            held -= bytes;
            if let Some(a) = self.clips.remove(&id) {
                emit(
                    json!({"type": "orphan_dropped", "clip_id": id, "chunks": a.early.len(), "bytes": bytes, "reason": reason}),
                );
            }
        }
    }

    fn part_path(&self, id: &str) -> PathBuf {
        self.out.join(format!("{}.part", safe_name(id)))
    }

    fn store_chunk(&mut self, id: &str, index: u32, data: &[u8]) -> anyhow::Result<()> {
        let assembly = self.clips.get_mut(id).context("unknown clip")?;
        let Some(manifest) = &assembly.manifest else {
            bail!("chunk before manifest");
        };
        let (start, end) = manifest.range(index);
        if index >= manifest.chunks || data.len() as u64 != end - start {
            bail!("chunk {index} of clip {id} does not match its manifest");
        }
        self.write_at(id, index, start, data)
    }

    /// Writes chunk `index` at `offset` of clip `id`'s part file, and reports how much of the
    /// clip now plays from its start.
    fn write_at(&mut self, id: &str, index: u32, offset: u64, data: &[u8]) -> anyhow::Result<()> {
        let path = self.part_path(id);
        let assembly = self.clips.get_mut(id).context("unknown clip")?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        file.seek(SeekFrom::Start(offset))?;
        file.write_all(data)?;
        assembly.have.insert(index);
        assembly.written.insert(offset, offset + data.len() as u64);
        let before = assembly.playable;
        while let Some(&end) = assembly.written.get(&assembly.playable) {
            if end <= assembly.playable {
                break;
            }
            assembly.playable = end;
        }
        if assembly.playable > before {
            emit(
                json!({"type": "clip_progress", "clip_id": id, "playable_bytes": assembly.playable, "path": path}),
            );
        }
        Ok(())
    }

    fn finish_if_complete(&mut self, id: &str) -> anyhow::Result<()> {
        let part = self.part_path(id);
        let assembly = self.clips.get_mut(id).context("unknown clip")?;
        let Some(manifest) = &assembly.manifest else {
            return Ok(());
        };
        if assembly.done || assembly.have.len() as u32 != manifest.chunks {
            return Ok(());
        }
        assembly.done = true;
        let bytes = std::fs::read(&part)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let sha256: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let verified = sha256 == manifest.sha256 && bytes.len() as u64 == manifest.bytes;
        let name = if verified {
            manifest.content_type.extension()
        } else {
            "bad"
        };
        let path = self.out.join(format!("{}.{name}", safe_name(id)));
        std::fs::rename(&part, &path)?;
        let kind = if manifest.content_type == ContentType::Jpeg {
            "snapshot"
        } else {
            "clip"
        };
        emit(json!({
            "type": kind,
            "clip_id": id,
            "bytes": bytes.len(),
            "sha256": sha256,
            "verified": verified,
            "path": path,
            "event_ids": manifest.event_ids,
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
                r.on_chunk(&chunk(clip, i, 1000)).unwrap();
            }
        }
        assert_eq!(held(&r), 8000, "a's 4000 bytes made room");
        assert!(!r.clips.contains_key("a"), "the oldest orphan goes first");
        assert!(r.clips.contains_key("c"));
        for i in 0..100 {
            r.on_chunk(&chunk("d", i, 1000)).unwrap();
            assert!(held(&r) <= 10_000);
        }
    }

    #[test]
    fn chunks_whose_manifest_never_comes_are_dropped_in_time() {
        let mut r = receiver(usize::MAX, Duration::ZERO);
        r.on_chunk(&chunk("a", 0, 10)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        r.on_chunk(&chunk("b", 0, 10)).unwrap();
        assert!(!r.clips.contains_key("a"));
    }
}

#[cfg(test)]
mod streamed {
    use super::*;
    use std::collections::HashSet;

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
            r.on_chunk(&chunk::frame(&header, data)).unwrap();
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
        r.on_manifest(manifest.clone()).unwrap();
        send(&mut r, 3);
        assert_eq!(
            std::fs::read(dir.path().join("c.mp4")).unwrap(),
            clip,
            "verified"
        );
    }
}
