//! Editing the merge weights: the "sum to 1" lock and per-block multipliers.

use crate::engine::merge::{BlockWeight, BlockWeights};

/// Sets `w[i] = value` and, when `lock_sum` is on, rescales the other weights
/// so that the sum stays 1: proportionally when they have any mass, equally
/// when they are all zero. With one weight, the lock pins it to 1.
pub fn set_weight(weights: &mut [f32], i: usize, value: f32, lock_sum: bool) {
    if i >= weights.len() || !value.is_finite() {
        return;
    }
    if !lock_sum {
        weights[i] = value;
        return;
    }
    if weights.len() == 1 {
        weights[0] = 1.0;
        return;
    }
    weights[i] = value;
    let rest = 1.0 - value;
    let others: f32 = weights
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, w)| *w)
        .sum();
    let n_others = (weights.len() - 1) as f32;
    for (j, w) in weights.iter_mut().enumerate() {
        if j == i {
            continue;
        }
        *w = if others.abs() > 1e-6 {
            *w * rest / others
        } else {
            rest / n_others
        };
    }
}

/// Rescales all weights to sum to 1 (equal weights when they sum to 0).
pub fn normalise(weights: &mut [f32]) {
    let s: f32 = weights.iter().sum();
    let n = weights.len().max(1) as f32;
    for w in weights.iter_mut() {
        *w = if s.abs() > 1e-6 { *w / s } else { 1.0 / n };
    }
}

/// The weights a freshly opened set starts from: `1/N` each (the plain average).
pub fn default_weights(n: usize) -> Vec<f32> {
    vec![1.0 / n.max(1) as f32; n]
}

/// Per-block weights from multipliers: block `b` with multiplier `m != 1`
/// gets `m * w_i` for expert `i`; multiplier 1 leaves the block alone.
pub fn block_weights(multipliers: &[(String, f32)], weights: &[f32]) -> BlockWeights {
    BlockWeights(
        multipliers
            .iter()
            .filter(|(_, m)| (*m - 1.0).abs() > f32::EPSILON)
            .map(|(b, m)| {
                (
                    b.clone(),
                    BlockWeight::PerExpert(weights.iter().map(|w| w * m).collect()),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(w: &[f32]) -> f32 {
        w.iter().sum()
    }

    #[test]
    fn the_lock_keeps_the_sum_at_one() {
        let mut w = vec![0.25; 4];
        set_weight(&mut w, 0, 0.7, true);
        assert_eq!(w[0], 0.7);
        assert!((sum(&w) - 1.0).abs() < 1e-6, "{w:?}");
        assert!((w[1] - 0.1).abs() < 1e-6 && (w[3] - 0.1).abs() < 1e-6);
        // everything on one expert, then back: the others share equally
        set_weight(&mut w, 2, 1.0, true);
        assert!(w[0].abs() < 1e-6 && w[1].abs() < 1e-6);
        set_weight(&mut w, 2, 0.4, true);
        assert!((w[0] - 0.2).abs() < 1e-6 && (w[3] - 0.2).abs() < 1e-6);
        assert!((sum(&w) - 1.0).abs() < 1e-6);
        let mut one = vec![0.3];
        set_weight(&mut one, 0, 0.5, true);
        assert_eq!(one, vec![1.0]);
    }

    #[test]
    fn without_the_lock_only_one_weight_moves() {
        let mut w = vec![0.25; 3];
        set_weight(&mut w, 1, 0.9, false);
        assert_eq!(w, vec![0.25, 0.9, 0.25]);
        set_weight(&mut w, 5, 0.9, false);
        set_weight(&mut w, 0, f32::NAN, false);
        assert_eq!(w, vec![0.25, 0.9, 0.25]);
        normalise(&mut w);
        assert!((sum(&w) - 1.0).abs() < 1e-6);
        assert_eq!(default_weights(4), vec![0.25; 4]);
    }

    #[test]
    fn multipliers_become_per_expert_block_weights() {
        let m = vec![("mid_block".to_string(), 0.0), ("conv_in".to_string(), 1.0)];
        let bw = block_weights(&m, &[0.5, 0.25]);
        assert_eq!(bw.0.len(), 1, "multiplier 1 is no override");
        assert_eq!(bw.0["mid_block"], BlockWeight::PerExpert(vec![0.0, 0.0]));
    }
}
