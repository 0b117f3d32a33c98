//! The loss landscape on the task-vector plane: the origin is the base, (1, 0) is
//! model a, the marked points sit where the geometry says, a cancelled sweep is
//! consistent, and the command writes its files (on Ctrl-C, the points scored).

use crate::common;
use common::interrupt_when;

use burn::tensor::{Device, Tensor};
use deme_studio::engine::analysis::{
    Landscape, LandscapeConfig, LandscapeEvent, LandscapeGrid, LandscapeModels, MarkKind,
    MarkRequest, loss_landscape,
};
use deme_studio::engine::diffusion::NoiseSchedule;
use deme_studio::engine::eval::{EvalSet, EvalSetConfig, timestep_ranges};
use deme_studio::engine::merge::Mergeable;
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::model::params::{export_params, flat_params, map_flat_params};
use deme_studio::engine::train::{BatchSampler, CancelToken};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::process::Command;

/// `base + s (other - base)` key by key (projections of `base` kept where `other` has none).
fn blend(base: &UNet2DModel, other: &UNet2DModel, s: f32) -> UNet2DModel {
    let o: HashMap<String, Tensor<1>> = flat_params(other).into_iter().collect();
    map_flat_params(base.clone(), &mut |k, v| match o.get(k) {
        Some(t) => v.clone() + (t.clone() - v).mul_scalar(s),
        None => v,
    })
}

/// Base, a (with projections nudged away from the identity), b and c = base +
/// 0.5 tau_a + 0.25 tau_b (all of the structure with projections).
fn models() -> Vec<UNet2DModel> {
    let d = Device::flex();
    let config = common::tiny_config();
    let base = UNet2DModel::new(&config, 0, &d).unwrap();
    let a =
        blend(&base, &UNet2DModel::new(&config, 1, &d).unwrap(), 0.1).with_projections(&config, &d);
    let a = map_flat_params(a, &mut |k, v| {
        if k.starts_with("adapter_list.") {
            v.add_scalar(0.01)
        } else {
            v
        }
    });
    let b =
        blend(&base, &UNet2DModel::new(&config, 2, &d).unwrap(), 0.1).with_projections(&config, &d);
    // c from the host values: identity stands in for the base's missing projections
    let bp: HashMap<String, Vec<f32>> = export_params(&base)
        .into_iter()
        .map(|(k, _, v)| (k, v))
        .collect();
    let ap: HashMap<String, Vec<f32>> = export_params(&a)
        .into_iter()
        .map(|(k, _, v)| (k, v))
        .collect();
    let bbp: HashMap<String, Vec<f32>> = export_params(&b)
        .into_iter()
        .map(|(k, _, v)| (k, v))
        .collect();
    let c = map_flat_params(a.clone(), &mut |k, v| {
        let n = v.dims()[0];
        let base_v = bp.get(k).cloned().unwrap_or_else(|| identity(n));
        let vals: Vec<f32> = (0..n)
            .map(|i| base_v[i] + 0.5 * (ap[k][i] - base_v[i]) + 0.25 * (bbp[k][i] - base_v[i]))
            .collect();
        Tensor::from_data(burn::tensor::TensorData::new(vals, [n]), &v.device())
    });
    vec![base, a, b, c]
}

fn identity(n: usize) -> Vec<f32> {
    let c = (n as f64).sqrt() as usize;
    (0..n)
        .map(|i| if i / c == i % c { 1.0 } else { 0.0 })
        .collect()
}

fn eval_set() -> EvalSet {
    let mut rng = StdRng::seed_from_u64(7);
    let items: Vec<f32> = (0..40 * 64).map(|_| rng.random_range(-1.0..1.0)).collect();
    let val = BatchSampler::new(items, [1, 8, 8], "random");
    let schedule = NoiseSchedule::ddpm(1000);
    let cfg = EvalSetConfig {
        samples: 16,
        batch_size: 8,
        seed: 3,
    };
    EvalSet::new(&val, &schedule, cfg, &Device::flex()).unwrap()
}

