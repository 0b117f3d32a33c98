//! Per-timestep gradient cosine similarity (the gradient conflicts DeMe is built on).
//!
//! # Definition
//! For timesteps `t_1..t_K` and fixed batches `(x_0^m, eps^m)`, `m = 1..M`:
//!
//! `g_k = (1/M) sum_m grad_theta L(theta; x_0^m, eps^m, t_k)` with
//! `L = mean_b || eps_b - eps_theta(sqrt(a_t) x_0b + sqrt(1 - a_t) eps_b, t) ||^2`,
//! every sample of a batch at the same `t_k`, the same `x_0` and noise for every `k`.
//! The heatmap is `S_kl = <g_k, g_l> / (|g_k| |g_l|)`, over all parameters and,
//! separately, over each parameter group (block or layer).
//!
//! # Noise ceiling
//! With `M >= 2` batches, the even-numbered and the odd-numbered batches give two
//! independent estimates `g_k^A`, `g_k^B` of the same gradient; their cosine
//! `c_k = cos(g_k^A, g_k^B)` is what the matrix could show at best for timestep
//! `t_k` with this many batches (a true cosine of 1 measured through the noise).
//! A cosine `S_kl` well below `sqrt(c_k c_l)` is a conflict, one near it may be
//! noise; `S_kl / sqrt(c_k c_l)` is the similarity relative to the ceiling.
//!
//! # Standard errors
//! With `M >= 2` batches, each cosine carries a jackknife standard error over the
//! batches: `S^(-m)` is the matrix of the gradients summed over every batch but
//! `m`, and `SE_kl = sqrt((M - 1)/M sum_m (S^(-m)_kl - mean)^2)`. All of it (the
//! matrix, the ceiling's halves, the leave-one-out sums) folds out of one Gram
//! matrix of the M K per-batch gradients.
//!
//! # Memory
//! The M K gradients (one per batch and timestep) are never kept whole. Each
//! group's gradient is reduced on the device to a sketch of at most `sketch_dim`
//! numbers: multiplied by a fixed random
//! ±1 sign per coordinate, then coordinates `i` and `i + d` (and so on) are summed.
//! Inner products of sketches are unbiased estimates of the true inner products.
//! A group no larger than `sketch_dim` is kept exactly, so `sketch_dim = None`
//! (exact) or a large dimension gives the exact answer; see the tests for the
//! measured error of the default on a small model.

use super::groups::{Granularity, group_of};
use crate::engine::data::{DataSpec, split_items};
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::model::EpsModel;
use crate::engine::model::params::{flat_grads, param_shapes};
use crate::engine::store::{AnyModel, ModelSpec};
use crate::engine::train::loss::eps_loss_per_sample;
use crate::engine::train::{BatchSampler, CancelToken};
use anyhow::{Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Settings of one gradient-similarity computation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradSimConfig {
    /// Timesteps compared (each in `[0, T)`).
    pub timesteps: Vec<usize>,
    /// Number of fixed batches the gradients are averaged over (M).
    pub batches: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// Sketch size per group; `None` keeps every gradient exactly.
    pub sketch_dim: Option<usize>,
    /// How parameters are grouped for the per-group matrices.
    pub granularity: Granularity,
    /// Seed for the batches, the noise and the sketch signs.
    pub seed: u64,
}

impl GradSimConfig {
    /// `k` timesteps evenly spaced over `[0, num_timesteps)`, at bin centres.
    pub fn even_timesteps(k: usize, num_timesteps: usize) -> Vec<usize> {
        (0..k)
            .map(|i| ((2 * i + 1) * num_timesteps / (2 * k)).min(num_timesteps - 1))
            .collect()
    }
}

impl Default for GradSimConfig {
    fn default() -> Self {
        Self {
            timesteps: Self::even_timesteps(20, 1000),
            batches: 2,
            batch_size: 32,
            sketch_dim: Some(1 << 16),
            granularity: Granularity::Block,
            seed: 0,
        }
    }
}

/// One group's similarity matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupSimilarity {
    /// Group name (a key prefix such as `down_blocks.1`).
    pub name: String,
    /// Number of parameter values in the group.
    pub params: usize,
    /// Row-major K x K cosine similarities.
    pub cosine: Vec<f64>,
    /// Gradient norm at each timestep.
    pub norms: Vec<f64>,
}

