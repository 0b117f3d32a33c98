//! Two-dimensional toy distributions for quick experiments: two moons, a swiss
//! roll, eight Gaussians and a checkerboard.
//!
//! Samples are drawn deterministically from a seed and standardised with **fixed
//! per-distribution constants** (the analytic mean and standard deviation of each
//! distribution, see [`ToyKind`]), never with statistics of the sample itself, so
//! training and validation sets drawn with different seeds share one coordinate
//! system. After standardisation each axis has mean 0 and standard deviation 1 in
//! expectation.

use std::f32::consts::PI;
use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// A 2D toy distribution.
///
/// Raw definitions and the constants used to standardise them
/// (`x' = (x - mean_x) / std_x`, likewise for `y`):
///
/// * [`TwoMoons`](ToyKind::TwoMoons): with equal probability the upper moon
///   `(cos t, sin t)` or the lower moon `(1 - cos t, 1/2 - sin t)`,
///   `t ~ U(0, π)`, plus Gaussian noise of std 0.1 per axis. Mean `(1/2, 1/4)`,
///   std `(sqrt(0.76), sqrt(1/2 - 4/π² + (2/π - 1/4)² + 0.01))` ≈ `(0.8718, 0.5042)`.
/// * [`SwissRoll`](ToyKind::SwissRoll): `(t cos t, t sin t)` with
///   `t = 1.5π (1 + 2u)`, `u ~ U(0, 1)`, plus Gaussian noise of std 0.5. Mean
///   `(2, 2/(3π))` ≈ `(2, 0.2122)`, std ≈ `(6.6419, 6.9692)` (by numerical
///   integration, noise included).
/// * [`EightGaussians`](ToyKind::EightGaussians): eight Gaussians of std 0.2 centred
///   on a circle of radius 2 at angles `kπ/4`. Mean `(0, 0)`, std
///   `sqrt(2 + 0.04)` ≈ 1.4283 on both axes.
/// * [`Checkerboard`](ToyKind::Checkerboard): uniform on the 8 dark cells of a 4x4
///   checkerboard covering `[-2, 2]²`. Mean `(0, 0)`, std `sqrt(4/3)` ≈ 1.1547 on
///   both axes (so standardised points lie in `[-√3, √3]²`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ToyKind {
    /// Two interleaving half circles.
    TwoMoons,
    /// A spiral.
    SwissRoll,
    /// Eight Gaussians on a circle.
    EightGaussians,
    /// A 4x4 checkerboard, half the cells filled.
    Checkerboard,
}

impl ToyKind {
    /// Every kind, in a stable order.
    pub const ALL: [ToyKind; 4] = [
        ToyKind::TwoMoons,
        ToyKind::SwissRoll,
        ToyKind::EightGaussians,
        ToyKind::Checkerboard,
    ];

    /// Canonical name, as accepted by [`FromStr`] and written by [`fmt::Display`].
    pub fn name(self) -> &'static str {
        match self {
            ToyKind::TwoMoons => "moons",
            ToyKind::SwissRoll => "swissroll",
            ToyKind::EightGaussians => "8gaussians",
            ToyKind::Checkerboard => "checkerboard",
        }
    }

    /// `(mean_x, mean_y, std_x, std_y)` of the raw distribution (see the type docs).
    fn standardisation(self) -> [f32; 4] {
        match self {
            ToyKind::TwoMoons => [0.5, 0.25, 0.871_780_1, 0.504_172_4],
            ToyKind::SwissRoll => [2.0, 0.212_206_6, 6.641_861, 6.969_167],
            ToyKind::EightGaussians => [0.0, 0.0, 1.428_285_7, 1.428_285_7],
            ToyKind::Checkerboard => [0.0, 0.0, 1.154_700_5, 1.154_700_5],
        }
    }

    /// One raw (unstandardised) sample.
    fn sample_raw(self, rng: &mut StdRng) -> [f32; 2] {
        let mut normal = || -> f32 { rng.sample(StandardNormal) };
        match self {
            ToyKind::TwoMoons => {
                let (n1, n2) = (normal(), normal());
                let t = rng.random::<f32>() * PI;
                let (x, y) = if rng.random::<bool>() {
                    (t.cos(), t.sin())
                } else {
                    (1.0 - t.cos(), 0.5 - t.sin())
                };
                [x + 0.1 * n1, y + 0.1 * n2]
            }
            ToyKind::SwissRoll => {
                let (n1, n2) = (normal(), normal());
                let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f32>());
                [t * t.cos() + 0.5 * n1, t * t.sin() + 0.5 * n2]
            }
            ToyKind::EightGaussians => {
                let (n1, n2) = (normal(), normal());
                let angle = rng.random_range(0..8) as f32 * PI / 4.0;
                [2.0 * angle.cos() + 0.2 * n1, 2.0 * angle.sin() + 0.2 * n2]
            }
            ToyKind::Checkerboard => {
                // x uniform on [-2, 2]; y in one of the two dark cells of x's column.
                let x = rng.random::<f32>() * 4.0 - 2.0;
                let column_parity = (x.floor() as i32).rem_euclid(2) as f32;
                let y = rng.random::<f32>() - 2.0 * rng.random_range(0..2) as f32 + column_parity;
                [x, y]
            }
        }
    }
}

impl fmt::Display for ToyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Error for an unknown toy distribution name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown toy distribution {0:?}: expected moons, swissroll, 8gaussians or checkerboard \
     (aliases: two-moons, swiss-roll, eight-gaussians)"
)]
pub struct ParseToyKindError(pub String);

