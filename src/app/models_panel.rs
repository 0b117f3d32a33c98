//! The models side panel: which base and experts are open, their structure,
//! the open buttons, and the empty state when nothing is open.

use super::session::{ModelSummary, SetInfo};
use crate::engine::model_set::{MAKE_SET_HELP, ModelSet};
use std::path::{Path, PathBuf};

/// What the panel asks the app to do.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelsAction {
    /// Show the folder dialog for the base.
    OpenBase,
    /// Show the folder dialog for the experts.
    OpenExperts,
    /// Show the folder dialog for a whole set.
    OpenSet,
    /// Open the shipped default set.
    OpenDefault,
}

/// Open models, loading state and the last loading error.
#[derive(Debug, Default)]
pub struct ModelsState {
    /// The loaded set.
    pub info: Option<SetInfo>,
    /// A set being loaded.
    pub loading: Option<ModelSet>,
    /// Why the last load failed (the loaded set, if any, stayed).
    pub error: Option<String>,
    /// A base chosen before any experts.
    pub chosen_base: Option<PathBuf>,
    /// Experts chosen before any base.
    pub chosen_experts: Vec<PathBuf>,
}

impl ModelsState {
    /// The set to load after the base `path` was picked, if complete.
    pub fn pick_base(&mut self, path: PathBuf) -> Option<ModelSet> {
        let experts = match (&self.info, self.chosen_experts.is_empty()) {
            (_, false) => std::mem::take(&mut self.chosen_experts),
            (Some(info), true) => info.set.experts.clone(),
            (None, true) => {
                self.chosen_base = Some(path);
                return None;
            }
        };
        Some(ModelSet {
            base: path,
            experts,
        })
    }

    /// The set to load after `paths` were picked as experts, if complete.
    pub fn pick_experts(&mut self, mut paths: Vec<PathBuf>) -> Option<ModelSet> {
        paths.sort_by_key(|p| natural_key(p));
        let base = match (&self.chosen_base, &self.info) {
            (Some(b), _) => b.clone(),
            (None, Some(info)) => info.set.base.clone(),
            (None, None) => {
                self.chosen_experts = paths;
                return None;
            }
        };
        self.chosen_base = None;
        Some(ModelSet {
            base,
            experts: paths,
        })
    }
}

/// Sort key putting `expert_2` before `expert_10`.
fn natural_key(p: &Path) -> (String, u64) {
    let name = p
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digits: String = name
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let stem = name[..name.len() - digits.len()].to_string();
    (stem, digits.parse().unwrap_or(0))
}

/// Groups digits: 1234567 -> "1,234,567".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn summary_ui(ui: &mut egui::Ui, m: &ModelSummary, detailed: bool) {
    let title = format!("{} · {}", m.role, m.name);
    egui::CollapsingHeader::new(title)
        .id_salt(("model", &m.path))
        .default_open(detailed)
        .show(ui, |ui| {
            ui.label(format!("{} parameters", thousands(m.params)));
            ui.label(&m.architecture);
            if let Some(kind) = &m.kind {
                let step = m.step.map(|s| format!(", {s} steps")).unwrap_or_default();
                ui.label(format!("made by: {kind}{step}"));
            }
            if let Some([lo, hi]) = m.timestep_range {
                ui.label(format!("finetuned on t in [{lo}, {hi})"));
            }
            if let Some(d) = &m.data {
                ui.label(format!("data: {d}"));
            }
            if let Some(p) = &m.projections {
                ui.label(format!(
                    "channel-wise projections: {}, up to {:.3} from the identity",
                    p.count, p.max_from_identity
                ))
                .on_hover_text(p.in_words());
                ui.label(
                    egui::RichText::new("diffusers applies them only through deme_unet.py")
                        .small()
                        .weak(),
                )
                .on_hover_text(p.in_words());
            }
            ui.label(
                egui::RichText::new(m.path.display().to_string())
                    .small()
                    .weak(),
            )
            .on_hover_text("model folder");
            if detailed {
                egui::CollapsingHeader::new("config.json")
                    .id_salt(("config", &m.path))
                    .show(ui, |ui| {
                        ui.label(egui::RichText::new(&m.config_json).monospace().small());
                    });
            }
        });
}

