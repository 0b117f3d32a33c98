//! The scale of one task vector: `theta + alpha tau` for alpha on a lattice, scored
//! by the same held-out figure as the merge search, so that a single finetuned model
//! gets the tuning a merge gets (the fair control for the merge's searched weights).

use super::objective::LossObjective;
use crate::engine::eval::EvalSet;
use crate::engine::merge::{MergeSpec, Mergeable, Merger};
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// One scored scale.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalePoint {
    /// The scale alpha.
    pub alpha: f64,
    /// The objective's value there.
    pub value: f64,
}

/// Scores `theta + alpha tau` for each of `alphas` on `eval` (`merger` holds one task
/// vector), with `objective` measured over the timestep `ranges`. Returns every
/// point, best (lowest) first.
pub fn search_scale<M: Mergeable>(
    merger: &mut Merger<M>,
    eval: &EvalSet,
    objective: LossObjective,
    ranges: &[[usize; 2]],
    alphas: &[f64],
    keep_going: &dyn Fn() -> bool,
) -> Result<Vec<ScalePoint>> {
    if merger.num_experts() != 1 {
        bail!(
            "the scale search takes one task vector, not {}",
            merger.num_experts()
        );
    }
    if alphas.is_empty() || ranges.is_empty() {
        bail!("the scale search needs at least one scale and one timestep range");
    }
    let mut merged = merger.merge(&MergeSpec::task_arithmetic(vec![0.0]))?;
    let base = eval
        .evaluate(&|x, t| merged.predict_eps(x, t))?
        .per_ranges(ranges);
    let mut points = Vec::with_capacity(alphas.len());
    for &alpha in alphas {
        if !keep_going() {
            bail!("the scale search was cancelled");
        }
        merged = merger.merge_into(merged, &MergeSpec::task_arithmetic(vec![alpha as f32]))?;
        let losses = eval.evaluate(&|x, t| merged.predict_eps(x, t))?;
        let value = objective.value(losses.mean(), &losses.per_ranges(ranges), &base);
        points.push(ScalePoint { alpha, value });
    }
    points.sort_by(|a, b| a.value.total_cmp(&b.value));
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diffusion::NoiseSchedule;
    use crate::engine::eval::EvalSetConfig;
    use crate::engine::eval::timestep_ranges;
    use crate::engine::model::{EpsModel, ToyMlp, ToyMlpConfig};
    use crate::engine::train::BatchSampler;
    use burn::tensor::Device;

    #[test]
    fn alpha_one_reproduces_the_finetuned_model_and_zero_the_base() {
        let d = Device::flex();
        let s = NoiseSchedule::ddpm(1000);
        let pts: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin()).collect();
        let val = BatchSampler::new(pts, [2, 1, 1], "points");
        let cfg = EvalSetConfig {
            samples: 32,
            batch_size: 8,
            seed: 2,
        };
        let eval = EvalSet::new(&val, &s, cfg, &d).unwrap();
        let base = ToyMlp::new(&ToyMlpConfig::default(), 1, &d);
        let tuned = ToyMlp::new(&ToyMlpConfig::default(), 2, &d);
        let mut merger = Merger::new(("base", &base), &[("tuned", &tuned)]).unwrap();
        let pts = search_scale(
            &mut merger,
            &eval,
            LossObjective::Plain,
            &timestep_ranges(4, 1000),
            &[0.0, 1.0],
            &|| true,
        )
        .unwrap();
        let at = |a: f64| pts.iter().find(|p| p.alpha == a).unwrap().value;
        let direct = |m: &ToyMlp| eval.evaluate(&|x, t| m.eps(x, t)).unwrap().mean();
        assert!(
            (at(1.0) - direct(&tuned)).abs() <= 1e-6 * direct(&tuned),
            "{} vs {}",
            at(1.0),
            direct(&tuned)
        );
        assert!((at(0.0) - direct(&base)).abs() <= 1e-6 * direct(&base));
        assert!(pts[0].value <= pts[1].value, "best first");
        // balanced: the base scores exactly 1 against itself
        let b = search_scale(
            &mut merger,
            &eval,
            LossObjective::Balanced,
            &[[0, 100], [100, 1000]],
            &[0.0],
            &|| true,
        )
        .unwrap();
        assert!((b[0].value - 1.0).abs() < 1e-12, "{}", b[0].value);
        assert!(
            search_scale(
                &mut merger,
                &eval,
                LossObjective::Plain,
                &[[0, 1000]],
                &[],
                &|| true
            )
            .is_err()
        );
    }
}
