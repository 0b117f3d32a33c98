//! Timestep ranges chosen from the gradient conflicts instead of a uniform
//! split: the N contiguous ranges of the ordered timesteps whose gradients
//! agree most within each range (dynamic programming over the interval
//! partitions, as in interval clustering of tasks by affinity).
//!
//! The score of a partition of the K timesteps into groups `g` is the kernel
//! k-means objective on the cosine matrix `S`, divided by K:
//! `(1/K) sum_g (1/|g|) sum_{i,j in g} S_ij`. It is 1 when every cosine is 1,
//! `N/K` when gradients at different timesteps are orthogonal, and it rewards
//! ranges whose members agree with each other, whatever their size.

use anyhow::{Result, bail, ensure};
use serde::Serialize;

/// A partition of the timesteps into contiguous ranges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeSplit {
    /// Range boundaries in timesteps: `0 = b_0 < b_1 < ... < b_N = T`; range
    /// `i` is `[b_i, b_{i+1})`.
    pub boundaries: Vec<usize>,
    /// The indices of the matrix rows in each range, as `[first, end)`.
    pub groups: Vec<[usize; 2]>,
    /// The within-range score (see the module docs).
    pub score: f64,
}

/// Sums of `s` (row-major `k x k`) over square blocks, from 2D prefix sums.
struct BlockSums {
    k: usize,
    prefix: Vec<f64>,
}

impl BlockSums {
    fn new(s: &[f64], k: usize) -> Self {
        let mut prefix = vec![0.0; (k + 1) * (k + 1)];
        for i in 0..k {
            for j in 0..k {
                prefix[(i + 1) * (k + 1) + j + 1] =
                    s[i * k + j] + prefix[i * (k + 1) + j + 1] + prefix[(i + 1) * (k + 1) + j]
                        - prefix[i * (k + 1) + j];
            }
        }
        Self { k, prefix }
    }

    /// `sum_{a, b in [lo, hi)} s_ab`.
    fn block(&self, lo: usize, hi: usize) -> f64 {
        let w = self.k + 1;
        self.prefix[hi * w + hi] - self.prefix[lo * w + hi] - self.prefix[hi * w + lo]
            + self.prefix[lo * w + lo]
    }

    /// A group's term of the score: `(1/|g|) sum_{i,j in g} S_ij`.
    fn gain(&self, lo: usize, hi: usize) -> f64 {
        self.block(lo, hi) / (hi - lo) as f64
    }
}

fn check(cosine: &[f64], timesteps: &[usize], num_timesteps: usize, n: usize) -> Result<usize> {
    let k = timesteps.len();
    ensure!(
        cosine.len() == k * k,
        "{} cosines for {k} timesteps",
        cosine.len()
    );
    ensure!(
        cosine.iter().all(|c| c.is_finite()),
        "the cosine matrix has non-finite entries"
    );
    if n == 0 || n > k {
        bail!("cannot split {k} timesteps into {n} ranges: choose 1 to {k}");
    }
    if timesteps.windows(2).any(|w| w[0] >= w[1])
        || timesteps.last().is_some_and(|&t| t >= num_timesteps)
    {
        bail!("the timesteps must increase and lie in [0, {num_timesteps}), got {timesteps:?}");
    }
    Ok(k)
}

/// The boundary between timesteps `a < b`: the middle, rounded up (the edge
/// between two bins when they are bin centres).
fn between(a: usize, b: usize) -> usize {
    (a + b).div_ceil(2)
}

fn score_of(sums: &BlockSums, groups: &[[usize; 2]]) -> f64 {
    groups
        .iter()
        .map(|&[lo, hi]| sums.gain(lo, hi))
        .sum::<f64>()
        / sums.k as f64
}

/// The `n` contiguous ranges of `timesteps` (increasing, the rows of the
/// `k x k` `cosine` matrix) with the highest within-range score, over
/// `[0, num_timesteps)`. Ties go to the earlier boundary.
pub fn suggest_ranges(
    cosine: &[f64],
    timesteps: &[usize],
    num_timesteps: usize,
    n: usize,
) -> Result<RangeSplit> {
    let k = check(cosine, timesteps, num_timesteps, n)?;
    let sums = BlockSums::new(cosine, k);
    // best[m][j]: the best score of the first j rows in m groups; from[m][j]: where its last group starts
    let mut best = vec![vec![f64::NEG_INFINITY; k + 1]; n + 1];
    let mut from = vec![vec![0usize; k + 1]; n + 1];
    best[0][0] = 0.0;
    for m in 1..=n {
        for j in m..=k {
            for i in (m - 1)..j {
                let v = best[m - 1][i] + sums.gain(i, j);
                if v > best[m][j] {
                    best[m][j] = v;
                    from[m][j] = i;
                }
            }
        }
    }
    let mut groups = Vec::with_capacity(n);
    let mut end = k;
    for m in (1..=n).rev() {
        let start = from[m][end];
        groups.push([start, end]);
        end = start;
    }
    groups.reverse();
    let mut boundaries = vec![0];
    boundaries.extend(
        groups
            .iter()
            .skip(1)
            .map(|&[lo, _]| between(timesteps[lo - 1], timesteps[lo])),
    );
    boundaries.push(num_timesteps);
    Ok(RangeSplit {
        boundaries,
        score: score_of(&sums, &groups),
        groups,
    })
}

