//! The timestep-wise ensemble DeMe compares against: expert `i` (0-based)
//! predicts the noise for `t` in `[i T / N, (i + 1) T / N)` with integer
//! division, exactly the range it was finetuned on
//! ([`crate::engine::train::timesteps::TimestepRange::of_expert`]).

use super::merger::Mergeable;
use crate::engine::train::{ranges_of, uniform_boundaries};
use anyhow::{Result, bail};
use burn::tensor::{Int, Tensor, TensorData};
use std::ops::Range;

/// The expert (0-based) whose range `[i T / N, (i + 1) T / N)` (integer
/// division) holds timestep `t`: the largest `i` with `i T / N <= t`, which is
/// `((t + 1) N - 1) / T`. Timesteps at or past `T` go to the last expert.
pub fn expert_index(t: usize, num_experts: usize, num_timesteps: usize) -> usize {
    if num_experts == 0 || num_timesteps == 0 {
        return 0;
    }
    let i = ((t as u128 + 1) * num_experts as u128 - 1) / num_timesteps as u128;
    (i as usize).min(num_experts - 1)
}

/// The timesteps of expert `i`: `i T / N .. (i + 1) T / N` (integer division),
/// exactly the `t` with [`expert_index`] `= i`.
pub fn expert_range(i: usize, num_experts: usize, num_timesteps: usize) -> Range<usize> {
    let edge = |k: usize| (k as u128 * num_timesteps as u128 / num_experts.max(1) as u128) as usize;
    edge(i)..edge(i + 1)
}

/// The boundaries `0 = b_0 < ... < b_N = T` that experts' stored ranges
/// (`deme.json`'s `timestep_range`, in expert order) make, when every expert
/// has one and they tile `[0, T)` in order; `None` otherwise.
pub fn stored_boundaries(
    ranges: &[Option<[usize; 2]>],
    num_timesteps: usize,
) -> Option<Vec<usize>> {
    let mut boundaries = vec![0];
    for r in ranges {
        let [lo, hi] = (*r)?;
        if lo != *boundaries.last()? || hi <= lo {
            return None;
        }
        boundaries.push(hi);
    }
    (boundaries.len() >= 2 && *boundaries.last()? == num_timesteps).then_some(boundaries)
}

/// The experts' range boundaries: the stored ones when they tile `[0, T)` in
/// order (see [`stored_boundaries`]), else the N uniform ones.
pub fn expert_boundaries_of(stored: &[Option<[usize; 2]>], num_timesteps: usize) -> Vec<usize> {
    stored_boundaries(stored, num_timesteps)
        .unwrap_or_else(|| uniform_boundaries(stored.len(), num_timesteps))
}

/// The experts' timestep ranges `[lo, hi)`, as [`expert_boundaries_of`] gives them.
pub fn expert_ranges_of(stored: &[Option<[usize; 2]>], num_timesteps: usize) -> Vec<[usize; 2]> {
    ranges_of(&expert_boundaries_of(stored, num_timesteps))
}

/// N experts, each used on its own timestep range.
#[derive(Debug, Clone)]
pub struct TimestepEnsemble<M> {
    experts: Vec<M>,
    /// Range boundaries `0 = b_0 < ... < b_N = T`: expert `i` owns `[b_i, b_(i+1))`.
    boundaries: Vec<usize>,
}

impl<M: Mergeable> TimestepEnsemble<M> {
    /// Experts in range order (expert 0 for the smallest timesteps) over `T` timesteps.
    pub fn new(experts: Vec<M>, num_timesteps: usize) -> Result<Self> {
        if experts.is_empty() {
            bail!("an ensemble needs at least one expert");
        }
        if num_timesteps < experts.len() {
            bail!(
                "{} experts cannot split {num_timesteps} timesteps: each needs at least one",
                experts.len()
            );
        }
        let boundaries = uniform_boundaries(experts.len(), num_timesteps);
        Ok(Self {
            experts,
            boundaries,
        })
    }

    /// Experts in range order on the ranges between `boundaries`
    /// (`0 = b_0 < ... < b_N = T`, N + 1 values for N experts).
    pub fn with_boundaries(experts: Vec<M>, boundaries: Vec<usize>) -> Result<Self> {
        let t = *boundaries.last().unwrap_or(&0);
        crate::engine::train::check_boundaries(&boundaries, t)?;
        if boundaries.len() != experts.len() + 1 {
            bail!(
                "{} experts need {} range boundaries, got {}",
                experts.len(),
                experts.len() + 1,
                boundaries.len()
            );
        }
        Ok(Self {
            experts,
            boundaries,
        })
    }

    /// The range boundaries `0 = b_0 < ... < b_N = T`.
    pub fn boundaries(&self) -> &[usize] {
        &self.boundaries
    }

