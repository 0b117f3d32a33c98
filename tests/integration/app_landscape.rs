//! The Landscape view driven through egui_kittest: computing a small landscape
//! on the shipped mnist-tiny set fills the surface and reaches the end of its
//! progress; a click on the map sets the merge weights to that point's; moving
//! the weights moves the merge mark; Export writes the CSV, JSON and PNGs;
//! Cancel stops with a "cancelled" state; a set without a held-out set and the
//! same expert chosen twice give errors, not panics.

use crate::common;
use common::app::{app_on, click, click_at, wait_until};
use common::{save_unet, tiny_config};

use burn::tensor::Device;
use deme_studio::app::landscape::{MAP_LABEL, MapFrame, merge_point, point_weights};
use deme_studio::app::{StudioApp, View};
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::model_set::{ModelSet, default_set};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::Path;

fn harness(models: Option<ModelSet>) -> Harness<'static, StudioApp> {
    app_on(View::Landscape, models)
}

fn shipped() -> Harness<'static, StudioApp> {
    harness(Some(default_set().expect("assets/mnist-tiny is shipped")))
}

#[test]
fn without_models_the_view_says_what_to_do() {
    let mut h = harness(None);
    h.step();
    h.get_by_label_contains("Open a model set");
    assert!(h.query_by_label("Compute").is_none());
}

#[test]
fn compute_fills_the_map_and_a_click_sets_the_weights() {
    let mut h = shipped();
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    h.get_by_label_contains("Press Compute");
    h.state_mut().landscape_mut().size = 5;
    h.state_mut().landscape_mut().samples = 8;
    click(&mut h, "Compute");
    assert!(h.state().landscape().is_running());
    assert_eq!(h.state().landscape().progress(), Some((0, 25)));
    wait_until(&mut h, "the landscape", |a| !a.landscape().is_running());
    let app = h.state();
    let ls = app.landscape();
    assert_eq!(ls.error, None);
    let result = ls.result().expect("a landscape").clone();
    assert!(!result.cancelled);
    assert_eq!((result.done, result.total), (25, 25));
    assert_eq!(ls.scored(), 25);
    // all timesteps and the four experts' ranges, every point scored
    assert_eq!(result.surfaces.len(), 5);
    for s in &result.surfaces {
        assert!(s.values.iter().all(|v| v.is_some_and(f64::is_finite)));
    }
    // base and the four experts were scored as marks
    assert_eq!(result.marks.len(), 5);
    let plane = ls.plane().expect("the plane").clone();
    let grid = ls.grid().expect("the lattice").clone();
    assert_eq!((plane.a, plane.b), (0, 1));
    // base (0, 0), a (1, 0) and b inside the lattice
    for [x, y] in [[0.0, 0.0], [1.0, 0.0], plane.b_xy] {
        assert!(grid.x[0] < x && x < grid.x[1] && grid.y[0] < y && y < grid.y[1]);
    }
    h.get_by_label_contains("hover the map");
    h.get_by_label("all 25 points scored on 8 held-out samples each");
    // a click at a quarter of the map's width and height sets that point's weights
    let rect = h.get_by_label(MAP_LABEL).rect();
    let frame = MapFrame::new(rect, &grid);
    let pos = egui::pos2(
        rect.left() + rect.width() * 0.75,
        rect.top() + rect.height() * 0.25,
    );
    let xy = frame.to_plane(pos);
    let expected = point_weights(&plane, xy);
    assert_ne!(h.state().merge().weights(), expected.as_slice());
    click_at(&mut h, pos);
    assert_eq!(h.state().merge().weights(), expected.as_slice());
    assert_eq!(expected[2..], [0.0, 0.0]);
    // the merge mark sits where the click was
    let mark = merge_point(&plane, h.state().merge().weights()).unwrap();
    assert!((mark[0] - xy[0]).abs() < 5e-3 && (mark[1] - xy[1]).abs() < 5e-3);
    // moving the weights (the sliders) moves the mark: expert a alone is (1, 0)
    h.state_mut().merge_mut().set_weights(&[1.0, 0.0, 0.0, 0.0]);
    h.step();
    h.get_by_label_contains("current merge (ring): x = 1.000, y = 0.000");
    h.state_mut().merge_mut().set_weights(&[0.0, 0.0, 0.0, 0.0]);
    h.step();
    h.get_by_label_contains("current merge (ring): x = 0.000, y = 0.000");
    // export writes the CSV (a row per point), the JSON and a PNG per surface
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("ls");
    h.state_mut().landscape_mut().export_dir = dir.display().to_string();
    h.step();
    click(&mut h, "Export");
    let csv = dir.join("landscape.csv");
    wait_until(&mut h, "the export", |a| {
        a.notice()
            .is_some_and(|n| n.text.starts_with("exported the landscape"))
    });
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("i,j,x,y,w_a,w_b,loss_all,loss_range1"));
    assert_eq!(text.lines().count(), 26);
    assert!(dir.join("landscape.json").is_file());
    for s in ["all", "range1", "range2", "range3", "range4"] {
        assert!(dir.join(format!("landscape_{s}.png")).is_file(), "{s}");
    }
}

#[test]
fn cancel_stops_with_what_was_scored() {
    let mut h = shipped();
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    // large enough to take a while
    h.state_mut().landscape_mut().size = 41;
    click(&mut h, "Compute");
    h.get_by_label("Cancel");
    click(&mut h, "Cancel");
    wait_until(&mut h, "the cancelled landscape", |a| {
        !a.landscape().is_running()
    });
    let ls = h.state().landscape();
    assert_eq!(ls.error.as_deref(), Some("cancelled"));
    let result = ls.result().expect("the points scored");
    assert!(result.cancelled);
    assert!(result.done < result.total);
    h.get_by_label("cancelled");
    h.get_by_label("Compute");
}

#[test]
fn the_same_expert_twice_is_an_error() {
    let mut h = shipped();
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    h.state_mut().landscape_mut().b = 0;
    h.step();
    click(&mut h, "Compute");
    h.step();
    assert!(!h.state().landscape().is_running());
    h.get_by_label("choose two different experts for a and b");
}

/// A 3-channel base (no training data known) and two experts.
fn write_set_without_data(dir: &Path) -> ModelSet {
    let d = Device::flex();
    let mut config = tiny_config();
    config.in_channels = 3;
    config.out_channels = 3;
    let save = |p: &Path, seed: u64| {
        save_unet(
            p,
            config.clone(),
            UNet2DModel::new(&config, seed, &d).unwrap(),
        );
    };
    save(&dir.join("base"), 0);
    let experts: Vec<_> = (1..=2)
        .map(|i| {
            let p = dir.join(format!("deme/expert_{i}"));
            save(&p, i);
            p
        })
        .collect();
    ModelSet {
        base: dir.join("base"),
        experts,
    }
}

#[test]
fn a_set_without_a_held_out_set_shows_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = harness(Some(write_set_without_data(tmp.path())));
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    click(&mut h, "Compute");
    wait_until(&mut h, "the failure", |a| !a.landscape().is_running());
    let ls = h.state().landscape();
    let error = ls.error.clone().expect("an error");
    assert!(error.starts_with("no held-out set"), "{error}");
    assert!(ls.result().is_none());
    h.get_by_label(&error);
    h.get_by_label("Compute");
}
