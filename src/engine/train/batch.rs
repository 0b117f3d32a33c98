//! Training batches: images (or points) drawn with replacement, uniform timesteps
//! and Gaussian noise, all from one seeded host RNG so a run is reproducible on
//! every backend.

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

/// A set of training items of one shape, kept on the host.
pub struct BatchSampler {
    items: Vec<f32>,
    /// `[c, h, w]` of one item (points: `[dim, 1, 1]`).
    pub item_shape: [usize; 3],
    len: usize,
    description: String,
}

/// One batch, on the model's device.
pub struct Batch {
    /// Clean data `[n, c, h, w]`.
    pub x0: Tensor<4>,
    /// Standard normal noise of the same shape.
    pub noise: Tensor<4>,
    /// One timestep per item.
    pub t: Vec<usize>,
}

impl BatchSampler {
    /// Wraps `items` (row-major, `len * c * h * w` values).
    pub fn new(items: Vec<f32>, item_shape: [usize; 3], description: impl Into<String>) -> Self {
        let per: usize = item_shape.iter().product();
        assert!(
            per > 0 && items.len().is_multiple_of(per),
            "items do not tile the item shape"
        );
        Self {
            len: items.len() / per,
            items,
            item_shape,
            description: description.into(),
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the data is (for checkpoint metadata).
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The RNG stream of training step `step`.
    pub fn rng_for_step(&self, seed: u64, step: u64) -> StdRng {
        StdRng::seed_from_u64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Gathers the given items into `[n, c, h, w]`.
    pub fn gather(&self, indices: &[usize], device: &Device) -> Tensor<4> {
        let per: usize = self.item_shape.iter().product();
        let mut out = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            out.extend_from_slice(&self.items[i * per..(i + 1) * per]);
        }
        let [c, h, w] = self.item_shape;
        Tensor::from_data(TensorData::new(out, [indices.len(), c, h, w]), device)
    }

    /// A random batch: items with replacement, `t ~ U{0..T-1}`, `noise ~ N(0, I)`.
    pub fn batch(&self, rng: &mut StdRng, n: usize, timesteps: usize, device: &Device) -> Batch {
        self.batch_with(rng, n, device, |rng| {
            (0..n).map(|_| rng.random_range(0..timesteps)).collect()
        })
    }

    /// A random batch whose timesteps come from `draw_t` (which must return `n`).
    ///
    /// The RNG is used in a fixed order: item indices, then `draw_t`, then the noise.
    pub fn batch_with(
        &self,
        rng: &mut StdRng,
        n: usize,
        device: &Device,
        draw_t: impl FnOnce(&mut StdRng) -> Vec<usize>,
    ) -> Batch {
        let indices: Vec<usize> = (0..n).map(|_| rng.random_range(0..self.len)).collect();
        let t = draw_t(rng);
        debug_assert_eq!(t.len(), n, "one timestep per item");
        let noise = normal_tensor(
            rng,
            [
                n,
                self.item_shape[0],
                self.item_shape[1],
                self.item_shape[2],
            ],
            device,
        );
        Batch {
            x0: self.gather(&indices, device),
            noise,
            t,
        }
    }
}

/// Standard normal values from a host RNG, uploaded to `device`.
pub fn normal_tensor(rng: &mut StdRng, shape: [usize; 4], device: &Device) -> Tensor<4> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}
