//! A toy set (2D points, the toy MLP: base + 4 experts) trained in a few
//! hundred steps and opened in every view of the app, driven through
//! egui_kittest: the Gradient-conflicts heatmap, a small Landscape and a click
//! on it, the Task-vector statistics and the Merge view's merged preview and
//! held-out losses. The Teaching view's export writes its clouds, losses and
//! picture, and an impossible folder is an error, not a panic.

use crate::common;
use common::app::{click_at, harness_sized, wait_until_within};

use burn::tensor::Device;
use deme_studio::app::job_slot::Sink;
use deme_studio::app::landscape::{MAP_LABEL, MapFrame, point_weights};
use deme_studio::app::preview::Panel;
use deme_studio::app::settings::PreviewSettings;
use deme_studio::app::teaching::TRAIN_LABEL;
use deme_studio::app::teaching::plots::EXPORT_FILES;
use deme_studio::app::teaching::{TeachingConfig, TeachingJob, run_teaching};
use deme_studio::app::{ModelSet, Settings, StartOptions, StudioApp, View};
use deme_studio::engine::data::ToyKind;
use deme_studio::engine::train::CancelToken;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Few preview points and DDIM steps.
fn quick() -> PreviewSettings {
    PreviewSettings {
        samples: 4,
        seed: 0,
        fast_steps: 1,
        fine_steps: 2,
        eval_samples: 16,
    }
}

/// Every setting of a short run spelled out (not the view's defaults, which may change).
fn short_run(out_root: &Path) -> TeachingConfig {
    let mut c = TeachingConfig::new(out_root.to_path_buf());
    c.data = ToyKind::TwoMoons;
    c.base_steps = 120;
    c.expert_steps = 20;
    c.experts = 4;
    c.batch_size = 64;
    c.base_lr = 3e-3;
    c.expert_lr = 1e-3;
    c.ema_max_decay = Some(0.99);
    c.sample_every = 60;
    c.samples = 100;
    c.sample_steps = 4;
    c.seed = 0;
    c
}

/// The toy set, trained once for all the tests of this file.
fn toy_set() -> ModelSet {
    static SET: OnceLock<ModelSet> = OnceLock::new();
    SET.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("deme-toy-views-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let job = TeachingJob {
            config: short_run(&root),
            cancel: CancelToken::new(),
            sink: Sink::discard(),
        };
        run_teaching(&job, &Device::flex(), &mut |_| {}).expect("a toy set trains")
    })
    .clone()
}

fn harness(view: View, models: Option<ModelSet>) -> Harness<'static, StudioApp> {
    let app = StudioApp::headless(StartOptions {
        models,
        settings: Settings {
            view,
            preview: quick(),
            ..Settings::default()
        },
        ..StartOptions::cpu("cpu (flex): test")
    });
    harness_sized(app, [1280.0, 800.0])
}

/// The app on `view` with the toy set open.
fn opened(view: View) -> Harness<'static, StudioApp> {
    let mut h = harness(view, Some(toy_set()));
    wait_until(&mut h, "the toy set", |a| a.models().info.is_some());
    let info = h.state().models().info.clone().unwrap();
    assert_eq!(info.num_experts(), 4);
    assert_eq!(info.item_shape, [2, 1, 1]);
    assert!(info.models[0].architecture.starts_with("ToyMlp"));
    h
}

fn wait_until(h: &mut Harness<'_, StudioApp>, what: &str, cond: impl Fn(&StudioApp) -> bool) {
    wait_until_within(h, what, Duration::from_secs(300), cond);
}

fn click(h: &mut Harness<'_, StudioApp>, label: &str) {
    h.get_by_label(label).click();
    h.step();
    h.step();
}

#[test]
fn the_gradient_conflict_heatmap_computes_on_the_toy_set() {
    let mut h = opened(View::GradientConflicts);
    h.state_mut().gradsim_mut().k = 6;
    click(&mut h, "Compute");
    wait_until(&mut h, "the gradient similarities", |a| {
        !a.gradsim().is_running()
    });
    let g = h.state().gradsim();
    assert_eq!(g.error, None);
    let r = g.result().expect("a result");
    assert_eq!(r.k(), 6);
    assert_eq!(r.cosine.len(), 36);
    assert!(r.cosine.iter().all(|c| c.is_finite()), "{:?}", r.cosine);
    for i in 0..6 {
        assert!((r.cosine[i * 6 + i] - 1.0).abs() < 1e-6);
    }
    h.get_by_label_contains("hover a cell");
}

