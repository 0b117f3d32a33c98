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