impl FromStr for ToyKind {
    type Err = ParseToyKindError;

    /// Parses a canonical name or alias, ignoring ASCII case and surrounding spaces.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "moons" | "two-moons" | "twomoons" => Ok(ToyKind::TwoMoons),
            "swissroll" | "swiss-roll" => Ok(ToyKind::SwissRoll),
            "8gaussians" | "eight-gaussians" | "eightgaussians" => Ok(ToyKind::EightGaussians),
            "checkerboard" => Ok(ToyKind::Checkerboard),
            _ => Err(ParseToyKindError(s.to_string())),
        }
    }
}

/// `n` points of dimension `dim`, stored row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct PointSet {
    /// Coordinates per point (2 for the toy distributions).
    pub dim: usize,
    /// All coordinates, point after point (`len() * dim` values).
    pub points: Vec<f32>,
}

impl PointSet {
    /// Number of points.
    pub fn len(&self) -> usize {
        match self.dim {
            0 => 0,
            d => self.points.len() / d,
        }
    }

    /// Whether the set holds no points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Coordinates of point `i`. Panics if `i >= self.len()`.
    pub fn point(&self, i: usize) -> &[f32] {
        &self.points[i * self.dim..(i + 1) * self.dim]
    }

    /// A new set holding the points at `indices`, in that order. Panics if an index
    /// is out of range.
    pub fn subset(&self, indices: &[usize]) -> PointSet {
        let mut points = Vec::with_capacity(indices.len() * self.dim);
        for &i in indices {
            points.extend_from_slice(self.point(i));
        }
        PointSet {
            dim: self.dim,
            points,
        }
    }
}

/// Draws `n` standardised points of `kind` from a generator seeded with `seed`
/// (`StdRng::seed_from_u64`); the same arguments always give the same points.
pub fn sample_toy(kind: ToyKind, n: usize, seed: u64) -> PointSet {
    let mut rng = StdRng::seed_from_u64(seed);
    let [mx, my, sx, sy] = kind.standardisation();
    let mut points = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let [x, y] = kind.sample_raw(&mut rng);
        points.push((x - mx) / sx);
        points.push((y - my) / sy);
    }
    PointSet { dim: 2, points }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axis_stats(set: &PointSet, axis: usize) -> (f32, f32) {
        let n = set.len() as f64;
        let vals = || {
            set.points
                .iter()
                .skip(axis)
                .step_by(2)
                .map(|&v| f64::from(v))
        };
        let mean = vals().sum::<f64>() / n;
        let var = vals().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        (mean as f32, var.sqrt() as f32)
    }

    #[test]
    fn deterministic_per_seed_and_seed_dependent() {
        for kind in ToyKind::ALL {
            let a = sample_toy(kind, 500, 42);
            assert_eq!(a.dim, 2);
            assert_eq!(a.len(), 500);
            assert_eq!(a, sample_toy(kind, 500, 42), "{kind}");
            assert_ne!(a, sample_toy(kind, 500, 43), "{kind}");
            assert!(a.points.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn standardised_to_zero_mean_unit_std() {
        for kind in ToyKind::ALL {
            let set = sample_toy(kind, 20_000, 1);
            for axis in 0..2 {
                let (mean, std) = axis_stats(&set, axis);
                assert!(mean.abs() < 0.05, "{kind} axis {axis}: mean {mean}");
                assert!((std - 1.0).abs() < 0.05, "{kind} axis {axis}: std {std}");
            }
        }
    }

    #[test]
    fn shapes_look_right() {
        // Checkerboard: inside [-√3, √3]², and in dark cells only.
        let set = sample_toy(ToyKind::Checkerboard, 2000, 3);
        let bound = 3f32.sqrt() + 1e-4;
        for p in set.points.chunks_exact(2) {
            assert!(p[0].abs() <= bound && p[1].abs() <= bound);
            let (cx, cy) = (
                (p[0] * 1.154_700_5).floor() as i32,
                (p[1] * 1.154_700_5).floor() as i32,
            );
            assert_eq!((cx + cy).rem_euclid(2), 0, "{p:?}");
        }
        // Eight Gaussians: every point near the standardised radius 2 / 1.4283.
        let set = sample_toy(ToyKind::EightGaussians, 2000, 3);
        for p in set.points.chunks_exact(2) {
            let r = (p[0] * p[0] + p[1] * p[1]).sqrt();
            assert!((r - 2.0 / 1.428_285_7).abs() < 0.9, "{p:?}");
        }
    }

    #[test]
    fn names_parse_and_display() {
        for kind in ToyKind::ALL {
            assert_eq!(kind.to_string().parse::<ToyKind>().unwrap(), kind);
        }
        assert_eq!("two-moons".parse::<ToyKind>().unwrap(), ToyKind::TwoMoons);
        assert_eq!("Swiss-Roll".parse::<ToyKind>().unwrap(), ToyKind::SwissRoll);
        assert_eq!(
            "eight-gaussians".parse::<ToyKind>().unwrap(),
            ToyKind::EightGaussians
        );
        let err = "spiral".parse::<ToyKind>().unwrap_err().to_string();
        assert!(
            err.contains("spiral") && err.contains("checkerboard"),
            "{err}"
        );
    }

    #[test]
    fn point_subset() {
        let set = sample_toy(ToyKind::TwoMoons, 10, 0);
        let sub = set.subset(&[3, 1]);
        assert_eq!(sub.len(), 2);
        assert_eq!(sub.point(0), set.point(3));
        assert_eq!(sub.point(1), set.point(1));
        assert!(sub.subset(&[]).is_empty());
    }
}
