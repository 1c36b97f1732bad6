//! Privacy masks: rectangles painted black into a picture's planes before anything encodes
//! it, so the masked area is gone from snapshots and clips — not only ignored by the detector.
//! Pure: plain planes in, painted planes out.

use crate::motion::Rect;

/// One image plane: `height` rows of `stride` bytes, of which the first `width` are pixels.
pub struct Plane<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

/// The pixel span `[start, end)` a fraction range covers in `len` pixels, widened outwards so
/// a mask never leaves a half-covered edge pixel unpainted.
fn span(from: f32, size: f32, len: usize) -> (usize, usize) {
    let lo = (from.clamp(0.0, 1.0) * len as f32).floor() as usize;
    let hi = ((from + size).clamp(0.0, 1.0) * len as f32).ceil() as usize;
    (lo.min(len), hi.min(len))
}

/// Fills every mask's area of `plane` with `value`.
pub fn paint(plane: Plane<'_>, masks: &[Rect], value: u8) {
    for mask in masks {
        let (x0, x1) = span(mask.x, mask.w, plane.width);
        let (y0, y1) = span(mask.y, mask.h, plane.height);
        for row in y0..y1 {
            let start = row * plane.stride;
            if let Some(pixels) = plane.data.get_mut(start + x0..start + x1) {
                pixels.fill(value);
            }
        }
    }
}

/// Black in I420 (limited range): Y 16, U and V 128. The chroma planes are half size.
pub const I420_BLACK: [u8; 3] = [16, 128, 128];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paints_the_rectangle_and_nothing_else() {
        let (w, h, stride) = (10, 6, 12);
        let mut data = vec![200u8; stride * h];
        let mask = Rect {
            x: 0.2,
            y: 0.5,
            w: 0.3,
            h: 0.5,
        };
        paint(
            Plane {
                data: &mut data,
                stride,
                width: w,
                height: h,
            },
            &[mask],
            16,
        );
        for y in 0..h {
            for x in 0..stride {
                let inside = (2..5).contains(&x) && (3..6).contains(&y);
                assert_eq!(data[y * stride + x] == 16, inside, "({x},{y})");
            }
        }
    }

    #[test]
    fn partial_pixels_are_covered_and_out_of_frame_masks_are_clipped() {
        let mut data = vec![1u8; 4 * 4];
        let masks = [
            Rect {
                x: 0.6,
                y: 0.0,
                w: 0.1,
                h: 0.1,
            },
            Rect {
                x: -1.0,
                y: 0.9,
                w: 5.0,
                h: 5.0,
            },
        ];
        let plane = Plane {
            data: &mut data,
            stride: 4,
            width: 4,
            height: 4,
        };
        paint(plane, &masks, 0);
        // 0.6–0.7 of 4 px touches pixel 2; 0.9–1.0 of 4 rows touches row 3, all of it.
        assert_eq!(data[2], 0);
        assert_eq!(&data[12..16], &[0, 0, 0, 0]);
        assert_eq!(data.iter().filter(|&&v| v == 0).count(), 5);
    }
}
