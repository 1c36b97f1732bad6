//! Clip and snapshot reassembly: chunks are written in place as they come, verified against
//! the manifest's SHA-256 once all are there; chunks that come before their manifest are held
//! in memory within a budget and for a limited time.

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
            done: false,
            since: Instant::now(),
        }
    }

    fn early_bytes(&self) -> usize {
        self.early.values().map(Vec::len).sum()
    }
}

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
        if assembly.manifest.is_none() {
            assembly.early.insert(header.index, data.to_vec());
            self.drop_orphans();
            return Ok(());
        }
        self.store_chunk(&id, header.index, data)?;
        self.finish_if_complete(&id)
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
        self.out.join(format!(".{}.part", safe_name(id)))
    }

    fn store_chunk(&mut self, id: &str, index: u32, data: &[u8]) -> anyhow::Result<()> {
        let path = self.part_path(id);
        let assembly = self.clips.get_mut(id).context("unknown clip")?;
        let Some(manifest) = &assembly.manifest else {
            bail!("chunk before manifest");
        };
        let (start, end) = manifest.range(index);
        if index >= manifest.chunks || data.len() as u64 != end - start {
            bail!("chunk {index} of clip {id} does not match its manifest");
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)?;
        file.seek(SeekFrom::Start(start))?;
        file.write_all(data)?;
        assembly.have.insert(index);
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
