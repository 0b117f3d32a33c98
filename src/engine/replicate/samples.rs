//! Generating the same images from every model: one fixed initial noise,
//! deterministic DDIM (eta 0), in chunks.

use crate::engine::diffusion::{DdimConfig, NoiseSchedule, SamplerKind, SeededNoise, sample};
use crate::engine::grid_image::save_grid_png;
use crate::engine::train::CancelToken;
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Device, Tensor, TensorData};
use std::path::Path;

/// Images generated per forward pass.
const CHUNK: usize = 64;

/// `count` initial noise images of `shape`, from `seed` (host values, NCHW).
pub fn initial_noise(count: usize, shape: [usize; 3], seed: u64) -> Vec<f32> {
    SeededNoise::new(seed).next_vec(count * shape.iter().product::<usize>())
}

/// Runs DDIM with `steps` steps and eta 0 from every image of `noise`;
/// `progress(done, total)` after each chunk. Returns the images (NCHW values).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    eps: &dyn Fn(Tensor<4>, &[f32]) -> Tensor<4>,
    noise: &[f32],
    shape: [usize; 3],
    schedule: &NoiseSchedule,
    steps: usize,
    device: &Device,
    cancel: &CancelToken,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>> {
    let per: usize = shape.iter().product();
    let total = noise.len() / per;
    let kind = SamplerKind::Ddim(DdimConfig {
        steps,
        eta: 0.0,
        clip_sample: true,
        ..DdimConfig::default()
    });
    let mut out = Vec::with_capacity(noise.len());
    // eta 0 draws no noise; the source is only there to satisfy the sampler.
    let mut unused = SeededNoise::new(0);
    for (k, chunk) in noise.chunks(CHUNK * per).enumerate() {
        let n = chunk.len() / per;
        let x_t = Tensor::<4>::from_data(
            TensorData::new(chunk.to_vec(), [n, shape[0], shape[1], shape[2]]),
            device,
        );
        let x0 = sample(
            kind,
            schedule,
            x_t,
            &mut unused,
            &mut |x, t| eps(x, &vec![t as f32; n]),
            &mut |_, _, _| !cancel.is_cancelled(),
        );
        let Some(x0) = x0 else {
            bail!("cancelled while sampling");
        };
        let values = x0
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow!("reading samples: {e:?}"))?;
        if values.iter().any(|v| !v.is_finite()) {
            bail!("sampling produced non-finite values");
        }
        out.extend(values);
        progress((k * CHUNK + n).min(total), total);
    }
    Ok(out)
}

/// Saves the first `count` images as a PNG grid.
pub fn save_grid(path: &Path, images: &[f32], count: usize, shape: [usize; 3]) -> Result<()> {
    let per: usize = shape.iter().product();
    let n = count.min(images.len() / per);
    if n == 0 {
        return Ok(());
    }
    save_grid_png(path, &images[..n * per], n, shape[0], shape[1], shape[2])
        .with_context(|| format!("writing {}", path.display()))
}
