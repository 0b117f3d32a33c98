//! The gradient-conflict view driven through egui_kittest on the shipped
//! mnist-tiny set: the empty state, Compute with its progress, the heatmap with
//! its hover readout, the histogram and the per-block table, and Cancel.

use crate::common;
use common::app::{app_on, click, wait_until};

use deme_studio::app::gradsim::HEATMAP_LABEL;
use deme_studio::app::{StudioApp, View};
use deme_studio::engine::model_set::default_set;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;

fn harness(with_models: bool) -> Harness<'static, StudioApp> {
    let models = with_models.then(|| default_set().expect("assets/mnist-tiny is shipped"));
    app_on(View::GradientConflicts, models)
}

/// `batches` batches of 8: quick, where the defaults (8 x 128) take a minute on a CPU.
fn small(h: &mut Harness<'static, StudioApp>, batches: usize) {
    let g = h.state_mut().gradsim_mut();
    g.batches = batches;
    g.batch_size = 8;
    h.step();
}

#[test]
fn without_models_the_view_says_what_to_do() {
    let mut h = harness(false);
    h.step();
    h.get_by_label("Gradient conflicts");
    h.get_by_label_contains("Open a model set");
    assert!(h.query_by_label("Compute").is_none());
}

#[test]
fn compute_draws_the_heatmap_histogram_and_blocks() {
    let mut h = harness(true);
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    h.get_by_label_contains("Press Compute");
    small(&mut h, 1);
    click(&mut h, "Compute");
    assert!(h.state().gradsim().is_running());
    assert_eq!(h.state().gradsim().progress().map(|p| p.1), Some(10));
    h.get_by_label_contains("backward passes");
    wait_until(&mut h, "the gradient similarities", |a| {
        !a.gradsim().is_running()
    });
    let app = h.state();
    assert_eq!(app.gradsim().error, None);
    let result = app.gradsim().result().expect("a result").clone();
    assert_eq!(result.k(), 10);
    assert_eq!(result.config.batches, 1);
    assert_eq!(result.config.batch_size, 8);
    assert!(!result.groups.is_empty());
    // heatmap, hover readout, histogram and table
    let heatmap = h.get_by_label(HEATMAP_LABEL).rect();
    h.get_by_label_contains("hover a cell");
    // the top-right cell: row t_i = 50, column t_j = 950
    let k = result.k() as f32;
    let side = heatmap.height() - 34.0;
    let cell = side / k;
    let pos = egui::pos2(
        heatmap.left() + 40.0 + side - cell / 2.0,
        heatmap.top() + cell / 2.0,
    );
    h.hover_at(pos);
    h.step();
    h.step();
    let text = format!(
        "t_i = 50, t_j = 950: cosine {:.3}",
        result.cosine[result.k() - 1]
    );
    h.get_by_label(&text);
    h.get_by_label_contains("all pairs: mean");
    h.get_by_label_contains("pairs in [0, 250): ");
    h.get_by_label("Per block, most conflicting first");
    h.get_by_label("mean cosine");
    let (most, _, _) = &result.groups_by_conflict()[0];
    assert!(h.query_all_by_label(most).count() >= 1);
    // export writes the gradsim command's files
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("conflicts");
    h.state_mut().gradsim_mut().export_dir = dir.display().to_string();
    h.step();
    click(&mut h, "Export");
    wait_until(&mut h, "the export", |a| {
        a.notice().is_some_and(|n| n.text.contains("exported"))
    });
    let csv = std::fs::read_to_string(dir.join("cosine.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 10 * 10);
    assert!(csv.lines().nth(1).unwrap().starts_with("50,50,"));
    // the same matrix for numpy, with its row timesteps
    let cosine = common::npy::read_npy(&dir.join("cosine.npy"));
    let timesteps = common::npy::read_npy(&dir.join("timesteps.npy"));
    assert_eq!(
        (cosine.descr.as_str(), cosine.shape.as_slice()),
        ("<f8", [10, 10].as_slice())
    );
    assert_eq!(
        (timesteps.descr.as_str(), timesteps.shape.as_slice()),
        ("<i8", [10].as_slice())
    );
    for (line, v) in csv.lines().skip(1).zip(&cosine.values) {
        let f: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        assert_eq!(f[2], *v, "{line}");
    }
    assert_eq!(timesteps.values[0], 50.0);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("gradsim.json")).unwrap()).unwrap();
    assert_eq!(json["timesteps"].as_array().map(Vec::len), Some(10));
    let png = image::open(dir.join("heatmap.png")).unwrap();
    assert!(png.width() > 100 && png.height() > 100);
    assert!(
        std::fs::read_to_string(dir.join("groups.csv"))
            .unwrap()
            .lines()
            .count()
            > 2
    );
    // an impossible folder is an error in the status bar, not a panic
    let file = out.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    h.state_mut().gradsim_mut().export_dir = file.join("sub").display().to_string();
    h.step();
    click(&mut h, "Export");
    wait_until(&mut h, "the failed export", |a| {
        a.notice()
            .is_some_and(|n| n.error && n.text.contains("exporting the gradient conflicts failed"))
    });
}

