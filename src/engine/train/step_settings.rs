//! The settings every run shares (batch size, learning rate and its warm-up,
//! EMA decay) and their bounds.

use anyhow::{Result, bail};

/// Largest batch a run takes (the command line's limit too).
pub const MAX_BATCH_SIZE: usize = 4096;

/// Checks the settings every run shares: batch size, learning rate, EMA decay.
pub fn check_step_settings(batch_size: usize, lr: f64, ema_max_decay: Option<f64>) -> Result<()> {
    if batch_size == 0 {
        bail!("the batch size must be at least 1");
    }
    if batch_size > MAX_BATCH_SIZE {
        bail!("the batch size must be at most {MAX_BATCH_SIZE}, not {batch_size}");
    }
    if !(lr.is_finite() && lr > 0.0) {
        bail!("the learning rate must be finite and > 0, not {lr}");
    }
    if let Some(d) = ema_max_decay
        && !(0.0..1.0).contains(&d)
    {
        bail!("the EMA decay must be in [0, 1), not {d}");
    }
    Ok(())
}

/// The learning rate at `step` (0-based) with a linear warm-up from 0 to `lr`.
pub fn warmup_lr(lr: f64, warmup_steps: u64, step: u64) -> f64 {
    if warmup_steps == 0 {
        lr
    } else {
        lr * ((step + 1) as f64 / warmup_steps as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_settings_are_bounded_whatever_they_come_from() {
        assert!(check_step_settings(64, 1e-3, Some(0.999)).is_ok());
        assert!(check_step_settings(MAX_BATCH_SIZE, 1e-3, None).is_ok());
        for (b, lr) in [
            (0, 1e-3),
            (MAX_BATCH_SIZE + 1, 1e-3),
            (64, f64::NAN),
            (64, 0.0),
        ] {
            assert!(check_step_settings(b, lr, None).is_err(), "{b} {lr}");
        }
    }
}
