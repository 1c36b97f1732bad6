//! The grid of 8×8 cells over a frame: which cells neighbour which, and the boxes that
//! connected cells make.

use super::config::{Rect, CELL};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub width: usize,
    pub height: usize,
    pub cols: usize,
    pub rows: usize,
}

impl Grid {
    pub(crate) fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            cols: width.div_ceil(CELL),
            rows: height.div_ceil(CELL),
        }
    }

    pub(crate) fn cells(&self) -> usize {
        self.cols * self.rows
    }

    /// The 8-connected neighbours of cell `i`.
    pub(crate) fn neighbours(&self, i: usize) -> impl Iterator<Item = usize> {
        let (cols, rows) = (self.cols as i64, self.rows as i64);
        let (r, c) = ((i as i64) / cols, (i as i64) % cols);
        (-1i64..=1)
            .flat_map(move |dr| (-1i64..=1).map(move |dc| (r + dr, c + dc)))
            .filter(move |&(nr, nc)| {
                (nr, nc) != (r, c) && nr >= 0 && nc >= 0 && nr < rows && nc < cols
            })
            .map(move |(nr, nc)| (nr * cols + nc) as usize)
    }

    /// Bounding boxes of 8-connected groups of set cells, in fractions of the frame.
    pub(crate) fn regions(&self, set: &[bool]) -> Vec<Rect> {
        let mut seen = vec![false; set.len()];
        let mut out = Vec::new();
        let mut stack = Vec::new();
        for start in 0..set.len() {
            if !set[start] || seen[start] {
                continue;
            }
            let (mut c0, mut r0, mut c1, mut r1) = (usize::MAX, usize::MAX, 0, 0);
            stack.push(start);
            seen[start] = true;
            while let Some(i) = stack.pop() {
                let (r, c) = (i / self.cols, i % self.cols);
                (c0, r0, c1, r1) = (c0.min(c), r0.min(r), c1.max(c), r1.max(r));
                for j in self.neighbours(i) {
                    if set[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corners_have_three_neighbours_and_inner_cells_eight() {
        let g = Grid::new(40, 24); // 5 × 3 cells
        assert_eq!(g.neighbours(0).count(), 3);
        assert_eq!(g.neighbours(7).count(), 8);
        assert_eq!(g.neighbours(14).count(), 3);
    }

    #[test]
    fn connected_cells_make_one_box_and_apart_ones_two() {
        let g = Grid::new(40, 24);
        let mut set = vec![false; g.cells()];
        set[0] = true;
        set[6] = true; // diagonal neighbour of 0
        set[4] = true; // far corner of the first row
        let boxes = g.regions(&set);
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        assert_eq!(
            boxes[0],
            Rect {
                x: 0.0,
                y: 0.0,
                w: 0.4,
                h: 16.0 / 24.0
            }
        );
    }
}
