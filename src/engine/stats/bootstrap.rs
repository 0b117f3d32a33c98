//! Paired bootstrap intervals of a difference between two models measured on the
//! same things (the same evaluation samples, or images generated from the same
//! initial noise), and the verdict an interval supports.
//!
//! # Definition
//! For a statistic `d(S)` of a set `S` of paired observations (for example the mean
//! of `a_j - b_j`, or `FD(a_S) - FD(b_S)`), the estimate is `d` of all observations
//! and the interval is the percentile interval of `d(S*)` over `resamples` sets `S*`
//! drawn with replacement from the observations, each the size of the original, both
//! models always drawn together (paired). The drawing is seeded: the same inputs give
//! the same interval.

use anyhow::{Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A point estimate and a two-sided confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on all observations.
    pub estimate: f64,
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
}

impl Interval {
    /// Whether `v` lies inside (ends included).
    pub fn contains(&self, v: f64) -> bool {
        self.lo <= v && v <= self.hi
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:+.3e} [{:+.3e}, {:+.3e}]",
            self.estimate, self.lo, self.hi
        )
    }
}

/// What an interval of a difference `a - b` of a lower-is-better quantity says of `a`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The whole interval lies below 0.
    Better,
    /// The whole interval lies above 0.
    Worse,
    /// The interval contains 0.
    WithinNoise,
}

impl Verdict {
    /// The verdict on `a` for an interval of `a - b` (lower is better).
    pub fn of_difference(interval: &Interval) -> Self {
        if interval.hi < 0.0 {
            Self::Better
        } else if interval.lo > 0.0 {
            Self::Worse
        } else {
            Self::WithinNoise
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Better => "better",
            Self::Worse => "worse",
            Self::WithinNoise => "within noise",
        })
    }
}

/// The paired bootstrap interval of `stat` over `n` observations: `stat` gets the
/// indices of a resampled set (all of `0..n` for the estimate) and returns the
/// difference it measures on them.
pub fn paired_bootstrap(
    n: usize,
    resamples: usize,
    level: f64,
    seed: u64,
    stat: &mut dyn FnMut(&[usize]) -> Result<f64>,
) -> Result<Interval> {
    grouped_bootstrap(&[n], resamples, level, seed, &mut |drawn| stat(&drawn[0].1))
}

