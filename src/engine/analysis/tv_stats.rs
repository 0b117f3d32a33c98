//! Task-vector statistics (paper Fig. 6b): how large the experts' changes are,
//! where in the network they sit, and how aligned the experts are.
//!
//! # Definition
//! For task vectors `tau_i = theta_i - theta` (projections counted from the
//! identity, as the merge engine lines them up), per parameter group (block or
//! layer, [`super::group_of`]) and over all parameters:
//! - the distribution of the entries' magnitudes `|tau_i[k]|` as box-plot numbers:
//!   min, first quartile, median, third quartile, max and mean. Quantiles use
//!   linear interpolation between order statistics (numpy's default): for `n`
//!   sorted values `s_0..s_{n-1}`, `q(p) = s_f + (h - f) (s_{f+1} - s_f)` with
//!   `h = (n - 1) p`, `f = floor(h)`;
//! - the L2 norm `|tau_i|`;
//! - the N x N cosine similarity `<tau_i, tau_j> / (|tau_i| |tau_j|)` (0 when
//!   either vector is zero), overall and per group.
//!
//! Sums are accumulated in f64.

use super::{Granularity, group_of};
use crate::engine::merge::HostTaskVectors;
use serde::{Deserialize, Serialize};

/// Box-plot numbers of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxStats {
    /// Number of values.
    pub count: usize,
    /// Smallest value.
    pub min: f64,
    /// First quartile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// Third quartile.
    pub q3: f64,
    /// Largest value.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl BoxStats {
    /// The numbers of `values` (sorted in place). All NaN when `values` is empty.
    pub fn of(values: &mut [f32]) -> Self {
        if values.is_empty() {
            return Self {
                count: 0,
                min: f64::NAN,
                q1: f64::NAN,
                median: f64::NAN,
                q3: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
            };
        }
        values.sort_unstable_by(f32::total_cmp);
        let n = values.len();
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        Self {
            count: n,
            min: f64::from(values[0]),
            q1: quantile_sorted(values, 0.25),
            median: quantile_sorted(values, 0.5),
            q3: quantile_sorted(values, 0.75),
            max: f64::from(values[n - 1]),
            mean,
        }
    }
}

/// The `p`-quantile of sorted values, linearly interpolated (numpy's default).
pub fn quantile_sorted(sorted: &[f32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
    let f = h.floor() as usize;
    let lo = f64::from(sorted[f]);
    match sorted.get(f + 1) {
        Some(&hi) => lo + (h - f as f64) * (f64::from(hi) - lo),
        None => lo,
    }
}

/// One expert's task vector inside one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpertGroupStats {
    /// Box-plot numbers of `|tau_i|` entries.
    pub abs: BoxStats,
    /// L2 norm of `tau_i` restricted to the group.
    pub norm: f64,
}

/// Statistics of one parameter group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupStats {
    /// Group name (`down_blocks.1`, `mid_block.attentions.0.to_q`, ...).
    pub name: String,
    /// Number of parameter values in the group.
    pub params: usize,
    /// One entry per expert.
    pub experts: Vec<ExpertGroupStats>,
    /// Row-major N x N cosine similarity of the task vectors restricted to the group.
    pub cosine: Vec<f64>,
}

/// The statistics of N task vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TvStats {
    /// How parameters were grouped.
    pub granularity: Granularity,
    /// Labels of the experts.
    pub labels: Vec<String>,
    /// Total number of parameter values.
    pub params: usize,
    /// Per expert, over all parameters.
    pub overall: Vec<ExpertGroupStats>,
    /// Row-major N x N cosine similarity over all parameters.
    pub cosine: Vec<f64>,
    /// Per group, in order of first appearance in the model.
    pub groups: Vec<GroupStats>,
}

impl TvStats {
    /// Number of experts N.
    pub fn num_experts(&self) -> usize {
        self.labels.len()
    }
}

/// Row-major N x N Gram matrix `<tau_i, tau_j>` over all parameters (f64 sums).
pub fn gram_matrix(tv: &HostTaskVectors) -> Vec<f64> {
    let keys: Vec<usize> = (0..tv.keys.len()).collect();
    gram_over(tv, &keys)
}