/// Host task vectors (f64) of `m` against `base`, identity for missing projections.
fn tau(base: &UNet2DModel, m: &UNet2DModel) -> Vec<f64> {
    let bp: HashMap<String, Vec<f32>> = export_params(base)
        .into_iter()
        .map(|(k, _, v)| (k, v))
        .collect();
    export_params(m)
        .into_iter()
        .flat_map(|(k, _, v)| {
            let b = bp.get(&k).cloned().unwrap_or_else(|| identity(v.len()));
            v.into_iter()
                .zip(b)
                .map(|(x, y)| f64::from(x) - f64::from(y))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn run(
    ms: &[UNet2DModel],
    eval: &EvalSet,
    grid: LandscapeGrid,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(LandscapeEvent),
) -> Landscape {
    let models: Vec<(&str, &UNet2DModel)> = vec![("a", &ms[1]), ("b", &ms[2]), ("c", &ms[3])];
    let merges = [MarkRequest {
        label: "merge".into(),
        weights: vec![0.3, 0.3, 0.0],
    }];
    let input = LandscapeModels {
        base: ("base", &ms[0]),
        models: &models,
        a: 0,
        b: 1,
        merges: &merges,
    };
    loss_landscape(
        &input,
        eval,
        &LandscapeConfig {
            grid,
            ranges: timestep_ranges(4, 1000),
        },
        cancel,
        on_event,
    )
    .unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

#[test]
fn origin_is_the_base_and_one_zero_is_model_a() {
    let ms = models();
    let eval = eval_set();
    let grid = LandscapeGrid {
        size: 5,
        x: [-0.5, 1.5],
        y: [-0.5, 1.5],
    };
    let ls = run(&ms, &eval, grid, &CancelToken::new(), &mut |_| {});
    assert!(!ls.cancelled);
    assert_eq!((ls.done, ls.total, ls.surfaces.len()), (25, 25, 5));
    assert_eq!((ls.xs[1], ls.xs[3], ls.ys[1]), (0.0, 1.0, 0.0));
    let base = eval.evaluate(&|x, t| ms[0].predict_eps(x, t)).unwrap();
    let a = eval.evaluate(&|x, t| ms[1].predict_eps(x, t)).unwrap();
    let at_origin = ls.at(1, 1).unwrap();
    let at_a = ls.at(3, 1).unwrap();
    assert!(
        close(at_origin[0], base.mean(), 1e-5),
        "{at_origin:?} vs {}",
        base.mean()
    );
    assert!(close(at_a[0], a.mean(), 1e-5), "{at_a:?} vs {}", a.mean());
    for (r, (want_base, want_a)) in base
        .per_range(4)
        .into_iter()
        .zip(a.per_range(4))
        .enumerate()
    {
        assert!(close(at_origin[r + 1], want_base, 1e-5));
        assert!(close(at_a[r + 1], want_a, 1e-5));
    }
    // the two models really differ here, so the check has teeth
    assert!(!close(base.mean(), a.mean(), 1e-3));
    // marks carry the models' own losses
    assert!(close(ls.marks[0].loss, base.mean(), 1e-5));
    assert!(close(ls.marks[1].loss, a.mean(), 1e-5));
}

#[test]
fn marks_sit_where_the_geometry_says() {
    let ms = models();
    let eval = eval_set();
    let grid = LandscapeGrid {
        size: 2,
        x: [0.0, 1.0],
        y: [0.0, 1.0],
    };
    let ls = run(&ms, &eval, grid, &CancelToken::new(), &mut |_| {});
    let ta = tau(&ms[0], &ms[1]);
    let tb = tau(&ms[0], &ms[2]);
    let aa = dot(&ta, &ta);
    let bx = dot(&ta, &tb) / aa;
    let by = ((dot(&tb, &tb) - dot(&ta, &tb).powi(2) / aa) / aa).sqrt();
    assert!(close(ls.plane.unit, aa.sqrt(), 1e-9));
    assert!(close(ls.plane.b_xy[0], bx, 1e-6) && close(ls.plane.b_xy[1], by, 1e-6));
    let kinds: Vec<MarkKind> = ls.marks.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [
            MarkKind::Base,
            MarkKind::Model,
            MarkKind::Model,
            MarkKind::Model,
            MarkKind::Merge
        ]
    );
    let xy = |k: usize| ls.marks[k].projection.xy;
    assert_eq!(xy(0), [0.0, 0.0]);
    assert!(
        (xy(1)[0] - 1.0).abs() < 1e-9 && xy(1)[1].abs() < 1e-9,
        "{:?}",
        xy(1)
    );
    assert!((xy(2)[0] - bx).abs() < 1e-6 && (xy(2)[1] - by).abs() < 1e-6);
    // c = base + 0.5 tau_a + 0.25 tau_b lies in the plane
    let want_c = [0.5 + 0.25 * bx, 0.25 * by];
    assert!((xy(3)[0] - want_c[0]).abs() < 1e-5 && (xy(3)[1] - want_c[1]).abs() < 1e-5);
    assert!(ls.marks[3].projection.residual_rel < 1e-3);
    // the merge 0.3 a + 0.3 b
    assert!((xy(4)[0] - 0.3 * (1.0 + bx)).abs() < 1e-6 && (xy(4)[1] - 0.3 * by).abs() < 1e-6);
    for k in 0..3 {
        assert!(
            ls.marks[k].projection.residual_rel < 1e-3,
            "{:?}",
            ls.marks[k]
        );
    }
}

#[test]
fn cancel_leaves_a_consistent_partial_result() {
    let ms = models();
    let eval = eval_set();
    let cancel = CancelToken::new();
    let mut points = 0;
    let ls = run(&ms, &eval, LandscapeGrid::default(), &cancel, &mut |e| {
        if let LandscapeEvent::Point { .. } = e {
            points += 1;
            if points == 10 {
                cancel.cancel();
            }
        }
    });
    assert!(ls.cancelled);
    assert_eq!((ls.done, ls.order.len(), ls.total), (10, 10, 441));
    assert_eq!(ls.marks.len(), 5);
    let g = ls.grid.size;
    let mut want: Vec<usize> = ls.order.iter().map(|[i, j]| j * g + i).collect();
    want.sort();
    for s in &ls.surfaces {
        let scored: Vec<usize> = (0..g * g).filter(|&k| s.values[k].is_some()).collect();
        assert_eq!(scored, want, "{}", s.name);
    }
    // the first points are the coarse sub-lattice (every 4th point)
    assert!(ls.order.iter().all(|[i, j]| i % 4 == 0 && j % 4 == 0));
    // what landscape.json holds reads back whole, marked cancelled (serde_json's
    // parser may land one ulp off the shortest decimal it wrote)
    let json = serde_json::to_string_pretty(&ls).unwrap();
    let back: Landscape = serde_json::from_str(&json).unwrap();
    assert!(back.cancelled && json.contains("\"cancelled\": true"));
    assert_eq!((back.done, &back.order), (10, &ls.order));
    for (b, s) in back.surfaces.iter().zip(&ls.surfaces) {
        for (x, y) in b.values.iter().zip(&s.values) {
            match (x, y) {
                (Some(x), Some(y)) => assert!(close(*x, *y, 1e-14), "{x} vs {y}"),
                (None, None) => {}
                _ => panic!("{}: {x:?} vs {y:?}", s.name),
            }
        }
    }
}

#[test]
fn landscape_command_writes_its_files() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let config = common::tiny_config();
    for (name, m) in ["base", "e1", "e2", "e3"].iter().zip(models()) {
        common::save_unet(&r.join(name), config.clone(), m);
    }
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device",
            "cpu",
            "landscape",
            "--base",
            &p("base"),
            "--a",
            "1",
            "--b",
            &p("e2"),
            "--experts",
            &format!("{},{},{}", p("e1"), p("e2"), p("e3")),
            "--weights",
            "0.3,0.3,0",
            "--grid",
            "5",
            "--range",
            "-0.5,1.5",
            "--samples",
            "12",
            "--out",
            &p("ls"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("ls/landscape.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["surfaces"].as_array().unwrap().len(),
        4,
        "3 experts: 3 ranges + all"
    );
    assert_eq!(json["marks"].as_array().unwrap().len(), 5);
    assert_eq!(json["plane"]["a"], 0);
    assert_eq!(json["plane"]["b"], 1);
    let csv = std::fs::read_to_string(r.join("ls/landscape.csv")).unwrap();
    assert_eq!(csv.lines().count(), 26, "{csv}");
    assert!(csv.starts_with("i,j,x,y,w_a,w_b,loss_all,loss_range1"));
    for name in ["all", "range1", "range2", "range3"] {
        let png = r.join(format!("ls/landscape_{name}.png"));
        let img = image::open(&png).unwrap();
        assert!(img.width() > 100 && img.height() > 100, "{}", png.display());
    }
    // the origin row of the table is the base loss the marks report
    let origin = csv
        .lines()
        .find(|l| l.starts_with("1,1,"))
        .unwrap()
        .split(',')
        .nth(6)
        .unwrap()
        .parse::<f64>()
        .unwrap();
    let base_loss = json["marks"][0]["loss"].as_f64().unwrap();
    assert!(close(origin, base_loss, 1e-9), "{origin} vs {base_loss}");
    // numpy's view of the same lattice: [j, i] is (x_i, y_j), with its axes
    let xs = common::npy::read_npy(&r.join("ls/landscape_x.npy"));
    let ys = common::npy::read_npy(&r.join("ls/landscape_y.npy"));
    assert_eq!(
        (xs.shape.as_slice(), ys.shape.as_slice()),
        ([5].as_slice(), [5].as_slice())
    );
    for name in ["all", "range1", "range2", "range3"] {
        let grid = common::npy::read_npy(&r.join(format!("ls/landscape_{name}.npy")));
        assert_eq!(
            (grid.descr.as_str(), grid.shape.as_slice()),
            ("<f8", [5, 5].as_slice())
        );
        let column = 6 + ["all", "range1", "range2", "range3"]
            .iter()
            .position(|n| *n == name)
            .unwrap();
        for line in csv.lines().skip(1) {
            let f: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
            let (i, j) = (f[0] as usize, f[1] as usize);
            assert_eq!(grid.values[j * 5 + i], f[column], "{name} at ({i}, {j})");
            assert_eq!((xs.values[i], ys.values[j]), (f[2], f[3]));
        }
    }
    // the same model twice spans no plane: one clear error
    let bad = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device",
            "cpu",
            "landscape",
            "--base",
            &p("base"),
            "--a",
            &p("e1"),
            "--b",
            &p("e1"),
            "--out",
            &p("bad"),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("same model"));
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_the_points_scored_so_far() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let config = common::tiny_config();
    for (name, m) in ["base", "e1", "e2"].iter().zip(models()) {
        common::save_unet(&r.join(name), config.clone(), m);
    }
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    // 101 x 101 points, a progress line every 510: the signal lands mid-sweep
    let (status, log) = interrupt_when(
        &[
            "--device",
            "cpu",
            "landscape",
            "--base",
            &p("base"),
            "--a",
            &p("e1"),
            "--b",
            &p("e2"),
            "--grid",
            "101",
            "--samples",
            "8",
            "--out",
            &p("ls"),
        ],
        "landscape: ",
    );
    assert!(
        !status.success(),
        "a cancelled sweep exits non-zero:\n{log}"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("cancelled after"), "{log}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("ls/landscape.json")).unwrap())
            .unwrap();
    assert_eq!(json["cancelled"], true);
    let done = json["done"].as_u64().unwrap() as usize;
    assert!((510..101 * 101).contains(&done), "{done}");
    assert_eq!(json["order"].as_array().unwrap().len(), done);
    assert!(
        errors[0].contains(&format!("after {done} of 10201 points")),
        "{log}"
    );
    for s in json["surfaces"].as_array().unwrap() {
        let scored = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| !v.is_null())
            .count();
        assert_eq!(scored, done, "{}", s["name"]);
    }
    // one row per scored point, every one of them in the scored order
    let csv = std::fs::read_to_string(r.join("ls/landscape.csv")).unwrap();
    assert_eq!(csv.lines().count(), done + 1);
    let order: std::collections::BTreeSet<(u64, u64)> = json["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ij| (ij[0].as_u64().unwrap(), ij[1].as_u64().unwrap()))
        .collect();
    for line in csv.lines().skip(1) {
        let mut f = line.split(',').map(|v| v.parse::<f64>().unwrap());
        let (i, j) = (f.next().unwrap() as u64, f.next().unwrap() as u64);
        assert!(order.contains(&(i, j)), "{line}");
    }
    // written by rename: the files and the pictures, nothing half-written beside them
    let mut names: Vec<String> = std::fs::read_dir(r.join("ls"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // json, csv, a picture and a grid per surface, the two axes
    assert_eq!(names.len(), 2 + 5 + 5 + 2, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("landscape")),
        "{names:?}"
    );
    image::open(r.join("ls/landscape_all.png")).unwrap();
    // the numpy grid holds the same points, NaN where the sweep never got
    let grid = common::npy::read_npy(&r.join("ls/landscape_all.npy"));
    assert_eq!(grid.shape, [101, 101]);
    assert_eq!(grid.values.iter().filter(|v| !v.is_nan()).count(), done);
    for ij in json["order"].as_array().unwrap() {
        let (i, j) = (
            ij[0].as_u64().unwrap() as usize,
            ij[1].as_u64().unwrap() as usize,
        );
        assert!(!grid.values[j * 101 + i].is_nan(), "({i}, {j}) scored");
    }
}
