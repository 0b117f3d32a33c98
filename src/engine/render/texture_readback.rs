//! Reading an RGBA8 texture back to host memory (exports of pictures that
//! live on the device, and the shaders' tests).

use anyhow::{Context, Result, anyhow};
use std::time::Duration;

/// The pixels of `texture` (RGBA8, one mip level), row by row without padding.
pub fn read_rgba8(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    texture: &wgpu::Texture,
) -> Result<Vec<u8>> {
    let (w, h) = (texture.width(), texture.height());
    let padded =
        (w * 4).div_ceil(wgpu::COPY_BYTES_PER_ROW_ALIGNMENT) * wgpu::COPY_BYTES_PER_ROW_ALIGNMENT;
    let readback = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("texture readback"),
        size: u64::from(padded * h),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_texture_to_buffer(
        texture.as_image_copy(),
        wgpu::TexelCopyBufferInfo {
            buffer: &readback,
            layout: wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(padded),
                rows_per_image: None,
            },
        },
        texture.size(),
    );
    let submitted = queue.submit([encoder.finish()]);
    let (tx, rx) = std::sync::mpsc::channel();
    readback
        .slice(..)
        .map_async(wgpu::MapMode::Read, move |r| drop(tx.send(r)));
    device
        .poll(wgpu::PollType::Wait {
            submission_index: Some(submitted),
            timeout: Some(Duration::from_secs(60)),
        })
        .context("waiting for the texture copy")?;
    rx.recv()
        .context("the readback was dropped")?
        .map_err(|e| anyhow!("mapping the readback: {e}"))?;
    let data = readback
        .slice(..)
        .get_mapped_range()
        .map_err(|e| anyhow!("reading the readback: {e}"))?;
    Ok(data
        .chunks_exact(padded as usize)
        .flat_map(|row| row[..(w * 4) as usize].to_vec())
        .collect())
}
