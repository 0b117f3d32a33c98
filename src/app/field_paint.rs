//! Fields (the loss landscape, the cosine matrices) drawn by `shaders/field.wgsl` inside egui's own
//! render pass through a wgpu paint callback: the lattice goes to the device
//! as a storage buffer when it changes, and every pixel of the map is
//! interpolated, coloured and contoured there, at any window size. The
//! reference is [`crate::engine::render::field`].

#[cfg(test)]
use crate::engine::render::field::Interp;
use crate::engine::render::field::{CONTOUR_ALPHA, Field, FieldStyle};
use eframe::egui_wgpu::{self, wgpu};
use std::collections::HashMap;
use std::sync::Arc;

/// The WGSL source.
pub const FIELD_WGSL: &str = include_str!("../../shaders/field.wgsl");

/// The pipeline and one slot of device buffers per field on the screen, kept
/// in egui's callback resources.
pub struct FieldPipeline {
    pipeline: wgpu::RenderPipeline,
    layout: wgpu::BindGroupLayout,
    slots: HashMap<u64, Slot>,
}

struct Slot {
    values: wgpu::Buffer,
    params: wgpu::Buffer,
    bind: wgpu::BindGroup,
    /// The [`FieldCallback::generation`] whose values the buffer holds.
    generation: u64,
}

/// The shader's `Params` (std140-compatible: eight 4-byte fields).
fn params_bytes(field: &Field, style: &FieldStyle) -> [u8; 32] {
    let words: [u32; 8] = [
        style.lo.to_bits(),
        style.hi.to_bits(),
        field.g as u32,
        style.bands,
        style.map.shader_id(),
        CONTOUR_ALPHA.to_bits(),
        style.interp.shader_id(),
        0,
    ];
    let mut out = [0u8; 32];
    for (k, w) in words.iter().enumerate() {
        out[k * 4..k * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    out
}

impl FieldPipeline {
    /// The pipeline for a render pass into `format` with one sample per pixel
    /// and no depth buffer (egui's pass in this program).
    pub fn new(device: &wgpu::Device, format: wgpu::TextureFormat) -> Self {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("field.wgsl"),
            source: wgpu::ShaderSource::Wgsl(FIELD_WGSL.into()),
        });
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::FRAGMENT,
            ty: wgpu::BindingType::Buffer {
                ty,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("field"),
            entries: &[
                entry(0, wgpu::BufferBindingType::Storage { read_only: true }),
                entry(1, wgpu::BufferBindingType::Uniform),
            ],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("field"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("field"),
            layout: Some(&pipeline_layout),
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs_main"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs_main"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            primitive: wgpu::PrimitiveState::default(),
            depth_stencil: None,
            multisample: wgpu::MultisampleState::default(),
            multiview_mask: None,
            cache: None,
        });
        Self {
            pipeline,
            layout,
            slots: HashMap::new(),
        }
    }

    /// Puts `field` (when `generation` is new) and `style` on the device for `key`.
    pub fn upload(
        &mut self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        key: u64,
        field: &Field,
        style: &FieldStyle,
        generation: u64,
    ) {
        // the values are packed only when they go to the device, not every frame
        let bytes = || -> Vec<u8> { field.values.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let size = (field.values.len() * 4) as u64;
        let fits = self
            .slots
            .get(&key)
            .is_some_and(|s| s.values.size() == size);
        if !fits {
            let values = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("field values"),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let params = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("field params"),
                size: 32,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("field"),
                layout: &self.layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: values.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: params.as_entire_binding(),
                    },
                ],
            });
            queue.write_buffer(&values, 0, &bytes());
            self.slots.insert(
                key,
                Slot {
                    values,
                    params,
                    bind,
                    generation,
                },
            );
        }
        let slot = self.slots.get_mut(&key).expect("inserted above");
        if slot.generation != generation {
            queue.write_buffer(&slot.values, 0, &bytes());
            slot.generation = generation;
        }
        queue.write_buffer(&slot.params, 0, &params_bytes(field, style));
    }

    /// Draws the field of `key` over the pass's viewport.
    pub fn draw(&self, pass: &mut wgpu::RenderPass<'_>, key: u64) {
        let Some(slot) = self.slots.get(&key) else {
            return;
        };
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &slot.bind, &[]);
        pass.draw(0..6, 0..1);
    }
}

