//! Deterministic test inputs and a float64 comparison shared by the kernels' tests.

/// `len` values spread over [-1, 1], a different sequence for each `seed`.
pub fn data(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| ((i.wrapping_mul(6364136223846793005) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Panics unless `got` matches the float64 `want` to 1e-4, relative to 1 + |want|.
pub fn assert_close(got: &[f32], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}
