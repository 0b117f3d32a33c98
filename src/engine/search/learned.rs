//! Learning merge weights by gradient descent on the held-out loss.
//!
//! # Method
//! A task-arithmetic merge is `theta(w) = theta + sum_i w_i tau_i`, so a loss
//! `L(theta(w))` has `dL/dw_i = <grad_theta L, tau_i>`: one backward pass at the
//! current merge gives every weight's derivative
//! ([`Merger::task_vector_inner_products`]). The search set is split sample by
//! sample ([`EvalSet::halves`]) into a fitting half and a validation half with
//! the same timesteps. From the centre of `[lo, hi]`, Adam follows the gradient
//! of the objective on the fitting half, with its step size decaying linearly to
//! zero over the steps and the weights clamped to `[lo, hi]`; the validation
//! half scores the start and every step, the best-scoring step is the answer,
//! and the descent stops once `patience` steps in a row have not beaten it.
//!
//! # Cost
//! A step is one forward and backward pass over the fitting half (about three
//! forward passes' work) plus one forward pass over the validation half: about
//! two forward passes over the whole search set, where a lattice point of the
//! other strategies costs one.

use super::lattice::{GridEvent, GridPoint, GridResult, GridSpec, Score};
use super::objective::LossObjective;
use super::strategy::{LearnSettings, validate_learned};
use crate::engine::analysis::groups::{Granularity, group_of};
use crate::engine::eval::EvalSet;
use crate::engine::merge::{BlockWeight, BlockWeights, MergeSpec, Mergeable, Merger};
use crate::engine::model::EpsModel;
use crate::engine::model::params::flat_grads;
use crate::engine::store::AnyModel;
use crate::engine::train::loss::per_sample_mse;
use anyhow::{Result, anyhow, bail};
use burn::tensor::{Tensor, TensorData};
use std::collections::HashMap;

/// The blocks of per-block learned weights: a point's weights are block after
/// block, N experts each (`w[b * N + i]` scales `tau_i` in block `b`).
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedBlocks {
    /// Block names (key prefixes at [`Granularity::Block`]), in module order.
    pub blocks: Vec<String>,
    /// Number of experts N.
    pub experts: usize,
}

impl LearnedBlocks {
    /// The blocks of a merge with these keys and `experts` experts.
    pub fn of(keys: &[(String, Vec<usize>)], experts: usize) -> Self {
        let mut blocks: Vec<String> = Vec::new();
        for (k, _) in keys {
            let b = group_of(k, Granularity::Block);
            if !blocks.contains(&b) {
                blocks.push(b);
            }
        }
        Self { blocks, experts }
    }

    /// The merge of a point's weights (every key is in some block).
    pub fn spec(&self, w: &[f64]) -> MergeSpec {
        let mut spec = MergeSpec::task_arithmetic(vec![1.0; self.experts]);
        spec.block_weights = self.block_weights(w);
        spec
    }

    /// A point's weights as block weights (`merge --block-weights`).
    pub fn block_weights(&self, w: &[f64]) -> BlockWeights {
        BlockWeights(
            self.blocks
                .iter()
                .enumerate()
                .map(|(b, name)| {
                    let v = w[b * self.experts..(b + 1) * self.experts]
                        .iter()
                        .map(|&x| x as f32)
                        .collect();
                    (name.clone(), BlockWeight::PerExpert(v))
                })
                .collect(),
        )
    }

    /// Per-key, per-expert derivatives summed into the point's coordinates.
    fn gradient(&self, keys: &[(String, Vec<usize>)], per_key: &[Vec<f64>]) -> Vec<f64> {
        let mut g = vec![0.0; self.blocks.len() * self.experts];
        for (k, (key, _)) in keys.iter().enumerate() {
            let b = self
                .blocks
                .iter()
                .position(|name| *name == group_of(key, Granularity::Block))
                .expect("every key's block is listed");
            for (i, row) in per_key.iter().enumerate() {
                g[b * self.experts + i] += row[k];
            }
        }
        g
    }
}

