//! Data movement on host memory, parallel over planes or samples: nearest 2x
//! upsampling, concatenation along channels and per-sample transposition, with
//! their gradients. burn's own versions run on the calling thread while the
//! workers wait.

use super::buffer::{write_copy, written};
use std::mem::MaybeUninit;

/// Side of the square tiles [`transpose`] moves at a time.
const TILE: usize = 16;

/// `x [n, a, b]` -> `[n, b, a]`: each sample's matrix transposed, one sample
/// per job, in [`TILE`]-square tiles (its own gradient, with `a` and `b` swapped).
pub fn transpose(x: &[f32], n: usize, a: usize, b: usize) -> Vec<f32> {
    let plane = a * b;
    assert_eq!(x.len(), n * plane, "transpose input size");
    // SAFETY: the tiles cover every (row, column) of the sample's output.
    unsafe {
        written(
            x.len(),
            plane.max(1),
            true,
            || (),
            |_, i, out| {
                let src = &x[i * plane..(i + 1) * plane];
                for r0 in (0..a).step_by(TILE) {
                    for c0 in (0..b).step_by(TILE) {
                        for c in c0..(c0 + TILE).min(b) {
                            for r in r0..(r0 + TILE).min(a) {
                                out[c * a + r].write(src[r * b + c]);
                            }
                        }
                    }
                }
            },
        )
    }
}

/// `x [planes, h, w]` -> `[planes, 2h, 2w]`: each pixel repeated over a 2x2 block.
pub fn upsample2x(x: &[f32], h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    // SAFETY: each input row writes the two output rows it covers, whole.
    unsafe {
        written(
            4 * x.len(),
            4 * plane,
            true,
            || (),
            |_, i, out| {
                let src = &x[i * plane..(i + 1) * plane];
                for (row, pair) in src.chunks_exact(w).zip(out.chunks_exact_mut(4 * w)) {
                    let (top, bottom) = pair.split_at_mut(2 * w);
                    for (o, &v) in top.chunks_exact_mut(2).zip(row) {
                        o[0] = MaybeUninit::new(v);
                        o[1] = MaybeUninit::new(v);
                    }
                    bottom.copy_from_slice(top);
                }
            },
        )
    }
}

/// Gradient of [`upsample2x`]: `dy [planes, 2h, 2w]` -> `[planes, h, w]`, the
/// sum over each 2x2 block.
pub fn upsample2x_backward(dy: &[f32], h: usize, w: usize) -> Vec<f32> {
    let plane = h * w;
    // SAFETY: every output row is written whole from its two input rows.
    unsafe {
        written(
            dy.len() / 4,
            plane,
            true,
            || (),
            |_, i, dx| {
                let src = &dy[4 * i * plane..4 * (i + 1) * plane];
                for (d, pair) in dx.chunks_exact_mut(w).zip(src.chunks_exact(4 * w)) {
                    let (top, bottom) = pair.split_at(2 * w);
                    for ((o, t), b) in d
                        .iter_mut()
                        .zip(top.chunks_exact(2))
                        .zip(bottom.chunks_exact(2))
                    {
                        o.write((t[0] + t[1]) + (b[0] + b[1]));
                    }
                }
            },
        )
    }
}

/// `a [n, ka]` and `b [n, kb]` -> `[n, ka + kb]` (`ka`, `kb`: elements per sample).
pub fn concat(a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
    if n == 0 {
        return Vec::new();
    }
    let (ka, kb) = (a.len() / n, b.len() / n);
    assert_eq!(
        (ka * n, kb * n),
        (a.len(), b.len()),
        "sizes must split over the batch"
    );
    // SAFETY: each sample's chunk is the two copies, whole.
    unsafe {
        written(
            a.len() + b.len(),
            ka + kb,
            true,
            || (),
            |_, i, out| {
                let (oa, ob) = out.split_at_mut(ka);
                write_copy(oa, &a[i * ka..(i + 1) * ka]);
                write_copy(ob, &b[i * kb..(i + 1) * kb]);
            },
        )
    }
}

/// Inverse of [`concat`]: `x [n, ka + kb]` -> (`[n, ka]`, `[n, kb]`).
pub fn split(x: &[f32], n: usize, ka: usize) -> (Vec<f32>, Vec<f32>) {
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let k = x.len() / n;
    assert!(
        k * n == x.len() && ka <= k,
        "sizes must split over the batch"
    );
    let part = |offset: usize, len: usize| {
        // SAFETY: each sample's chunk is one copy, whole.
        unsafe {
            written(
                n * len,
                len,
                true,
                || (),
                |_, i, out| {
                    write_copy(out, &x[i * k + offset..i * k + offset + len]);
                },
            )
        }
    };
    (part(0, ka), part(ka, k - ka))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposing_moves_each_value_and_twice_gives_the_input() {
        let (n, a, b) = (3, 37, 20);
        let x: Vec<f32> = (0..n * a * b).map(|v| v as f32).collect();
        let t = transpose(&x, n, a, b);
        for i in 0..n {
            for r in 0..a {
                for c in 0..b {
                    assert_eq!(t[(i * b + c) * a + r], x[(i * a + r) * b + c]);
                }
            }
        }
        assert_eq!(transpose(&t, n, b, a), x);
    }

    fn data(len: usize) -> Vec<f32> {
        (0..len).map(|i| (i * 7 % 13) as f32 - 6.0).collect()
    }

    #[test]
    fn upsampling_repeats_each_pixel_and_its_gradient_sums_the_block() {
        let (planes, h, w) = (3, 2, 5);
        let x = data(planes * h * w);
        let y = upsample2x(&x, h, w);
        assert_eq!(y.len(), 4 * x.len());
        for p in 0..planes {
            for oy in 0..2 * h {
                for ox in 0..2 * w {
                    assert_eq!(
                        y[(p * 2 * h + oy) * 2 * w + ox],
                        x[(p * h + oy / 2) * w + ox / 2]
                    );
                }
            }
        }
        let dy = data(y.len());
        let dx = upsample2x_backward(&dy, h, w);
        for p in 0..planes {
            for iy in 0..h {
                for ix in 0..w {
                    let at = |oy: usize, ox: usize| dy[(p * 2 * h + oy) * 2 * w + ox];
                    let want = at(2 * iy, 2 * ix)
                        + at(2 * iy, 2 * ix + 1)
                        + at(2 * iy + 1, 2 * ix)
                        + at(2 * iy + 1, 2 * ix + 1);
                    assert_eq!(dx[(p * h + iy) * w + ix], want);
                }
            }
        }
    }

    #[test]
    fn concat_and_split_are_inverse_per_sample() {
        let (n, ka, kb) = (4, 6, 10);
        let (a, b) = (data(n * ka), data(n * kb + 3)[3..].to_vec());
        let c = concat(&a, &b, n);
        for i in 0..n {
            assert_eq!(&c[i * 16..i * 16 + 6], &a[i * 6..(i + 1) * 6]);
            assert_eq!(&c[i * 16 + 6..(i + 1) * 16], &b[i * 10..(i + 1) * 10]);
        }
        assert_eq!(split(&c, n, ka), (a, b));
        assert!(concat(&[], &[], 0).is_empty());
    }
}
