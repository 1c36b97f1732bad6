//! Clip uploads. A clip travels as its manifest — the clip record, queued in the outbox like
//! any record — and as chunks of at most `chunk_bytes`, each published at QoS 1. Beside the clip
//! are its manifest (`<id>.upload`, written once) and the chunks the broker acknowledged
//! (`<id>.acked`), both sealed with a checksum, so an upload resumes where it stopped after a
//! reconnect or a restart instead of starting again; the clip file is deleted once every chunk
//! is acknowledged. Damaged acknowledgements restart the upload from its clip: a chunk is never
//! taken as delivered on the word of a damaged file.
//!
//! The manifest and the chunk framing are the wire contract's ([`crate::wire`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::durable::{read_sealed_json, write_sealed};
use crate::report::Chain;
use crate::vocabulary::ContentType;
use crate::wire::Manifest;

/// One clip's upload: its manifest and the chunks the broker acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub manifest: Manifest,
    /// Kept in its own file (`<id>.acked`), rewritten as acknowledgements come.
    #[serde(skip)]
    pub acked: BTreeSet<u32>,
    /// When the upload was queued (ms since the epoch), for the purpose's retention.
    pub queued_ms: u64,
    /// The clip is still being recorded: its manifest covers the fragments written so far,
    /// and more are to come.
    #[serde(default)]
    pub recording: bool,
    /// When the broker had acknowledged every chunk and the cloud's confirmation began to be
    /// awaited (not kept: a restart waits afresh).
    #[serde(skip)]
    pub all_sent_at: Option<Instant>,
}

impl Progress {
    /// The broker acknowledged every chunk of the finished clip.
    pub fn all_sent(&self) -> bool {
        !self.recording && self.acked.len() as u32 >= self.manifest.chunks
    }

    /// The first chunk neither acknowledged nor in `sending`.
    pub fn next(&self, sending: &BTreeSet<u32>) -> Option<u32> {
        (0..self.manifest.chunks).find(|i| !self.acked.contains(i) && !sending.contains(i))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("clip upload {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The uploads in progress, oldest clip first, persisted in the clip directory.
#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    active: BTreeMap<String, Progress>,
    /// Clip ids in the order they were added (clip ids are UUIDs: not time-ordered).
    order: Vec<String>,
    /// Damaged manifests set aside (`*.damaged`), for the status.
    damaged: u64,
    /// A clip is done when the cloud confirms it (`outbox.cloud_confirms`), not when the
    /// broker acknowledged its chunks: a broker that loses what it acknowledged costs a
    /// re-send, not the clip.
    cloud_confirms: bool,
}

const PROGRESS: &str = "upload";
const ACKED: &str = "acked";

impl Uploads {
    /// Loads every upload in progress under `dir`. Damaged acknowledgements restart the
    /// upload from its clip; a damaged manifest is set aside, its clip kept.
    pub fn open(dir: &Path) -> Self {
        let mut uploads = Self {
            dir: dir.to_owned(),
            active: BTreeMap::new(),
            order: Vec::new(),
            damaged: 0,
            cloud_confirms: false,
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return uploads;
        };
        let mut found: Vec<(std::time::SystemTime, Progress)> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "damaged") {
                uploads.damaged += 1;
                continue;
            }
            if path.extension().is_none_or(|e| e != PROGRESS) {
                continue;
            }
            match read_sealed_json::<Progress>(&path) {
                Ok(mut p) if uploads.path_of(&p.manifest).exists() => {
                    p.acked = uploads.read_acked(&p.manifest.clip_id);
                    let modified = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    found.push((modified, p));
                }
                Ok(p) => {
                    warn!(clip = %p.manifest.clip_id, "clip upload whose clip is gone, dropped");
                    uploads.remove_files(&p.manifest.clip_id, None);
                }
                Err(e) => {
                    uploads.damaged += 1;
                    let aside = crate::durable::set_aside(&path);
                    warn!(file = %path.display(), "clip upload manifest unreadable ({e}), set aside: {aside:?}");
                }
            }
        }
        found.sort_by_key(|(t, _)| *t);
        for (_, p) in found {
            uploads.order.push(p.manifest.clip_id.clone());
            let mut p = p;
            p.all_sent_at = p.all_sent().then(Instant::now);
            uploads.active.insert(p.manifest.clip_id.clone(), p);
        }
        uploads
    }

