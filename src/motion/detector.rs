//! Motion detection over small GRAY8 frames. Pure: plain buffers in, a verdict out.
//!
//! 1. A per-pixel background model (running average in 8.8 fixed point).
//! 2. Global lighting is estimated as the median ratio of frame to background over the
//!    detection zones; the background is scaled by it before differencing. A median is
//!    unmoved by real motion covering less than half the zone, so a light switched on while
//!    someone walks in still leaves the walker standing out.
//! 3. A pixel changed if its difference beats a threshold set by the sensitivity and the
//!    measured noise (median absolute difference); 8×8 cells with enough changed pixels are
//!    active, which drops sensor speckle without blurring.
//! 4. Motion is the active area inside the zones, compared with the minimum area. Regions are
//!    the bounding boxes of connected active cells.
//! 5. The background learns from inactive cells at the configured rate and from active ones
//!    at a quarter of it, so a parked car becomes background but a walker does not.

use serde::{Deserialize, Serialize};

/// Cell edge in pixels: the unit of area and of regions.
pub const CELL: usize = 8;

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

    fn contains(&self, fx: f32, fy: f32) -> bool {
        fx >= self.x && fx < self.x + self.w && fy >= self.y && fy < self.y + self.h
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// 1 (only large, strong changes) to 100 (the faintest): sets the pixel threshold.
    #[serde(default = "default_sensitivity")]
    pub sensitivity: u8,
    /// Smallest moving area that counts, as a fraction of the zones' area.
    #[serde(default = "default_min_area")]
    pub min_area: f32,
    /// Where to look; empty means the whole frame.
    #[serde(default)]
    pub zones: Vec<Rect>,
    /// Background learning per frame, 0.0–1.0.
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f32,
}

fn default_sensitivity() -> u8 {
    60
}
fn default_min_area() -> f32 {
    0.005
}
fn default_learning_rate() -> f32 {
    0.05
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            sensitivity: default_sensitivity(),
            min_area: default_min_area(),
            zones: Vec::new(),
            learning_rate: default_learning_rate(),
        }
    }
}

impl DetectorConfig {
    /// Pixel difference (0–255) that counts as change before noise is added.
    fn base_threshold(&self) -> u16 {
        let s = u16::from(self.sensitivity.clamp(1, 100));
        // 100 → 6, 60 → 18, 1 → 36 grey levels.
        6 + (100 - s) * 30 / 99
    }
}

/// A frame's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Moving area as a fraction of the zones' area.
    pub score: f32,
    /// Whether `score` reached the minimum area.
    pub motion: bool,
    /// Bounding boxes of moving regions, in fractions of the frame.
    pub regions: Vec<Rect>,
    /// The global lighting gain that was compensated (1.0 = unchanged).
    pub lighting: f32,
}

pub struct Detector {
    config: DetectorConfig,
    width: usize,
    height: usize,
    /// Background in 8.8 fixed point.
    background: Vec<u16>,
    /// Which cells lie in a zone (cells wide × cells high).
    zone_cells: Vec<bool>,
    cols: usize,
    rows: usize,
    primed: bool,
    /// Scratch: per-pixel changed flags, reused between frames.
    changed: Vec<u8>,
    samples: Vec<u16>,
}

