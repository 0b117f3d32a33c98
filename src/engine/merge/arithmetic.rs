//! Task arithmetic on the host, `theta + sum_i w_i tau'_i`, and the method
//! step that turns task vectors into the `tau'_i` it sums.
//!
//! The order of operations is fixed and shared with the device path
//! ([`super::Merger`]): per key, `acc = w_a tau'_a`, then `acc = acc + w_b tau'_b`
//! for each later expert with a non-zero weight, then `theta + acc`; experts with
//! weight 0 are skipped, and a key where every weight is 0 is `theta` itself.
//! So all-zero weights give the base bit for bit.

use super::dare::dare_task_vector;
use super::method::{MergeMethod, MergeSpec};
use super::task_vector::HostTaskVectors;
use super::ties::{TaskValues, ties_task_vectors};
use crate::engine::model::params::NamedParam;
use anyhow::Result;

/// The `tau'_i` of `method`: `None` for task arithmetic (the task vectors
/// themselves), else the TIES shares or the DARE-processed task vectors.
pub fn method_task_vectors(
    tv: &HostTaskVectors,
    method: &MergeMethod,
    seed: u64,
) -> Result<Option<Vec<TaskValues>>> {
    method.validate()?;
    Ok(match *method {
        MergeMethod::TaskArithmetic => None,
        MergeMethod::Ties { k, scale } => Some(ties_task_vectors(&tv.taus, k, scale)),
        MergeMethod::Dare { p } => Some(
            tv.taus
                .iter()
                .enumerate()
                .map(|(i, tau)| dare_task_vector(tau, &tv.keys, i, p, seed))
                .collect(),
        ),
    })
}

/// `base + sum_i w_i tau_i` for one key, in the documented order.
pub fn combine(base: &[f32], taus: &[&[f32]], weights: &[f32]) -> Vec<f32> {
    let mut acc: Option<Vec<f32>> = None;
    for (tau, &w) in taus.iter().zip(weights) {
        if w == 0.0 {
            continue;
        }
        match acc.as_mut() {
            None => acc = Some(tau.iter().map(|&x| x * w).collect()),
            Some(a) => {
                for (a, &x) in a.iter_mut().zip(tau.iter()) {
                    *a += x * w;
                }
            }
        }
    }
    match acc {
        None => base.to_vec(),
        Some(mut a) => {
            for (a, &b) in a.iter_mut().zip(base) {
                *a += b;
            }
            a
        }
    }
}

/// The merged parameters on the host, in the template's key order.
///
/// Deterministic: the same inputs and spec give the same bits on every machine.
pub fn merge_host(tv: &HostTaskVectors, spec: &MergeSpec) -> Result<Vec<NamedParam>> {
    spec.validate(tv.num_experts())?;
    let key_weights = spec.block_weights.resolve(&tv.keys, &spec.weights)?;
    let processed = method_task_vectors(tv, &spec.method, spec.seed)?;
    let taus = processed.as_ref().unwrap_or(&tv.taus);
    Ok(tv
        .keys
        .iter()
        .enumerate()
        .map(|(k, (key, shape))| {
            let per_expert: Vec<&[f32]> = taus.iter().map(|t| t[k].as_slice()).collect();
            let values = combine(&tv.base[k], &per_expert, &key_weights[k]);
            (key.clone(), shape.clone(), values)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::merge::block_weights::BlockWeights;
    use crate::engine::merge::task_vector::LabeledParams;
    use crate::engine::merge::task_vector::tests::p;

    fn two_experts() -> HostTaskVectors {
        let base = LabeledParams::new(
            "base",
            vec![
                p("conv_in.weight", &[3], &[0.1, 0.2, 0.3]),
                p("mid_block.b", &[1], &[1.0]),
            ],
        );
        let e1 = LabeledParams::new(
            "e1",
            vec![
                p("conv_in.weight", &[3], &[0.7, -0.2, 0.3]),
                p("mid_block.b", &[1], &[3.0]),
            ],
        );
        let e2 = LabeledParams::new(
            "e2",
            vec![
                p("conv_in.weight", &[3], &[0.1, 0.9, 1e-8]),
                p("mid_block.b", &[1], &[-1.0]),
            ],
        );
        HostTaskVectors::new(base, vec![e1, e2]).unwrap()
    }

    #[test]
    fn zero_weights_give_the_base_bit_for_bit() {
        let tv = two_experts();
        let out = merge_host(&tv, &MergeSpec::task_arithmetic(vec![0.0, 0.0])).unwrap();
        for ((_, _, v), b) in out.iter().zip(&tv.base) {
            assert_eq!(
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn one_hot_weights_give_the_expert() {
        let tv = two_experts();
        let out = merge_host(&tv, &MergeSpec::task_arithmetic(vec![0.0, 1.0])).unwrap();
        let want = [vec![0.1, 0.9, 1e-8], vec![-1.0]];
        for ((_, _, v), w) in out.iter().zip(&want) {
            for (a, b) in v.iter().zip(w) {
                // theta + (theta_i - theta): one rounding of each, relative to max(|theta|, |theta_i|)
                assert!(
                    (a - b).abs() <= 2.0 * f32::EPSILON * 1f32.max(b.abs()),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn block_weights_override_inside_the_block() {
        let tv = two_experts();
        let mut spec = MergeSpec::task_arithmetic(vec![0.5, 0.5]);
        spec.block_weights = BlockWeights::from_json_str(r#"{"mid_block": [1, 0]}"#).unwrap();
        let out = merge_host(&tv, &spec).unwrap();
        assert_eq!(out[1].2, vec![3.0]);
        // conv_in keeps the global weights: 0.1 + 0.5 * 0.6 + 0.5 * 0.0
        assert!((out[0].2[0] - 0.4).abs() < 1e-6);
    }

    #[test]
    fn dare_with_p_zero_is_task_arithmetic() {
        let tv = two_experts();
        let ta = merge_host(&tv, &MergeSpec::task_arithmetic(vec![0.3, 0.7])).unwrap();
        let mut spec = MergeSpec::task_arithmetic(vec![0.3, 0.7]);
        spec.method = MergeMethod::Dare { p: 0.0 };
        spec.seed = 123;
        assert_eq!(merge_host(&tv, &spec).unwrap(), ta);
    }

    #[test]
    fn ties_matches_the_hand_computed_merge() {
        // tau_1 = [0.6, -0.4, 0], [2]; tau_2 = [0, 0.7, -0.3], [-2]; k = 1 keeps all.
        let tv = two_experts();
        let mut spec = MergeSpec::task_arithmetic(vec![1.0, 1.0]);
        spec.method = MergeMethod::Ties { k: 1.0, scale: 1.0 };
        let out = merge_host(&tv, &spec).unwrap();
        // entry 0: only +0.6 -> 0.6; entry 1: sum +0.3 -> keep +0.7;
        // entry 2: -0.3 + ~0 -> -0.3 (e1's ~0 is exactly 0 here);
        // mid: sum 0 -> majority sign of (+, +, -) = + -> keep +2.
        let want = [0.1 + 0.6, 0.2 + 0.7, 0.3 - 0.3, 1.0 + 2.0];
        let got: Vec<f32> = out.iter().flat_map(|(_, _, v)| v.clone()).collect();
        for (a, b) in got.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{got:?} vs {want:?}");
        }
    }
}
