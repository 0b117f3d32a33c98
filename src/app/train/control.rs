//! Pause and single-step of a training thread: the thread waits at a gate
//! after each optimizer step while the UI holds it paused.

use crate::engine::train::CancelToken;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Debug, Default)]
struct Gate {
    paused: bool,
    /// Steps allowed through while paused.
    budget: u64,
}

/// Shared between the UI (pause, resume, step) and the training thread (wait).
#[derive(Debug, Clone, Default)]
pub struct Control(Arc<(Mutex<Gate>, Condvar)>);

impl Control {
    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.0.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds the thread at its next step boundary.
    pub fn pause(&self) {
        self.gate().paused = true;
    }

    /// Lets the thread run on.
    pub fn resume(&self) {
        let mut g = self.gate();
        g.paused = false;
        g.budget = 0;
        drop(g);
        self.0.1.notify_all();
    }

    /// While paused: lets exactly one more step through.
    pub fn step_once(&self) {
        let mut g = self.gate();
        if g.paused {
            g.budget += 1;
        }
        drop(g);
        self.0.1.notify_all();
    }

    /// Wakes a waiting thread (to notice a cancel).
    pub fn wake(&self) {
        self.0.1.notify_all();
    }

    /// Whether pause was asked for.
    pub fn is_paused(&self) -> bool {
        self.gate().paused
    }

    /// Called by the training thread after a step: returns at once when
    /// running, else calls `on_hold` and blocks until resumed, stepped or cancelled.
    pub fn wait(
        &self,
        cancel: &CancelToken,
        on_hold: &mut dyn FnMut(),
        on_release: &mut dyn FnMut(),
    ) {
        let mut g = self.gate();
        let mut held = false;
        loop {
            if cancel.is_cancelled() || !g.paused {
                break;
            }
            if g.budget > 0 {
                g.budget -= 1;
                break;
            }
            if !held {
                held = true;
                drop(g);
                on_hold();
                g = self.gate();
                continue;
            }
            g = self
                .0
                .1
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(g);
        if held {
            on_release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn paused_threads_take_exactly_the_steps_allowed() {
        let control = Control::default();
        let cancel = CancelToken::new();
        let steps = Arc::new(AtomicU64::new(0));
        let holds = Arc::new(AtomicU64::new(0));
        control.pause();
        let (c, k, s, h) = (
            control.clone(),
            cancel.clone(),
            steps.clone(),
            holds.clone(),
        );
        let t = std::thread::spawn(move || {
            while !k.is_cancelled() {
                s.fetch_add(1, Ordering::SeqCst);
                c.wait(
                    &k,
                    &mut || {
                        h.fetch_add(1, Ordering::SeqCst);
                    },
                    &mut || {},
                );
            }
        });
        let until = |n: u64| {
            while holds.load(Ordering::SeqCst) < n {
                std::thread::yield_now();
            }
        };
        until(1);
        assert_eq!(steps.load(Ordering::SeqCst), 1);
        control.step_once();
        until(2);
        assert_eq!(steps.load(Ordering::SeqCst), 2);
        cancel.cancel();
        control.wake();
        t.join().unwrap();
    }
}
