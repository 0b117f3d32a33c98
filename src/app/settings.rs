//! What the app remembers between launches (eframe persistence).

use crate::engine::model_set::ModelSet;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Storage key of [`Settings`].
pub const SETTINGS_KEY: &str = "deme-studio.settings";

/// The top-level views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum View {
    /// Merge weights, previews, losses, grid search.
    #[default]
    Merge,
    /// The loaded models in detail, the data, the device.
    About,
    /// Per-timestep gradient conflicts of the base model.
    GradientConflicts,
    /// Pretraining and DeMe finetuning with live curves.
    Train,
    /// The loss landscape on the task-vector plane, linked to the merge weights.
    Landscape,
    /// Task-vector statistics: norms, per-layer spreads, cosines.
    TaskVectors,
    /// Teaching mode: 2D toy data with the MLP model.
    Teaching,
}

/// How previews are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PreviewSettings {
    /// Samples per panel.
    pub samples: usize,
    /// Seed of the starting noise `x_T` (the same for every panel).
    pub seed: u64,
    /// DDIM steps while a slider is being dragged.
    pub fast_steps: usize,
    /// DDIM steps once it is released.
    pub fine_steps: usize,
    /// Held-out samples behind the loss readout.
    pub eval_samples: usize,
}

impl Default for PreviewSettings {
    fn default() -> Self {
        Self {
            samples: 16,
            seed: 0,
            fast_steps: 5,
            fine_steps: 25,
            eval_samples: 64,
        }
    }
}

/// Everything persisted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The view shown at start-up.
    pub view: View,
    /// Preview sampling.
    pub preview: PreviewSettings,
    /// The last model set opened (reopened at start-up when it still exists).
    pub last_set: Option<ModelSet>,
    /// The folder dialogs start in.
    pub last_dir: Option<PathBuf>,
    /// Keep the weights summing to 1.
    pub lock_sum: bool,
}

impl Settings {
    /// Reads the settings from eframe's storage (defaults when absent or unreadable).
    pub fn load(storage: Option<&dyn eframe::Storage>) -> Self {
        storage
            .and_then(|s| eframe::get_value(s, SETTINGS_KEY))
            .unwrap_or_default()
    }

    /// Writes the settings to eframe's storage.
    pub fn store(&self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_tolerate_missing_fields() {
        let s = Settings {
            view: View::About,
            last_set: Some(ModelSet {
                base: "a".into(),
                experts: vec!["b".into()],
            }),
            lock_sum: true,
            ..Settings::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
        let old: Settings = serde_json::from_str(r#"{"lock_sum": true}"#).unwrap();
        assert_eq!(old.preview, PreviewSettings::default());
        assert!(old.lock_sum);
    }
}
