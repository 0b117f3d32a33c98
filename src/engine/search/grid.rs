//! Grid search over merge weights `w_1..w_N`: which points, in which order, and
//! the best so far, streamed as each point is scored.
//!
//! Points lie on the lattice `w_i = lo + k_i * step` (`0 <= k_i <= (hi - lo) / step`),
//! optionally restricted to `sum_i w_i = 1`. Three strategies:
//! - [`Strategy::Exhaustive`] scores every lattice point, coarse sub-lattices first
//!   (step `2^L * step`, then `2^(L-1) * step`, ...), so a useful answer comes early
//!   and the final answer is the exact grid optimum.
//! - [`Strategy::Refine`] scores the coarsest sub-lattice, then at each finer level
//!   only the points within one coarse step of the `keep` best points so far: far
//!   fewer evaluations, and usually the same optimum on smooth objectives.
//! - [`Strategy::Coordinate`] scans one weight at a time (see [`super::coordinate`]):
//!   the fewest evaluations for many weights.
//!
//! Off the lattice, [`Strategy::Cmaes`] samples the weights freely (see
//! [`super::cmaes`]) for any objective, and [`Strategy::Learned`] descends the
//! loss's gradient (see [`super::learned`]).
//!
//! The objective is a caller's closure (the held-out loss of the merged model in
//! the app and the CLI), so the search itself is pure and testable.

use super::lattice::{GridEvent, GridPoint, GridResult, GridSpec, Score};
use super::strategy::Strategy;
use anyhow::{Result, bail};
use std::collections::BTreeSet;

