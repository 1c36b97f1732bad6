//! The detector's passes over the pixels: fitting the light, measuring each cell against the
//! relit background, and learning the background.

use super::{Detector, Trusted};
use crate::cells::Sums;
use crate::config::CELL;

impl Detector {
    /// Starts over from this frame: the background is the frame, nothing is moving.
    pub(super) fn rebase(&mut self, frame: &[u8]) {
        for (b, &p) in self.background.iter_mut().zip(frame) {
            *b = u16::from(p) << 8;
        }
        self.previous.copy_from_slice(frame);
        self.still.fill(0);
        self.last_shift.fill(0.0);
        self.darkened.fill(false);
        self.holds.fill(false);
    }

    /// Fits the transfer function from the background to this frame over the zones.
    pub(super) fn fit_light(&mut self, frame: &[u8]) {
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
    pub(super) fn measure(&mut self, frame: &[u8], far: u32, trusted: Trusted) {
        let expected: [u8; 256] =
            std::array::from_fn(|l| ((u32::from(self.relight[l]) + 128) >> 8).min(255) as u8);
        let width = self.grid.width;
        for cell_row in 0..self.grid.rows {
            self.sums.fill(Sums::default());
            for y in cell_row * CELL..((cell_row + 1) * CELL).min(self.grid.height) {
                let f = &frame[y * width..(y + 1) * width];
                let b = &self.background[y * width..(y + 1) * width];
                for (s, (f, b)) in self.sums.iter_mut().zip(f.chunks(CELL).zip(b.chunks(CELL))) {
                    s.add_run(f, b, &expected, far, trusted);
                }
            }
            let base = cell_row * self.grid.cols;
            for (col, s) in self.sums.iter().enumerate() {
                self.stats[base + col] = s.stats();
            }
        }
    }

    /// Follows the scene: the light at once (the background is relit through the transfer
    /// function), quiet cells at the learning rate, changed ones slowly, absorbed ones at
    /// once.
    pub(super) fn learn(&mut self, frame: &[u8], trusted: Trusted) {
        let fast = (self.config.learning_rate.clamp(0.0, 1.0) * 256.0) as i32;
        let slow = fast / 8;
        let relight = &self.relight;
        let all = trusted == Trusted::ALL;
        let width = self.grid.width;
        for (y, ((bg_row, before_row), (f_row, prev_row))) in self
            .background
            .chunks_exact_mut(width)
            .zip(self.before.chunks_exact_mut(width))
            .zip(
                frame
                    .chunks_exact(width)
                    .zip(self.previous.chunks_exact_mut(width)),
            )
            .enumerate()
        {
            let cell_row = (y / CELL) * self.grid.cols;
            for (col, (((b, before), p), prev)) in bg_row
                .chunks_mut(CELL)
                .zip(before_row.chunks_mut(CELL))
                .zip(f_row.chunks(CELL))
                .zip(prev_row.chunks_mut(CELL))
                .enumerate()
            {
                let cell = cell_row + col;
                if self.absorbed[cell] && !self.holds[cell] {
                    // Something stops here: remember what was behind it.
                    for (before, b) in before.iter_mut().zip(b.iter()) {
                        *before = (*b >> 8) as u8;
                    }
                }
                let rate = if self.absorbed[cell] {
                    256
                } else if self.changed[cell] {
                    slow
                } else {
                    fast
                };
                for (b, &p) in b.iter_mut().zip(p) {
                    if !all && !trusted.pixel(p, (*b >> 8) as u8) {
                        // Clipped now or when learned while the exposure changes: it holds
                        // nothing to relight or compare, so the background is the frame.
                        *b = u16::from(p) << 8;
                        continue;
                    }
                    // The level through the transfer function, its fraction kept as it was
                    // (at most 255.996: the table stops at 255.0). The next value lies
                    // between that and the frame's level, so it fits.
                    let lit = i32::from(relight[usize::from(*b >> 8)]) + i32::from(*b & 0xff);
                    let target = i32::from(p) << 8;
                    *b = (lit + (((target - lit) * rate) >> 8)) as u16;
                }
                prev.copy_from_slice(p);
            }
        }
        for (i, absorbed) in self.absorbed.iter().enumerate() {
            if *absorbed {
                self.still[i] = 0;
                self.darkened[i] = false;
                // Absorbing a ghost brings back the scene `before` held.
                self.holds[i] = !self.left[i];
            }
        }
    }
}
