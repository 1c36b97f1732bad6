//! The cloud's word on a clip (`outbox.cloud_confirms`): verified, missing chunks, or nothing
//! yet.

use std::time::{Duration, Instant};

use tracing::warn;

use super::{UploadError, Uploads};
use crate::wire::Manifest;

impl Uploads {
    /// The cloud verified clip `id` whole as `sha256`: the upload is done (its manifest is
    /// returned) if that is the clip's hash.
    pub fn confirmed(&mut self, id: &str, sha256: &str) -> Option<Manifest> {
        let p = self.active.get(id)?;
        if p.recording || p.manifest.sha256 != sha256 {
            warn!(clip = %id, "the cloud confirmed a clip other than this one ({sha256}); kept");
            return None;
        }
        let manifest = p.manifest.clone();
        self.remove(id);
        Some(manifest)
    }

    /// The cloud lacks `chunks` of clip `id`: they go again.
    pub fn missing(&mut self, id: &str, chunks: &[u32]) -> Result<(), UploadError> {
        let Some(p) = self.active.get_mut(id) else {
            return Ok(());
        };
        p.acked.retain(|i| !chunks.contains(i));
        p.all_sent_at = None;
        self.save_acked(id)
    }

    /// Uploads whose every chunk was acknowledged at least `wait` ago and that the cloud has
    /// not confirmed: their manifests, to announce again (the record may be what was lost).
    /// Each is waited for afresh from now.
    pub fn unconfirmed(&mut self, wait: Duration) -> Vec<Manifest> {
        if !self.cloud_confirms {
            return Vec::new();
        }
        self.active
            .values_mut()
            .filter(|p| p.all_sent_at.is_some_and(|at| at.elapsed() >= wait))
            .map(|p| {
                p.all_sent_at = Some(Instant::now());
                p.manifest.clone()
            })
            .collect()
    }
}
