//! A worker's inbox: commands that are always delivered, in order, beside a
//! "latest request wins" slot for interactive work.
//!
//! Putting a request replaces any request not yet taken and bumps a generation
//! counter; a worker busy with an older request asks [`Inbox::is_stale`]
//! between steps and drops its work as soon as something newer is waiting. So
//! stale work is dropped, never queued.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// What [`Inbox::next`] hands out.
#[derive(Debug, PartialEq)]
pub enum Next<C, R> {
    /// A command, oldest first.
    Command(C),
    /// The latest request with its generation.
    Request(u64, R),
}

struct State<C, R> {
    commands: VecDeque<C>,
    latest: Option<(u64, R)>,
}

/// Commands (queued) and requests (latest wins), shared between threads.
pub struct Inbox<C, R> {
    state: Mutex<State<C, R>>,
    wake: Condvar,
    generation: AtomicU64,
}

impl<C, R> Default for Inbox<C, R> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                commands: VecDeque::new(),
                latest: None,
            }),
            wake: Condvar::new(),
            generation: AtomicU64::new(0),
        }
    }
}

impl<C, R> Inbox<C, R> {
    fn lock(&self) -> MutexGuard<'_, State<C, R>> {
        // a panicking holder cannot leave the queue half-written: recover it
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a command (never dropped) and wakes the worker.
    pub fn send(&self, command: C) {
        self.lock().commands.push_back(command);
        self.wake.notify_all();
    }

    /// Replaces the pending request with `request`; returns its generation.
    pub fn request(&self, request: R) -> u64 {
        let mut state = self.lock();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        state.latest = Some((generation, request));
        drop(state);
        self.wake.notify_all();
        generation
    }

    /// Drops the pending request, if any.
    pub fn clear_request(&self) {
        self.lock().latest = None;
    }

    /// Generation of the newest request ever put.
    pub fn latest_generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether work for request `generation` should stop: a newer request
    /// exists or a command is waiting.
    pub fn is_stale(&self, generation: u64) -> bool {
        generation != self.latest_generation() || self.has_pending_command()
    }

    /// Whether a command is waiting.
    pub fn has_pending_command(&self) -> bool {
        !self.lock().commands.is_empty()
    }

    /// Whether anything (command or request) is waiting.
    pub fn has_pending(&self) -> bool {
        let s = self.lock();
        !s.commands.is_empty() || s.latest.is_some()
    }

    /// The next command (first) or the latest request, waiting at most
    /// `timeout` (`None`: forever) when there is none.
    pub fn next(&self, timeout: Option<Duration>) -> Option<Next<C, R>> {
        let mut state = self.lock();
        loop {
            if let Some(c) = state.commands.pop_front() {
                return Some(Next::Command(c));
            }
            if let Some((g, r)) = state.latest.take() {
                return Some(Next::Request(g, r));
            }
            state = match timeout {
                None => self.wake.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    let (s, res) = self
                        .wake
                        .wait_timeout(state, t)
                        .unwrap_or_else(|e| e.into_inner());
                    if res.timed_out() && s.commands.is_empty() && s.latest.is_none() {
                        return None;
                    }
                    s
                }
            };
        }
    }

    /// The next command or request if one is waiting, without blocking.
    pub fn try_next(&self) -> Option<Next<C, R>> {
        self.next(Some(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_latest_request_wins_and_commands_come_first() {
        let inbox: Inbox<&str, u32> = Inbox::default();
        let g1 = inbox.request(1);
        let g2 = inbox.request(2);
        let g3 = inbox.request(3);
        assert!(g1 < g2 && g2 < g3);
        inbox.send("load");
        assert_eq!(inbox.try_next(), Some(Next::Command("load")));
        assert_eq!(inbox.try_next(), Some(Next::Request(g3, 3)));
        assert_eq!(inbox.try_next(), None, "requests 1 and 2 were dropped");
    }

    #[test]
    fn work_goes_stale_when_something_newer_arrives() {
        let inbox: Inbox<&str, u32> = Inbox::default();
        let g = inbox.request(1);
        let Some(Next::Request(taken, _)) = inbox.try_next() else {
            panic!("a request is waiting")
        };
        assert_eq!(taken, g);
        assert!(!inbox.is_stale(g));
        let newer = inbox.request(2);
        assert!(inbox.is_stale(g));
        assert!(!inbox.is_stale(newer));
        inbox.send("shutdown");
        assert!(inbox.is_stale(newer), "a waiting command interrupts too");
    }

    #[test]
    fn a_waiting_worker_wakes_on_a_request() {
        let inbox: Arc<Inbox<(), u32>> = Arc::new(Inbox::default());
        let worker = {
            let inbox = inbox.clone();
            std::thread::spawn(move || inbox.next(Some(Duration::from_secs(10))))
        };
        std::thread::sleep(Duration::from_millis(20));
        let g = inbox.request(7);
        assert_eq!(worker.join().unwrap(), Some(Next::Request(g, 7)));
        assert_eq!(inbox.next(Some(Duration::from_millis(5))), None);
    }
}
