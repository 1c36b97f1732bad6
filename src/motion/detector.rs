//! Motion detection over small GRAY8 frames. Pure: plain buffers in, a verdict out.
//!
//! Light is not motion, whatever shape it takes, so the detector compares structure after
//! taking the light out twice:
//!
//! 1. **Globally**, a monotone intensity transfer function ([`super::transfer`]) maps the
//!    background's grey levels to this frame's: gain with clipping, offsets, tone curves.
//! 2. **Locally**, each 8×8 cell fits the frame to its relit background as `a·bg + b`, with
//!    the gain `a` bounded: cloud shadows, headlight beams, WDR. What that cannot explain —
//!    the residual variance — is change of structure: an edge, texture that came or went.
//!    While the exposure changes, pixels the sensor clipped carry no structure and are left
//!    out.
//!
//! A cell changed when its residual beats a threshold set by the sensitivity and the frame's
//! own noise (the median residual over all cells, which also rises with compression
//! artefacts). Then:
//!
//! - a change over most of the frame at once, or the light jumping while the noise or the
//!   structure does, is the camera, not the scene (the IR-cut switch, an exposure jump the
//!   fit cannot follow): the background is rebased on the frame;
//! - **nuisance motion** (foliage, water, flags, rain): each cell learns the residual it
//!   usually shows (a running 90th percentile) and needs that much more, so a swaying tree
//!   raises its own bar while a person in front of it still clears it;
//! - a region starts only from cells where many pixels changed (not a raindrop's few) and,
//!   if the cell got brighter, more in structure than in brightness (not a beam); it then
//!   grows into weaker neighbours, so a small object is measured whole; a lone cell does
//!   not count;
//! - **events end**: a changed cell whose content has stopped changing (something that
//!   stopped, or the ghost of something that left) is absorbed into the background after
//!   `absorb`;
//! - the first two seconds only learn.
//!
//! Motion is the area of counted cells inside the zones, against the minimum area; regions
//! are the bounding boxes of connected cells.

use super::cells::{self, CellStats, Sums, CLIPPED_ABOVE, CLIPPED_BELOW};
use super::config::{DetectorConfig, Rect, CELL};
use super::grid::Grid;
use super::transfer::TransferFit;

/// A frame's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Moving area as a fraction of the zones' area.
    pub score: f32,
    /// Whether `score` reached the minimum area.
    pub motion: bool,
    /// Bounding boxes of moving regions, in fractions of the frame.
    pub regions: Vec<Rect>,
    /// How the light changed since the last frame: the transfer function's gain at mid-grey
    /// (1.0 = unchanged).
    pub lighting: f32,
}

impl Analysis {
    fn quiet(lighting: f32) -> Self {
        Self {
            score: 0.0,
            motion: false,
            regions: Vec::new(),
            lighting,
        }
    }
}

/// A frame that is not `width × height` GRAY8 bytes.
#[derive(Debug, thiserror::Error)]
#[error("analysis frame of {got} bytes; the detector expects {width}×{height} GRAY8")]
pub struct FrameSizeError {
    pub got: usize,
    pub width: usize,
    pub height: usize,
}

/// Seconds after the start that only learn.
const WARM_UP: f32 = 2.0;
/// Over this fraction of the zones changed at once, the change is the camera's.
const GLOBAL_CHANGE: f32 = 0.5;
/// A cell whose brightness the transfer function misses by this many base thresholds has
/// shifted; most cells shifting at once is the camera (materials that swap brightness
/// under IR light, which no monotone map follows).
const SHIFT_FACTOR: f32 = 2.0;
/// A cell that got brighter starts a moving region only if its change of structure
/// (residual variance) is at least this share of its change of brightness squared: a beam
/// lights a cell up far more than it changes its structure; an object's outline does both.
/// (Light only adds: a dark hand over a bright window starts one whatever its share.)
/// Cells next to a start then count by `WEAK` alone.
const STRUCTURE_SHARE: f32 = 0.25;
/// ...and if this share of its pixels changed clearly: raindrops and snowflakes are a few
/// pixels of a cell.
const SPREAD: f32 = 0.125;
/// Next to a counted cell, a cell counts with this share of the threshold.
const WEAK: f32 = 0.5;
/// Light within this factor of the last frame's is steady: clipped levels are trusted.
const STEADY: f32 = 1.03;
/// A light change of this factor from one frame to the next is a jump...
const LIGHT_JUMP: f32 = 1.15;
/// ...and with this share of the zones changed, or the noise up this many times, the
/// camera switched modes.
const SWITCH_CHANGE: f32 = 0.1;
const NOISE_JUMP: f32 = 2.0;
/// Noise is this many times the median residual in the threshold.
const NOISE_FACTOR: f32 = 6.0;
/// A cell's usual residual is the running `USUAL_QUANTILE` of its residuals, followed in
/// multiplicative steps of about `USUAL_STEP` a frame (a decaying maximum while warming
/// up): a
/// passer-by moves it a few steps, a swaying bush all the way, and it remembers gusts.
const USUAL_STEP: f32 = 0.1;
const USUAL_QUANTILE: f32 = 0.9;
/// A cell needs the threshold plus this many times what it usually shows beyond noise.
const USUAL_FACTOR: f32 = 2.0;

