//! `deme-studio`: with no subcommand, the desktop application (`app`);
//! otherwise a headless job (`cli`). Both sit over the engine.

use clap::Parser;
use deme_studio::app::{View, run_app};
use deme_studio::cli::{Cli, ViewArg, run};
use std::process::ExitCode;

/// Tensors are large, short-lived buffers: mimalloc reuses their pages where the
/// system allocator maps and faults in fresh ones for each.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, mimalloc v3).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed pages stay with the process before going back to the OS (ms).
/// A training step frees and reallocates the same large buffers every few
/// hundred milliseconds: with mimalloc's default (1 s) they were returned and
/// faulted in again, zeroed by the kernel. After 5 s idle the memory goes back.
const KEEP_FREED_MS: std::ffi::c_long = 5_000;

fn keep_freed_pages() {
    // SAFETY: called once at the start of main, before any other thread exists.
    // (A default: MIMALLOC_PURGE_DELAY in the environment still overrides it.)
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, KEEP_FREED_MS) };
}

/// The window's view that `--view` names.
fn view(arg: ViewArg) -> View {
    match arg {
        ViewArg::Merge => View::Merge,
        ViewArg::About => View::About,
        ViewArg::GradientConflicts => View::GradientConflicts,
        ViewArg::Train => View::Train,
        ViewArg::Landscape => View::Landscape,
        ViewArg::TaskVectors => View::TaskVectors,
        ViewArg::Teaching => View::Teaching,
    }
}

fn main() -> ExitCode {
    keep_freed_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_app(cli.device, cli.view.map(view)),
        Some(command) => run(command, cli.device),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // the delay is the only option whose default is 1000 (ms) in mimalloc v3
        let get = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(get(), 1000);
        keep_freed_pages();
        assert_eq!(get(), KEEP_FREED_MS);
    }
}
