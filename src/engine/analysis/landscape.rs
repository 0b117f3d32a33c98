//! The held-out loss landscape on the plane through a base model and two other
//! models (paper Fig. 4 and Fig. 6a).
//!
//! # The plane
//! With task vectors `tau_a = theta_a - theta` and `tau_b = theta_b - theta` over
//! every float parameter (projections counted from the identity, lined up by the
//! merge engine: [`Merger`], [`HostTaskVectors`]), Gram-Schmidt gives the
//! orthonormal basis
//!
//! ```text
//! u = tau_a / |tau_a|
//! v = (tau_b - c tau_a) / |tau_b - c tau_a|,   c = <tau_a, tau_b> / |tau_a|^2
//! ```
//!
//! and the point with plane coordinates `(x, y)` is
//! `theta + |tau_a| (x u + y v)`: both axes are in units of `|tau_a|`, so `theta`
//! is `(0, 0)`, `theta_a` is `(1, 0)` and `theta_b` is
//! `(b_x, b_y) = (c, |tau_b - c tau_a| / |tau_a|)`.
//!
//! # Points as merges
//! Since `u` and `v` are combinations of `tau_a` and `tau_b`, every point of the
//! plane is a task-arithmetic merge `theta + w_a tau_a + w_b tau_b`, with
//!
//! ```text
//! (x, y) = w_a (1, 0) + w_b (b_x, b_y)     <=>     w_b = y / b_y,  w_a = x - w_b b_x
//! ```
//!
//! so the sweep sets each point's parameters with [`Merger::merge_into`] (one
//! pass over the parameters on the device, no reallocation), and `(0, 0)` is the
//! base bit for bit. Any merge `theta + sum_j w_j tau_j` of the N models is
//! placed on the plane by orthogonal projection, computed from the Gram matrix
//! `G_jk = <tau_j, tau_k>` (f64): `x = <z, tau_a> / |tau_a|^2`,
//! `y = <z, v> / |tau_a|`, and the out-of-plane residual is
//! `sqrt(|z|^2 - |tau_a|^2 (x^2 + y^2))` for `z = sum_j w_j tau_j`.
//!
//! # The sweep
//! A `G x G` lattice over `[x_lo, x_hi] x [y_lo, y_hi]` (`x_i = x_lo + (x_hi - x_lo) i / (G - 1)`).
//! At each point the held-out loss of a fixed [`EvalSet`] (the same `x_0`,
//! noise and `t` everywhere) is taken, overall and per each of the `ranges`
//! timestep ranges: one surface each. Points are visited coarse to fine: every
//! `s`-th row and column first (`s` the largest power of two leaving at least
//! five values per axis, so every 4th point of 21; the last index always included), then `s / 2`, ... 1,
//! each point once, streaming an event per point. Cancelling keeps what was
//! scored: every surface then holds the same scored points, the others empty.

use super::tv_stats::gram_matrix;
use crate::engine::eval::{EvalLosses, EvalSet, EvalSetConfig, timestep_ranges};
use crate::engine::merge::{HostTaskVectors, MergeSpec, Mergeable, Merger};
use crate::engine::search::Score;
use crate::engine::train::CancelToken;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// The plane through the base and the models `a` and `b`, from the Gram matrix
/// of N task vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plane {
    /// Index of model a among the N task vectors.
    pub a: usize,
    /// Index of model b.
    pub b: usize,
    /// `|tau_a|`, the unit of both axes.
    pub unit: f64,
    /// Plane coordinates of `theta_b`.
    pub b_xy: [f64; 2],
    /// Number of task vectors N.
    pub n: usize,
    /// Row-major N x N Gram matrix `<tau_j, tau_k>`.
    pub gram: Vec<f64>,
}

/// Where a merge lies relative to the plane.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Plane coordinates of its orthogonal projection.
    pub xy: [f64; 2],
    /// Norm of the out-of-plane part of its task vector `z` (parameter units).
    pub residual: f64,
    /// `residual / |z|` (0 for the base).
    pub residual_rel: f64,
}

