//! `bench handoff`: the preview hand-off on wgpu, from the sampler's last
//! step (its output computed on the device) to a texture the window can draw:
//! read back to the host, laid out there and uploaded (the path without our
//! pass, as egui uploads a picture) against laid out on the device by
//! `shaders/preview.wgsl` (no round trip). Both run on one shared device,
//! alternating, from the same finished tensor.

use super::{emit, median, stats_ms, sync};
use crate::engine::device::{Backend, ComputeDevice};
use crate::engine::grid_image::{grid_columns, grid_rgb_in};
use crate::engine::render::preview_pass::PreviewPass;
use crate::engine::shared_wgpu::create_shared;
use anyhow::{Context, Result, bail};
use burn::tensor::{Distribution, Tensor};
use clap::Args;
use std::time::Instant;

/// Arguments of `bench handoff`.
#[derive(Debug, Args)]
pub struct HandoffCase {
    /// Picture shapes `n x c x h x w`, comma-separated (one line each).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "16x1x28x28,16x3x32x32,64x3x32x32"
    )]
    pub shapes: Vec<String>,
    /// Timed repeats of each path (after one untimed warm-up of each).
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
}

fn parse_shape(s: &str) -> Result<[usize; 4]> {
    let v: Vec<usize> = s
        .split('x')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("`{s}`: a shape is n x c x h x w, e.g. 16x1x28x28"))?;
    match v.as_slice() {
        &[n, c, h, w] if n > 0 && (c == 1 || c == 3) && h > 0 && w > 0 => Ok([n, c, h, w]),
        _ => bail!("`{s}`: a shape is n x c x h x w with c = 1 or 3, e.g. 16x1x28x28"),
    }
}

/// The host path: read back, lay out, upload into a new texture, wait.
fn through_host(pass: &PreviewPass, queue: &wgpu::Queue, x: &Tensor<4>) -> Result<()> {
    let [n, c, h, w] = x.dims();
    let values: Vec<f32> = x
        .clone()
        .into_data()
        .try_into_vec()
        .map_err(|e| anyhow::anyhow!("reading back: {e:?}"))?;
    let rgb = grid_rgb_in(&values, [n, c, h, w], grid_columns(n))?;
    let rgba: Vec<u8> = rgb
        .as_raw()
        .chunks_exact(3)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    let size = wgpu::Extent3d {
        width: rgb.width(),
        height: rgb.height(),
        depth_or_array_layers: 1,
    };
    let texture = pass.device().create_texture(&wgpu::TextureDescriptor {
        label: Some("host preview"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba8Unorm,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    queue.write_texture(
        texture.as_image_copy(),
        &rgba,
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(4 * rgb.width()),
            rows_per_image: None,
        },
        size,
    );
    queue.submit([]);
    pass.wait()
}

/// The device path: the pass into a new texture, wait.
fn on_device(pass: &PreviewPass, x: &Tensor<4>) -> Result<()> {
    let [n, ..] = x.dims();
    pass.draw(x, grid_columns(n))?
        .context("the tensor is not readable in place")?;
    pass.wait()
}

/// Runs `bench handoff`.
pub fn run(c: HandoffCase, requested: &ComputeDevice) -> Result<()> {
    if requested.backend != Backend::Wgpu {
        bail!("the hand-off is a wgpu measurement: run it with --device wgpu");
    }
    let shapes: Vec<[usize; 4]> = c
        .shapes
        .iter()
        .map(|s| parse_shape(s))
        .collect::<Result<_>>()?;
    let (compute, shared) = create_shared(true)?;
    let device = &compute.device;
    let pass = PreviewPass::new(&shared.device, &shared.queue);
    let repeats = c.repeats.max(1);
    for shape in shapes {
        let noise = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), device);
        // the sampler's last step: a new output each time, finished on the device
        let last_step = |r: usize| -> Result<Tensor<4>> {
            let x = (noise.clone() * (1.0 + r as f32 * 1e-3)).tanh();
            sync(device)?;
            Ok(x)
        };
        let (mut host, mut dev) = (Vec::new(), Vec::new());
        for r in 0..=repeats {
            // alternate which path goes first
            for host_first in [r % 2 == 0, r % 2 != 0] {
                let x = last_step(2 * r + usize::from(host_first))?;
                let start = Instant::now();
                if host_first {
                    through_host(&pass, &shared.queue, &x)?;
                } else {
                    on_device(&pass, &x)?;
                }
                let t = start.elapsed().as_secs_f64();
                if r > 0 {
                    if host_first { &mut host } else { &mut dev }.push(t);
                }
            }
        }
        let [n, ch, h, w] = shape;
        emit(
            serde_json::json!({
                "case": "handoff",
                "shape": [n, ch, h, w],
                "host_ms": stats_ms(&host),
                "device_ms": stats_ms(&dev),
                "device_over_host": median(&dev) / median(&host),
                "repeats": repeats,
            }),
            &compute,
        );
    }
    Ok(())
}
