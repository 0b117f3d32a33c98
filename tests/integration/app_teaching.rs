//! The Teaching view driven through egui_kittest: a tiny toy set trained from
//! the view with live sample clouds, saved and opened as the app's set, the
//! merge view's point-cloud previews following the weights, and Cancel.

use crate::common;
use common::app::{harness_sized, wait_until_within};

use deme_studio::app::preview::Panel;
use deme_studio::app::settings::PreviewSettings;
use deme_studio::app::teaching::config::Stage;
use deme_studio::app::teaching::{OPEN_LABEL, TRAIN_LABEL};
use deme_studio::app::{ModelSet, Settings, StartOptions, StudioApp, View};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::Path;
use std::time::Duration;

/// Few preview points and DDIM steps.
fn quick() -> PreviewSettings {
    PreviewSettings {
        samples: 8, // x 32 points for a point set
        seed: 0,
        fast_steps: 2,
        fine_steps: 4,
        eval_samples: 32,
    }
}

/// The Teaching view with no set open, runs saved under `root`.
fn harness(root: &Path) -> Harness<'static, StudioApp> {
    let mut app = StudioApp::headless(StartOptions {
        settings: Settings {
            view: View::Teaching,
            preview: quick(),
            ..Settings::default()
        },
        ..StartOptions::cpu("cpu (flex): test")
    });
    let c = &mut app.teaching_mut().config;
    c.out_root = root.to_path_buf();
    c.base_steps = 200;
    c.expert_steps = 40;
    c.batch_size = 64;
    c.sample_every = 40;
    c.samples = 200;
    c.sample_steps = 10;
    harness_sized(app, [1280.0, 800.0])
}

fn wait_until(h: &mut Harness<'_, StudioApp>, what: &str, cond: impl Fn(&StudioApp) -> bool) {
    wait_until_within(h, what, Duration::from_secs(300), cond);
}

fn click(h: &mut Harness<'_, StudioApp>, label: &str) {
    h.get_by_label(label).click();
    h.step(); // the click is handled
    h.step(); // and its result drawn
}

fn merged_pixels(app: &StudioApp) -> Vec<egui::Color32> {
    app.merge()
        .panel(Panel::Merged)
        .image()
        .unwrap()
        .pixels
        .clone()
}

/// The merged preview of the current weights, finished at the fine step count.
fn settled(app: &StudioApp) -> bool {
    app.merge().is_settled(quick().fine_steps)
}

#[test]
fn training_draws_live_clouds_saves_and_opens_a_toy_set_that_merges() {
    let root = tempfile::tempdir().unwrap();
    let mut h = harness(root.path());
    h.step();
    h.get_by_label("samples");
    click(&mut h, TRAIN_LABEL);
    assert!(h.state().teaching().is_running());
    h.get_by_label("Cancel");
    // live: the data and a first base cloud arrive while the run goes on
    wait_until(&mut h, "the first sample cloud", |a| {
        a.teaching().samples().is_some()
    });
    let t = h.state().teaching();
    assert_eq!(t.data().map(<[_]>::len), Some(200));
    let first = t.samples().unwrap();
    assert_eq!((first.stage, first.points.len()), (Stage::Base, 200));
    h.get_by_label_contains("samples of the base after");
    h.get_by_label_contains("pretraining the base: step");
    wait_until(&mut h, "the end of the run", |a| !a.teaching().is_running());
    let t = h.state().teaching();
    assert_eq!(t.error, None);
    // 5 base clouds (every 40 of 200 steps) and 1 of the experts' ensemble (40 steps)
    assert_eq!(t.clouds(), 6);
    let last = t.samples().unwrap();
    assert_eq!((last.stage, last.step), (Stage::Experts, 40));
    assert!(
        last.points
            .iter()
            .all(|p| p[0].is_finite() && p[1].is_finite())
    );
    assert_eq!(t.progress(), (200 + 4 * 40, 360));
    let saved = t.saved().expect("the set was saved").clone();
    let dir = t.dir().unwrap().clone();
    assert!(dir.starts_with(root.path()));
    assert_eq!(ModelSet::discover(&dir), Some(saved.clone()));
    h.get_by_label_contains("samples of the experts' ensemble after 40 steps");
    h.get_by_label(&dir.display().to_string());

    // the set opens as the app's set
    wait_until(&mut h, "the trained set to open", |a| {
        a.models().info.is_some()
    });
    let info = h.state().models().info.clone().unwrap();
    assert_eq!(info.set, saved);
    assert_eq!(info.num_experts(), 4);
    assert_eq!(info.item_shape, [2, 1, 1]);
    assert!(info.models[0].architecture.starts_with("ToyMlp"));
    assert!(info.eval.is_ok(), "held-out points: {:?}", info.eval);

    // the merge view: point-cloud previews, held-out losses, weights move the merged cloud
    click(&mut h, OPEN_LABEL);
    assert_eq!(h.state().view(), View::Merge);
    wait_until(&mut h, "the merged preview", settled);
    wait_until(&mut h, "the ensemble preview and the losses", |a| {
        let m = a.merge();
        m.panel(Panel::Ensemble).shown().is_some_and(|s| s.done)
            && Panel::ALL.iter().all(|&p| m.loss(p).is_some())
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
    let before = merged_pixels(h.state());
    let mut w = h.state().merge().weights().to_vec();
    w[0] = 1.0;
    w[3] = 0.0;
    h.state_mut().merge_mut().set_weights(&w);
    h.step();
    wait_until(&mut h, "the preview of the new weights", |a| {
        settled(a)
            && a.merge()
                .panel(Panel::Merged)
                .shown()
                .and_then(|s| s.spec.as_ref())
                .is_some_and(|s| s.weights[0] == 1.0)
    });
    assert_ne!(before, merged_pixels(h.state()), "new weights, new cloud");
}

#[test]
fn cancel_stops_the_run_and_leaves_a_clear_state() {
    let root = tempfile::tempdir().unwrap();
    let mut h = harness(root.path());
    // long enough to be cancelled in the middle
    h.state_mut().teaching_mut().config.base_steps = 20_000;
    click(&mut h, TRAIN_LABEL);
    wait_until(&mut h, "some training", |a| a.teaching().progress().0 > 0);
    let t = h.state().teaching();
    assert!(t.is_running(), "{:?}", t.error);
    click(&mut h, "Cancel");
    wait_until(&mut h, "the cancelled run", |a| !a.teaching().is_running());
    let t = h.state().teaching();
    assert_eq!(t.error.as_deref(), Some("cancelled"));
    let (done, total) = t.progress();
    assert!(done < total, "stopped early: {done}/{total}");
    assert!(t.saved().is_none() && t.dir().is_none());
    assert!(h.state().models().info.is_none() && h.state().models().loading.is_none());
    // the half-trained folder is gone
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    h.get_by_label("cancelled");
    assert!(h.query_by_label("Cancel").is_none());
    // and a new run can start
    click(&mut h, TRAIN_LABEL);
    assert!(h.state().teaching().is_running());
    assert_eq!(h.state().teaching().error, None);
    click(&mut h, "Cancel");
    wait_until(&mut h, "the second cancelled run", |a| {
        !a.teaching().is_running()
    });
}
