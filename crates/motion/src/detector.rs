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
//!    out: in the frame, and in the background where it piled up at the end of the video
//!    range (235 or 255). When the light spreads such a pile out again, the background is
//!    rebased: it never saw what the clipping hid.
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
//! - two changes show no structure and still count: a cell that darkens as a whole all at
//!   once (a hand close to the lens over a flat sky: light is taken away that fast only by
//!   something in its way), and a cell that shows again the scene from before something
//!   stopped there and was absorbed (it left, even if leaving only brightens the cell);
//! - **events end**: a changed cell whose content has stopped changing (something that
//!   stopped, or the ghost of something that left) is absorbed into the background after
//!   `absorb`;
//! - the first two seconds only learn.
//!
//! Frames may come with gaps: decoding on demand sends only keyframes while the scene is
//! still. What each cell usually shows, and the warm-up, follow media time, so a swaying
//! tree seen every two seconds raises its bar as fast as one seen at every frame. The
//! background and stillness follow the frames seen: one picture is a poor sample of the
//! seconds before it, and two pictures apart do not show that something stayed still
//! between them.
//!
//! Motion is the area of counted cells inside the zones, against the minimum area; regions
//! are the bounding boxes of connected cells.
//!
//! This file is over 400 lines: the steps above are one pass over shared per-cell state, and
//! their tuned thresholds sit together at the top, each with why it has its value.

mod background;

use std::time::Duration;

