//! The held-out diffusion loss with everything random fixed once: the objective of
//! grid search, the height of the loss landscape, and the loss column of reports.
//!
//! # Definition
//! An [`EvalSet`] of `n` samples draws, once and from its seed, `n` held-out items
//! `x_0` (cycling through a seeded shuffle of the held-out set), `n` standard
//! normal noises `eps`, and `n` stratified timesteps `t_j = floor((j + 1/2) T / n)`,
//! so every timestep range of equal width gets the same number of samples. The
//! loss of a model is `L_j = mean_pixels (eps_j - eps_theta(x_t_j, t_j))^2` with
//! `x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps`, reported as the mean over all `j`
//! and over the `j` whose `t_j` lies in each range. Same model, same set, same
//! number: the evaluation is deterministic.

use crate::engine::diffusion::NoiseSchedule;
use crate::engine::train::BatchSampler;
use crate::engine::train::batch::normal_tensor;
use crate::engine::train::loss::per_sample_mse;
use anyhow::{Result, anyhow, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// Settings of an evaluation set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalSetConfig {
    /// Number of (item, noise, timestep) samples.
    pub samples: usize,
    /// Samples per forward pass.
    pub batch_size: usize,
    /// Seed of the items, the noise and nothing else.
    pub seed: u64,
}

impl Default for EvalSetConfig {
    fn default() -> Self {
        Self {
            samples: 256,
            batch_size: 64,
            seed: 1234,
        }
    }
}

/// Fixed noisy inputs and targets on the device, in chunks of `batch_size`.
pub struct EvalSet {
    chunks: Vec<EvalChunk>,
    timesteps: Vec<usize>,
    num_train_timesteps: usize,
    config: EvalSetConfig,
}

struct EvalChunk {
    /// `[b, c, h, w]`
    x_t: Tensor<4>,
    /// `[b, c, h, w]`
    noise: Tensor<4>,
    t: Vec<f32>,
}

/// Per-sample losses of one model on an [`EvalSet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLosses {
    /// Timestep of each sample.
    pub t: Vec<usize>,
    /// Loss of each sample.
    pub loss: Vec<f64>,
    /// `T`.
    pub num_train_timesteps: usize,
}

impl EvalLosses {
    /// Mean over all samples.
    pub fn mean(&self) -> f64 {
        self.loss.iter().sum::<f64>() / self.loss.len().max(1) as f64
    }

    /// Mean over the samples with `lo <= t < hi` (NaN when there are none).
    pub fn mean_in(&self, lo: usize, hi: usize) -> f64 {
        let (s, n) = self
            .t
            .iter()
            .zip(&self.loss)
            .filter(|(t, _)| **t >= lo && **t < hi)
            .fold((0.0, 0usize), |(s, n), (_, l)| (s + l, n + 1));
        if n == 0 { f64::NAN } else { s / n as f64 }
    }

    /// Mean over each of the `n` ranges `[(i-1)T/n, iT/n)`.
    pub fn per_range(&self, n: usize) -> Vec<f64> {
        self.per_ranges(&timestep_ranges(n, self.num_train_timesteps))
    }

    /// Mean over each of the given ranges `[lo, hi)`.
    pub fn per_ranges(&self, ranges: &[[usize; 2]]) -> Vec<f64> {
        ranges
            .iter()
            .map(|[lo, hi]| self.mean_in(*lo, *hi))
            .collect()
    }
}

/// The `n` DeMe timestep ranges `[(i-1)T/n, iT/n)` (integer bounds that tile `[0, T)`).
pub fn timestep_ranges(n: usize, num_train_timesteps: usize) -> Vec<[usize; 2]> {
    (0..n)
        .map(|i| {
            [
                i * num_train_timesteps / n,
                (i + 1) * num_train_timesteps / n,
            ]
        })
        .collect()
}