#[test]
fn cancel_stops_the_computation() {
    let mut h = harness(true);
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    // large enough to take a while
    h.state_mut().gradsim_mut().k = 50;
    h.state_mut().gradsim_mut().batches = 4;
    click(&mut h, "Compute");
    h.get_by_label("Cancel");
    click(&mut h, "Cancel");
    wait_until(&mut h, "the cancelled computation", |a| {
        !a.gradsim().is_running()
    });
    let g = h.state().gradsim();
    assert!(g.result().is_none());
    assert_eq!(g.error.as_deref(), Some("cancelled"));
    h.get_by_label("cancelled");
    h.get_by_label("Compute");
}

#[test]
fn two_batches_show_the_noise_ceiling_and_the_relative_matrix() {
    let mut h = harness(true);
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    h.state_mut().gradsim_mut().k = 4;
    small(&mut h, 2);
    click(&mut h, "Compute");
    wait_until(&mut h, "the gradient similarities", |a| {
        !a.gradsim().is_running()
    });
    let result = h.state().gradsim().result().expect("a result").clone();
    let ceiling = result.ceiling.clone().expect("two batches give a ceiling");
    assert_eq!(ceiling.len(), 4);
    assert!(
        ceiling.iter().all(|c| (-1.0..=1.0).contains(c)),
        "{ceiling:?}"
    );
    h.get_by_label_contains("noise ceiling c_k: min");
    // 16 samples per timestep: the view says whether that is mostly noise
    let mut sorted = ceiling.clone();
    sorted.sort_by(f64::total_cmp);
    let noisy = h.query_by_label_contains("samples per timestep; average over more");
    assert_eq!(
        noisy.is_some(),
        sorted[2] < deme_studio::app::gradsim::NOISY_CEILING,
        "{ceiling:?}"
    );
    // the hover readout gives the cosine's standard error over the batches
    let se = result
        .stderr
        .clone()
        .expect("two batches give standard errors");
    let heatmap = h.get_by_label(HEATMAP_LABEL).rect();
    let side = heatmap.height() - 34.0;
    let cell = side / 4.0;
    h.hover_at(egui::pos2(
        heatmap.left() + 40.0 + side - cell / 2.0,
        heatmap.top() + cell / 2.0,
    ));
    h.step();
    h.step();
    h.get_by_label_contains(&format!("± {:.3} (s.e.)", se[3]));
    click(&mut h, "relative to the ceiling");
    assert!(h.state().gradsim().relative);
    h.get_by_label(HEATMAP_LABEL);
}

#[test]
fn suggested_ranges_fill_the_train_views_boundaries() {
    use deme_studio::app::train::form::TrainMode;
    use deme_studio::engine::analysis::range_split::suggest_ranges;
    let mut h = harness(true);
    wait_until(&mut h, "the models", |a| a.models().info.is_some());
    h.state_mut().gradsim_mut().k = 6;
    small(&mut h, 1);
    click(&mut h, "Compute");
    wait_until(&mut h, "the gradient similarities", |a| {
        !a.gradsim().is_running()
    });
    h.state_mut().gradsim_mut().suggest_n = 3;
    h.step();
    let result = h.state().gradsim().result().expect("a result").clone();
    let want = suggest_ranges(&result.cosine, &result.timesteps, 1000, 3).unwrap();
    let text: Vec<String> = want.boundaries.iter().map(|b| b.to_string()).collect();
    h.get_by_label_contains(&format!("boundaries {}", text.join(",")));
    click(&mut h, "Finetune on these ranges");
    h.step();
    let app = h.state();
    assert_eq!(app.view(), View::Train);
    let form = &app.train().form;
    assert_eq!(form.mode, TrainMode::Finetune);
    assert_eq!(form.boundaries, text.join(","));
    assert_eq!(
        form.base,
        app.models()
            .info
            .as_ref()
            .unwrap()
            .set
            .base
            .display()
            .to_string()
    );
    // the form's finetune settings take them: N = 3 on those ranges
    let c = form.finetune_config().unwrap();
    assert_eq!(c.experts, 3);
    assert_eq!(c.boundaries, Some(want.boundaries));
}
