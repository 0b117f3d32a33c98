//! The merge view's state: weights and their history, method settings,
//! per-block multipliers, what each preview panel shows and the losses. The
//! view draws it; tests drive it directly.

use super::history::WeightHistory;
use super::weights::{block_weights, default_weights, normalise, set_weight};
use crate::app::events::{LossEvent, PreviewEvent};
use crate::app::merge_worker::PreviewRequest;
use crate::app::preview::{Panel, PanelPreview, Shown};
use crate::app::session::SetInfo;
use crate::engine::merge::{DEFAULT_DARE_P, DEFAULT_TIES_K, MergeMethod, MergeSpec};
use std::time::{Duration, Instant};

/// The merge methods offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MethodKind {
    /// Task arithmetic.
    #[default]
    TaskArithmetic,
    /// TIES-Merging.
    Ties,
    /// DARE.
    Dare,
}

/// Method choice with every method's settings (kept when switching).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodSettings {
    /// The method used.
    pub kind: MethodKind,
    /// TIES: fraction of each task vector kept.
    pub ties_k: f32,
    /// TIES: scale of the merged task vector.
    pub ties_scale: f32,
    /// DARE: drop probability.
    pub dare_p: f32,
    /// DARE: seed of the drops.
    pub seed: u64,
}

impl Default for MethodSettings {
    fn default() -> Self {
        Self {
            kind: MethodKind::TaskArithmetic,
            ties_k: DEFAULT_TIES_K,
            ties_scale: 1.0,
            dare_p: DEFAULT_DARE_P,
            seed: 0,
        }
    }
}

impl MethodSettings {
    /// The engine's method value.
    pub fn method(&self) -> MergeMethod {
        match self.kind {
            MethodKind::TaskArithmetic => MergeMethod::TaskArithmetic,
            MethodKind::Ties => MergeMethod::Ties {
                k: self.ties_k,
                scale: self.ties_scale,
            },
            MethodKind::Dare => MergeMethod::Dare { p: self.dare_p },
        }
    }
}

/// Sampling quality of a preview request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quality {
    /// Few steps, while a slider is dragged.
    Fast,
    /// More steps, once released.
    Fine,
}

/// Time from a request to its first and its finished picture.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Request to first picture.
    pub first: Option<Duration>,
    /// Request to finished picture.
    pub done: Option<Duration>,
    /// Steps of that run.
    pub steps: usize,
}

/// Everything the merge view shows and edits.
#[derive(Default)]
pub struct MergeState {
    weights: Vec<f32>,
    /// Keep the weights summing to 1.
    pub lock_sum: bool,
    /// Method and settings.
    pub method: MethodSettings,
    /// Per-block multipliers (block prefix, multiplier; 1 = no override).
    pub blocks: Vec<(String, f32)>,
    history: WeightHistory,
    /// Weights when the current drag started.
    drag_start: Option<Vec<f32>>,
    pending: Option<Quality>,
    panels: [PanelPreview; 3],
    losses: [Option<LossEvent>; 3],
    /// Expert timestep ranges.
    pub ranges: Vec<[usize; 2]>,
    /// The last merge failure (cleared by the next good picture).
    pub error: Option<String>,
    latency: Latency,
    latency_key: (u64, usize),
}

impl MergeState {
    /// No models yet; the sum-to-1 lock as given.
    pub fn with_lock(lock_sum: bool) -> Self {
        Self {
            lock_sum,
            ..Self::default()
        }
    }

    /// Starts over for a newly loaded set: weights `1/N` (which sum to 1), no history.
    pub fn reset_for(&mut self, info: &SetInfo) {
        self.weights = default_weights(info.num_experts());
        self.blocks = info.blocks.iter().map(|b| (b.clone(), 1.0)).collect();
        self.ranges = info.ranges.clone();
        self.history.clear();
        self.drag_start = None;
        for p in &mut self.panels {
            p.clear();
        }
        self.losses = Default::default();
        self.error = None;
        // a quick first look; the worker refines it when it has time
        self.pending = Some(Quality::Fast);
    }

    /// The weights `w_1..w_N`.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Number of experts (0 before a set is loaded).
    pub fn num_experts(&self) -> usize {
        self.weights.len()
    }

    /// The merge the weights and settings describe.
    pub fn spec(&self) -> MergeSpec {
        MergeSpec {
            method: self.method.method(),
            weights: self.weights.clone(),
            block_weights: block_weights(&self.blocks, &self.weights),
            seed: self.method.seed,
        }
    }

    /// Changes weight `i` as a slider would: `dragging` edits preview fast and
    /// are recorded in the history once the drag ends; others at once.
    pub fn edit_weight(&mut self, i: usize, value: f32, dragging: bool) {
        let before = self.weights.clone();
        set_weight(&mut self.weights, i, value, self.lock_sum);
        if self.weights == before {
            return;
        }
        if dragging {
            self.drag_start.get_or_insert(before);
            self.pending = Some(Quality::Fast);
        } else {
            let start = self.drag_start.take().unwrap_or(before);
            self.history.record(start, &self.weights);
            self.pending = Some(Quality::Fine);
        }
    }