#[test]
fn the_landscape_computes_on_the_toy_set_and_a_click_sets_the_weights() {
    let mut h = opened(View::Landscape);
    h.state_mut().landscape_mut().size = 5;
    h.state_mut().landscape_mut().samples = 8;
    click(&mut h, "Compute");
    wait_until(&mut h, "the landscape", |a| !a.landscape().is_running());
    let ls = h.state().landscape();
    assert_eq!(ls.error, None);
    let result = ls.result().expect("a landscape").clone();
    assert_eq!((result.done, result.total), (25, 25));
    for s in &result.surfaces {
        assert!(s.values.iter().all(|v| v.is_some_and(f64::is_finite)));
    }
    let plane = ls.plane().expect("the plane").clone();
    let grid = ls.grid().expect("the lattice").clone();
    let rect = h.get_by_label(MAP_LABEL).rect();
    let frame = MapFrame::new(rect, &grid);
    let pos = egui::pos2(
        rect.left() + rect.width() * 0.75,
        rect.top() + rect.height() * 0.25,
    );
    let expected = point_weights(&plane, frame.to_plane(pos));
    assert_ne!(h.state().merge().weights(), expected.as_slice());
    click_at(&mut h, pos);
    assert_eq!(h.state().merge().weights(), expected.as_slice());
}

#[test]
fn the_task_vector_statistics_compute_on_the_toy_set() {
    let mut h = opened(View::TaskVectors);
    wait_until(&mut h, "the statistics", |a| {
        a.taskvec().stats().is_some() && !a.taskvec().is_running()
    });
    assert_eq!(h.state().taskvec().error, None);
    let stats = h.state().taskvec().stats().unwrap().clone();
    assert_eq!(stats.cosine.len(), 16);
    for i in 0..4 {
        assert!((stats.cosine[i * 4 + i] - 1.0).abs() < 1e-6);
        for j in 0..4 {
            let c = stats.cosine[i * 4 + j];
            assert!(c.is_finite() && c.abs() <= 1.0 + 1e-9, "{i},{j}: {c}");
        }
    }
    assert!(!stats.groups.is_empty());
}

#[test]
fn the_merge_view_previews_and_scores_the_toy_set() {
    let mut h = opened(View::Merge);
    wait_until(&mut h, "the merged preview and the losses", |a| {
        let m = a.merge();
        m.is_settled(quick().fine_steps) && Panel::ALL.iter().all(|&p| m.loss(p).is_some())
    });
    let m = h.state().merge();
    let image = m.panel(Panel::Merged).image().unwrap();
    assert_eq!(
        image.size[0], image.size[1],
        "points draw as a square scatter"
    );
    for p in Panel::ALL {
        let l = m.loss(p).unwrap();
        assert!(l.mean.is_finite() && l.per_range.len() == 4, "{p:?}: {l:?}");
    }
}

/// Reads a CSV into its header and rows of numbers.
fn read_csv<T: std::str::FromStr>(path: &Path) -> (String, Vec<Vec<T>>)
where
    T::Err: std::fmt::Debug,
{
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let rows = lines
        .map(|l| l.split(',').map(|v| v.parse::<T>().unwrap()).collect())
        .collect();
    (header, rows)
}

