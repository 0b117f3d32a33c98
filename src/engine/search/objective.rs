//! Which held-out-loss figure a merge-weight search minimises.

/// Which held-out-loss figure a search minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossObjective {
    /// The mean loss over all samples. The loss is largest at small t, so this
    /// mostly tunes the expert of the first range.
    #[default]
    Plain,
    /// The mean over the timestep ranges (one per expert) of the merge's loss in the
    /// range relative to the base's loss there: every range counts alike.
    Balanced,
}

impl LossObjective {
    /// The value minimised, from the merge's and the base's per-range losses.
    pub fn value(self, mean: f64, per_range: &[f64], base_per_range: &[f64]) -> f64 {
        match self {
            Self::Plain => mean,
            Self::Balanced => {
                let ratios: Vec<f64> = per_range
                    .iter()
                    .zip(base_per_range)
                    .filter(|(_, b)| **b > 0.0)
                    .map(|(l, b)| l / b)
                    .collect();
                ratios.iter().sum::<f64>() / ratios.len().max(1) as f64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_objective_weighs_every_range_alike() {
        let base = [0.20, 0.05, 0.02, 0.01];
        // 10% better in the first range only vs 10% better in the last only
        let first = [0.18, 0.05, 0.02, 0.01];
        let last = [0.20, 0.05, 0.02, 0.009];
        let b = LossObjective::Balanced;
        assert!((b.value(0.0, &first, &base) - 0.975).abs() < 1e-12);
        assert!((b.value(0.0, &last, &base) - 0.975).abs() < 1e-12);
        assert!((b.value(0.0, &base, &base) - 1.0).abs() < 1e-12);
        // the plain objective is the mean it is given
        assert_eq!(LossObjective::Plain.value(0.07, &first, &base), 0.07);
    }
}
