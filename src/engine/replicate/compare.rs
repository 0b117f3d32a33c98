//! The merged model against every other row of the report, and any pair of rows asked
//! for besides, each difference with its bootstrap interval over training seeds and,
//! within a seed, over what both models were measured on: losses paired over the
//! evaluation samples (every model sees the same items, noise and timesteps), Frechet
//! distances paired over the generated images (every model starts from the same
//! initial noise).

use super::measure::Measurements;
use super::report::{Comparison, Measured};
use crate::engine::eval::EvalLosses;
use crate::engine::metric::SampleMetric;
use crate::engine::metric::features::FEATURE_DIM;
use crate::engine::stats::{Interval, grouped_bootstrap, grouped_mean_difference};
use anyhow::{Result, bail};

/// Confidence level of the report's intervals.
pub const CONFIDENCE: f64 = 0.95;
/// Seed of the resampling (fixed: the same run gives the same intervals).
const SEED: u64 = 17;

/// One row's measurements, one per training seed (a row without training, such as
/// the pretrained model, repeats its one measurement for every seed).
pub struct RowSeeds<'a> {
    /// Row name.
    pub name: &'a str,
    /// Per seed, in seed order.
    pub seeds: Vec<&'a Measurements>,
}

/// `merged` against each of `others`, with ranges `ranges` for the per-range losses,
/// each interval from `resamples` bootstrap resamples.
pub fn compare_with_merged(
    merged: &RowSeeds,
    others: &[RowSeeds],
    ranges: &[[usize; 2]],
    metric: Option<&SampleMetric>,
    resamples: usize,
) -> Result<Vec<Comparison>> {
    others
        .iter()
        .map(|o| compare_pair(merged, o, ranges, metric, resamples))
        .collect()
}

/// Checks, before any work, that each pair names two different rows of `rows`.
pub fn check_pairs(pairs: &[[String; 2]], rows: &[String]) -> Result<()> {
    for [a, b] in pairs {
        for name in [a, b] {
            if !rows.contains(name) {
                bail!(
                    "`{name}` (in --compare {a}:{b}) is not a row of this run; its rows are {}",
                    rows.join(", ")
                );
            }
        }
        if a == b {
            bail!("--compare {a}:{b} compares a row with itself");
        }
    }
    Ok(())
}

/// `a` minus `b` (`a` plays the merged model's part), paired as `compare_with_merged`
/// pairs them.
pub fn compare_pair(
    a: &RowSeeds,
    b: &RowSeeds,
    ranges: &[[usize; 2]],
    metric: Option<&SampleMetric>,
    resamples: usize,
) -> Result<Comparison> {
    if b.seeds.len() != a.seeds.len() {
        bail!("{} and {} have different numbers of seeds", a.name, b.name);
    }
    for (x, y) in a.seeds.iter().zip(&b.seeds) {
        if x.losses.t != y.losses.t {
            bail!(
                "{} and {} were not evaluated on the same samples",
                a.name,
                b.name
            );
        }
    }
    let pick = |row: &RowSeeds, keep: &dyn Fn(usize) -> bool| -> Vec<Vec<f64>> {
        row.seeds
            .iter()
            .map(|m| in_range(&m.losses, keep))
            .collect()
    };
    let difference = |keep: &dyn Fn(usize) -> bool| {
        grouped_mean_difference(&pick(a, keep), &pick(b, keep), resamples, CONFIDENCE, SEED)
            .map(Measured::new)
    };
    let loss = difference(&|_| true)?;
    let loss_per_range = ranges
        .iter()
        .map(|&[lo, hi]| difference(&|t| (lo..hi).contains(&t)))
        .collect::<Result<Vec<_>>>()?;
    let frechet = match (metric, features(a), features(b)) {
        (Some(m), Some(x), Some(y)) => {
            Some(Measured::new(frechet_difference(m, &x, &y, resamples)?))
        }
        _ => None,
    };
    let other_loss = b.seeds.iter().map(|m| m.losses.mean()).sum::<f64>() / b.seeds.len() as f64;
    Ok(Comparison {
        subject: a.name.to_string(),
        other: b.name.to_string(),
        other_loss,
        loss,
        loss_per_range,
        frechet,
    })
}

/// Every seed's feature rows, when every seed has them.
fn features<'a>(row: &RowSeeds<'a>) -> Option<Vec<&'a [f32]>> {
    row.seeds.iter().map(|m| m.features.as_deref()).collect()
}

/// The losses of the samples whose timestep `keep` accepts.
fn in_range(l: &EvalLosses, keep: &dyn Fn(usize) -> bool) -> Vec<f64> {
    l.t.iter()
        .zip(&l.loss)
        .filter(|(t, _)| keep(**t))
        .map(|(_, v)| *v)
        .collect()
}

/// The grouped bootstrap interval of the mean over seeds of `FD(a_s) - FD(b_s)`
/// (row `i` of `a_s` and of `b_s` come from the same initial noise).
fn frechet_difference(
    metric: &SampleMetric,
    a: &[&[f32]],
    b: &[&[f32]],
    resamples: usize,
) -> Result<Interval> {
    for (x, y) in a.iter().zip(b) {
        if x.len() != y.len() || x.len() % FEATURE_DIM != 0 {
            bail!("the two generated sets differ in size");
        }
    }
    let sizes: Vec<usize> = a.iter().map(|x| x.len() / FEATURE_DIM).collect();
    let gather = |rows: &[f32], idx: &[usize]| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| rows[i * FEATURE_DIM..(i + 1) * FEATURE_DIM].iter().copied())
            .collect()
    };
    grouped_bootstrap(&sizes, resamples, CONFIDENCE, SEED, &mut |drawn| {
        let mut sum = 0.0;
        for (g, idx) in drawn {
            sum += metric.frechet_of_features(&gather(a[*g], idx))?
                - metric.frechet_of_features(&gather(b[*g], idx))?;
        }
        Ok(sum / drawn.len() as f64)
    })
}
