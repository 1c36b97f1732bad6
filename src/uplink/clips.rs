//! The clip side of the session: uploads enter within the clip quota, clips give way to
//! alerts when the disk runs short, and chunks go to the client when no record is waiting,
//! within their share of the window and the bandwidth cap.

use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::link::Link;
use super::session::Session;
use super::window::Sent;
use crate::record::Record;
use crate::report::Chain;
use crate::wire::Manifest;

/// How often the file system's free space is checked.
const SPACE_EVERY: Duration = Duration::from_secs(1);
/// Free space kept beyond the outbox's unused quota, for the small files beside it (status,
/// progress, ledger, disclosure log lines).
const SPACE_MARGIN: u64 = 256 * 1024;
/// Dropped uploads remembered for the alerts that may wait for them.
const LOST_MEDIA_KEPT: usize = 64;
/// How long a clip whose every chunk the broker acknowledged waits for the cloud's
/// confirmation before it is announced again.
pub const CONFIRM_WAIT: Duration = Duration::from_secs(30);

impl<L: Link> Session<L> {
    /// Evicts the oldest clips until `bytes` are freed; `false` when there was none.
    pub(super) fn evict_clips(&mut self, bytes: u64, why: &str) -> bool {
        let keep = self.stores.uploads.bytes().saturating_sub(bytes);
        let evicted = self.stores.uploads.evict_to(keep);
        for id in &evicted {
            self.stats.clips_evicted += 1;
            warn!(clip = %id, "clip evicted unsent: {why} (oldest first)");
        }
        let any = !evicted.is_empty();
        self.media_lost(evicted);
        any
    }

