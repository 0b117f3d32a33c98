//! Checkpoints: safetensors and diffusers folders.
