//! The Train view's state and its rules, no drawing: the settings form, the
//! runs of the current job with their loss points, progress and previews.

use super::control::Control;
use super::form::TrainForm;
use super::plan::{RunKey, RunPlan, TrainJob, TrainOutcome, TrainUpdate};
use crate::app::job_slot::{JobSlot, Outcome, Report, Waker};
use crate::app::preview::PreviewImage;
use crate::app::widgets::export_row::ExportRow;
use crate::engine::model_set::folder_name;
use crate::engine::train::{StopReason, TrainEvent};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Not started yet (sequential schedule).
    Queued,
    /// Taking steps.
    Running,
    /// All steps done.
    Done,
    /// Stopped by Cancel (a checkpoint holds the step reached).
    Cancelled,
    /// Stopped on a non-finite loss or an error.
    Failed,
}

impl RunStatus {
    /// Display name.
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }
}

/// One optimizer step of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossPoint {
    /// Steps done after it.
    pub step: u64,
    /// Mean loss of the batch.
    pub loss: f64,
    /// Its epsilon part (finetune).
    pub eps: Option<f64>,
    /// Its consistency part (finetune with lambda > 0).
    pub consistency: Option<f64>,
    /// Learning rate.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Throughput of the run.
    pub images_per_sec: f64,
}

/// One run of the job as the view shows it.
#[derive(Clone)]
pub struct RunView {
    /// Folder, steps, range.
    pub plan: RunPlan,
    /// Steps done.
    pub done: u64,
    /// Where it stands.
    pub status: RunStatus,
    /// Every step's loss.
    pub points: Vec<LossPoint>,
    /// The last checkpoint written: step and folder.
    pub checkpoint: Option<(u64, PathBuf)>,
    /// The latest preview: checkpoint step and picture.
    pub preview: Option<(u64, Arc<PreviewImage>)>,
    pub(super) texture: Option<(u64, egui::TextureHandle)>,
}

impl RunView {
    /// Display name: `pretrain`, `expert_1`, ..., `baseline`.
    pub fn label(&self) -> String {
        self.plan.key.to_string()
    }

    /// The last step's loss.
    pub fn last_loss(&self) -> Option<f64> {
        self.points.last().map(|p| p.loss)
    }
}

/// What the view keeps of the job going.
struct Running {
    control: Control,
    handle: Option<JoinHandle<()>>,
    held: bool,
}

/// Settings, progress and results of the Train view.
#[derive(Default)]
pub struct TrainState {
    /// The settings form.
    pub form: TrainForm,
    job: JobSlot<TrainUpdate, TrainOutcome, Running>,
    stage: Option<String>,
    runs: Vec<RunView>,
    /// Why the last job failed, or why it could not start.
    pub error: Option<String>,
    notes: Vec<String>,
    outcome: Option<TrainOutcome>,
    thread_ok: Option<bool>,
    /// The export of the loss curves.
    pub export: ExportRow,
}

impl TrainState {
    /// Forgets results tied to the open model set (none: runs stay on screen).
    pub fn reset(&mut self) {}

    /// Whether a job runs.
    pub fn is_running(&self) -> bool {
        self.job.is_running()
    }

    /// Whether pause was asked for.
    pub fn is_paused(&self) -> bool {
        self.job.progress().is_some_and(|r| r.control.is_paused())
    }

    /// Whether the job's thread is holding at the pause gate.
    pub fn is_held(&self) -> bool {
        self.job.progress().is_some_and(|r| r.held)
    }

    /// The stage before training, while one runs.
    pub fn stage(&self) -> Option<&str> {
        self.stage.as_deref()
    }

    /// The runs of the current (or last) job.
    pub fn runs(&self) -> &[RunView] {
        &self.runs
    }

    pub(super) fn runs_mut(&mut self) -> &mut [RunView] {
        &mut self.runs
    }

