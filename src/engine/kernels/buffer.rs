//! Output buffers filled chunk by chunk on the rayon pool.
//!
//! A kernel's output used to be `vec![0.0; len]`: the calling thread zeroed all
//! of it (and took its page faults) while the workers waited, before the
//! parallel loop wrote it again. Here each worker fills the chunk it owns
//! ([`written`]): written once, never zeroed, by kernels that write every
//! element; zeroed by the worker itself ([`zero_init`]) where a kernel adds
//! into its output.

use rayon::prelude::*;
use std::cell::Cell;
use std::mem::MaybeUninit;

thread_local! {
    /// This thread's scratch buffer, kept between calls (see [`with_scratch`]).
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer, cut to `len` floats. The
/// contents are whatever an earlier call left: `f` must write what it reads.
///
/// The buffer lives as long as the thread (a rayon worker keeps the largest
/// it was asked for), so kernels that need an im2col matrix per sample neither
/// allocate nor zero one per call. A nested call on the same thread (a worker
/// that steals a job while it waits) gets a buffer of its own.
pub fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(Cell::take);
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    SCRATCH.with(|s| {
        let nested = s.take();
        s.set(if nested.len() > buf.len() {
            nested
        } else {
            buf
        });
    });
    out
}

/// `chunk` as initialised floats.
///
/// # Safety
/// Every element of `chunk` must have been written.
pub unsafe fn assume_init(chunk: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: initialised by the caller's promise, and `MaybeUninit<f32>` has
    // the layout of `f32`.
    unsafe { &mut *(chunk as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Writes zeros over `chunk` and returns it as initialised floats.
pub fn zero_init(chunk: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    chunk.fill(MaybeUninit::new(0.0));
    // SAFETY: every element was written just above.
    unsafe { assume_init(chunk) }
}

/// Copies `src` into `dst` (of the same length) and returns it initialised.
pub fn write_copy<'a>(dst: &'a mut [MaybeUninit<f32>], src: &[f32]) -> &'a mut [f32] {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy between slices of different lengths"
    );
    // SAFETY: both are `len` floats, `dst` borrowed mutably so they cannot
    // overlap, and every element of `dst` is written.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast(), src.len());
        assume_init(dst)
    }
}

/// A new buffer of `len` floats, cut into chunks of `chunk` (the last may be
/// shorter); `f(scratch, i, chunk_i)` writes chunk `i`, which starts
/// unwritten (a kernel that adds into it zeroes it first with
/// [`zero_init`]). Over the rayon pool when `parallel` (one `init()` scratch
/// per worker job), otherwise in order with one scratch.
///
/// # Safety
/// `f` must write every element of the chunk it is given (or panic).
pub unsafe fn written<S, I, F>(len: usize, chunk: usize, parallel: bool, init: I, f: F) -> Vec<f32>
where
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
{
    let chunks = len.div_ceil(chunk.max(1));
    let mut none = vec![(); chunks];
    // SAFETY: passed on to the caller.
    unsafe {
        written_with(len, chunk, &mut none, parallel, init, |s, i, c, _| {
            f(s, i, c)
        })
    }
}

/// [`written`], with chunk `i` also given the `i`-th of equal parts of `side`
/// (per-chunk results such as statistics). `side` must split evenly over the
/// chunks, at least one item each.
///
/// # Safety
/// `f` must write every element of the chunk it is given (or panic).
pub unsafe fn written_with<T, S, I, F>(
    len: usize,
    chunk: usize,
    side: &mut [T],
    parallel: bool,
    init: I,
    f: F,
) -> Vec<f32>
where
    T: Send,
    I: Fn() -> S + Sync + Send,
    F: Fn(&mut S, usize, &mut [MaybeUninit<f32>], &mut [T]) + Sync + Send,
{
    let chunk = chunk.max(1);
    let chunks = len.div_ceil(chunk);
    let per = side.len().checked_div(chunks).unwrap_or(1);
    assert!(
        per >= 1 && per * chunks == side.len() || chunks == 0,
        "side items must split evenly over the chunks"
    );
    let mut out = Vec::<f32>::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    if parallel {
        spare
            .par_chunks_mut(chunk)
            .zip(side.par_chunks_mut(per))
            .enumerate()
            .for_each_init(init, |s, (i, (c, t))| f(s, i, c, t));
    } else {
        let mut s = init();
        for (i, (c, t)) in spare
            .chunks_mut(chunk)
            .zip(side.chunks_mut(per))
            .enumerate()
        {
            f(&mut s, i, c, t);
        }
    }
    // SAFETY: the chunks cover `..len` and the caller promised that `f`
    // initialised each (a panic in `f` propagates before this line, leaving
    // the length 0).
    unsafe { out.set_len(len) };
    out
}

/// Parallel over the batch when it has an item per worker; otherwise gemm splits each product.
pub fn use_outer_parallelism(n: usize) -> bool {
    n >= rayon::current_num_threads()
}

/// A new `[n, dst_len]` buffer: `f(i, dst_i, src_i)` writes sample `i` (which
/// starts unwritten) from `src_i`, over the rayon pool when `outer`,
/// otherwise in order.
///
/// # Safety
/// `f(i, dst_i, src_i)` must write every element of `dst_i`.
pub unsafe fn per_sample<F>(
    n: usize,
    dst_len: usize,
    src: &[f32],
    src_len: usize,
    outer: bool,
    f: F,
) -> Vec<f32>
where
    F: Fn(usize, &mut [MaybeUninit<f32>], &[f32]) + Send + Sync,
{
    // SAFETY: passed on to the caller.
    unsafe {
        written(
            n * dst_len,
            dst_len,
            outer,
            || (),
            |_, i, dst| f(i, dst, &src[i * src_len..(i + 1) * src_len]),
        )
    }
}