#[test]
fn the_teaching_view_exports_its_clouds_losses_and_picture() {
    let root = tempfile::tempdir().unwrap();
    let mut h = harness(View::Teaching, None);
    let c = short_run(root.path().join("runs").as_path());
    h.state_mut().teaching_mut().config = c.clone();
    h.step();
    click(&mut h, TRAIN_LABEL);
    wait_until(&mut h, "the end of the run", |a| !a.teaching().is_running());
    assert_eq!(h.state().teaching().error, None);
    // the finished set opens (its status messages come before the export's)
    wait_until(&mut h, "the trained set to open", |a| {
        a.models().info.is_some()
    });
    let dir = root.path().join("export");
    h.state_mut().teaching_mut().export_dir = dir.display().to_string();
    h.step();
    click(&mut h, "Export");
    wait_until(&mut h, "the export", |a| !a.teaching().export.is_running());
    let note = h.state().teaching().export.note.clone();
    assert_eq!(
        note,
        Some(Ok(format!(
            "exported the teaching plots to {}",
            dir.display()
        )))
    );
    assert!(
        h.state()
            .notice()
            .is_some_and(|n| !n.error && n.text.contains("exported"))
    );
    // the note under the button (and the status bar)
    assert!(
        h.query_all_by_label_contains("exported the teaching plots to")
            .count()
            >= 1
    );
    for f in EXPORT_FILES {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let (header, data) = read_csv::<f32>(&dir.join("data.csv"));
    assert_eq!(header, "x,y");
    assert_eq!(data.len(), c.samples);
    assert!(data.iter().all(|r| r.len() == 2));
    let (header, samples) = read_csv::<f32>(&dir.join("samples.csv"));
    assert_eq!(header, "x,y");
    assert_eq!(samples.len(), c.samples);
    let want: Vec<Vec<f32>> = h
        .state()
        .teaching()
        .samples()
        .unwrap()
        .points
        .iter()
        .map(|p| p.to_vec())
        .collect();
    assert_eq!(samples, want, "the last cloud, exactly");
    let (header, loss) = read_csv::<f64>(&dir.join("loss.csv"));
    assert_eq!(header, "run,step,loss");
    // the base is run 0, the experts 1..=4; every step is one row
    let count = |run: f64| loss.iter().filter(|r| r[0] == run).count() as u64;
    assert_eq!(count(0.0), c.base_steps);
    for e in 1..=4 {
        assert_eq!(count(e as f64), c.expert_steps, "expert {e}");
    }
    assert!(loss.iter().all(|r| r[2].is_finite()));
    let png = image::open(dir.join("clouds.png")).unwrap();
    // the two clouds side by side (data left, samples right)
    assert!(png.width() > png.height() * 3 / 2 && png.height() >= 200);
    // an impossible folder is an error shown in the view, not a panic
    let file = root.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    h.state_mut().teaching_mut().export_dir = file.join("sub").display().to_string();
    h.step();
    click(&mut h, "Export");
    wait_until(&mut h, "the export", |a| !a.teaching().export.is_running());
    let note = h.state().teaching().export.note.clone();
    assert!(
        note.as_ref().is_some_and(|n| n.is_err()),
        "an error: {note:?}"
    );
    assert!(
        h.state()
            .notice()
            .is_some_and(|n| n.error && n.text.contains("exporting the teaching plots failed"))
    );
    assert!(
        h.query_all_by_label_contains("exporting the teaching plots failed")
            .count()
            >= 1
    );
}

/// Steps until `cond`, failing if any input widget is unnamed on any frame on the way
/// (kittest checks only settled frames; a field shown while a job runs escaped it).
fn wait_all_named(
    h: &mut Harness<'_, StudioApp>,
    what: &str,
    mut cond: impl FnMut(&StudioApp) -> bool,
) {
    let start = std::time::Instant::now();
    loop {
        h.step();
        let unnamed = h.unnamed_widgets();
        assert!(unnamed.is_empty(), "{what}: unnamed inputs {unnamed:?}");
        if cond(h.state()) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn every_input_has_a_name_on_every_frame_while_the_views_work() {
    let mut h = opened(View::TaskVectors);
    wait_all_named(&mut h, "task vectors", |a| {
        a.taskvec().stats().is_some() && !a.taskvec().is_running()
    });
    let mut h = opened(View::GradientConflicts);
    h.state_mut().gradsim_mut().k = 4;
    click(&mut h, "Compute");
    wait_all_named(&mut h, "gradient conflicts", |a| {
        a.gradsim().result().is_some() && !a.gradsim().is_running()
    });
    let mut h = opened(View::Merge);
    wait_all_named(&mut h, "merge", |a| {
        a.merge().is_settled(quick().fine_steps)
    });
    for view in [View::Landscape, View::About, View::Train, View::Teaching] {
        let mut h = opened(view);
        let mut frames = 0;
        wait_all_named(&mut h, &format!("{view:?}"), |_| {
            frames += 1;
            frames > 20
        });
    }
}
