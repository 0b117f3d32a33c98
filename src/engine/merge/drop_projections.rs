//! Exporting a merge as a plain diffusers `UNet2DModel`: the channel-wise
//! projections removed, with the eps difference that makes measured, never
//! silently (they cannot be folded into the stock model exactly).

use super::structure::is_projection_key;
use crate::engine::checkpoint::UNet2DConfig;
use crate::engine::model::UNet2DModel;
use crate::engine::model::params::NamedParam;
use crate::engine::store::{ModelSpec, bind_tensors, to_tensor_map};
use anyhow::{Result, anyhow, bail};
use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use std::collections::BTreeMap;

/// What dropping the projections changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DroppedProjections {
    /// How many were removed.
    pub count: usize,
    /// Largest |eps| difference between the model with and without them, over
    /// [`PROBES`] N(0, 1) images at timesteps spread over the schedule.
    pub max_eps_diff: f64,
    /// Mean |eps| difference over the same probes.
    pub mean_eps_diff: f64,
}

/// Probe images the difference is measured on (seeded N(0, 1)).
pub const PROBES: usize = 8;

/// Removes the projections from `params` (a UNet of `spec`) and measures what
/// that changes. An error when the model has none.
pub fn drop_projections(
    spec: &ModelSpec,
    params: &mut Vec<NamedParam>,
    device: &Device,
) -> Result<DroppedProjections> {
    let ModelSpec::UNet(config) = spec else {
        bail!("--drop-projections: only UNets have channel-wise projections");
    };
    let count = params
        .iter()
        .filter(|(k, _, _)| is_projection_key(k))
        .count();
    if count == 0 {
        bail!("--drop-projections: the merged model has no channel-wise projections to drop");
    }
    let with = unet_of(config, params, true, device)?;
    params.retain(|(k, _, _)| !is_projection_key(k));
    let without = unet_of(config, params, false, device)?;
    let size = config.sample_size.unwrap_or(32);
    let shape = [PROBES, config.in_channels, size, size];
    let mut rng = StdRng::seed_from_u64(0);
    let noise: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| rng.sample(StandardNormal))
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(noise, shape), device);
    let last = config.num_train_timesteps.unwrap_or(1000).saturating_sub(1) as f32;
    let t: Vec<f32> = (0..PROBES)
        .map(|i| (last * i as f32 / (PROBES - 1) as f32).round())
        .collect();
    let diff = (with.forward(x.clone(), &t) - without.forward(x, &t)).abs();
    let values = diff
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("{e:?}"))?;
    let max = values.iter().fold(0.0f64, |m, &v| m.max(v as f64));
    let mean = values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64;
    Ok(DroppedProjections {
        count,
        max_eps_diff: max,
        mean_eps_diff: mean,
    })
}

fn unet_of(
    config: &UNet2DConfig,
    params: &[NamedParam],
    projections: bool,
    device: &Device,
) -> Result<UNet2DModel> {
    let mut model = UNet2DModel::new(config, 0, device)?;
    if projections {
        model = model.with_projections(config, device);
    }
    bind_tensors(model, &to_tensor_map(params.to_vec(), &BTreeMap::new())?)
}
