//! Timestep sampling for decoupled finetuning (DeMe section 3.2).
//!
//! Expert `i` of `N` owns the half-open range `[i T / N, (i + 1) T / N)` (0-based
//! `i`, integer division, so the ranges tile `[0, T)` for any `N <= T`). It draws
//! its timesteps from that range with probability `1 - p` and from all of
//! `[0, T)` with probability `p` ("probabilistic sampling"), one coin per batch
//! (the authors' way) or per sample. With antithetic sampling the second half of
//! the batch mirrors the first inside the interval it was drawn from:
//! `t' = lo + hi - 1 - t`.

use anyhow::{Result, bail};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A half-open range of timesteps `[lo, hi)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimestepRange {
    /// First timestep in the range.
    pub lo: usize,
    /// One past the last timestep in the range.
    pub hi: usize,
}

impl TimestepRange {
    /// All of `[0, T)`.
    pub fn all(num_train_timesteps: usize) -> Self {
        Self {
            lo: 0,
            hi: num_train_timesteps,
        }
    }

    /// The range of expert `index` (0-based) out of `experts`:
    /// `[index T / experts, (index + 1) T / experts)`.
    pub fn of_expert(index: usize, experts: usize, num_train_timesteps: usize) -> Result<Self> {
        if experts == 0 || experts > num_train_timesteps {
            bail!(
                "the number of experts must be between 1 and T = {num_train_timesteps}, not {experts}"
            );
        }
        if index >= experts {
            bail!("expert index {index} is out of range for {experts} experts");
        }
        Ok(Self {
            lo: index * num_train_timesteps / experts,
            hi: (index + 1) * num_train_timesteps / experts,
        })
    }

    /// The range of expert `index` (0-based) between boundaries
    /// `b_0 = 0 < b_1 < ... < b_N = T`: `[b_index, b_(index + 1))`.
    pub fn between(index: usize, boundaries: &[usize]) -> Result<Self> {
        match (boundaries.get(index), boundaries.get(index + 1)) {
            (Some(&lo), Some(&hi)) => Ok(Self { lo, hi }),
            _ => bail!(
                "expert index {index} is out of range for {} experts",
                boundaries.len().saturating_sub(1)
            ),
        }
    }

    /// Number of timesteps in the range.
    pub fn len(&self) -> usize {
        self.hi.saturating_sub(self.lo)
    }

    /// Whether the range holds no timestep.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `t` lies in the range.
    pub fn contains(&self, t: usize) -> bool {
        self.lo <= t && t < self.hi
    }

    /// The antithetic partner of `t` inside this range: `lo + hi - 1 - t`.
    pub fn mirror(&self, t: usize) -> usize {
        self.lo + self.hi - 1 - t
    }

    /// `[lo, hi]` as stored in checkpoint metadata (`hi` exclusive).
    pub fn to_array(self) -> [usize; 2] {
        [self.lo, self.hi]
    }
}

/// Checks range boundaries `b_0 = 0 < b_1 < ... < b_N = T` (N >= 1): every
/// range holds at least one timestep and together they tile `[0, T)`.
pub fn check_boundaries(boundaries: &[usize], num_train_timesteps: usize) -> Result<()> {
    let t = num_train_timesteps;
    if boundaries.len() < 2 {
        bail!("range boundaries need at least two values (0 and T = {t}), e.g. 0,120,400,{t}");
    }
    if boundaries[0] != 0 || boundaries[boundaries.len() - 1] != t {
        bail!(
            "range boundaries must start at 0 and end at T = {t}, got {}",
            fmt_boundaries(boundaries)
        );
    }
    if let Some(w) = boundaries.windows(2).find(|w| w[1] <= w[0]) {
        bail!(
            "range boundaries must increase (every range at least one timestep), but {} is followed by {}",
            w[0],
            w[1]
        );
    }
    Ok(())
}

/// The uniform boundaries `b_k = k T / N` (those of [`TimestepRange::of_expert`]).
pub fn uniform_boundaries(experts: usize, num_train_timesteps: usize) -> Vec<usize> {
    (0..=experts)
        .map(|k| k * num_train_timesteps / experts.max(1))
        .collect()
}

/// The ranges `[b_i, b_(i+1))` between consecutive boundaries.
pub fn ranges_of(boundaries: &[usize]) -> Vec<[usize; 2]> {
    boundaries.windows(2).map(|w| [w[0], w[1]]).collect()
}

/// Parses `0,120,400,1000` (commas, spaces allowed).
pub fn parse_boundaries(text: &str) -> Result<Vec<usize>> {
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| anyhow::anyhow!("`{}` is not a timestep (in `{text}`)", v.trim()))
        })
        .collect()
}

/// `0,120,400,1000`.
pub fn fmt_boundaries(boundaries: &[usize]) -> String {
    boundaries
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for TimestepRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.lo, self.hi)
    }
}

/// Who flips the coin that chooses between the expert's range and all timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MixMode {
    /// One coin for the whole batch (the authors' code).
    #[default]
    PerBatch,
    /// One coin per sample (per antithetic pair when antithetic sampling is on).
    PerSample,
}

impl fmt::Display for MixMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PerBatch => "per-batch",
            Self::PerSample => "per-sample",
        })
    }
}

impl FromStr for MixMode {
    type Err = anyhow::Error;

    /// Parses `per-batch` or `per-sample`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "per-batch" => Ok(Self::PerBatch),
            "per-sample" => Ok(Self::PerSample),
            _ => bail!("`{s}` is not a mixing mode (per-batch or per-sample)"),
        }
    }
}

/// The timesteps of one batch and, for each, whether it came from all of `[0, T)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestepDraw {
    /// One timestep per sample.
    pub t: Vec<usize>,
    /// `true` where the sample was drawn from the whole range rather than the expert's.
    pub from_all: Vec<bool>,
}

