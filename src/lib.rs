//! deme-studio: Decouple-then-Merge (DeMe) finetuning of diffusion models.
//!
//! The library holds the engine (everything that computes, no GUI) and the
//! application; the `deme-studio` binary is a thin CLI over both.

pub mod engine;
