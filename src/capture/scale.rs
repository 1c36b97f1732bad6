//! Area-average downscaling of a luma plane to the analysis size. Pure.

/// Scales `src` (`width × height`, rows `stride` bytes apart) to `out_w × out_h` by averaging
/// the source pixels each output pixel covers (nearest pixel when enlarging).
pub fn downscale(
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(out_w * out_h);
    if width == 0 || height == 0 {
        out.resize(out_w * out_h, 0);
        return out;
    }
    let bounds = |i: usize, n: usize, m: usize| {
        let lo = i * n / m;
        let hi = ((i + 1) * n / m).max(lo + 1).min(n);
        (lo.min(n - 1), hi)
    };
    for oy in 0..out_h {
        let (y0, y1) = bounds(oy, height, out_h);
        for ox in 0..out_w {
            let (x0, x1) = bounds(ox, width, out_w);
            let mut sum = 0u32;
            for y in y0..y1 {
                let row = &src[y * stride..];
                sum += row[x0..x1].iter().map(|&p| u32::from(p)).sum::<u32>();
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            out.push(((sum + n / 2) / n) as u8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_by_averaging_blocks() {
        // 4×2 with a 2-byte row padding: blocks average to 10 and 30.
        let src = [0, 20, 20, 40, 9, 9, 20, 0, 40, 20, 9, 9];
        assert_eq!(downscale(&src, 6, 4, 2, 2, 1), vec![10, 30]);
    }

    #[test]
    fn same_size_is_a_copy_and_odd_ratios_cover_every_pixel() {
        let src: Vec<u8> = (0..=255u8).collect();
        assert_eq!(downscale(&src, 16, 16, 16, 16, 16), src);
        let flat = vec![77u8; 15 * 7];
        assert_eq!(downscale(&flat, 15, 15, 7, 4, 3), vec![77; 12]);
        assert_eq!(
            downscale(&[5, 6], 2, 2, 1, 4, 2),
            vec![5, 5, 6, 6, 5, 5, 6, 6]
        );
    }
}