    /// The chunks acknowledged for clip `id`; none when the file is missing or damaged.
    fn read_acked(&self, id: &str) -> BTreeSet<u32> {
        let path = self.acked_path(id);
        match read_sealed_json(&path) {
            Ok(acked) => acked,
            Err(e) if e.is_not_found() => BTreeSet::new(),
            Err(e) => {
                warn!(file = %path.display(), "clip upload progress unreadable ({e}): the upload restarts from its clip");
                BTreeSet::new()
            }
        }
    }

    /// Keeps clips until the cloud confirms them (`outbox.cloud_confirms`), or not; uploads
    /// already done under that rule (all sent, when the cloud does not confirm) are removed.
    pub fn set_cloud_confirms(&mut self, on: bool) {
        self.cloud_confirms = on;
        let ids: Vec<String> = self.active.keys().cloned().collect();
        for id in ids {
            if let Err(e) = self.finish_if_done(&id) {
                warn!("{}", Chain(&e));
            }
        }
    }

    /// Whether the upload is over: every chunk acknowledged by the broker and, when the cloud
    /// confirms, the clip confirmed. A snapshot's manifest travels in its alert, a record, and
    /// records are not confirmed: it is over once its chunks are acknowledged.
    fn done(&self, p: &Progress) -> bool {
        p.all_sent() && (!self.cloud_confirms || p.manifest.content_type == ContentType::Jpeg)
    }

    /// Damaged upload manifests kept aside, never read again.
    pub fn damaged(&self) -> u64 {
        self.damaged
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the media a manifest describes is stored: `<id>.mp4` for a clip, `<id>.jpg` for
    /// a snapshot.
    pub fn path_of(&self, manifest: &Manifest) -> PathBuf {
        manifest.path_in(&self.dir)
    }

    fn progress_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{PROGRESS}"))
    }

