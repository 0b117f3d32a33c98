//! The merge controls: one slider and number field per weight, the sum-to-1
//! lock, undo / redo, the method and its settings, per-block multipliers.

use super::state::{MergeState, MethodKind};
use crate::app::settings::PreviewSettings;

/// Draws the weight rows; returns whether anything changed.
pub fn weights_ui(ui: &mut egui::Ui, m: &mut MergeState) {
    let n = m.num_experts();
    let mut any_dragged = false;
    egui::Grid::new("weights")
        .num_columns(4)
        .spacing([8.0, 6.0])
        .show(ui, |ui| {
            for i in 0..n {
                let range = m.ranges.get(i).copied();
                let label = ui.label(egui::RichText::new(format!("w{}", i + 1)).strong());
                let label = match range {
                    Some([lo, hi]) => label.on_hover_text(format!(
                        "weight of expert {} (finetuned on timesteps t in [{lo}, {hi}))",
                        i + 1
                    )),
                    None => label,
                };
                let mut v = m.weights()[i];
                let slider = ui
                    .add(
                        egui::Slider::new(&mut v, 0.0..=1.0)
                            .show_value(false)
                            .clamping(egui::SliderClamping::Never),
                    )
                    .labelled_by(label.id);
                if slider.changed() {
                    m.edit_weight(i, v, slider.dragged());
                }
                any_dragged |= slider.dragged();
                let mut typed = m.weights()[i];
                let field = ui
                    .add(
                        egui::DragValue::new(&mut typed)
                            .speed(0.005)
                            .range(-1.0..=2.0)
                            .fixed_decimals(3),
                    )
                    .labelled_by(label.id)
                    .on_hover_text("drag, or click and type a value");
                if field.changed() {
                    m.edit_weight(i, typed, field.dragged());
                }
                any_dragged |= field.dragged();
                if ui
                    .small_button("1/N")
                    .on_hover_text("reset this weight to 1/N")
                    .clicked()
                {
                    m.reset_weight(i);
                }
                ui.end_row();
            }
        });
    if !any_dragged {
        m.end_drag();
    }
}

/// The row under the weights: lock, sum, reset, undo, redo.
pub fn weight_tools_ui(ui: &mut egui::Ui, m: &mut MergeState) {
    ui.horizontal_wrapped(|ui| {
        let mut lock = m.lock_sum;
        if ui
            .checkbox(&mut lock, "Sum to 1")
            .on_hover_text("moving one weight rescales the others so that Σw stays 1")
            .changed()
        {
            m.set_lock_sum(lock);
        }
        let sum: f32 = m.weights().iter().sum();
        ui.label(format!("Σw = {sum:.3}"))
            .on_hover_text("sum of the weights; 1 keeps the merged model's scale");
    });
    ui.horizontal_wrapped(|ui| {
        if ui
            .button("Reset all")
            .on_hover_text("every weight 1/N: the plain average of the experts")
            .clicked()
        {
            m.reset_all();
        }
        let (can_undo, can_redo) = m.can_undo_redo();
        if ui
            .add_enabled(can_undo, egui::Button::new("Undo"))
            .on_hover_text("previous weights (Ctrl+Z)")
            .clicked()
        {
            m.undo();
        }
        if ui
            .add_enabled(can_redo, egui::Button::new("Redo"))
            .on_hover_text("next weights (Ctrl+Shift+Z)")
            .clicked()
        {
            m.redo();
        }
    });
}