/// The result: the K x K matrix overall and per group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GradSimResult {
    /// The timesteps, in the order of the matrix rows.
    pub timesteps: Vec<usize>,
    /// Row-major K x K cosine similarities over all parameters.
    pub cosine: Vec<f64>,
    /// Overall gradient norm at each timestep.
    pub norms: Vec<f64>,
    /// Per-group matrices, in module order.
    pub groups: Vec<GroupSimilarity>,
    /// Whether every group was kept exactly (no sketching).
    pub exact: bool,
    /// The settings used.
    pub config: GradSimConfig,
    /// The noise ceiling `c_k` of each timestep (see the module docs); `None`
    /// with a single batch.
    #[serde(default)]
    pub ceiling: Option<Vec<f64>>,
    /// Row-major K x K jackknife standard errors of [`Self::cosine`] over the M
    /// batches (see the module docs); `None` with a single batch.
    #[serde(default)]
    pub stderr: Option<Vec<f64>>,
}

impl GradSimResult {
    /// Number of timesteps K.
    pub fn k(&self) -> usize {
        self.timesteps.len()
    }

    /// The cosines relative to the noise ceiling, `S_kl / sqrt(c_k c_l)`
    /// (NaN where a ceiling is not positive); `None` without a ceiling.
    pub fn relative_to_ceiling(&self) -> Option<Vec<f64>> {
        let c = self.ceiling.as_ref()?;
        let k = self.k();
        Some(
            (0..k * k)
                .map(|n| {
                    let (i, j) = (n / k, n % k);
                    let p = c[i] * c[j];
                    if c[i] > 0.0 && c[j] > 0.0 {
                        self.cosine[n] / p.sqrt()
                    } else {
                        f64::NAN
                    }
                })
                .collect(),
        )
    }

    /// Off-diagonal similarities (each unordered pair once) among the timesteps in
    /// `[lo, hi)`, or among all when `range` is `None`.
    pub fn pair_values(&self, range: Option<(usize, usize)>) -> Vec<f64> {
        let k = self.k();
        let inside = |t: usize| range.is_none_or(|(lo, hi)| t >= lo && t < hi);
        let mut out = Vec::new();
        for i in 0..k {
            for j in i + 1..k {
                if inside(self.timesteps[i]) && inside(self.timesteps[j]) {
                    out.push(self.cosine[i * k + j]);
                }
            }
        }
        out
    }

    /// Each group's name, parameter count and mean off-diagonal similarity,
    /// most conflicting (lowest) first.
    pub fn groups_by_conflict(&self) -> Vec<(String, usize, f64)> {
        let k = self.k();
        let mut v: Vec<(String, usize, f64)> = self
            .groups
            .iter()
            .map(|g| {
                let mut s = 0.0;
                let mut n = 0usize;
                for i in 0..k {
                    for j in i + 1..k {
                        s += g.cosine[i * k + j];
                        n += 1;
                    }
                }
                let mean = if n > 0 { s / n as f64 } else { 1.0 };
                (g.name.clone(), g.params, mean)
            })
            .collect();
        v.sort_by(|a, b| a.2.total_cmp(&b.2));
        v
    }
}

/// Progress of a computation: `done` of `total` backward passes.
#[derive(Debug, Clone, Copy)]
pub struct GradSimProgress {
    /// Backward passes done.
    pub done: usize,
    /// Backward passes in all.
    pub total: usize,
}

/// One group's place in the flat gradient list and its sketch.
struct GroupPlan {
    name: String,
    /// Indices into the module-ordered parameter list.
    members: Vec<usize>,
    len: usize,
    /// `None`: kept exactly. `Some((d, signs))`: signs padded to a multiple of d.
    sketch: Option<(usize, Tensor<1>)>,
}

impl GroupPlan {
    fn width(&self) -> usize {
        self.sketch.as_ref().map_or(self.len, |(d, _)| *d)
    }

