//! One background job's life as the UI sees it: started with a cancel token
//! and a channel of its own, its reports read once per frame, a typed end
//! (done, cancelled or failed). Reports of a run that was replaced or
//! forgotten go nowhere: each run has its own channel, dropped with it.

use crate::engine::train::CancelToken;
use std::fmt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};

/// Wakes the UI so that it reads the reports (e.g. `ctx.request_repaint()`).
#[derive(Clone)]
pub struct Waker(Arc<dyn Fn() + Send + Sync>);

impl Waker {
    /// A waker that calls `wake`.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(wake))
    }

    /// Wakes the UI.
    pub fn wake(&self) {
        (self.0)()
    }
}

impl From<Arc<dyn Fn() + Send + Sync>> for Waker {
    fn from(wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        Self(wake)
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Waker")
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// It finished with this result.
    Done(T),
    /// It stopped because Cancel was pressed.
    Cancelled,
    /// It failed: why, in words.
    Failed(String),
}

impl<T> Outcome<T> {
    /// The outcome of a job that returned `result` and was started with
    /// `cancel`: an error after Cancel was asked for is a cancellation.
    pub fn of(result: anyhow::Result<T>, cancel: &CancelToken) -> Self {
        match result {
            Ok(v) => Self::Done(v),
            Err(_) if cancel.is_cancelled() => Self::Cancelled,
            Err(e) => Self::Failed(format!("{e:#}")),
        }
    }
}

/// What a job sends: its own updates, then once its end.
#[derive(Debug, Clone)]
pub enum Report<U, T> {
    /// Progress or a partial result.
    Update(U),
    /// The end of the run.
    Finished(Outcome<T>),
}

/// The sending side of one run: the job's updates and its end, each waking the UI.
pub struct Sink<U, T> {
    tx: Sender<Report<U, T>>,
    waker: Waker,
}

impl<U, T> Clone for Sink<U, T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            waker: self.waker.clone(),
        }
    }
}

impl<U, T> fmt::Debug for Sink<U, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

impl<U, T> Sink<U, T> {
    /// A sink whose reports go nowhere: for a job run outside the app (a
    /// test, a benchmark) that reports through its own callbacks.
    pub fn discard() -> Self {
        let (tx, _) = channel();
        Self {
            tx,
            waker: Waker::new(|| {}),
        }
    }

    /// Sends an update; a run the UI no longer follows ignores it.
    pub fn update(&self, update: U) {
        self.send(Report::Update(update));
    }

    /// Sends the end of the run.
    pub fn finish(&self, outcome: Outcome<T>) {
        self.send(Report::Finished(outcome));
    }

    fn send(&self, report: Report<U, T>) {
        if self.tx.send(report).is_ok() {
            self.waker.wake();
        }
    }
}

struct Run<U, T, P> {
    cancel: CancelToken,
    progress: P,
    reports: Receiver<Report<U, T>>,
}

/// The UI side of one kind of background job: at most one run at a time, with
/// its cancel token and the progress the view shows (`P`).
pub struct JobSlot<U, T, P> {
    run: Option<Run<U, T, P>>,
}

impl<U, T, P> Default for JobSlot<U, T, P> {
    fn default() -> Self {
        Self { run: None }
    }
}

impl<U, T, P: fmt::Debug> fmt::Debug for JobSlot<U, T, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.run {
            Some(r) => write!(f, "JobSlot(running: {:?})", r.progress),
            None => f.write_str("JobSlot(idle)"),
        }
    }
}

impl<U, T, P> JobSlot<U, T, P> {
    /// Starts a run showing `progress`; a run still going is cancelled and
    /// forgotten. Returns the new run's cancel token and the sink its job reports to.
    pub fn start(&mut self, progress: P, waker: &Waker) -> (CancelToken, Sink<U, T>) {
        self.clear();
        let (tx, reports) = channel();
        let cancel = CancelToken::new();
        self.run = Some(Run {
            cancel: cancel.clone(),
            progress,
            reports,
        });
        (
            cancel,
            Sink {
                tx,
                waker: waker.clone(),
            },
        )
    }

