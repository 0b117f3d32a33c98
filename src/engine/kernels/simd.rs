//! Runtime selection of wider vector code for the host kernels.
//!
//! The crate is built for baseline x86-64 (SSE2), so a binary runs on any
//! x86-64 CPU. Hot loops written once as `#[inline(always)]` bodies are
//! compiled again inside `#[target_feature]` functions ([`vectorised!`]) for
//! AVX2 and for AVX-512, and called through the widest one the CPU has, which
//! multiplies the lanes of the loops the compiler vectorises. Rust never fuses
//! a multiply and an add on its own and the bodies fix their own summation
//! order, so every version gives the same bits.
//!
//! `DEME_STUDIO_SIMD=baseline|avx2|avx512` caps the level (to compare the
//! versions side by side on one machine); a level the CPU lacks is never used.

use std::sync::OnceLock;

/// The instruction sets our vectorised loops are compiled for, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Baseline x86-64 (SSE2) or a non-x86 target.
    Baseline,
    /// AVX2: 8 f32 lanes.
    Avx2,
    /// AVX-512 (F): 16 f32 lanes.
    Avx512,
}

impl Level {
    /// Every level, narrowest first.
    pub const ALL: [Level; 3] = [Level::Baseline, Level::Avx2, Level::Avx512];

    /// The name the benchmarks record and `DEME_STUDIO_SIMD` takes.
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// The level a name gives (see [`Self::name`]).
    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.name() == name)
    }
}

/// The widest level this CPU runs (detected once by the standard library).
pub fn detected() -> Level {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Baseline
    })
}

/// The levels this CPU runs, narrowest first (the tests run each).
#[cfg(test)]
pub fn supported() -> Vec<Level> {
    Level::ALL
        .into_iter()
        .filter(|&l| l <= detected())
        .collect()
}

/// The level the kernels use: [`detected`], capped by `DEME_STUDIO_SIMD`
/// when it names a level (read once).
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = std::env::var("DEME_STUDIO_SIMD").ok();
        match cap.as_deref().map(Level::parse) {
            Some(Some(cap)) => cap.min(detected()),
            Some(None) => {
                eprintln!(
                    "warning: DEME_STUDIO_SIMD={} is none of baseline, avx2, avx512; ignored",
                    cap.unwrap_or_default()
                );
                detected()
            }
            None => detected(),
        }
    })
}

/// `vectorised!(fn name / name_at(args) -> T = body_fn)`: defines `name`,
/// which calls the `#[inline(always)]` function `body_fn` with the same
/// arguments compiled for the kernels' [`level`], and `name_at`, which takes
/// the level as its first argument (a level the CPU lacks falls back to the
/// widest one below it that it has).
macro_rules! vectorised {
    ($(#[$m:meta])* $vis:vis fn $name:ident / $at:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:ident) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            $at($crate::engine::kernels::simd::level(), $($arg),*)
        }

        #[allow(clippy::too_many_arguments)]
        #[inline(always)]
        fn $at(level: $crate::engine::kernels::simd::Level, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::engine::kernels::simd::{detected, Level};
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                #[allow(clippy::too_many_arguments)]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                let level = level.min(detected());
                if level == Level::Avx512 {
                    // SAFETY: the CPU was found to support AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if level == Level::Avx2 {
                    // SAFETY: the CPU was found to support AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            let _ = level;
            $body($($arg),*)
        }
    };
}
pub(crate) use vectorised;

/// The instruction sets the CPU kernels run with on this machine, as the
/// benchmarks record them: the `gemm` crate's micro-kernels (built with its
/// AVX-512 ones; it picks `avx512f`, else `fma`, else `scalar`, at run time)
/// and the vector width of our own loops ([`level`]).
pub fn kernel_variants() -> [(&'static str, &'static str); 2] {
    #[cfg(target_arch = "x86_64")]
    let gemm = if detected() == Level::Avx512 {
        "avx512f"
    } else if std::arch::is_x86_feature_detected!("fma") {
        "fma"
    } else {
        "scalar"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let gemm = "native";
    [("gemm", gemm), ("ours", level().name())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_from_their_names_and_the_detected_one_is_supported() {
        for l in Level::ALL {
            assert_eq!(Level::parse(l.name()), Some(l));
        }
        assert_eq!(Level::parse("avx1024"), None);
        let s = supported();
        assert_eq!(s.first(), Some(&Level::Baseline));
        assert_eq!(s.last(), Some(&detected()));
        assert!(level() <= detected());
    }
}
