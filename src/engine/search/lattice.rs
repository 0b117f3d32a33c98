//! The lattice of merge weights a search visits, what the objective says of a
//! point, and the stream and outcome of a search; shared by the strategies
//! ([`super::grid`], [`super::coordinate`]).

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The lattice of weights to search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    /// Number of weights N.
    pub n: usize,
    /// Smallest weight.
    pub lo: f64,
    /// Largest weight.
    pub hi: f64,
    /// Finest spacing.
    pub step: f64,
    /// Keep only points whose weights sum to 1.
    pub sum_to_one: bool,
}

/// What the objective says of one point (lower is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The value minimised (held-out loss over all timesteps).
    pub loss: f64,
    /// Breakdown per timestep range (may be empty).
    pub per_range: Vec<f64>,
}

/// One scored point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridPoint {
    /// The merge weights.
    pub weights: Vec<f64>,
    /// Its score.
    pub score: Score,
    /// Refinement level it was scored at (0 = coarsest).
    pub level: usize,
}

/// Progress of a search.
#[derive(Debug, Clone, PartialEq)]
pub enum GridEvent {
    /// A new level starts with this many points to score.
    Level {
        /// Level index (0 = coarsest).
        level: usize,
        /// Its spacing.
        step: f64,
        /// Points in this level not scored before.
        points: usize,
    },
    /// A point was scored.
    Point {
        /// The point.
        point: GridPoint,
        /// Best point so far (may be this one).
        best: GridPoint,
        /// Points scored so far.
        done: usize,
    },
}

/// The outcome: every point scored, in order, and the best.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridResult {
    /// Every scored point in the order scored.
    pub points: Vec<GridPoint>,
    /// Index of the best point in `points`.
    pub best: usize,
    /// Whether the search was cancelled before it finished.
    pub cancelled: bool,
}

impl GridResult {
    /// The result of a search that scored `points` (`best` indexing the best
    /// of them); an error when it scored none.
    pub fn finish(points: Vec<GridPoint>, best: Option<usize>, cancelled: bool) -> Result<Self> {
        match best {
            Some(best) => Ok(Self {
                points,
                best,
                cancelled,
            }),
            None if cancelled => bail!("the search was cancelled before any point was scored"),
            None => bail!("the search scored no point"),
        }
    }

    /// The best point.
    pub fn best_point(&self) -> &GridPoint {
        &self.points[self.best]
    }

    /// Points sorted by loss, best first.
    pub fn ranked(&self) -> Vec<&GridPoint> {
        let mut v: Vec<&GridPoint> = self.points.iter().collect();
        v.sort_by(|a, b| a.score.loss.total_cmp(&b.score.loss));
        v
    }
}

impl GridSpec {
    /// Number of lattice values per weight.
    pub fn ticks(&self) -> usize {
        ((self.hi - self.lo) / self.step + 1e-9).floor() as usize + 1
    }

    /// Checks the spec is searchable by listing lattice points: the bounds
    /// (see [`Self::validate_bounds`]) and a lattice small enough to list.
    pub fn validate(&self) -> Result<()> {
        self.validate_bounds()?;
        let per = self.ticks() as f64;
        if !self.sum_to_one && per.powi(self.n as i32) > 5e6 {
            bail!(
                "the grid has {:.0} points; use a coarser step, --sum-to-one, or the refine or coordinate strategy",
                per.powi(self.n as i32)
            );
        }
        Ok(())
    }

    /// Checks the number of weights, the bounds and the step, and that some
    /// point sums to 1 when that is asked.
    pub fn validate_bounds(&self) -> Result<()> {
        if self.n == 0 {
            bail!("grid search needs at least one weight");
        }
        if !(self.step > 0.0) || !self.lo.is_finite() || !self.hi.is_finite() {
            bail!("grid step must be positive and the bounds finite");
        }
        if (self.hi - self.lo) / self.step > 100_000.0 {
            bail!(
                "the grid has more than 100,000 values per weight; use a coarser step than {}",
                self.step
            );
        }
        if self.hi < self.lo {
            bail!(
                "grid upper bound {} is below the lower bound {}",
                self.hi,
                self.lo
            );
        }
        if self.sum_to_one && self.points_at(1).is_empty() {
            bail!(
                "no point of the grid [{}, {}] step {} has weights summing to 1",
                self.lo,
                self.hi,
                self.step
            );
        }
        Ok(())
    }

    /// The weights of lattice index `k`.
    pub fn weights(&self, k: &[usize]) -> Vec<f64> {
        k.iter().map(|&i| self.lo + i as f64 * self.step).collect()
    }

    fn admissible(&self, k: &[usize]) -> bool {
        !self.sum_to_one || (self.weights(k).iter().sum::<f64>() - 1.0).abs() < self.step * 1e-6
    }

    /// Every admissible lattice point whose indices are multiples of `stride`
    /// (plus the last index, so the upper bound is always included).
    pub fn points_at(&self, stride: usize) -> Vec<Vec<usize>> {
        let last = self.ticks() - 1;
        let mut axis: Vec<usize> = (0..=last).step_by(stride.max(1)).collect();
        if *axis.last().unwrap_or(&0) != last {
            axis.push(last);
        }
        let mut out = Vec::new();
        let mut k = vec![0usize; self.n];
        cartesian(&axis, &mut k, 0, &mut |p| {
            if self.admissible(p) {
                out.push(p.to_vec());
            }
        });
        out
    }

    pub(super) fn neighbours(&self, centre: &[usize], radius: usize) -> Vec<Vec<usize>> {
        let last = self.ticks() - 1;
        let axes: Vec<Vec<usize>> = centre
            .iter()
            .map(|&c| (c.saturating_sub(radius)..=(c + radius).min(last)).collect())
            .collect();
        let mut out = Vec::new();
        let mut k = vec![0usize; self.n];
        cartesian_per_axis(&axes, &mut k, 0, &mut |p| {
            if self.admissible(p) {
                out.push(p.to_vec());
            }
        });
        out
    }

    /// The coarsest stride used: the largest power of two leaving at least three
    /// values per axis.
    pub fn coarsest_stride(&self) -> usize {
        let mut s = 1;
        while (self.ticks() - 1) / (s * 2) >= 2 {
            s *= 2;
        }
        s
    }
}

fn cartesian(axis: &[usize], k: &mut [usize], d: usize, f: &mut dyn FnMut(&[usize])) {
    if d == k.len() {
        f(k);
        return;
    }
    for &v in axis {
        k[d] = v;
        cartesian(axis, k, d + 1, f);
    }
}

fn cartesian_per_axis(axes: &[Vec<usize>], k: &mut [usize], d: usize, f: &mut dyn FnMut(&[usize])) {
    if d == k.len() {
        f(k);
        return;
    }
    for &v in &axes[d] {
        k[d] = v;
        cartesian_per_axis(axes, k, d + 1, f);
    }
}
