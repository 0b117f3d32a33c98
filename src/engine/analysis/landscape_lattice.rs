//! The landscape lattice as a map draws it while the sweep refines: which
//! scored point colours each cell, iso-loss contour lines (marching squares on
//! the finest complete level) and round tick values. Pure numerics, shared by
//! the app's map.

use super::landscape::LandscapeGrid;

/// Which scored point colours each cell while the sweep refines: a scored
/// point stands for the `stride x stride` block around it until finer points
/// (or its neighbours' own scores) replace it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Fill {
    size: usize,
    /// Per cell: the scored cell it shows and that point's stride (0: itself).
    source: Vec<Option<(usize, usize)>>,
}

impl Fill {
    /// An empty fill of a `size x size` lattice.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            source: vec![None; size * size],
        }
    }

    /// Point `(i, j)` of a level with stride `stride` was scored.
    pub fn scored(&mut self, i: usize, j: usize, stride: usize) {
        let g = self.size;
        if i >= g || j >= g {
            return;
        }
        let k = j * g + i;
        let s = stride.max(1);
        let (lo, hi) = (s / 2, s / 2 + 1);
        for jj in j.saturating_sub(lo)..(j + hi).min(g) {
            for ii in i.saturating_sub(lo)..(i + hi).min(g) {
                let cell = jj * g + ii;
                let replaces = match self.source[cell] {
                    None => true,
                    Some((_, old)) => old >= s,
                };
                if replaces {
                    self.source[cell] = Some((k, s));
                }
            }
        }
        self.source[k] = Some((k, 0));
    }

    /// The scored cell that colours cell `(i, j)`, if any.
    pub fn source(&self, i: usize, j: usize) -> Option<usize> {
        self.source
            .get(j * self.size + i)
            .copied()
            .flatten()
            .map(|(k, _)| k)
    }
}

/// Segments of the contour lines of a `size x size` lattice of `values`
/// (row-major, rows bottom to top) at each of `levels`, in fractional lattice
/// indices `(i, j)`. Squares with a missing corner are skipped.
pub fn contour_segments(values: &[Option<f64>], size: usize, levels: &[f64]) -> Vec<[[f64; 2]; 2]> {
    let mut out = Vec::new();
    if size < 2 || values.len() != size * size {
        return out;
    }
    let at = |i: usize, j: usize| values[j * size + i].filter(|v| v.is_finite());
    for j in 0..size - 1 {
        for i in 0..size - 1 {
            let (Some(v00), Some(v10), Some(v11), Some(v01)) =
                (at(i, j), at(i + 1, j), at(i + 1, j + 1), at(i, j + 1))
            else {
                continue;
            };
            let (x, y) = (i as f64, j as f64);
            // corners counter-clockwise from the bottom left
            let corners = [
                ([x, y], v00),
                ([x + 1.0, y], v10),
                ([x + 1.0, y + 1.0], v11),
                ([x, y + 1.0], v01),
            ];
            for &level in levels {
                let mut hits: Vec<[f64; 2]> = Vec::with_capacity(4);
                for e in 0..4 {
                    let (pa, va) = corners[e];
                    let (pb, vb) = corners[(e + 1) % 4];
                    if (va < level) != (vb < level) {
                        let t = (level - va) / (vb - va);
                        hits.push([pa[0] + t * (pb[0] - pa[0]), pa[1] + t * (pb[1] - pa[1])]);
                    }
                }
                for pair in hits.chunks_exact(2) {
                    out.push([pair[0], pair[1]]);
                }
            }
        }
    }
    out
}