    fn acked_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{ACKED}"))
    }

    pub fn len(&self) -> usize {
        self.active.len()
    }

    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Progress> {
        self.order.iter().filter_map(|id| self.active.get(id))
    }

    pub fn get(&self, id: &str) -> Option<&Progress> {
        self.active.get(id)
    }

    /// Uploads the fragments of a clip being recorded that `manifest` names: starts its
    /// upload, or lets the one under way go on to them.
    pub fn stream(&mut self, manifest: Manifest) -> Result<(), UploadError> {
        match self.active.get_mut(&manifest.clip_id) {
            Some(p) if p.recording => {
                p.manifest = manifest;
                Ok(())
            }
            Some(_) => Ok(()),
            None => self.start(manifest, true),
        }
    }

    /// Uploads a clip that is on disk, finished; an upload streamed while it was recorded
    /// goes on under the final manifest. Returns the manifest when every chunk was already
    /// acknowledged (the upload is then done). Its clip marker is removed: the clip is queued.
    pub fn add(&mut self, manifest: Manifest) -> Result<Option<Manifest>, UploadError> {
        let id = manifest.clip_id.clone();
        match self.active.get_mut(&id) {
            Some(p) => {
                p.manifest = manifest;
                p.recording = false;
                let p = p.clone();
                self.save(&p)?;
                self.save_acked(&id)?;
            }
            None => self.start(manifest, false)?,
        }
        if let Err(e) = crate::clip_marker::remove(&self.dir, &id) {
            warn!(clip = %id, "cannot remove the clip's marker: {e}");
        }
        self.finish_if_done(&id)
    }

    /// Removes upload `id` once it is done (returning its manifest); otherwise notes when
    /// every chunk was acknowledged, for the wait on the cloud's confirmation.
    fn finish_if_done(&mut self, id: &str) -> Result<Option<Manifest>, UploadError> {
        let Some(p) = self.active.get(id) else {
            return Ok(None);
        };
        if self.done(p) {
            let manifest = p.manifest.clone();
            self.remove(id);
            return Ok(Some(manifest));
        }
        if p.all_sent() && p.all_sent_at.is_none() {
            self.save_acked(id)?;
            if let Some(p) = self.active.get_mut(id) {
                p.all_sent_at = Some(Instant::now());
            }
        }
        Ok(None)
    }

    fn start(&mut self, manifest: Manifest, recording: bool) -> Result<(), UploadError> {
        let progress = Progress {
            manifest,
            acked: BTreeSet::new(),
            queued_ms: crate::record::now_ms(),
            recording,
            all_sent_at: None,
        };
        self.save(&progress)?;
        let id = progress.manifest.clip_id.clone();
        self.order.push(id.clone());
        self.active.insert(id, progress);
        Ok(())
    }

    fn save(&self, progress: &Progress) -> Result<(), UploadError> {
        let path = self.progress_path(&progress.manifest.clip_id);
        let bytes = serde_json::to_vec(progress).unwrap_or_default();
        write_sealed(&path, &bytes).map_err(|source| UploadError::Io { path, source })
    }

    /// Reads chunk `index` of clip `id` from disk.
    pub fn chunk(&self, id: &str, index: u32) -> Result<Vec<u8>, UploadError> {
        use std::io::{Read, Seek, SeekFrom};
        let Some(p) = self.active.get(id) else {
            return Ok(Vec::new());
        };
        let path = self.path_of(&p.manifest);
        let io = |source| UploadError::Io {
            path: path.clone(),
            source,
        };
        let (start, end) = p.manifest.range(index);
        let mut file = std::fs::File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut data = vec![0; (end - start) as usize];
        file.read_exact(&mut data).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                io(std::io::Error::other(format!(
                    "the file is shorter than the {} bytes its manifest names (truncated on disk)",
                    p.manifest.bytes
                )))
            } else {
                io(e)
            }
        })?;
        Ok(data)
    }

    /// Records the broker's acknowledgement of a chunk; returns the manifest when the upload
    /// is done (its local copy and progress are then deleted).
    pub fn ack(&mut self, id: &str, index: u32) -> Result<Option<Manifest>, UploadError> {
        let Some(p) = self.active.get_mut(id) else {
            return Ok(None);
        };
        p.acked.insert(index);
        if p.all_sent() {
            return self.finish_if_done(id);
        }
        // Every few chunks: a crash then re-sends at most that many.
        if p.acked.len() % 8 == 0 {
            self.save_acked(id)?;
        }
        Ok(None)
    }

    /// Forgets an upload and deletes its clip (delivered, expired or evicted).
    pub fn remove(&mut self, id: &str) {
        let media = self.active.remove(id).map(|p| self.path_of(&p.manifest));
        self.order.retain(|o| o != id);
        self.remove_files(id, media);
    }

    /// Deletes the media `manifest` names and everything beside it, queued or not: a clip
    /// that may not, or cannot, go up.
    pub fn discard(&mut self, manifest: &Manifest) {
        self.remove(&manifest.clip_id);
        self.remove_files(&manifest.clip_id, Some(self.path_of(manifest)));
    }

    fn remove_files(&self, id: &str, media: Option<PathBuf>) {
        for path in media.into_iter().chain([
            self.progress_path(id),
            self.acked_path(id),
            crate::clip_marker::path(&self.dir, id),
        ]) {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(file = %path.display(), "cannot delete: {e}");
                }
            }
        }
    }

    /// Bytes of the clips waiting to go up.
    pub fn bytes(&self) -> u64 {
        self.active.values().map(|p| p.manifest.bytes).sum()
    }

    /// Evicts the oldest finished clips until the rest fit in `max_bytes`; returns their ids.
    /// A clip being recorded stays: it ends within `max_clip`.
    pub fn evict_to(&mut self, max_bytes: u64) -> Vec<String> {
        let mut evicted = Vec::new();
        while self.bytes() > max_bytes {
            let Some(oldest) = self.iter().find(|p| !p.recording) else {
                break;
            };
            let oldest = oldest.manifest.clip_id.clone();
            self.remove(&oldest);
            evicted.push(oldest);
        }
        evicted
    }

    /// Removes the uploads queued before `cutoff_ms`; returns their ids.
    pub fn expire_before(&mut self, cutoff_ms: u64) -> Vec<String> {
        let old: Vec<String> = self
            .iter()
            .filter(|p| p.queued_ms < cutoff_ms && !p.recording)
            .map(|p| p.manifest.clip_id.clone())
            .collect();
        for id in &old {
            self.remove(id);
        }
        old
    }

    /// Persists every upload's progress (at shutdown).
    pub fn save_all(&self) {
        for id in self.active.keys() {
            if let Err(e) = self.save_acked(id) {
                warn!("{}", Chain(&e));
            }
        }
    }

    fn save_acked(&self, id: &str) -> Result<(), UploadError> {
        let Some(p) = self.active.get(id) else {
            return Ok(());
        };
        let path = self.acked_path(id);
        let bytes = serde_json::to_vec(&p.acked).unwrap_or_default();
        write_sealed(&path, &bytes).map_err(|source| UploadError::Io { path, source })
    }
}

mod confirm;
#[cfg(test)]
mod tests;
