//! The merge view driven through egui_kittest on tiny models written to a
//! temporary folder: sliders, previews, the sum-to-1 lock, undo, the empty
//! state, load errors, and the worker dropping stale requests.

use crate::common;

use burn::tensor::Device;
use common::app::{harness_sized, wait_until_within};
use common::{save_unet, tiny_config};
use deme_studio::app::events::Event;
use deme_studio::app::merge_worker::{Command, MergeWorker, PreviewRequest};
use deme_studio::app::preview::Panel;
use deme_studio::app::settings::PreviewSettings;
use deme_studio::app::{ModelSet, Settings, StartOptions, StudioApp};
use deme_studio::engine::merge::MergeSpec;
use deme_studio::engine::model::UNet2DModel;
use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Few samples and steps so that every preview takes a fraction of a second.
fn quick() -> PreviewSettings {
    PreviewSettings {
        samples: 4,
        seed: 3,
        fast_steps: 2,
        fine_steps: 4,
        eval_samples: 8,
    }
}

/// A base and `n` experts (the base's structure, other initial weights).
fn write_set(dir: &Path, n: usize) -> ModelSet {
    let d = Device::flex();
    let base = dir.join("base");
    save_unet(
        &base,
        tiny_config(),
        UNet2DModel::new(&tiny_config(), 0, &d).unwrap(),
    );
    let experts: Vec<_> = (1..=n)
        .map(|i| {
            let p = dir.join(format!("deme/expert_{i}"));
            let expert = UNet2DModel::new(&tiny_config(), i as u64, &d).unwrap();
            save_unet(
                &p,
                tiny_config(),
                expert.with_projections(&tiny_config(), &d),
            );
            p
        })
        .collect();
    ModelSet { base, experts }
}

fn app_with(models: Option<ModelSet>) -> StudioApp {
    StudioApp::headless(StartOptions {
        models,
        settings: Settings {
            preview: quick(),
            ..Settings::default()
        },
        ..StartOptions::cpu("cpu (flex): test")
    })
}

fn harness(app: StudioApp) -> Harness<'static, StudioApp> {
    harness_sized(app, [1280.0, 800.0])
}

fn wait_until(h: &mut Harness<'_, StudioApp>, what: &str, cond: impl Fn(&StudioApp) -> bool) {
    wait_until_within(h, what, Duration::from_secs(180), cond);
}

/// Clicks the widget labelled `label` (which must be on screen).
fn click(h: &mut Harness<'_, StudioApp>, label: &str) {
    let node = h.get_by_label(label);
    let (rect, screen) = (node.rect(), h.ctx.content_rect());
    assert!(
        screen.contains_rect(rect),
        "`{label}` at {rect:?} is off screen"
    );
    h.get_by_label(label).click();
    h.step();
}

/// Models open and the worker idle: nothing more arrives to move the layout,
/// so a pointer click lands where the widget was drawn.
fn quiet(app: &StudioApp) -> bool {
    app.models().info.is_some() && app.is_idle()
}

/// The merged preview of the current weights and the base, both finished at the fine step count.
fn settled(app: &StudioApp) -> bool {
    let fine = quick().fine_steps;
    app.merge().is_settled(fine)
        && app
            .merge()
            .panel(Panel::Base)
            .shown()
            .is_some_and(|s| s.done && s.of == fine)
}

fn merged_pixels(app: &StudioApp) -> Vec<egui::Color32> {
    app.merge()
        .panel(Panel::Merged)
        .image()
        .unwrap()
        .pixels
        .clone()
}