/// Contour segments (in lattice indices) of `values` on the finest sub-lattice
/// of the sweep's levels whose points are all scored (none before the first
/// level is complete), so that the lines are smooth at every stage.
pub fn scored_contours(
    values: &[Option<f64>],
    grid: &LandscapeGrid,
    levels: &[f64],
) -> Vec<[[f64; 2]; 2]> {
    let g = grid.size;
    let mut stride = grid.coarsest_stride();
    let axis_of =
        |s: usize| -> Vec<usize> { (0..g).filter(|&i| i % s == 0 || i == g - 1).collect() };
    let complete = |axis: &[usize]| {
        axis.iter()
            .all(|&j| axis.iter().all(|&i| values[j * g + i].is_some()))
    };
    let mut best: Option<Vec<usize>> = None;
    loop {
        let axis = axis_of(stride);
        if !complete(&axis) {
            break;
        }
        best = Some(axis);
        if stride == 1 {
            break;
        }
        stride /= 2;
    }
    let Some(axis) = best else { return vec![] };
    let m = axis.len();
    let sub: Vec<Option<f64>> = (0..m * m)
        .map(|k| values[axis[k / m] * g + axis[k % m]])
        .collect();
    // fractional sub-lattice index to fractional lattice index
    let map = |v: f64| {
        let lo = (v.floor() as usize).min(m - 1);
        let hi = (lo + 1).min(m - 1);
        let f = v - lo as f64;
        axis[lo] as f64 + f * (axis[hi] as f64 - axis[lo] as f64)
    };
    contour_segments(&sub, m, levels)
        .into_iter()
        .map(|[p, q]| [[map(p[0]), map(p[1])], [map(q[0]), map(q[1])]])
        .collect()
}

/// Tick values of `[lo, hi]`: multiples of a round step, at most `max` of them.
pub fn nice_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    if !(hi > lo) || max == 0 {
        return vec![];
    }
    let raw = (hi - lo) / max as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| (hi - lo) / s <= max as f64)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_points_fill_their_blocks_until_finer_ones_arrive() {
        let mut f = Fill::new(5);
        f.scored(0, 0, 2);
        f.scored(2, 0, 2);
        assert_eq!(f.source(0, 0), Some(0));
        assert_eq!(f.source(1, 0), Some(2)); // the block of (2, 0) reaches (1, 0)
        assert_eq!(f.source(1, 1), Some(2));
        assert_eq!(f.source(4, 4), None);
        f.scored(1, 0, 1);
        assert_eq!(f.source(1, 0), Some(1));
        // a coarser point never overwrites a scored cell
        f.scored(2, 0, 2);
        assert_eq!(f.source(1, 0), Some(1));
    }

    #[test]
    fn contours_cross_the_edges_where_the_level_lies() {
        // v = i on a 3 x 3 lattice: the level 0.5 is the line i = 0.5
        let values: Vec<Option<f64>> = (0..9).map(|k| Some((k % 3) as f64)).collect();
        let segs = contour_segments(&values, 3, &[0.5]);
        assert_eq!(segs.len(), 2);
        for [p, q] in segs {
            assert!((p[0] - 0.5).abs() < 1e-12 && (q[0] - 0.5).abs() < 1e-12);
        }
        let mut missing = values.clone();
        missing[0] = None;
        assert_eq!(contour_segments(&missing, 3, &[0.5]).len(), 1);
    }

    #[test]
    fn contours_use_the_finest_complete_level() {
        let grid = LandscapeGrid {
            size: 9,
            x: [0.0, 1.0],
            y: [0.0, 1.0],
        };
        // v = i; only the stride-2 points scored: the level 3 runs along i = 3
        let mut values = vec![None; 81];
        for j in (0..9).step_by(2) {
            for i in (0..9).step_by(2) {
                values[j * 9 + i] = Some(i as f64);
            }
        }
        assert!(scored_contours(&values, &grid, &[3.0]).len() == 4);
        for [p, q] in scored_contours(&values, &grid, &[3.0]) {
            assert!((p[0] - 3.0).abs() < 1e-12 && (q[0] - 3.0).abs() < 1e-12);
        }
        values[0] = None;
        assert!(scored_contours(&values, &grid, &[3.0]).is_empty());
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_ticks(-0.2, 1.2, 6), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let t = nice_ticks(0.0, 1.0, 5);
        assert_eq!(t.len(), 6);
        assert!((t[3] - 0.6).abs() < 1e-12);
        assert!(nice_ticks(1.0, 1.0, 5).is_empty());
    }
}