/// Method choice and its settings.
pub fn method_ui(ui: &mut egui::Ui, m: &mut MergeState) {
    let before = m.method;
    let s = &mut m.method;
    ui.horizontal(|ui| {
        let label = ui.label("Method");
        let name = |k: MethodKind| match k {
            MethodKind::TaskArithmetic => "Task arithmetic",
            MethodKind::Ties => "TIES",
            MethodKind::Dare => "DARE",
        };
        egui::ComboBox::from_id_salt("method")
            .selected_text(name(s.kind))
            .show_ui(ui, |ui| {
                for k in [
                    MethodKind::TaskArithmetic,
                    MethodKind::Ties,
                    MethodKind::Dare,
                ] {
                    ui.selectable_value(&mut s.kind, k, name(k));
                }
            })
            .response
            .labelled_by(label.id)
            .on_hover_text("how the task vectors τ_i = θ_i − θ are combined");
    });
    match s.kind {
        MethodKind::TaskArithmetic => {
            ui.label(egui::RichText::new("θ + Σ w_i τ_i").weak());
        }
        MethodKind::Ties => {
            ui.horizontal(|ui| {
                let l = ui.label("keep k");
                ui.add(
                    egui::DragValue::new(&mut s.ties_k)
                        .range(0.01..=1.0)
                        .speed(0.01)
                        .fixed_decimals(2),
                )
                .labelled_by(l.id)
                .on_hover_text("fraction of each task vector kept (largest magnitudes)");
                let l = ui.label("scale λ");
                ui.add(
                    egui::DragValue::new(&mut s.ties_scale)
                        .range(0.0..=3.0)
                        .speed(0.01)
                        .fixed_decimals(2),
                )
                .labelled_by(l.id)
                .on_hover_text("scale of the merged task vector");
            });
        }
        MethodKind::Dare => {
            ui.horizontal(|ui| {
                let l = ui.label("drop p");
                ui.add(
                    egui::DragValue::new(&mut s.dare_p)
                        .range(0.0..=0.99)
                        .speed(0.01)
                        .fixed_decimals(2),
                )
                .labelled_by(l.id)
                .on_hover_text(
                    "probability of dropping each task-vector entry; survivors scale by 1/(1−p)",
                );
                let l = ui.label("seed");
                ui.add(egui::DragValue::new(&mut s.seed).range(0..=u64::MAX))
                    .labelled_by(l.id)
                    .on_hover_text("seed of the random drops");
            });
        }
    }
    if m.method != before {
        m.settings_changed();
    }
}

/// Per-block multipliers, folded away by default.
pub fn blocks_ui(ui: &mut egui::Ui, m: &mut MergeState) {
    egui::CollapsingHeader::new("Per-block weights")
        .default_open(false)
        .show(ui, |ui| {
            ui.label(
                egui::RichText::new("Inside a block the weights become multiplier × w_i (1 = unchanged, 0 = keep the base).")
                    .weak(),
            );
            let mut changed = false;
            egui::Grid::new("blocks").num_columns(3).show(ui, |ui| {
                for (block, mult) in m.blocks.iter_mut() {
                    let l = ui.label(block.as_str());
                    changed |= ui
                        .add(egui::Slider::new(mult, 0.0..=2.0).fixed_decimals(2).suffix(" ×"))
                        .labelled_by(l.id)
                        .changed();
                    if ui.small_button("1×").on_hover_text("back to 1 ×").clicked() {
                        *mult = 1.0;
                        changed = true;
                    }
                    ui.end_row();
                }
            });
            if changed {
                m.settings_changed();
            }
        });
}

/// Sampling settings of the previews, folded away; returns whether they changed.
pub fn preview_settings_ui(ui: &mut egui::Ui, p: &mut PreviewSettings) -> bool {
    let before = *p;
    egui::CollapsingHeader::new("Preview settings")
        .default_open(false)
        .show(ui, |ui| {
            egui::Grid::new("preview-settings")
                .num_columns(2)
                .show(ui, |ui| {
                    let l = ui.label("samples per row");
                    ui.add(egui::DragValue::new(&mut p.samples).range(1..=64))
                        .labelled_by(l.id)
                        .on_hover_text("how many samples each of base, ensemble and merged draws");
                    ui.end_row();
                    let l = ui.label("noise seed");
                    ui.add(egui::DragValue::new(&mut p.seed).range(0..=u64::MAX))
                        .labelled_by(l.id)
                        .on_hover_text("seed of the starting noise x_T shared by every row");
                    ui.end_row();
                    let l = ui.label("DDIM steps, dragging");
                    ui.add(egui::DragValue::new(&mut p.fast_steps).range(1..=50))
                        .labelled_by(l.id)
                        .on_hover_text("few steps keep the preview up with a moving slider");
                    ui.end_row();
                    let l = ui.label("DDIM steps, released");
                    ui.add(egui::DragValue::new(&mut p.fine_steps).range(1..=200))
                        .labelled_by(l.id)
                        .on_hover_text("the finer pass once the slider is released (the paper evaluates with 50)");
                    ui.end_row();
                });
        });
    *p != before
}
