//! Exponential moving average of the weights (diffusers `EMAModel` warm-up schedule).

use crate::engine::model::params::{flat_params, map_flat_params};
use burn::module::Module;
use std::collections::HashMap;

/// The decay used at `step`: `min(max_decay, (1 + step) / (10 + step))`.
pub fn ema_decay(step: u64, max_decay: f64) -> f64 {
    ((1.0 + step as f64) / (10.0 + step as f64)).min(max_decay)
}

/// `ema <- decay * ema + (1 - decay) * model`, on the device.
pub fn ema_update<M: Module>(ema: M, model: &M, decay: f64) -> M {
    let current: HashMap<String, _> = flat_params(model).into_iter().collect();
    map_flat_params(ema, &mut |key, e| match current.get(key) {
        Some(p) => e * decay + p.clone() * (1.0 - decay),
        None => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_warms_up_then_caps() {
        assert!((ema_decay(0, 0.9999) - 0.1).abs() < 1e-12);
        assert!(ema_decay(100, 0.9999) < ema_decay(1000, 0.9999));
        assert_eq!(ema_decay(10_000_000, 0.999), 0.999);
    }
}
