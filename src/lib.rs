//! deme-studio: Decouple-then-Merge (DeMe) finetuning of diffusion models.
//!
//! The library holds the engine (everything that computes, no GUI), the desktop
//! application and the command line; the `deme-studio` binary is a thin shell.

pub mod app;
pub mod cli;
pub mod engine;
