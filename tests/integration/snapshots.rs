//! Snapshot images of each view, rendered by egui_kittest's wgpu renderer from
//! the real app state on the shipped mnist-tiny set, and compared with the
//! committed PNGs in `tests/snapshots/` (`UPDATE_SNAPSHOTS=1` rewrites them).
//!
//! Text that changes from run to run (timings in the status bar) is kept out
//! of the picture by waiting for the finished state; the comparison allows a
//! small number of differing pixels for rasterisation differences between
//! drivers.

use crate::common;
use common::app::{gpu_harness_sized, harness_sized, wait_until_within};

use deme_studio::app::settings::PreviewSettings;
use deme_studio::app::{Settings, StartOptions, StudioApp, View};
use deme_studio::engine::model_set::default_set;
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use std::time::Duration;

const SIZE: [f32; 2] = [1280.0, 800.0];

/// Small previews so that a snapshot takes seconds on a CPU.
fn previews() -> PreviewSettings {
    PreviewSettings {
        samples: 8,
        seed: 0,
        fast_steps: 2,
        fine_steps: 5,
        eval_samples: 32,
    }
}

fn app_on(view: View, with_models: bool) -> Harness<'static, StudioApp> {
    harness_sized(app(view, with_models, false), SIZE)
}

fn app(view: View, with_models: bool, gpu_maps: bool) -> StudioApp {
    let models = with_models.then(|| default_set().expect("assets/mnist-tiny is shipped"));
    StudioApp::headless(StartOptions {
        models,
        default_set: default_set(),
        settings: Settings {
            view,
            preview: previews(),
            ..Settings::default()
        },
        gpu_maps,
        ..StartOptions::cpu("cpu (flex)")
    })
}

fn settle(h: &mut Harness<'_, StudioApp>, what: &str, cond: impl Fn(&StudioApp) -> bool) {
    wait_until_within(h, what, Duration::from_secs(300), cond);
    for _ in 0..3 {
        h.step();
    }
}

fn options() -> SnapshotOptions {
    // timings in the status bar differ by a few glyphs between runs
    SnapshotOptions::new()
        .threshold(1.0)
        .max_failed_pixels(1500)
}

#[test]
fn empty_state() {
    let mut h = app_on(View::Merge, false);
    settle(&mut h, "the first frame", |_| true);
    h.snapshot_options("empty_state", &options());
}

#[test]
fn merge_view() {
    let mut h = app_on(View::Merge, true);
    settle(&mut h, "the finished previews", |a| {
        a.models().info.is_some() && a.is_idle()
    });
    h.snapshot_options("merge_view", &options());
}

#[test]
fn gradient_conflicts_view() {
    // the window's renderer: the matrix drawn by shaders/field.wgsl
    let mut h = gpu_harness_sized(app(View::GradientConflicts, true, true), SIZE);
    settle(&mut h, "the models", |a| a.models().info.is_some());
    // two batches of 8 (the defaults take a minute on a CPU): the ceiling shows
    h.state_mut().gradsim_mut().batches = 2;
    h.state_mut().gradsim_mut().batch_size = 8;
    h.step();
    h.get_by_label("Compute").click();
    settle(&mut h, "the heatmap", |a| {
        a.gradsim().result().is_some() && !a.gradsim().is_running() && a.is_idle()
    });
    h.snapshot_options("gradient_conflicts_view", &options());
}

#[test]
fn landscape_view() {
    // the window's renderer: the map drawn per pixel by shaders/field.wgsl
    let mut h = gpu_harness_sized(app(View::Landscape, true, true), SIZE);
    settle(&mut h, "the models", |a| a.models().info.is_some());
    h.state_mut().landscape_mut().size = 5;
    h.state_mut().landscape_mut().samples = 8;
    h.get_by_label("Compute").click();
    settle(&mut h, "the landscape", |a| {
        a.landscape().result().is_some() && !a.landscape().is_running() && a.is_idle()
    });
    h.snapshot_options("landscape_view", &options());
}

#[test]
fn train_view() {
    let mut h = app_on(View::Train, true);
    settle(&mut h, "the models", |a| {
        a.models().info.is_some() && a.is_idle()
    });
    // paths that do not depend on where the checkout lives
    let form = &mut h.state_mut().train_mut().form;
    form.base = "assets/mnist-tiny/base".into();
    form.out = "runs/deme".into();
    settle(&mut h, "the form", |_| true);
    h.snapshot_options("train_view", &options());
}

#[test]
fn task_vectors_view() {
    let mut h = app_on(View::TaskVectors, true);
    settle(&mut h, "the statistics", |a| {
        a.taskvec().result().is_some() && !a.taskvec().is_running() && a.is_idle()
    });
    h.state_mut().taskvec_mut().export_dir = "task-vectors".into();
    settle(&mut h, "the form", |_| true);
    h.snapshot_options("task_vectors_view", &options());
}

#[test]
fn teaching_view() {
    let mut h = app_on(View::Teaching, false);
    settle(&mut h, "the first frame", |_| true);
    h.snapshot_options("teaching_view", &options());
}
