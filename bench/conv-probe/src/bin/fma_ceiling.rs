//! The single-core ceiling of f32 AVX-512 FMAs: 24 independent accumulators, one
//! broadcast operand from memory per 3 FMAs (the shape of a gemm micro-kernel).

use std::arch::x86_64::*;
use std::time::Instant;
#[target_feature(enable = "avx512f")]
unsafe fn run(n: usize, w: *const f32) -> f32 {
    let mut acc = [_mm512_setzero_ps(); 24];
    let x = _mm512_set1_ps(1.0001);
    for i in 0..n {
        for c in 0..8 { let b = _mm512_set1_ps(*w.add((i & 63) * 8 + c));
            for v in 0..3 { acc[c*3+v] = _mm512_fmadd_ps(x, b, acc[c*3+v]); } }
    }
    let mut s = _mm512_setzero_ps(); for a in acc { s = _mm512_add_ps(s, a); }
    _mm512_reduce_add_ps(s)
}
fn main() {
    let w = vec![0.5f32; 64 * 8];
    let n = 50_000_000;
    let t = Instant::now();
    let r = unsafe { run(n, w.as_ptr()) };
    let dt = t.elapsed().as_secs_f64();
    println!("{:.1} GFLOP/s ({r})", (n * 24 * 32) as f64 / dt / 1e9);
}