/// Runs the search. `score` is called once per point; `keep_going` is polled
/// before each point (false = cancel, returning what was scored); `on_event`
/// receives the stream of results.
pub fn grid_search(
    spec: &GridSpec,
    strategy: Strategy,
    score: &mut dyn FnMut(&[f64]) -> Result<Score>,
    keep_going: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(GridEvent),
) -> Result<GridResult> {
    if let Strategy::Coordinate { sweeps } = strategy {
        return super::coordinate::coordinate_search(spec, sweeps, score, keep_going, on_event);
    }
    if let Strategy::Cmaes(settings) = strategy {
        return super::cmaes::cmaes_search(spec, settings, score, keep_going, on_event);
    }
    if let Strategy::Learned(_) = strategy {
        bail!(
            "learned weights follow the gradient of the held-out loss, so this objective (a score without a gradient) needs a strategy that only scores points: cmaes (derivative-free), exhaustive, refine or coordinate"
        );
    }
    spec.validate()?;
    let mut seen: BTreeSet<Vec<usize>> = BTreeSet::new();
    let mut points: Vec<GridPoint> = Vec::new();
    let mut indices: Vec<Vec<usize>> = Vec::new();
    let mut best: Option<usize> = None;
    let mut stride = spec.coarsest_stride();
    let mut level = 0;
    loop {
        let candidates: Vec<Vec<usize>> = match strategy {
            Strategy::Exhaustive => spec.points_at(stride),
            Strategy::Refine { keep } if !points.is_empty() => {
                let mut ranked: Vec<usize> = (0..points.len()).collect();
                ranked.sort_by(|&a, &b| points[a].score.loss.total_cmp(&points[b].score.loss));
                let mut c = Vec::new();
                for &i in ranked.iter().take(keep.max(1)) {
                    c.extend(spec.neighbours(&indices[i], stride));
                }
                c.retain(|p| p.iter().all(|&v| v % stride == 0 || v == spec.ticks() - 1));
                c
            }
            Strategy::Refine { .. }
            | Strategy::Coordinate { .. }
            | Strategy::Learned(_)
            | Strategy::Cmaes(_) => spec.points_at(stride),
        };
        let fresh: Vec<Vec<usize>> = candidates
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .collect();
        on_event(GridEvent::Level {
            level,
            step: spec.step * stride as f64,
            points: fresh.len(),
        });
        for k in fresh {
            if !keep_going() {
                return GridResult::finish(points, best, true);
            }
            let weights = spec.weights(&k);
            let s = score(&weights)?;
            let point = GridPoint {
                weights,
                score: s,
                level,
            };
            let is_best = best.is_none_or(|b| point.score.loss < points[b].score.loss);
            points.push(point);
            indices.push(k);
            if is_best {
                best = Some(points.len() - 1);
            }
            let b = best.expect("a point was scored");
            on_event(GridEvent::Point {
                point: points[points.len() - 1].clone(),
                best: points[b].clone(),
                done: points.len(),
            });
        }
        if stride == 1 {
            break;
        }
        stride /= 2;
        level += 1;
    }
    GridResult::finish(points, best, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn bowl(target: Vec<f64>) -> impl FnMut(&[f64]) -> Result<Score> {
        move |w: &[f64]| {
            let loss = w.iter().zip(&target).map(|(a, b)| (a - b).powi(2)).sum();
            Ok(Score {
                loss,
                per_range: vec![],
            })
        }
    }

    fn spec(n: usize, sum_to_one: bool) -> GridSpec {
        GridSpec {
            n,
            lo: 0.0,
            hi: 1.0,
            step: 0.1,
            sum_to_one,
        }
    }

    #[test]
    fn exhaustive_visits_every_point_once_and_finds_the_optimum() {
        let s = spec(2, false);
        let r = grid_search(
            &s,
            Strategy::Exhaustive,
            &mut bowl(vec![0.3, 0.7]),
            &|| true,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(r.points.len(), 121);
        let set: BTreeSet<Vec<i64>> = r
            .points
            .iter()
            .map(|p| {
                p.weights
                    .iter()
                    .map(|w| (w * 10.0).round() as i64)
                    .collect()
            })
            .collect();
        assert_eq!(set.len(), 121);
        let b = &r.best_point().weights;
        assert!((b[0] - 0.3).abs() < 1e-9 && (b[1] - 0.7).abs() < 1e-9);
        // coarse points come first: the first level holds 0, 0.4, 0.8, 1.0 per axis
        assert_eq!(r.points[0].level, 0);
        assert_eq!(r.points.iter().filter(|p| p.level == 0).count(), 16);
    }

    #[test]
    fn sum_to_one_keeps_only_the_simplex() {
        let s = spec(4, true);
        let r = grid_search(
            &s,
            Strategy::Exhaustive,
            &mut bowl(vec![0.1, 0.2, 0.3, 0.4]),
            &|| true,
            &mut |_| {},
        )
        .unwrap();
        // compositions of 10 into 4 non-negative parts: C(13, 3)
        assert_eq!(r.points.len(), 286);
        for p in &r.points {
            assert!((p.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        assert_eq!(r.ranked()[0].score.loss, r.best_point().score.loss);
        assert!(r.best_point().score.loss < 1e-20);
    }

    #[test]
    fn refine_finds_a_smooth_optimum_with_fewer_points() {
        let s = spec(3, false);
        let r = grid_search(
            &s,
            Strategy::Refine { keep: 2 },
            &mut bowl(vec![0.3, 0.6, 0.1]),
            &|| true,
            &mut |_| {},
        )
        .unwrap();
        assert!(r.points.len() < 1331 / 4, "{} points", r.points.len());
        let b = &r.best_point().weights;
        assert!(
            (b[0] - 0.3).abs() < 1e-9 && (b[1] - 0.6).abs() < 1e-9 && (b[2] - 0.1).abs() < 1e-9
        );
    }

    #[test]
    fn cancel_returns_the_points_scored_so_far() {
        let s = spec(2, false);
        let calls = Cell::new(0);
        let r = grid_search(
            &s,
            Strategy::Exhaustive,
            &mut bowl(vec![0.5, 0.5]),
            &|| {
                calls.set(calls.get() + 1);
                calls.get() <= 5
            },
            &mut |_| {},
        )
        .unwrap();
        assert!(r.cancelled);
        assert_eq!(r.points.len(), 5);
    }

    #[test]
    fn events_stream_best_so_far() {
        let s = spec(1, false);
        let mut bests = Vec::new();
        grid_search(
            &s,
            Strategy::Exhaustive,
            &mut bowl(vec![0.45]),
            &|| true,
            &mut |e| {
                if let GridEvent::Point { best, .. } = e {
                    bests.push(best.score.loss);
                }
            },
        )
        .unwrap();
        assert_eq!(bests.len(), 11);
        assert!(bests.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn bad_specs_are_refused() {
        let mut s = spec(2, false);
        s.step = 0.0;
        assert!(s.validate().is_err());
        let mut s = spec(2, true);
        s.lo = 0.7;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("summing to 1")
        );
        let s = GridSpec {
            n: 8,
            lo: 0.0,
            hi: 1.0,
            step: 0.01,
            sum_to_one: false,
        };
        assert!(s.validate().is_err());
    }
}
