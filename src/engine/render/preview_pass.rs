//! The preview pass: sampled images laid out from the sampler's tensor
//! buffer straight into a texture by `shaders/preview.wgsl`, on the device
//! burn computes on, without a copy through host memory. The reference is
//! [`crate::engine::grid_image::grid_rgb_in`].

use super::texture_readback::read_rgba8;
use crate::engine::device_buffer::device_buffer;
use crate::engine::grid_image::{GRID_GAP, grid_size};
use anyhow::{Result, anyhow, bail};
use burn::tensor::Tensor;

/// The WGSL source.
pub const PREVIEW_WGSL: &str = include_str!("../../../shaders/preview.wgsl");

/// The compute pipeline of `cs_grid` on one device.
#[derive(Clone)]
pub struct PreviewPass {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

impl std::fmt::Debug for PreviewPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreviewPass")
    }
}

impl PreviewPass {
    /// The pipeline on `device` (the one burn computes on), submitting to `queue`.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("preview.wgsl"),
            source: wgpu::ShaderSource::Wgsl(PREVIEW_WGSL.into()),
        });
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        };
        let buffer = |ty| wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("preview"),
            entries: &[
                entry(
                    0,
                    buffer(wgpu::BufferBindingType::Storage { read_only: true }),
                ),
                entry(1, buffer(wgpu::BufferBindingType::Uniform)),
                entry(
                    2,
                    wgpu::BindingType::StorageTexture {
                        access: wgpu::StorageTextureAccess::WriteOnly,
                        format: wgpu::TextureFormat::Rgba8Unorm,
                        view_dimension: wgpu::TextureViewDimension::D2,
                    },
                ),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("preview"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("preview"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("cs_grid"),
            compilation_options: Default::default(),
            cache: None,
        });
        Self {
            device: device.clone(),
            queue: queue.clone(),
            pipeline,
            layout,
        }
    }

    /// Lays `x` (`[n, c, h, w]`, 1 or 3 channels) out in `cols` columns into
    /// a new RGBA8 texture by a pass submitted to the queue; `None` when `x`
    /// is not on burn's wgpu runtime, not laid out in rows, or larger than the
    /// device's limits for one texture or binding (the caller then reads it
    /// back the usual way). The texture is drawable as soon as this
    /// returns: later submissions to the queue (a window's) come after the pass.
    /// Call it on the thread that computed `x`.
    pub fn draw(&self, x: &Tensor<4>, cols: usize) -> Result<Option<wgpu::Texture>> {
        let [n, c, h, w] = x.dims();
        if c != 1 && c != 3 {
            bail!("cannot draw {c}-channel images (1 or 3 expected)");
        }
        if n == 0 || h == 0 || w == 0 {
            bail!("no images to draw ({n} of {c}x{h}x{w})");
        }
        let Some(buf) = device_buffer(x)? else {
            return Ok(None);
        };
        let size = grid_size(n, h, w, cols);
        let limits = self.device.limits();
        let max_side = limits.max_texture_dimension_2d as usize;
        if size[0] > max_side
            || size[1] > max_side
            || buf.len as u64 * 4 > limits.max_storage_buffer_binding_size
        {
            // larger than the device takes in one texture or binding: the host path
            return Ok(None);
        }
        let texture = self.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("preview"),
            size: wgpu::Extent3d {
                width: size[0] as u32,
                height: size[1] as u32,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::STORAGE_BINDING
                | wgpu::TextureUsages::TEXTURE_BINDING
                | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        // bind from an offset the device accepts; the rest is `first`
        let align = u64::from(self.device.limits().min_storage_buffer_offset_alignment);
        let start = buf.offset() / align * align;
        let first = ((buf.offset() - start) / 4) as u32;
        let bytes = (u64::from(first) + buf.len as u64) * 4;
        let words: [u32; 8] = [
            n as u32,
            c as u32,
            h as u32,
            w as u32,
            cols.max(1) as u32,
            GRID_GAP as u32,
            first,
            0,
        ];
        let params = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("preview params"),
            size: 32,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut raw = [0u8; 32];
        for (k, v) in words.iter().enumerate() {
            raw[k * 4..k * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        self.queue.write_buffer(&params, 0, &raw);
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("preview"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: buf.buffer(),
                        offset: start,
                        size: std::num::NonZeroU64::new(bytes),
                    }),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: wgpu::BindingResource::TextureView(&view),
                },
            ],
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("preview"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(
                (size[0] as u32).div_ceil(8),
                (size[1] as u32).div_ceil(8),
                1,
            );
        }
        self.queue.submit([encoder.finish()]);
        // the pass holds the buffer now; `buf` may go
        drop(buf);
        Ok(Some(texture))
    }

    /// The pixels of a texture [`Self::draw`] made, RGBA row by row.
    pub fn read(&self, texture: &wgpu::Texture) -> Result<Vec<u8>> {
        read_rgba8(&self.device, &self.queue, texture)
    }

    /// The device the pass runs on.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// Waits until every pass submitted so far has run (benchmarks: the
    /// hand-off time up to a finished texture).
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| anyhow!("waiting for the device: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::grid_image::grid_rgb_in;
    use crate::engine::shared_wgpu::create_shared;
    use burn::tensor::{Device, TensorData};

    fn pass() -> (Device, PreviewPass) {
        let (compute, shared) = create_shared(true)
            .expect("a wgpu adapter (install mesa-vulkan-drivers for the software one)");
        (
            compute.device,
            PreviewPass::new(&shared.device, &shared.queue),
        )
    }

    /// Values over and beyond [-1, 1], with exact ties of the rounding.
    fn values(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| match i % 7 {
                0 => 0.0, // 127.5: a tie, rounds up
                1 => 1.5,
                2 => -3.0,
                3 => -0.6, // 51.0
                _ => ((i * 37) % 101) as f32 / 50.0 - 1.0,
            })
            .collect()
    }

    /// The texture as RGB bytes, the reference's layout.
    fn drawn(pass: &PreviewPass, x: &Tensor<4>, cols: usize) -> (u32, u32, Vec<u8>) {
        let t = pass.draw(x, cols).unwrap().expect("a tensor on the device");
        let rgba = pass.read(&t).unwrap();
        assert!(rgba.chunks_exact(4).all(|p| p[3] == 255), "opaque");
        let rgb = rgba
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        (t.width(), t.height(), rgb)
    }

    fn reference(v: &[f32], shape: [usize; 4], cols: usize) -> (u32, u32, Vec<u8>) {
        let img = grid_rgb_in(v, shape, cols).unwrap();
        (img.width(), img.height(), img.into_raw())
    }

    #[test]
    fn the_pass_lays_out_what_the_host_lays_out() {
        let (device, pass) = pass();
        for (shape, cols) in [
            ([5, 1, 3, 4], 3),
            ([3, 3, 5, 2], 2),
            ([16, 1, 7, 7], 8),
            ([1, 1, 1, 1], 1),
            ([4, 3, 3, 3], 8),
        ] {
            let v = values(shape.iter().product());
            let x = Tensor::<4>::from_data(TensorData::new(v.clone(), shape), &device);
            assert_eq!(
                drawn(&pass, &x, cols),
                reference(&v, shape, cols),
                "{shape:?} in {cols}"
            );
        }
    }

    /// The pass reads values of work burn had not yet submitted, and a
    /// tensor that starts inside its buffer (a slice).
    #[test]
    fn the_pass_reads_finished_work_and_slices() {
        let (device, pass) = pass();
        let shape = [6, 1, 5, 5];
        let x = Tensor::<4>::from_data(TensorData::new(values(150), shape), &device);
        let y = || (x.clone() * 0.5).tanh() * 2.0 - 0.25;
        let host: Vec<f32> = y().into_data().try_to_vec().unwrap();
        assert_eq!(drawn(&pass, &y(), 4), reference(&host, shape, 4));
        let tail = y().narrow(0, 3, 3);
        assert_eq!(
            drawn(&pass, &tail, 2),
            reference(&host[75..], [3, 1, 5, 5], 2)
        );
    }

    #[test]
    fn tensors_it_cannot_read_in_place_are_left_to_the_host() {
        let (device, pass) = pass();
        let data = || TensorData::new(values(24), [2, 1, 3, 4]);
        let x = Tensor::<4>::from_data(data(), &device);
        assert!(
            pass.draw(&x.swap_dims(2, 3), 2).unwrap().is_none(),
            "a strided view"
        );
        let cpu = Tensor::<4>::from_data(data(), &Device::flex());
        assert!(pass.draw(&cpu, 2).unwrap().is_none(), "a tensor on the CPU");
        let two = Tensor::<4>::from_data(TensorData::new(values(8), [2, 2, 2, 1]), &device);
        assert!(pass.draw(&two, 2).is_err(), "two channels are not an image");
        let side = pass.device().limits().max_texture_dimension_2d as usize;
        let wide = Tensor::<4>::zeros([1, 1, 1, side + 1], &device);
        assert!(
            pass.draw(&wide, 1).unwrap().is_none(),
            "wider than a texture can be"
        );
    }
}
