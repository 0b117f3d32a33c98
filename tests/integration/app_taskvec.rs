//! The task-vector view driven through egui_kittest on the shipped mnist-tiny
//! set: the empty state, the statistics computed when the view opens (checked
//! against the engine's `tv_stats` on the same models), the cosine readout,
//! switching to layers, the group filter, the export and its failure, and the
//! job's own errors (cancelled, experts that do not fit the base).

use crate::common;
use common::app::{app_on, click, wait_until};
use common::tiny_config;

use burn::tensor::Device;
use deme_studio::app::job_slot::Waker;
use deme_studio::app::taskvec::job::{EXPORT_FILES, TaskVecInputs, TaskVecJob, run_taskvec};
use deme_studio::app::taskvec::{COSINE_LABEL, PAGE_ROWS, TaskVecState, fmt_value};
use deme_studio::app::{StudioApp, View};
use deme_studio::engine::analysis::Granularity;
use deme_studio::engine::analysis::tv_stats::{TvStats, tv_stats};
use deme_studio::engine::merge::{HostTaskVectors, LabeledParams};
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::model_set::{default_set, folder_name};
use deme_studio::engine::store::{AnyModel, load_model};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::PathBuf;

/// Waits for the statistics the view computes by itself when it opens.
fn harness(with_models: bool) -> Harness<'static, StudioApp> {
    let models = with_models.then(|| default_set().expect("assets/mnist-tiny is shipped"));
    app_on(View::TaskVectors, models)
}

fn computed() -> Harness<'static, StudioApp> {
    let mut h = harness(true);
    wait_until(&mut h, "the statistics", |a| {
        a.taskvec().stats().is_some() && !a.taskvec().is_running()
    });
    assert_eq!(h.state().taskvec().error, None);
    h
}