    /// A drag ended: records it and asks for the fine preview.
    pub fn end_drag(&mut self) {
        if let Some(start) = self.drag_start.take() {
            self.history.record(start, &self.weights);
            self.pending = Some(Quality::Fine);
        }
    }

    /// Sets weight `i` (a committed edit, e.g. typed in).
    pub fn set_weight(&mut self, i: usize, value: f32) {
        self.edit_weight(i, value, false);
    }

    /// Replaces all weights (a committed edit); ignored when the length differs.
    pub fn set_weights(&mut self, weights: &[f32]) {
        if weights.len() != self.weights.len() || weights == self.weights.as_slice() {
            return;
        }
        self.end_drag();
        let before = std::mem::replace(&mut self.weights, weights.to_vec());
        self.history.record(before, &self.weights);
        self.pending = Some(Quality::Fine);
    }

    /// Replaces all weights as a drag on a linked control would (the
    /// landscape): `dragging` edits preview fast and become one history entry
    /// when the drag ends ([`Self::end_drag`]); others are committed at once.
    pub fn drag_weights(&mut self, weights: &[f32], dragging: bool) {
        if !dragging {
            self.set_weights(weights);
            return;
        }
        if weights.len() != self.weights.len() || weights == self.weights.as_slice() {
            return;
        }
        let before = std::mem::replace(&mut self.weights, weights.to_vec());
        self.drag_start.get_or_insert(before);
        self.pending = Some(Quality::Fast);
    }

    /// Resets weight `i` to `1/N`.
    pub fn reset_weight(&mut self, i: usize) {
        let n = self.weights.len().max(1);
        self.set_weight(i, 1.0 / n as f32);
    }

    /// Resets every weight to `1/N`.
    pub fn reset_all(&mut self) {
        let w = default_weights(self.weights.len());
        self.set_weights(&w);
    }

    /// Turns the sum-to-1 lock on or off (on rescales the weights to sum to 1).
    pub fn set_lock_sum(&mut self, on: bool) {
        self.lock_sum = on;
        if on {
            let mut w = self.weights.clone();
            normalise(&mut w);
            self.set_weights(&w);
        }
    }

    /// Steps back in the weight history.
    pub fn undo(&mut self) -> bool {
        self.end_drag();
        match self.history.undo(&self.weights) {
            Some(w) => {
                self.weights = w;
                self.pending = Some(Quality::Fine);
                true
            }
            None => false,
        }
    }

    /// Steps forward again.
    pub fn redo(&mut self) -> bool {
        self.end_drag();
        match self.history.redo(&self.weights) {
            Some(w) => {
                self.weights = w;
                self.pending = Some(Quality::Fine);
                true
            }
            None => false,
        }
    }

    /// Whether undo / redo have something to do.
    pub fn can_undo_redo(&self) -> (bool, bool) {
        (self.history.can_undo(), self.history.can_redo())
    }

    /// Asks for a quick preview (after the preview settings changed); the worker refines it.
    pub fn refresh(&mut self) {
        self.pending = Some(Quality::Fast);
    }

    /// Asks for a fine preview (after a method or block change).
    pub fn settings_changed(&mut self) {
        self.pending = Some(Quality::Fine);
    }

    /// The request to send, if the weights or settings changed since the last one.
    pub fn take_request(&mut self, fast_steps: usize, fine_steps: usize) -> Option<PreviewRequest> {
        if self.weights.is_empty() {
            return None;
        }
        let quality = self.pending.take()?;
        let steps = match quality {
            Quality::Fast => fast_steps,
            Quality::Fine => fine_steps,
        };
        Some(PreviewRequest {
            spec: self.spec(),
            steps: steps.max(1),
            submitted: Instant::now(),
            evaluate: quality == Quality::Fine,
        })
    }

    /// Whether a request is waiting to be sent.
    pub fn has_pending_request(&self) -> bool {
        self.pending.is_some()
    }

    /// Takes a picture from the worker. A merged intermediate step replaces
    /// the picture only when that shows other weights or is itself unfinished,
    /// so a finished fast preview stays up while the fine pass refines it.
    pub fn apply_preview(&mut self, ev: PreviewEvent) {
        if ev.panel == Panel::Merged {
            self.error = None;
            // only requests the UI made are timed (not the worker's refinements)
            if let Some(latency) = ev.latency {
                if (ev.generation, ev.of) != self.latency_key {
                    self.latency_key = (ev.generation, ev.of);
                    self.latency = Latency {
                        first: Some(latency),
                        done: None,
                        steps: ev.of,
                    };
                }
                if ev.done {
                    self.latency.done = Some(latency);
                }
            }
        }
        let panel = &mut self.panels[ev.panel.index()];
        let accept = ev.done
            || match panel.shown() {
                None => true,
                Some(s) => ev.generation >= s.generation && (!s.done || s.spec != ev.spec),
            };
        if accept {
            panel.show(Shown {
                preview: ev.image,
                spec: ev.spec,
                step: ev.step,
                of: ev.of,
                done: ev.done,
                generation: ev.generation,
            });
        }
    }