impl Plane {
    /// The plane of task vectors `a` and `b` given the N x N Gram matrix.
    ///
    /// Fails when `tau_a` is zero or `tau_b` is (numerically) parallel to it:
    /// then the three models do not span a plane.
    pub fn new(gram: Vec<f64>, n: usize, a: usize, b: usize) -> Result<Self> {
        if gram.len() != n * n {
            bail!("a Gram matrix of {} values is not {n} x {n}", gram.len());
        }
        if a >= n || b >= n || a == b {
            bail!("the plane needs two different models among {n}, got {a} and {b}");
        }
        let (aa, ab, bb) = (gram[a * n + a], gram[a * n + b], gram[b * n + b]);
        if aa.is_nan() || aa <= 0.0 {
            bail!("model a equals the base (its task vector is zero): no plane to draw");
        }
        let perp2 = bb - ab * ab / aa;
        if perp2.is_nan() || perp2 <= 1e-10 * bb {
            bail!(
                "the task vectors of models a and b are parallel (cosine {:.6}): they span no plane",
                ab / (aa * bb).sqrt()
            );
        }
        Ok(Self {
            a,
            b,
            unit: aa.sqrt(),
            b_xy: [ab / aa, (perp2 / aa).sqrt()],
            n,
            gram,
        })
    }

    /// The plane of task vectors `a` and `b` of `tv`.
    pub fn from_task_vectors(tv: &HostTaskVectors, a: usize, b: usize) -> Result<Self> {
        Self::new(gram_matrix(tv), tv.num_experts(), a, b)
    }

    /// Merge weights (one per task vector, zero except at `a` and `b`) of the
    /// point `(x, y)`.
    pub fn weights_at(&self, x: f64, y: f64) -> Vec<f64> {
        let wb = y / self.b_xy[1];
        let wa = x - wb * self.b_xy[0];
        let mut w = vec![0.0; self.n];
        w[self.a] = wa;
        w[self.b] += wb;
        w
    }

    /// Projects the merge `theta + sum_j w_j tau_j` onto the plane.
    pub fn project(&self, w: &[f64]) -> Result<Projection> {
        let n = self.n;
        if w.len() != n {
            bail!("{} weights given for {n} task vectors", w.len());
        }
        let g = |j: usize, k: usize| self.gram[j * n + k];
        let za: f64 = (0..n).map(|j| w[j] * g(j, self.a)).sum();
        let zb: f64 = (0..n).map(|j| w[j] * g(j, self.b)).sum();
        let zz: f64 = (0..n)
            .flat_map(|j| (0..n).map(move |k| (j, k)))
            .map(|(j, k)| w[j] * w[k] * g(j, k))
            .sum();
        let aa = self.unit * self.unit;
        let c = g(self.a, self.b) / aa;
        let perp = self.b_xy[1] * self.unit; // |tau_b - c tau_a|
        let zu = za / self.unit;
        let zv = (zb - c * za) / perp;
        let residual = (zz - zu * zu - zv * zv).max(0.0).sqrt();
        Ok(Projection {
            xy: [zu / self.unit, zv / self.unit],
            residual,
            residual_rel: if zz > 0.0 { residual / zz.sqrt() } else { 0.0 },
        })
    }
}

/// The lattice of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LandscapeGrid {
    /// Points per axis G.
    pub size: usize,
    /// `[lo, hi]` of the x axis (units of `|tau_a|`).
    pub x: [f64; 2],
    /// `[lo, hi]` of the y axis.
    pub y: [f64; 2],
}

impl Default for LandscapeGrid {
    /// 21 x 21 over `[-0.2, 1.2]^2`.
    fn default() -> Self {
        Self {
            size: 21,
            x: [-0.2, 1.2],
            y: [-0.2, 1.2],
        }
    }
}

