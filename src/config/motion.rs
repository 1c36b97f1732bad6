//! `[motion]`: the analysis frames and the detector; `[motion.events]`: event timing.

use serde::Deserialize;

/// `[motion]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotionConfig {
    /// Analysis frame width in pixels (a multiple of 4).
    #[serde(default = "default_motion_width")]
    pub width: usize,
    #[serde(default = "default_motion_height")]
    pub height: usize,
    /// Analysis frames per second.
    #[serde(default = "default_motion_fps")]
    pub fps: u32,
    /// 1 (only strong changes) to 100 (the faintest).
    #[serde(default = "default_sensitivity")]
    pub sensitivity: u8,
    /// Smallest moving area, as a fraction of the zones' area.
    #[serde(default = "default_min_area")]
    pub min_area: f32,
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f32,
    /// How long something that stopped moving (or the ghost of something that left) stays
    /// motion before it becomes background: events end this long after motion stops.
    #[serde(default = "default_absorb", with = "crate::human_duration")]
    pub absorb: std::time::Duration,
    /// Learn where motion never stops (foliage, water, flags, rain) and demand more there.
    #[serde(default = "default_suppress_nuisance")]
    pub suppress_nuisance: bool,
    /// Where to look, in fractions of the frame; empty means everywhere.
    #[serde(default)]
    pub zones: Vec<crate::motion::Rect>,
    #[serde(default)]
    pub events: crate::motion::EventConfig,
}

impl Default for MotionConfig {
    fn default() -> Self {
        Self {
            width: default_motion_width(),
            height: default_motion_height(),
            fps: default_motion_fps(),
            sensitivity: default_sensitivity(),
            min_area: default_min_area(),
            learning_rate: default_learning_rate(),
            absorb: default_absorb(),
            suppress_nuisance: default_suppress_nuisance(),
            zones: Vec::new(),
            events: Default::default(),
        }
    }
}

impl MotionConfig {
    /// The spacing of the frames the detector looks at.
    pub fn period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1) / self.fps.max(1)
    }

    pub fn detector(&self) -> crate::motion::DetectorConfig {
        crate::motion::DetectorConfig {
            sensitivity: self.sensitivity,
            min_area: self.min_area,
            zones: self.zones.clone(),
            learning_rate: self.learning_rate,
            absorb: self.absorb,
            suppress_nuisance: self.suppress_nuisance,
            fps: self.fps,
        }
    }
}

fn default_motion_width() -> usize {
    320
}
fn default_motion_height() -> usize {
    180
}
fn default_motion_fps() -> u32 {
    5
}
fn default_sensitivity() -> u8 {
    crate::motion::DetectorConfig::default().sensitivity
}
fn default_min_area() -> f32 {
    crate::motion::DetectorConfig::default().min_area
}
fn default_learning_rate() -> f32 {
    crate::motion::DetectorConfig::default().learning_rate
}
fn default_absorb() -> std::time::Duration {
    crate::motion::DetectorConfig::default().absorb
}
fn default_suppress_nuisance() -> bool {
    crate::motion::DetectorConfig::default().suppress_nuisance
}