/// A model whose held-out loss can be differentiated in its parameters.
pub trait LossGradient: Mergeable {
    /// `sum_s a_s l_s` over the samples `s` of `eval` (per-sample losses `l_s`,
    /// weights `a` in sample order) and its gradient in every float parameter,
    /// flat, by key.
    fn weighted_loss_gradient(
        &self,
        eval: &EvalSet,
        sample_weights: &[f32],
    ) -> Result<(f64, Vec<(String, Tensor<1>)>)>;
}

impl<M: EpsModel> LossGradient for M {
    fn weighted_loss_gradient(
        &self,
        eval: &EvalSet,
        sample_weights: &[f32],
    ) -> Result<(f64, Vec<(String, Tensor<1>)>)> {
        weighted_gradient(self, eval, sample_weights)
    }
}

impl LossGradient for AnyModel {
    fn weighted_loss_gradient(
        &self,
        eval: &EvalSet,
        sample_weights: &[f32],
    ) -> Result<(f64, Vec<(String, Tensor<1>)>)> {
        match self {
            Self::UNet(m) => weighted_gradient(m, eval, sample_weights),
            Self::Mlp(m) => weighted_gradient(m, eval, sample_weights),
        }
    }
}

fn weighted_gradient<M: EpsModel>(
    model: &M,
    eval: &EvalSet,
    sample_weights: &[f32],
) -> Result<(f64, Vec<(String, Tensor<1>)>)> {
    if sample_weights.len() != eval.len() {
        bail!(
            "{} sample weights for {} samples",
            sample_weights.len(),
            eval.len()
        );
    }
    let device = model.devices()[0].clone();
    let tracked = model.clone().to_device(&device.clone().autodiff()).train();
    let mut sums: HashMap<String, Tensor<1>> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut value = 0.0;
    let mut first = 0;
    for (x_t, noise, t) in eval.chunks() {
        let a = &sample_weights[first..first + t.len()];
        first += t.len();
        let a = Tensor::<1>::from_data(TensorData::new(a.to_vec(), [a.len()]), &device);
        let loss = (per_sample_mse(tracked.eps(x_t.clone(), t), noise.clone()) * a).sum();
        let grads = loss.backward();
        value += f64::from(
            loss.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow!("reading the loss: {e:?}"))?[0],
        );
        for (key, g) in flat_grads(&tracked, &grads) {
            match sums.remove(&key) {
                Some(s) => {
                    sums.insert(key, s + g);
                }
                None => {
                    order.push(key.clone());
                    sums.insert(key, g);
                }
            }
        }
    }
    if !value.is_finite() {
        bail!("the loss is {value}: the merged weights are not usable");
    }
    let grads = order
        .into_iter()
        .map(|k| {
            let g = sums.remove(&k).expect("summed above");
            (k, g)
        })
        .collect();
    Ok((value, grads))
}

/// The per-sample weights `a_s` that make `sum_s a_s l_s` the objective on
/// samples at `timesteps`: `1/S` each for the plain mean; for the balanced
/// objective, `1 / (R n_r B_r)` for a sample in range `r` of the `R` `ranges`,
/// with `n_r` samples there and the base's mean loss `B_r` there.
pub fn objective_weights(
    objective: LossObjective,
    timesteps: &[usize],
    ranges: &[[usize; 2]],
    base_per_range: &[f64],
) -> Vec<f32> {
    match objective {
        LossObjective::Plain => vec![1.0 / timesteps.len().max(1) as f32; timesteps.len()],
        LossObjective::Balanced => {
            let range_of = |t: usize| ranges.iter().position(|[lo, hi]| t >= *lo && t < *hi);
            let mut counts = vec![0usize; ranges.len()];
            for &t in timesteps {
                if let Some(r) = range_of(t) {
                    counts[r] += 1;
                }
            }
            let used = (0..ranges.len())
                .filter(|&r| counts[r] > 0 && base_per_range[r] > 0.0)
                .count()
                .max(1) as f64;
            timesteps
                .iter()
                .map(|&t| match range_of(t) {
                    Some(r) if base_per_range[r] > 0.0 => {
                        (1.0 / (used * counts[r] as f64 * base_per_range[r])) as f32
                    }
                    _ => 0.0,
                })
                .collect()
        }
    }
}

