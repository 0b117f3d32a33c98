//! What the merge worker (the thread that owns the open models) and the saves
//! report to the UI, and the channel it travels on. The views' own jobs report
//! through their job slots instead ([`super::job_slot`]).

use super::job_slot::Waker;
use super::preview::{Panel, Picture};
use super::session::SetInfo;
use crate::engine::merge::MergeSpec;
use crate::engine::model_set::ModelSet;
use std::fmt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

/// What the merge worker is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// Waiting for work.
    Idle,
    /// Loading a model set.
    Loading(String),
    /// Merging the weights.
    Merging,
    /// Sampling a panel.
    Sampling {
        /// Which panel.
        panel: Panel,
        /// Steps done.
        step: usize,
        /// Steps in the run.
        of: usize,
    },
    /// Scoring a panel on the held-out set.
    Evaluating(Panel),
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activity::Idle => write!(f, "idle"),
            Activity::Loading(what) => write!(f, "loading {what}"),
            Activity::Merging => write!(f, "merging"),
            Activity::Sampling { panel, step, of } => write!(
                f,
                "sampling {} (DDIM step {step}/{of})",
                panel.title().to_lowercase()
            ),
            Activity::Evaluating(p) => {
                write!(f, "held-out loss of {}", p.title().to_lowercase())
            }
        }
    }
}

/// A sample picture for one panel.
#[derive(Debug, Clone)]
pub struct PreviewEvent {
    /// Which panel.
    pub panel: Panel,
    /// The request it answers (0 for base and ensemble).
    pub generation: u64,
    /// The merge it shows (merged panel only).
    pub spec: Option<MergeSpec>,
    /// Steps taken.
    pub step: usize,
    /// Steps of the run.
    pub of: usize,
    /// Whether the run is finished.
    pub done: bool,
    /// The picture.
    pub image: Picture,
    /// Time from the request to this picture (merged panel only).
    pub latency: Option<Duration>,
}

/// Held-out loss of one panel.
#[derive(Debug, Clone, PartialEq)]
pub struct LossEvent {
    /// Which panel.
    pub panel: Panel,
    /// The merge it scores (merged panel only).
    pub spec: Option<MergeSpec>,
    /// Mean over all samples.
    pub mean: f64,
    /// Mean per expert timestep range.
    pub per_range: Vec<f64>,
}

/// Progress of a save or export.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// A stage started.
    Progress(String),
    /// Finished: what was written.
    Done(String),
    /// Failed: why.
    Failed(String),
}

/// Everything background work reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// The worker's current activity.
    Activity(Activity),
    /// A model set finished loading.
    Loaded(Box<SetInfo>),
    /// A model set failed to load (the previous one stays).
    LoadFailed {
        /// What was asked for.
        set: ModelSet,
        /// Why it failed.
        message: String,
    },
    /// A sample picture.
    Preview(PreviewEvent),
    /// A held-out loss.
    Loss(LossEvent),
    /// Merging failed for the current settings.
    MergeFailed(String),
    /// Save merge / export PNG.
    Job(JobEvent),
}

/// The sending side: events plus a wake-up of the UI.
#[derive(Clone)]
pub struct Emitter {
    tx: Sender<Event>,
    waker: Waker,
}

impl Emitter {
    /// A channel whose sends call `notify` (e.g. `ctx.request_repaint()`).
    pub fn channel(notify: Arc<dyn Fn() + Send + Sync>) -> (Self, Receiver<Event>) {
        let (tx, rx) = channel();
        let waker = Waker::from(notify);
        (Self { tx, waker }, rx)
    }

    /// Sends `event` and wakes the UI; a closed UI is ignored.
    pub fn emit(&self, event: Event) {
        let _ = self.tx.send(event);
        self.waker.wake();
    }

    /// What wakes the UI (for jobs that report through a channel of their own).
    pub fn waker(&self) -> &Waker {
        &self.waker
    }
}
