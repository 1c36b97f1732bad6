//! The scene's intensity transfer function: how the light turned the background's grey levels
//! into this frame's. Real light is not one gain. Gain clips highlights, offsets lift black,
//! auto-exposure and WDR bend the tone curve. All of these are monotone maps from grey level
//! to grey level, so the detector fits one: the median frame level per band of background
//! levels, made non-decreasing. A median is unmoved by motion covering less than half of
//! a band.

/// Bands of background grey levels the fit works in.
const BANDS: usize = 16;
/// Fewer samples than this in a band and the band does not take part in the fit.
const MIN_SAMPLES: u32 = 12;
/// A band at either end of the levels is piled (clipped) when its background levels lie
/// within `PILED` levels and the light moved them (`MOVED`), and spread out again
/// when its frame levels lie over more than `SPREAD` (interquartile ranges).
const PILED: u32 = 3;
const SPREAD: u32 = 12;
/// A pile whose median level the light moved by more than this many levels: a flat black
/// or white scene, unmoved, is not clipping.
const MOVED: usize = 1;
/// Sensors clip at the ends of the video range (white at 235 in limited range, 255 in
/// full; black at 16 or 0), give or take the codec: a pile elsewhere is a flat surface.
const CLIPPED_WHITE: usize = 228;
const CLIPPED_BLACK: usize = 24;

/// Samples of (background level, frame level) pairs, binned as they come.
pub(crate) struct TransferFit {
    /// Per band: a histogram of frame levels.
    hist: Vec<[u32; 256]>,
    /// Per band: the sum of background levels (for the band's mean).
    level_sum: [u32; BANDS],
    /// A histogram of background levels (bands are runs of it).
    levels: [u32; 256],
    count: [u32; BANDS],
}

impl Default for TransferFit {
    fn default() -> Self {
        Self {
            hist: vec![[0; 256]; BANDS],
            level_sum: [0; BANDS],
            levels: [0; 256],
            count: [0; BANDS],
        }
    }
}

impl TransferFit {
    pub(crate) fn clear(&mut self) {
        for h in &mut self.hist {
            h.fill(0);
        }
        self.level_sum = [0; BANDS];
        self.levels.fill(0);
        self.count = [0; BANDS];
    }

    pub(crate) fn add(&mut self, background: u8, frame: u8) {
        let band = usize::from(background) * BANDS / 256;
        self.hist[band][usize::from(frame)] += 1;
        self.level_sum[band] += u32::from(background);
        self.levels[usize::from(background)] += 1;
        self.count[band] += 1;
    }

    /// The fitted map as a table: entry `b` is the expected frame level (8.8 fixed point)
    /// for background level `b`. Without enough samples it is the identity.
    pub(crate) fn table(&self, out: &mut [u16; 256]) {
        // (mean background level, median frame level, weight) per populated band.
        let mut points: Vec<(f32, f32, f32)> = (0..BANDS)
            .filter(|&b| self.count[b] >= MIN_SAMPLES)
            .map(|b| {
                let n = self.count[b];
                let x = self.level_sum[b] as f32 / n as f32;
                (x, median(&self.hist[b], n), n as f32)
            })
            .collect();
        make_monotone(&mut points);
        for (level, slot) in out.iter_mut().enumerate() {
            let y = interpolate(&points, level as f32);
            *slot = (y.clamp(0.0, 255.0) * 256.0) as u16;
        }
    }

    /// Where the background was learned clipped. Clipping is many-to-one: a road saturated
    /// under high gain piles up at the end of the levels, and when the light goes back, that
    /// one level spreads over everything it hid. Piled levels hold no structure while the
    /// light changes; spread ones show what the background missed.
    pub(crate) fn clipped(&self) -> Clipped {
        // Per band: None when too few samples to judge, else (piled, spread).
        let band = |b: usize| {
            let n = self.count[b];
            (n >= MIN_SAMPLES).then(|| {
                let levels = &self.levels[b * BAND_WIDTH..(b + 1) * BAND_WIDTH];
                let (low, high) = (quantile(levels, n, 0.25), quantile(levels, n, 0.75));
                let (low, high) = (
                    b * BAND_WIDTH + low as usize,
                    b * BAND_WIDTH + high as usize,
                );
                let at_an_end = low >= CLIPPED_WHITE || high <= CLIPPED_BLACK;
                let level = b * BAND_WIDTH + quantile(levels, n, 0.5) as usize;
                let moved = (quantile(&self.hist[b], n, 0.5) as usize).abs_diff(level) > MOVED;
                let piled = at_an_end && moved && high - low <= PILED as usize;
                (piled, piled && interquartile(&self.hist[b], n) > SPREAD)
            })
        };
        // From an end inwards, the piled bands up to the first populated one that is not:
        // the innermost of them, and how many samples in them spread out again.
        let piles = |bands: &mut dyn Iterator<Item = usize>| {
            let (mut innermost, mut revealed) = (None, 0);
            for b in bands {
                match band(b) {
                    Some((false, _)) => break,
                    Some((true, spread)) => {
                        innermost = Some(b);
                        revealed += if spread { self.count[b] } else { 0 };
                    }
                    None => {}
                }
            }
            (innermost, revealed)
        };
        let (low, revealed_low) = piles(&mut (0..BANDS / 2));
        let (high, revealed_high) = piles(&mut (BANDS / 2..BANDS).rev());
        let revealed = revealed_low + revealed_high;
        let total: u32 = self.count.iter().sum();
        Clipped {
            trusted: (
                low.map_or(0, |b| (b + 1) * BAND_WIDTH) as u8,
                high.map_or(255, |b| b * BAND_WIDTH - 1) as u8,
            ),
            revealed: if total == 0 {
                0.0
            } else {
                revealed as f32 / total as f32
            },
        }
    }
}

