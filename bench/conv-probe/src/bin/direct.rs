//! A direct 3x3 stride-1 convolution with AVX-512 intrinsics (8 output channels x 48
//! positions per tile, the input padded and read at 9 shifts), one core.
//! Args: CIN COUT H W REPEATS CIN_BLOCK. Prints useful GFLOP/s and one value against f64.

use std::arch::x86_64::*;
use std::time::Instant;

const CB: usize = 8; // output channels per micro tile
const NV: usize = 3; // vectors of 16 positions per micro tile
const PB: usize = 16 * NV;

/// pack weights [cout, cin, 9] -> [cout/CB][cin][9][CB]
fn pack(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut p = vec![0.0; w.len()];
    for cb in 0..cout / CB { for ci in 0..cin { for t in 0..9 { for c in 0..CB {
        p[((cb * cin + ci) * 9 + t) * CB + c] = w[((cb * CB + c) * cin + ci) * 9 + t];
    }}}}
    p
}

#[target_feature(enable = "avx512f")]
unsafe fn tile(xp: *const f32, plane: usize, wp: usize, cin: usize, wpk: *const f32, yw: *mut f32, q: usize, first: bool) {
    let mut acc = [[_mm512_setzero_ps(); NV]; CB];
    if !first { for c in 0..CB { for v in 0..NV { acc[c][v] = _mm512_loadu_ps(yw.add(c * q + 16 * v)); } } }
    let offs = [0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2];
    for ci in 0..cin {
        let xc = xp.add(ci * plane);
        let wc = wpk.add(ci * 9 * CB);
        for t in 0..9 {
            let xs = xc.add(offs[t]);
            let mut xv = [_mm512_setzero_ps(); NV];
            for v in 0..NV { xv[v] = _mm512_loadu_ps(xs.add(16 * v)); }
            for c in 0..CB {
                let b = _mm512_set1_ps(*wc.add(t * CB + c));
                for v in 0..NV { acc[c][v] = _mm512_fmadd_ps(xv[v], b, acc[c][v]); }
            }
        }
    }
    for c in 0..CB { for v in 0..NV { _mm512_storeu_ps(yw.add(c * q + 16 * v), acc[c][v]); } }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (cin, cout, h, w, reps) = (args[0], args[1], args[2], args[3], args[4]);
    let wp = w + 2;
    let plane = (h + 2) * wp;
    let qn = h * wp;
    let qpad = qn.div_ceil(PB) * PB;
    let xplen = cin * plane + PB + 2 * wp + 2;
    let mut xp = vec![0.0f32; xplen];
    for (i, v) in xp.iter_mut().enumerate() { *v = ((i * 7919) % 1000) as f32 / 1000.0; }
    let wt: Vec<f32> = (0..cout * cin * 9).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let mut yw = vec![0.0f32; cout * qpad];
    let t0 = Instant::now();
    for _ in 0..reps {
        let wpk = pack(&wt, cout, cin);
        let cib = args[5];
        for q0 in (0..qpad).step_by(PB) {
          for c0 in (0..cin).step_by(cib) {
            for cb in 0..cout / CB {
                unsafe { tile(xp.as_ptr().add(q0 + c0 * plane), plane, wp, cib.min(cin - c0), wpk.as_ptr().add((cb * cin + c0) * 9 * CB), yw.as_mut_ptr().add(cb * CB * qpad + q0), qpad, c0 == 0); }
            }
          }
        }
    }
    let dt = t0.elapsed().as_secs_f64() / reps as f64;
    let flops = 2.0 * (cout * cin * 9 * h * w) as f64;
    println!("cin {cin} cout {cout} {h}x{w}: {:.3} ms, {:.1} GFLOP/s useful (1 thread)", dt * 1e3, flops / dt / 1e9);
    // check one value
    let (co, oy, ox) = (cout - 1, h / 2, w - 1);
    let mut r = 0.0f64;
    for ci in 0..cin { for ky in 0..3 { for kx in 0..3 { r += wt[((co * cin + ci) * 9) + ky * 3 + kx] as f64 * xp[ci * plane + (oy + ky) * wp + ox + kx] as f64; }}}
    println!("check {} vs {}", yw[co * qpad + oy * wp + ox], r);
}
