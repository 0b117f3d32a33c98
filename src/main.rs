//! `deme-studio`: with no subcommand, the desktop application; otherwise a headless job.

use clap::Parser;
use deme_studio::cli::{Cli, run};
use std::process::ExitCode;

/// Tensors are large, short-lived buffers: mimalloc reuses their pages where the
/// system allocator maps and faults in fresh ones for each.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