#[test]
fn one_slider_per_expert_and_moving_one_changes_the_preview() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_set(tmp.path(), 3);
    let mut h = harness(app_with(Some(set)));
    wait_until(&mut h, "the first previews", settled);
    let sliders = h.query_all_by_role(Role::Slider).count();
    assert_eq!(
        sliders, 3,
        "one slider per expert (per-block weights are folded away)"
    );
    for i in 1..=3 {
        h.get_by_role_and_label(Role::Slider, &format!("w{i}"));
    }
    let before = merged_pixels(h.state());
    h.get_by_role_and_label(Role::Slider, "w2")
        .set_value_accesskit(0.9);
    h.step();
    assert_eq!(h.state().merge().weights()[1], 0.9);
    wait_until(&mut h, "the preview of the new weights", settled);
    let after = merged_pixels(h.state());
    assert_ne!(before, after, "new weights, new samples");
    // the held-out loss readout follows the weights
    wait_until(&mut h, "the loss of the new weights", |a| {
        a.merge()
            .loss(Panel::Merged)
            .and_then(|l| l.spec.as_ref())
            .is_some_and(|s| s.weights[1] == 0.9)
    });
    let loss = h.state().merge().loss(Panel::Merged).unwrap();
    assert_eq!(loss.per_range.len(), 3);
}

#[test]
fn zero_weights_give_the_base_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = harness(app_with(Some(write_set(tmp.path(), 2))));
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    h.state_mut().merge_mut().set_weights(&[0.0, 0.0]);
    wait_until(&mut h, "the w = 0 preview", settled);
    let base = h
        .state()
        .merge()
        .panel(Panel::Base)
        .image()
        .unwrap()
        .clone();
    assert_eq!(merged_pixels(h.state()), base.pixels);
    // and the ensemble, from the same noise, differs from both
    wait_until(&mut h, "the ensemble", |a| {
        a.merge().panel(Panel::Ensemble).shown().is_some()
    });
    let ens = h
        .state()
        .merge()
        .panel(Panel::Ensemble)
        .image()
        .unwrap()
        .clone();
    assert_ne!(ens.pixels, base.pixels);
}

#[test]
fn the_sum_to_one_lock_keeps_the_sum_and_undo_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = harness(app_with(Some(write_set(tmp.path(), 4))));
    wait_until(&mut h, "the models, idle", quiet);
    h.get_by_label("Sum to 1").click();
    h.step();
    assert!(h.state().merge().lock_sum);
    h.get_by_role_and_label(Role::Slider, "w1")
        .set_value_accesskit(0.7);
    h.step();
    let w = h.state().merge().weights().to_vec();
    assert_eq!(w[0], 0.7);
    assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{w:?}");
    h.get_by_role_and_label(Role::Slider, "w3")
        .set_value_accesskit(0.2);
    h.step();
    let w2 = h.state().merge().weights().to_vec();
    assert!((w2.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{w2:?}");
    // Ctrl+Z steps back to the weights before the last edit, Ctrl+Shift+Z forward again
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Z);
    h.step();
    assert_eq!(h.state().merge().weights(), w.as_slice());
    h.key_press_modifiers(
        egui::Modifiers::COMMAND | egui::Modifiers::SHIFT,
        egui::Key::Z,
    );
    h.step();
    assert_eq!(h.state().merge().weights(), w2.as_slice());
    // and the Undo button twice returns to 1/N
    h.get_by_label("Undo").click();
    h.step();
    h.get_by_label("Undo").click();
    h.step();
    assert_eq!(h.state().merge().weights(), &[0.25; 4]);
}

#[test]
fn without_models_the_empty_state_says_what_to_do() {
    let mut h = harness(app_with(None));
    h.run_ok();
    h.get_by_label("No models open");
    h.get_by_label("Open base…");
    h.get_by_label("Open experts…");
    h.get_by_label_contains("deme-studio finetune");
    assert_eq!(h.query_all_by_role(Role::Slider).count(), 0);
}

