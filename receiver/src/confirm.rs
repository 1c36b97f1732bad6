//! Confirmations to the device: signed `clip_verified` and `clip_missing` commands on its
//! command topic, so a device keeping clips until the cloud has them (`outbox.cloud_confirms`)
//! deletes its copy only once a clip is verified here, and sends again what did not come.

use std::path::Path;

use anyhow::Context;
use ring::signature::Ed25519KeyPair;
use serde_json::json;

use camagent::wire::topic;

/// Chunk indices named in one `clip_missing` (a command stays within the device's 4 KiB).
pub(crate) const MISSING_PER_COMMAND: usize = 400;

pub(crate) struct Confirmer {
    key: Ed25519KeyPair,
    prefix: String,
    /// A device takes only commands issued after the last it accepted.
    last_issued: u64,
}

impl Confirmer {
    /// Signs with the Ed25519 key in `path` (PKCS#8 DER): the key whose public half devices
    /// hold as `commands.verify_key`.
    pub(crate) fn load(path: &Path, prefix: &str) -> anyhow::Result<Self> {
        let der = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let key = Ed25519KeyPair::from_pkcs8(&der)
            .map_err(|e| anyhow::anyhow!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        Ok(Self {
            key,
            prefix: prefix.to_owned(),
            last_issued: 0,
        })
    }

    pub(crate) fn verified(
        &mut self,
        device: &str,
        clip_id: &str,
        sha256: &str,
    ) -> (String, Vec<u8>) {
        self.command(
            device,
            json!({"type": "clip_verified", "clip_id": clip_id, "sha256": sha256}),
        )
    }

    pub(crate) fn missing(
        &mut self,
        device: &str,
        clip_id: &str,
        chunks: &[u32],
    ) -> (String, Vec<u8>) {
        let chunks = &chunks[..chunks.len().min(MISSING_PER_COMMAND)];
        self.command(
            device,
            json!({"type": "clip_missing", "clip_id": clip_id, "chunks": chunks}),
        )
    }

    /// `body` for `device`, stamped and signed, and the topic it goes to.
    fn command(&mut self, device: &str, mut body: serde_json::Value) -> (String, Vec<u8>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_issued = now.max(self.last_issued + 1);
        body["device"] = json!(device);
        body["issued_ms"] = json!(self.last_issued);
        let body = body.to_string();
        let sig = camagent::hex::encode(self.key.sign(body.as_bytes()).as_ref());
        let topic = format!("{}/{device}/{}", self.prefix, topic::COMMAND_LEVEL);
        (
            topic,
            json!({"body": body, "sig": sig}).to_string().into_bytes(),
        )
    }
}