/// Learns task-arithmetic weights for `merger`'s experts within `spec`'s bounds
/// (its step plays no part), fitting on half of `eval` and validating on the
/// other half (see the module docs). Every step is streamed as a point (level 0)
/// with its validation score; the result holds the path. With
/// [`LearnSettings::per_block`] a point has N weights per block, laid out as
/// [`LearnedBlocks::of`] the merger's keys says.
pub fn learn_merge_weights<M: LossGradient>(
    merger: &mut Merger<M>,
    eval: &EvalSet,
    objective: LossObjective,
    ranges: &[[usize; 2]],
    spec: &GridSpec,
    settings: LearnSettings,
    keep_going: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(GridEvent),
) -> Result<GridResult> {
    let n = merger.num_experts();
    let blocks = settings
        .per_block
        .then(|| LearnedBlocks::of(merger.keys(), n));
    // the descent's coordinates: N weights, or N per block
    let spec = &GridSpec {
        n: blocks.as_ref().map_or(n, |b| b.blocks.len() * n),
        ..spec.clone()
    };
    validate_learned(spec, &settings)?;
    let (fit, check) = eval.halves()?;
    let merged = merger.merge(&MergeSpec::task_arithmetic(vec![0.0; n]))?;
    let base_losses = |set: &EvalSet, base: &M| -> Result<Vec<f64>> {
        Ok(set
            .evaluate(&|x, t| base.predict_eps(x, t))?
            .per_ranges(ranges))
    };
    let fit_base = base_losses(&fit, &merged)?;
    let check_base = base_losses(&check, &merged)?;
    let a = objective_weights(objective, fit.timesteps(), ranges, &fit_base);
    let merge_at = |merger: &mut Merger<M>, merged: M, w: &[f64]| {
        let spec = match &blocks {
            Some(b) => b.spec(w),
            None => MergeSpec::task_arithmetic(w.iter().map(|&v| v as f32).collect()),
        };
        merger.merge_into(merged, &spec)
    };
    // both closures re-merge into the one model; a cell hands it between them
    let cell = std::cell::RefCell::new((merger, Some(merged)));
    let mut gradient = |w: &[f64]| -> Result<Vec<f64>> {
        let mut guard = cell.borrow_mut();
        let (merger, slot) = &mut *guard;
        let model = merge_at(merger, slot.take().expect("model in its slot"), w)?;
        let (_, grads) = model.weighted_loss_gradient(&fit, &a)?;
        let per_key = merger.task_vector_inner_products(&grads)?;
        *slot = Some(model);
        Ok(match &blocks {
            Some(b) => b.gradient(merger.keys(), &per_key),
            None => per_key.iter().map(|row| row.iter().sum()).collect(),
        })
    };
    let mut validate = |w: &[f64]| -> Result<Score> {
        let mut guard = cell.borrow_mut();
        let (merger, slot) = &mut *guard;
        let model = merge_at(merger, slot.take().expect("model in its slot"), w)?;
        let losses = check.evaluate(&|x, t| model.predict_eps(x, t))?;
        *slot = Some(model);
        let per_range = losses.per_ranges(ranges);
        Ok(Score {
            loss: objective.value(losses.mean(), &per_range, &check_base),
            per_range,
        })
    };
    descend(
        spec,
        settings,
        &mut gradient,
        &mut validate,
        keep_going,
        on_event,
    )
}

