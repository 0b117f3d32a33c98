//! The merge's weighted sum on host memory, fused and parallel.
//!
//! The merge needs no gradients, so it reaches the flex tensors directly
//! rather than through the backend extension.

use burn::backend::flex::FlexTensor;
use burn::backend::{
    BackendTensor, DispatchAutodiffContext, DispatchTensor, DispatchTensorKind, TensorMetadata,
};
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;
use std::borrow::Cow;

/// The flex tensor behind a plain (not autodiff) f32 tensor on the CPU backend.
fn plain_flex(t: &Tensor<1>) -> Option<(FlexTensor, DispatchAutodiffContext)> {
    if t.dtype() != burn::tensor::DType::F32 {
        return None;
    }
    let DispatchTensor { kind, autodiff } = t.clone().into_dispatch();
    match kind {
        DispatchTensorKind::Flex(BackendTensor::Float(f)) => Some((f, autodiff)),
        _ => None,
    }
}

/// The values of a flex f32 tensor, borrowed when contiguous.
fn values(f: &FlexTensor) -> Option<Cow<'_, [f32]>> {
    match f.as_slice::<f32>() {
        Some(s) if f.is_contiguous() => Some(Cow::Borrowed(s)),
        _ => f
            .to_contiguous()
            .as_slice::<f32>()
            .map(|s| Cow::Owned(s.to_vec())),
    }
}

/// `((w_1 t_1 + w_2 t_2) + ...) + base` for plain f32 tensors on the flex
/// backend, fused and parallel; `None` for tensors elsewhere (the caller then
/// uses tensor ops, which round the same way).
pub fn weighted_sum_tensors(
    base: &Tensor<1>,
    terms: &[&Tensor<1>],
    weights: &[f32],
) -> Option<Tensor<1>> {
    let (base_flex, autodiff) = plain_flex(base)?;
    let terms: Vec<FlexTensor> = terms
        .iter()
        .map(|t| plain_flex(t).map(|(f, _)| f))
        .collect::<Option<_>>()?;
    let term_values: Vec<Cow<'_, [f32]>> = terms.iter().map(values).collect::<Option<_>>()?;
    let refs: Vec<&[f32]> = term_values.iter().map(|c| c.as_ref()).collect();
    let out = weighted_sum(&values(&base_flex)?, &refs, weights);
    let flex = FlexTensor::from_data(TensorData::new(out, base_flex.shape()));
    Some(Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::Flex(BackendTensor::Float(flex)),
        autodiff,
    }))
}

/// Elements per parallel task: large enough to amortise the task, small
/// enough to spread a mid-sized tensor over the workers.
const CHUNK: usize = 1 << 15;

/// `((w_1 t_1 + w_2 t_2) + ...) + base` element by element, with the rounding
/// of doing those operations one after another over whole tensors.
pub fn weighted_sum(base: &[f32], terms: &[&[f32]], weights: &[f32]) -> Vec<f32> {
    assert_eq!(terms.len(), weights.len(), "one weight per term");
    assert!(
        terms.iter().all(|t| t.len() == base.len()),
        "terms differ in size from the base"
    );
    let mut out = vec![0.0f32; base.len()];
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let range = c * CHUNK..c * CHUNK + o.len();
        match terms.split_first() {
            None => o.copy_from_slice(&base[range]),
            Some((first, rest)) => {
                for (v, &t) in o.iter_mut().zip(&first[range.clone()]) {
                    *v = t * weights[0];
                }
                for (t, &w) in rest.iter().zip(&weights[1..]) {
                    for (v, &x) in o.iter_mut().zip(&t[range.clone()]) {
                        *v += x * w;
                    }
                }
                for (v, &b) in o.iter_mut().zip(&base[range]) {
                    *v += b;
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_sequential_sum_bit_for_bit() {
        let len = 3 * CHUNK + 17;
        let wave = |k: f32| {
            (0..len)
                .map(|i| (i as f32 * k).sin() * 1e-3)
                .collect::<Vec<_>>()
        };
        let base = wave(0.37);
        let terms = [wave(0.11), wave(0.53), wave(0.97)];
        let weights = [0.3f32, -0.7, 0.45];
        let refs: Vec<&[f32]> = terms.iter().map(|t| t.as_slice()).collect();
        let got = weighted_sum(&base, &refs, &weights);
        for j in 0..len {
            let mut acc = terms[0][j] * weights[0];
            acc += terms[1][j] * weights[1];
            acc += terms[2][j] * weights[2];
            assert_eq!(got[j].to_bits(), (acc + base[j]).to_bits(), "element {j}");
        }
        assert_eq!(weighted_sum(&base, &[], &[]), base);
    }
}
