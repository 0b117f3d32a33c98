//! Runtime selection of wider vector code for the host kernels.
//!
//! The crate is built for baseline x86-64 (SSE2), so a binary runs on any
//! x86-64 CPU. Hot loops written once as `#[inline(always)]` bodies are
//! compiled a second time inside a `#[target_feature(enable = "avx2")]`
//! function ([`avx2!`]) and called through it when the CPU has AVX2, which
//! doubles the lanes of the loops the compiler vectorises. Rust never fuses
//! a multiply and an add on its own, so both versions round identically.

/// Whether this CPU runs AVX2 code (detected once by the standard library).
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `avx2!(fn name(args) -> T = body_fn)`: defines `name`, which calls the
/// `#[inline(always)]` function `body_fn` with the same arguments, compiled
/// for AVX2 when the CPU has it and for the baseline otherwise.
macro_rules! avx2 {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::engine::kernels::simd::has_avx2() {
                    // SAFETY: the CPU was just found to support AVX2.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use avx2;

/// The instruction sets the CPU kernels run with on this machine, as the
/// benchmarks record them: the `gemm` crate's micro-kernels (built with its
/// AVX-512 ones; it picks `avx512f`, else `fma`, else `scalar`, at run time)
/// and the vector width of our own loops (`avx2` or `baseline`).
pub fn kernel_variants() -> [(&'static str, &'static str); 2] {
    #[cfg(target_arch = "x86_64")]
    let gemm = if std::arch::is_x86_feature_detected!("avx512f") {
        "avx512f"
    } else if std::arch::is_x86_feature_detected!("fma") {
        "fma"
    } else {
        "scalar"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let gemm = "native";
    let ours = if has_avx2() { "avx2" } else { "baseline" };
    [("gemm", gemm), ("ours", ours)]
}
