//! The merged model against every other row of the report, each difference with its
//! paired bootstrap interval: losses paired over the evaluation samples (every model
//! sees the same items, noise and timesteps), Frechet distances paired over the
//! generated images (every model starts from the same initial noise).

use super::report::{Comparison, Measured};
use crate::engine::eval::EvalLosses;
use crate::engine::metric::SampleMetric;
use crate::engine::metric::features::FEATURE_DIM;
use crate::engine::stats::{paired_bootstrap, paired_mean_difference};
use anyhow::{Result, bail};

/// Confidence level of the report's intervals.
pub const CONFIDENCE: f64 = 0.95;
/// Bootstrap resamples behind each interval.
pub const RESAMPLES: usize = 200;
/// Seed of the resampling (fixed: the same run gives the same intervals).
const SEED: u64 = 17;

/// What was measured of one model.
pub struct Measurements {
    /// Row name.
    pub name: String,
    /// Per-sample held-out losses.
    pub losses: EvalLosses,
    /// Feature rows of its generated images (None without the metric).
    pub features: Option<Vec<f32>>,
}

/// `merged` against each of `others`, with ranges `ranges` for the per-range losses.
pub fn compare_with_merged(
    merged: &Measurements,
    others: &[&Measurements],
    ranges: &[[usize; 2]],
    metric: Option<&SampleMetric>,
) -> Result<Vec<Comparison>> {
    others
        .iter()
        .map(|o| {
            let a = &merged.losses;
            let b = &o.losses;
            if a.t != b.t {
                bail!(
                    "{} and {} were not evaluated on the same samples",
                    merged.name,
                    o.name
                );
            }
            let loss = Measured::new(paired_mean_difference(
                &a.loss, &b.loss, RESAMPLES, CONFIDENCE, SEED,
            )?);
            let loss_per_range = ranges
                .iter()
                .map(|&[lo, hi]| {
                    let pick = |l: &EvalLosses| -> Vec<f64> {
                        l.t.iter()
                            .zip(&l.loss)
                            .filter(|(t, _)| (lo..hi).contains(*t))
                            .map(|(_, v)| *v)
                            .collect()
                    };
                    paired_mean_difference(&pick(a), &pick(b), RESAMPLES, CONFIDENCE, SEED)
                        .map(Measured::new)
                })
                .collect::<Result<Vec<_>>>()?;
            let frechet = match (metric, &merged.features, &o.features) {
                (Some(m), Some(fa), Some(fb)) => {
                    Some(Measured::new(frechet_difference(m, fa, fb)?))
                }
                _ => None,
            };
            Ok(Comparison {
                other: o.name.clone(),
                other_loss: b.mean(),
                loss,
                loss_per_range,
                frechet,
            })
        })
        .collect()
}

/// The paired bootstrap interval of `FD(a) - FD(b)` over images (row `i` of `a` and
/// of `b` come from the same initial noise).
fn frechet_difference(
    metric: &SampleMetric,
    a: &[f32],
    b: &[f32],
) -> Result<crate::engine::stats::Interval> {
    if a.len() != b.len() || a.len() % FEATURE_DIM != 0 {
        bail!("the two generated sets differ in size");
    }
    let n = a.len() / FEATURE_DIM;
    let gather = |rows: &[f32], idx: &[usize]| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| rows[i * FEATURE_DIM..(i + 1) * FEATURE_DIM].iter().copied())
            .collect()
    };
    paired_bootstrap(n, RESAMPLES, CONFIDENCE, SEED, &mut |idx| {
        Ok(metric.frechet_of_features(&gather(a, idx))?
            - metric.frechet_of_features(&gather(b, idx))?)
    })
}