/// The uniform split of `[0, num_timesteps)` into `n` ranges, with the rows of
/// `timesteps` in each and its within-range score on `cosine` (for comparing
/// with [`suggest_ranges`]). Fails when a range holds none of the timesteps.
pub fn uniform_split(
    cosine: &[f64],
    timesteps: &[usize],
    num_timesteps: usize,
    n: usize,
) -> Result<RangeSplit> {
    let k = check(cosine, timesteps, num_timesteps, n)?;
    let boundaries: Vec<usize> = (0..=n).map(|i| i * num_timesteps / n).collect();
    let mut groups = Vec::with_capacity(n);
    for w in boundaries.windows(2) {
        let lo = timesteps.partition_point(|&t| t < w[0]);
        let hi = timesteps.partition_point(|&t| t < w[1]);
        ensure!(
            hi > lo,
            "the uniform range [{}, {}) holds none of the timesteps",
            w[0],
            w[1]
        );
        groups.push([lo, hi]);
    }
    let sums = BlockSums::new(cosine, k);
    Ok(RangeSplit {
        boundaries,
        score: score_of(&sums, &groups),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::analysis::GradSimConfig;

    /// Blocks of the given sizes: `inside` within a block, `across` between, 1 on the diagonal.
    fn blocks(sizes: &[usize], inside: f64, across: f64) -> Vec<f64> {
        let k: usize = sizes.iter().sum();
        let block_of: Vec<usize> = sizes
            .iter()
            .enumerate()
            .flat_map(|(b, &s)| vec![b; s])
            .collect();
        let mut s = vec![across; k * k];
        for i in 0..k {
            for j in 0..k {
                if block_of[i] == block_of[j] {
                    s[i * k + j] = if i == j { 1.0 } else { inside };
                }
            }
        }
        s
    }

    #[test]
    fn blocks_of_agreeing_timesteps_become_the_ranges() {
        let t = GradSimConfig::even_timesteps(10, 1000);
        let s = blocks(&[2, 3, 5], 0.9, -0.2);
        let split = suggest_ranges(&s, &t, 1000, 3).unwrap();
        assert_eq!(split.groups, [[0, 2], [2, 5], [5, 10]]);
        assert_eq!(split.boundaries, [0, 200, 500, 1000]);
        let uniform = uniform_split(&s, &t, 1000, 3).unwrap();
        assert_eq!(uniform.boundaries, [0, 333, 666, 1000]);
        assert!(
            split.score > uniform.score,
            "{} vs {}",
            split.score,
            uniform.score
        );
    }

    #[test]
    fn the_score_is_one_when_all_agree_and_n_over_k_when_orthogonal() {
        let t = GradSimConfig::even_timesteps(8, 1000);
        let ones = vec![1.0; 64];
        for n in 1..=8 {
            assert!((suggest_ranges(&ones, &t, 1000, n).unwrap().score - 1.0).abs() < 1e-12);
        }
        let eye = blocks(&[1; 8], 0.0, 0.0);
        let split = suggest_ranges(&eye, &t, 1000, 4).unwrap();
        assert!((split.score - 4.0 / 8.0).abs() < 1e-12, "{}", split.score);
        // one range is the whole schedule
        let one = suggest_ranges(&eye, &t, 1000, 1).unwrap();
        assert_eq!((one.boundaries, one.groups), (vec![0, 1000], vec![[0, 8]]));
    }

    #[test]
    fn the_dynamic_programme_finds_the_best_of_every_partition() {
        // a fixed pseudo-random symmetric matrix, against all C(6, 2) splits
        let (k, n) = (7, 3);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut s = vec![0.0; k * k];
        for i in 0..k {
            for j in i..k {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = if i == j {
                    1.0
                } else {
                    (x % 2001) as f64 / 1000.0 - 1.0
                };
                s[i * k + j] = v;
                s[j * k + i] = v;
            }
        }
        let t = GradSimConfig::even_timesteps(k, 1000);
        let sums = BlockSums::new(&s, k);
        let mut brute = f64::NEG_INFINITY;
        for a in 1..k {
            for b in a + 1..k {
                brute = brute.max(score_of(&sums, &[[0, a], [a, b], [b, k]]));
            }
        }
        let split = suggest_ranges(&s, &t, 1000, n).unwrap();
        assert!(
            (split.score - brute).abs() < 1e-12,
            "{} vs {brute}",
            split.score
        );
        // and the block sums agree with a direct sum
        let direct: f64 = (2..5)
            .flat_map(|a| (2..5).map(move |b| (a, b)))
            .map(|(a, b)| s[a * k + b])
            .sum();
        assert!((sums.block(2, 5) - direct).abs() < 1e-12);
    }

    #[test]
    fn bad_requests_are_errors() {
        let t = GradSimConfig::even_timesteps(4, 1000);
        let s = vec![1.0; 16];
        for n in [0, 5] {
            let e = suggest_ranges(&s, &t, 1000, n).unwrap_err().to_string();
            assert!(e.contains("choose 1 to 4"), "{e}");
        }
        assert!(suggest_ranges(&s[..15], &t, 1000, 2).is_err());
        assert!(suggest_ranges(&s, &[10, 5, 20, 30], 1000, 2).is_err());
        let mut nan = s.clone();
        nan[3] = f64::NAN;
        assert!(suggest_ranges(&nan, &t, 1000, 2).is_err());
        // four timesteps all below 500: the uniform split's upper half is empty
        let low = [10, 20, 30, 40];
        assert!(
            uniform_split(&s, &low, 1000, 2)
                .unwrap_err()
                .to_string()
                .contains("none of the timesteps")
        );
    }
}