    /// Reduces the group's flat gradient `[len]` to its stored form `[width]`.
    fn reduce(&self, g: Tensor<1>) -> Tensor<1> {
        match &self.sketch {
            None => g,
            Some((d, signs)) => {
                let padded_len = signs.dims()[0];
                let g = if padded_len > self.len {
                    Tensor::cat(
                        vec![
                            g.clone(),
                            Tensor::zeros([padded_len - self.len], &g.device()),
                        ],
                        0,
                    )
                } else {
                    g
                };
                (g * signs.clone())
                    .reshape([padded_len / d, *d])
                    .sum_dim(0)
                    .reshape([*d])
            }
        }
    }
}

fn plan_groups<M: EpsModel>(model: &M, config: &GradSimConfig, device: &Device) -> Vec<GroupPlan> {
    let shapes = param_shapes(model);
    let mut plans: Vec<GroupPlan> = Vec::new();
    for (i, (key, shape)) in shapes.iter().enumerate() {
        let name = group_of(key, config.granularity);
        let n: usize = shape.iter().product();
        match plans.last_mut() {
            Some(p) if p.name == name => {
                p.members.push(i);
                p.len += n;
            }
            _ => plans.push(GroupPlan {
                name,
                members: vec![i],
                len: n,
                sketch: None,
            }),
        }
    }
    let mut rng = StdRng::seed_from_u64(config.seed ^ 0x5eed_5e7c);
    for p in &mut plans {
        if let Some(d) = config.sketch_dim
            && p.len > d
        {
            let padded = p.len.div_ceil(d) * d;
            let signs: Vec<f32> = (0..padded)
                .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                .collect();
            p.sketch = Some((
                d,
                Tensor::from_data(TensorData::new(signs, [padded]), device),
            ));
        }
    }
    plans
}

