//! Test-only access to the diffusers reference fixtures in `tests/fixtures/`
//! (written by `tests/fixtures/make_fixtures.py`).

use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

/// The fixture directory of this crate.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One fixture `.safetensors` file, read into memory.
pub struct Fixture {
    name: String,
    bytes: Vec<u8>,
}

impl Fixture {
    /// Read `tests/fixtures/<name>`.
    pub fn load(name: &str) -> Self {
        let path = fixtures_dir().join(name);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
        Self {
            name: name.to_owned(),
            bytes,
        }
    }

    fn view(&self, key: &str, dtype: Dtype) -> (Vec<usize>, &[u8]) {
        let st = SafeTensors::deserialize(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: not a safetensors file: {e}", self.name));
        let t = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("{}: no tensor {key}: {e}", self.name));
        assert_eq!(
            t.dtype(),
            dtype,
            "{}: {key} has dtype {:?}",
            self.name,
            t.dtype()
        );
        (t.shape().to_vec(), t.data())
    }

    /// Whether the file holds a tensor called `key`.
    pub fn has(&self, key: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .map(|st| st.tensor(key).is_ok())
            .unwrap_or(false)
    }

    /// A float32 tensor's shape and values.
    pub fn f32s(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, data) = self.view(key, Dtype::F32);
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (shape, v)
    }

    /// A float64 tensor's values.
    pub fn f64s(&self, key: &str) -> Vec<f64> {
        let (_, data) = self.view(key, Dtype::F64);
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    /// An int64 tensor's values, as `usize` (all fixture integers are
    /// non-negative timesteps or indices).
    pub fn usizes(&self, key: &str) -> Vec<usize> {
        let (_, data) = self.view(key, Dtype::I64);
        data.chunks_exact(8)
            .map(|c| usize::try_from(i64::from_le_bytes(c.try_into().unwrap())).unwrap())
            .collect()
    }

    /// A rank-4 float32 tensor on `device`.
    pub fn tensor4(&self, key: &str, device: &Device) -> Tensor<4> {
        let (shape, v) = self.f32s(key);
        let shape: [usize; 4] = shape.try_into().expect("rank-4 tensor");
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// The `k`-th `[N, C, H, W]` slice of a stacked `[K, N, C, H, W]` float32
    /// tensor, on `device`.
    pub fn stacked4(&self, key: &str, k: usize, device: &Device) -> Tensor<4> {
        let (shape, v) = self.f32s(key);
        assert_eq!(shape.len(), 5, "{key} is not a stack of rank-4 tensors");
        assert!(k < shape[0], "{key}: index {k} out of {}", shape[0]);
        let len: usize = shape[1..].iter().product();
        let slice = v[k * len..(k + 1) * len].to_vec();
        Tensor::from_data(
            TensorData::new(slice, [shape[1], shape[2], shape[3], shape[4]]),
            device,
        )
    }
}

/// Read a float tensor back to the host.
pub fn read_f32<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("float32 tensor")
}

/// Largest absolute elementwise difference.
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    read_f32(a)
        .iter()
        .zip(read_f32(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Replays a recorded diffusers scheduler trace (`file`) through a scheduler
/// given by its `timesteps`, `uses_noise(k)` and `step(model_output, k,
/// sample, noise)`: its timesteps must match, and every recorded step's result
/// within 1e-5. Long traces keep only some steps; `record_steps` says which.
pub fn replay_trace(
    file: &str,
    timesteps: &[usize],
    uses_noise: impl Fn(usize) -> bool,
    step: impl Fn(Tensor<4>, usize, Tensor<4>, Option<Tensor<4>>) -> Tensor<4>,
) {
    let device = Device::flex();
    let fx = Fixture::load(file);
    assert_eq!(timesteps, fx.usizes("timesteps"), "{file}: timesteps");
    let steps = if fx.has("record_steps") {
        fx.usizes("record_steps")
    } else {
        (0..timesteps.len()).collect()
    };
    for (i, &k) in steps.iter().enumerate() {
        let noise = uses_noise(k).then(|| fx.stacked4("noises", i, &device));
        let prev = step(
            fx.stacked4("model_outputs", i, &device),
            k,
            fx.stacked4("samples", i, &device),
            noise,
        );
        let err = max_abs_diff(prev, fx.stacked4("prevs", i, &device));
        assert!(err < 1e-5, "{file}: step {k}: max |diff| = {err:e}");
    }
}