/// `K` new buffers, the `j`-th of `n * lens[j]` floats: `f(i, chunks)` writes
/// sample `i`'s chunk of every buffer (each starts unwritten), over the rayon
/// pool when `outer`, otherwise in order.
///
/// # Safety
/// `f(i, chunks)` must write every element of each of its chunks (or panic).
pub unsafe fn per_sample_into<const K: usize, F>(
    n: usize,
    lens: [usize; K],
    outer: bool,
    f: F,
) -> [Vec<f32>; K]
where
    F: Fn(usize, [&mut [MaybeUninit<f32>]; K]) + Send + Sync,
{
    let mut outs: [Vec<f32>; K] = std::array::from_fn(|j| Vec::with_capacity(n * lens[j]));
    let bases: Bases<K> = Bases(std::array::from_fn(|j| outs[j].as_mut_ptr()));
    let one = |i: usize| {
        let bases = &bases;
        // SAFETY: sample `i`'s chunks `[i * len, (i + 1) * len)` lie inside
        // each buffer's capacity and no two samples share one; the vectors are
        // not touched until every sample is done.
        let chunks = std::array::from_fn(|j| unsafe {
            std::slice::from_raw_parts_mut(
                bases.0[j].add(i * lens[j]).cast::<MaybeUninit<f32>>(),
                lens[j],
            )
        });
        f(i, chunks)
    };
    if outer {
        (0..n).into_par_iter().for_each(one);
    } else {
        (0..n).for_each(one);
    }
    for (out, len) in outs.iter_mut().zip(lens) {
        // SAFETY: every sample's chunk was written (the caller's promise; a
        // panic propagates before this line, leaving the lengths 0).
        unsafe { out.set_len(n * len) };
    }
    outs
}

/// The buffers' starts, shared by the jobs that write disjoint parts of them.
struct Bases<const K: usize>([*mut f32; K]);

// SAFETY: the jobs only write disjoint ranges through these pointers
// ([`per_sample_into`]).
unsafe impl<const K: usize> Sync for Bases<K> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten floats written in chunks of four (the last one short) by `f(i, chunk_i)`.
    ///
    /// # Safety
    /// `f` must write every element of its chunk.
    unsafe fn ten_in_fours<F>(parallel: bool, f: F) -> Vec<f32>
    where
        F: Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
    {
        // SAFETY: passed on to the caller.
        unsafe { written(10, 4, parallel, || (), |_, i, c| f(i, c)) }
    }

    #[test]
    fn a_zeroed_chunk_reads_zero_and_keeps_what_is_added() {
        for parallel in [false, true] {
            // a short last chunk, and chunks that add to what they start with
            // SAFETY: `zero_init` writes every element before the additions.
            let out = unsafe {
                ten_in_fours(parallel, |i, c| {
                    let c = zero_init(c);
                    assert!(c.iter().all(|&v| v == 0.0));
                    for (j, v) in c.iter_mut().enumerate() {
                        *v += (i * 4 + j) as f32;
                    }
                })
            };
            assert_eq!(out, (0..10).map(|v| v as f32).collect::<Vec<_>>());
        }
        // SAFETY: there is nothing to write.
        assert!(unsafe { written(0, 4, true, || (), |_, _, _| unreachable!()) }.is_empty());
    }

    #[test]
    fn scratch_is_kept_between_calls_and_a_nested_call_gets_its_own() {
        let first = with_scratch(6, |b| {
            b.fill(7.0);
            b.as_ptr() as usize
        });
        // the same buffer comes back, with what the last call wrote
        let (again, seen) = with_scratch(4, |b| (b.as_ptr() as usize, b.to_vec()));
        assert_eq!(first, again);
        assert_eq!(seen, [7.0; 4]);
        with_scratch(3, |outer| {
            outer.fill(1.0);
            with_scratch(5, |inner| {
                assert_ne!(inner.as_ptr(), outer.as_ptr());
                assert_eq!(inner.len(), 5);
                inner.fill(2.0);
            });
            assert_eq!(outer, [1.0; 3]);
        });
        // a larger request grows it
        assert_eq!(with_scratch(1000, |b| b.len()), 1000);
    }

    #[test]
    fn a_written_buffer_holds_what_its_chunks_wrote() {
        for parallel in [false, true] {
            let src: Vec<f32> = (0..10).map(|v| v as f32 * 0.5).collect();
            // SAFETY: `write_copy` writes every element of the chunk.
            let out = unsafe {
                ten_in_fours(parallel, |i, c| {
                    let n = c.len();
                    write_copy(c, &src[i * 4..i * 4 + n]);
                })
            };
            assert_eq!(out, src);
        }
    }

    #[test]
    fn side_items_go_with_their_chunk() {
        for parallel in [false, true] {
            let mut side = vec![0usize; 6];
            // SAFETY: each chunk is filled whole.
            let out = unsafe {
                written_with(
                    9,
                    3,
                    &mut side,
                    parallel,
                    || (),
                    |_, i, c, t| {
                        c.fill(MaybeUninit::new(i as f32));
                        t.fill(i + 1);
                    },
                )
            };
            assert_eq!(out, [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
            assert_eq!(side, [1, 1, 2, 2, 3, 3]);
        }
    }
}
