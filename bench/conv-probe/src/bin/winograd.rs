//! Winograd's F(2x2, 3x3) for a 3x3 stride-1 convolution: weight, input and output
//! transforms (plain loops) around 16 gemm products `[cout, cin] x [cin, tiles]`, one core.
//! Args: CIN COUT H W REPEATS BATCH (H, W even). Prints the time of each part and one value
//! against f64.

use std::time::Instant;

fn gemm_rm(m: usize, n: usize, k: usize, dst: &mut [f32], a: &[f32], b: &[f32]) {
    // dst[m,n] = a[m,k] b[k,n], all row-major contiguous
    unsafe {
        gemm::gemm(m, n, k, dst.as_mut_ptr(), 1, n as isize, false, a.as_ptr(), 1, k as isize,
            b.as_ptr(), 1, n as isize, 1.0, 1.0, false, false, false, gemm::Parallelism::None);
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (cin, cout, h, w, reps, nb) = (args[0], args[1], args[2], args[3], args[4], args[5]);
    let x: Vec<f32> = (0..nb * cin * h * w).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let g: Vec<f32> = (0..cout * cin * 9).map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5).collect();
    let (th, tw) = (h / 2, w / 2);
    let t = th * tw;
    let tt = nb * t;
    let mut v = vec![0.0f32; 16 * cin * tt];
    let mut m = vec![0.0f32; 16 * cout * tt];
    let mut u = vec![0.0f32; 16 * cout * cin];
    let mut y = vec![0.0f32; nb * cout * h * w];
    let (mut t_in, mut t_g, mut t_out) = (0.0, 0.0, 0.0);
    let t0 = Instant::now();
    for _ in 0..reps {
        // weight transform U = G g G^T
        for co in 0..cout { for ci in 0..cin {
            let k = &g[(co * cin + ci) * 9..][..9];
            let mut tmp = [[0.0f32; 3]; 4]; // G g : 4x3
            for c in 0..3 {
                let (a, b, cc) = (k[c], k[3 + c], k[6 + c]);
                tmp[0][c] = a; tmp[1][c] = 0.5 * (a + b + cc); tmp[2][c] = 0.5 * (a - b + cc); tmp[3][c] = cc;
            }
            for r in 0..4 {
                let (a, b, cc) = (tmp[r][0], tmp[r][1], tmp[r][2]);
                let row = [a, 0.5 * (a + b + cc), 0.5 * (a - b + cc), cc];
                for c in 0..4 { u[(r * 4 + c) * cout * cin + co * cin + ci] = row[c]; }
            }
        }}
        let s = Instant::now();
        // input transform
        for n in 0..nb { for ci in 0..cin {
            let xc = &x[(n * cin + ci) * h * w..][..h * w];
            let at = |yy: isize, xx: isize| if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w { xc[yy as usize * w + xx as usize] } else { 0.0 };
            for ty in 0..th { for tx in 0..tw {
                let mut d = [[0.0f32; 4]; 4];
                for r in 0..4 { for c in 0..4 { d[r][c] = at((2 * ty + r) as isize - 1, (2 * tx + c) as isize - 1); } }
                let mut b = [[0.0f32; 4]; 4]; // B^T d
                for c in 0..4 {
                    b[0][c] = d[0][c] - d[2][c]; b[1][c] = d[1][c] + d[2][c]; b[2][c] = d[2][c] - d[1][c]; b[3][c] = d[1][c] - d[3][c];
                }
                let tile = n * t + ty * tw + tx;
                for r in 0..4 {
                    let e = [b[r][0] - b[r][2], b[r][1] + b[r][2], b[r][2] - b[r][1], b[r][1] - b[r][3]];
                    for c in 0..4 { v[((r * 4 + c) * cin + ci) * tt + tile] = e[c]; }
                }
            }}
        }}
        t_in += s.elapsed().as_secs_f64();
        let s = Instant::now();
        for xi in 0..16 {
            gemm_rm(cout, tt, cin, &mut m[xi * cout * tt..][..cout * tt], &u[xi * cout * cin..][..cout * cin], &v[xi * cin * tt..][..cin * tt]);
        }
        t_g += s.elapsed().as_secs_f64();
        let s = Instant::now();
        for co in 0..cout { for tile in 0..tt {
            let mm = |r: usize, c: usize| m[((r * 4 + c) * cout + co) * tt + tile];
            let mut a = [[0.0f32; 4]; 2];
            for c in 0..4 { a[0][c] = mm(0, c) + mm(1, c) + mm(2, c); a[1][c] = mm(1, c) - mm(2, c) - mm(3, c); }
            let (n, tl) = (tile / t, tile % t);
            let (ty, tx) = (tl / tw, tl % tw);
            for r in 0..2 {
                let o = [a[r][0] + a[r][1] + a[r][2], a[r][1] - a[r][2] - a[r][3]];
                for c in 0..2 { y[((n * cout + co) * h + 2 * ty + r) * w + 2 * tx + c] = o[c]; }
            }
        }}
        t_out += s.elapsed().as_secs_f64();
    }
    let dt = t0.elapsed().as_secs_f64() / reps as f64;
    let flops = 2.0 * (nb * cout * cin * 9 * h * w) as f64;
    let r = reps as f64;
    println!("winograd cin {cin} cout {cout} {h}x{w} nb {nb}: {:.3} ms ({:.1} eq. GFLOP/s); in {:.3} gemm {:.3} out {:.3} ms", dt * 1e3, flops / dt / 1e9, t_in / r * 1e3, t_g / r * 1e3, t_out / r * 1e3);
    // check a value
    let (n, co, oy, ox) = (nb - 1, cout - 1, h / 2 + 1, w - 1);
    let mut refv = 0.0f64;
    for ci in 0..cin { for ky in 0..3 { for kx in 0..3 {
        let (yy, xx) = (oy as isize + ky as isize - 1, ox as isize + kx as isize - 1);
        if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
            refv += g[(co * cin + ci) * 9 + ky * 3 + kx] as f64 * x[((n * cin + ci) * h + yy as usize) * w + xx as usize] as f64;
        }
    }}}
    println!("check {} vs {}", y[((n * cout + co) * h + oy) * w + ox], refv);
}
