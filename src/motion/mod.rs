//! Motion detection and motion events: pure Rust over plain GRAY8 buffers, no GStreamer
//! types, so it can be tested and benchmarked alone.

mod cells;
mod config;
pub mod detector;
pub mod eval;
pub mod events;
mod grid;
mod transfer;

pub use config::{DetectorConfig, Rect};
pub use detector::{Analysis, Detector, FrameSizeError};
pub use events::{Boundary, EndReason, EventConfig, EventMachine};
