//! CMA-ES over merge weights: a derivative-free search for objectives without
//! a gradient (the Frechet distance of generated images), where
//! [`super::learned`] cannot go.
//!
//! The covariance matrix adaptation evolution strategy (Hansen, "The CMA
//! Evolution Strategy: A Tutorial", 2016) samples a population of weights
//! from a normal distribution, moves its mean to a weighted average of the
//! best half and learns the covariance from the steps that worked, so it
//! follows valleys that run across the axes (where the coordinate search zigzags)
//! and copes with a noisy objective. It runs in the unit cube: weight
//! `lo + (hi - lo) * y`, starting at the centre with step `sigma`. A sample
//! outside the cube is clamped to it and the clamped point is both scored and
//! used in the update (a repair), so the mean never leaves the bounds.
//!
//! It stops after `evaluations` scores, or when the distribution is narrower
//! than half the lattice step (the resolution the search was asked for).
//! Points are not on the lattice: the weights are continuous.

use super::lattice::{GridEvent, GridPoint, GridResult, GridSpec, Score};
use super::strategy::{CmaesSettings, validate_cmaes};
use crate::engine::metric::sym_eigen::eigen;
use anyhow::Result;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};

/// Runs CMA-ES; arguments as [`super::grid_search`]. Each generation is one
/// "level" of the stream, its `step` the current step size in weight units.
pub fn cmaes_search(
    spec: &GridSpec,
    settings: CmaesSettings,
    score: &mut dyn FnMut(&[f64]) -> Result<Score>,
    keep_going: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(GridEvent),
) -> Result<GridResult> {
    validate_cmaes(spec, &settings)?;
    let n = spec.n;
    let span = spec.hi - spec.lo;
    let mut es = Evolution::new(n, settings);
    let mut rng = StdRng::seed_from_u64(settings.seed);
    let tolerance = 0.5 * spec.step / span;
    let mut points: Vec<GridPoint> = Vec::new();
    let mut best: Option<usize> = None;
    let mut level = 0;
    while points.len() < settings.evaluations && es.width() > tolerance {
        let lambda = es.lambda.min(settings.evaluations - points.len());
        if lambda < 2 {
            break;
        }
        on_event(GridEvent::Level {
            level,
            step: es.sigma * span,
            points: lambda,
        });
        let mut generation: Vec<(Vec<f64>, f64)> = Vec::with_capacity(lambda);
        for _ in 0..lambda {
            if !keep_going() {
                return GridResult::finish(points, best, true);
            }
            let y = es.sample(&mut rng);
            let weights: Vec<f64> = y.iter().map(|v| spec.lo + span * v).collect();
            let s = score(&weights)?;
            let loss = s.loss;
            points.push(GridPoint {
                weights,
                score: s,
                level,
            });
            let i = points.len() - 1;
            if best.is_none_or(|b| loss < points[b].score.loss) {
                best = Some(i);
            }
            on_event(GridEvent::Point {
                point: points[i].clone(),
                best: points[best.expect("a point was scored")].clone(),
                done: points.len(),
            });
            generation.push((y, loss));
        }
        es.update(generation)?;
        level += 1;
    }
    GridResult::finish(points, best, false)
}

/// The state of the evolution strategy in the unit cube.
struct Evolution {
    n: usize,
    lambda: usize,
    mean: Vec<f64>,
    sigma: f64,
    /// Covariance, row-major n x n, and its eigendecomposition `B diag(d^2) B^T`.
    c: Vec<f64>,
    b: Vec<f64>,
    d: Vec<f64>,
    pc: Vec<f64>,
    ps: Vec<f64>,
    generation: usize,
}

impl Evolution {
    fn new(n: usize, settings: CmaesSettings) -> Self {
        let lambda = match settings.population {
            0 => 4 + (3.0 * (n as f64).ln()).floor() as usize,
            p => p,
        };
        let mut identity = vec![0.0; n * n];
        for i in 0..n {
            identity[i * n + i] = 1.0;
        }
        Self {
            n,
            lambda,
            mean: vec![0.5; n],
            sigma: settings.sigma,
            c: identity.clone(),
            b: identity,
            d: vec![1.0; n],
            pc: vec![0.0; n],
            ps: vec![0.0; n],
            generation: 0,
        }
    }

    /// The largest standard deviation along any direction.
    fn width(&self) -> f64 {
        self.sigma * self.d.iter().cloned().fold(0.0, f64::max)
    }

    /// `B D z` for `z` drawn from N(0, I), added to the mean, clamped.
    fn sample(&self, rng: &mut StdRng) -> Vec<f64> {
        let n = self.n;
        let z: Vec<f64> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
        (0..n)
            .map(|i| {
                let step: f64 = (0..n).map(|j| self.b[i * n + j] * self.d[j] * z[j]).sum();
                (self.mean[i] + self.sigma * step).clamp(0.0, 1.0)
            })
            .collect()
    }

