//! Seeded train / validation split of item indices.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Indices of the training and validation items; disjoint, together `0..n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Training indices, in shuffled order.
    pub train: Vec<usize>,
    /// Validation indices, in shuffled order.
    pub val: Vec<usize>,
}

/// Number of validation items [`split`] takes out of `n` for `val_fraction`.
///
/// `round(n * val_fraction)`, with `val_fraction` clamped to `[0, 1]` (NaN counts
/// as 0), then at least 1 when `n >= 2` and `val_fraction > 0`, and at most
/// `n - 1` so that training keeps at least one item (a single item always goes
/// to training).
pub fn val_count(n: usize, val_fraction: f64) -> usize {
    if n < 2 || val_fraction.is_nan() || val_fraction <= 0.0 {
        return 0;
    }
    let k = (n as f64 * val_fraction.min(1.0)).round() as usize;
    k.clamp(1, n - 1)
}

/// Shuffles `0..n` with `StdRng::seed_from_u64(seed)` and cuts it: the first
/// [`val_count`] indices become the validation set, the rest the training set.
///
/// The result depends only on the arguments (and the `rand` 0.9 algorithms), so it
/// is the same on every run; different seeds give different splits.
pub fn split(n: usize, val_fraction: f64, seed: u64) -> Split {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let train = order.split_off(val_count(n, val_fraction));
    Split { train, val: order }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_partition(s: &Split, n: usize) {
        let mut all: Vec<usize> = s.train.iter().chain(&s.val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "disjoint and covering");
    }

    #[test]
    fn disjoint_covering_and_sized() {
        for (n, frac, val) in [
            (1000, 0.1, 100),
            (10, 0.25, 3),
            (2, 0.01, 1),
            (2, 1.0, 1),
            (1, 0.5, 0),
            (0, 0.5, 0),
            (50, 0.0, 0),
            (50, f64::NAN, 0),
        ] {
            let s = split(n, frac, 9);
            check_partition(&s, n);
            assert_eq!(s.val.len(), val, "n={n} frac={frac}");
        }
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = split(500, 0.2, 1);
        assert_eq!(a, split(500, 0.2, 1));
        assert_ne!(a, split(500, 0.2, 2));
        // Shuffled, not a plain cut of 0..n.
        assert_ne!(a.val, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn shuffles_label_sorted_data() {
        // A label-sorted set (like the embedded MNIST) gets all labels in val.
        let labels: Vec<usize> = (0..1000).map(|i| i / 100).collect();
        let s = split(1000, 0.1, 0);
        let mut seen = [false; 10];
        for &i in &s.val {
            seen[labels[i]] = true;
        }
        assert!(seen.iter().all(|&x| x));
    }
}
