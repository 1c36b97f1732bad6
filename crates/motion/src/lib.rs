//! Motion detection and motion events: pure Rust over plain GRAY8 buffers, no GStreamer
//! types and no I/O, so it can be tested and benchmarked alone.

#![deny(unsafe_code)]
#![deny(unreachable_pub)]

mod cells;
mod config;
mod detector;
pub mod eval;
mod events;
mod grid;
mod transfer;

pub mod human_duration;

pub use config::{DetectorConfig, Rect};
pub use detector::{Analysis, Detector, FrameSizeError};
pub use events::{Boundary, EndReason, EventConfig, EventMachine};
