//! Signed cloud commands: consent changes and erase, verified with Ed25519 before anything
//! acts on them.
//!
//! Wire form (the command topic `<prefix>/<device-id>/cmd`):
//! `{"body": "<JSON text>", "sig": "<hex Ed25519 signature of the body's bytes>"}` where the
//! body is `{"type": "consent", "device": ID, "issued_ms": N, "purpose": P, "choice":
//! "given"|"withdrawn"}`, `{"type": "erase", "device": ID, "issued_ms": N}`, or a clip
//! confirmation: `{"type": "clip_verified", "device": ID, "issued_ms": N, "clip_id": C,
//! "sha256": H}` or `{"type": "clip_missing", "device": ID, "issued_ms": N, "clip_id": C,
//! "chunks": [I, ...]}`. `device` must be
//! this device's id (so a command cannot be replayed to another device) and `issued_ms` must be
//! above every command accepted before (so it cannot be replayed to this one).

use std::path::PathBuf;

use ring::signature::{UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::policy::consent::Choice;

/// Larger payloads are refused before parsing.
pub const MAX_COMMAND_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Consent {
        device: String,
        issued_ms: u64,
        purpose: String,
        choice: Choice,
    },
    Erase {
        device: String,
        issued_ms: u64,
    },
    /// The cloud verified clip `clip_id` whole, its bytes hashing to `sha256`: the device
    /// may delete its copy (with `outbox.cloud_confirms`).
    ClipVerified {
        device: String,
        issued_ms: u64,
        clip_id: String,
        sha256: String,
    },
    /// The cloud has clip `clip_id`'s manifest but not these chunks: they go again.
    ClipMissing {
        device: String,
        issued_ms: u64,
        clip_id: String,
        chunks: Vec<u32>,
    },
}

impl Action {
    fn device(&self) -> &str {
        match self {
            Action::Consent { device, .. }
            | Action::Erase { device, .. }
            | Action::ClipVerified { device, .. }
            | Action::ClipMissing { device, .. } => device,
        }
    }

    pub fn issued_ms(&self) -> u64 {
        match self {
            Action::Consent { issued_ms, .. }
            | Action::Erase { issued_ms, .. }
            | Action::ClipVerified { issued_ms, .. }
            | Action::ClipMissing { issued_ms, .. } => *issued_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command of {0} bytes is over the {MAX_COMMAND_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("malformed command: {0}")]
    Malformed(String),
    #[error("signature does not verify with commands.verify_key")]
    BadSignature,
    #[error("command is for device {0:?}, not this one")]
    WrongDevice(String),
    #[error("replayed or stale command: issued_ms {issued} is not after the last accepted {last}")]
    Replayed { issued: u64, last: u64 },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    body: String,
    sig: String,
}

/// Checks a command's signature, addressee and freshness. Pure: the caller persists
/// `issued_ms` of each accepted command and passes the latest as `last_issued_ms`.
pub fn verify(
    bytes: &[u8],
    public_key: &[u8],
    device_id: &str,
    last_issued_ms: u64,
) -> Result<Action, CommandError> {
    if bytes.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLarge(bytes.len()));
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| CommandError::Malformed(e.to_string()))?;
    let sig = crate::hex::decode(&envelope.sig)
        .ok_or_else(|| CommandError::Malformed("`sig` is not hex".into()))?;
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(envelope.body.as_bytes(), &sig)
        .map_err(|_| CommandError::BadSignature)?;
    let action: Action =
        serde_json::from_str(&envelope.body).map_err(|e| CommandError::Malformed(e.to_string()))?;
    if action.device() != device_id {
        return Err(CommandError::WrongDevice(action.device().to_owned()));
    }
    if action.issued_ms() <= last_issued_ms {
        return Err(CommandError::Replayed {
            issued: action.issued_ms(),
            last: last_issued_ms,
        });
    }
    Ok(action)
}

/// The replay guard on disk: the newest `issued_ms` accepted. Erase keeps it (it holds no
/// personal data), so an old erase or consent command cannot be replayed afterwards.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    path: PathBuf,
}

#[derive(Serialize, Deserialize, Default)]
struct GuardState {
    last_issued_ms: u64,
}

