//! Deterministic test inputs shared by the kernels' tests.

/// `len` values spread over [-1, 1], a different sequence for each `seed`.
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| ((i.wrapping_mul(6364136223846793005) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}