/// Computes the gradient cosine-similarity matrices of `model` (on any device;
/// gradients are taken on its autodiff counterpart) on batches drawn from `data`.
pub fn grad_similarity<M: EpsModel>(
    model: &M,
    schedule: &NoiseSchedule,
    data: &BatchSampler,
    config: &GradSimConfig,
    cancel: &CancelToken,
    on_progress: &mut dyn FnMut(GradSimProgress),
) -> Result<GradSimResult> {
    let k = config.timesteps.len();
    if k < 2 {
        bail!("gradient similarity needs at least two timesteps, got {k}");
    }
    if let Some(&t) = config
        .timesteps
        .iter()
        .find(|&&t| t >= schedule.num_train_timesteps())
    {
        bail!(
            "timestep {t} is outside the schedule's [0, {})",
            schedule.num_train_timesteps()
        );
    }
    if config.batches == 0 || config.batch_size == 0 {
        bail!("batches and batch size must be at least 1");
    }
    if config.sketch_dim == Some(0) {
        bail!("the sketch dimension must be at least 1");
    }
    let device = model.devices()[0].clone();
    let tracked = model.clone().to_device(&device.clone().autodiff()).train();
    let plans = plan_groups(&tracked, config, &device);
    let keys: Vec<(String, usize)> = param_shapes(&tracked)
        .into_iter()
        .map(|(key, shape)| (key, shape.iter().product()))
        .collect();
    // acc[batch][group][k]: each batch's stored (exact or sketched) gradient,
    // weighted 1/M so that the batches add up to the mean; the Gram matrix of all
    // M K rows then gives the mean's, the two halves' and every leave-one-out sum's
    let batches = config.batches;
    let mut acc: Vec<Vec<Vec<Option<Tensor<1>>>>> = (0..batches)
        .map(|_| plans.iter().map(|_| vec![None; k]).collect())
        .collect();
    let total = config.batches * k;
    let scale = 1.0 / config.batches as f32;
    for m in 0..config.batches {
        let mut rng = data.rng_for_step(config.seed, m as u64);
        let batch = data.batch(
            &mut rng,
            config.batch_size,
            schedule.num_train_timesteps(),
            &device,
        );
        for (ki, &t) in config.timesteps.iter().enumerate() {
            if cancel.is_cancelled() {
                bail!("cancelled");
            }
            let ts = vec![t; config.batch_size];
            let loss = eps_loss_per_sample(
                &tracked,
                schedule,
                batch.x0.clone(),
                batch.noise.clone(),
                &ts,
            )
            .mean();
            let grads = loss.backward();
            let mut lookup: HashMap<String, Tensor<1>> =
                flat_grads(&tracked, &grads).into_iter().collect();
            for (gi, plan) in plans.iter().enumerate() {
                let parts: Vec<Tensor<1>> = plan
                    .members
                    .iter()
                    .map(|&i| {
                        let (key, n) = &keys[i];
                        // an untouched parameter has a zero gradient
                        lookup
                            .remove(key)
                            .unwrap_or_else(|| Tensor::zeros([*n], &device))
                    })
                    .collect();
                let g = if parts.len() == 1 {
                    parts.into_iter().next().expect("one part")
                } else {
                    Tensor::cat(parts, 0)
                };
                let reduced = plan.reduce(g) * scale;
                acc[m][gi][ki] = Some(reduced);
            }
            on_progress(GradSimProgress {
                done: m * k + ki + 1,
                total,
            });
        }
    }
    // Gram matrices per group on the device: [M K, width] x [width, M K] over
    // the batches' rows (row m K + k), folded into the K x K Gram of their sum
    let mk = batches * k;
    let all = |_: usize| Some(0);
    let mut rows_gram = vec![0.0f64; mk * mk];
    let mut groups = Vec::with_capacity(plans.len());
    for (gi, plan) in plans.iter().enumerate() {
        let rows: Vec<Tensor<2>> = (0..batches)
            .flat_map(|m| (0..k).map(move |ki| (m, ki)))
            .map(|(m, ki)| {
                acc[m][gi][ki]
                    .take()
                    .expect("every slot filled")
                    .reshape([1, plan.width()])
            })
            .collect();
        let a = Tensor::cat(rows, 0);
        let g2: Vec<f32> = a
            .clone()
            .matmul(a.transpose())
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading the Gram matrix: {e:?}"))?;
        let g2: Vec<f64> = g2.into_iter().map(f64::from).collect();
        for (t, g) in rows_gram.iter_mut().zip(&g2) {
            *t += g;
        }
        let (cosine, norms) = cosine_from_gram(&fold_batches(&g2, batches, k, 1, &all), k);
        groups.push(GroupSimilarity {
            name: plan.name.clone(),
            params: plan.len,
            cosine,
            norms,
        });
    }
    let (cosine, norms) = cosine_from_gram(&fold_batches(&rows_gram, batches, k, 1, &all), k);
    if cosine.iter().any(|c| !c.is_finite()) {
        bail!("the gradients are not finite; the model or data produce NaN/inf losses");
    }
    let ceiling = (batches >= 2).then(|| {
        let halves = fold_batches(&rows_gram, batches, k, 2, &|m| Some(m % 2));
        ceiling_from_halves(&halves, k)
    });
    let stderr = (batches >= 2).then(|| jackknife_stderr(&rows_gram, batches, k));
    Ok(GradSimResult {
        timesteps: config.timesteps.clone(),
        cosine,
        norms,
        groups,
        exact: plans.iter().all(|p| p.sketch.is_none()),
        config: config.clone(),
        ceiling,
        stderr,
    })
}

/// The `(P K) x (P K)` Gram matrix of `P` sums of the batches' rows, from the
/// `(M K) x (M K)` Gram matrix `g` of the rows themselves (row `m K + k`: batch
/// `m`, timestep `k`): batch `m` goes into part `part(m)`, or into none.
fn fold_batches(
    g: &[f64],
    batches: usize,
    k: usize,
    parts: usize,
    part: &dyn Fn(usize) -> Option<usize>,
) -> Vec<f64> {
    let (mk, pk) = (batches * k, parts * k);
    let mut out = vec![0.0; pk * pk];
    for a in 0..batches {
        let Some(pa) = part(a) else { continue };
        for b in 0..batches {
            let Some(pb) = part(b) else { continue };
            for i in 0..k {
                for j in 0..k {
                    out[(pa * k + i) * pk + pb * k + j] += g[(a * k + i) * mk + b * k + j];
                }
            }
        }
    }
    out
}

/// Jackknife standard errors of the `K x K` cosines over the `M` batches:
/// `sqrt((M - 1) / M sum_m (S^(-m) - mean_m S^(-m))^2)`, with `S^(-m)` the
/// cosines of the gradients summed over every batch but `m`.
fn jackknife_stderr(g: &[f64], batches: usize, k: usize) -> Vec<f64> {
    let leave_out: Vec<Vec<f64>> = (0..batches)
        .map(|m| {
            let gram = fold_batches(g, batches, k, 1, &|b| (b != m).then_some(0));
            cosine_from_gram(&gram, k).0
        })
        .collect();
    let m = batches as f64;
    (0..k * k)
        .map(|n| {
            let mean = leave_out.iter().map(|c| c[n]).sum::<f64>() / m;
            let ss: f64 = leave_out.iter().map(|c| (c[n] - mean).powi(2)).sum();
            ((m - 1.0) / m * ss).sqrt()
        })
        .collect()
}

