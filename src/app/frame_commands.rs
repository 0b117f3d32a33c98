//! How the app acts: the pages' commands run in one place, file dialogs, saves
//! and the reports of background work applied once per frame.

use super::command::AppCommand;
use super::dialogs::{DialogKind, DialogOutcome, open_dialog};
use super::events::{Event, JobEvent};
use super::frame::StudioApp;
use super::job_slot::{Outcome, Report};
use super::merge_worker::Command;
use super::notice::Notice;
use super::preview::Panel;
use super::save_job::{SaveJob, spawn_save};
use super::settings::View;
use super::taskvec::TaskVecAction;
use super::teaching::run_notice;
use super::train::end_notice;
use super::train::form::TrainMode;
use super::train::job::spawn_train;
use super::train::plan::TrainUpdate;
use crate::engine::merge::MergeJob;
use crate::engine::model_set::ModelSet;
use crate::engine::train::fmt_boundaries;
use std::path::{Path, PathBuf};

impl StudioApp {
    /// Starts loading `set` (the open set stays until it has loaded).
    pub fn open(&mut self, set: ModelSet) {
        self.models.loading = Some(set.clone());
        self.models.error = None;
        self.worker.send(Command::Load(set));
    }

    /// Says `text` in the status bar (in red when `error`).
    pub(super) fn tell(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
        });
    }

    /// Runs `job` off the UI thread; the status bar follows it.
    fn save(&mut self, job: SaveJob) {
        if let Some(busy) = &job.busy {
            self.job = Some(busy.clone());
        }
        spawn_save(job, self.emit.clone());
    }

    /// Saves the current merge (checkpoint + recipe) into `dir` in the background.
    pub fn save_merge_to(&mut self, dir: PathBuf) {
        let Some(info) = &self.models.info else {
            self.tell("open models before saving a merge", true);
            return;
        };
        let job = MergeJob {
            base: info.set.base.clone(),
            experts: info.set.experts.clone(),
            spec: self.merge.spec(),
            output: None,
            drop_projections: false,
        };
        self.save(SaveJob::merge(job, dir));
    }

    /// Exports the previews shown (side by side) as the PNG `path` in the background.
    pub fn export_png_to(&mut self, path: PathBuf) {
        let images: Vec<egui::ColorImage> = Panel::ALL
            .iter()
            .filter_map(|&p| self.merge.panel(p).image().cloned())
            .collect();
        self.save(SaveJob::previews(images, path));
    }

    /// Opens dialog `kind` unless one is open; its answer comes back through
    /// the frame's dialog slot.
    fn dialog(&mut self, kind: DialogKind) {
        if self.dialog.is_running() {
            return;
        }
        let start = match kind {
            DialogKind::ExportTaskVectors => Some(PathBuf::from(self.taskvec.export_dir.trim()))
                .filter(|p| p.is_dir())
                .or_else(|| self.settings.last_dir.clone()),
            _ => self.settings.last_dir.clone(),
        };
        let (_, sink) = self.dialog.start(kind, self.emit.waker());
        open_dialog(kind, start, sink);
    }

    fn on_dialog(&mut self, out: DialogOutcome) {
        let Some(first) = out.paths.first().cloned() else {
            return; // cancelled
        };
        let parent_of = |p: &Path| p.parent().map(Path::to_path_buf);
        self.settings.last_dir = match out.kind {
            DialogKind::OpenSet | DialogKind::SaveMerge | DialogKind::ExportTaskVectors => {
                Some(first.clone())
            }
            _ => parent_of(&first),
        };
        match out.kind {
            DialogKind::OpenBase => {
                if let Some(set) = self.models.pick_base(first) {
                    self.open(set);
                }
            }
            DialogKind::OpenExperts => {
                if let Some(set) = self.models.pick_experts(out.paths) {
                    self.open(set);
                }
            }
            DialogKind::OpenSet => match ModelSet::discover(&first) {
                Some(set) => self.open(set),
                None => {
                    self.models.error = Some(format!(
                        "{} holds no model set: expected base/ (with config.json) and deme/expert_1 … (or FT/expert_1 …)",
                        first.display()
                    ));
                }
            },
            DialogKind::SaveMerge => self.save_merge_to(first),
            DialogKind::ExportPng => self.export_png_to(first),
            DialogKind::ExportTaskVectors => {
                self.taskvec.export_dir = first.display().to_string();
                self.run_command(AppCommand::ExportTaskVectors);
            }
            DialogKind::TrainOutput => self.train.form.out = first.display().to_string(),
            DialogKind::TrainBase => self.train.form.base = first.display().to_string(),
        }
    }

    /// Runs what a page asked for.
    pub(super) fn run_command(&mut self, command: AppCommand) {
        match command {
            AppCommand::Worker(c) => self.worker.send(c),
            AppCommand::Dialog(kind) => self.dialog(kind),
            AppCommand::Open(set) => self.open(set),
            AppCommand::OpenDefault => {
                if let Some(set) = self.default_set.clone() {
                    self.open(set);
                }
            }
            AppCommand::SwitchView(view) => self.set_view(view),
            AppCommand::Tell(notice) => self.notice = Some(notice),
            AppCommand::Save(job) => self.save(job),
            AppCommand::Spawn(task) => {
                let name = task.name;
                if let Err(e) = std::thread::Builder::new()
                    .name(name.into())
                    .spawn(task.run)
                {
                    self.tell(format!("could not start the {name} thread: {e}"), true);
                }
            }
            AppCommand::SetWeights { weights, dragging } => {
                self.merge.drag_weights(&weights, dragging)
            }
            AppCommand::EndDrag => self.merge.end_drag(),
            AppCommand::StartTraining => self.start_training(),
            AppCommand::ExportTaskVectors => {
                if let Some(TaskVecAction::Export(task)) = self.taskvec.export(self.emit.waker()) {
                    self.run_command(AppCommand::Spawn(task));
                }
            }
            AppCommand::UseBoundaries(boundaries) => {
                let form = &mut self.train.form;
                form.mode = TrainMode::Finetune;
                form.boundaries = fmt_boundaries(&boundaries);
                // the conflicts were those of the open set's base
                if form.base.trim().is_empty()
                    && let Some(info) = &self.models.info
                {
                    form.base = info.set.base.display().to_string();
                }
                self.settings.view = View::Train;
                self.tell(
                    format!(
                        "the Train view finetunes {} experts on the ranges {}",
                        boundaries.len().saturating_sub(1),
                        fmt_boundaries(&boundaries)
                    ),
                    false,
                );
            }
        }
    }

    /// Checks the Train view's form and starts its job on a background
    /// thread; a bad setting is shown in the view and nothing starts.
    pub fn start_training(&mut self) {
        if self.train.is_running() {
            return;
        }
        let job = match self.train.form.job() {
            Ok(mut job) => {
                if self.train.form.gradsim_live {
                    job.gradsim = Some(self.gradsim.config());
                }
                job
            }
            Err(e) => {
                self.train.error = Some(format!("{e:#}"));
                self.tell("training not started: see the Train view", true);
                return;
            }
        };
        let job = self.train.begin(job, self.emit.waker());
        let out = job.out.clone();
        match spawn_train(job, self.device.clone()) {
            Ok(handle) => {
                self.train.set_thread(handle);
                self.tell(format!("training into {}", out.display()), false);
            }
            Err(e) => self
                .train
                .abandon(format!("could not start the training thread: {e}")),
        }
    }

    /// Applies everything background work reported since the last frame.
    pub fn poll_events(&mut self) {
        self.gradsim.poll();
        if let Some(follow) = self.grid.poll() {
            self.merge.drag_weights(&follow.weights, follow.dragging);
            self.landscape.path = self.grid.learned_path().unwrap_or_default();
        }
        self.landscape.poll();
        for notice in self.taskvec.poll() {
            self.notice = Some(notice);
        }
        for notice in [self.teaching.export.poll(), self.train.export.poll()]
            .into_iter()
            .flatten()
        {
            self.notice = Some(notice);
        }
        if let Some(end) = self.teaching.poll() {
            self.notice = Some(run_notice(&end));
            if let Outcome::Done(set) = end {
                self.open(set);
            }
        }
        let (live, end) = self.train.poll();
        for u in live {
            if let TrainUpdate::GradSim { result, source } = u {
                self.gradsim.show_live(result, source);
            }
        }
        if let Some(notice) = end.and_then(|end| end_notice(&self.train, &end)) {
            self.notice = Some(notice);
        }
        for report in self.dialog.poll() {
            if let Report::Finished(Outcome::Done(out)) = report {
                self.on_dialog(out);
            }
        }
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Activity(a) => self.activity = a,
                Event::Loaded(info) => {
                    self.merge.reset_for(&info);
                    self.grid.reset();
                    self.gradsim.reset();
                    self.landscape.reset();
                    self.taskvec.reset();
                    self.settings.last_set = Some(info.set.clone());
                    self.models.loading = None;
                    self.models.error = None;
                    self.tell(
                        format!(
                            "opened {}: base + {} experts",
                            info.set.name(),
                            info.num_experts()
                        ),
                        false,
                    );
                    self.models.info = Some(*info);
                }
                Event::LoadFailed { set, message } => {
                    if self.models.loading.as_ref() == Some(&set) {
                        self.models.loading = None;
                    }
                    self.tell("could not open the models (see the models panel)", true);
                    self.models.error = Some(message);
                    // a request dropped while loading is asked again
                    self.merge.settings_changed();
                }
                Event::Preview(p) => self.merge.apply_preview(p),
                Event::Loss(l) => self.merge.apply_loss(l),
                Event::MergeFailed(m) => self.merge.error = Some(m),
                Event::Job(JobEvent::Progress(s)) => self.job = Some(s),
                Event::Job(JobEvent::Done(s)) => {
                    self.job = None;
                    self.tell(s, false);
                }
                Event::Job(JobEvent::Failed(s)) => {
                    self.job = None;
                    self.tell(s, true);
                }
            }
        }
    }
}