/// The open buttons.
fn open_buttons_ui(ui: &mut egui::Ui, has_default: bool, actions: &mut Vec<ModelsAction>) {
    ui.horizontal_wrapped(|ui| {
        if ui
            .button("Open base…")
            .on_hover_text("Pick the pretrained model folder (config.json + safetensors)")
            .clicked()
        {
            actions.push(ModelsAction::OpenBase);
        }
        if ui
            .button("Open experts…")
            .on_hover_text("Pick the expert folders expert_1 … expert_N (several at once)")
            .clicked()
        {
            actions.push(ModelsAction::OpenExperts);
        }
        if ui
            .button("Open set…")
            .on_hover_text("Pick a folder holding base/ and deme/expert_* (or FT/expert_*)")
            .clicked()
        {
            actions.push(ModelsAction::OpenSet);
        }
        if has_default
            && ui
                .button("Default set")
                .on_hover_text("Reopen the shipped assets/mnist-tiny set")
                .clicked()
        {
            actions.push(ModelsAction::OpenDefault);
        }
    });
}

/// The empty state: no models open, what to do about it.
pub fn empty_state_ui(
    ui: &mut egui::Ui,
    state: &ModelsState,
    has_default: bool,
) -> Vec<ModelsAction> {
    let mut actions = Vec::new();
    ui.add_space(48.0);
    ui.vertical_centered(|ui| {
        ui.heading("No models open");
        ui.add_space(12.0);
        egui::Frame::group(ui.style())
            .inner_margin(16.0)
            .show(ui, |ui| {
                ui.set_max_width(640.0);
                ui.with_layout(egui::Layout::top_down(egui::Align::Min), |ui| {
                    ui.label(
                        "The merge view works on a pretrained base model and its N \
                         timestep-range experts (diffusers model folders).",
                    );
                    if !has_default {
                        ui.label(
                            egui::RichText::new(
                                "No shipped default set was found (assets/mnist-tiny).",
                            )
                            .weak(),
                        );
                    }
                    ui.add_space(8.0);
                    if let Some(err) = &state.error {
                        ui.colored_label(ui.visuals().error_fg_color, err);
                    }
                    if let Some(b) = &state.chosen_base {
                        ui.label(format!(
                            "base chosen: {}; now open the experts",
                            b.display()
                        ));
                    }
                    if !state.chosen_experts.is_empty() {
                        ui.label(format!(
                            "{} experts chosen; now open the base",
                            state.chosen_experts.len()
                        ));
                    }
                    open_buttons_ui(ui, has_default, &mut actions);
                    ui.add_space(12.0);
                    ui.label("To make a set of your own, run:");
                    ui.label(egui::RichText::new(MAKE_SET_HELP).monospace());
                    ui.label("then open runs/mnist with “Open set…”.");
                });
            });
    });
    actions
}

/// The side panel's contents.
pub fn models_panel_ui(
    ui: &mut egui::Ui,
    state: &ModelsState,
    has_default: bool,
    detailed: bool,
) -> Vec<ModelsAction> {
    let mut actions = Vec::new();
    ui.heading("Models");
    open_buttons_ui(ui, has_default, &mut actions);
    if let Some(set) = &state.loading {
        ui.label(format!("loading {}…", set.base.display()));
    }
    if let Some(err) = &state.error {
        ui.add_space(4.0);
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!("Could not open the models: {err}"),
            );
            if state.info.is_some() {
                ui.label("The previously open models stay loaded.");
            }
        });
    }
    ui.separator();
    match &state.info {
        None => {
            ui.label("No models open.");
        }
        Some(info) => {
            egui::ScrollArea::vertical()
                .id_salt("models-scroll")
                .show(ui, |ui| {
                    ui.label(format!(
                        "{} experts over T = 1000 timesteps",
                        info.num_experts()
                    ));
                    match &info.eval {
                        Ok(what) => ui.label(format!("held-out loss on {what}")),
                        Err(why) => ui.label(format!("no held-out loss: {why}")).on_hover_text(
                            "the loss readout and grid search need the training data",
                        ),
                    };
                    ui.add_space(4.0);
                    for m in &info.models {
                        summary_ui(ui, m, detailed);
                    }
                });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn experts_sort_naturally_and_picks_complete_sets() {
        let mut s = ModelsState::default();
        assert_eq!(s.pick_base("b".into()), None);
        let set = s
            .pick_experts(vec![
                "x/expert_10".into(),
                "x/expert_2".into(),
                "x/expert_1".into(),
            ])
            .unwrap();
        assert_eq!(set.base, PathBuf::from("b"));
        let names: Vec<_> = set
            .experts
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(names, ["x/expert_1", "x/expert_2", "x/expert_10"]);
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