/// How one run draws its timesteps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimestepSampler {
    /// The run's own range.
    pub range: TimestepRange,
    /// All timesteps `[0, T)`.
    pub all: TimestepRange,
    /// Probability of drawing from `all` instead of `range`.
    pub p: f64,
    /// Per batch or per sample coin.
    pub mode: MixMode,
    /// Mirror the first half of the batch into the second.
    pub antithetic: bool,
}

impl TimestepSampler {
    /// A sampler for `range` within `[0, T)`; fails on an empty or out-of-bounds range or `p` outside `[0, 1]`.
    pub fn new(
        range: TimestepRange,
        num_train_timesteps: usize,
        p: f64,
        mode: MixMode,
        antithetic: bool,
    ) -> Result<Self> {
        if range.is_empty() || range.hi > num_train_timesteps {
            bail!("timestep range {range} is empty or outside [0, {num_train_timesteps})");
        }
        if !(0.0..=1.0).contains(&p) {
            bail!("the probability p of sampling all timesteps must be in [0, 1], not {p}");
        }
        Ok(Self {
            range,
            all: TimestepRange::all(num_train_timesteps),
            p,
            mode,
            antithetic,
        })
    }

    /// Uniform sampling over all of `[0, T)` (what pretraining and the baseline use).
    pub fn uniform(num_train_timesteps: usize, antithetic: bool) -> Result<Self> {
        Self::new(
            TimestepRange::all(num_train_timesteps),
            num_train_timesteps,
            0.0,
            MixMode::PerBatch,
            antithetic,
        )
    }

    /// The timesteps of a batch of `n`.
    pub fn sample(&self, rng: &mut impl Rng, n: usize) -> Vec<usize> {
        self.draw(rng, n).t
    }

    /// The timesteps of a batch of `n`, with where each came from.
    ///
    /// Without antithetic sampling every sample is drawn independently. With it,
    /// `ceil(n / 2)` samples are drawn and sample `k + ceil(n / 2)` is the mirror of
    /// sample `k` in the same interval, so each such pair sums to `lo + hi - 1` of
    /// that interval.
    pub fn draw(&self, rng: &mut impl Rng, n: usize) -> TimestepDraw {
        let drawn = if self.antithetic { n.div_ceil(2) } else { n };
        let batch_coin = match self.mode {
            MixMode::PerBatch => Some(rng.random_bool(self.p)),
            MixMode::PerSample => None,
        };
        let mut t = Vec::with_capacity(n);
        let mut from_all = Vec::with_capacity(n);
        for _ in 0..drawn {
            let wide = batch_coin.unwrap_or_else(|| rng.random_bool(self.p));
            let interval = if wide { self.all } else { self.range };
            t.push(rng.random_range(interval.lo..interval.hi));
            from_all.push(wide);
        }
        for k in 0..n - drawn {
            let interval = if from_all[k] { self.all } else { self.range };
            t.push(interval.mirror(t[k]));
            from_all.push(from_all[k]);
        }
        TimestepDraw { t, from_all }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn sampler(p: f64, mode: MixMode, antithetic: bool) -> TimestepSampler {
        let range = TimestepRange::of_expert(1, 4, 1000).unwrap();
        TimestepSampler::new(range, 1000, p, mode, antithetic).unwrap()
    }

    #[test]
    fn ranges_tile_all_timesteps_even_when_n_does_not_divide_t() {
        for (n, t) in [
            (4, 1000),
            (3, 1000),
            (7, 1000),
            (8, 1000),
            (1, 1000),
            (3, 10),
        ] {
            let ranges: Vec<_> = (0..n)
                .map(|i| TimestepRange::of_expert(i, n, t).unwrap())
                .collect();
            assert_eq!(ranges[0].lo, 0);
            assert_eq!(ranges[n - 1].hi, t);
            for w in ranges.windows(2) {
                assert_eq!(w[0].hi, w[1].lo, "gap or overlap for N = {n}");
            }
            assert!(ranges.iter().all(|r| !r.is_empty()));
        }
        assert_eq!(
            TimestepRange::of_expert(2, 3, 1000).unwrap(),
            TimestepRange { lo: 666, hi: 1000 }
        );
        assert!(TimestepRange::of_expert(0, 0, 1000).is_err());
        assert!(TimestepRange::of_expert(4, 4, 1000).is_err());
        assert!(TimestepRange::of_expert(0, 1001, 1000).is_err());
    }

    #[test]
    fn p_zero_never_leaves_the_range() {
        let s = sampler(0.0, MixMode::PerSample, false);
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let d = s.draw(&mut rng, 16);
            assert!(d.from_all.iter().all(|w| !w));
            for &t in &d.t {
                assert!(s.range.contains(t), "{t} outside {}", s.range);
                seen.insert(t);
            }
        }
        // uniform over the range: both ends are reached
        assert_eq!(seen.first(), Some(&250));
        assert_eq!(seen.last(), Some(&499));
    }