impl ReplayGuard {
    /// The guard at `path` (`StateDir::replay_guard`).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The newest command accepted so far. A damaged guard cannot say, so it answers "now":
    /// every command issued before this moment is then refused as a possible replay, and
    /// commands issued from now on are taken.
    pub fn last(&self) -> u64 {
        match crate::durable::read_sealed_json::<GuardState>(&self.path) {
            Ok(state) => state.last_issued_ms,
            Err(e) if e.is_not_found() => 0,
            Err(e) => {
                tracing::warn!(file = %self.path.display(), "command replay guard unreadable ({e}): commands issued before now are refused");
                crate::record::now_ms()
            }
        }
    }

    pub fn accept(&self, issued_ms: u64) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&GuardState {
            last_issued_ms: issued_ms,
        })?;
        crate::durable::write_sealed(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn keypair() -> Ed25519KeyPair {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn signed(key: &Ed25519KeyPair, body: &str) -> Vec<u8> {
        serde_json::json!({"body": body, "sig": crate::hex::encode(key.sign(body.as_bytes()).as_ref())})
            .to_string()
            .into_bytes()
    }

    const BODY: &str =
        r#"{"type":"consent","device":"dev1","issued_ms":10,"purpose":"ux","choice":"given"}"#;

    #[test]
    fn accepts_a_fresh_signed_command_for_this_device() {
        let k = keypair();
        let a = verify(&signed(&k, BODY), k.public_key().as_ref(), "dev1", 9).unwrap();
        assert_eq!(
            a,
            Action::Consent {
                device: "dev1".into(),
                issued_ms: 10,
                purpose: "ux".into(),
                choice: Choice::Given
            }
        );
    }

    #[test]
    fn clip_confirmations_are_commands_too() {
        let k = keypair();
        let pk = k.public_key().as_ref().to_vec();
        let verified = r#"{"type":"clip_verified","device":"dev1","issued_ms":11,"clip_id":"c","sha256":"ab"}"#;
        assert_eq!(
            verify(&signed(&k, verified), &pk, "dev1", 9).unwrap(),
            Action::ClipVerified {
                device: "dev1".into(),
                issued_ms: 11,
                clip_id: "c".into(),
                sha256: "ab".into()
            }
        );
        let missing = r#"{"type":"clip_missing","device":"dev1","issued_ms":12,"clip_id":"c","chunks":[1,4]}"#;
        assert!(matches!(
            verify(&signed(&k, missing), &pk, "dev1", 9).unwrap(),
            Action::ClipMissing { chunks, .. } if chunks == [1, 4]
        ));
        assert_eq!(
            verify(&signed(&keypair(), missing), &pk, "dev1", 9),
            Err(CommandError::BadSignature),
            "an unsigned confirmation deletes nothing"
        );
    }

    #[test]
    fn refuses_forged_replayed_misaddressed_and_malformed() {
        let k = keypair();
        let other = keypair();
        let pk = k.public_key().as_ref().to_vec();
        assert_eq!(
            verify(&signed(&other, BODY), &pk, "dev1", 0),
            Err(CommandError::BadSignature)
        );
        assert!(matches!(
            verify(&signed(&k, BODY), &pk, "dev1", 10),
            Err(CommandError::Replayed { .. })
        ));
        assert!(matches!(
            verify(&signed(&k, BODY), &pk, "dev2", 0),
            Err(CommandError::WrongDevice(_))
        ));
        let tampered = String::from_utf8(signed(&k, BODY))
            .unwrap()
            .replace("given", "withdrawn");
        assert_eq!(
            verify(tampered.as_bytes(), &pk, "dev1", 0),
            Err(CommandError::BadSignature)
        );
        for junk in [
            &b"{}"[..],
            b"not json",
            b"{\"body\":\"x\",\"sig\":\"zz\"}",
            &[0xff; 5000][..],
        ] {
            assert!(verify(junk, &pk, "dev1", 0).is_err());
        }
        let unknown_type = signed(&k, r#"{"type":"reboot","device":"dev1","issued_ms":11}"#);
        assert!(matches!(
            verify(&unknown_type, &pk, "dev1", 0),
            Err(CommandError::Malformed(_))
        ));
    }

    #[test]
    fn replay_guard_persists() {
        let dir = tempfile::tempdir().unwrap();
        let g = ReplayGuard::new(dir.path().join("commands.json"));
        assert_eq!(g.last(), 0);
        g.accept(42).unwrap();
        assert_eq!(
            ReplayGuard::new(dir.path().join("commands.json")).last(),
            42
        );
    }
}
