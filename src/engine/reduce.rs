//! Sums and means over long rows, in pieces that every backend reduces right.
//!
//! burn 0.22's wgpu reduction returns wrong sums for rows of 65,536 values
//! or more (measured on lavapipe: a row of 131,072 N(0, 1) values summed off by
//! ~150, and four rows of 65,536 by ~3; rows up to 32,768 are exact to f32
//! rounding). A 256 x 256 image is 65,536 values per channel, so GroupNorm,
//! per-sample losses and gradient norms hit it. These helpers cut a row into
//! pieces of [`PIECE`] values (zero-padded), reduce the pieces, then the
//! partial sums. The CPU backend's own reduction is right, so there the
//! helpers are one call.

use crate::engine::kernels::on_flex;
use burn::tensor::Tensor;

/// The longest row handed to a backend's reduction in one piece.
pub const PIECE: usize = 16_384;

/// Sum of each row: `[r, l] -> [r, 1]`. On the CPU backend, whose reduction
/// is right at any length, one call.
pub fn sum_rows(x: Tensor<2>) -> Tensor<2> {
    let [r, l] = x.dims();
    if l <= PIECE || on_flex(&x.device()) {
        return x.sum_dim(1);
    }
    sum_rows_in_pieces(x, r, l)
}

/// [`sum_rows`] through pieces of at most [`PIECE`] values, on any backend.
fn sum_rows_in_pieces(x: Tensor<2>, r: usize, l: usize) -> Tensor<2> {
    let pieces = l.div_ceil(PIECE);
    let pad = pieces * PIECE - l;
    let x = if pad > 0 {
        let zeros = Tensor::zeros([r, pad], &x.device());
        Tensor::cat(vec![x, zeros], 1)
    } else {
        x
    };
    let partial = x
        .reshape([r * pieces, PIECE])
        .sum_dim(1)
        .reshape([r, pieces]);
    if pieces <= PIECE {
        partial.sum_dim(1)
    } else {
        sum_rows_in_pieces(partial, r, pieces)
    }
}

/// Mean of each row: `[r, l] -> [r, 1]`.
pub fn mean_rows(x: Tensor<2>) -> Tensor<2> {
    let l = x.dims()[1];
    sum_rows(x) / l as f32
}

/// Sum of every value: `[..] -> [1]`.
pub fn sum_all<const D: usize>(x: Tensor<D>) -> Tensor<1> {
    let n = x.dims().iter().product::<usize>();
    sum_rows(x.reshape([1, n])).reshape([1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    fn rows(r: usize, l: usize) -> Vec<f32> {
        (0..r * l)
            .map(|i| ((i as f64 * 0.618_033_988_75).fract() - 0.5) as f32)
            .collect()
    }

    /// Rows longer than a piece, with and without padding, against float64.
    #[test]
    fn long_rows_sum_to_their_float64_sums() {
        let device = Device::flex();
        for (r, l) in [
            (3usize, 7usize),
            (2, PIECE),
            (3, 2 * PIECE),
            (2, 3 * PIECE + 5),
        ] {
            let v = rows(r, l);
            let x = Tensor::<2>::from_data(TensorData::new(v.clone(), [r, l]), &device);
            let got = sum_rows(x.clone())
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            let pieces = sum_rows_in_pieces(x.clone(), r, l);
            let pieces = pieces.into_data().try_into_vec::<f32>().unwrap();
            let mean = mean_rows(x).into_data().try_into_vec::<f32>().unwrap();
            for i in 0..r {
                let want: f64 = v[i * l..(i + 1) * l].iter().map(|&x| x as f64).sum();
                assert!(
                    (got[i] as f64 - want).abs() < 1e-3,
                    "[{r}, {l}] row {i}: {} vs {want}",
                    got[i]
                );
                assert!((mean[i] as f64 - want / l as f64).abs() < 1e-6);
                assert!(
                    (pieces[i] as f64 - want).abs() < 1e-3,
                    "pieces: {}",
                    pieces[i]
                );
            }
            let all = sum_all(Tensor::<2>::from_data(
                TensorData::new(v.clone(), [r, l]),
                &device,
            ));
            let want: f64 = v.iter().map(|&x| x as f64).sum();
            assert!((all.into_scalar::<f32>() as f64 - want).abs() < 1e-3);
        }
    }
}