impl LandscapeGrid {
    /// Checks the lattice is drawable.
    pub fn validate(&self) -> Result<()> {
        if self.size < 2 {
            bail!("the landscape grid needs at least 2 points per axis");
        }
        if self.size > 1001 {
            bail!(
                "a {0} x {0} landscape is too many points; use at most 1001 per axis",
                self.size
            );
        }
        for (name, [lo, hi]) in [("x", self.x), ("y", self.y)] {
            if !lo.is_finite() || !hi.is_finite() || hi <= lo {
                bail!("the {name} range [{lo}, {hi}] must be finite with lo < hi");
            }
        }
        Ok(())
    }

    /// Values of one axis.
    fn axis(&self, [lo, hi]: [f64; 2]) -> Vec<f64> {
        let last = (self.size - 1) as f64;
        (0..self.size)
            .map(|i| lo + (hi - lo) * i as f64 / last)
            .collect()
    }

    /// x values, left to right.
    pub fn xs(&self) -> Vec<f64> {
        self.axis(self.x)
    }

    /// y values, bottom to top.
    pub fn ys(&self) -> Vec<f64> {
        self.axis(self.y)
    }

    /// The coarsest stride: the largest power of two leaving at least three
    /// values per axis (a 3 x 3 or 4 x 4 first picture in a few evaluations,
    /// refined level by level).
    pub fn coarsest_stride(&self) -> usize {
        let mut s = 1;
        while (self.size - 1) / (s * 2) >= 2 {
            s *= 2;
        }
        s
    }

    /// Lattice indices `(i, j)` visited, level by level: level `l` holds the
    /// points on the stride-`s_l` sub-lattice not in an earlier level.
    pub fn levels(&self) -> Vec<Vec<[usize; 2]>> {
        let g = self.size;
        let mut seen = vec![false; g * g];
        let mut out = Vec::new();
        let mut stride = self.coarsest_stride();
        loop {
            let axis: Vec<usize> = (0..g).filter(|&i| i % stride == 0 || i == g - 1).collect();
            let mut level = Vec::new();
            for &j in &axis {
                for &i in &axis {
                    if !seen[j * g + i] {
                        seen[j * g + i] = true;
                        level.push([i, j]);
                    }
                }
            }
            out.push(level);
            if stride == 1 {
                return out;
            }
            stride /= 2;
        }
    }
}

/// One loss surface over the lattice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Surface {
    /// `all` or `range{i}` (1-based).
    pub name: String,
    /// The timestep range `[lo, hi)` it averages over (None: all timesteps).
    pub range: Option<[usize; 2]>,
    /// Row-major `G x G`: `values[j * G + i]` is the loss at `(x_i, y_j)`
    /// (rows bottom to top); None where not scored (a cancelled sweep).
    pub values: Vec<Option<f64>>,
}

impl Surface {
    /// Smallest and largest scored value (None when nothing was scored).
    pub fn min_max(&self) -> Option<(f64, f64)> {
        self.values
            .iter()
            .flatten()
            .fold(None, |acc, &v| match acc {
                None => Some((v, v)),
                Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
            })
    }
}

/// What kind of model a marked point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkKind {
    /// The base `theta`.
    Base,
    /// One of the N models (an expert).
    Model,
    /// A merge with given weights.
    Merge,
}

/// A point to show on the landscape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// Shown name (a path, `base`, `merge`).
    pub label: String,
    /// Base, model or merge.
    pub kind: MarkKind,
    /// 1-based index among the N models (for [`MarkKind::Model`]).
    pub model: Option<usize>,
    /// Its merge weights over the N task vectors.
    pub weights: Vec<f64>,
    /// Its projection onto the plane.
    pub projection: Projection,
    /// Held-out loss of the model itself (not of its projection).
    pub loss: f64,
    /// Its per-range losses.
    pub per_range: Vec<f64>,
}

/// A merge to mark, given by weights over the N task vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkRequest {
    /// Shown name.
    pub label: String,
    /// One weight per task vector.
    pub weights: Vec<f64>,
}