use super::cells::{self, CellStats, Sums, Trusted, CLIPPED_ABOVE, CLIPPED_BELOW};
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
/// A cell that darkened as a whole (this share of its pixels) by `SHIFT_FACTOR` base
/// thresholds since the last frame, from where its background was, and in its pixels (not
/// only against a background the light relit), is something close in front of the lens or
/// of a flat surface (a hand over a bright sky), even with no change of structure to show:
/// light can be taken away that fast only by something in its way. It counts until it
/// brightens back by half or is absorbed.
const DARKENED_SPREAD: f32 = 0.5;
/// Next to a counted cell, a cell counts with this share of the threshold.
const WEAK: f32 = 0.5;
/// Light within this factor of the last frame's is steady: clipped levels are trusted.
const STEADY: f32 = 1.03;
/// Over this share of the background learned clipped and now uncovered by the light, the
/// background is rebased.
const REVEALED: f32 = 0.02;
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
    /// The scene as it was before something stopped there and was absorbed, in the cells
    /// that `holds`: when the frame matches it again, the thing left (a ghost, even one
    /// that only brightens the cell).
    before: Vec<u8>,
    holds: Vec<bool>,
    /// Per cell: this frame shows the scene from before again.
    left: Vec<bool>,
    /// Per cell: the last frame's shift, and whether it darkened suddenly.
    last_shift: Vec<f32>,
    darkened: Vec<bool>,
    /// Analysis-frame periods since the first frame, and the last frame's media time.
    periods: u64,
    last_pts: Option<Duration>,
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
    sums: Vec<Sums>,
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
            before: vec![0; width * height],
            holds: vec![false; cells],
            left: vec![false; cells],
            last_shift: vec![0.0; cells],
            darkened: vec![false; cells],
            periods: 0,
            last_pts: None,
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
            sums: vec![Sums::default(); cols],
        }
    }

    pub fn size(&self) -> (usize, usize) {
        (self.grid.width, self.grid.height)
    }

    /// Analyses one frame (`width × height` GRAY8 bytes, row-major, no padding) at media
    /// time `pts`.
    pub fn analyse(&mut self, pts: Duration, frame: &[u8]) -> Result<Analysis, FrameSizeError> {
        if frame.len() != self.grid.width * self.grid.height {
            return Err(FrameSizeError {
                got: frame.len(),
                width: self.grid.width,
                height: self.grid.height,
            });
        }
        let Some(last) = self.last_pts.replace(pts) else {
            self.rebase(frame);
            return Ok(Analysis::quiet(1.0));
        };
        let steps = self.config.periods(pts.saturating_sub(last));
        self.periods += u64::from(steps);
        self.fit_light(frame);
        let lighting = f32::from(self.relight[128]) / 256.0 / 128.0;
        // A pixel is clearly different beyond the last frame's threshold (as a deviation).
        let far = self.threshold.sqrt() as u32;
        let trusted = if lighting.max(1e-3).ln().abs() < STEADY.ln() {
            Trusted::ALL
        } else {
            let clipped = self.fit.clipped();
            if clipped.revealed > REVEALED {
                // The light uncovered what the sensor had clipped when the background was
                // learned: the background holds nothing there, or around it (ringing).
                self.rebase(frame);
                return Ok(Analysis::quiet(lighting));
            }
            Trusted {
                frame: (CLIPPED_BELOW, CLIPPED_ABOVE),
                background: (
                    clipped.trusted.0.max(CLIPPED_BELOW),
                    clipped.trusted.1.min(CLIPPED_ABOVE),
                ),
            }
        };
        self.measure(frame, far, trusted);

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

        self.follow_activity(frame, steps, threshold, noise, still_threshold);
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
        self.learn(frame, trusted);
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
        self.periods < u64::from(self.config.frames(WARM_UP))
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

    /// Updates each cell's usual residual (over `steps` frame periods) and stillness. A cell
    /// counts when its change beats the threshold plus what the cell usually shows (foliage,
    /// water, flags and rain raise that) and is not a still thing being absorbed.
    fn follow_activity(
        &mut self,
        frame: &[u8],
        steps: u32,
        threshold: f32,
        noise: f32,
        still_threshold: f32,
    ) {
        let warming_up = self.warming_up();
        let (one_up, one_down) = (
            (USUAL_STEP * USUAL_QUANTILE).exp(),
            (-USUAL_STEP * (1.0 - USUAL_QUANTILE)).exp(),
        );
        let (up, down, fade) = (
            one_up.powi(steps as i32),
            one_down.powi(steps as i32),
            0.85f32.powi(steps as i32),
        );
        let absorb_after = self.config.frames(self.config.absorb.as_secs_f32());
        let dark = SHIFT_FACTOR * self.config.base_threshold();
        for i in 0..self.stats.len() {
            let CellStats {
                residual,
                shift,
                spread,
                valid,
            } = self.stats[i];
            let usual = &mut self.usual[i];
            *usual = if warming_up {
                (*usual * fade).max(residual)
            } else {
                // Over many periods it moves towards this residual, not past it (one
                // period's step aside): one sample is all it saw of them.
                let moved = if residual > *usual {
                    (*usual * up).min(residual.max(*usual * one_up))
                } else {
                    (*usual * down).max(residual.min(*usual * one_down))
                };
                moved.max(1.0)
            };
            let nuisance = if self.config.suppress_nuisance {
                USUAL_FACTOR * (*usual - noise).max(0.0)
            } else {
                0.0
            };
            self.weak[i] = WEAK * threshold + nuisance;

            // Changed in structure, darkened as a whole all of a sudden, or back to what
            // was there before something stopped here.
            let darkened = self.zone_cells[i]
                && valid
                && spread >= DARKENED_SPREAD
                && (self.darkened[i]
                    || self.last_shift[i].abs() < dark / 2.0
                        && shift - self.last_shift[i] < -dark
                        && self.stir(frame, i).mean < -dark)
                && shift < -dark / 2.0;
            self.darkened[i] = darkened;
            self.last_shift[i] = shift;
            // (The change must clear the cell's nuisance bar: a swaying bush comes back to
            // where it was when absorbed, too.)
            let left = (self.changed[i] && residual > threshold + nuisance || shift.abs() > dark)
                && self.holds[i]
                && self.matches_before(frame, i, threshold);
            self.left[i] = left;
            let structural = self.changed[i]
                && residual > threshold + nuisance
                && spread >= SPREAD
                && !(shift > 0.0 && residual < STRUCTURE_SHARE * shift * shift);
            let changed = self.changed[i] || darkened || left;
            self.changed[i] = changed;

            let still = changed && self.stir(frame, i).variance <= still_threshold;
            self.still[i] = if still { self.still[i] + 1 } else { 0 };
            self.absorbed[i] = self.still[i] >= absorb_after;
            self.counted[i] = !self.absorbed[i] && (structural || darkened || left);
        }
    }

    /// Whether cell `i` shows the scene from before something stopped there again.
    fn matches_before(&self, frame: &[u8], i: usize, threshold: f32) -> bool {
        let mut sums = Sums::default();
        for (frame, before) in self.cell_rows(i, frame, &self.before) {
            sums.add_plain(frame, before);
        }
        let s = sums.stats();
        s.valid && s.residual <= threshold
    }

    /// Cell `i`'s rows in two frame-sized buffers.
    fn cell_rows<'a>(
        &self,
        i: usize,
        a: &'a [u8],
        b: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let (row, col) = (i / self.grid.cols, i % self.grid.cols);
        let xs = col * CELL..((col + 1) * CELL).min(self.grid.width);
        let ys = row * CELL..((row + 1) * CELL).min(self.grid.height);
        let width = self.grid.width;
        ys.map(move |y| {
            let span = y * width + xs.start..y * width + xs.end;
            (&a[span.clone()], &b[span])
        })
    }

    /// How cell `i`'s content moved since the last frame.
    fn stir(&self, frame: &[u8], i: usize) -> cells::Stir {
        cells::stir(self.cell_rows(i, frame, &self.previous))
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
}

#[cfg(test)]
#[path = "detector_tests.rs"]
mod tests;