    /// Takes a held-out loss from the worker.
    pub fn apply_loss(&mut self, ev: LossEvent) {
        let i = ev.panel.index();
        self.losses[i] = Some(ev);
    }

    /// A panel's preview.
    pub fn panel(&self, panel: Panel) -> &PanelPreview {
        &self.panels[panel.index()]
    }

    /// A panel's preview, mutably (for its texture).
    pub fn panel_mut(&mut self, panel: Panel) -> &mut PanelPreview {
        &mut self.panels[panel.index()]
    }

    /// A panel's latest held-out loss.
    pub fn loss(&self, panel: Panel) -> Option<&LossEvent> {
        self.losses[panel.index()].as_ref()
    }

    /// Timing of the latest merged preview.
    pub fn latency(&self) -> Latency {
        self.latency
    }

    /// Whether the merged panel shows the finished fine preview of the current settings.
    pub fn is_settled(&self, fine_steps: usize) -> bool {
        let spec = self.spec();
        self.pending.is_none()
            && self.panel(Panel::Merged).shown().is_some_and(|s| {
                s.done && s.of == fine_steps.max(1) && s.spec.as_ref() == Some(&spec)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::preview::{Picture, PreviewImage, Samples};

    fn info(n: usize) -> SetInfo {
        SetInfo {
            set: crate::engine::model_set::ModelSet {
                base: "b".into(),
                experts: vec!["e".into(); n],
            },
            models: vec![],
            blocks: vec!["mid_block".into()],
            ranges: vec![[0, 1]; n],
            item_shape: [1, 2, 2],
            eval: Err("none".into()),
        }
    }

    fn picture(v: f32) -> Picture {
        PreviewImage::new(Samples {
            values: vec![v; 4],
            shape: [1, 1, 2, 2],
        })
        .unwrap()
        .into()
    }

    #[test]
    fn a_drag_is_one_history_entry_and_previews_fast_then_fine() {
        let mut m = MergeState::default();
        m.reset_for(&info(2));
        assert_eq!(m.take_request(5, 25).unwrap().steps, 5);
        m.edit_weight(0, 0.6, true);
        m.edit_weight(0, 0.7, true);
        let r = m.take_request(5, 25).unwrap();
        assert_eq!((r.steps, r.evaluate), (5, false));
        assert!(m.take_request(5, 25).is_none());
        m.end_drag();
        let r = m.take_request(5, 25).unwrap();
        assert_eq!((r.steps, r.evaluate), (25, true));
        assert_eq!(r.spec.weights, vec![0.7, 0.5]);
        assert!(m.undo());
        assert_eq!(m.weights(), &[0.5, 0.5]);
        assert!(!m.undo());
        assert!(m.redo());
        assert_eq!(m.weights(), &[0.7, 0.5]);
    }

    #[test]
    fn a_drag_on_a_linked_control_is_one_history_entry() {
        let mut m = MergeState::default();
        m.reset_for(&info(2));
        m.take_request(5, 25);
        m.drag_weights(&[0.1, 0.2], true);
        m.drag_weights(&[0.3, 0.4], true);
        let r = m.take_request(5, 25).unwrap();
        assert_eq!((r.steps, r.evaluate), (5, false));
        assert_eq!(m.weights(), &[0.3, 0.4]);
        m.end_drag();
        assert_eq!(m.take_request(5, 25).unwrap().steps, 25);
        assert!(m.undo());
        assert_eq!(m.weights(), &[0.5, 0.5]);
        assert!(!m.undo(), "the whole drag was one entry");
        m.drag_weights(&[0.9, 0.9], false);
        assert_eq!(m.take_request(5, 25).unwrap().steps, 25);
        assert!(m.undo());
        assert_eq!(m.weights(), &[0.5, 0.5]);
    }

    #[test]
    fn a_finished_fast_preview_stays_while_the_fine_pass_runs() {
        let mut m = MergeState::default();
        m.reset_for(&info(1));
        assert!(m.take_request(5, 25).is_some());
        let spec = Some(m.spec());
        let ev = |generation, step, of, done, v| PreviewEvent {
            panel: Panel::Merged,
            generation,
            spec: spec.clone(),
            step,
            of,
            done,
            image: picture(v),
            latency: Some(Duration::from_millis(10)),
        };
        m.apply_preview(ev(1, 1, 5, false, 0.0));
        m.apply_preview(ev(1, 5, 5, true, 0.5));
        m.apply_preview(ev(2, 1, 25, false, -1.0));
        let shown = m.panel(Panel::Merged).shown().unwrap();
        assert_eq!((shown.generation, shown.of), (1, 5), "fast result kept");
        m.apply_preview(ev(2, 25, 25, true, 1.0));
        assert!(m.is_settled(25));
        assert_eq!(m.latency().steps, 25);
    }
}