pub struct Detector {
    config: DetectorConfig,
    grid: Grid,
    /// Background in 8.8 fixed point.
    background: Vec<u16>,
    previous: Vec<u8>,
    /// Which cells lie in a zone.
    zone_cells: Vec<bool>,
    /// Per cell: the residual it usually shows, for nuisance suppression.
    usual: Vec<f32>,
    /// Per cell: frames it has been changed but still.
    still: Vec<u32>,
    frames: u64,
    /// The last frame's noise, to see a jump, and threshold.
    noise: f32,
    threshold: f32,
    // Scratch, reused between frames.
    fit: TransferFit,
    relight: [u16; 256],
    stats: Vec<CellStats>,
    changed: Vec<bool>,
    counted: Vec<bool>,
    absorbed: Vec<bool>,
    /// Per cell: what it needs next to a counted cell.
    weak: Vec<f32>,
    samples: Vec<f32>,
}

impl Detector {
    pub fn new(config: DetectorConfig, width: usize, height: usize) -> Self {
        let grid = Grid::new(width, height);
        let (cols, rows) = (grid.cols, grid.rows);
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
        let cells = grid.cells();
        Self {
            config,
            grid,
            background: vec![0; width * height],
            previous: vec![0; width * height],
            zone_cells,
            usual: vec![1.0; cells],
            still: vec![0; cells],
            frames: 0,
            noise: f32::MAX,
            threshold: 0.0,
            fit: TransferFit::default(),
            relight: [0; 256],
            stats: vec![CellStats::default(); cells],
            changed: vec![false; cells],
            counted: vec![false; cells],
            absorbed: vec![false; cells],
            weak: vec![0.0; cells],
            samples: Vec::with_capacity(cells),
        }
    }

    pub fn size(&self) -> (usize, usize) {
        (self.grid.width, self.grid.height)
    }

    /// Analyses one frame (`width × height` GRAY8 bytes, row-major, no padding).
    pub fn analyse(&mut self, frame: &[u8]) -> Result<Analysis, FrameSizeError> {
        if frame.len() != self.grid.width * self.grid.height {
            return Err(FrameSizeError {
                got: frame.len(),
                width: self.grid.width,
                height: self.grid.height,
            });
        }
        self.frames += 1;
        if self.frames == 1 {
            self.rebase(frame);
            return Ok(Analysis::quiet(1.0));
        }
        self.fit_light(frame);
        let lighting = f32::from(self.relight[128]) / 256.0 / 128.0;
        // A pixel is clearly different beyond the last frame's threshold (as a deviation).
        let far = self.threshold.sqrt() as u32;
        let trusted = if lighting.max(1e-3).ln().abs() < STEADY.ln() {
            0..=255
        } else {
            CLIPPED_BELOW..=CLIPPED_ABOVE
        };
        self.measure(frame, far, &trusted);

        // The threshold: sensitivity plus what this frame's noise makes of a still cell.
        let noise = self.median_zone(|s| s.residual);
        let base = self.config.base_threshold();
        let threshold = base * base + NOISE_FACTOR * noise;
        self.threshold = threshold;
        // Frame minus frame carries the noise of both.
        let still_threshold = (2.0 * NOISE_FACTOR * noise).max(base * base / 4.0);

        let (mut changed, mut shifted, mut zone) = (0, 0, 0);
        for i in 0..self.stats.len() {
            let s = &self.stats[i];
            self.changed[i] = self.zone_cells[i] && s.valid && s.residual > threshold;
            zone += usize::from(self.zone_cells[i]);
            changed += usize::from(self.changed[i]);
            shifted += usize::from(self.zone_cells[i] && s.shift.abs() > SHIFT_FACTOR * base);
        }
        let most = GLOBAL_CHANGE * zone as f32;
        // A jump of the light with structure changing widely, or the noise jumping with
        // it, is the camera switching modes (the IR-cut filter): materials swap
        // brightness, contrast and noise change, and no transfer function follows.
        // (The background was relit to the last frame's light, so `lighting` is the change.)
        let light_jumped = lighting.max(1e-3).ln().abs() > LIGHT_JUMP.ln();
        let switched = light_jumped
            && (changed as f32 > SWITCH_CHANGE * zone as f32 || noise > NOISE_JUMP * self.noise);
        self.noise = noise;
        if switched || changed as f32 > most || shifted as f32 > most {
            // Not the scene: the camera changed how it sees it.
            self.rebase(frame);
            return Ok(Analysis::quiet(lighting));
        }

        self.follow_activity(frame, threshold, noise, still_threshold);
        let warming_up = self.warming_up();
        self.drop_lone_cells();
        let moving = self.grow();
        let score = if zone == 0 || warming_up {
            0.0
        } else {
            moving as f32 / zone as f32
        };
        let motion = moving > 0 && score > 0.0 && score >= self.config.min_area;
        let regions = if motion {
            self.grid.regions(&self.counted)
        } else {
            Vec::new()
        };
        self.learn(frame, &trusted);
        Ok(Analysis {
            score,
            motion,
            regions,
            lighting,
        })
    }

