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

fn sha256_hex(bytes: &[u8]) -> String {
    camagent::hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

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
    /// The device it came from, when the last new chunk came, when its missing chunks were
    /// last asked for, and its hash once verified: for the confirmations to the device.
    device: Option<String>,
    progressed: Instant,
    asked: Option<Instant>,
    verified: Option<String>,
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
            device: None,
            progressed: Instant::now(),
            asked: None,
            verified: None,
        }
    }

    fn early_bytes(&self) -> usize {
        self.early.values().map(Vec::len).sum()
    }
}

/// How long a clip whose manifest came may go without a new chunk before the device is asked
/// for the ones missing (again every as long).
const STALLED: Duration = Duration::from_secs(5);

/// The largest clip a chunk may write into before its manifest came.
const STREAMED_MAX_BYTES: u64 = 1 << 30;

/// What chunks without a manifest may hold.
pub(crate) struct OrphanLimits {
    pub(crate) max_bytes: usize,
    pub(crate) ttl: Duration,
}

impl Receiver {
    /// A clip's or snapshot's manifest from `device`: chunks that came before it are stored
    /// now. Announced again (the device has not had a confirmation), it is confirmed again,
    /// or its missing chunks asked for.
    pub(crate) fn on_manifest(&mut self, device: &str, manifest: Manifest) -> anyhow::Result<()> {
        let id = manifest.clip_id.clone();
        let assembly = self.clips.entry(id.clone()).or_insert_with(Assembly::new);
        assembly.device.get_or_insert_with(|| device.to_owned());
        if assembly.manifest.is_some() {
            match assembly.verified.clone() {
                Some(sha256) => self.confirm(&id, &sha256),
                None => assembly.asked = None,
            }
            return Ok(());
        }
        if self.already_verified(&manifest) {
            let assembly = self.clips.entry(id.clone()).or_insert_with(Assembly::new);
            assembly.done = true;
            assembly.verified = Some(manifest.sha256.clone());
            assembly.manifest = Some(manifest.clone());
            if manifest.content_type == ContentType::Mp4 {
                self.confirm(&id, &manifest.sha256);
            }
            return Ok(());
        }
        let assembly = self.clips.entry(id.clone()).or_insert_with(Assembly::new);
        assembly.manifest = Some(manifest);
        assembly.progressed = Instant::now();
        let early = std::mem::take(&mut assembly.early);
        for (index, data) in early {
            self.store_chunk(&id, index, &data)?;
        }
        self.finish_if_complete(&id)
    }

    /// Whether this clip was verified here before (a receiver restarted since).
    fn already_verified(&self, manifest: &Manifest) -> bool {
        let path = self.out.join(format!(
            "{}.{}",
            safe_name(&manifest.clip_id),
            manifest.content_type.extension()
        ));
        std::fs::read(path).is_ok_and(|bytes| sha256_hex(&bytes) == manifest.sha256)
    }

    pub(crate) fn on_chunk(&mut self, device: &str, payload: &[u8]) -> anyhow::Result<()> {
        let (header, data) = chunk::parse(payload)?;
        let id = header.clip_id.clone();
        let assembly = self.clips.entry(id.clone()).or_insert_with(Assembly::new);
        assembly.device.get_or_insert_with(|| device.to_owned());
        if assembly.done || assembly.have.contains(&header.index) {
            return Ok(());
        }
        assembly.progressed = Instant::now();
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

    /// Asks the devices for the chunks of clips that stalled: manifest here, chunks missing,
    /// nothing new for [`STALLED`].
    pub(crate) fn chase_stalled(&mut self) {
        let mut asks = Vec::new();
        for (id, a) in &mut self.clips {
            let (Some(manifest), Some(device)) = (&a.manifest, &a.device) else {
                continue;
            };
            let quiet = |at: Instant| at.elapsed() >= STALLED;
            if a.done || !quiet(a.progressed) || !a.asked.is_none_or(quiet) {
                continue;
            }
            a.asked = Some(Instant::now());
            let missing: Vec<u32> = (0..manifest.chunks)
                .filter(|i| !a.have.contains(i))
                .collect();
            emit(json!({"type": "clip_stalled", "clip_id": id, "missing": missing.len()}));
            asks.push((device.clone(), id.clone(), missing));
        }
        if let Some(confirmer) = &mut self.confirmer {
            for (device, id, missing) in asks {
                self.replies.push(confirmer.missing(&device, &id, &missing));
            }
        }
    }

    /// Tells the device clip `id` is verified here.
    fn confirm(&mut self, id: &str, sha256: &str) {
        let device = self.clips.get(id).and_then(|a| a.device.clone());
        if let (Some(confirmer), Some(device)) = (&mut self.confirmer, device) {
            self.replies.push(confirmer.verified(&device, id, sha256));
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
        let sha256 = sha256_hex(&bytes);
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
        if verified {
            assembly.verified = Some(sha256.clone());
            // A snapshot is done on the device once its chunks are acknowledged.
            if kind == "clip" {
                self.confirm(id, &sha256);
            }
        } else {
            // Every chunk again, from scratch: which one is wrong cannot be told.
            let all: Vec<u32> = (0..manifest.chunks).collect();
            assembly.done = false;
            assembly.have.clear();
            assembly.written.clear();
            assembly.playable = 0;
            assembly.asked = Some(Instant::now());
            if let (Some(confirmer), Some(device)) = (&mut self.confirmer, &assembly.device) {
                self.replies.push(confirmer.missing(device, id, &all));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
