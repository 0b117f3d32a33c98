//! DARE, "Drop And REscale" (Yu et al. 2023, "Language Models are Super Mario"):
//! each task-vector entry is dropped with probability `p` and the survivors are
//! rescaled by `1 / (1 - p)`, which keeps the expected task vector; the result
//! then goes through task arithmetic.
//!
//! The drops come from a counter-based generator (SplitMix64 over the seed, the
//! expert index, a hash of the parameter key and the entry index), so they do
//! not depend on the order keys are visited in, on the device, or on the
//! version of any random-number crate: a recipe's seed reproduces them forever.

use super::ties::{TaskValues, decimal_f64};

/// SplitMix64's output function (Steele et al. 2014).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bit.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The uniform number in [0, 1) that decides entry `j` of `key` of expert `expert`.
pub fn dare_uniform(seed: u64, expert: usize, key: &str, j: usize) -> f64 {
    let stream = splitmix64(splitmix64(seed ^ splitmix64(expert as u64)) ^ fnv1a(key));
    let bits = splitmix64(stream.wrapping_add((j as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The DARE-processed task vector of expert `expert`: entry `j` of key `keys[k]`
/// is dropped when `dare_uniform(seed, expert, key, j) < p`, else multiplied by
/// `1 / (1 - p)` (exactly 1 at `p = 0`, so `p = 0` is plain task arithmetic).
///
/// # Shapes
/// `tau[k]` has the values of `keys[k]`; the output has the same layout.
pub fn dare_task_vector(
    tau: &TaskValues,
    keys: &[(String, Vec<usize>)],
    expert: usize,
    p: f32,
    seed: u64,
) -> TaskValues {
    let p = decimal_f64(p);
    let rescale = (1.0 / (1.0 - p)) as f32;
    tau.iter()
        .zip(keys)
        .map(|(values, (key, _))| {
            values
                .iter()
                .enumerate()
                .map(|(j, &x)| {
                    if dare_uniform(seed, expert, key, j) < p {
                        0.0
                    } else {
                        x * rescale
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<(String, Vec<usize>)> {
        vec![("a".into(), vec![3]), ("b".into(), vec![2])]
    }

    #[test]
    fn hand_computed_drops_and_rescale() {
        let tau = vec![vec![1.0, -2.0, 4.0], vec![0.5, 8.0]];
        let (p, seed) = (0.5, 7);
        let out = dare_task_vector(&tau, &keys(), 1, p, seed);
        for (k, (key, _)) in keys().iter().enumerate() {
            for j in 0..tau[k].len() {
                let want = if dare_uniform(seed, 1, key, j) < 0.5 {
                    0.0
                } else {
                    2.0 * tau[k][j]
                };
                assert_eq!(out[k][j], want, "{key}[{j}]");
            }
        }
        // a different seed or expert draws differently somewhere over many entries
        let a: Vec<bool> = (0..64).map(|j| dare_uniform(1, 0, "a", j) < 0.5).collect();
        let b: Vec<bool> = (0..64).map(|j| dare_uniform(2, 0, "a", j) < 0.5).collect();
        let c: Vec<bool> = (0..64).map(|j| dare_uniform(1, 1, "a", j) < 0.5).collect();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn the_generator_never_changes() {
        // Recipes replay these drops: this sequence is part of the file format.
        let drops: String = (0..32)
            .map(|j| {
                if dare_uniform(7, 1, "a", j) < 0.5 {
                    '1'
                } else {
                    '0'
                }
            })
            .collect();
        assert_eq!(drops, "01000101101000111010011010111010");
        assert_eq!(dare_uniform(0, 0, "conv_in.weight", 0), 0.41193703642934043);
    }

    #[test]
    fn drop_rate_is_close_to_p() {
        let n = 100_000;
        let dropped = (0..n).filter(|&j| dare_uniform(3, 2, "k", j) < 0.9).count();
        let rate = dropped as f64 / n as f64;
        assert!((rate - 0.9).abs() < 0.005, "rate {rate}");
    }

    #[test]
    fn p_zero_keeps_everything_exactly() {
        let tau = vec![vec![1.0, -2.5e-7, 3.0], vec![f32::MIN_POSITIVE, 8.0]];
        assert_eq!(dare_task_vector(&tau, &keys(), 0, 0.0, 9), tau);
    }
}
