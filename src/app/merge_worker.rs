//! The merge worker: a named thread that owns the models on the compute
//! device, re-merges and re-samples for the latest weights, and samples the
//! base and the ensemble when it has nothing newer to do.
//!
//! Requests go through an [`Inbox`]: the newest preview request replaces any
//! waiting one, and a run checks between sampler steps whether something
//! newer arrived, dropping its work if so. Every picture, loss and state
//! change goes back as an [`Event`].

use super::events::{Activity, Emitter, Event, LossEvent, PreviewEvent};
use super::grid_job::{GridJob, spawn_grid};
use super::inbox::{Inbox, Next};
use super::model_set::ModelSet;
use super::preview::{Panel, PreviewImage};
use super::session::Session;
use super::settings::PreviewSettings;
use crate::engine::merge::MergeSpec;
use burn::tensor::Device;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Environment variable that makes the worker log preview timings to stderr.
pub const TRACE_ENV: &str = "DEME_STUDIO_TRACE";

/// Work that is never dropped.
#[derive(Debug)]
pub enum Command {
    /// Load a model set (the current one stays if it fails).
    Load(ModelSet),
    /// New preview settings; base and ensemble are re-sampled.
    Configure(PreviewSettings),
    /// Start a grid search on its own thread.
    Grid(GridJob),
    /// Stop the thread.
    Shutdown,
}

/// A merged preview for some weights (the latest one wins).
#[derive(Debug, Clone)]
pub struct PreviewRequest {
    /// The merge.
    pub spec: MergeSpec,
    /// DDIM steps.
    pub steps: usize,
    /// When the UI asked (for latency).
    pub submitted: Instant,
    /// Also score it on the held-out set.
    pub evaluate: bool,
}