/// The cosine of the two halves' gradients at each timestep, from the
/// `2K x 2K` Gram matrix of their rows (0 where either half is zero).
fn ceiling_from_halves(g2: &[f64], k: usize) -> Vec<f64> {
    let w = 2 * k;
    (0..k)
        .map(|i| {
            let (aa, bb, ab) = (g2[i * w + i], g2[(k + i) * w + k + i], g2[i * w + k + i]);
            if aa > 0.0 && bb > 0.0 {
                (ab / (aa * bb).sqrt()).clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// The items the gradients are taken on: the training split of `data` (the same
/// split the trainer uses, 10 % held out), fitted to the model `spec`.
pub fn gradsim_items(data: &DataSpec, spec: &ModelSpec, toy_points: usize) -> Result<BatchSampler> {
    Ok(split_items(data, spec, 0.1, toy_points)?.train)
}

/// [`grad_similarity`] for either kind of loaded model.
pub fn grad_similarity_any(
    model: &AnyModel,
    schedule: &NoiseSchedule,
    data: &BatchSampler,
    config: &GradSimConfig,
    cancel: &CancelToken,
    on_progress: &mut dyn FnMut(GradSimProgress),
) -> Result<GradSimResult> {
    match model {
        AnyModel::UNet(m) => grad_similarity(m, schedule, data, config, cancel, on_progress),
        AnyModel::Mlp(m) => grad_similarity(m, schedule, data, config, cancel, on_progress),
    }
}

/// One line on a set of pair similarities: mean, minimum, how many are negative.
pub fn describe_pairs(v: &[f64]) -> String {
    if v.is_empty() {
        return "no pairs".into();
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let neg = v.iter().filter(|x| **x < 0.0).count();
    format!(
        "mean {mean:.3}, min {min:.3}, {neg}/{} pairs negative",
        v.len()
    )
}

/// Cosine matrix and norms from a K x K Gram matrix (a zero gradient has cosine 0
/// with everything but itself).
pub fn cosine_from_gram(gram: &[f64], k: usize) -> (Vec<f64>, Vec<f64>) {
    let norms: Vec<f64> = (0..k).map(|i| gram[i * k + i].max(0.0).sqrt()).collect();
    let mut c = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            c[i * k + j] = if i == j {
                1.0
            } else if norms[i] > 0.0 && norms[j] > 0.0 {
                (gram[i * k + j] / (norms[i] * norms[j])).clamp(-1.0, 1.0)
            } else {
                0.0
            };
        }
    }
    (c, norms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_timesteps_are_bin_centres() {
        assert_eq!(
            GradSimConfig::even_timesteps(4, 1000),
            vec![125, 375, 625, 875]
        );
        assert_eq!(GradSimConfig::even_timesteps(2, 10), vec![2, 7]);
    }

    #[test]
    fn cosine_from_gram_normalises() {
        // vectors (1,0), (1,1), (0,0)
        let gram = [1.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0];
        let (c, n) = cosine_from_gram(&gram, 3);
        assert!((c[1] - 1.0 / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(c[1], c[3]);
        assert_eq!(c[2], 0.0);
        assert_eq!(c[8], 1.0);
        assert!((n[1] - 2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn pair_values_respects_range() {
        let r = GradSimResult {
            timesteps: vec![100, 200, 600],
            cosine: vec![1.0, 0.5, 0.1, 0.5, 1.0, 0.2, 0.1, 0.2, 1.0],
            norms: vec![1.0; 3],
            groups: vec![],
            exact: true,
            config: GradSimConfig::default(),
            ceiling: None,
            stderr: None,
        };
        assert_eq!(r.pair_values(None), vec![0.5, 0.1, 0.2]);
        assert_eq!(r.pair_values(Some((0, 250))), vec![0.5]);
    }
}