    /// The first `WARM_UP` seconds learn the scene (what always moves there) and report
    /// nothing.
    fn warming_up(&self) -> bool {
        self.frames <= u64::from(self.config.frames(WARM_UP))
    }

    /// Starts over from this frame: the background is the frame, nothing is moving.
    fn rebase(&mut self, frame: &[u8]) {
        for (b, &p) in self.background.iter_mut().zip(frame) {
            *b = u16::from(p) << 8;
        }
        self.previous.copy_from_slice(frame);
        self.still.fill(0);
    }

    /// Fits the transfer function from the background to this frame over the zones.
    fn fit_light(&mut self, frame: &[u8]) {
        self.fit.clear();
        for y in (0..self.grid.height).step_by(2) {
            let cell_row = (y / CELL) * self.grid.cols;
            for x in (0..self.grid.width).step_by(2) {
                if self.zone_cells[cell_row + x / CELL] {
                    let i = y * self.grid.width + x;
                    self.fit.add((self.background[i] >> 8) as u8, frame[i]);
                }
            }
        }
        self.fit.table(&mut self.relight);
    }

    /// Per-cell statistics of the frame against its relit background.
    fn measure(&mut self, frame: &[u8], far: u32, trusted: &std::ops::RangeInclusive<u8>) {
        let mut sums = vec![Sums::default(); self.grid.cols];
        let expected: [u8; 256] =
            std::array::from_fn(|l| ((u32::from(self.relight[l]) + 128) >> 8).min(255) as u8);
        for cell_row in 0..self.grid.rows {
            sums.iter_mut().for_each(|s| *s = Sums::default());
            let rows = cell_row * CELL..((cell_row + 1) * CELL).min(self.grid.height);
            for y in rows {
                let line = y * self.grid.width..(y + 1) * self.grid.width;
                let (f, b) = (&frame[line.clone()], &self.background[line]);
                for (s, (f, b)) in sums.iter_mut().zip(f.chunks(CELL).zip(b.chunks(CELL))) {
                    s.add_run(f, b, &expected, far, trusted);
                }
            }
            let base = cell_row * self.grid.cols;
            for (col, s) in sums.iter().enumerate() {
                self.stats[base + col] = s.stats();
            }
        }
    }

    /// The median of a statistic over the valid cells in the zones.
    fn median_zone(&mut self, of: impl Fn(&CellStats) -> f32) -> f32 {
        self.samples.clear();
        self.samples.extend(
            self.stats
                .iter()
                .zip(&self.zone_cells)
                .filter(|(s, z)| **z && s.valid)
                .map(|(s, _)| of(s)),
        );
        if self.samples.is_empty() {
            return 0.0;
        }
        let mid = self.samples.len() / 2;
        let (_, m, _) = self.samples.select_nth_unstable_by(mid, f32::total_cmp);
        *m
    }

    /// Updates each cell's usual residual and stillness. A cell counts when its change beats
    /// the threshold plus what the cell usually shows (foliage, water, flags and rain raise
    /// that) and is not a still thing being absorbed.
    fn follow_activity(&mut self, frame: &[u8], threshold: f32, noise: f32, still_threshold: f32) {
        let warming_up = self.warming_up();
        let (up, down) = (
            (USUAL_STEP * USUAL_QUANTILE).exp(),
            (-USUAL_STEP * (1.0 - USUAL_QUANTILE)).exp(),
        );
        let absorb_after = self.config.frames(self.config.absorb.as_secs_f32());
        for i in 0..self.stats.len() {
            let CellStats {
                residual,
                shift,
                spread,
                ..
            } = self.stats[i];
            let changed = self.changed[i];
            let usual = &mut self.usual[i];
            *usual = if warming_up {
                (*usual * 0.85).max(residual)
            } else {
                (*usual * if residual > *usual { up } else { down }).max(1.0)
            };
            let still = changed && self.stir(frame, i) <= still_threshold;
            self.still[i] = if still { self.still[i] + 1 } else { 0 };
            self.absorbed[i] = self.still[i] >= absorb_after;
            let nuisance = if self.config.suppress_nuisance {
                USUAL_FACTOR * (self.usual[i] - noise).max(0.0)
            } else {
                0.0
            };
            let needed = threshold + nuisance;
            self.weak[i] = WEAK * threshold + nuisance;
            let lit_up = shift > 0.0 && residual < STRUCTURE_SHARE * shift * shift;
            let structural = !lit_up && spread >= SPREAD;
            self.counted[i] = changed && !self.absorbed[i] && structural && residual > needed;
        }
    }

