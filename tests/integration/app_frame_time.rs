//! Frame time of the app while a training run goes on, against the same app
//! idle, and of the Landscape view's map painted by cells against drawn by the
//! field shader: benchmarks, not tests, so they are ignored by default. Run it with
//! `xvfb-run -a cargo test --release --test integration app_frame_time:: -- --ignored --nocapture`.
//!
//! A frame is one pass of the app's UI code (`page_ui`, layout, tessellation)
//! plus rendering it with egui's wgpu renderer (software Vulkan here), as the
//! window does each frame. The training run is the Train view's default DeMe
//! finetune of the shipped mnist-tiny base (4 experts, batch 64) on the same
//! CPU cores as the UI.

use crate::common;
use common::app::{gpu_harness_sized, harness_sized, wait_until_within};

use deme_studio::app::settings::PreviewSettings;
use deme_studio::app::{Settings, StartOptions, StudioApp, View};
use deme_studio::engine::model_set::default_set;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::time::{Duration, Instant};

const FRAMES: usize = 120;

fn stats(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "{name}: median {:.1} ms, p95 {:.1} ms, max {:.1} ms over {} frames",
        q(0.5),
        q(0.95),
        q(1.0),
        ms.len()
    );
    q(0.5)
}

/// `(ui, ui + render)` milliseconds of `FRAMES` frames.
fn frames(h: &mut Harness<'_, StudioApp>) -> (Vec<f64>, Vec<f64>) {
    let (mut ui, mut total) = (Vec::new(), Vec::new());
    for _ in 0..FRAMES {
        let start = Instant::now();
        h.step();
        let after_ui = start.elapsed();
        h.render().expect("rendering the frame");
        ui.push(after_ui.as_secs_f64() * 1e3);
        total.push(start.elapsed().as_secs_f64() * 1e3);
        // a frame every ~16 ms, as a window repainting for live curves would
        std::thread::sleep(Duration::from_millis(16));
    }
    (ui, total)
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn frame_time_while_training() {
    let set = default_set().expect("assets/mnist-tiny is shipped");
    let out = tempfile::tempdir().unwrap();
    let app = StudioApp::headless(StartOptions {
        models: Some(set.clone()),
        settings: Settings {
            view: View::Train,
            preview: PreviewSettings {
                samples: 16,
                ..PreviewSettings::default()
            },
            ..Settings::default()
        },
        ..StartOptions::cpu("cpu (flex)")
    });
    let mut h = harness_sized(app, [1280.0, 800.0]);
    wait_until_within(
        &mut h,
        "the models and previews",
        Duration::from_secs(600),
        |a| a.models().info.is_some() && a.is_idle(),
    );
    let (idle_ui, idle_total) = frames(&mut h);
    {
        let form = &mut h.state_mut().train_mut().form;
        form.base = set.base.display().to_string();
        form.out = out.path().join("deme").display().to_string();
    }
    h.state_mut().start_training();
    assert!(
        h.state().train().is_running(),
        "{:?}",
        h.state().train().error
    );
    // let the run get going (model copies, first steps)
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        h.step();
        std::thread::sleep(Duration::from_millis(16));
    }
    let (train_ui, train_total) = frames(&mut h);
    assert!(
        h.state().train().is_running(),
        "{:?}",
        h.state().train().error
    );
    println!(
        "threads: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let a = stats("idle, UI", idle_ui);
    let b = stats("idle, UI + render", idle_total);
    let c = stats("training, UI", train_ui);
    let d = stats("training, UI + render", train_total);
    println!(
        "training / idle (median): UI {:.2}x, UI + render {:.2}x",
        c / a,
        d / b
    );
    h.state_mut().train_mut().cancel();
    wait_until_within(&mut h, "the cancel", Duration::from_secs(120), |a| {
        !a.train().is_running()
    });
}

/// The Landscape view at 1280 x 800 with a 21 x 21 landscape of the shipped
/// set, its map painted cell by cell (egui meshes) and drawn per pixel by
/// `shaders/field.wgsl`, side by side in one run.
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn landscape_frame_time_cells_and_field_shader() {
    let mut medians = Vec::new();
    for gpu_maps in [false, true] {
        let app = StudioApp::headless(StartOptions {
            models: default_set(),
            settings: Settings {
                view: View::Landscape,
                ..Settings::default()
            },
            gpu_maps,
            ..StartOptions::cpu("cpu (flex)")
        });
        let mut h = if gpu_maps {
            gpu_harness_sized(app, [1280.0, 800.0])
        } else {
            harness_sized(app, [1280.0, 800.0])
        };
        wait_until_within(&mut h, "the models", Duration::from_secs(600), |a| {
            a.models().info.is_some() && a.is_idle()
        });
        h.state_mut().landscape_mut().size = 21;
        h.state_mut().landscape_mut().samples = 8;
        h.step();
        h.get_by_label("Compute").click();
        wait_until_within(&mut h, "the landscape", Duration::from_secs(1200), |a| {
            a.landscape().result().is_some() && !a.landscape().is_running() && a.is_idle()
        });
        let name = if gpu_maps { "field shader" } else { "cells" };
        let (ui, total) = frames(&mut h);
        stats(&format!("{name}, UI"), ui);
        medians.push(stats(&format!("{name}, UI + render"), total));
    }
    println!(
        "field shader / cells (median UI + render): {:.2}x",
        medians[1] / medians[0]
    );
}