impl Detector {
    pub fn new(config: DetectorConfig, width: usize, height: usize) -> Self {
        let cols = width.div_ceil(CELL);
        let rows = height.div_ceil(CELL);
        let zones = if config.zones.is_empty() {
            vec![Rect::FULL]
        } else {
            config.zones.clone()
        };
        let zone_cells = (0..rows)
            .flat_map(|r| (0..cols).map(move |c| (r, c)))
            .map(|(r, c)| {
                let fx = ((c * CELL) as f32 + CELL as f32 / 2.0) / width as f32;
                let fy = ((r * CELL) as f32 + CELL as f32 / 2.0) / height as f32;
                zones.iter().any(|z| z.contains(fx, fy))
            })
            .collect();
        Self {
            config,
            width,
            height,
            background: vec![0; width * height],
            zone_cells,
            cols,
            rows,
            primed: false,
            changed: vec![0; width * height],
            samples: Vec::with_capacity(1024),
        }
    }

    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Analyses one frame (`width × height` GRAY8 bytes, row-major, no padding).
    pub fn analyse(&mut self, frame: &[u8]) -> Analysis {
        assert_eq!(frame.len(), self.width * self.height, "frame size");
        if !self.primed {
            for (b, &p) in self.background.iter_mut().zip(frame) {
                *b = u16::from(p) << 8;
            }
            self.primed = true;
            return Analysis {
                score: 0.0,
                motion: false,
                regions: Vec::new(),
                lighting: 1.0,
            };
        }

        let gain = self.lighting_gain(frame);
        let gain_q = (gain * 256.0).round() as u32;
        let noise = self.noise(frame, gain_q);
        let threshold = u32::from(self.config.base_threshold()) + 2 * u32::from(noise);

        // Changed pixels against the lighting-compensated background.
        for ((c, &p), &b) in self.changed.iter_mut().zip(frame).zip(&self.background) {
            let expected = (u32::from(b) * gain_q) >> 16;
            *c = u8::from(u32::from(p).abs_diff(expected) > threshold);
        }

        let (active, zone_cells_total) = self.active_cells();
        let moving = active.iter().filter(|a| **a).count();
        let score = if zone_cells_total == 0 {
            0.0
        } else {
            moving as f32 / zone_cells_total as f32
        };
        let motion = moving > 0 && score >= self.config.min_area;
        let regions = if motion {
            self.regions(&active)
        } else {
            Vec::new()
        };
        self.learn(frame, &active, gain_q);
        Analysis {
            score,
            motion,
            regions,
            lighting: gain,
        }
    }

    /// Median of frame/background over a sparse grid of zone pixels.
    fn lighting_gain(&mut self, frame: &[u8]) -> f32 {
        self.samples.clear();
        let step = (self.width * self.height / 1024).max(1);
        for i in (0..frame.len()).step_by(step) {
            if !self.zone_cells[self.cell_of(i)] {
                continue;
            }
            let bg = self.background[i] >> 8;
            if bg >= 16 {
                // Ratio in 8.8, bounded so a black background pixel cannot dominate.
                self.samples
                    .push(((u32::from(frame[i]) << 8) / u32::from(bg)).min(4096) as u16);
            }
        }
        if self.samples.is_empty() {
            return 1.0;
        }
        let mid = self.samples.len() / 2;
        let (_, median, _) = self.samples.select_nth_unstable(mid);
        f32::from(*median) / 256.0
    }

    /// Median absolute difference after compensation: the sensor's noise now.
    fn noise(&mut self, frame: &[u8], gain_q: u32) -> u8 {
        self.samples.clear();
        let step = (self.width * self.height / 1024).max(1);
        for i in (0..frame.len()).step_by(step) {
            let expected = (u32::from(self.background[i]) * gain_q) >> 16;
            self.samples
                .push(u32::from(frame[i]).abs_diff(expected).min(255) as u16);
        }
        if self.samples.is_empty() {
            return 0;
        }
        let mid = self.samples.len() / 2;
        let (_, median, _) = self.samples.select_nth_unstable(mid);
        (*median).min(64) as u8
    }

    fn cell_of(&self, i: usize) -> usize {
        let (x, y) = (i % self.width, i / self.width);
        (y / CELL) * self.cols + x / CELL
    }

