//! The Train view's settings form as widgets.

use super::form::{
    BaselineChoice, FormAction, GRADSIM_LIVE_LABEL, TrainForm, TrainMode, default_out,
};
use crate::engine::checkpoint::PRESET_NAMES;
use crate::engine::train::{MixMode, Schedule, TrainConfig};
use egui::DragValue;

/// A grid row: `label`, then the widget `add` draws, named by the label.
fn field(
    ui: &mut egui::Ui,
    label: &str,
    hint: &str,
    add: impl FnOnce(&mut egui::Ui) -> egui::Response,
) {
    let l = ui.label(label);
    let r = add(ui).labelled_by(l.id);
    if !hint.is_empty() {
        r.on_hover_text(hint);
    }
    ui.end_row();
}

fn opt_value(ui: &mut egui::Ui, label: &str, value: &mut Option<f64>, on: f64, hint: &str) {
    ui.horizontal(|ui| {
        let mut enabled = value.is_some();
        let c = ui.checkbox(&mut enabled, label).on_hover_text(hint);
        if c.changed() {
            *value = enabled.then_some(on);
        }
        if let Some(v) = value {
            ui.add(DragValue::new(v).speed(0.0001).max_decimals(6))
                .labelled_by(c.id);
        }
    });
}

fn lr_value(lr: &mut f64) -> impl egui::Widget + '_ {
    DragValue::new(lr)
        .speed(1e-5)
        .range(1e-7..=1.0)
        .custom_formatter(|v, _| format!("{v:.1e}"))
        .custom_parser(|s| s.trim().parse().ok())
}

/// Draws the settings; `running` locks them.
pub fn form_ui(ui: &mut egui::Ui, form: &mut TrainForm, running: bool) -> Vec<FormAction> {
    let mut actions = Vec::new();
    ui.add_enabled_ui(!running, |ui| {
        ui.horizontal(|ui| {
            ui.radio_value(&mut form.mode, TrainMode::Finetune, "Finetune experts")
                .on_hover_text("DeMe: N copies of a base, each mostly on its timestep range");
            ui.radio_value(&mut form.mode, TrainMode::Pretrain, "Pretrain a base")
                .on_hover_text("train a model from scratch");
        });
        egui::Grid::new("train-form-paths")
            .num_columns(2)
            .show(ui, |ui| {
                field(
                    ui,
                    "data",
                    "mnist (embedded), cifar10:PATH, images:PATH, idx:PATH or toy:NAME \
                     (moons, swissroll, 8gaussians, checkerboard)",
                    |ui| ui.add(egui::TextEdit::singleline(&mut form.data).desired_width(200.0)),
                );
                match form.mode {
                    TrainMode::Pretrain => {
                        let l = ui.label("model");
                        ui.horizontal(|ui| {
                            ui.add(
                                egui::TextEdit::singleline(&mut form.model).desired_width(120.0),
                            )
                            .labelled_by(l.id)
                            .on_hover_text("a preset or the path of a diffusers config.json");
                            egui::ComboBox::new("train-preset", "preset")
                                .selected_text("choose")
                                .show_ui(ui, |ui| {
                                    for p in PRESET_NAMES.iter().copied().chain(["toy-mlp"]) {
                                        ui.selectable_value(&mut form.model, p.to_string(), p);
                                    }
                                });
                        });
                        ui.end_row();
                    }
                    TrainMode::Finetune => {
                        let l = ui.label("base");
                        ui.horizontal(|ui| {
                            ui.add(egui::TextEdit::singleline(&mut form.base).desired_width(190.0))
                                .labelled_by(l.id)
                                .on_hover_text("the pretrained model folder");
                            if ui.button("Browse…").clicked() {
                                actions.push(FormAction::BrowseBase);
                            }
                        });
                        ui.end_row();
                    }
                }
                let l = ui.label("output");
                ui.horizontal(|ui| {
                    ui.add(egui::TextEdit::singleline(&mut form.out).desired_width(150.0))
                        .labelled_by(l.id)
                        .on_hover_text(match form.mode {
                            TrainMode::Pretrain => {
                                "the model folder written (with its training state)"
                            }
                            TrainMode::Finetune => {
                                "runs go to expert_1 .. expert_N (and baseline) inside it"
                            }
                        });
                    if ui.button("Browse…").clicked() {
                        actions.push(FormAction::BrowseOut);
                    }
                    if ui
                        .small_button("new")
                        .on_hover_text("a fresh folder under the temporary folder")
                        .clicked()
                    {
                        form.out = default_out(form.mode);
                    }
                });
                ui.end_row();
            });
        ui.checkbox(&mut form.resume, "Resume the run in the output folder")
            .on_hover_text("continue from its last checkpoint; steps may grow");
        ui.separator();
        match form.mode {
            TrainMode::Pretrain => pretrain_ui(ui, &mut form.pretrain),
            TrainMode::Finetune => finetune_ui(ui, form),
        }
        ui.collapsing("Data and previews", |ui| {
            egui::Grid::new("train-form-data")
                .num_columns(2)
                .show(ui, |ui| {
                    field(ui, "held-out fraction", "never trained on", |ui| {
                        ui.add(
                            DragValue::new(&mut form.val_fraction)
                                .speed(0.01)
                                .range(0.0..=0.9),
                        )
                    });
                    field(ui, "toy points", "points drawn for toy:NAME data", |ui| {
                        ui.add(DragValue::new(&mut form.toy_points).range(0..=1_000_000))
                    });
                });
            ui.checkbox(
                &mut form.preview.enabled,
                "Sample previews at each checkpoint",
            );
            egui::Grid::new("train-form-preview")
                .num_columns(2)
                .show(ui, |ui| {
                    field(ui, "images (toy: x32 points)", "", |ui| {
                        ui.add(DragValue::new(&mut form.preview.samples).range(1..=64))
                    });
                    field(ui, "DDIM steps", "", |ui| {
                        ui.add(DragValue::new(&mut form.preview.steps).range(1..=200))
                    });
                    field(
                        ui,
                        "noise seed",
                        "the same starting noise for every preview",
                        |ui| ui.add(DragValue::new(&mut form.preview.seed)),
                    );
                });
            ui.checkbox(&mut form.gradsim_live, GRADSIM_LIVE_LABEL)
                .on_hover_text(
                    "K timesteps x M batches of backward passes between steps; \
                     K, M and the batch size are those of the Gradient-conflicts view",
                );
            if form.gradsim_live {
                ui.weak(match form.mode {
                    TrainMode::Pretrain => {
                        "of the pretrain run, shown in the Gradient-conflicts view"
                    }
                    TrainMode::Finetune => {
                        "of the first run (the first expert, or the baseline alone), \
                         shown in the Gradient-conflicts view"
                    }
                });
            }
        });
    });
    actions
}

