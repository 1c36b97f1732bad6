//! What the detector is told: where to look, how sensitive to be, how fast to learn.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Cell edge in pixels: the unit of area and of regions.
pub(crate) const CELL: usize = 8;

/// A rectangle in fractions of the frame (0.0–1.0), as config writes zones and masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl Rect {
    pub const FULL: Rect = Rect {
        x: 0.0,
        y: 0.0,
        w: 1.0,
        h: 1.0,
    };

    pub(super) fn contains(&self, fx: f32, fy: f32) -> bool {
        fx >= self.x && fx < self.x + self.w && fy >= self.y && fy < self.y + self.h
    }
}

/// The longest gap between frames the detector learns over: after a longer one (a stall, a
/// camera coming back) it has not seen the scene for that long, and learns as if this long.
const MAX_GAP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    /// 1 (only large, strong changes) to 100 (the faintest): the contrast a change needs.
    pub sensitivity: u8,
    /// Smallest moving area that counts, as a fraction of the zones' area.
    pub min_area: f32,
    /// Where to look; empty means the whole frame.
    pub zones: Vec<Rect>,
    /// Background learning per frame, 0.0–1.0.
    pub learning_rate: f32,
    /// How long something that stopped moving (or the ghost of something that left) stays
    /// motion before it becomes background.
    pub absorb: Duration,
    /// Learn where motion never stops (foliage, water, flags, rain) and demand more there.
    pub suppress_nuisance: bool,
    /// Analysis frames per second: turns the times above into frames.
    pub fps: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            sensitivity: 60,
            min_area: 0.005,
            zones: Vec::new(),
            learning_rate: 0.05,
            absorb: Duration::from_secs(2),
            suppress_nuisance: true,
            fps: 5,
        }
    }
}

impl DetectorConfig {
    /// The residual a cell needs before noise is added, as a standard deviation in grey
    /// levels: 100 → 10, 60 → 20, 1 → about 35.
    pub(super) fn base_threshold(&self) -> f32 {
        let s = f32::from(self.sensitivity.clamp(1, 100));
        10.0 + (100.0 - s) * 0.25
    }

    pub(super) fn frames(&self, seconds: f32) -> u32 {
        (seconds * self.fps.max(1) as f32).round().max(1.0) as u32
    }

    /// Analysis-frame periods in `gap`: at least one, at most `MAX_GAP`'s.
    pub(super) fn periods(&self, gap: Duration) -> u32 {
        self.frames(gap.min(MAX_GAP).as_secs_f32())
    }
}