    /// Cells in a zone with at least a quarter of their pixels changed.
    fn active_cells(&self) -> (Vec<bool>, usize) {
        let mut counts = vec![0u16; self.cols * self.rows];
        for (row, line) in self.changed.chunks_exact(self.width).enumerate() {
            let base = (row / CELL) * self.cols;
            for (col, chunk) in line.chunks(CELL).enumerate() {
                counts[base + col] += chunk.iter().map(|&c| u16::from(c)).sum::<u16>();
            }
        }
        let mut total = 0;
        let active = counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                if !self.zone_cells[i] {
                    return false;
                }
                total += 1;
                let (r, c) = (i / self.cols, i % self.cols);
                let w = (self.width - c * CELL).min(CELL);
                let h = (self.height - r * CELL).min(CELL);
                usize::from(n) * 4 >= w * h
            })
            .collect();
        (active, total)
    }

    /// Bounding boxes of 8-connected groups of active cells.
    fn regions(&self, active: &[bool]) -> Vec<Rect> {
        let mut seen = vec![false; active.len()];
        let mut out = Vec::new();
        let mut stack = Vec::new();
        for start in 0..active.len() {
            if !active[start] || seen[start] {
                continue;
            }
            let (mut c0, mut r0, mut c1, mut r1) = (usize::MAX, usize::MAX, 0, 0);
            stack.push(start);
            seen[start] = true;
            while let Some(i) = stack.pop() {
                let (r, c) = (i / self.cols, i % self.cols);
                (c0, r0, c1, r1) = (c0.min(c), r0.min(r), c1.max(c), r1.max(r));
                for dr in -1i32..=1 {
                    for dc in -1i32..=1 {
                        let (nr, nc) = (r as i32 + dr, c as i32 + dc);
                        if nr < 0 || nc < 0 || nr >= self.rows as i32 || nc >= self.cols as i32 {
                            continue;
                        }
                        let j = nr as usize * self.cols + nc as usize;
                        if active[j] && !seen[j] {
                            seen[j] = true;
                            stack.push(j);
                        }
                    }
                }
            }
            let (w, h) = (self.width as f32, self.height as f32);
            out.push(Rect {
                x: (c0 * CELL) as f32 / w,
                y: (r0 * CELL) as f32 / h,
                w: (((c1 + 1) * CELL).min(self.width) - c0 * CELL) as f32 / w,
                h: (((r1 + 1) * CELL).min(self.height) - r0 * CELL) as f32 / h,
            });
        }
        out
    }

    /// Follows the scene: the compensated lighting at once, the content at the learning rate.
    fn learn(&mut self, frame: &[u8], active: &[bool], gain_q: u32) {
        let fast = (self.config.learning_rate.clamp(0.0, 1.0) * 256.0) as u32;
        let slow = fast / 4;
        for (i, (b, &p)) in self.background.iter_mut().zip(frame).enumerate() {
            let scaled = (u32::from(*b) * gain_q) >> 8;
            let target = u32::from(p) << 8;
            let (x, y) = (i % self.width, i / self.width);
            let rate = if active[(y / CELL) * self.cols + x / CELL] {
                slow
            } else {
                fast
            };
            let next = (scaled * (256 - rate) + target * rate) >> 8;
            *b = next.min(u32::from(u16::MAX)) as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 320;
    const H: usize = 180;

    /// A textured still scene with sensor noise, deterministic per `seed`.
    fn scene(seed: u64, brightness: f32) -> Vec<u8> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..W * H)
            .map(|i| {
                let (x, y) = ((i % W) as f32, (i / W) as f32);
                let base = 90.0 + 40.0 * ((x / 23.0).sin() * (y / 17.0).cos());
                let noisy = base * brightness + (rng.f32() - 0.5) * 8.0;
                noisy.clamp(0.0, 255.0) as u8
            })
            .collect()
    }

    /// Paints a bright box (an object) at pixel rect.
    fn with_box(mut frame: Vec<u8>, x: usize, y: usize, w: usize, h: usize) -> Vec<u8> {
        for row in y..(y + h).min(H) {
            for col in x..(x + w).min(W) {
                frame[row * W + col] = 230;
            }
        }
        frame
    }

    fn run(detector: &mut Detector, frames: impl Iterator<Item = Vec<u8>>) -> Vec<Analysis> {
        frames.map(|f| detector.analyse(&f)).collect()
    }

    #[test]
    fn still_noisy_scene_has_no_motion() {
        let mut d = Detector::new(DetectorConfig::default(), W, H);
        let out = run(&mut d, (0..60).map(|i| scene(i, 1.0)));
        assert!(
            out.iter().all(|a| !a.motion),
            "{:?}",
            out.iter().map(|a| a.score).collect::<Vec<_>>()
        );
    }

    #[test]
    fn object_entering_is_motion_with_its_region() {
        let mut d = Detector::new(DetectorConfig::default(), W, H);
        run(&mut d, (0..10).map(|i| scene(i, 1.0)));
        let a = d.analyse(&with_box(scene(99, 1.0), 100, 60, 40, 40));
        assert!(a.motion, "{a:?}");
        assert_eq!(a.regions.len(), 1);
        let r = a.regions[0];
        assert!(
            (r.x - 100.0 / W as f32).abs() < 0.03 && (r.y - 60.0 / H as f32).abs() < 0.05,
            "{r:?}"
        );
    }

    #[test]
    fn brightness_step_and_slow_ramp_are_not_motion() {
        let mut d = Detector::new(DetectorConfig::default(), W, H);
        run(&mut d, (0..10).map(|i| scene(i, 1.0)));
        // Lights on: everything 40 % brighter at once, then it stays so.
        let step = run(&mut d, (10..30).map(|i| scene(i, 1.4)));
        assert!(
            step.iter().all(|a| !a.motion),
            "step: {:?}",
            step.iter().map(|a| a.score).collect::<Vec<_>>()
        );
        assert!((step[0].lighting - 1.4).abs() < 0.1, "{}", step[0].lighting);
        // Dusk: 1 % darker a frame for 60 frames.
        let ramp = run(
            &mut d,
            (0..60).map(|i| scene(100 + i, 1.4 * 0.99f32.powi(i as i32))),
        );
        assert!(ramp.iter().all(|a| !a.motion));
    }

    #[test]
    fn motion_during_a_lighting_change_is_still_seen() {
        let mut d = Detector::new(DetectorConfig::default(), W, H);
        run(&mut d, (0..10).map(|i| scene(i, 1.0)));
        let a = d.analyse(&with_box(scene(50, 0.6), 150, 50, 40, 50));
        assert!(a.motion, "{a:?}");
        assert_eq!(a.regions.len(), 1, "{a:?}");
    }

    #[test]
    fn motion_outside_the_zones_and_tiny_motion_are_ignored() {
        let config = DetectorConfig {
            zones: vec![Rect {
                x: 0.5,
                y: 0.0,
                w: 0.5,
                h: 1.0,
            }],
            ..DetectorConfig::default()
        };
        let mut d = Detector::new(config, W, H);
        run(&mut d, (0..10).map(|i| scene(i, 1.0)));
        assert!(
            !d.analyse(&with_box(scene(20, 1.0), 20, 40, 60, 60)).motion,
            "left half is outside"
        );
        assert!(d.analyse(&with_box(scene(21, 1.0), 200, 40, 60, 60)).motion);

        let tiny = DetectorConfig {
            min_area: 0.05,
            ..DetectorConfig::default()
        };
        let mut d = Detector::new(tiny, W, H);
        run(&mut d, (0..10).map(|i| scene(i, 1.0)));
        assert!(
            !d.analyse(&with_box(scene(30, 1.0), 100, 100, 12, 12))
                .motion
        );
    }

    #[test]
    fn sensitivity_means_something() {
        let faint = |sensitivity| {
            let mut d = Detector::new(
                DetectorConfig {
                    sensitivity,
                    ..DetectorConfig::default()
                },
                W,
                H,
            );
            run(&mut d, (0..10).map(|i| scene(i, 1.0)));
            let mut f = scene(40, 1.0);
            for row in 60..110 {
                for col in 100..160 {
                    f[row * W + col] = f[row * W + col].saturating_add(22);
                }
            }
            d.analyse(&f).motion
        };
        assert!(faint(90), "a sensitive detector sees a faint change");
        assert!(!faint(10), "an insensitive one does not");
    }

    #[test]
    fn a_parked_object_becomes_background() {
        let mut d = Detector::new(DetectorConfig::default(), W, H);
        run(&mut d, (0..10).map(|i| scene(i, 1.0)));
        let parked = run(
            &mut d,
            (0..200).map(|i| with_box(scene(200 + i, 1.0), 100, 60, 40, 40)),
        );
        assert!(parked[0].motion);
        assert!(!parked.last().unwrap().motion);
    }
}