/// The paired bootstrap interval of `mean(a) - mean(b)` (`a[j]` and `b[j]` measured
/// on the same observation `j`).
pub fn paired_mean_difference(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Result<Interval> {
    if a.len() != b.len() {
        bail!(
            "paired observations differ in number: {} vs {}",
            a.len(),
            b.len()
        );
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    paired_bootstrap(d.len(), resamples, level, seed, &mut |idx| {
        Ok(idx.iter().map(|&i| d[i]).sum::<f64>() / idx.len() as f64)
    })
}

/// A two-level paired bootstrap over `sizes.len()` groups (training seeds) of
/// `sizes[g]` paired observations each: every resample draws the groups with
/// replacement, then within each drawn group its observations with replacement.
/// `stat` gets the drawn `(group, indices)` pairs (all groups and all indices for the
/// estimate). With one group this is [`paired_bootstrap`] over its observations.
pub fn grouped_bootstrap(
    sizes: &[usize],
    resamples: usize,
    level: f64,
    seed: u64,
    stat: &mut dyn FnMut(&[(usize, Vec<usize>)]) -> Result<f64>,
) -> Result<Interval> {
    if sizes.is_empty() || sizes.iter().any(|&n| n < 2) {
        bail!(
            "a bootstrap interval needs at least 2 paired observations in every group, got {sizes:?}"
        );
    }
    if resamples < 10 {
        bail!("a bootstrap interval needs at least 10 resamples, got {resamples}");
    }
    if !(level > 0.0 && level < 1.0) {
        bail!("the confidence level must be in (0, 1), not {level}");
    }
    let all: Vec<(usize, Vec<usize>)> = sizes
        .iter()
        .enumerate()
        .map(|(g, &n)| (g, (0..n).collect()))
        .collect();
    let estimate = stat(&all)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut values = Vec::with_capacity(resamples);
    let groups = sizes.len();
    for _ in 0..resamples {
        let drawn: Vec<(usize, Vec<usize>)> = (0..groups)
            .map(|_| {
                let g = if groups == 1 {
                    0
                } else {
                    rng.random_range(0..groups)
                };
                let idx = (0..sizes[g])
                    .map(|_| rng.random_range(0..sizes[g]))
                    .collect();
                (g, idx)
            })
            .collect();
        values.push(stat(&drawn)?);
    }
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Ok(Interval {
        estimate,
        lo: quantile(&values, tail),
        hi: quantile(&values, 1.0 - tail),
        level,
    })
}

/// The grouped bootstrap interval of the mean over groups of `mean(a_g) - mean(b_g)`.
pub fn grouped_mean_difference(
    a: &[Vec<f64>],
    b: &[Vec<f64>],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Result<Interval> {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.len() != y.len()) {
        bail!("paired observations differ in number");
    }
    let d: Vec<Vec<f64>> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.iter().zip(y).map(|(u, v)| u - v).collect())
        .collect();
    let sizes: Vec<usize> = d.iter().map(Vec::len).collect();
    grouped_bootstrap(&sizes, resamples, level, seed, &mut |drawn| {
        let per_group: f64 = drawn
            .iter()
            .map(|(g, idx)| idx.iter().map(|&i| d[*g][i]).sum::<f64>() / idx.len() as f64)
            .sum();
        Ok(per_group / drawn.len() as f64)
    })
}

/// The `q` quantile of sorted `v`, linearly interpolated.
fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    if i + 1 < v.len() {
        v[i] * (1.0 - f) + v[i + 1] * f
    } else {
        v[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn identical_models_give_an_interval_around_zero() {
        let mut rng = StdRng::seed_from_u64(3);
        let a: Vec<f64> = (0..500).map(|_| rng.random_range(0.0..1.0)).collect();
        let i = paired_mean_difference(&a, &a, 200, 0.95, 1).unwrap();
        assert!(i.contains(0.0), "{i}");
        assert_eq!(i.estimate, 0.0);
        assert_eq!(Verdict::of_difference(&i), Verdict::WithinNoise);
    }

    #[test]
    fn a_clear_shift_is_found_and_noise_is_not() {
        let mut rng = StdRng::seed_from_u64(4);
        let noise = Normal::new(0.0, 1.0).unwrap();
        let b: Vec<f64> = (0..400).map(|_| noise.sample(&mut rng)).collect();
        // a = b - 0.5 + small pairing noise: a is clearly lower (better)
        let a: Vec<f64> = b
            .iter()
            .map(|v| v - 0.5 + 0.1 * noise.sample(&mut rng))
            .collect();
        let i = paired_mean_difference(&a, &b, 500, 0.95, 2).unwrap();
        assert_eq!(Verdict::of_difference(&i), Verdict::Better, "{i}");
        assert!(i.contains(-0.5), "{i}");
        let worse = paired_mean_difference(&b, &a, 500, 0.95, 2).unwrap();
        assert_eq!(Verdict::of_difference(&worse), Verdict::Worse);
        // an independent model with the same mean: within noise
        let c: Vec<f64> = (0..400).map(|_| noise.sample(&mut rng)).collect();
        let i = paired_mean_difference(&c, &b, 500, 0.95, 2).unwrap();
        assert_eq!(Verdict::of_difference(&i), Verdict::WithinNoise, "{i}");
    }

    #[test]
    fn the_interval_covers_the_truth_about_as_often_as_it_says() {
        // 200 experiments of 100 paired draws with true mean difference 0.2
        let mut rng = StdRng::seed_from_u64(5);
        let noise = Normal::new(0.0, 1.0).unwrap();
        let mut covered = 0;
        for k in 0..200 {
            let a: Vec<f64> = (0..100).map(|_| 0.2 + noise.sample(&mut rng)).collect();
            let b = vec![0.0; 100];
            if paired_mean_difference(&a, &b, 200, 0.9, k)
                .unwrap()
                .contains(0.2)
            {
                covered += 1;
            }
        }
        // a 90% interval: expect ~180; the percentile bootstrap runs slightly narrow
        assert!((160..=195).contains(&covered), "covered {covered} of 200");
    }

    #[test]
    fn one_group_is_the_plain_paired_bootstrap_and_groups_add_their_spread() {
        let mut rng = StdRng::seed_from_u64(6);
        let noise = Normal::new(0.0, 1.0).unwrap();
        let b: Vec<f64> = (0..300).map(|_| noise.sample(&mut rng)).collect();
        let a: Vec<f64> = b
            .iter()
            .map(|v| v - 0.1 + 0.2 * noise.sample(&mut rng))
            .collect();
        let one = grouped_mean_difference(&[a.clone()], &[b.clone()], 300, 0.95, 8).unwrap();
        let plain = paired_mean_difference(&a, &b, 300, 0.95, 8).unwrap();
        assert!((one.estimate - plain.estimate).abs() < 1e-12);
        assert_eq!(Verdict::of_difference(&one), Verdict::Better, "{one}");
        // three seeds that disagree in sign: the seed spread makes it noise
        let shifted = |s: f64| -> Vec<f64> { b.iter().map(|v| v + s).collect() };
        let groups_a = vec![shifted(-0.3), shifted(0.25), shifted(0.02)];
        let groups_b = vec![b.clone(), b.clone(), b.clone()];
        let i = grouped_mean_difference(&groups_a, &groups_b, 300, 0.95, 8).unwrap();
        assert!((i.estimate - (-0.01)).abs() < 1e-9, "{i}");
        assert_eq!(Verdict::of_difference(&i), Verdict::WithinNoise, "{i}");
        // identical models in every group: an interval around 0
        let same = grouped_mean_difference(&groups_b, &groups_b, 100, 0.95, 1).unwrap();
        assert!(same.contains(0.0) && same.estimate == 0.0);
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(paired_mean_difference(&[1.0], &[1.0], 100, 0.95, 0).is_err());
        assert!(paired_mean_difference(&[1.0, 2.0], &[1.0], 100, 0.95, 0).is_err());
        assert!(paired_mean_difference(&[1.0, 2.0], &[1.0, 2.0], 5, 0.95, 0).is_err());
        assert!(paired_mean_difference(&[1.0, 2.0], &[1.0, 2.0], 100, 1.5, 0).is_err());
    }
}