impl EvalSet {
    /// Draws the fixed set from the held-out items `val`.
    pub fn new(
        val: &BatchSampler,
        schedule: &NoiseSchedule,
        config: EvalSetConfig,
        device: &Device,
    ) -> Result<Self> {
        if val.is_empty() {
            bail!("the evaluation needs held-out items, but the held-out set is empty");
        }
        if config.samples == 0 || config.batch_size == 0 {
            bail!("the evaluation needs at least one sample and a batch size of at least 1");
        }
        // inputs and targets are held for every sample: bounded like a dataset
        let per: usize = val.item_shape.iter().product();
        deme_formats::data::image_set::check_dataset_size(
            2 * config.samples as u64,
            per as u64,
            &format!(
                "{} held-out samples (input and target each)",
                config.samples
            ),
        )?;
        let big_t = schedule.num_train_timesteps();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut order: Vec<usize> = (0..val.len()).collect();
        order.shuffle(&mut rng);
        let items: Vec<usize> = (0..config.samples)
            .map(|j| order[j % order.len()])
            .collect();
        let timesteps: Vec<usize> = (0..config.samples)
            .map(|j| (((2 * j + 1) * big_t) / (2 * config.samples)).min(big_t - 1))
            .collect();
        let [c, h, w] = val.item_shape;
        let mut chunks = Vec::new();
        for (idx, ts) in items
            .chunks(config.batch_size)
            .zip(timesteps.chunks(config.batch_size))
        {
            let x0 = val.gather(idx, device);
            let noise = normal_tensor(&mut rng, [idx.len(), c, h, w], device);
            let x_t = schedule.q_sample(x0, noise.clone(), ts);
            chunks.push(EvalChunk {
                x_t,
                noise,
                t: ts.iter().map(|&t| t as f32).collect(),
            });
        }
        Ok(Self {
            chunks,
            timesteps,
            num_train_timesteps: big_t,
            config,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.timesteps.len()
    }

    /// Whether the set is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.timesteps.is_empty()
    }

    /// The settings it was drawn with.
    pub fn config(&self) -> EvalSetConfig {
        self.config
    }

    /// `T`, the number of training timesteps of the schedule.
    pub fn num_train_timesteps(&self) -> usize {
        self.num_train_timesteps
    }

    /// Timestep of each sample, in sample order.
    pub fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    /// The fixed inputs in evaluation order: `(x_t, noise, t)` per chunk, for
    /// computations of their own on the same samples (gradients).
    pub fn chunks(&self) -> impl Iterator<Item = (&Tensor<4>, &Tensor<4>, &[f32])> {
        self.chunks
            .iter()
            .map(|c| (&c.x_t, &c.noise, c.t.as_slice()))
    }

    /// The set split sample by sample: the even-numbered samples and the
    /// odd-numbered ones. Both halves keep the stratified timesteps (every range
    /// keeps half its samples, within one), so one can fit and the other check.
    pub fn halves(&self) -> Result<(EvalSet, EvalSet)> {
        if self.len() < 2 {
            bail!("splitting an evaluation set needs at least two samples");
        }
        let half = |parity: usize| -> EvalSet {
            let mut chunks = Vec::new();
            let mut timesteps = Vec::new();
            let mut first = 0usize;
            for c in &self.chunks {
                let idx: Vec<i64> = (0..c.t.len())
                    .filter(|j| (first + j) % 2 == parity)
                    .map(|j| j as i64)
                    .collect();
                first += c.t.len();
                if idx.is_empty() {
                    continue;
                }
                let device = c.x_t.device();
                let sel =
                    Tensor::<1, Int>::from_data(TensorData::new(idx.clone(), [idx.len()]), &device);
                let t: Vec<f32> = idx.iter().map(|&j| c.t[j as usize]).collect();
                timesteps.extend(t.iter().map(|&v| v as usize));
                chunks.push(EvalChunk {
                    x_t: c.x_t.clone().select(0, sel.clone()),
                    noise: c.noise.clone().select(0, sel),
                    t,
                });
            }
            EvalSet {
                chunks,
                timesteps,
                num_train_timesteps: self.num_train_timesteps,
                config: self.config,
            }
        };
        Ok((half(0), half(1)))
    }

    /// Per-sample losses of the noise predictor `eps(x_t, t)`.
    pub fn evaluate(&self, eps: &dyn Fn(Tensor<4>, &[f32]) -> Tensor<4>) -> Result<EvalLosses> {
        let mut loss = Vec::with_capacity(self.len());
        for chunk in &self.chunks {
            let pred = eps(chunk.x_t.clone(), &chunk.t);
            let l = per_sample_mse(pred, chunk.noise.clone())
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow!("reading the evaluation loss: {e:?}"))?;
            loss.extend(l.into_iter().map(f64::from));
        }
        if let Some(bad) = loss.iter().find(|l| !l.is_finite()) {
            bail!("the model's loss on the evaluation set is {bad}: its weights are not usable");
        }
        Ok(EvalLosses {
            t: self.timesteps.clone(),
            loss,
            num_train_timesteps: self.num_train_timesteps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::model::{EpsModel, ToyMlp, ToyMlpConfig};
    use crate::engine::train::loss::eps_loss_per_sample;

    fn points(n: usize) -> BatchSampler {
        let items: Vec<f32> = (0..2 * n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        BatchSampler::new(items, [2, 1, 1], "test points")
    }

    #[test]
    fn ranges_tile_the_schedule() {
        assert_eq!(
            timestep_ranges(4, 1000),
            vec![[0, 250], [250, 500], [500, 750], [750, 1000]]
        );
        let r = timestep_ranges(3, 1000);
        assert_eq!(r[0][0], 0);
        assert_eq!(r[2][1], 1000);
        assert!(r.windows(2).all(|w| w[0][1] == w[1][0]));
    }

    #[test]
    fn timesteps_are_stratified_over_ranges() {
        let d = Device::flex();
        let s = NoiseSchedule::ddpm(1000);
        let cfg = EvalSetConfig {
            samples: 64,
            batch_size: 10,
            seed: 3,
        };
        let set = EvalSet::new(&points(30), &s, cfg, &d).unwrap();
        for [lo, hi] in timestep_ranges(4, 1000) {
            let n = set.timesteps.iter().filter(|&&t| t >= lo && t < hi).count();
            assert_eq!(n, 16);
        }
    }

    #[test]
    fn matches_a_direct_loss_and_is_deterministic() {
        let d = Device::flex();
        let s = NoiseSchedule::ddpm(1000);
        let model = ToyMlp::new(&ToyMlpConfig::default(), 7, &d);
        let cfg = EvalSetConfig {
            samples: 24,
            batch_size: 7,
            seed: 11,
        };
        let set = EvalSet::new(&points(10), &s, cfg, &d).unwrap();
        let a = set.evaluate(&|x, t| model.eps(x, t)).unwrap();
        let b = EvalSet::new(&points(10), &s, cfg, &d)
            .unwrap()
            .evaluate(&|x, t| model.eps(x, t))
            .unwrap();
        assert_eq!(a, b);
        // the first chunk, scored by hand
        let chunk = &set.chunks[0];
        let ts: Vec<usize> = chunk.t.iter().map(|&t| t as usize).collect();
        let pred = model.eps(chunk.x_t.clone(), &chunk.t);
        let direct: Vec<f32> = per_sample_mse(pred, chunk.noise.clone())
            .into_data()
            .try_into_vec()
            .unwrap();
        for (x, y) in direct.iter().zip(&a.loss[..7]) {
            assert_eq!(f64::from(*x), *y);
        }
        assert_eq!(ts.len(), 7);
        // and equals the training objective on the same draw of items and noise
        let mut rng = StdRng::seed_from_u64(11);
        let mut order: Vec<usize> = (0..10).collect();
        order.shuffle(&mut rng);
        let idx: Vec<usize> = (0..7).map(|j| order[j % 10]).collect();
        let x0 = points(10).gather(&idx, &d);
        let noise = normal_tensor(&mut rng, [7, 2, 1, 1], &d);
        let obj: Vec<f32> = eps_loss_per_sample(&model, &s, x0, noise, &ts)
            .into_data()
            .try_into_vec()
            .unwrap();
        for (x, y) in obj.iter().zip(&a.loss[..7]) {
            assert!((f64::from(*x) - y).abs() < 1e-6, "{x} vs {y}");
        }
        let means = a.per_range(4);
        assert_eq!(means.len(), 4);
        assert!(means.iter().all(|m| m.is_finite()));
    }

    #[test]
    fn halves_split_the_samples_and_keep_their_losses() {
        let d = Device::flex();
        let s = NoiseSchedule::ddpm(1000);
        let model = ToyMlp::new(&ToyMlpConfig::default(), 5, &d);
        let cfg = EvalSetConfig {
            samples: 40,
            batch_size: 7,
            seed: 2,
        };
        let set = EvalSet::new(&points(12), &s, cfg, &d).unwrap();
        let all = set.evaluate(&|x, t| model.eps(x, t)).unwrap();
        let (even, odd) = set.halves().unwrap();
        assert_eq!((even.len(), odd.len()), (20, 20));
        let (a, b) = (
            even.evaluate(&|x, t| model.eps(x, t)).unwrap(),
            odd.evaluate(&|x, t| model.eps(x, t)).unwrap(),
        );
        for j in 0..40 {
            let (half, k) = if j % 2 == 0 { (&a, j / 2) } else { (&b, j / 2) };
            assert_eq!(half.t[k], all.t[j]);
            // the same sample in a smaller batch: equal up to the kernels' rounding
            let (x, y) = (half.loss[k], all.loss[j]);
            assert!((x - y).abs() <= 1e-6 * y.abs(), "sample {j}: {x} vs {y}");
        }
        // each of four ranges keeps half its samples
        for [lo, hi] in timestep_ranges(4, 1000) {
            let n = even
                .timesteps()
                .iter()
                .filter(|&&t| t >= lo && t < hi)
                .count();
            assert_eq!(n, 5);
        }
    }

    #[test]
    fn empty_held_out_set_is_refused() {
        let d = Device::flex();
        let s = NoiseSchedule::ddpm(1000);
        let empty = BatchSampler::new(vec![], [2, 1, 1], "none");
        let err = EvalSet::new(&empty, &s, EvalSetConfig::default(), &d)
            .err()
            .unwrap();
        assert!(err.to_string().contains("held-out"));
    }
}