fn pretrain_ui(ui: &mut egui::Ui, c: &mut TrainConfig) {
    egui::Grid::new("train-form-pretrain")
        .num_columns(2)
        .show(ui, |ui| {
            field(ui, "steps", "total optimizer steps", |ui| {
                ui.add(DragValue::new(&mut c.steps).range(0..=10_000_000))
            });
            field(ui, "batch size", "images per step", |ui| {
                ui.add(DragValue::new(&mut c.batch_size).range(0..=4096))
            });
            field(ui, "learning rate", "peak learning rate", |ui| {
                ui.add(lr_value(&mut c.lr))
            });
            field(ui, "warm-up steps", "linear warm-up from 0", |ui| {
                ui.add(DragValue::new(&mut c.warmup_steps))
            });
            field(
                ui,
                "checkpoint every",
                "steps between checkpoints (and previews)",
                |ui| ui.add(DragValue::new(&mut c.checkpoint_every).range(1..=1_000_000)),
            );
            field(ui, "seed", "initialisation, batches and noise", |ui| {
                ui.add(DragValue::new(&mut c.seed))
            });
        });
    opt_value(
        ui,
        "EMA, decay cap",
        &mut c.ema_max_decay,
        0.999,
        "checkpoints hold the moving average",
    );
    adamw_ui(ui, &mut c.adamw, "train-adamw-pre");
}