#[test]
fn a_load_error_shows_a_message_and_keeps_the_open_models() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write_set(&tmp.path().join("good"), 2);
    let mut h = harness(app_with(Some(good.clone())));
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    // an expert of another architecture
    let mut wide = tiny_config();
    wide.block_out_channels = vec![8, 16, 32];
    let odd = tmp.path().join("odd");
    save_unet(
        &odd,
        wide.clone(),
        UNet2DModel::new(&wide, 5, &Device::flex()).unwrap(),
    );
    h.state_mut().open(ModelSet {
        base: good.base.clone(),
        experts: vec![good.experts[0].clone(), odd],
    });
    wait_until(&mut h, "the load error", |a| a.models().error.is_some());
    let err = h.state().models().error.clone().unwrap();
    assert!(err.contains("another architecture"), "{err}");
    assert_eq!(h.state().models().info.as_ref().unwrap().set, good);
    assert_eq!(h.state().merge().num_experts(), 2);
    h.get_by_label_contains("Could not open the models");
    // a corrupt weights file
    let broken = tmp.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::copy(good.base.join("config.json"), broken.join("config.json")).unwrap();
    std::fs::write(
        broken.join("diffusion_pytorch_model.safetensors"),
        b"not safetensors",
    )
    .unwrap();
    h.state_mut().open(ModelSet {
        base: broken,
        experts: good.experts.clone(),
    });
    wait_until(&mut h, "the second load error", |a| {
        a.models().loading.is_none() && a.models().error.is_some()
    });
    assert_eq!(h.state().models().info.as_ref().unwrap().set, good);
}

#[test]
fn the_worker_drops_a_request_that_a_newer_one_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let set = write_set(tmp.path(), 2);
    // Lockstep: after each event the worker waits until the test has read it
    // and asked for the next one, so requests land at exact points of its
    // work however loaded the machine is.
    let (grant, granted) = std::sync::mpsc::channel::<()>();
    let granted = std::sync::Mutex::new(granted);
    let wait_for_grant = move || {
        // a dropped sender (test over) lets the worker run freely
        let _ = granted.lock().unwrap().recv();
    };
    let (emit, events) = deme_studio::app::events::Emitter::channel(Arc::new(wait_for_grant));
    let worker = MergeWorker::spawn(Device::flex(), quick(), None, emit);
    // declared after the worker, so dropped (releasing it) before it is joined
    let grant = grant;
    let owed = std::cell::Cell::new(false);
    let deadline = Instant::now() + Duration::from_secs(120);
    let next = || {
        if owed.replace(true) {
            grant.send(()).unwrap();
        }
        events
            .recv_timeout(deadline - Instant::now())
            .expect("worker event")
    };
    worker.send(Command::Load(set));
    while !matches!(next(), Event::Loaded(_)) {}
    let req = |w: f32, steps| PreviewRequest {
        spec: MergeSpec::task_arithmetic(vec![w, w]),
        steps,
        submitted: Instant::now(),
        evaluate: false,
    };
    // replaced before it started (the worker is held at the Loaded event):
    // never merged, never sampled
    let stale = worker.request(req(0.1, 200));
    let fresh = worker.request(req(0.9, 3));
    assert!(fresh > stale);
    let merged_pictures = || {
        std::iter::from_fn(|| Some(next())).filter_map(|e| match e {
            Event::Preview(p) if p.panel == Panel::Merged => Some(p),
            _ => None,
        })
    };
    for p in merged_pictures() {
        assert_ne!(p.generation, stale, "a replaced request produced a picture");
        if p.done {
            assert_eq!(p.generation, fresh);
            assert_eq!(p.spec.unwrap().weights, vec![0.9, 0.9]);
            break;
        }
    }
    // replaced while running (the worker is held at its first picture): the
    // step in progress is the last one shown
    let long = worker.request(req(0.2, 200));
    let first = merged_pictures().find(|p| p.generation == long).unwrap();
    assert!(!first.done);
    let last = worker.request(req(0.3, 3));
    for p in merged_pictures() {
        if p.generation == long {
            panic!(
                "the replaced run went on: step {} after step {}",
                p.step, first.step
            );
        }
        if p.generation == last && p.done {
            break;
        }
    }
}