/// The statistics computed here, apart from the app, as `tv-stats` does.
fn engine_stats(granularity: Granularity) -> TvStats {
    let set = default_set().unwrap();
    let device = Device::flex();
    let load = |p: &PathBuf| {
        LabeledParams::new(
            folder_name(p),
            load_model(p, &device).unwrap().model.export(),
        )
    };
    let base = load(&set.base);
    let experts = set.experts.iter().map(load).collect();
    tv_stats(&HostTaskVectors::new(base, experts).unwrap(), granularity)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("app-taskvec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn without_models_the_view_says_what_to_do() {
    let mut h = harness(false);
    h.step();
    h.get_by_label("Task vectors");
    h.get_by_label_contains("Open a model set");
    assert!(h.query_by_label("Recompute").is_none());
    assert!(!h.state().taskvec().is_running());
}

#[test]
fn opening_the_view_computes_the_statistics_of_the_engine() {
    let mut h = computed();
    let stats = h.state().taskvec().stats().unwrap().clone();
    let n = stats.num_experts();
    assert_eq!(n, 4);
    assert_eq!(stats.granularity, Granularity::Block);
    assert_eq!(stats.cosine.len(), 16);
    for i in 0..n {
        assert_eq!(stats.cosine[i * n + i], 1.0);
        for j in 0..n {
            assert_eq!(stats.cosine[i * n + j], stats.cosine[j * n + i]);
            assert!(stats.cosine[i * n + j].abs() <= 1.0);
        }
        assert!(stats.overall[i].norm > 0.0);
    }
    assert_eq!(*stats, engine_stats(Granularity::Block));
    // what the page shows
    h.get_by_label_contains("N = 4 experts");
    h.get_by_label("Norm ||τ_i|| per expert");
    h.get_by_label(&fmt_value(stats.overall[0].norm));
    h.get_by_label(&fmt_value(stats.overall[3].abs.max));
    let g = stats.groups.len();
    h.get_by_label(&format!("{g} of {g} blocks"));
    // hover the cosine cell of row 1, column 4
    let table = h.get_by_label(COSINE_LABEL).rect();
    h.get_by_label_contains("hover a cell");
    let cell = (320.0f32 / 4.0).clamp(14.0, 64.0);
    let pos = egui::pos2(
        table.left() + 28.0 + 3.5 * cell,
        table.top() + 18.0 + 0.5 * cell,
    );
    h.hover_at(pos);
    h.step();
    h.step();
    h.get_by_label(&format!(
        "expert 1 vs expert 4: cosine {:.3}",
        stats.cosine[3]
    ));
}

#[test]
fn switching_to_layers_recomputes_and_the_filter_narrows_the_plots() {
    let mut h = computed();
    let blocks = h.state().taskvec().stats().unwrap().groups.len();
    click(&mut h, "layer");
    assert!(h.state().taskvec().is_running());
    wait_until(&mut h, "the layer statistics", |a| {
        !a.taskvec().is_running()
    });
    let stats = h.state().taskvec().stats().unwrap().clone();
    assert_eq!(stats.granularity, Granularity::Layer);
    assert!(stats.groups.len() > blocks);
    assert_eq!(*stats, engine_stats(Granularity::Layer));
    let all = stats.groups.len();
    h.get_by_label_contains(&format!("{all} of {all} layers"));
    // the plots page through the layers
    assert!(all > PAGE_ROWS);
    h.get_by_label(&format!("layers 1-{PAGE_ROWS} of {all}"));
    click(&mut h, "Next");
    h.step();
    h.get_by_label(&format!(
        "layers {}-{} of {all}",
        PAGE_ROWS + 1,
        (2 * PAGE_ROWS).min(all)
    ));
    assert_eq!(h.state().taskvec().page, 1);
    let mid = stats
        .groups
        .iter()
        .filter(|g| g.name.contains("mid_block"))
        .count();
    assert!(mid > 0 && mid < all);
    h.state_mut().taskvec_mut().filter = "MID_block".into();
    h.step();
    h.step();
    h.get_by_label_contains(&format!("{mid} of {all} layers"));
    h.state_mut().taskvec_mut().filter = "no such layer".into();
    h.step();
    h.get_by_label("no group matches the filter");
}

#[test]
fn export_writes_files_that_parse() {
    let mut h = computed();
    let stats = h.state().taskvec().stats().unwrap().clone();
    let dir = temp_dir("export");
    h.state_mut().taskvec_mut().export_dir = dir.display().to_string();
    click(&mut h, "Export");
    wait_until(&mut h, "the export", |a| !a.taskvec().is_exporting());
    assert!(matches!(h.state().taskvec().export.note, Some(Ok(_))));
    h.get_by_label_contains("wrote tv_stats.json");
    assert!(!h.state().notice().unwrap().error);
    for f in EXPORT_FILES {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let text = std::fs::read_to_string(dir.join("tv_stats.json")).unwrap();
    assert_eq!(text, serde_json::to_string_pretty(&*stats).unwrap());
    let json: TvStats = serde_json::from_str(&text).unwrap();
    assert_eq!(json.labels, stats.labels);
    assert_eq!(json.groups.len(), stats.groups.len());
    assert!((json.overall[0].norm - stats.overall[0].norm).abs() < 1e-12);
    let n = stats.num_experts();
    let cos = std::fs::read_to_string(dir.join("cosine.csv")).unwrap();
    let rows: Vec<Vec<String>> = cos
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    assert_eq!(rows.len(), n * n);
    for r in &rows {
        let (i, j): (usize, usize) = (r[0].parse().unwrap(), r[1].parse().unwrap());
        let v: f64 = r[2].parse().unwrap();
        assert_eq!(v, stats.cosine[(i - 1) * n + (j - 1)]);
    }
    let table = std::fs::read_to_string(dir.join("tv_stats.csv")).unwrap();
    assert_eq!(table.lines().count(), 1 + (1 + stats.groups.len()) * n);
    let first: Vec<&str> = table.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(first[0], "(all)");
    assert_eq!(first[3].parse::<f64>().unwrap(), stats.overall[0].norm);
    let groups = std::fs::read_to_string(dir.join("group_cosine.csv")).unwrap();
    assert_eq!(groups.lines().count(), 1 + stats.groups.len() * n * n);
    let png = image::open(dir.join("cosine.png")).unwrap();
    assert!(png.width() > 0 && png.height() > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn export_into_an_impossible_folder_shows_the_error() {
    let mut h = computed();
    let dir = temp_dir("blocked");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    h.state_mut().taskvec_mut().export_dir = file.join("sub").display().to_string();
    click(&mut h, "Export");
    wait_until(&mut h, "the failed export", |a| !a.taskvec().is_exporting());
    let Some(Err(e)) = h.state().taskvec().export.note.clone() else {
        panic!("expected an export error");
    };
    assert!(e.contains("exporting to"), "{e}");
    assert!(h.state().notice().unwrap().error);
    // in the view and in the status bar
    assert_eq!(h.query_all_by_label(&e).count(), 2);
    // the view keeps working: the statistics are still there
    assert!(h.state().taskvec().stats().is_some());
    h.get_by_label("Recompute");
    let _ = std::fs::remove_dir_all(&dir);
}

fn default_inputs() -> TaskVecInputs {
    let set = default_set().unwrap();
    let device = Device::flex();
    TaskVecInputs {
        base: load_model(&set.base, &device).unwrap().model,
        experts: set
            .experts
            .iter()
            .map(|p| load_model(p, &device).unwrap().model)
            .collect(),
        labels: set.experts.iter().map(|p| folder_name(p)).collect(),
    }
}

/// A job as the view starts it (per block), its reports going nowhere.
fn job() -> TaskVecJob {
    TaskVecState::default().start(&Waker::new(|| {}))
}

#[test]
fn the_job_reports_each_stage_and_stops_when_cancelled() {
    let inputs = default_inputs();
    let mut stages = Vec::new();
    let stats = run_taskvec(&job(), &inputs, &mut |p| stages.push(p)).unwrap();
    assert_eq!(stats, engine_stats(Granularity::Block));
    assert_eq!(stages.len(), 4 + 3);
    assert!(
        stages
            .iter()
            .enumerate()
            .all(|(k, p)| p.done == k && p.total == 7)
    );
    let cancelled = job();
    cancelled.cancel.cancel();
    let mut calls = 0;
    let e = run_taskvec(&cancelled, &inputs, &mut |_| calls += 1).unwrap_err();
    assert_eq!(e.to_string(), "cancelled");
    assert_eq!(calls, 0);
}

#[test]
fn an_expert_that_does_not_fit_the_base_is_an_error() {
    let mut inputs = default_inputs();
    let other = UNet2DModel::new(&tiny_config(), 1, &Device::flex()).unwrap();
    inputs.experts[2] = AnyModel::UNet(other);
    let e = run_taskvec(&job(), &inputs, &mut |_| {}).unwrap_err();
    let text = format!("{e:#}");
    assert!(!text.is_empty() && text != "cancelled", "{text}");
}