    /// Steps done over all runs.
    pub fn steps_done(&self) -> u64 {
        self.runs.iter().map(|r| r.done).sum()
    }

    /// Steps of all runs together.
    pub fn steps_total(&self) -> u64 {
        self.runs.iter().map(|r| r.plan.total_steps).sum()
    }

    /// Images per second over the runs taking steps.
    pub fn throughput(&self) -> f64 {
        self.runs
            .iter()
            .filter(|r| r.status == RunStatus::Running)
            .filter_map(|r| r.points.last().map(|p| p.images_per_sec))
            .sum()
    }

    /// Seconds left at the current throughput.
    pub fn eta_secs(&self) -> Option<f64> {
        let ips = self.throughput();
        if ips <= 0.0 {
            return None;
        }
        let images: f64 = self
            .runs
            .iter()
            .map(|r| (r.plan.total_steps.saturating_sub(r.done) * r.plan.batch_size as u64) as f64)
            .sum();
        Some(images / ips)
    }

    /// Notes of the current job (settings turned off, previews that failed).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// How the last job ended.
    pub fn outcome(&self) -> Option<&TrainOutcome> {
        self.outcome.as_ref()
    }

    /// Whether the last job's thread ended without a panic (None while one runs).
    pub fn thread_ended_cleanly(&self) -> Option<bool> {
        self.thread_ok
    }

    /// Marks `job` as started: gives it the cancel token and the sink of this
    /// view's job slot (a job going is cancelled) and returns it to run.
    pub fn begin(&mut self, mut job: TrainJob, waker: &Waker) -> TrainJob {
        let running = Running {
            control: job.control.clone(),
            handle: None,
            held: false,
        };
        (job.cancel, job.sink) = self.job.start(running, waker);
        self.stage = Some("starting".into());
        self.runs.clear();
        self.error = None;
        self.notes.clear();
        self.outcome = None;
        self.thread_ok = None;
        self.export.clear();
        job
    }

    /// Keeps the thread the job runs on (joined when the job ends).
    pub fn set_thread(&mut self, handle: JoinHandle<()>) {
        if let Some(r) = self.job.progress_mut() {
            r.handle = Some(handle);
        }
    }

    /// Gives up a job whose thread could not start.
    pub fn abandon(&mut self, why: String) {
        self.job.clear();
        self.stage = None;
        self.error = Some(why);
    }

    /// Asks the job to stop (it saves a checkpoint of every started run).
    pub fn cancel(&mut self) {
        self.job.cancel();
        if let Some(r) = self.job.progress() {
            r.control.wake();
        }
    }

    /// Holds the job after its current step.
    pub fn pause(&mut self) {
        if let Some(r) = self.job.progress() {
            r.control.pause();
        }
    }

    /// Lets a paused job run on.
    pub fn resume(&mut self) {
        if let Some(r) = self.job.progress() {
            r.control.resume();
        }
    }

    /// Lets a paused job take one more step.
    pub fn step_once(&mut self) {
        if let Some(r) = self.job.progress() {
            r.control.step_once();
        }
    }

    fn run_mut(&mut self, key: RunKey) -> Option<&mut RunView> {
        self.runs.iter_mut().find(|r| r.plan.key == key)
    }

    /// Applies what the job reported since the last frame; returns the
    /// reports the app acts on too (the live gradient conflicts) and, when
    /// the job ended, its end.
    pub fn poll(&mut self) -> (Vec<TrainUpdate>, Option<Outcome<TrainOutcome>>) {
        let mut for_app = Vec::new();
        let mut end = None;
        let mut thread = self.job.progress_mut().and_then(|r| r.handle.take());
        for report in self.job.poll() {
            match report {
                Report::Update(u @ TrainUpdate::GradSim { .. }) => for_app.push(u),
                Report::Update(u) => self.apply(u),
                Report::Finished(outcome) => {
                    // the thread's last act was to send this: it ends at once
                    self.thread_ok = Some(thread.take().is_none_or(|h| h.join().is_ok()));
                    self.finish(&outcome);
                    end = Some(outcome);
                }
            }
        }
        if let (Some(h), Some(r)) = (thread, self.job.progress_mut()) {
            r.handle = Some(h);
        }
        (for_app, end)
    }

