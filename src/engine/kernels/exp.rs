//! A branch-free `exp` for f32 loops the compiler vectorises (SiLU's sigmoid,
//! softmax).

/// `exp(x)` to about 1 ulp-scale relative error (Cephes' polynomial), written
/// without calls, branches or float-to-integer conversions (whose saturation
/// Rust's `as` would do lane by lane), so loops over it vectorise.
#[inline(always)]
pub(super) fn exp_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    // t = ROUND + n exactly, n = round(x / ln 2) in [-126, 127]: t's bits are
    // ROUND's plus n, so 2^n's exponent field n + 127 comes from them directly
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001e-1, which f32 holds as 0.5
    let e = p * r * r + r + 1.0;
    let exponent = t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127);
    e * f32::from_bits(exponent << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_fast_is_close_to_exp_over_its_range() {
        let mut worst = 0.0f64;
        for i in -8700..8800 {
            let x = i as f32 / 100.0 + 0.003;
            let got = exp_fast(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 1e-6, "worst relative error {worst}");
        assert_eq!(exp_fast(-200.0), exp_fast(-87.0));
    }
}
