//! Diffusion core: beta schedule, q_sample, DDPM and DDIM samplers.
//!
//! The schedulers port diffusers' `DDPMScheduler` and `DDIMScheduler`
//! (epsilon prediction, "leading" timestep spacing) and are checked step by
//! step against traces recorded from diffusers (`tests/fixtures/`).

pub mod ddim;
pub mod ddpm;
pub mod noise;
pub mod sampler;
pub mod schedule;

#[cfg(test)]
pub(crate) mod test_fixtures;

pub use ddim::{DdimConfig, DdimScheduler};
pub use ddpm::{DdpmConfig, DdpmScheduler, VarianceType};
pub use noise::{NoiseSource, RecordedNoise, SeededNoise};
pub use sampler::{SamplerKind, sample};
pub use schedule::NoiseSchedule;