    /// Notes uploads dropped unsent, so an alert waiting for one goes without it.
    pub(super) fn media_lost(&mut self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            if self.lost_media.len() == LOST_MEDIA_KEPT {
                self.lost_media.pop_front();
            }
            self.lost_media.push_back(id);
        }
    }

    /// Keeps the room alerts may still need free on the disk (the outbox's unused quota and a
    /// margin for the small files beside it), evicting clips when it runs short. Checked at
    /// most every [`SPACE_EVERY`].
    pub(super) fn keep_space_free(&mut self) {
        if self
            .space_checked
            .is_some_and(|at| at.elapsed() < SPACE_EVERY)
        {
            return;
        }
        self.space_checked = Some(Instant::now());
        let Ok(space) = crate::os::space(self.stores.uploads.dir()) else {
            return;
        };
        let reserve = self.outbox.room() + SPACE_MARGIN;
        if space.is_bounded() && space.available < reserve {
            self.evict_clips(reserve - space.available, "the disk is nearly full");
        }
    }

    /// Streams the fragments of a clip being recorded that `manifest` names, behind every
    /// record waiting, when its purpose lets the clip leave (decided again for each chunk, and
    /// for the whole when it is finished).
    pub fn stream_clip(&mut self, manifest: Manifest) {
        if self.lost_media.contains(&manifest.clip_id)
            || self.gate.admit_chunk(&manifest, 0, &[]).is_err()
        {
            return;
        }
        if let Err(e) = self.stores.uploads.stream(manifest) {
            error!("clip fragments not queued for upload: {}", Chain(&e));
            return;
        }
        self.keep_clip_quota();
        self.pump();
    }

    /// Queues a finished clip: its record (the manifest) first, and only once that is
    /// queued, the rest of the clip's upload. A clip whose record was not taken is deleted and
    /// counted as evicted: its chunks could never be assembled.
    pub fn deliver_clip(&mut self, record: Record, manifest: Manifest) {
        if self.accept(record) {
            self.upload(manifest);
            return;
        }
        self.stats.clips_evicted += 1;
        warn!(clip = %manifest.clip_id, "clip evicted unsent: its record could not be queued");
        self.stores.uploads.discard(&manifest);
        self.media_lost([manifest.clip_id]);
    }

    /// Uploads a clip whose record was just accepted — if its purpose lets the clip itself
    /// leave. Otherwise the clip stays on the device.
    pub fn upload(&mut self, manifest: Manifest) {
        if let Err(refusal) = self.gate.admit_chunk(&manifest, 0, &[]) {
            // Nothing may carry it off the device: do not fill the flash with it.
            info!(clip = %manifest.clip_id, "clip deleted, it may not leave: {refusal}");
            self.stores.uploads.discard(&manifest);
            self.media_lost([manifest.clip_id]);
            return;
        }
        match self.stores.uploads.add(manifest) {
            Ok(Some(done)) => self.clip_delivered(&done),
            Ok(None) => {}
            Err(e) => {
                error!("clip not queued for upload: {}", Chain(&e));
                return;
            }
        }
        self.keep_clip_quota();
        self.pump();
    }

    /// The cloud verified a clip: with `outbox.cloud_confirms`, its upload is done.
    pub(super) fn clip_confirmed(&mut self, id: &str, sha256: &str) {
        match self.stores.uploads.confirmed(id, sha256) {
            Some(done) => self.clip_delivered(&done),
            None => debug!(clip = %id, "confirmation of a clip no longer held"),
        }
    }

    /// The cloud lacks some of a clip's chunks: they go again.
    pub(super) fn clip_missing(&mut self, id: &str, chunks: &[u32]) {
        info!(clip = %id, chunks = chunks.len(), "the cloud lacks chunks of a clip; sending them again");
        if let Err(e) = self.stores.uploads.missing(id, chunks) {
            error!("{}", Chain(&e));
        }
        self.pump();
    }

    /// Announces again the clips the cloud has not confirmed [`CONFIRM_WAIT`] after the
    /// broker acknowledged their every chunk: the record may be what a broker lost. The cloud
    /// then confirms, or says which chunks it lacks.
    pub(super) fn announce_unconfirmed(&mut self) {
        for manifest in self.stores.uploads.unconfirmed(CONFIRM_WAIT) {
            info!(clip = %manifest.clip_id, "the cloud has not confirmed a clip; announcing it again");
            match Record::clip(&manifest) {
                Ok(record) => {
                    self.accept(record);
                }
                Err(e) => error!(clip = %manifest.clip_id, "{e}"),
            }
        }
    }

    pub(super) fn clip_delivered(&mut self, done: &Manifest) {
        self.stats.clips_delivered += 1;
        info!(clip = %done.clip_id, bytes = done.bytes, chunks = done.chunks, "clip delivered");
    }

    fn keep_clip_quota(&mut self) {
        let over = self
            .stores
            .uploads
            .bytes()
            .saturating_sub(self.stores.clips_max_bytes);
        self.evict_clips(over, "the clip quota (outbox.clips_max_bytes) is full");
    }

    /// Hands chunks to the client — of upload `only`, or of the oldest first — within the
    /// bandwidth cap.
    pub(super) fn pump_chunks(&mut self, only: Option<&str>) {
        self.upload_rate.refill(Instant::now());
        loop {
            if !self.connected || !self.window.has_chunk_room() || !self.upload_rate.allows() {
                return;
            }
            let Some((manifest, index)) = self.next_chunk(only) else {
                return;
            };
            let data = match self.stores.uploads.chunk(&manifest.clip_id, index) {
                Ok(data) => data,
                Err(e) => {
                    error!("{}; the upload is abandoned", Chain(&e));
                    self.stores.uploads.remove(&manifest.clip_id);
                    continue;
                }
            };
            let admitted = match self.gate.admit_chunk(&manifest, index, &data) {
                Ok(admitted) => admitted,
                Err(refusal) => {
                    warn!(clip = %manifest.clip_id, "clip upload stopped: {refusal}");
                    self.stores.uploads.remove(&manifest.clip_id);
                    continue;
                }
            };
            if !self.hand_over(&admitted) {
                return;
            }
            self.upload_rate.spend(data.len());
            self.window.handed(Sent::Chunk {
                clip: manifest.clip_id.clone(),
                index,
            });
        }
    }

    /// The next chunk to send: the oldest clip's first chunk neither acknowledged nor on its
    /// way.
    fn next_chunk(&self, only: Option<&str>) -> Option<(Manifest, u32)> {
        self.stores.uploads.iter().find_map(|p| {
            if only.is_some_and(|id| id != p.manifest.clip_id) {
                return None;
            }
            p.next(&self.window.sending(&p.manifest.clip_id))
                .map(|i| (p.manifest.clone(), i))
        })
    }
}
