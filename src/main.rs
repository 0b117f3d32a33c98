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
/// A training step frees and reallocates the same large buffers within the
/// step: with mimalloc's default (1 s) they were returned and faulted in again,
/// zeroed by the kernel, and at 5 s still were for `ddpm-cifar10-32` (about
/// 3 s a step at batch 16: 55,000 page faults in 8 steps against 1,900 at
/// 60 s). After a minute idle the memory goes back.
const KEEP_FREED_MS: std::ffi::c_long = 60_000;

fn keep_freed_pages() {
    // SAFETY: called once at the start of main, before any other thread exists.
    // (A default: MIMALLOC_PURGE_DELAY in the environment still overrides it.)
    unsafe { libmimalloc_sys::mi_option_set_default(PURGE_DELAY, KEEP_FREED_MS) };
}

/// Environment variables by which a user steers Mesa's Vulkan device-select
/// layer (or turns it off); when any is set, the layer is left as it is.
const DEVICE_SELECT_VARS: [&str; 3] = ["NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT", "DRI_PRIME"];

/// Whether Mesa's device-select layer should be turned off for a headless job:
/// only when the session has no usable runtime folder (`runtime_dir`, the
/// value of `XDG_RUNTIME_DIR`) and the user steers the layer by none of
/// `DEVICE_SELECT_VARS` (`is_set` answers for each).
fn quiet_device_select(
    runtime_dir: Option<&std::ffi::OsStr>,
    is_set: impl Fn(&str) -> bool,
) -> bool {
    let usable = runtime_dir.is_some_and(|d| !d.is_empty() && std::path::Path::new(d).is_dir());
    !usable && !DEVICE_SELECT_VARS.iter().any(|v| is_set(v))
}

/// The layer asks the Wayland compositor which GPU drives the display, to put
/// it first among the Vulkan devices; without a runtime folder (ssh, sudo,
/// containers, cron) libwayland prints "error: XDG_RUNTIME_DIR is invalid..."
/// to stderr at each adapter listing, which reads as a failure of the job. A
/// headless job has no display, and `--device auto` chooses among all the
/// adapters itself, so there the layer is switched off before the first probe.
fn quiet_headless_vulkan_probe() {
    let runtime_dir = std::env::var_os("XDG_RUNTIME_DIR");
    if quiet_device_select(runtime_dir.as_deref(), |v| std::env::var_os(v).is_some()) {
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
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

/// Stack of each compute worker: a headless job runs on one (below), with
/// the main thread's usual size.
const WORKER_STACK: usize = 8 << 20;

/// Runs `job` on a worker of the global rayon pool and waits for it. The
/// kernels' parallel loops then start from inside the pool: the calling
/// worker takes a share of the work, and the pool's threads are not woken
/// and put back to sleep around every loop as they are for a caller outside.
fn on_pool_worker<R: Send>(job: impl FnOnce() -> R + Send) -> R {
    // the pool may already exist (a test harness): then its settings stay
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(WORKER_STACK)
        .build_global();
    let mut out = None;
    rayon::scope(|_| out = Some(job()));
    out.expect("the job ran")
}

fn main() -> ExitCode {
    keep_freed_pages();
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_app(cli.device, cli.view.map(view)),
        Some(command) => {
            quiet_headless_vulkan_probe();
            on_pool_worker(|| run(command, cli.device))
        }
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
    fn a_headless_job_runs_on_a_pool_worker_and_returns_its_result() {
        assert!(rayon::current_thread_index().is_none());
        let (index, value) = on_pool_worker(|| (rayon::current_thread_index(), 41 + 1));
        assert!(index.is_some(), "the job ran outside the pool");
        assert_eq!(value, 42);
    }

    #[test]
    fn device_select_is_quieted_only_without_a_runtime_folder_or_a_user_choice() {
        use std::ffi::OsStr;
        let none = |_: &str| false;
        let dir = tempfile::tempdir().unwrap();
        assert!(quiet_device_select(None, none));
        assert!(quiet_device_select(Some(OsStr::new("")), none));
        assert!(quiet_device_select(
            Some(OsStr::new("/no/such/runtime/dir")),
            none
        ));
        assert!(!quiet_device_select(Some(dir.path().as_os_str()), none));
        for var in DEVICE_SELECT_VARS {
            assert!(
                !quiet_device_select(None, |v| v == var),
                "{var} is the user's"
            );
        }
    }

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // the delay is the only option whose default is 1000 (ms) in mimalloc v3
        let get = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        assert_eq!(get(), 1000);
        keep_freed_pages();
        assert_eq!(get(), KEEP_FREED_MS);
    }
}
