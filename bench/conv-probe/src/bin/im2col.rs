//! One sample's 3x3 stride-1 convolution as im2col blocks of about 1 MB times the
//! weights through gemm (`Parallelism::None`, one core), as the engine builds it.
//! Args: CIN COUT H W REPEATS. Prints gemm's GFLOP/s alone and with im2col.

use std::time::Instant;
fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (cin, cout, h, w, reps) = (args[0], args[1], args[2], args[3], args[4]);
    let x: Vec<f32> = (0..cin * h * w).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
    let wt: Vec<f32> = (0..cout * cin * 9).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let taps = cin * 9;
    let rows = ((1usize << 18) / (taps * w)).clamp(1, h);
    let mut col = vec![0.0f32; taps * rows * w];
    let p = h * w;
    let mut y = vec![0.0f32; cout * p];
    let t0 = Instant::now();
    let mut tg = 0.0f64;
    for _ in 0..reps {
        for start in (0..h).step_by(rows) {
            let end = (start + rows).min(h);
            let cols = (end - start) * w;
            // im2col
            for r in 0..taps {
                let (ci, t) = (r / 9, r % 9);
                let (ky, kx) = (t / 3, t % 3);
                let dst = &mut col[r * cols..(r + 1) * cols];
                for (i, oy) in (start..end).enumerate() {
                    let iy = oy as isize + ky as isize - 1;
                    for ox in 0..w {
                        let ix = ox as isize + kx as isize - 1;
                        dst[i * w + ox] = if iy >= 0 && iy < h as isize && ix >= 0 && ix < w as isize { x[ci * p + iy as usize * w + ix as usize] } else { 0.0 };
                    }
                }
            }
            let tt = Instant::now();
            unsafe {
                gemm::gemm(cout, cols, taps, y.as_mut_ptr().add(start * w), 1, p as isize, false,
                    wt.as_ptr(), 1, taps as isize, col.as_ptr(), 1, cols as isize, 1.0, 1.0, false, false, false, gemm::Parallelism::None);
            }
            tg += tt.elapsed().as_secs_f64();
        }
    }
    let dt = t0.elapsed().as_secs_f64() / reps as f64;
    let flops = 2.0 * (cout * cin * 9 * h * w) as f64;
    println!("gemm alone {:.1} GFLOP/s; ", flops / (tg / reps as f64) / 1e9);
    println!("im2col+gemm cin {cin} cout {cout} {h}x{w}: {:.3} ms, {:.1} GFLOP/s (1 thread)", dt * 1e3, flops / dt / 1e9);
}
