//! What a merge computes: the method with its settings, the per-model weights,
//! optional per-block weights and the seed.

use super::block_weights::BlockWeights;
pub use super::block_weights::MAX_MERGE_WEIGHT;
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// Default fraction of each task vector TIES keeps.
pub const DEFAULT_TIES_K: f32 = 0.2;
/// Default drop probability of DARE.
pub const DEFAULT_DARE_P: f32 = 0.9;

/// How the task vectors are combined.
///
/// Every method ends in task arithmetic, `theta + sum_i w_i tau'_i`, where
/// `tau'_i` is `tau_i` itself ([`Self::TaskArithmetic`]) or a processed copy
/// ([`Self::Ties`], [`Self::Dare`]) computed once per settings.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum MergeMethod {
    /// Task arithmetic (Ilharco et al. 2023): `theta + sum_i w_i tau_i`.
    #[default]
    #[serde(rename = "ta")]
    TaskArithmetic,
    /// TIES-Merging (Yadav et al. 2023): trim each task vector to its top `k`
    /// fraction of entries by magnitude, elect a sign per entry from the summed
    /// trimmed mass, average the entries that agree with it (disjoint mean),
    /// and scale by `scale` (the paper's lambda). With every `w_i = 1` this is
    /// exactly TIES; other weights scale each expert's share of the disjoint mean.
    Ties {
        /// Fraction of entries kept per task vector, in (0, 1].
        k: f32,
        /// Scale of the merged task vector (lambda).
        scale: f32,
    },
    /// DARE (Yu et al. 2023): drop each task-vector entry with probability
    /// `p` (seeded), rescale the survivors by `1 / (1 - p)`, then task arithmetic.
    Dare {
        /// Drop probability, in [0, 1).
        p: f32,
    },
}

impl MergeMethod {
    /// Short name: `ta`, `ties`, `dare`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TaskArithmetic => "ta",
            Self::Ties { .. } => "ties",
            Self::Dare { .. } => "dare",
        }
    }

    /// Checks the settings' ranges.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::TaskArithmetic => {}
            Self::Ties { k, scale } => {
                if !(k > 0.0 && k <= 1.0) {
                    bail!("TIES keeps a fraction k of each task vector: need 0 < k <= 1, got {k}");
                }
                if !scale.is_finite() {
                    bail!("TIES scale must be finite, got {scale}");
                }
            }
            Self::Dare { p } => {
                if !(0.0..1.0).contains(&p) {
                    bail!("DARE drops entries with probability p: need 0 <= p < 1, got {p}");
                }
            }
        }
        Ok(())
    }
}

/// A whole merge setting.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MergeSpec {
    /// Method and its settings.
    pub method: MergeMethod,
    /// `w_i`, one per expert.
    pub weights: Vec<f32>,
    /// Per-block weights overriding `weights` inside the named blocks.
    #[serde(default)]
    pub block_weights: BlockWeights,
    /// Seed of the method's randomness (DARE's drops).
    #[serde(default)]
    pub seed: u64,
}

impl MergeSpec {
    /// Task arithmetic with `weights`.
    pub fn task_arithmetic(weights: Vec<f32>) -> Self {
        Self {
            weights,
            ..Self::default()
        }
    }

    /// Checks the method, the number of weights against `num_experts`, and that each
    /// weight is finite and within [`MAX_MERGE_WEIGHT`].
    pub fn validate(&self, num_experts: usize) -> Result<()> {
        self.method.validate()?;
        if self.weights.len() != num_experts {
            bail!(
                "{} weights given for {num_experts} experts: give one weight per expert",
                self.weights.len()
            );
        }
        if let Some(w) = self.weights.iter().find(|w| !w.is_finite()) {
            bail!("weight {w} is not a finite number");
        }
        if let Some(w) = self.weights.iter().find(|w| w.abs() > MAX_MERGE_WEIGHT) {
            bail!(
                "weight {w} is outside [-{MAX_MERGE_WEIGHT}, {MAX_MERGE_WEIGHT}]: a task vector \
                 scaled that far leaves the model meaningless"
            );
        }
        self.block_weights.validate(num_experts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_and_serialised_by_name() {
        assert!(MergeMethod::Ties { k: 0.0, scale: 1.0 }.validate().is_err());
        assert!(MergeMethod::Ties { k: 1.0, scale: 1.0 }.validate().is_ok());
        assert!(MergeMethod::Dare { p: 1.0 }.validate().is_err());
        assert!(MergeMethod::Dare { p: 0.0 }.validate().is_ok());
        let j = serde_json::to_string(&MergeMethod::Dare { p: 0.5 }).unwrap();
        assert_eq!(j, r#"{"name":"dare","p":0.5}"#);
        let ta: MergeMethod = serde_json::from_str(r#"{"name":"ta"}"#).unwrap();
        assert_eq!(ta, MergeMethod::TaskArithmetic);
        let spec = MergeSpec::task_arithmetic(vec![0.5, f32::NAN]);
        assert!(spec.validate(2).is_err());
        assert!(MergeSpec::task_arithmetic(vec![0.5]).validate(2).is_err());
    }
}