fn finetune_ui(ui: &mut egui::Ui, form: &mut TrainForm) {
    let listed = !form.boundaries.trim().is_empty();
    let boundaries = &mut form.boundaries;
    let c = &mut form.finetune;
    egui::Grid::new("train-form-finetune")
        .num_columns(2)
        .show(ui, |ui| {
            field(
                ui,
                "experts N",
                "timestep ranges [i T / N, (i + 1) T / N), unless boundaries are given",
                |ui| ui.add_enabled(!listed, DragValue::new(&mut c.experts).range(0..=1000)),
            );
            field(
                ui,
                "range boundaries",
                "0 = b_0 < ... < b_N = T, e.g. 0,120,400,1000 (empty: N uniform ranges); \
                 the Gradient-conflicts view suggests them",
                |ui| {
                    ui.add(
                        egui::TextEdit::singleline(boundaries)
                            .hint_text("uniform")
                            .desired_width(180.0),
                    )
                },
            );
            field(
                ui,
                "steps per expert",
                "the baseline gets N times as many",
                |ui| ui.add(DragValue::new(&mut c.steps_per_expert).range(0..=10_000_000)),
            );
            field(ui, "batch size", "images per step", |ui| {
                ui.add(DragValue::new(&mut c.batch_size).range(0..=4096))
            });
            field(ui, "learning rate", "", |ui| ui.add(lr_value(&mut c.lr)));
            field(
                ui,
                "p (any timestep)",
                "probabilistic sampling: chance of drawing from all of [0, T)",
                |ui| ui.add(DragValue::new(&mut c.p).speed(0.01).range(0.0..=1.0)),
            );
            ui.label("coin");
            ui.horizontal(|ui| {
                ui.radio_value(&mut c.mix, MixMode::PerBatch, "per batch");
                ui.radio_value(&mut c.mix, MixMode::PerSample, "per sample");
            });
            ui.end_row();
            field(
                ui,
                "consistency lambda",
                "weight of the loss against the frozen base (0: off)",
                |ui| {
                    ui.add(
                        DragValue::new(&mut c.consistency_weight)
                            .speed(0.01)
                            .range(0.0..=100.0),
                    )
                },
            );
            field(ui, "warm-up steps", "linear warm-up from 0", |ui| {
                ui.add(DragValue::new(&mut c.warmup_steps))
            });
            field(
                ui,
                "checkpoint every",
                "steps between checkpoints (and previews)",
                |ui| ui.add(DragValue::new(&mut c.checkpoint_every).range(0..=1_000_000)),
            );
            field(ui, "seed", "batches, timesteps and noise", |ui| {
                ui.add(DragValue::new(&mut c.seed))
            });
            ui.label("schedule");
            ui.horizontal(|ui| {
                ui.radio_value(&mut form.schedule, Schedule::Interleaved, "interleaved")
                    .on_hover_text("one step of each run in turn: all progress together");
                ui.radio_value(&mut form.schedule, Schedule::Sequential, "sequential")
                    .on_hover_text("each run to its end (one model in memory)");
            });
            ui.end_row();
            ui.label("runs");
            ui.vertical(|ui| {
                ui.radio_value(
                    &mut form.baseline,
                    BaselineChoice::ExpertsOnly,
                    "the N experts",
                );
                ui.radio_value(
                    &mut form.baseline,
                    BaselineChoice::WithBaseline,
                    "experts + baseline",
                )
                .on_hover_text("also one copy finetuned on all timesteps for N x the steps");
                ui.radio_value(
                    &mut form.baseline,
                    BaselineChoice::BaselineOnly,
                    "baseline only",
                );
            });
            ui.end_row();
        });
    ui.checkbox(&mut c.antithetic, "antithetic timesteps")
        .on_hover_text("the second half of a batch mirrors the first inside its interval");
    ui.checkbox(&mut c.projection, "channel-wise projection (UNet)")
        .on_hover_text("identity-initialised 1x1 projections; off for the toy MLP");
    if form.baseline != BaselineChoice::ExpertsOnly {
        ui.checkbox(&mut c.baseline_consistency, "baseline: consistency loss");
        ui.checkbox(&mut c.baseline_projection, "baseline: projection");
    }
    opt_value(
        ui,
        "EMA, decay cap",
        &mut c.ema_max_decay,
        0.9999,
        "checkpoints hold the moving average",
    );
    adamw_ui(ui, &mut c.adamw, "train-adamw-ft");
}

fn adamw_ui(ui: &mut egui::Ui, a: &mut crate::engine::train::AdamWConfig, id: &str) {
    ui.collapsing("Optimizer (AdamW)", |ui| {
        egui::Grid::new(id).num_columns(2).show(ui, |ui| {
            field(ui, "beta1", "", |ui| {
                ui.add(
                    DragValue::new(&mut a.beta1)
                        .speed(0.001)
                        .range(0.0..=0.9999),
                )
            });
            field(ui, "beta2", "", |ui| {
                ui.add(
                    DragValue::new(&mut a.beta2)
                        .speed(0.0001)
                        .range(0.0..=0.99999),
                )
            });
            field(ui, "weight decay", "decoupled", |ui| {
                ui.add(
                    DragValue::new(&mut a.weight_decay)
                        .speed(1e-6)
                        .max_decimals(8),
                )
            });
        });
        opt_value(
            ui,
            "clip gradient norm",
            &mut a.max_grad_norm,
            1.0,
            "global norm clipping",
        );
    });
}
