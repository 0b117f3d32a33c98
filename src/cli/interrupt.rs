//! Ctrl-C handling for long jobs: the first Ctrl-C cancels the job's token (it
//! stops at the next step boundary and saves), a second one quits at once.

pub use imp::install;

/// Ctrl-C asks the job to stop at its next step boundary (saving every started
/// run); a second Ctrl-C quits at once.
#[cfg(unix)]
mod imp {
    use crate::engine::train::CancelToken;
    use std::sync::OnceLock;

    static TOKEN: OnceLock<CancelToken> = OnceLock::new();
    const SIGINT: i32 = 2;

    unsafe extern "C" {
        fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
        fn _exit(status: i32) -> !;
    }

    extern "C" fn on_sigint(_: i32) {
        // only an atomic load and store here: both are async-signal-safe
        if let Some(token) = TOKEN.get() {
            if token.is_cancelled() {
                // SAFETY: `_exit` is async-signal-safe and takes a plain status code.
                unsafe { _exit(130) }
            }
            token.cancel();
        }
    }

    /// Routes SIGINT to `token` for the rest of the process.
    pub fn install(token: &CancelToken) {
        if TOKEN.set(token.clone()).is_ok() {
            // SAFETY: installs a handler that only touches atomics (see `on_sigint`).
            unsafe {
                signal(SIGINT, on_sigint);
            }
        }
    }
}

/// Without SIGINT, Ctrl-C ends the process; the atomic checkpoints stay loadable.
#[cfg(not(unix))]
mod imp {
    use crate::engine::train::CancelToken;

    /// Nothing to install on this platform.
    pub fn install(_: &CancelToken) {}
}