/// Adds the pipeline to a window's renderer; afterwards [`FieldCallback`]s draw.
pub fn register(render_state: &egui_wgpu::RenderState) {
    let pipeline = FieldPipeline::new(&render_state.device, render_state.target_format);
    render_state
        .renderer
        .write()
        .callback_resources
        .insert(pipeline);
}

/// Where the UI keeps whether the renderer has the pipeline.
fn available_id() -> egui::Id {
    egui::Id::unique("deme-studio field pipeline")
}

/// Records, for this frame's widgets, whether the renderer has the pipeline
/// ([`register`]ed); without it they paint their fields themselves.
pub fn mark_available(ctx: &egui::Context, available: bool) {
    ctx.data_mut(|d| d.insert_temp(available_id(), available));
}

/// Whether [`FieldCallback`]s draw in this UI (see [`mark_available`]).
pub fn available(ui: &egui::Ui) -> bool {
    ui.ctx()
        .data(|d| d.get_temp::<bool>(available_id()))
        .unwrap_or(false)
}

/// A hash of the field's values, so that an unchanged lattice is not uploaded again.
pub fn generation_of(field: &Field) -> u64 {
    // FNV-1a over the bits
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in &field.values {
        h ^= u64::from(v.to_bits());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ field.g as u64
}

/// One field drawn in a rectangle of the UI.
pub struct FieldCallback {
    /// Which slot of device buffers (one per field on the screen).
    pub key: u64,
    /// The lattice.
    pub field: Arc<Field>,
    /// How it is drawn.
    pub style: FieldStyle,
    /// [`generation_of`] the field.
    pub generation: u64,
}

impl egui_wgpu::CallbackTrait for FieldCallback {
    fn prepare(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        _screen: &egui_wgpu::ScreenDescriptor,
        _encoder: &mut wgpu::CommandEncoder,
        resources: &mut egui_wgpu::CallbackResources,
    ) -> Vec<wgpu::CommandBuffer> {
        if let Some(p) = resources.get_mut::<FieldPipeline>() {
            p.upload(
                device,
                queue,
                self.key,
                &self.field,
                &self.style,
                self.generation,
            );
        }
        Vec::new()
    }

    fn paint(
        &self,
        _info: egui::PaintCallbackInfo,
        pass: &mut wgpu::RenderPass<'static>,
        resources: &egui_wgpu::CallbackResources,
    ) {
        if let Some(p) = resources.get::<FieldPipeline>() {
            p.draw(pass, self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::render::ColorMap;
    use crate::engine::render::field::render;

    /// Renders `field` offscreen through the pipeline into a `w x h` RGBA8 target.
    fn render_on_device(field: &Field, style: &FieldStyle, w: u32, h: u32) -> Vec<u8> {
        let (_, shared) = crate::engine::shared_wgpu::create_shared(true)
            .expect("a wgpu adapter (install mesa-vulkan-drivers for the software one)");
        let (device, queue) = (&shared.device, &shared.queue);
        let format = wgpu::TextureFormat::Rgba8Unorm;
        let mut pipeline = FieldPipeline::new(device, format);
        pipeline.upload(device, queue, 7, field, style, generation_of(field));
        let target = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("field test target"),
            size: wgpu::Extent3d {
                width: w,
                height: h,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let view = target.create_view(&wgpu::TextureViewDescriptor::default());
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("field test"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pipeline.draw(&mut pass, 7);
        }
        queue.submit([encoder.finish()]);
        crate::engine::render::texture_readback::read_rgba8(device, queue, &target)
            .expect("the render reads back")
    }

    /// A smooth field with a valley and a hole, on an odd-sized target.
    fn case() -> (Field, FieldStyle) {
        let g = 9;
        let mut values: Vec<f32> = (0..g * g)
            .map(|k| {
                let (x, y) = ((k % g) as f32 / 8.0, (k / g) as f32 / 8.0);
                0.02 + 0.01 * ((x - 0.6).powi(2) + 2.0 * (y - 0.3).powi(2))
                    + 0.002 * (6.0 * x).sin()
            })
            .collect();
        values[g * 7 + 2] = f32::NAN;
        let finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let lo = finite.iter().copied().fold(f32::INFINITY, f32::min);
        let hi = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let style = FieldStyle {
            lo,
            hi,
            bands: 8,
            map: ColorMap::Viridis,
            interp: Interp::Bicubic,
        };
        (Field { g, values }, style)
    }

    #[test]
    fn the_shader_draws_what_its_cpu_reference_draws() {
        let (field, style) = case();
        let (w, h) = (157, 131);
        let gpu = render_on_device(&field, &style, w, h);
        let cpu = render(&field, &style, w, h);
        assert_eq!(gpu.len(), cpu.len());
        let pixels = (w * h) as usize;
        let mut off = 0;
        let mut worst_colour = 0;
        for (a, b) in gpu.chunks_exact(4).zip(cpu.chunks_exact(4)) {
            let d = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y)).max().unwrap();
            if d > 1 {
                off += 1;
            } else {
                worst_colour = worst_colour.max(d);
            }
        }
        // colours agree within one level; a contour pixel may move by one
        // where the field is within rounding of a level (at most 0.5% of pixels)
        assert!(off * 200 <= pixels, "{off} of {pixels} pixels differ");
        assert!(worst_colour <= 1);
        // the picture has contour lines and the hole, so the comparison has teeth
        let contour_pixels = (0..w * h)
            .filter(|&k| {
                let (x, y) =
                    field.lattice_of_pixel((k % w) as f32, (k / w) as f32, w as f32, h as f32);
                let plain = style.map.map(field.at(x, y), style.lo, style.hi);
                cpu[(k * 4) as usize..(k * 4 + 3) as usize] != plain
            })
            .count();
        assert!(contour_pixels > 100, "{contour_pixels} contour pixels");
        assert!(cpu.chunks_exact(4).any(|p| p[..3] == [128, 128, 128]));
    }

    #[test]
    fn a_matrix_of_cells_draws_as_its_reference() {
        // a 7 x 7 cosine matrix in the diverging map, no contours, on a size
        // that does not divide into whole cells
        let g = 7;
        let field = Field {
            g,
            values: (0..g * g)
                .map(|k| ((k % g) as f32 - (k / g) as f32) / 6.0)
                .collect(),
        };
        let style = FieldStyle {
            lo: -1.0,
            hi: 1.0,
            bands: 0,
            map: ColorMap::Diverging,
            interp: Interp::Nearest,
        };
        let (w, h) = (101, 101);
        let gpu = render_on_device(&field, &style, w, h);
        let cpu = render(&field, &style, w, h);
        let off = gpu
            .chunks_exact(4)
            .zip(cpu.chunks_exact(4))
            .filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.abs_diff(*y) > 1))
            .count();
        // only pixels on a cell boundary may fall to the other side
        assert!(off * 100 <= (w * h) as usize, "{off} pixels differ");
        let distinct: std::collections::BTreeSet<[u8; 3]> =
            cpu.chunks_exact(4).map(|p| [p[0], p[1], p[2]]).collect();
        assert_eq!(distinct.len(), 13, "one colour per diagonal");
    }

    #[test]
    fn an_unchanged_field_keeps_its_generation() {
        let (a, _) = case();
        let mut b = a.clone();
        assert_eq!(generation_of(&a), generation_of(&b));
        b.values[0] += 1e-6;
        assert_ne!(generation_of(&a), generation_of(&b));
    }
}