    fn apply(&mut self, update: TrainUpdate) {
        match update {
            TrainUpdate::Stage(s) => self.stage = Some(s),
            TrainUpdate::Note(n) => self.notes.push(n),
            TrainUpdate::Plan(plan) => {
                self.runs = plan
                    .into_iter()
                    .map(|plan| RunView {
                        plan,
                        done: 0,
                        status: RunStatus::Queued,
                        points: Vec::new(),
                        checkpoint: None,
                        preview: None,
                        texture: None,
                    })
                    .collect();
            }
            TrainUpdate::Event { run, event, parts } => {
                let Some(r) = self.run_mut(run) else {
                    return;
                };
                match event {
                    TrainEvent::Started { first_step, .. } => {
                        r.done = first_step;
                        r.status = RunStatus::Running;
                    }
                    TrainEvent::Step {
                        step,
                        loss,
                        grad_norm,
                        lr,
                        images_per_sec,
                        ..
                    } => {
                        r.done = step;
                        r.status = RunStatus::Running;
                        r.points.push(LossPoint {
                            step,
                            loss,
                            eps: parts.map(|p| p.eps),
                            consistency: parts.and_then(|p| p.consistency),
                            lr,
                            grad_norm,
                            images_per_sec,
                        });
                    }
                    TrainEvent::Checkpoint { step, path } => r.checkpoint = Some((step, path)),
                    TrainEvent::HeldOut { .. } => {}
                    TrainEvent::Stopped { step, reason } => {
                        r.done = step;
                        r.status = match reason {
                            StopReason::Cancelled => RunStatus::Cancelled,
                            StopReason::NonFinite => RunStatus::Failed,
                        };
                    }
                    TrainEvent::Finished { step } => {
                        r.done = step;
                        r.status = RunStatus::Done;
                    }
                }
            }
            TrainUpdate::Held => {
                if let Some(r) = self.job.progress_mut() {
                    r.held = true;
                }
            }
            TrainUpdate::Released => {
                if let Some(r) = self.job.progress_mut() {
                    r.held = false;
                }
            }
            TrainUpdate::Preview { run, step, image } => {
                if let Some(r) = self.run_mut(run) {
                    r.preview = Some((step, image));
                }
            }
            TrainUpdate::GradSim { .. } => {}
        }
    }

    fn finish(&mut self, outcome: &Outcome<TrainOutcome>) {
        self.stage = None;
        match outcome {
            Outcome::Done(o) => {
                if o.cancelled {
                    for r in &mut self.runs {
                        if r.status == RunStatus::Queued || r.status == RunStatus::Running {
                            r.status = RunStatus::Cancelled;
                        }
                    }
                }
                self.outcome = Some(o.clone());
            }
            Outcome::Cancelled | Outcome::Failed(_) => {
                for r in &mut self.runs {
                    if r.status == RunStatus::Running {
                        r.status = RunStatus::Failed;
                    }
                }
                self.error = Some(match outcome {
                    Outcome::Failed(e) => e.clone(),
                    _ => "cancelled".into(),
                });
            }
        }
    }

    /// One line on how the last job ended.
    pub fn summary(&self) -> Option<String> {
        let o = self.outcome.as_ref()?;
        let out = o.out.display();
        Some(if o.cancelled {
            format!(
                "cancelled: every started run was saved at its current step in {out}; tick Resume to continue"
            )
        } else {
            match &o.set {
                Some(set) => format!(
                    "finished: {} experts of {} in {out}",
                    set.experts.len(),
                    folder_name(&set.base)
                ),
                None => format!("finished: saved {out}"),
            }
        })
    }
}