    /// One generation's update from its (point, value) pairs (Hansen's tutorial, Fig. 6).
    fn update(&mut self, mut generation: Vec<(Vec<f64>, f64)>) -> Result<()> {
        let n = self.n;
        let nf = n as f64;
        generation.sort_by(|a, b| a.1.total_cmp(&b.1));
        let lambda = generation.len();
        let mu = lambda / 2;
        let raw: Vec<f64> = (0..mu)
            .map(|i| ((lambda as f64 + 1.0) / 2.0).ln() - ((i + 1) as f64).ln())
            .collect();
        let total: f64 = raw.iter().sum();
        let w: Vec<f64> = raw.iter().map(|v| v / total).collect();
        let mueff = 1.0 / w.iter().map(|v| v * v).sum::<f64>();
        let cc = (4.0 + mueff / nf) / (nf + 4.0 + 2.0 * mueff / nf);
        let cs = (mueff + 2.0) / (nf + mueff + 5.0);
        let c1 = 2.0 / ((nf + 1.3).powi(2) + mueff);
        let cmu = (1.0 - c1).min(2.0 * (mueff - 2.0 + 1.0 / mueff) / ((nf + 2.0).powi(2) + mueff));
        let damps = 1.0 + 2.0 * (((mueff - 1.0) / (nf + 1.0)).sqrt() - 1.0).max(0.0) + cs;
        let chi_n = nf.sqrt() * (1.0 - 1.0 / (4.0 * nf) + 1.0 / (21.0 * nf * nf));

        let old = self.mean.clone();
        // steps of the selected points in units of sigma
        let steps: Vec<Vec<f64>> = generation[..mu]
            .iter()
            .map(|(y, _)| {
                y.iter()
                    .zip(&old)
                    .map(|(a, m)| (a - m) / self.sigma)
                    .collect()
            })
            .collect();
        let mut mean_step = vec![0.0; n];
        for (wi, s) in w.iter().zip(&steps) {
            for k in 0..n {
                mean_step[k] += wi * s[k];
            }
        }
        for k in 0..n {
            self.mean[k] = old[k] + self.sigma * mean_step[k];
        }
        // C^(-1/2) * mean_step = B diag(1/d) B^T mean_step
        let bt: Vec<f64> = (0..n)
            .map(|j| {
                (0..n)
                    .map(|i| self.b[i * n + j] * mean_step[i])
                    .sum::<f64>()
                    / self.d[j]
            })
            .collect();
        let whitened: Vec<f64> = (0..n)
            .map(|i| (0..n).map(|j| self.b[i * n + j] * bt[j]).sum())
            .collect();
        let a = (cs * (2.0 - cs) * mueff).sqrt();
        for k in 0..n {
            self.ps[k] = (1.0 - cs) * self.ps[k] + a * whitened[k];
        }
        self.generation += 1;
        let ps_norm = self.ps.iter().map(|v| v * v).sum::<f64>().sqrt();
        let decay = 1.0 - (1.0 - cs).powi(2 * self.generation as i32);
        let hsig = ps_norm / decay.sqrt() / chi_n < 1.4 + 2.0 / (nf + 1.0);
        let hs = if hsig { 1.0 } else { 0.0 };
        let ac = (cc * (2.0 - cc) * mueff).sqrt();
        for k in 0..n {
            self.pc[k] = (1.0 - cc) * self.pc[k] + hs * ac * mean_step[k];
        }
        let keep = 1.0 - c1 - cmu + (1.0 - hs) * c1 * cc * (2.0 - cc);
        for i in 0..n {
            for j in 0..n {
                let rank_mu: f64 = w.iter().zip(&steps).map(|(wi, s)| wi * s[i] * s[j]).sum();
                self.c[i * n + j] =
                    keep * self.c[i * n + j] + c1 * self.pc[i] * self.pc[j] + cmu * rank_mu;
            }
        }
        self.sigma *= ((cs / damps) * (ps_norm / chi_n - 1.0)).exp();
        let e = eigen(&self.c, n)?;
        self.d = e.values.iter().map(|v| v.max(1e-20).sqrt()).collect();
        self.b = e.vectors;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn spec(n: usize, lo: f64, hi: f64) -> GridSpec {
        GridSpec {
            n,
            lo,
            hi,
            step: 1e-4,
            sum_to_one: false,
        }
    }

    fn run(
        spec: &GridSpec,
        settings: CmaesSettings,
        f: &dyn Fn(&[f64]) -> f64,
    ) -> (GridResult, Vec<GridEvent>) {
        let mut events = Vec::new();
        let r = cmaes_search(
            spec,
            settings,
            &mut |w| {
                Ok(Score {
                    loss: f(w),
                    per_range: vec![],
                })
            },
            &|| true,
            &mut |e| events.push(e),
        )
        .unwrap();
        (r, events)
    }

    fn budget(evaluations: usize) -> CmaesSettings {
        CmaesSettings {
            evaluations,
            ..CmaesSettings::default()
        }
    }

    #[test]
    fn finds_the_centre_of_a_shifted_sphere() {
        let target = [0.2, 0.7, 0.45, 0.9];
        let f = |w: &[f64]| w.iter().zip(&target).map(|(a, b)| (a - b).powi(2)).sum();
        let (r, _) = run(&spec(4, 0.0, 1.0), budget(1000), &f);
        let best = r.best_point();
        for (w, t) in best.weights.iter().zip(&target) {
            assert!((w - t).abs() < 1e-3, "{:?}", best.weights);
        }
    }

    #[test]
    fn follows_the_rosenbrock_valley_to_its_minimum() {
        let f = |w: &[f64]| (1.0 - w[0]).powi(2) + 100.0 * (w[1] - w[0] * w[0]).powi(2);
        let (r, _) = run(&spec(2, -2.0, 2.0), budget(3000), &f);
        let best = r.best_point();
        assert!(best.score.loss < 1e-6, "{best:?}");
        assert!((best.weights[0] - 1.0).abs() < 1e-2 && (best.weights[1] - 1.0).abs() < 2e-2);
    }

    #[test]
    fn learns_a_rotated_ill_conditioned_valley() {
        // condition number 1e4 along a diagonal: the covariance must learn the rotation
        let f = |w: &[f64]| {
            let (u, v) = (w[0] - 0.6, w[1] - 0.3);
            let (a, b) = ((u + v) / 2f64.sqrt(), (u - v) / 2f64.sqrt());
            a * a + 1e4 * b * b
        };
        let (r, _) = run(&spec(2, 0.0, 1.0), budget(1500), &f);
        let best = r.best_point();
        assert!(best.score.loss < 1e-8, "{best:?}");
    }

    #[test]
    fn an_optimum_outside_the_bounds_ends_on_the_bound() {
        let f = |w: &[f64]| (w[0] - 3.0).powi(2) + (w[1] - 0.5).powi(2);
        let (r, _) = run(&spec(2, 0.0, 1.0), budget(600), &f);
        let best = r.best_point();
        assert!((best.weights[0] - 1.0).abs() < 1e-9, "{best:?}");
        assert!((best.weights[1] - 0.5).abs() < 1e-2, "{best:?}");
        assert!(
            r.points
                .iter()
                .all(|p| p.weights.iter().all(|w| (0.0..=1.0).contains(w)))
        );
    }

    #[test]
    fn keeps_to_the_budget_streams_every_point_and_repeats_with_its_seed() {
        let f = |w: &[f64]| w.iter().map(|v| (v - 0.3).powi(2)).sum();
        let s = budget(25);
        let (a, events) = run(&spec(3, 0.0, 1.0), s, &f);
        assert!(
            a.points.len() <= 25 && a.points.len() >= 20,
            "{}",
            a.points.len()
        );
        let streamed = events
            .iter()
            .filter(|e| matches!(e, GridEvent::Point { .. }))
            .count();
        assert_eq!(streamed, a.points.len());
        let best_loss = a
            .points
            .iter()
            .map(|p| p.score.loss)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(a.best_point().score.loss, best_loss);
        let (b, _) = run(&spec(3, 0.0, 1.0), s, &f);
        assert_eq!(a, b);
        let (c, _) = run(&spec(3, 0.0, 1.0), CmaesSettings { seed: 9, ..s }, &f);
        assert_ne!(a.points[0].weights, c.points[0].weights);
    }

    #[test]
    fn stops_once_narrower_than_the_lattice_step() {
        let f = |w: &[f64]| w.iter().map(|v| (v - 0.4).powi(2)).sum();
        let coarse = GridSpec {
            step: 0.05,
            ..spec(2, 0.0, 1.0)
        };
        let (r, _) = run(&coarse, budget(10_000), &f);
        assert!(r.points.len() < 500, "{} points", r.points.len());
        assert!(!r.cancelled);
        for w in &r.best_point().weights {
            assert!((w - 0.4).abs() < 0.05, "{w}");
        }
    }

    #[test]
    fn cancel_returns_what_was_scored() {
        let scored = Cell::new(0);
        let r = cmaes_search(
            &spec(2, 0.0, 1.0),
            budget(100),
            &mut |w| {
                scored.set(scored.get() + 1);
                Ok(Score {
                    loss: w[0],
                    per_range: vec![],
                })
            },
            &|| scored.get() < 7,
            &mut |_| {},
        )
        .unwrap();
        assert!(r.cancelled);
        assert_eq!(r.points.len(), 7);
    }

    #[test]
    fn refuses_what_it_cannot_search() {
        let s = CmaesSettings::default();
        let sum = GridSpec {
            sum_to_one: true,
            ..spec(2, 0.0, 1.0)
        };
        assert!(
            validate_cmaes(&sum, &s)
                .unwrap_err()
                .to_string()
                .contains("summing to 1")
        );
        let flat = GridSpec {
            hi: 0.0,
            ..spec(2, 0.0, 1.0)
        };
        assert!(validate_cmaes(&flat, &s).is_err());
        for bad in [
            CmaesSettings {
                evaluations: 1,
                ..s
            },
            CmaesSettings { sigma: 0.0, ..s },
            CmaesSettings { sigma: 2.0, ..s },
            CmaesSettings { population: 1, ..s },
        ] {
            assert!(validate_cmaes(&spec(2, 0.0, 1.0), &bad).is_err(), "{bad:?}");
        }
    }
}