/// Progress of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub enum LandscapeEvent {
    /// A marked point was placed and scored.
    Mark(Mark),
    /// A level of the coarse-to-fine sweep starts.
    Level {
        /// Level index (0 = coarsest).
        level: usize,
        /// Its stride in lattice points.
        stride: usize,
        /// Points in this level.
        points: usize,
    },
    /// A lattice point was scored.
    Point {
        /// Column (x index).
        i: usize,
        /// Row (y index, bottom to top).
        j: usize,
        /// Plane coordinates.
        xy: [f64; 2],
        /// Loss over all timesteps and per range.
        score: Score,
        /// Points scored so far.
        done: usize,
        /// Points in the whole lattice.
        total: usize,
    },
}

/// The sweep's outcome (partial when cancelled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Landscape {
    /// The lattice.
    pub grid: LandscapeGrid,
    /// x values, left to right.
    pub xs: Vec<f64>,
    /// y values, bottom to top.
    pub ys: Vec<f64>,
    /// The plane (basis, Gram matrix).
    pub plane: Plane,
    /// Labels of the N models whose task vectors the weights refer to.
    pub labels: Vec<String>,
    /// Surfaces: `all`, then one per timestep range.
    pub surfaces: Vec<Surface>,
    /// Base, the N models and requested merges, projected onto the plane.
    pub marks: Vec<Mark>,
    /// Lattice indices `[i, j]` in the order scored.
    pub order: Vec<[usize; 2]>,
    /// Points scored.
    pub done: usize,
    /// Points in the lattice.
    pub total: usize,
    /// Whether the sweep was cancelled before it finished.
    pub cancelled: bool,
    /// The evaluation set's settings.
    pub eval: EvalSetConfig,
}

impl Landscape {
    /// The surface named `name`.
    pub fn surface(&self, name: &str) -> Option<&Surface> {
        self.surfaces.iter().find(|s| s.name == name)
    }

    /// Scores at lattice point `(i, j)`: overall, then per range (None: not scored).
    pub fn at(&self, i: usize, j: usize) -> Option<Vec<f64>> {
        let g = self.grid.size;
        self.surfaces.iter().map(|s| s.values[j * g + i]).collect()
    }
}

/// Sweeps the lattice with a scoring closure (the pure part of the landscape).
///
/// `score(x, y)` is called once per point, coarse to fine; `cancel` is checked
/// before each point. Returns the surfaces (overall first, then per range, as
/// `score` orders its `per_range`), the order scored and whether it was cancelled.
pub fn sweep(
    grid: &LandscapeGrid,
    ranges: &[[usize; 2]],
    score: &mut dyn FnMut(f64, f64) -> Result<Score>,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(LandscapeEvent),
) -> Result<(Vec<Surface>, Vec<[usize; 2]>, bool)> {
    grid.validate()?;
    let g = grid.size;
    let (xs, ys) = (grid.xs(), grid.ys());
    let mut surfaces: Vec<Surface> = std::iter::once(Surface {
        name: "all".into(),
        range: None,
        values: vec![None; g * g],
    })
    .chain(ranges.iter().enumerate().map(|(r, range)| Surface {
        name: format!("range{}", r + 1),
        range: Some(*range),
        values: vec![None; g * g],
    }))
    .collect();
    let mut order = Vec::with_capacity(g * g);
    let mut stride = grid.coarsest_stride();
    for (level, points) in grid.levels().into_iter().enumerate() {
        on_event(LandscapeEvent::Level {
            level,
            stride,
            points: points.len(),
        });
        stride = (stride / 2).max(1);
        for [i, j] in points {
            if cancel.is_cancelled() {
                return Ok((surfaces, order, true));
            }
            let s = score(xs[i], ys[j])?;
            if s.per_range.len() != ranges.len() {
                bail!(
                    "the landscape score has {} per-range losses, expected {}",
                    s.per_range.len(),
                    ranges.len()
                );
            }
            // all surfaces are written together: a partial result stays consistent
            surfaces[0].values[j * g + i] = Some(s.loss);
            for (surf, &l) in surfaces[1..].iter_mut().zip(&s.per_range) {
                surf.values[j * g + i] = Some(l);
            }
            order.push([i, j]);
            on_event(LandscapeEvent::Point {
                i,
                j,
                xy: [xs[i], ys[j]],
                score: s,
                done: order.len(),
                total: g * g,
            });
        }
    }
    Ok((surfaces, order, false))
}