    /// How much cell `i`'s content moved since the last frame.
    fn stir(&self, frame: &[u8], i: usize) -> f32 {
        let (row, col) = (i / self.grid.cols, i % self.grid.cols);
        let xs = col * CELL..((col + 1) * CELL).min(self.grid.width);
        let ys = row * CELL..((row + 1) * CELL).min(self.grid.height);
        cells::stir(ys.map(|y| {
            let span = y * self.grid.width + xs.start..y * self.grid.width + xs.end;
            (&frame[span.clone()], &self.previous[span])
        }))
    }

    /// Drops counted cells without a counted neighbour (a raindrop, a leaf, a compression
    /// block) and returns how many are left.
    fn drop_lone_cells(&mut self) -> usize {
        let lone: Vec<usize> = (0..self.counted.len())
            .filter(|&i| self.counted[i] && !self.grid.neighbours(i).any(|j| self.counted[j]))
            .collect();
        for i in lone {
            self.counted[i] = false;
            self.changed[i] = false; // learn it at the full rate
        }
        self.counted.iter().filter(|c| **c).count()
    }

    /// Grows counted cells into neighbours that changed by a `WEAK` share of the threshold
    /// (plus all of what their own nuisance asks): an object's inside is flatter than its
    /// outline, and a small one should be measured whole. Returns how many cells count.
    fn grow(&mut self) -> usize {
        let mut stack: Vec<usize> = (0..self.counted.len())
            .filter(|&i| self.counted[i])
            .collect();
        while let Some(i) = stack.pop() {
            let grid = self.grid;
            for j in grid.neighbours(i) {
                let s = &self.stats[j];
                if !self.counted[j]
                    && self.zone_cells[j]
                    && s.valid
                    && !self.absorbed[j]
                    && s.residual > self.weak[j]
                {
                    self.counted[j] = true;
                    self.changed[j] = true;
                    stack.push(j);
                }
            }
        }
        self.counted.iter().filter(|c| **c).count()
    }

    /// Follows the scene: the light at once (the background is relit through the transfer
    /// function), quiet cells at the learning rate, changed ones slowly, absorbed ones at
    /// once.
    fn learn(&mut self, frame: &[u8], trusted: &std::ops::RangeInclusive<u8>) {
        let fast = (self.config.learning_rate.clamp(0.0, 1.0) * 256.0) as i32;
        let slow = fast / 8;
        let relight = &self.relight;
        for (y, (bg_row, (f_row, prev_row))) in self
            .background
            .chunks_exact_mut(self.grid.width)
            .zip(
                frame
                    .chunks_exact(self.grid.width)
                    .zip(self.previous.chunks_exact_mut(self.grid.width)),
            )
            .enumerate()
        {
            let cell_row = (y / CELL) * self.grid.cols;
            for (col, ((b, p), prev)) in bg_row
                .chunks_mut(CELL)
                .zip(f_row.chunks(CELL))
                .zip(prev_row.chunks_mut(CELL))
                .enumerate()
            {
                let cell = cell_row + col;
                let rate = if self.absorbed[cell] {
                    256
                } else if self.changed[cell] {
                    slow
                } else {
                    fast
                };
                for (b, &p) in b.iter_mut().zip(p) {
                    if !trusted.contains(&((*b >> 8) as u8)) || !trusted.contains(&p) {
                        // Clipped now or when learned while the exposure changes: it holds
                        // nothing to relight or compare, so the background is the frame.
                        *b = u16::from(p) << 8;
                        continue;
                    }
                    // The level through the transfer function, its fraction kept as it was.
                    let lit = i32::from(relight[usize::from(*b >> 8)]) + i32::from(*b & 0xff);
                    let target = i32::from(p) << 8;
                    let next = lit + (((target - lit) * rate) >> 8);
                    *b = next.clamp(0, i32::from(u16::MAX)) as u16;
                }
                prev.copy_from_slice(p);
            }
        }
        for (i, absorbed) in self.absorbed.iter().enumerate() {
            if *absorbed {
                self.still[i] = 0;
            }
        }
    }
}

#[cfg(test)]
#[path = "detector_tests.rs"]
mod tests;
