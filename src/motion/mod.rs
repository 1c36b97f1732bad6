//! Motion detection and motion events: pure Rust over plain GRAY8 buffers, no GStreamer
//! types, so it can be tested and benchmarked alone.

mod cells;
pub mod detector;
pub mod eval;
pub mod events;
mod transfer;

pub use detector::{Analysis, Detector, DetectorConfig, FrameSizeError, Rect};
pub use events::{Boundary, EndReason, EventConfig, EventMachine};
