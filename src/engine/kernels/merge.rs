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
use std::mem::MaybeUninit;

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
///
/// `reuse` is the tensor the result replaces: when it is a plain flex tensor
/// owning its buffer alone (contiguous, of the base's length) the sum is
/// written over that buffer, so a re-merge allocates nothing and writes each
/// value once. A shared `reuse` (copy-on-write) is left alone.
pub fn weighted_sum_tensors(
    base: &Tensor<1>,
    terms: &[&Tensor<1>],
    weights: &[f32],
    reuse: Option<Tensor<1>>,
) -> Option<Tensor<1>> {
    let (base_flex, autodiff) = plain_flex(base)?;
    let terms: Vec<FlexTensor> = terms
        .iter()
        .map(|t| plain_flex(t).map(|(f, _)| f))
        .collect::<Option<_>>()?;
    let term_values: Vec<Cow<'_, [f32]>> = terms.iter().map(values).collect::<Option<_>>()?;
    let refs: Vec<&[f32]> = term_values.iter().map(|c| c.as_ref()).collect();
    let base_values = values(&base_flex)?;
    let flex = match reuse.and_then(|r| plain_flex(&r).map(|(f, _)| f)) {
        Some(mut old) if owns_exactly(&old, base_values.len()) => {
            let out = old
                .try_storage_mut::<f32>()
                .expect("checked: uniquely owned f32");
            weighted_sum_to(out, &base_values, &refs, weights);
            old.with_layout(base_flex.layout().clone())
        }
        _ => {
            let out = weighted_sum(&base_values, &refs, weights);
            FlexTensor::from_data(TensorData::new(out, base_flex.shape()))
        }
    };
    Some(Tensor::from_dispatch(DispatchTensor {
        kind: DispatchTensorKind::Flex(BackendTensor::Float(flex)),
        autodiff,
    }))
}

/// Whether `f` is an f32 tensor owning its whole buffer alone, contiguous
/// from the start, holding exactly `len` values: safe to overwrite.
fn owns_exactly(f: &FlexTensor, len: usize) -> bool {
    f.dtype() == burn::tensor::DType::F32
        && f.is_unique()
        && f.layout().contiguous_offsets() == Some((0, len))
        && f.bytes().len() == len * std::mem::size_of::<f32>()
}

/// Elements per parallel task: large enough to amortise the task, small
/// enough to spread a mid-sized tensor over the workers.
const CHUNK: usize = 1 << 15;

/// `((w_1 t_1 + w_2 t_2) + ...) + base` element by element, with the rounding
/// of doing those operations one after another over whole tensors.
pub fn weighted_sum(base: &[f32], terms: &[&[f32]], weights: &[f32]) -> Vec<f32> {
    let mut out = Vec::<f32>::with_capacity(base.len());
    fill(
        &mut out.spare_capacity_mut()[..base.len()],
        base,
        terms,
        weights,
    );
    // SAFETY: `fill` initialised all `base.len()` values (a panic there
    // propagates before this line, leaving the length 0).
    unsafe { out.set_len(base.len()) };
    out
}

/// [`weighted_sum`] written over `out` (of the base's length); its old
/// values are never read.
pub fn weighted_sum_to(out: &mut [f32], base: &[f32], terms: &[&[f32]], weights: &[f32]) {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and `fill` only
    // stores initialised values through it.
    let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    fill(out, base, terms, weights);
}

/// Initialises every element of `out` to the weighted sum, chunk by chunk
/// over the rayon pool.
fn fill(out: &mut [MaybeUninit<f32>], base: &[f32], terms: &[&[f32]], weights: &[f32]) {
    assert_eq!(terms.len(), weights.len(), "one weight per term");
    assert_eq!(
        out.len(),
        base.len(),
        "the output differs in size from the base"
    );
    assert!(
        terms.iter().all(|t| t.len() == base.len()),
        "terms differ in size from the base"
    );
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let range = c * CHUNK..c * CHUNK + o.len();
        let Some((first, rest)) = terms.split_first() else {
            for (v, &b) in o.iter_mut().zip(&base[range]) {
                v.write(b);
            }
            return;
        };
        for (v, &t) in o.iter_mut().zip(&first[range.clone()]) {
            v.write(t * weights[0]);
        }
        // SAFETY: every element of `o` was written just above.
        let o = unsafe { &mut *(o as *mut [MaybeUninit<f32>] as *mut [f32]) };
        for (t, &w) in rest.iter().zip(&weights[1..]) {
            for (v, &x) in o.iter_mut().zip(&t[range.clone()]) {
                *v += x * w;
            }
        }
        for (v, &b) in o.iter_mut().zip(&base[range]) {
            *v += b;
        }
    });
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

    /// The address of a flex tensor's buffer.
    fn buffer_addr(t: &Tensor<1>) -> usize {
        plain_flex(t).expect("flex f32").0.bytes().as_ptr() as usize
    }

    #[test]
    fn a_sole_owner_is_overwritten_in_place_and_a_shared_one_is_left_alone() {
        let d = burn::tensor::Device::flex();
        let len = 2 * CHUNK + 5;
        let make = |k: f32| {
            let v: Vec<f32> = (0..len).map(|i| (i as f32 * k).cos()).collect();
            Tensor::<1>::from_data(TensorData::new(v, [len]), &d)
        };
        let (base, t1, t2) = (make(0.3), make(0.7), make(1.1));
        let weights = [0.25f32, -1.5];
        let host = |t: &Tensor<1>| t.to_data().try_to_vec::<f32>().unwrap();
        let expected = weighted_sum(&host(&base), &[&host(&t1), &host(&t2)], &weights);

        // a buffer owned by nobody else is reused, and holds the same bits
        let old = make(9.0);
        let addr = buffer_addr(&old);
        let got = weighted_sum_tensors(&base, &[&t1, &t2], &weights, Some(old)).unwrap();
        assert_eq!(buffer_addr(&got), addr, "written in place");
        assert_eq!(host(&got), expected);

        // a buffer someone else still holds keeps its values
        let kept = make(9.0);
        let before = host(&kept);
        let got = weighted_sum_tensors(&base, &[&t1, &t2], &weights, Some(kept.clone())).unwrap();
        assert_ne!(buffer_addr(&got), buffer_addr(&kept));
        assert_eq!(host(&got), expected);
        assert_eq!(host(&kept), before);

        // a view of part of a buffer is not overwritten either
        let long = make(2.0).slice([0..len]);
        let wide = Tensor::<1>::cat(vec![long.clone(), make(3.0)], 0);
        let part = wide.clone().slice([len..2 * len]);
        drop(wide);
        let got = weighted_sum_tensors(&base, &[&t1, &t2], &weights, Some(part)).unwrap();
        assert_eq!(host(&got), expected);

        // no terms: the base's values
        let got = weighted_sum_tensors(&base, &[], &[], Some(make(4.0))).unwrap();
        assert_eq!(host(&got), host(&base));
    }
}