    #[test]
    fn per_batch_coin_picks_all_timesteps_with_probability_p() {
        let s = sampler(0.3, MixMode::PerBatch, false);
        let mut rng = StdRng::seed_from_u64(2);
        let batches = 4000;
        let mut wide_batches = 0;
        let mut outside = 0;
        for _ in 0..batches {
            let d = s.draw(&mut rng, 8);
            let wide = d.from_all[0];
            assert!(d.from_all.iter().all(|&w| w == wide), "one coin per batch");
            if wide {
                wide_batches += 1;
                outside += d.t.iter().filter(|&&t| !s.range.contains(t)).count();
            } else {
                assert!(d.t.iter().all(|&t| s.range.contains(t)));
            }
        }
        let frac = wide_batches as f64 / batches as f64;
        // binomial sd = sqrt(0.3 * 0.7 / 4000) = 0.0072; 0.03 is over 4 sd
        assert!((frac - 0.3).abs() < 0.03, "fraction of wide batches {frac}");
        // whole-range batches land outside the expert's quarter about 3/4 of the time
        let frac_out = outside as f64 / (wide_batches * 8) as f64;
        assert!((frac_out - 0.75).abs() < 0.03, "{frac_out}");
    }

    #[test]
    fn per_sample_coin_mixes_within_a_batch() {
        let s = sampler(0.3, MixMode::PerSample, false);
        let mut rng = StdRng::seed_from_u64(3);
        let (mut mixed, mut wide, mut total) = (0, 0, 0);
        for _ in 0..1000 {
            let d = s.draw(&mut rng, 8);
            let w = d.from_all.iter().filter(|&&w| w).count();
            if w > 0 && w < 8 {
                mixed += 1;
            }
            wide += w;
            total += 8;
            for (&t, &a) in d.t.iter().zip(&d.from_all) {
                assert!(a || s.range.contains(t));
            }
        }
        assert!(
            mixed > 800,
            "only {mixed} of 1000 batches mixed both sources"
        );
        let frac = wide as f64 / total as f64;
        assert!((frac - 0.3).abs() < 0.02, "{frac}");
    }

    #[test]
    fn antithetic_pairs_sum_to_lo_plus_hi_minus_one_of_their_interval() {
        for mode in [MixMode::PerBatch, MixMode::PerSample] {
            let s = sampler(0.5, mode, true);
            let mut rng = StdRng::seed_from_u64(4);
            for n in [1usize, 2, 7, 8] {
                for _ in 0..200 {
                    let d = s.draw(&mut rng, n);
                    assert_eq!(d.t.len(), n);
                    let h = n.div_ceil(2);
                    for k in 0..n - h {
                        let (a, b) = (d.t[k], d.t[k + h]);
                        assert_eq!(d.from_all[k], d.from_all[k + h]);
                        let want = if d.from_all[k] { 999 } else { 250 + 500 - 1 };
                        assert_eq!(a + b, want, "pair ({a}, {b}) in {mode} mode");
                        if !d.from_all[k] {
                            assert!(s.range.contains(a) && s.range.contains(b));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn uniform_sampler_mirrors_over_all_timesteps() {
        let s = TimestepSampler::uniform(1000, true).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let t = s.sample(&mut rng, 6);
        for k in 0..3 {
            assert_eq!(t[k] + t[k + 3], 999);
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let r = TimestepRange::of_expert(0, 4, 1000).unwrap();
        assert!(TimestepSampler::new(r, 1000, 1.5, MixMode::PerBatch, true).is_err());
        assert!(TimestepSampler::new(r, 1000, f64::NAN, MixMode::PerBatch, true).is_err());
        assert!(TimestepSampler::new(r, 100, 0.3, MixMode::PerBatch, true).is_err());
        assert_eq!("per-sample".parse::<MixMode>().unwrap(), MixMode::PerSample);
        assert!("sometimes".parse::<MixMode>().is_err());
    }
}
