//! The wire contract (README, "Topic and payload contract") in one place, shared by the agent
//! and the reference receiver: the closed vocabularies (the names of fields and flows in
//! payloads and topics), topics, the record envelope, event data, clip manifests and chunk
//! framing. No I/O here.

#![deny(unsafe_code)]
#![deny(unreachable_pub)]

pub mod chunk;
pub mod envelope;
pub mod event;
pub mod hex;
pub mod manifest;
pub mod payload;
pub mod topic;
pub mod vocabulary;

pub use chunk::{ChunkError, ChunkHeader};
pub use envelope::{Envelope, PAYLOAD_SCHEMA};
pub use event::{AlertEvent, ClipEvents};
pub use manifest::Manifest;