/// Settings of [`loss_landscape`].
#[derive(Debug, Clone, PartialEq)]
pub struct LandscapeConfig {
    /// The lattice.
    pub grid: LandscapeGrid,
    /// The timestep ranges `[lo, hi)` of the per-range surfaces (the experts'
    /// ranges, uniform or not).
    pub ranges: Vec<[usize; 2]>,
}

impl Default for LandscapeConfig {
    fn default() -> Self {
        Self {
            grid: LandscapeGrid::default(),
            ranges: timestep_ranges(4, 1000),
        }
    }
}

/// Scores merges of the plane's models on a fixed evaluation set, re-merging
/// into one model on the device.
struct Scorer<'a, M: Mergeable> {
    merger: Merger<M>,
    model: Option<M>,
    eval: &'a EvalSet,
    ranges: &'a [[usize; 2]],
}

impl<M: Mergeable> Scorer<'_, M> {
    fn losses(&mut self, weights: &[f64]) -> Result<EvalLosses> {
        let spec = MergeSpec::task_arithmetic(weights.iter().map(|&w| w as f32).collect());
        let merged = match self.model.take() {
            None => self.merger.merge(&spec)?,
            Some(m) => self.merger.merge_into(m, &spec)?,
        };
        let losses = self.eval.evaluate(&|x, t| merged.predict_eps(x, t));
        self.model = Some(merged);
        losses
    }

    fn score(&mut self, weights: &[f64]) -> Result<Score> {
        let l = self.losses(weights)?;
        Ok(Score {
            loss: l.mean(),
            per_range: l.per_ranges(self.ranges),
        })
    }
}

/// What a landscape is drawn for: the base, the N models whose task vectors
/// the weights refer to, which two of them span the plane, and merges to mark.
pub struct LandscapeModels<'a, M> {
    /// `(label, model)` of the base `theta`.
    pub base: (&'a str, &'a M),
    /// `(label, model)` of the N models (experts); every one is marked.
    pub models: &'a [(&'a str, &'a M)],
    /// Index of model a (the x axis and the unit) in `models`.
    pub a: usize,
    /// Index of model b in `models`.
    pub b: usize,
    /// Merges to mark, weights over `models`.
    pub merges: &'a [MarkRequest],
}