    /// Whether a run is going.
    pub fn is_running(&self) -> bool {
        self.run.is_some()
    }

    /// The progress of the run going.
    pub fn progress(&self) -> Option<&P> {
        self.run.as_ref().map(|r| &r.progress)
    }

    /// The progress of the run going, to update it.
    pub fn progress_mut(&mut self) -> Option<&mut P> {
        self.run.as_mut().map(|r| &mut r.progress)
    }

    /// Asks the run going to stop; it still reports its end.
    pub fn cancel(&self) {
        if let Some(r) = &self.run {
            r.cancel.cancel();
        }
    }

    /// Cancels the run going and forgets it: nothing it sends is read.
    pub fn clear(&mut self) {
        self.cancel();
        self.run = None;
    }

    /// The reports of the run going since the last call, in order; after its
    /// `Finished` the run is over and the slot idle.
    pub fn poll(&mut self) -> Vec<Report<U, T>> {
        let mut out = Vec::new();
        let Some(run) = &self.run else { return out };
        let mut ended = false;
        while let Ok(report) = run.reports.try_recv() {
            ended = matches!(report, Report::Finished(_));
            out.push(report);
            if ended {
                break;
            }
        }
        if ended {
            self.run = None;
        }
        out
    }
}

/// A view's background job, run on a thread named after it.
pub struct Task {
    /// The thread's name.
    pub name: &'static str,
    /// The work.
    pub run: Box<dyn FnOnce() + Send>,
}

impl Task {
    /// A job `run` on a thread named `name`.
    pub fn new(name: &'static str, run: impl FnOnce() + Send + 'static) -> Self {
        Self {
            name,
            run: Box::new(run),
        }
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task({})", self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn waker() -> (Waker, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (
            Waker::new(move || {
                m.fetch_add(1, Ordering::Relaxed);
            }),
            n,
        )
    }

    #[test]
    fn reports_arrive_in_order_and_the_end_frees_the_slot() {
        let (w, wakes) = waker();
        let mut slot: JobSlot<u32, &str, (usize, usize)> = JobSlot::default();
        let (_cancel, sink) = slot.start((0, 10), &w);
        assert!(slot.is_running());
        sink.update(1);
        sink.update(2);
        sink.finish(Outcome::Done("ok"));
        sink.update(3); // after the end: not read
        let got = slot.poll();
        assert!(matches!(
            got[..],
            [
                Report::Update(1),
                Report::Update(2),
                Report::Finished(Outcome::Done("ok"))
            ]
        ));
        assert!(!slot.is_running());
        assert!(slot.poll().is_empty());
        assert_eq!(wakes.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_replaced_run_is_cancelled_and_its_reports_dropped() {
        let (w, _) = waker();
        let mut slot: JobSlot<u32, (), ()> = JobSlot::default();
        let (old_cancel, old) = slot.start((), &w);
        let (new_cancel, new) = slot.start((), &w);
        assert!(old_cancel.is_cancelled() && !new_cancel.is_cancelled());
        old.update(7);
        old.finish(Outcome::Cancelled);
        new.update(8);
        assert!(matches!(slot.poll()[..], [Report::Update(8)]));
        assert!(slot.is_running());
        slot.clear();
        assert!(new_cancel.is_cancelled() && !slot.is_running());
        new.finish(Outcome::Done(()));
        assert!(slot.poll().is_empty());
    }

    #[test]
    fn an_error_after_cancel_is_a_cancellation() {
        let cancel = CancelToken::new();
        let failed: Outcome<()> = Outcome::of(Err(anyhow::anyhow!("disk full")), &cancel);
        assert_eq!(failed, Outcome::Failed("disk full".into()));
        cancel.cancel();
        assert_eq!(
            Outcome::<()>::of(Err(anyhow::anyhow!("stopped")), &cancel),
            Outcome::Cancelled
        );
        assert_eq!(Outcome::of(Ok(3), &cancel), Outcome::Done(3));
    }
}