#[test]
fn grid_search_streams_results_and_a_row_loads_its_weights() {
    let tmp = tempfile::tempdir().unwrap();
    // tall enough to show the results table below the previews
    let mut h = harness_sized(app_with(Some(write_set(tmp.path(), 2))), [1280.0, 1400.0]);
    wait_until(&mut h, "the models, idle", quiet);
    click(&mut h, "Grid search");
    click(&mut h, "Start search");
    assert!(h.state().grid().running(), "the search started");
    wait_until(&mut h, "the grid search", |a| {
        !a.grid().running() && a.grid().outcome.is_some()
    });
    let g = h.state().grid();
    assert!(
        g.outcome.as_deref().unwrap().starts_with("finished"),
        "{:?}",
        g.outcome
    );
    let best = g.best.clone().expect("a best point");
    assert!(g.points.len() >= 3);
    for p in &g.points {
        assert!(
            (p.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "Σw = 1 by default"
        );
    }
    assert!(g.points.iter().all(|p| p.score.loss >= best.score.loss));
    // clicking a row of the table loads its weights (one other than the current 1/N)
    let row = g
        .points
        .iter()
        .find(|p| p.weights.iter().any(|&w| (w - 0.5).abs() > 1e-9))
        .unwrap()
        .clone();
    let label = row
        .weights
        .iter()
        .map(|w| format!("{w:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    click(&mut h, &label);
    let want: Vec<f32> = row.weights.iter().map(|&w| w as f32).collect();
    assert_eq!(h.state().merge().weights(), want.as_slice());
    assert!(
        h.state().merge().can_undo_redo().0,
        "loading a row is undoable"
    );
}

/// The app on two tiny experts in `dir`, the grid search open with the
/// strategy `kind` chosen from its menu (which shows its choice as its value).
fn grid_search_with(dir: &Path, kind: &str) -> Harness<'static, StudioApp> {
    let mut h = harness_sized(app_with(Some(write_set(dir, 2))), [1280.0, 1400.0]);
    wait_until(&mut h, "the models, idle", quiet);
    click(&mut h, "Grid search");
    h.get_by_value("refine").click();
    h.step();
    h.step();
    click(&mut h, kind);
    h
}

#[test]
fn the_coordinate_search_is_offered_and_unties_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = grid_search_with(tmp.path(), "coordinate");
    assert_eq!(
        h.state().grid().kind,
        deme_studio::app::merge::grid_panel::SearchKind::Coordinate
    );
    click(&mut h, "Start search");
    assert!(h.state().grid().running(), "the search started");
    wait_until(&mut h, "the coordinate search", |a| {
        !a.grid().running() && a.grid().outcome.is_some()
    });
    let g = h.state().grid();
    assert!(
        g.outcome.as_deref().unwrap().starts_with("finished"),
        "{:?}",
        g.outcome
    );
    // one weight moves at a time from the lattice centre, so most points do
    // not sum to 1, and the setting itself is kept for the other kinds
    assert!(
        g.points
            .iter()
            .any(|p| (p.weights.iter().sum::<f64>() - 1.0).abs() > 1e-9)
    );
    assert!(g.sum_to_one);
    let best = g.best.clone().expect("a best point");
    assert!(g.points.iter().all(|p| p.score.loss >= best.score.loss));
}

/// Starts the search and steps until it ends; the sliders' weights as they
/// changed, frame by frame.
fn search_watching_the_sliders(h: &mut Harness<'static, StudioApp>) -> Vec<Vec<f32>> {
    click(h, "Start search");
    assert!(h.state().grid().running(), "the search started");
    let mut seen: Vec<Vec<f32>> = Vec::new();
    let start = Instant::now();
    while h.state().grid().running() || h.state().grid().outcome.is_none() {
        h.step();
        let w = h.state().merge().weights().to_vec();
        if seen.last() != Some(&w) {
            seen.push(w);
        }
        assert!(start.elapsed() < Duration::from_secs(300), "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
    h.step();
    seen
}

#[test]
fn learned_weights_move_the_sliders_along_their_path() {
    use deme_studio::app::merge::grid_panel::SearchKind;
    let tmp = tempfile::tempdir().unwrap();
    let mut h = grid_search_with(tmp.path(), "learned");
    assert_eq!(h.state().grid().kind, SearchKind::Learned);
    // the sliders, frame by frame, while the descent runs
    let seen = search_watching_the_sliders(&mut h);
    let g = h.state().grid();
    assert!(
        g.outcome.as_deref().unwrap().starts_with("finished"),
        "{:?}",
        g.outcome
    );
    let path = g.learned_path().expect("a learned search keeps its path");
    assert_eq!(path.len(), g.points.len());
    assert!(path.len() >= 3, "{} steps", path.len());
    // from the centre of [0, 1], and the sliders took the steps' weights as they came
    assert_eq!(path[0], vec![0.5, 0.5]);
    let on_path = seen.iter().filter(|w| path.contains(w)).count();
    assert!(
        on_path >= 2,
        "the sliders showed {on_path} steps of the path"
    );
    // it ends on the best step, as one undoable edit
    let best: Vec<f32> = g
        .best
        .as_ref()
        .unwrap()
        .weights
        .iter()
        .map(|&w| w as f32)
        .collect();
    assert_eq!(h.state().merge().weights(), best.as_slice());
    assert!(h.state().merge().can_undo_redo().0);
    // the landscape view has the path to draw
    assert_eq!(h.state().landscape().path, path);
}

#[test]
fn cma_es_moves_the_sliders_to_each_new_best_and_ends_on_the_best() {
    use deme_studio::app::merge::grid_panel::SearchKind;
    let tmp = tempfile::tempdir().unwrap();
    let mut h = grid_search_with(tmp.path(), "CMA-ES");
    assert_eq!(h.state().grid().kind, SearchKind::Cmaes);
    h.state_mut().grid_mut().step = 0.05;
    let seen = search_watching_the_sliders(&mut h);
    let g = h.state().grid();
    assert!(
        g.outcome.as_deref().unwrap().starts_with("finished"),
        "{:?}",
        g.outcome
    );
    assert!(g.points.len() >= 6, "{} points", g.points.len());
    let as_f32 = |w: &[f64]| w.iter().map(|&v| v as f32).collect::<Vec<f32>>();
    // the sliders only ever showed points of the search, and it ends on the best
    let scored: Vec<Vec<f32>> = g.points.iter().map(|p| as_f32(&p.weights)).collect();
    let initial = seen[0].clone();
    assert!(seen.iter().skip(1).all(|w| scored.contains(w)), "{seen:?}");
    let best = as_f32(&g.best.as_ref().unwrap().weights);
    assert!(
        g.points
            .iter()
            .all(|p| p.score.loss >= g.best.as_ref().unwrap().score.loss)
    );
    assert_eq!(h.state().merge().weights(), best.as_slice());
    assert_ne!(initial, best);
    assert!(h.state().merge().can_undo_redo().0);
    // weights move freely (not tied to sum 1) and not on the lattice
    assert!(
        g.points
            .iter()
            .any(|p| (p.weights.iter().sum::<f64>() - 1.0).abs() > 1e-6)
    );
}

#[test]
fn the_merge_saves_with_its_recipe_and_the_previews_export_as_png() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = harness(app_with(Some(write_set(&tmp.path().join("set"), 2))));
    wait_until(&mut h, "the previews", settled);
    // the models panel says what the experts' projections mean for diffusers
    h.get_by_label_contains("· expert_1").click();
    h.run();
    h.get_by_label_contains("channel-wise projections: 7, up to 0.000");
    h.get_by_label_contains("only through deme_unet.py");
    h.state_mut().merge_mut().set_weights(&[0.3, 0.6]);
    let out = tmp.path().join("merged");
    h.state_mut().save_merge_to(out.clone());
    wait_until(&mut h, "the save", |a| {
        a.notice()
            .is_some_and(|n| n.text.contains("saved the merge"))
    });
    let recipe = deme_studio::engine::merge::Recipe::read(&out.join("recipe.json")).unwrap();
    assert_eq!(recipe.weights, vec![0.3, 0.6]);
    assert!(out.join("diffusion_pytorch_model.safetensors").is_file());
    assert!(common::check_interop_files(&out));
    let notice = h.state().notice().unwrap().text.clone();
    assert!(notice.contains("deme_unet.py"), "{notice}");
    let png = tmp.path().join("previews.png");
    h.state_mut().export_png_to(png.clone());
    wait_until(&mut h, "the export", |a| {
        a.notice().is_some_and(|n| n.text.contains("exported"))
    });
    let img = image::open(&png).unwrap();
    let row = h.state().merge().panel(Panel::Base).image().unwrap().size;
    assert_eq!(img.width() as usize, row[0]);
    assert_eq!(
        img.height() as usize,
        3 * row[1] + 2 * 8,
        "three rows, 8-pixel gaps"
    );
}

/// With compute on wgpu and the window drawing with the same device, the
/// worker's pictures are laid out on the device and egui draws them from
/// their textures; read back, they are the grids the host would draw.
#[test]
fn on_a_shared_wgpu_device_previews_reach_the_screen_without_a_round_trip() {
    use deme_studio::app::display_device::{display_device, egui_setup};
    use deme_studio::app::preview::Picture;
    use deme_studio::app::preview_gpu::GpuPreviewer;
    use deme_studio::engine::device::DeviceChoice;
    use deme_studio::engine::grid_image::{GRID_GAP, GRID_GROUND, grid_columns, grid_size};
    let tmp = tempfile::tempdir().unwrap();
    let set = write_set(tmp.path(), 2);
    let d = display_device(DeviceChoice::Wgpu)
        .expect("a wgpu adapter (install mesa-vulkan-drivers for the software one)");
    let shared = d.shared.expect(&d.compute.reason);
    let rs = egui_kittest::wgpu::create_render_state(
        egui_setup(Some(&shared)).unwrap(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    let app = StudioApp::headless(StartOptions {
        device: d.compute.device.clone(),
        models: Some(set),
        settings: Settings {
            preview: quick(),
            ..Settings::default()
        },
        window_renderer: Some(rs.renderer.clone()),
        gpu_previews: Some(GpuPreviewer::new(&rs.device, &rs.queue)),
        ..StartOptions::cpu(d.compute.reason.clone())
    });
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .with_max_steps(10_000)
        .renderer(egui_kittest::wgpu::WgpuTestRenderer::from_render_state(rs))
        .build_ui_state(|ui, app: &mut StudioApp| app.page_ui(ui), app);
    wait_until(&mut h, "the first previews", settled);
    h.render().expect("the frame draws the device textures");
    let [_, ih, iw] = h.state().models().info.as_ref().unwrap().item_shape;
    let n = quick().samples;
    for p in Panel::ALL {
        let shown = h.state().merge().panel(p).shown().unwrap();
        let Picture::Device(picture) = &shown.preview else {
            panic!("{p:?} went through host memory");
        };
        assert!(picture.is_registered(), "{p:?} is drawn from its texture");
        let host = picture.host().unwrap();
        assert_eq!(host.size, grid_size(n, ih, iw, grid_columns(n)));
        assert_eq!(host[(0, 0)], egui::Color32::from_gray(GRID_GROUND));
        let inside = (0..ih * iw).map(|k| host[(GRID_GAP + k % iw, GRID_GAP + k / iw)]);
        assert!(
            inside.clone().any(|c| c != inside.clone().next().unwrap()),
            "{p:?}: the first sample is drawn, not a flat square"
        );
    }
}
