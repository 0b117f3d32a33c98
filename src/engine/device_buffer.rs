//! The wgpu buffer behind a tensor on the wgpu backend, for passes of our own
//! WGSL that read a tensor where it lies (no copy through host memory).

use anyhow::{Result, anyhow};
use burn::backend::wgpu::{CubeBackend, CubeTensor, WgpuResource};
use burn::backend::{BackendTensor, DispatchTensor, DispatchTensorKind};
use burn::tensor::{DType, Tensor};
use cubecl_wgpu::{AutoCompiler, WgpuServer};

/// A tensor's f32 values in a wgpu buffer, held in place while this lives.
pub struct DeviceBuffer {
    /// The buffer, with the byte offset and length of the values in it.
    resource: WgpuResource,
    /// Keeps the allocation from being freed, reused or written in place
    /// while a pass reads it (the resource alone pins it too; the tensor also
    /// keeps burn from writing over it).
    _tensor: CubeTensor,
    _pin: Box<dyn Send + Sync>,
    /// Elements, in row-major order of the tensor's shape.
    pub len: usize,
}

impl DeviceBuffer {
    /// The buffer the values lie in.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.resource.buffer
    }

    /// Byte offset of the first value in [`Self::buffer`].
    pub fn offset(&self) -> u64 {
        self.resource.offset
    }
}

/// The buffer behind `x` when it is an f32 tensor computed by burn's wgpu
/// runtime; `None` for tensors elsewhere (the CPU backend, another cubecl
/// runtime) and for values not laid out in plain row-major order (a strided
/// view, a buffer tiled for a matmul): the caller then reads `x` the usual way.
///
/// The work that computes `x` is submitted to the device's queue before this
/// returns, so a pass submitted to the same queue afterwards reads its values
/// (call it on the thread that computed `x`: burn's streams are per thread).
pub fn device_buffer<const D: usize>(x: &Tensor<D>) -> Result<Option<DeviceBuffer>> {
    if x.dtype() != DType::F32 {
        return Ok(None);
    }
    let DispatchTensor { kind, .. } = x.clone().into_dispatch();
    let fusion = match kind {
        DispatchTensorKind::Cube(BackendTensor::Float(f)) => f,
        _ => return Ok(None),
    };
    let client = fusion.client.clone();
    let cube: CubeTensor = client.resolve_tensor_float::<CubeBackend>(fusion);
    if !matches!(cube.device, burn::backend::CubeDevice::Wgpu(_)) {
        return Ok(None);
    }
    if cube.meta.is_tiled() || !cube.is_contiguous() {
        return Ok(None);
    }
    let len = cube.meta.shape().num_elements();
    let managed = cube
        .client
        .get_resource::<WgpuServer<AutoCompiler>>(cube.handle.clone())
        .map_err(|e| anyhow!("reaching the tensor's wgpu buffer: {e:?}"))?;
    // the work that computes `x` is encoded now; submit it, so that a pass
    // submitted to the queue after this reads finished values
    cube.client
        .flush()
        .map_err(|e| anyhow!("submitting the tensor's work: {e:?}"))?;
    let resource = managed.resource().clone();
    Ok(Some(DeviceBuffer {
        resource,
        _tensor: cube,
        _pin: Box::new(managed),
        len,
    }))
}
