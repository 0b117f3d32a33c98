//! The merge worker: a named thread that owns the models on the compute
//! device, re-merges and re-samples for the latest weights, and samples the
//! base and the ensemble when it has nothing newer to do.
//!
//! Requests go through an [`Inbox`]: the newest preview request replaces any
//! waiting one, and a run checks between sampler steps whether something
//! newer arrived, dropping the rest of its work if so (the step it just
//! finished is still shown, so a slider dragged on a slow device keeps
//! updating the picture). Every picture, loss and state
//! change goes back as an [`Event`].

use super::events::{Activity, Emitter, Event, LossEvent, PreviewEvent};
use super::gradsim::job::{GradSimJob, spawn_gradsim};
use super::inbox::{Inbox, Next};
use super::job_slot::Outcome;
use super::landscape::job::{LandscapeJob, start_landscape};
use super::merge::grid_job::{GridJob, spawn_grid};
use super::preview::{Panel, Picture, PreviewImage};
use super::preview_gpu::GpuPreviewer;
use super::session::Session;
use super::settings::PreviewSettings;
use super::taskvec::job::{TaskVecJob, start_taskvec};
use crate::engine::merge::MergeSpec;
use crate::engine::model_set::ModelSet;
use burn::tensor::{Device, Tensor};
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
    /// Start a gradient-conflict computation of the base on its own thread.
    GradSim(GradSimJob),
    /// Start a loss-landscape computation on its own thread.
    Landscape(LandscapeJob),
    /// Start task-vector statistics on its own thread.
    TaskVectors(TaskVecJob),
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
    /// Starts the worker on `device`, reporting through `emit`; with
    /// `gpu_previews`, pictures are laid out on the device (see
    /// [`super::preview_gpu`]).
    pub fn spawn(
        device: Device,
        settings: PreviewSettings,
        gpu_previews: Option<GpuPreviewer>,
        emit: Emitter,
    ) -> Self {
        let inbox: Arc<Inbox<Command, PreviewRequest>> = Arc::new(Inbox::default());
        let state = WorkerState {
            inbox: inbox.clone(),
            emit,
            device,
            settings,
            gpu_previews,
            session: None,
            ref_steps: [None; 2],
            ref_scored: [false; 2],
            needs_fine: None,
            last_spec: None,
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

/// Work the worker does when no request or command waits.
#[derive(Debug, Clone, PartialEq)]
enum IdleJob {
    /// Sample (and score, the first time) a reference panel with this many steps.
    Reference(Panel, usize),
    /// The fine pass of the last merge, which only had a fast one.
    RefineMerged(MergeSpec),
}

struct WorkerState {
    inbox: Arc<Inbox<Command, PreviewRequest>>,
    emit: Emitter,
    device: Device,
    settings: PreviewSettings,
    /// The preview pass on the shared device, if any.
    gpu_previews: Option<GpuPreviewer>,
    session: Option<Session>,
    /// Steps of the finished picture of base and ensemble.
    ref_steps: [Option<usize>; 2],
    /// Whether base and ensemble have their held-out loss.
    ref_scored: [bool; 2],
    /// The last merge, until it has a finished fine picture.
    needs_fine: Option<MergeSpec>,
    /// The last merge asked for.
    last_spec: Option<MergeSpec>,
    trace: bool,
}

fn ref_index(p: Panel) -> usize {
    if p == Panel::Base { 0 } else { 1 }
}

impl WorkerState {
    fn run(mut self) {
        loop {
            let idle = self.idle_job();
            let next = if idle.is_none() {
                self.activity(Activity::Idle);
                self.inbox.next(None)
            } else {
                self.inbox.try_next()
            };
            match (next, idle) {
                (Some(Next::Command(Command::Shutdown)), _) => return,
                (Some(Next::Command(Command::Load(set))), _) => self.load(set),
                (Some(Next::Command(Command::Configure(s))), _) => {
                    self.settings = s;
                    self.ref_steps = [None; 2];
                    self.needs_fine = self.last_spec.clone();
                }
                (Some(Next::Command(Command::Grid(job))), _) => self.start_grid(job),
                (Some(Next::Command(Command::GradSim(job))), _) => self.start_gradsim(job),
                (Some(Next::Command(Command::Landscape(job))), _) => {
                    start_landscape(job, self.session.as_ref())
                }
                (Some(Next::Command(Command::TaskVectors(job))), _) => {
                    start_taskvec(job, self.session.as_ref())
                }
                (Some(Next::Request(generation, r)), _) => self.preview(generation, r, true),
                (None, Some(IdleJob::Reference(p, steps))) => self.reference(p, steps),
                (None, Some(IdleJob::RefineMerged(spec))) => {
                    let generation = self.inbox.latest_generation();
                    let request = PreviewRequest {
                        spec,
                        steps: self.settings.fine_steps,
                        submitted: Instant::now(),
                        evaluate: true,
                    };
                    self.preview(generation, request, false);
                }
                (None, None) => {}
            }
        }
    }

    /// Base and ensemble quickly, then the fine pass of the merge, then base
    /// and ensemble finely.
    fn idle_job(&self) -> Option<IdleJob> {
        self.session.as_ref()?;
        let (fast, fine) = (
            self.settings.fast_steps.max(1),
            self.settings.fine_steps.max(1),
        );
        for p in [Panel::Base, Panel::Ensemble] {
            if self.ref_steps[ref_index(p)].is_none() {
                return Some(IdleJob::Reference(p, fast.min(fine)));
            }
        }
        if let Some(spec) = &self.needs_fine {
            return Some(IdleJob::RefineMerged(spec.clone()));
        }
        [Panel::Base, Panel::Ensemble]
            .into_iter()
            .find(|p| self.ref_steps[ref_index(*p)].is_some_and(|s| s < fine))
            .map(|p| IdleJob::Reference(p, fine))
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
                self.ref_steps = [None; 2];
                self.ref_scored = [false; 2];
                self.needs_fine = None;
                self.last_spec = None;
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

    fn picture(
        &self,
        panel: Panel,
        x: &Tensor<4>,
        step: usize,
        of: usize,
        done: bool,
        req: Option<(u64, &PreviewRequest, bool)>,
    ) {
        match self.draw(x) {
            Ok(image) => self.emit.emit(Event::Preview(PreviewEvent {
                panel,
                generation: req.map_or(0, |(g, _, _)| g),
                spec: req.map(|(_, r, _)| r.spec.clone()),
                step,
                of,
                done,
                image,
                latency: req.and_then(|(_, r, measured)| measured.then(|| r.submitted.elapsed())),
            })),
            Err(e) => self.emit.emit(Event::MergeFailed(format!("{e:#}"))),
        }
    }

    /// The picture of `x`: laid out on the device when the window shares it
    /// (images only; point clouds are drawn on the host), else drawn on the host.
    fn draw(&self, x: &Tensor<4>) -> anyhow::Result<Picture> {
        let points = super::preview::are_points(x.dims());
        if let Some(gpu) = self.gpu_previews.as_ref().filter(|_| !points)
            && let Some(picture) = gpu.draw(x)?
        {
            return Ok(Picture::Device(Arc::new(picture)));
        }
        Ok(PreviewImage::from_tensor(x)?.into())
    }

    /// Samples (and the first time scores) a reference panel; gives up, to
    /// come back later, as soon as a request or command arrives.
    fn reference(&mut self, panel: Panel, steps: usize) {
        let Some(session) = &self.session else {
            return;
        };
        let x = session.start_noise(self.samples(), self.settings.seed);
        let mut on_step = |k: usize, of: usize, x0: &Tensor<4>| {
            if self.inbox.has_pending() {
                return false;
            }
            if k + 1 < of {
                self.picture(panel, x0, k + 1, of, false, None);
            }
            self.activity(Activity::Sampling {
                panel,
                step: k + 1,
                of,
            });
            true
        };
        let out = match session.sample(panel, steps, x, &mut on_step) {
            Ok(Some(x)) => x,
            Ok(None) => return, // interrupted: retried when idle again
            Err(e) => {
                self.emit.emit(Event::MergeFailed(format!("{e:#}")));
                self.ref_steps[ref_index(panel)] = Some(usize::MAX);
                return;
            }
        };
        self.picture(panel, &out, steps, steps, true, None);
        self.ref_steps[ref_index(panel)] = Some(steps);
        if !self.ref_scored[ref_index(panel)] && !self.inbox.has_pending() {
            self.activity(Activity::Evaluating(panel));
            self.emit_loss(panel, None);
            self.ref_scored[ref_index(panel)] = true;
        }
    }

    fn emit_loss(&self, panel: Panel, spec: Option<MergeSpec>) {
        let Some(session) = &self.session else { return };
        match session.evaluate(panel) {
            Ok(Some(l)) => self.emit.emit(Event::Loss(LossEvent {
                panel,
                spec,
                mean: l.mean(),
                per_range: l.per_ranges(&session.info().ranges),
            })),
            Ok(None) => {}
            Err(e) => self.emit.emit(Event::MergeFailed(format!("{e:#}"))),
        }
    }

    /// Merges and samples `req`; `measured` pictures carry their latency
    /// (the worker's own refinements do not).
    fn preview(&mut self, generation: u64, req: PreviewRequest, measured: bool) {
        let received = Instant::now();
        let n = self.samples();
        let seed = self.settings.seed;
        let Some(session) = &mut self.session else {
            return;
        };
        self.needs_fine = Some(req.spec.clone());
        self.last_spec = Some(req.spec.clone());
        self.emit.emit(Event::Activity(Activity::Merging));
        if let Err(e) = session.merge(&req.spec) {
            self.emit.emit(Event::MergeFailed(format!("{e:#}")));
            self.needs_fine = None;
            return;
        }
        let merged_at = received.elapsed();
        if self.inbox.is_stale(generation) {
            return;
        }
        let x = session.start_noise(n, seed);
        let mut first: Option<Duration> = None;
        let this = &*self;
        let Some(session) = &this.session else { return };
        let mut on_step = |k: usize, of: usize, x0: &Tensor<4>| {
            // a finished step is shown even when newer weights wait (on a slow
            // device a moving slider would otherwise show nothing); the rest
            // of the run is dropped
            if k + 1 < of {
                this.picture(
                    Panel::Merged,
                    x0,
                    k + 1,
                    of,
                    false,
                    Some((generation, &req, measured)),
                );
                first.get_or_insert_with(|| received.elapsed());
            }
            if this.inbox.is_stale(generation) {
                return false;
            }
            this.activity(Activity::Sampling {
                panel: Panel::Merged,
                step: k + 1,
                of,
            });
            true
        };
        let out = match session.sample(Panel::Merged, req.steps, x, &mut on_step) {
            Ok(Some(out)) => out,
            Ok(None) => return, // something newer is waiting
            Err(e) => {
                self.emit.emit(Event::MergeFailed(format!("{e:#}")));
                self.needs_fine = None;
                return;
            }
        };
        self.picture(
            Panel::Merged,
            &out,
            req.steps,
            req.steps,
            true,
            Some((generation, &req, measured)),
        );
        if req.steps >= self.settings.fine_steps {
            self.needs_fine = None;
        }
        let first = first.unwrap_or_else(|| received.elapsed());
        if self.trace && measured {
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
        let inputs = self
            .session
            .as_ref()
            .and_then(|s| Some((s.grid_inputs()?, s.info().ranges.clone())));
        let Some(((base, experts, eval), ranges)) = inputs else {
            job.sink.finish(Outcome::Failed(
                "grid search needs a loaded model set with a held-out set".into(),
            ));
            return;
        };
        spawn_grid(job, base, experts, eval, ranges);
    }

    fn start_gradsim(&mut self, job: GradSimJob) {
        let inputs = match &self.session {
            Some(s) => s.gradsim_inputs(),
            None => Err("open a model set first".into()),
        };
        match inputs {
            Ok(inputs) => {
                spawn_gradsim(job, inputs);
            }
            Err(e) => job.sink.finish(Outcome::Failed(format!(
                "gradient conflicts need the base's training data: {e}"
            ))),
        }
    }
}