/// Gram matrix over the keys with indices `keys`.
fn gram_over(tv: &HostTaskVectors, keys: &[usize]) -> Vec<f64> {
    let n = tv.num_experts();
    let mut g = vec![0.0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let mut s = 0.0f64;
            for &k in keys {
                s += tv.taus[i][k]
                    .iter()
                    .zip(&tv.taus[j][k])
                    .map(|(&a, &b)| f64::from(a) * f64::from(b))
                    .sum::<f64>();
            }
            g[i * n + j] = s;
            g[j * n + i] = s;
        }
    }
    g
}

/// Cosine similarities from a Gram matrix (0 where a vector is zero; exactly 1
/// on the diagonal of non-zero vectors).
pub fn cosine_from_gram(gram: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let d = (gram[i * n + i] * gram[j * n + j]).sqrt();
            c[i * n + j] = if d == 0.0 {
                0.0
            } else if i == j {
                1.0
            } else {
                (gram[i * n + j] / d).clamp(-1.0, 1.0)
            };
        }
    }
    c
}

/// Computes every statistic of the task vectors in `tv`.
pub fn tv_stats(tv: &HostTaskVectors, granularity: Granularity) -> TvStats {
    let n = tv.num_experts();
    // keys of each group, groups in order of first appearance
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for (k, (key, _)) in tv.keys.iter().enumerate() {
        let g = group_of(key, granularity);
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, ks)) => ks.push(k),
            None => groups.push((g, vec![k])),
        }
    }
    let size = |ks: &[usize]| -> usize { ks.iter().map(|&k| tv.taus[0][k].len()).sum() };
    let expert_stats = |i: usize, ks: &[usize], gram: &[f64]| -> ExpertGroupStats {
        let mut abs: Vec<f32> = ks
            .iter()
            .flat_map(|&k| tv.taus[i][k].iter().map(|v| v.abs()))
            .collect();
        ExpertGroupStats {
            abs: BoxStats::of(&mut abs),
            norm: gram[i * n + i].sqrt(),
        }
    };
    let group_stats: Vec<GroupStats> = groups
        .iter()
        .map(|(name, ks)| {
            let gram = gram_over(tv, ks);
            GroupStats {
                name: name.clone(),
                params: size(ks),
                experts: (0..n).map(|i| expert_stats(i, ks, &gram)).collect(),
                cosine: cosine_from_gram(&gram, n),
            }
        })
        .collect();
    let all: Vec<usize> = (0..tv.keys.len()).collect();
    let gram = gram_over(tv, &all);
    TvStats {
        granularity,
        labels: tv.labels.clone(),
        params: size(&all),
        overall: (0..n).map(|i| expert_stats(i, &all, &gram)).collect(),
        cosine: cosine_from_gram(&gram, n),
        groups: group_stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let s = [1.0f32, 2.0, 3.0, 4.0];
        // numpy.quantile([1,2,3,4], [0.25, 0.5, 0.75]) = [1.75, 2.5, 3.25]
        assert_eq!(quantile_sorted(&s, 0.25), 1.75);
        assert_eq!(quantile_sorted(&s, 0.5), 2.5);
        assert_eq!(quantile_sorted(&s, 0.75), 3.25);
        assert_eq!(quantile_sorted(&[5.0], 0.3), 5.0);
        let mut v = vec![3.0f32, -1.0, 2.0];
        let b = BoxStats::of(&mut v);
        assert_eq!((b.min, b.median, b.max, b.count), (-1.0, 2.0, 3.0, 3));
        assert!((b.mean - 4.0 / 3.0).abs() < 1e-12);
        assert!(BoxStats::of(&mut []).median.is_nan());
    }

    #[test]
    fn cosine_of_zero_vectors_is_zero() {
        let g = [1.0, 0.0, 0.0, 0.0];
        assert_eq!(cosine_from_gram(&g, 2), vec![1.0, 0.0, 0.0, 0.0]);
    }
}