/// What [`TransferFit::clipped`] found.
pub(crate) struct Clipped {
    /// Background levels that hold structure (lowest, highest): all but the piles at
    /// either end.
    pub trusted: (u8, u8),
    /// Share of the samples in piles that the light spread out again.
    pub revealed: f32,
}

const BAND_WIDTH: usize = 256 / BANDS;

/// The level below which `at` of a histogram's `n` samples lie.
fn quantile(hist: &[u32], n: u32, at: f32) -> u32 {
    let wanted = ((n as f32 * at).ceil() as u32).max(1);
    let mut seen = 0;
    for (level, &c) in hist.iter().enumerate() {
        seen += c;
        if seen >= wanted {
            return level as u32;
        }
    }
    hist.len().saturating_sub(1) as u32
}

fn interquartile(hist: &[u32], n: u32) -> u32 {
    quantile(hist, n, 0.75) - quantile(hist, n, 0.25)
}

/// The median of a histogram holding `n` samples.
fn median(hist: &[u32; 256], n: u32) -> f32 {
    quantile(hist, n, 0.5) as f32
}

/// Pool-adjacent-violators: the weighted least-squares non-decreasing fit of the points'
/// y values, in place (points pooled together share their weighted mean).
fn make_monotone(points: &mut [(f32, f32, f32)]) {
    // Blocks of (sum of w·y, sum of w, how many points).
    let mut blocks: Vec<(f32, f32, usize)> = Vec::with_capacity(points.len());
    for &(_, y, w) in points.iter() {
        blocks.push((y * w, w, 1));
        while blocks.len() > 1 {
            let (s1, w1, n1) = blocks[blocks.len() - 1];
            let (s0, w0, n0) = blocks[blocks.len() - 2];
            if s0 / w0 <= s1 / w1 {
                break;
            }
            blocks.pop();
            if let Some(last) = blocks.last_mut() {
                *last = (s0 + s1, w0 + w1, n0 + n1);
            }
        }
    }
    let mut i = 0;
    for (s, w, n) in blocks {
        for p in &mut points[i..i + n] {
            p.1 = s / w;
        }
        i += n;
    }
}

/// The piecewise-linear map through `points` at `x`; beyond the ends it goes on with the
/// end segment's slope (bounded, so one noisy band cannot fling the far levels), and with
/// one point it is the gain through the origin.
fn interpolate(points: &[(f32, f32, f32)], x: f32) -> f32 {
    match points {
        [] => x,
        [(px, py, _)] => {
            if *px > 0.0 {
                x * py / px
            } else {
                x
            }
        }
        _ => {
            let i = points
                .partition_point(|p| p.0 <= x)
                .clamp(1, points.len() - 1);
            let (x0, y0, _) = points[i - 1];
            let (x1, y1, _) = points[i];
            let slope = if x1 > x0 { (y1 - y0) / (x1 - x0) } else { 1.0 };
            let slope = if (x0..=x1).contains(&x) {
                slope
            } else {
                slope.clamp(0.25, 4.0)
            };
            y0 + (x - x0) * slope
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(map: impl Fn(u8) -> u8) -> [u16; 256] {
        let mut f = TransferFit::default();
        for b in 0..=255u8 {
            for _ in 0..20 {
                f.add(b, map(b));
            }
        }
        let mut table = [0; 256];
        f.table(&mut table);
        table
    }

    fn at(table: &[u16; 256], level: u8) -> f32 {
        f32::from(table[usize::from(level)]) / 256.0
    }

    #[test]
    fn the_identity_and_a_gain_with_clipping_are_recovered() {
        let id = fit(|b| b);
        for b in [10u8, 100, 200, 250] {
            assert!(
                (at(&id, b) - f32::from(b)).abs() < 10.0,
                "{b}: {}",
                at(&id, b)
            );
        }
        let clipped = fit(|b| (f32::from(b) * 1.8).min(255.0) as u8);
        assert!(
            (at(&clipped, 60) - 108.0).abs() < 12.0,
            "{}",
            at(&clipped, 60)
        );
        assert!(
            at(&clipped, 220) > 245.0,
            "highlights clip: {}",
            at(&clipped, 220)
        );
    }

    #[test]
    fn a_tone_curve_is_followed_where_one_gain_is_not() {
        let gamma = |b: u8| (255.0 * (f32::from(b) / 255.0).powf(0.55)) as u8;
        let t = fit(gamma);
        for b in [20u8, 80, 160, 240] {
            let want = f32::from(gamma(b));
            assert!(
                (at(&t, b) - want).abs() < 12.0,
                "{b}: {} vs {want}",
                at(&t, b)
            );
        }
    }

    #[test]
    fn the_fit_is_monotone_whatever_the_samples() {
        let t = fit(|b| if b % 32 < 16 { 200 } else { 20 });
        assert!(t.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn too_few_samples_leave_the_identity() {
        let mut f = TransferFit::default();
        f.add(100, 30);
        let mut t = [0; 256];
        f.table(&mut t);
        assert_eq!(at(&t, 100), 100.0);
    }
}
