//! Diffusion core: beta schedule, q_sample, DDPM and DDIM samplers.