/// The loss landscape on the plane through the base and models `a` and `b`.
pub fn loss_landscape<M: Mergeable>(
    input: &LandscapeModels<'_, M>,
    eval: &EvalSet,
    config: &LandscapeConfig,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(LandscapeEvent),
) -> Result<Landscape> {
    let LandscapeModels {
        base,
        models,
        a,
        b,
        merges,
    } = *input;
    config.grid.validate()?;
    if config.ranges.is_empty() {
        bail!("the landscape needs at least one timestep range");
    }
    if let Some([lo, hi]) = config
        .ranges
        .iter()
        .find(|[lo, hi]| lo >= hi || *hi > eval.num_train_timesteps())
    {
        bail!(
            "timestep range [{lo}, {hi}) is empty or outside [0, {})",
            eval.num_train_timesteps()
        );
    }
    let merger = Merger::new(base, models)?;
    let plane = {
        let tv = merger.host_task_vectors()?;
        Plane::from_task_vectors(&tv, a, b)?
    };
    let n = models.len();
    let mut scorer = Scorer {
        merger,
        model: None,
        eval,
        ranges: &config.ranges,
    };
    let mut requests: Vec<(String, MarkKind, Option<usize>, Vec<f64>)> =
        vec![("base".into(), MarkKind::Base, None, vec![0.0; n])];
    for (k, (label, _)) in models.iter().enumerate() {
        let mut w = vec![0.0; n];
        w[k] = 1.0;
        requests.push((label.to_string(), MarkKind::Model, Some(k + 1), w));
    }
    for m in merges {
        if m.weights.len() != n {
            bail!(
                "merge `{}` has {} weights for {n} models",
                m.label,
                m.weights.len()
            );
        }
        requests.push((m.label.clone(), MarkKind::Merge, None, m.weights.clone()));
    }
    let mut marks = Vec::with_capacity(requests.len());
    let mut num_timesteps = None;
    for (label, kind, model, weights) in requests {
        // the base is always scored: it tells the ranges' bounds
        if cancel.is_cancelled() && num_timesteps.is_some() {
            break;
        }
        let projection = plane.project(&weights)?;
        let losses = scorer.losses(&weights)?;
        num_timesteps.get_or_insert(losses.num_train_timesteps);
        let mark = Mark {
            label,
            kind,
            model,
            weights,
            projection,
            loss: losses.mean(),
            per_range: losses.per_ranges(&config.ranges),
        };
        on_event(LandscapeEvent::Mark(mark.clone()));
        marks.push(mark);
    }
    let (surfaces, order, cancelled) = sweep(
        &config.grid,
        &config.ranges,
        &mut |x, y| scorer.score(&plane.weights_at(x, y)),
        cancel,
        on_event,
    )?;
    let g = config.grid.size;
    Ok(Landscape {
        xs: config.grid.xs(),
        ys: config.grid.ys(),
        grid: config.grid.clone(),
        labels: models.iter().map(|(l, _)| l.to_string()).collect(),
        plane,
        surfaces,
        marks,
        done: order.len(),
        order,
        total: g * g,
        cancelled: cancelled || cancel.is_cancelled(),
        eval: eval.config(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gram_of(vs: &[Vec<f64>]) -> Vec<f64> {
        let n = vs.len();
        let mut g = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                g[i * n + j] = vs[i].iter().zip(&vs[j]).map(|(a, b)| a * b).sum();
            }
        }
        g
    }

    #[test]
    fn plane_coordinates_and_weights_round_trip() {
        // tau_a = (2, 0, 0), tau_b = (1, 3, 0), tau_c = (0, 0, 4) + in-plane (2, 2, 0)
        let vs = vec![
            vec![2.0, 0.0, 0.0],
            vec![1.0, 3.0, 0.0],
            vec![2.0, 2.0, 4.0],
        ];
        let p = Plane::new(gram_of(&vs), 3, 0, 1).unwrap();
        assert_eq!(p.unit, 2.0);
        assert!((p.b_xy[0] - 0.5).abs() < 1e-12 && (p.b_xy[1] - 1.5).abs() < 1e-12);
        let a = p.project(&[1.0, 0.0, 0.0]).unwrap();
        assert_eq!(a.xy, [1.0, 0.0]);
        assert_eq!(a.residual, 0.0);
        let c = p.project(&[0.0, 0.0, 1.0]).unwrap();
        assert!((c.xy[0] - 1.0).abs() < 1e-12 && (c.xy[1] - 1.0).abs() < 1e-12);
        assert!((c.residual - 4.0).abs() < 1e-12);
        assert!((c.residual_rel - 4.0 / 24f64.sqrt()).abs() < 1e-12);
        let base = p.project(&[0.0; 3]).unwrap();
        assert_eq!((base.xy, base.residual_rel), ([0.0, 0.0], 0.0));
        // weights_at inverts project on the plane
        for (x, y) in [(0.3, -0.2), (1.2, 0.7), (0.0, 1.0)] {
            let w = p.weights_at(x, y);
            assert_eq!(w[2], 0.0);
            let q = p.project(&w).unwrap();
            assert!((q.xy[0] - x).abs() < 1e-12 && (q.xy[1] - y).abs() < 1e-12);
            assert!(q.residual < 1e-7);
        }
    }

    #[test]
    fn degenerate_planes_are_refused() {
        let par = vec![vec![1.0, 1.0], vec![-2.0, -2.0]];
        let msg = Plane::new(gram_of(&par), 2, 0, 1).unwrap_err().to_string();
        assert!(msg.contains("parallel"), "{msg}");
        let zero = vec![vec![0.0, 0.0], vec![1.0, 0.0]];
        assert!(Plane::new(gram_of(&zero), 2, 0, 1).is_err());
        assert!(Plane::new(gram_of(&zero), 2, 1, 1).is_err());
    }

    #[test]
    fn levels_cover_the_lattice_once_coarse_first() {
        let g = LandscapeGrid::default();
        let levels = g.levels();
        assert_eq!(g.coarsest_stride(), 8);
        assert_eq!(levels.len(), 4);
        // 0, 8, 16 and the last index 20
        assert_eq!(levels[0].len(), 16);
        assert_eq!(levels[1].len(), 36 - 16);
        let mut all: Vec<[usize; 2]> = levels.concat();
        assert_eq!(all.len(), 441);
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 441);
        let odd = LandscapeGrid {
            size: 10,
            ..LandscapeGrid::default()
        };
        // stride 4 over 0..=9 keeps the last index: 0, 4, 8, 9
        assert_eq!(odd.levels()[0].len(), 16);
        assert_eq!(odd.levels().concat().len(), 100);
        let small = LandscapeGrid {
            size: 5,
            ..LandscapeGrid::default()
        };
        assert_eq!(small.levels().len(), 2);
        assert_eq!(small.levels()[0].len(), 9);
        let tiny = LandscapeGrid {
            size: 3,
            ..LandscapeGrid::default()
        };
        assert_eq!(
            tiny.levels(),
            vec![
                (0..3)
                    .flat_map(|j| (0..3).map(move |i| [i, j]))
                    .collect::<Vec<_>>()
            ]
        );
    }

    #[test]
    fn sweep_streams_every_point_and_cancels_consistently() {
        let grid = LandscapeGrid {
            size: 5,
            x: [0.0, 1.0],
            y: [0.0, 2.0],
        };
        let ranges = [[0, 500], [500, 1000]];
        let mut score = |x: f64, y: f64| -> Result<Score> {
            Ok(Score {
                loss: x + 10.0 * y,
                per_range: vec![x, y],
            })
        };
        let mut points = 0;
        let (s, order, cancelled) =
            sweep(&grid, &ranges, &mut score, &CancelToken::new(), &mut |e| {
                if matches!(e, LandscapeEvent::Point { .. }) {
                    points += 1;
                }
            })
            .unwrap();
        assert!(!cancelled);
        assert_eq!((points, order.len()), (25, 25));
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].values[3 * 5 + 2], Some(0.5 + 15.0));
        assert_eq!(s[2].values[3 * 5 + 2], Some(1.5));
        let cancel = CancelToken::new();
        let mut n = 0;
        let (s, order, cancelled) = sweep(&grid, &ranges, &mut score, &cancel, &mut |e| {
            if matches!(e, LandscapeEvent::Point { .. }) {
                n += 1;
                if n == 7 {
                    cancel.cancel();
                }
            }
        })
        .unwrap();
        assert!(cancelled);
        assert_eq!(order.len(), 7);
        for surf in &s {
            let scored: Vec<usize> = (0..25).filter(|&k| surf.values[k].is_some()).collect();
            let mut want: Vec<usize> = order.iter().map(|[i, j]| j * 5 + i).collect();
            want.sort();
            assert_eq!(scored, want);
        }
    }
}