/// Adam from the centre of `[lo, hi]` with `gradient`, scored by `validate`;
/// the descent itself, apart from any model (see the module docs).
pub fn descend(
    spec: &GridSpec,
    settings: LearnSettings,
    gradient: &mut dyn FnMut(&[f64]) -> Result<Vec<f64>>,
    validate: &mut dyn FnMut(&[f64]) -> Result<Score>,
    keep_going: &dyn Fn() -> bool,
    on_event: &mut dyn FnMut(GridEvent),
) -> Result<GridResult> {
    validate_learned(spec, &settings)?;
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;
    let mut w = vec![0.5 * (spec.lo + spec.hi); spec.n];
    let (mut m, mut v) = (vec![0.0; spec.n], vec![0.0; spec.n]);
    on_event(GridEvent::Level {
        level: 0,
        step: settings.lr,
        points: settings.steps + 1,
    });
    let mut points: Vec<GridPoint> = Vec::new();
    let mut best = 0usize;
    let mut since_best = 0usize;
    let mut record = |points: &mut Vec<GridPoint>, w: &[f64], score: Score| -> bool {
        points.push(GridPoint {
            weights: w.to_vec(),
            score,
            level: 0,
        });
        let i = points.len() - 1;
        let better = i == 0 || points[i].score.loss < points[best].score.loss;
        if better {
            best = i;
        }
        on_event(GridEvent::Point {
            point: points[i].clone(),
            best: points[best].clone(),
            done: points.len(),
        });
        better
    };
    if !keep_going() {
        bail!("the search was cancelled before any point was scored");
    }
    let start = validate(&w)?;
    record(&mut points, &w, start);
    let mut cancelled = false;
    for step in 0..settings.steps {
        if !keep_going() {
            cancelled = true;
            break;
        }
        let g = gradient(&w)?;
        if g.len() != spec.n || g.iter().any(|x| !x.is_finite()) {
            bail!("the gradient of the merge weights is not finite");
        }
        let k = (step + 1) as i32;
        let lr = settings.lr * (1.0 - step as f64 / settings.steps as f64);
        for i in 0..spec.n {
            m[i] = BETA1 * m[i] + (1.0 - BETA1) * g[i];
            v[i] = BETA2 * v[i] + (1.0 - BETA2) * g[i] * g[i];
            let m_hat = m[i] / (1.0 - BETA1.powi(k));
            let v_hat = v[i] / (1.0 - BETA2.powi(k));
            w[i] = (w[i] - lr * m_hat / (v_hat.sqrt() + EPS)).clamp(spec.lo, spec.hi);
        }
        let score = validate(&w)?;
        if record(&mut points, &w, score) {
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= settings.patience {
                break;
            }
        }
    }
    let best = points
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.score.loss.total_cmp(&b.1.score.loss))
        .map(|(i, _)| i)
        .expect("the start was scored");
    Ok(GridResult {
        points,
        best,
        cancelled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::eval::timestep_ranges;
    use burn::tensor::Device;

    fn spec(n: usize, lo: f64, hi: f64) -> GridSpec {
        GridSpec {
            n,
            lo,
            hi,
            step: 0.1,
            sum_to_one: false,
        }
    }

    fn quadratic(target: &[f64], curvature: &[f64], w: &[f64]) -> f64 {
        w.iter()
            .zip(target)
            .zip(curvature)
            .map(|((w, t), c)| c * (w - t) * (w - t))
            .sum()
    }

    #[test]
    fn the_descent_finds_the_minimum_of_a_quadratic() {
        let target = [0.3, 1.7, 1.0, 0.05];
        let curvature = [1.0, 4.0, 0.25, 2.0];
        let settings = LearnSettings {
            steps: 400,
            lr: 0.05,
            patience: 400,
            per_block: false,
        };
        let mut gradient = |w: &[f64]| -> Result<Vec<f64>> {
            Ok((0..4)
                .map(|i| 2.0 * curvature[i] * (w[i] - target[i]))
                .collect())
        };
        let mut validate = |w: &[f64]| -> Result<Score> {
            Ok(Score {
                loss: quadratic(&target, &curvature, w),
                per_range: vec![],
            })
        };
        let mut events = 0;
        let r = descend(
            &spec(4, 0.0, 2.0),
            settings,
            &mut gradient,
            &mut validate,
            &|| true,
            &mut |_| events += 1,
        )
        .unwrap();
        let best = r.best_point();
        for i in 0..4 {
            assert!(
                (best.weights[i] - target[i]).abs() < 5e-3,
                "w{i} = {} vs {}",
                best.weights[i],
                target[i]
            );
        }
        // the level, then the start and every step
        assert_eq!(events, 1 + r.points.len());
        assert_eq!(r.points[0].weights, vec![1.0; 4]);
    }

    #[test]
    fn weights_stay_in_their_bounds_and_patience_stops_early() {
        // the minimum lies outside [0, 1]: the weight sits on the bound
        let mut gradient = |w: &[f64]| -> Result<Vec<f64>> { Ok(vec![2.0 * (w[0] - 3.0)]) };
        let mut validate = |w: &[f64]| -> Result<Score> {
            Ok(Score {
                loss: (w[0] - 3.0).powi(2),
                per_range: vec![],
            })
        };
        let settings = LearnSettings {
            steps: 500,
            lr: 0.2,
            patience: 5,
            per_block: false,
        };
        let r = descend(
            &spec(1, 0.0, 1.0),
            settings,
            &mut gradient,
            &mut validate,
            &|| true,
            &mut |_| {},
        )
        .unwrap();
        assert!(r.points.iter().all(|p| (0.0..=1.0).contains(&p.weights[0])));
        assert_eq!(r.best_point().weights[0], 1.0);
        // stuck at the bound: the patience ends it long before 500 steps
        assert!(r.points.len() < 30, "{} points", r.points.len());
    }

    #[test]
    fn sum_to_one_and_bad_settings_are_refused() {
        let mut s = spec(2, 0.0, 1.0);
        s.sum_to_one = true;
        let mut g = |_: &[f64]| -> Result<Vec<f64>> { Ok(vec![0.0; 2]) };
        let mut v = |_: &[f64]| -> Result<Score> {
            Ok(Score {
                loss: 0.0,
                per_range: vec![],
            })
        };
        let e = descend(
            &s,
            LearnSettings::default(),
            &mut g,
            &mut v,
            &|| true,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("summing to 1"), "{e}");
        let bad = LearnSettings {
            lr: 0.0,
            ..LearnSettings::default()
        };
        let e = descend(
            &spec(2, 0.0, 1.0),
            bad,
            &mut g,
            &mut v,
            &|| true,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("step size"), "{e}");
    }

    /// The weights' gradient from one backward pass against central finite
    /// differences of the evaluated objective, on a merge of `models[0]` (base)
    /// and the rest, with items of shape `shape`.
    fn gradient_matches_finite_differences<M: LossGradient>(models: &[M], shape: [usize; 3]) {
        use crate::engine::diffusion::NoiseSchedule;
        use crate::engine::eval::EvalSetConfig;
        use crate::engine::train::BatchSampler;
        let d = Device::flex();
        let per: usize = shape.iter().product();
        let items: Vec<f32> = (0..12 * per)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let val = BatchSampler::new(items, shape, "test items");
        let cfg = EvalSetConfig {
            samples: 16,
            batch_size: 6,
            seed: 4,
        };
        let eval = EvalSet::new(&val, &NoiseSchedule::ddpm(1000), cfg, &d).unwrap();
        let experts: Vec<(&str, &M)> = models[1..].iter().map(|m| ("expert", m)).collect();
        let mut merger = Merger::new(("base", &models[0]), &experts).unwrap();
        let n = experts.len();
        let w = [0.3, -0.2, 0.5][..n].to_vec();
        let at = |merger: &mut Merger<M>, w: &[f64]| {
            merger
                .merge(&MergeSpec::task_arithmetic(
                    w.iter().map(|&v| v as f32).collect(),
                ))
                .unwrap()
        };
        // two ranges of unequal width, as conflict-driven boundaries give
        let halves = [[0usize, 300], [300, 1000]];
        let base = at(&mut merger, &vec![0.0; n]);
        let base_per_range = eval
            .evaluate(&|x, t| base.predict_eps(x, t))
            .unwrap()
            .per_ranges(&halves);
        for objective in [LossObjective::Plain, LossObjective::Balanced] {
            let a = objective_weights(objective, eval.timesteps(), &halves, &base_per_range);
            let merged = at(&mut merger, &w);
            let (value, grads) = merged.weighted_loss_gradient(&eval, &a).unwrap();
            let analytic: Vec<f64> = merger
                .task_vector_inner_products(&grads)
                .unwrap()
                .iter()
                .map(|row| row.iter().sum())
                .collect();
            let f = |merger: &mut Merger<M>, w: &[f64]| -> f64 {
                let m = at(merger, w);
                let l = eval.evaluate(&|x, t| m.predict_eps(x, t)).unwrap();
                objective.value(l.mean(), &l.per_ranges(&halves), &base_per_range)
            };
            assert!((value - f(&mut merger, &w)).abs() < 1e-5 * value.abs().max(1.0));
            let h = 1e-2;
            let scale = analytic.iter().fold(0.0f64, |m, g| m.max(g.abs()));
            for i in 0..n {
                let (mut up, mut down) = (w.clone(), w.clone());
                up[i] += h;
                down[i] -= h;
                let numeric = (f(&mut merger, &up) - f(&mut merger, &down)) / (2.0 * h);
                assert!(
                    (numeric - analytic[i]).abs() < 2e-3 * scale + 1e-6,
                    "{objective:?} w{i}: backward {} vs finite differences {numeric}",
                    analytic[i]
                );
            }
        }
    }

    #[test]
    fn per_block_coordinates_give_the_merge_and_sum_to_the_per_model_gradient() {
        let keys: Vec<(String, Vec<usize>)> = [
            "conv_in.weight",
            "down_blocks.0.a",
            "down_blocks.0.b",
            "mid_block.c",
        ]
        .iter()
        .map(|k| (k.to_string(), vec![1]))
        .collect();
        let b = LearnedBlocks::of(&keys, 2);
        assert_eq!(b.blocks, vec!["conv_in", "down_blocks.0", "mid_block"]);
        let w = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let resolved = b
            .spec(&w)
            .block_weights
            .resolve(&keys, &[1.0, 1.0])
            .unwrap();
        assert_eq!(
            resolved,
            vec![
                vec![0.1, 0.2],
                vec![0.3, 0.4],
                vec![0.3, 0.4],
                vec![0.5, 0.6]
            ]
        );
        // d/dw_(b,i) sums the per-key derivatives of the block's keys
        let per_key = vec![vec![1.0, 2.0, 3.0, 4.0], vec![10.0, 20.0, 30.0, 40.0]];
        let g = b.gradient(&keys, &per_key);
        assert_eq!(g, vec![1.0, 10.0, 5.0, 50.0, 4.0, 40.0]);
        // which adds up, block over block, to the per-model gradient
        assert_eq!(g[0] + g[2] + g[4], 10.0);
        assert_eq!(g[1] + g[3] + g[5], 100.0);
    }

    #[test]
    fn the_weight_gradient_equals_finite_differences() {
        use crate::engine::merge::merger::tests::tiny_unet_config;
        use crate::engine::model::{ToyMlp, ToyMlpConfig, UNet2DModel};
        let d = Device::flex();
        let mlps: Vec<ToyMlp> = (0..4)
            .map(|s| ToyMlp::new(&ToyMlpConfig::default(), s, &d))
            .collect();
        gradient_matches_finite_differences(&mlps, [2, 1, 1]);
        let config = tiny_unet_config();
        let unets: Vec<UNet2DModel> = (0..3)
            .map(|s| UNet2DModel::new(&config, s, &d).unwrap())
            .collect();
        gradient_matches_finite_differences(&unets, [1, 8, 8]);
    }

    #[test]
    fn objective_weights_give_the_plain_and_the_balanced_figures() {
        let t = [10, 20, 300, 600, 700, 900];
        let losses = [0.4, 0.2, 0.1, 0.03, 0.01, 0.002];
        let base = [0.3, 0.1, 0.02, 0.004];
        let per_range = [0.3, 0.1, 0.02, 0.002];
        for objective in [LossObjective::Plain, LossObjective::Balanced] {
            let a = objective_weights(objective, &t, &timestep_ranges(4, 1000), &base);
            let weighted: f64 = a.iter().zip(&losses).map(|(a, l)| f64::from(*a) * l).sum();
            let mean = losses.iter().sum::<f64>() / 6.0;
            let want = objective.value(mean, &per_range, &base);
            assert!(
                (weighted - want).abs() < 1e-6,
                "{objective:?}: {weighted} vs {want}"
            );
        }
    }
}
