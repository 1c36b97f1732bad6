//! Per-cell statistics in one pass over the pixels: how well the frame fits its relit
//! background up to a local gain and offset; and, for the few cells that changed, how much
//! their content moved since the last frame.

/// Levels at or beyond these may have been clipped by the sensor, in the frame or when the
/// background learned them. While the exposure changes they carry no structure; in steady
/// light they still do (a clipped window going dark is something in front of it).
pub(crate) const CLIPPED_BELOW: u8 = 3;
pub(crate) const CLIPPED_ABOVE: u8 = 252;
/// The local gain is held to this range, so that a cell cannot explain away an object by
/// scaling its background to nothing, while a beam or a shadow still fits.
const GAIN: (f32, f32) = (0.4, 2.5);

/// The levels that hold structure: frame levels the sensor did not clip, and background
/// levels that stand for one frame level (see [`super::transfer::TransferFit::clipped`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Trusted {
    pub frame: (u8, u8),
    pub background: (u8, u8),
}

impl Trusted {
    pub(crate) const ALL: Self = Self {
        frame: (0, 255),
        background: (0, 255),
    };

    #[inline]
    pub(crate) fn pixel(&self, frame: u8, background: u8) -> bool {
        (self.frame.0..=self.frame.1).contains(&frame)
            && (self.background.0..=self.background.1).contains(&background)
    }
}

/// Running sums over a cell's pixels within the trusted levels.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sums {
    pixels: u32,
    n: u32,
    e: u32,
    f: u32,
    ee: u32,
    ff: u32,
    ef: u32,
    /// Pixels differing from their expected level by more than the run's `far`.
    far: u32,
}

/// What a cell's sums say.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CellStats {
    /// Variance of the frame left after the best bounded local fit `a·expected + b`: change
    /// of structure.
    pub residual: f32,
    /// Mean of frame − expected: how much brighter or darker the cell got as a whole.
    pub shift: f32,
    /// Share of the pixels that differ clearly from their expected level: a raindrop or a
    /// snowflake is a few, an object many.
    pub spread: f32,
    /// Enough trusted pixels to judge the cell.
    pub valid: bool,
}

impl Sums {
    /// Adds a run of pixels: the frame and the background (8.8); `expected` maps a
    /// background level to the level the light makes of it now; `far` is the difference
    /// that counts towards `spread`; pixels whose frame or background level `trusted` does
    /// not hold are left out.
    #[inline]
    pub(crate) fn add_run(
        &mut self,
        frame: &[u8],
        background: &[u16],
        expected: &[u8; 256],
        far: u32,
        trusted: Trusted,
    ) {
        self.pixels += frame.len() as u32;
        // Most frames trust every level: that loop has no branch.
        if trusted == Trusted::ALL {
            for (&f, &b) in frame.iter().zip(background) {
                self.add(f, expected[usize::from(b >> 8)], far);
            }
        } else {
            for (&f, &b) in frame.iter().zip(background) {
                let level = (b >> 8) as u8;
                if trusted.pixel(f, level) {
                    self.add(f, expected[usize::from(level)], far);
                }
            }
        }
    }

    #[inline(always)]
    fn add(&mut self, f: u8, e: u8, far: u32) {
        let (fv, e) = (u32::from(f), u32::from(e));
        self.n += 1;
        self.e += e;
        self.f += fv;
        self.ee += e * e;
        self.ff += fv * fv;
        self.ef += e * fv;
        self.far += u32::from(fv.abs_diff(e) > far);
    }

    /// Adds a run of pixels against a plain reference (levels as they are).
    pub(crate) fn add_plain(&mut self, frame: &[u8], reference: &[u8]) {
        self.pixels += frame.len() as u32;
        for (&f, &r) in frame.iter().zip(reference) {
            self.add(f, r, u32::MAX);
        }
    }

    pub(crate) fn stats(&self) -> CellStats {
        if self.n < 8 || self.n * 2 < self.pixels {
            return CellStats::default();
        }
        let n = f64::from(self.n);
        let (me, mf) = (f64::from(self.e) / n, f64::from(self.f) / n);
        let ve = (f64::from(self.ee) / n - me * me).max(0.0);
        let vf = (f64::from(self.ff) / n - mf * mf).max(0.0);
        let cov = f64::from(self.ef) / n - me * mf;
        let gain = if ve > 4.0 {
            (cov / ve).clamp(f64::from(GAIN.0), f64::from(GAIN.1))
        } else {
            1.0
        };
        let residual = (vf - 2.0 * gain * cov + gain * gain * ve).max(0.0);
        CellStats {
            residual: residual as f32,
            shift: (mf - me) as f32,
            spread: self.far as f32 / n as f32,
            valid: true,
        }
    }
}

/// How a cell's content moved since the last frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stir {
    /// Mean of frame − previous: how much darker or brighter it got as a whole.
    pub mean: f32,
    /// Variance of frame − previous, its mean removed: whether its content is still moving,
    /// whatever the light did to it as a whole.
    pub variance: f32,
}

/// The stir over a cell's rows of (frame, previous).
pub(crate) fn stir<'a>(runs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Stir {
    let (mut n, mut sum, mut squares) = (0u32, 0i64, 0u64);
    for (frame, previous) in runs {
        for (&f, &p) in frame.iter().zip(previous) {
            let d = i64::from(f) - i64::from(p);
            n += 1;
            sum += d;
            squares += d.unsigned_abs() * d.unsigned_abs();
        }
    }
    if n == 0 {
        return Stir {
            mean: 0.0,
            variance: 0.0,
        };
    }
    let mean = sum as f64 / f64::from(n);
    Stir {
        mean: mean as f32,
        variance: (squares as f64 / f64::from(n) - mean * mean).max(0.0) as f32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: [u8; 256] = {
        let mut t = [0u8; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = i as u8;
            i += 1;
        }
        t
    };

    fn stats(frame: &[u8], background: &[u8]) -> CellStats {
        let bg: Vec<u16> = background.iter().map(|&b| u16::from(b) << 8).collect();
        let mut s = Sums::default();
        let unclipped = (CLIPPED_BELOW, CLIPPED_ABOVE);
        let trusted = Trusted {
            frame: unclipped,
            background: unclipped,
        };
        s.add_run(frame, &bg, &IDENTITY, 20, trusted);
        s.stats()
    }

    fn texture() -> Vec<u8> {
        (0..64).map(|i| 60 + ((i * 37) % 64) as u8 * 2).collect()
    }

    #[test]
    fn a_local_gain_and_offset_leave_no_residual() {
        let bg = texture();
        let lit: Vec<u8> = bg
            .iter()
            .map(|&b| (f32::from(b) * 1.6 + 12.0) as u8)
            .collect();
        assert!(stats(&lit, &bg).residual < 2.0, "{:?}", stats(&lit, &bg));
    }

    #[test]
    fn an_edge_that_was_not_there_is_residual() {
        let bg = vec![120u8; 64];
        let edge: Vec<u8> = (0..64).map(|i| if i % 8 < 3 { 40 } else { 120 }).collect();
        assert!(
            stats(&edge, &bg).residual > 500.0,
            "{:?}",
            stats(&edge, &bg)
        );
    }

    #[test]
    fn texture_that_vanished_is_residual_and_clipped_pixels_do_not_count() {
        let bg = texture();
        let flat = vec![90u8; 64];
        assert!(stats(&flat, &bg).residual > 100.0);
        let saturated = vec![255u8; 64];
        assert!(!stats(&saturated, &bg).valid);
    }
}
