//! Sources of the standard-normal noise a sampler consumes.
//!
//! Noise is produced on the host and uploaded, so a seeded run gives the same
//! numbers on every backend; [`RecordedNoise`] replays fixed tensors (e.g.
//! the noise diffusers drew) for parity tests.

use std::collections::VecDeque;

use burn::tensor::{Device, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Something that hands out standard-normal noise tensors, one per request.
pub trait NoiseSource {
    /// The next noise tensor of `shape`, on `device`.
    fn next(&mut self, shape: [usize; 4], device: &Device) -> Tensor<4>;
}

/// Deterministic host-side Gaussian noise: `rand`'s `StdRng` seeded with a
/// `u64`, sampled with `rand_distr::StandardNormal` in row-major order.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    rng: StdRng,
}

impl SeededNoise {
    /// A noise stream that is fully determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// `len` standard-normal values from the stream, on the host.
    pub fn next_vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.rng.sample(StandardNormal)).collect()
    }
}

impl NoiseSource for SeededNoise {
    fn next(&mut self, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let values = self.next_vec(shape.iter().product());
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

/// Plays back a fixed list of noise tensors in order.
#[derive(Debug, Clone, Default)]
pub struct RecordedNoise {
    queue: VecDeque<Tensor<4>>,
}

impl RecordedNoise {
    /// Replay `tensors`, first element first.
    pub fn new(tensors: Vec<Tensor<4>>) -> Self {
        Self {
            queue: tensors.into(),
        }
    }

    /// How many tensors have not been handed out yet.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

impl NoiseSource for RecordedNoise {
    /// # Panics
    /// When the recording is exhausted or the next tensor has another shape.
    fn next(&mut self, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let t = self
            .queue
            .pop_front()
            .expect("RecordedNoise: no recorded noise left");
        assert_eq!(t.dims(), shape, "RecordedNoise: recorded shape differs");
        t.to_device(device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::diffusion::test_fixtures::read_f32;

    #[test]
    fn seeded_noise_is_deterministic_and_standard() {
        let device = Device::flex();
        let a = read_f32(SeededNoise::new(7).next([2, 3, 16, 16], &device));
        let b = read_f32(SeededNoise::new(7).next([2, 3, 16, 16], &device));
        let c = read_f32(SeededNoise::new(8).next([2, 3, 16, 16], &device));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let n = a.len() as f64;
        let mean = a.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = a
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!((var - 1.0).abs() < 0.1, "variance {var}");
    }

    #[test]
    fn seeded_noise_continues_the_stream() {
        let device = Device::flex();
        let mut s = SeededNoise::new(3);
        let first = read_f32(s.next([1, 1, 2, 2], &device));
        let second = read_f32(s.next([1, 1, 2, 2], &device));
        assert_ne!(first, second);
        let whole = SeededNoise::new(3).next_vec(8);
        assert_eq!([first, second].concat(), whole);
    }

    #[test]
    fn recorded_noise_plays_back_in_order() {
        let device = Device::flex();
        let t1 = Tensor::<4>::from_data(TensorData::new(vec![1.0f32; 4], [1, 1, 2, 2]), &device);
        let t2 = Tensor::<4>::from_data(TensorData::new(vec![2.0f32; 4], [1, 1, 2, 2]), &device);
        let mut r = RecordedNoise::new(vec![t1, t2]);
        assert_eq!(r.remaining(), 2);
        assert_eq!(read_f32(r.next([1, 1, 2, 2], &device)), vec![1.0; 4]);
        assert_eq!(read_f32(r.next([1, 1, 2, 2], &device)), vec![2.0; 4]);
        assert_eq!(r.remaining(), 0);
    }
}