/// Handle of the worker thread; dropping it stops the thread.
pub struct MergeWorker {
    inbox: Arc<Inbox<Command, PreviewRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl MergeWorker {
    /// Starts the worker on `device`, reporting through `emit`.
    pub fn spawn(device: Device, settings: PreviewSettings, emit: Emitter) -> Self {
        let inbox: Arc<Inbox<Command, PreviewRequest>> = Arc::new(Inbox::default());
        let state = WorkerState {
            inbox: inbox.clone(),
            emit,
            device,
            settings,
            session: None,
            refs_todo: Vec::new(),
            trace: std::env::var_os(TRACE_ENV).is_some(),
        };
        let thread = std::thread::Builder::new()
            .name("merge-worker".into())
            .spawn(move || state.run())
            .expect("spawning the merge worker thread");
        Self {
            inbox,
            thread: Some(thread),
        }
    }

    /// Queues a command.
    pub fn send(&self, command: Command) {
        self.inbox.send(command);
    }

    /// Asks for a merged preview; replaces any request not started yet and
    /// stops one in progress. Returns its generation.
    pub fn request(&self, request: PreviewRequest) -> u64 {
        self.inbox.request(request)
    }

    /// Generation of the newest request.
    pub fn latest_generation(&self) -> u64 {
        self.inbox.latest_generation()
    }
}

impl Drop for MergeWorker {
    fn drop(&mut self) {
        self.inbox.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct WorkerState {
    inbox: Arc<Inbox<Command, PreviewRequest>>,
    emit: Emitter,
    device: Device,
    settings: PreviewSettings,
    session: Option<Session>,
    /// Reference panels (base, ensemble) still to sample and score.
    refs_todo: Vec<Panel>,
    trace: bool,
}

impl WorkerState {
    fn run(mut self) {
        loop {
            let next = if self.refs_todo.is_empty() {
                self.inbox.next(None)
            } else {
                self.inbox.try_next()
            };
            match next {
                Some(Next::Command(Command::Shutdown)) => return,
                Some(Next::Command(Command::Load(set))) => self.load(set),
                Some(Next::Command(Command::Configure(s))) => {
                    self.settings = s;
                    self.refs_todo = vec![Panel::Base, Panel::Ensemble];
                }
                Some(Next::Command(Command::Grid(job))) => self.start_grid(job),
                Some(Next::Request(generation, r)) => self.preview(generation, r),
                None => self.reference(),
            }
            if self.refs_todo.is_empty() && !self.inbox.has_pending() {
                self.activity(Activity::Idle);
            }
        }
    }

    fn activity(&self, a: Activity) {
        self.emit.emit(Event::Activity(a));
    }

    fn load(&mut self, set: ModelSet) {
        let emit = self.emit.clone();
        let mut progress = |what: String| emit.emit(Event::Activity(Activity::Loading(what)));
        match Session::load(
            &set,
            &self.device,
            self.settings.eval_samples,
            &mut progress,
        ) {
            Ok(s) => {
                // requests made for the old set no longer apply
                self.inbox.clear_request();
                self.emit.emit(Event::Loaded(Box::new(s.info().clone())));
                self.session = Some(s);
                self.refs_todo = vec![Panel::Base, Panel::Ensemble];
            }
            Err(e) => self.emit.emit(Event::LoadFailed {
                set,
                message: format!("{e:#}"),
            }),
        }
    }

    fn samples(&self) -> usize {
        let points = self
            .session
            .as_ref()
            .is_some_and(|s| s.info().item_shape == [2, 1, 1]);
        // a point cloud needs many more samples than a grid of pictures
        self.settings.samples.max(1) * if points { 32 } else { 1 }
    }

    /// Samples and scores the next reference panel; gives up (to come back
    /// later) as soon as a request or command arrives.
    fn reference(&mut self) {
        let Some(panel) = self.refs_todo.first().copied() else {
            return;
        };
        let Some(session) = &self.session else {
            self.refs_todo.clear();
            return;
        };
        let steps = self.settings.fine_steps;
        let x = session.start_noise(self.samples(), self.settings.seed);
        let inbox = &self.inbox;
        let emit = &self.emit;
        let mut on_step = |k: usize, of: usize, _x: &burn::tensor::Tensor<4>| {
            emit.emit(Event::Activity(Activity::Sampling {
                panel,
                step: k + 1,
                of,
            }));
            !inbox.has_pending()
        };
        let out = match session.sample(panel, steps, x, &mut on_step) {
            Ok(Some(x)) => x,
            Ok(None) => return, // interrupted: retried when idle again
            Err(e) => {
                self.emit.emit(Event::MergeFailed(format!("{e:#}")));
                self.refs_todo.remove(0);
                return;
            }
        };
        match PreviewImage::from_tensor(&out) {
            Ok(image) => self.emit.emit(Event::Preview(PreviewEvent {
                panel,
                generation: 0,
                spec: None,
                step: steps,
                of: steps,
                done: true,
                image: Arc::new(image),
                latency: None,
            })),
            Err(e) => self.emit.emit(Event::MergeFailed(format!("{e:#}"))),
        }
        self.activity(Activity::Evaluating(panel));
        self.emit_loss(panel, None);
        self.refs_todo.remove(0);
    }

    fn emit_loss(&self, panel: Panel, spec: Option<MergeSpec>) {
        let Some(session) = &self.session else { return };
        match session.evaluate(panel) {
            Ok(Some(l)) => self.emit.emit(Event::Loss(LossEvent {
                panel,
                spec,
                mean: l.mean(),
                per_range: l.per_range(session.info().num_experts()),
            })),
            Ok(None) => {}
            Err(e) => self.emit.emit(Event::MergeFailed(format!("{e:#}"))),
        }
    }

    fn preview(&mut self, generation: u64, req: PreviewRequest) {
        let received = Instant::now();
        let n = self.samples();
        let seed = self.settings.seed;
        let Some(session) = &mut self.session else {
            return;
        };
        self.emit.emit(Event::Activity(Activity::Merging));
        if let Err(e) = session.merge(&req.spec) {
            self.emit.emit(Event::MergeFailed(format!("{e:#}")));
            return;
        }
        let merged_at = received.elapsed();
        if self.inbox.is_stale(generation) {
            return;
        }
        let x = session.start_noise(n, seed);
        let inbox = &self.inbox;
        let emit = &self.emit;
        let mut first: Option<Duration> = None;
        let send = |x: &burn::tensor::Tensor<4>, step: usize, of: usize, done: bool| {
            match PreviewImage::from_tensor(x) {
                Ok(image) => emit.emit(Event::Preview(PreviewEvent {
                    panel: Panel::Merged,
                    generation,
                    spec: Some(req.spec.clone()),
                    step,
                    of,
                    done,
                    image: Arc::new(image),
                    latency: Some(req.submitted.elapsed()),
                })),
                Err(e) => emit.emit(Event::MergeFailed(format!("{e:#}"))),
            }
        };
        let mut on_step = |k: usize, of: usize, x: &burn::tensor::Tensor<4>| {
            if inbox.is_stale(generation) {
                return false;
            }
            if k + 1 < of {
                send(x, k + 1, of, false);
                first.get_or_insert_with(|| received.elapsed());
            }
            emit.emit(Event::Activity(Activity::Sampling {
                panel: Panel::Merged,
                step: k + 1,
                of,
            }));
            true
        };
        let out = match session.sample(Panel::Merged, req.steps, x, &mut on_step) {
            Ok(Some(out)) => out,
            Ok(None) => return, // a newer request is waiting
            Err(e) => {
                self.emit.emit(Event::MergeFailed(format!("{e:#}")));
                return;
            }
        };
        send(&out, req.steps, req.steps, true);
        let first = first.unwrap_or_else(|| received.elapsed());
        if self.trace {
            eprintln!(
                "preview #{generation}: {} DDIM steps x {n} samples: queued {:.1} ms, merge {:.1} ms, \
                 first picture {:.1} ms, final {:.1} ms after the request was received",
                req.steps,
                (received - req.submitted).as_secs_f64() * 1e3,
                merged_at.as_secs_f64() * 1e3,
                first.as_secs_f64() * 1e3,
                received.elapsed().as_secs_f64() * 1e3,
            );
        }
        if req.evaluate && !self.inbox.is_stale(generation) {
            self.activity(Activity::Evaluating(Panel::Merged));
            self.emit_loss(Panel::Merged, Some(req.spec));
        }
    }

    fn start_grid(&mut self, job: GridJob) {
        let inputs = self.session.as_ref().and_then(|s| s.grid_inputs());
        let Some((base, experts, eval)) = inputs else {
            self.emit
                .emit(Event::Grid(super::events::GridUpdate::Finished(Err(
                    "grid search needs a loaded model set with a held-out set".into(),
                ))));
            return;
        };
        spawn_grid(job, base, experts, eval, self.emit.clone());
    }
}