    /// Number of experts N.
    pub fn num_experts(&self) -> usize {
        self.experts.len()
    }

    /// The experts, in range order.
    pub fn experts(&self) -> &[M] {
        &self.experts
    }

    /// Which expert handles timestep `t` (the last one past `T`).
    pub fn expert_for(&self, t: usize) -> usize {
        // the number of inner boundaries at or below t
        let inner = &self.boundaries[1..self.boundaries.len() - 1];
        inner.partition_point(|&b| b <= t)
    }

    /// The integer timesteps expert `i` handles.
    pub fn range(&self, i: usize) -> Range<usize> {
        self.boundaries[i]..self.boundaries[i + 1]
    }

    /// Noise prediction of the whole batch at one timestep, by the expert for
    /// `t`: the shape of the model closure [`crate::engine::diffusion::sample`] takes.
    ///
    /// # Shapes
    /// `x: [n, c, h, w] -> [n, c, h, w]`
    pub fn eps(&self, x: Tensor<4>, t: usize) -> Tensor<4> {
        let n = x.dims()[0];
        self.experts[self.expert_for(t)].predict_eps(x, &vec![t as f32; n])
    }

    /// Noise prediction with a timestep per sample: each sample goes to its
    /// expert (one call per expert present), outputs in input order.
    ///
    /// # Shapes
    /// `x: [n, c, h, w]`, `t: n timesteps -> [n, c, h, w]`
    pub fn eps_batch(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        let expert = |s: f32| self.expert_for(s.max(0.0) as usize);
        let first = t.first().map_or(0, |&s| expert(s));
        if t.iter().all(|&s| expert(s) == first) {
            return self.experts[first].predict_eps(x, t);
        }
        let device = x.device();
        let mut order: Vec<usize> = (0..t.len()).collect();
        order.sort_by_key(|&j| expert(t[j])); // stable: input order within an expert
        let mut parts = Vec::new();
        let mut start = 0;
        while start < order.len() {
            let e = expert(t[order[start]]);
            let end = start
                + order[start..]
                    .iter()
                    .take_while(|&&j| expert(t[j]) == e)
                    .count();
            let idx: Vec<i64> = order[start..end].iter().map(|&j| j as i64).collect();
            let ts: Vec<f32> = order[start..end].iter().map(|&j| t[j]).collect();
            let sel = Tensor::<1, Int>::from_data(TensorData::new(idx, [end - start]), &device);
            parts.push(self.experts[e].predict_eps(x.clone().select(0, sel), &ts));
            start = end;
        }
        // row r of the concatenation is sample order[r]; invert the permutation
        let mut inverse = vec![0i64; order.len()];
        for (r, &j) in order.iter().enumerate() {
            inverse[j] = r as i64;
        }
        let inv = Tensor::<1, Int>::from_data(TensorData::new(inverse, [order.len()]), &device);
        Tensor::cat(parts, 0).select(0, inv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{ToyMlp, ToyMlpConfig};
    use crate::engine::train::timesteps::TimestepRange;
    use burn::tensor::Device;

    #[test]
    fn ranges_split_the_timesteps() {
        // N divides T
        assert_eq!(expert_index(0, 4, 1000), 0);
        assert_eq!(expert_index(249, 4, 1000), 0);
        assert_eq!(expert_index(250, 4, 1000), 1);
        assert_eq!(expert_index(500, 4, 1000), 2);
        assert_eq!(expert_index(749, 4, 1000), 2);
        assert_eq!(expert_index(750, 4, 1000), 3);
        assert_eq!(expert_index(999, 4, 1000), 3);
        assert_eq!(expert_index(1000, 4, 1000), 3, "past the end: last expert");
        assert_eq!(expert_range(1, 4, 1000), 250..500);
        // N does not divide T: edges 10/3 -> 3 and 20/3 -> 6
        let picks: Vec<usize> = (0..10).map(|t| expert_index(t, 3, 10)).collect();
        assert_eq!(picks, [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]);
        assert_eq!(expert_range(0, 3, 10), 0..3);
        assert_eq!(expert_range(1, 3, 10), 3..6);
        assert_eq!(expert_range(2, 3, 10), 6..10);
        // ranges tile [0, T) exactly and are the ranges the experts were finetuned on
        for n in 1..9 {
            for big_t in n..40 {
                let mut next = 0;
                for i in 0..n {
                    let r = expert_range(i, n, big_t);
                    let trained = TimestepRange::of_expert(i, n, big_t).unwrap();
                    assert_eq!(
                        (r.start, r.end),
                        (trained.lo, trained.hi),
                        "N={n} T={big_t}"
                    );
                    assert_eq!(r.start, next, "N={n} T={big_t}");
                    for t in r.clone() {
                        assert_eq!(expert_index(t, n, big_t), i, "N={n} T={big_t} t={t}");
                    }
                    next = r.end;
                }
                assert_eq!(next, big_t);
            }
        }
    }

    fn ensemble() -> TimestepEnsemble<ToyMlp> {
        let d = Device::flex();
        let experts = (0..3)
            .map(|s| ToyMlp::new(&ToyMlpConfig::default(), s, &d))
            .collect();
        TimestepEnsemble::new(experts, 10).unwrap()
    }

    fn values(x: Tensor<4>) -> Vec<f32> {
        x.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn eps_uses_the_expert_of_t() {
        let ens = ensemble();
        let d = Device::flex();
        let x = Tensor::<4>::ones([2, 2, 1, 1], &d);
        for (t, want) in [(0, 0), (2, 0), (3, 1), (5, 1), (6, 2), (9, 2)] {
            assert_eq!(ens.expert_for(t), want);
            let got = values(ens.eps(x.clone(), t));
            let direct = values(ens.experts()[want].predict_eps(x.clone(), &[t as f32; 2]));
            assert_eq!(got, direct, "t={t}");
        }
    }

    #[test]
    fn stored_ranges_give_boundaries_only_when_they_tile() {
        let r = |v: &[[usize; 2]]| v.iter().map(|x| Some(*x)).collect::<Vec<_>>();
        assert_eq!(
            stored_boundaries(&r(&[[0, 120], [120, 400], [400, 1000]]), 1000),
            Some(vec![0, 120, 400, 1000])
        );
        // a gap, an overlap, a short end, a missing range: none
        assert_eq!(stored_boundaries(&r(&[[0, 100], [120, 1000]]), 1000), None);
        assert_eq!(stored_boundaries(&r(&[[0, 500], [400, 1000]]), 1000), None);
        assert_eq!(stored_boundaries(&r(&[[0, 500], [500, 900]]), 1000), None);
        assert_eq!(stored_boundaries(&[Some([0, 500]), None], 1000), None);
        assert_eq!(stored_boundaries(&[], 1000), None);
    }

    #[test]
    fn listed_boundaries_route_each_timestep_and_uniform_ones_match_new() {
        let d = Device::flex();
        let experts = |k: u64| -> Vec<ToyMlp> {
            (0..k)
                .map(|s| ToyMlp::new(&ToyMlpConfig::default(), s, &d))
                .collect()
        };
        let ens = TimestepEnsemble::with_boundaries(experts(3), vec![0, 2, 7, 10]).unwrap();
        let picks: Vec<usize> = (0..12).map(|t| ens.expert_for(t)).collect();
        assert_eq!(picks, [0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
        assert_eq!(ens.range(1), 2..7);
        // the uniform boundaries given as a list route exactly as `new`
        for (n, big_t) in [(3usize, 10usize), (4, 1000), (7, 1000)] {
            let listed = TimestepEnsemble::with_boundaries(
                experts(n as u64),
                crate::engine::train::uniform_boundaries(n, big_t),
            )
            .unwrap();
            let uniform = TimestepEnsemble::new(experts(n as u64), big_t).unwrap();
            for t in 0..=big_t {
                assert_eq!(listed.expert_for(t), uniform.expert_for(t), "N={n} t={t}");
                assert_eq!(uniform.expert_for(t), expert_index(t, n, big_t));
            }
        }
        // bad lists are refused with the reason
        let e = TimestepEnsemble::with_boundaries(experts(2), vec![0, 5, 5, 10]).unwrap_err();
        assert!(e.to_string().contains("increase"), "{e}");
        let e = TimestepEnsemble::with_boundaries(experts(2), vec![0, 5, 8, 10]).unwrap_err();
        assert!(e.to_string().contains("2 experts need 3"), "{e}");
    }

    #[test]
    fn mixed_batches_go_to_each_samples_expert() {
        let ens = ensemble();
        let d = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new(
                (0..8).map(|v| v as f32 * 0.1).collect::<Vec<_>>(),
                [4, 2, 1, 1],
            ),
            &d,
        );
        let t = [9.0, 0.0, 5.0, 3.0];
        let got = values(ens.eps_batch(x.clone(), &t));
        for (j, &tj) in t.iter().enumerate() {
            let e = ens.expert_for(tj as usize);
            let row = x.clone().narrow(0, j, 1);
            let want = values(ens.experts()[e].predict_eps(row, &[tj]));
            assert_eq!(&got[j * 2..j * 2 + 2], want.as_slice(), "sample {j}");
        }
        assert!(TimestepEnsemble::<ToyMlp>::new(vec![], 10).is_err());
    }
}
