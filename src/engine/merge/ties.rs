//! TIES-Merging (Yadav et al. 2023, "TIES-Merging: Resolving Interference When
//! Merging Models"), following the authors' reference code:
//!
//! 1. **Trim**: per task vector (all its entries as one vector of length d), keep
//!    the top `m = max(1, floor(d k))` entries by magnitude: those at least as
//!    large as the m-th largest magnitude (ties at the cutoff are all kept); the
//!    others become 0. (The reference `topk_values_mask` compares against the
//!    `(d - m)`-th smallest magnitude and so keeps one entry more than it says.)
//! 2. **Elect**: per entry, the sign of the summed trimmed values; where that sum
//!    is 0, the majority sign (the sign of the sum of all elected signs).
//! 3. **Disjoint mean**: per entry, the mean of the trimmed values whose sign
//!    agrees with the elected one (entries that are 0 do not count; no agreeing
//!    entry gives 0). Following the reference, an elected sign that is not
//!    positive selects the negative entries.
//! 4. `theta + scale * mean`.
//!
//! To reuse task arithmetic, the disjoint mean is split into per-expert shares
//! `tau'_i = scale * selected_i / count`, so that `sum_i tau'_i` is the scaled
//! mean (up to float rounding of the sum) and `theta + sum_i w_i tau'_i` with
//! every `w_i = 1` is TIES.

/// Per-key values of one task vector.
pub type TaskValues = Vec<Vec<f32>>;

/// The user's fraction as the decimal they typed (0.2f32 -> 0.2f64), so that
/// `floor(d k)` matches the reference's float64 arithmetic.
pub(crate) fn decimal_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(x as f64)
}

/// Magnitude threshold of the trim: entries with `|x| >= threshold` survive.
fn trim_threshold(tau: &TaskValues, k: f32) -> f32 {
    let d: usize = tau.iter().map(Vec::len).sum();
    if d == 0 {
        return 0.0;
    }
    let keep = (((d as f64) * decimal_f64(k)).floor() as usize).clamp(1, d);
    let mut mags: Vec<f32> = tau.iter().flatten().map(|x| x.abs()).collect();
    // the keep-th largest = the (d - keep + 1)-th smallest
    let (_, kth, _) = mags.select_nth_unstable_by(d - keep, f32::total_cmp);
    *kth
}

fn trimmed(x: f32, threshold: f32) -> f32 {
    if x.abs() >= threshold { x } else { 0.0 }
}

fn sign(x: f32) -> i8 {
    if x > 0.0 {
        1
    } else if x < 0.0 {
        -1
    } else {
        0
    }
}

/// The per-expert TIES shares `tau'_i` (see the module docs).
///
/// # Shapes
/// `taus[i][key]` -> same layout
pub fn ties_task_vectors(taus: &[TaskValues], k: f32, scale: f32) -> Vec<TaskValues> {
    let thresholds: Vec<f32> = taus.iter().map(|t| trim_threshold(t, k)).collect();
    // entries per key (every task vector has the same layout)
    let lens: Vec<usize> = taus
        .first()
        .map_or(Vec::new(), |t| t.iter().map(Vec::len).collect());
    let summed = |key: usize, j: usize| -> f32 {
        taus.iter()
            .zip(&thresholds)
            .map(|(t, &th)| trimmed(t[key][j], th))
            .sum()
    };
    // Majority sign: the sign of the sum of all elected (non-zero) signs.
    let mut sign_total: i64 = 0;
    for (key, &len) in lens.iter().enumerate() {
        for j in 0..len {
            sign_total += sign(summed(key, j)) as i64;
        }
    }
    let majority = sign(sign_total as f32);
    let mut out: Vec<TaskValues> = taus
        .iter()
        .map(|t| t.iter().map(|v| vec![0.0; v.len()]).collect())
        .collect();
    let mut selected = vec![0f32; taus.len()];
    for (key, &len) in lens.iter().enumerate() {
        for j in 0..len {
            let elected = match sign(summed(key, j)) {
                0 => majority,
                s => s,
            };
            let mut count = 0u32;
            for (i, (t, &th)) in taus.iter().zip(&thresholds).enumerate() {
                let x = trimmed(t[key][j], th);
                let agrees = if elected > 0 { x > 0.0 } else { x < 0.0 };
                selected[i] = if agrees { x } else { 0.0 };
                count += (selected[i] != 0.0) as u32;
            }
            let count = count.max(1) as f32;
            for (o, &s) in out.iter_mut().zip(&selected) {
                o[key][j] = scale * (s / count);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_three_experts() {
        // One key of 4 entries per expert; k = 0.5 keeps the 2 largest magnitudes.
        let taus = vec![
            vec![vec![1.0, -0.5, 0.25, 2.0]], // trims 0.25 and -0.5 -> [1, 0, 0, 2]
            vec![vec![-3.0, 0.5, 0.5, 0.125]], // threshold 0.5 (ties kept) -> [-3, .5, .5, 0]
            vec![vec![0.5, 0.25, -1.0, -4.0]], // -> [0, 0, -1, -4]
        ];
        let out = ties_task_vectors(&taus, 0.5, 2.0);
        // entry 0: sum 1 - 3 = -2 -> negative; agreeing: -3 only -> mean -3
        // entry 1: sum 0.5 -> positive; agreeing: 0.5 -> 0.5
        // entry 2: sum 0.5 - 1 = -0.5 -> negative; agreeing -1 -> -1
        // entry 3: sum 2 - 4 = -2 -> negative; agreeing -4 -> -4
        let merged: Vec<f32> = (0..4).map(|j| out.iter().map(|o| o[0][j]).sum()).collect();
        assert_eq!(merged, vec![-6.0, 1.0, -2.0, -8.0]);
        assert_eq!(out[1][0], vec![-6.0, 1.0, 0.0, 0.0]);
        assert_eq!(out[0][0], vec![0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn agreeing_entries_are_averaged_and_zero_sums_take_the_majority() {
        // k = 1 keeps everything.
        let taus = vec![
            vec![vec![1.0, 2.0, 1.0], vec![-1.0]],
            vec![vec![3.0, -2.0, 1.0], vec![1.0]],
        ];
        let out = ties_task_vectors(&taus, 1.0, 1.0);
        let merged: Vec<Vec<f32>> = (0..2)
            .map(|key| {
                (0..taus[0][key].len())
                    .map(|j| out[0][key][j] + out[1][key][j])
                    .collect()
            })
            .collect();
        // entry (0,0): both positive -> mean 2; (0,1): sum 0 -> majority sign.
        // Elected signs: +, 0, +, 0 -> majority +, so (0,1) keeps 2.0 and
        // (1,0) keeps 1.0; (0,2): mean 1.
        assert_eq!(merged, vec![vec![2.0, 2.0, 1.0], vec![1.0]]);
    }

    #[test]
    fn trim_follows_the_reference_count() {
        let tau = vec![vec![0.1, -0.2, 0.3, -0.4, 0.5]];
        // floor(5 * 0.2) = 1 entry kept -> threshold 0.5
        assert_eq!(trim_threshold(&tau, 0.2), 0.5);
        // floor(5 * 0.4) = 2 -> threshold 0.4
        assert_eq!(trim_threshold(&tau, 0.4), 0.4);
        assert_eq!(trim_threshold(&tau, 1.0), 0.1);
        // fewer than one entry still keeps the largest
        assert_eq!(trim_threshold(&tau, 0.1), 0.5);
    }
}
