//! `grid-search` end to end: every lattice point scored once, the table written,
//! the all-zero point scoring exactly the base model's held-out loss, and a
//! cancelled search keeping exactly the points it scored.

use crate::common;
use common::interrupt_when;

use burn::tensor::Device;
use deme_studio::engine::diffusion::NoiseSchedule;
use deme_studio::engine::eval::{EvalSet, EvalSetConfig};
use deme_studio::engine::merge::Merger;
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::search::{
    GridEvent, GridResult, GridSpec, LossObjective, Strategy, search_merge_weights,
};
use deme_studio::engine::train::{BatchSampler, CancelToken};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::Command;

fn save_random(dir: &Path, seed: u64) {
    let config = common::tiny_config();
    let m = UNet2DModel::new(&config, seed, &Device::flex()).unwrap();
    common::save_unet(dir, config, m);
}

/// A folder with a base `base` and two experts `e1`, `e2` (random weights).
fn three_models() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (name, seed) in [("base", 0), ("e1", 1), ("e2", 2)] {
        save_random(&root.path().join(name), seed);
    }
    root
}

#[test]
fn learned_weights_descend_from_the_centre_and_refuse_the_frechet_objective() {
    let root = three_models();
    let r = root.path();
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    let run = |extra: &[&str], out: &str| {
        let experts = format!("{},{}", p("e1"), p("e2"));
        let mut args = vec![
            "--device",
            "cpu",
            "grid-search",
            "--base",
            &p("base"),
            "--experts",
            &experts,
            "--samples",
            "16",
            "--strategy",
            "learned",
            "--learn-steps",
            "8",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--out".to_string(), p(out)]);
        Command::new(env!("CARGO_BIN_EXE_deme-studio"))
            .args(&args)
            .output()
            .unwrap()
    };
    let out = run(&["--objective", "balanced"], "learned");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("on the validation half"), "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("learned/grid.json")).unwrap())
            .unwrap();
    let points = json["points"].as_array().unwrap();
    // the start and at most 8 steps, every one inside [0, 1]
    assert!((2..=9).contains(&points.len()), "{} points", points.len());
    assert_eq!(points[0]["weights"], serde_json::json!([0.5, 0.5]));
    for pt in points {
        for w in pt["weights"].as_array().unwrap() {
            assert!((0.0..=1.0).contains(&w.as_f64().unwrap()));
        }
    }
    let best = json["best"].as_u64().unwrap() as usize;
    let min = points
        .iter()
        .map(|p| p["score"]["loss"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(points[best]["score"]["loss"].as_f64().unwrap(), min);
    // per block: the best step as block weights that `merge` takes
    let out = run(&["--learn-per-block"], "blocks");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let file = r.join("blocks/block_weights.json");
    let blocks: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let blocks = blocks.as_object().unwrap();
    assert!(
        blocks.contains_key("mid_block") && blocks.len() >= 4,
        "{blocks:?}"
    );
    assert!(blocks.values().all(|v| v.as_array().unwrap().len() == 2));
    let merged = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args(["--device", "cpu", "merge", "--base", &p("base")])
        .args(["--experts", &format!("{},{}", p("e1"), p("e2"))])
        .args([
            "--weights",
            "1,1",
            "--block-weights",
            file.to_str().unwrap(),
        ])
        .args(["--out", &p("merged")])
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    // the Frechet distance has no gradient: refused before any work, and said why
    let out = run(&["--objective", "frechet"], "frechet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("gradient"), "{err}");
    assert!(!r.join("frechet/grid.json").exists());
}

#[test]
fn grid_search_scores_the_lattice_and_the_origin_is_the_base() {
    let root = three_models();
    let r = root.path();
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device",
            "cpu",
            "grid-search",
            "--base",
            &p("base"),
            "--experts",
            &format!("{},{}", p("e1"), p("e2")),
            "--step",
            "0.5",
            "--samples",
            "16",
            "--strategy",
            "exhaustive",
            "--out",
            &p("grid"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let csv = std::fs::read_to_string(r.join("grid/grid.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 9, "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("grid/grid.json")).unwrap()).unwrap();
    let best = json["best"].as_u64().unwrap() as usize;
    let min = rows.iter().map(|r| r[2]).fold(f64::INFINITY, f64::min);
    assert_eq!(rows[best][2], min);
    // w = (0, 0) is the base: its loss is the base loss the command printed
    let origin = rows.iter().find(|r| r[0] == 0.0 && r[1] == 0.0).unwrap();
    let base_line = err
        .lines()
        .find(|l| l.starts_with("base: held-out loss"))
        .unwrap();
    assert!(
        base_line.contains(&format!("{:.5}", origin[2])),
        "{base_line} vs {}",
        origin[2]
    );
    // a bad expert list is one clear error
    let bad = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device",
            "cpu",
            "grid-search",
            "--base",
            &p("base"),
            "--experts",
            &p("nope"),
            "--out",
            &p("g2"),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    // the coordinate strategy: fewer points than the lattice, and its best is
    // the lattice optimum here (the exhaustive run above scored every point)
    let exhaustive_best = rows[best].clone();
    let out = Command::new(env!("CARGO_BIN_EXE_deme-studio"))
        .args([
            "--device",
            "cpu",
            "grid-search",
            "--base",
            &p("base"),
            "--experts",
            &format!("{},{}", p("e1"), p("e2")),
            "--step",
            "0.5",
            "--samples",
            "16",
            "--strategy",
            "coordinate",
            "--out",
            &p("coord"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("coord/grid.json")).unwrap()).unwrap();
    let points = json["points"].as_array().unwrap();
    assert!(points.len() <= 9, "{} points", points.len());
    let best = &points[json["best"].as_u64().unwrap() as usize];
    assert!(
        close(best["score"]["loss"].as_f64().unwrap(), exhaustive_best[2]),
        "{best} vs {exhaustive_best:?}"
    );
}

#[test]
fn cancel_from_the_event_stream_keeps_exactly_the_points_scored() {
    let d = Device::flex();
    let config = common::tiny_config();
    let models: Vec<UNet2DModel> = (0..3)
        .map(|seed| UNet2DModel::new(&config, seed, &d).unwrap())
        .collect();
    let mut merger = Merger::new(
        ("base", &models[0]),
        &[("e1", &models[1]), ("e2", &models[2])],
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let items: Vec<f32> = (0..20 * 64).map(|_| rng.random_range(-1.0..1.0)).collect();
    let val = BatchSampler::new(items, [1, 8, 8], "random");
    let eval = EvalSet::new(
        &val,
        &NoiseSchedule::ddpm(1000),
        EvalSetConfig {
            samples: 8,
            batch_size: 8,
            seed: 3,
        },
        &d,
    )
    .unwrap();
    let spec = GridSpec {
        n: 2,
        lo: 0.0,
        hi: 1.0,
        step: 0.25,
        sum_to_one: false,
    };
    let cancel = CancelToken::new();
    let mut streamed = Vec::new();
    let r = search_merge_weights(
        &mut merger,
        &eval,
        LossObjective::Plain,
        &[[0, 500], [500, 1000]],
        &spec,
        Strategy::Exhaustive,
        &|| !cancel.is_cancelled(),
        &mut |e| {
            if let GridEvent::Point { point, done, .. } = e {
                streamed.push(point);
                if done == 4 {
                    cancel.cancel();
                }
            }
        },
    )
    .unwrap();
    assert!(r.cancelled);
    assert_eq!(r.points, streamed, "exactly the points streamed, in order");
    assert_eq!(r.points.len(), 4, "of 25");
    let min = r
        .points
        .iter()
        .map(|p| p.score.loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(r.best_point().score.loss, min);
    // what grid.json holds reads back whole, marked cancelled (serde_json's
    // parser may land one ulp off the shortest decimal it wrote)
    let json = serde_json::to_string_pretty(&r).unwrap();
    let back: GridResult = serde_json::from_str(&json).unwrap();
    assert!(back.cancelled && json.contains("\"cancelled\": true"));
    assert_eq!((back.best, back.points.len()), (r.best, 4));
    for (b, p) in back.points.iter().zip(&r.points) {
        assert_eq!((&b.weights, b.level), (&p.weights, p.level));
        assert!(close(b.score.loss, p.score.loss), "{b:?} vs {p:?}");
    }
}

/// Equal up to the last bits a decimal round trip may change.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-14 * a.abs().max(b.abs())
}

#[cfg(unix)]
#[test]
fn ctrl_c_writes_the_points_scored_so_far() {
    let root = three_models();
    let r = root.path();
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    // 101 x 101 points: far more than are scored before the signal lands
    let (status, log) = interrupt_when(
        &[
            "--device",
            "cpu",
            "grid-search",
            "--base",
            &p("base"),
            "--experts",
            &format!("{},{}", p("e1"), p("e2")),
            "--step",
            "0.01",
            "--samples",
            "8",
            "--strategy",
            "exhaustive",
            "--out",
            &p("grid"),
        ],
        "grid: ",
    );
    assert!(
        !status.success(),
        "a cancelled search exits non-zero:\n{log}"
    );
    let errors: Vec<&str> = log.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{log}");
    assert!(errors[0].contains("cancelled after"), "{log}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(r.join("grid/grid.json")).unwrap()).unwrap();
    assert_eq!(json["cancelled"], true);
    let points = json["points"].as_array().unwrap();
    assert!(
        !points.is_empty() && points.len() < 101 * 101,
        "{}",
        points.len()
    );
    let csv = std::fs::read_to_string(r.join("grid/grid.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), points.len(), "the table and grid.json agree");
    for (row, point) in rows.iter().zip(points) {
        assert_eq!(row[0], point["weights"][0].as_f64().unwrap());
        assert!(close(row[2], point["score"]["loss"].as_f64().unwrap()));
    }
    assert!(errors[0].contains(&format!("after {} points", points.len())));
    // written by rename: nothing half-written is left beside them
    let mut names: Vec<String> = std::fs::read_dir(r.join("grid"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["grid.csv", "grid.json"]);
}

#[test]
fn the_sample_metric_can_score_the_merges_on_the_lattice_and_by_cmaes() {
    let root = three_models();
    let r = root.path();
    let p = |n: &str| r.join(n).to_str().unwrap().to_string();
    let search = |strategy: &[&str], out: &str| {
        Command::new(env!("CARGO_BIN_EXE_deme-studio"))
            .env("XDG_CACHE_HOME", r.join("cache"))
            .args([
                "--device",
                "cpu",
                "grid-search",
                "--base",
                &p("base"),
                "--experts",
                &format!("{},{}", p("e1"), p("e2")),
                "--objective",
                "frechet",
                "--metric-samples",
                "8",
                "--metric-steps",
                "2",
                "--feature-steps",
                "5",
                "--samples",
                "8",
            ])
            .args(strategy)
            .args(["--out", &p(out)])
            .output()
            .unwrap()
    };
    let out = search(&["--step", "0.5", "--strategy", "exhaustive"], "fd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let read = |out: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(r.join(out).join("grid.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    let json = read("fd");
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 9);
    let fd = |pt: &serde_json::Value| pt["score"]["loss"].as_f64().unwrap();
    assert!(points.iter().all(|pt| fd(pt).is_finite() && fd(pt) >= 0.0));
    // w = (0, 0) is the base: the same images, so the distance the command
    // printed for the base
    let origin = points
        .iter()
        .find(|pt| pt["weights"][0] == 0.0 && pt["weights"][1] == 0.0)
        .unwrap();
    let line = err
        .lines()
        .find(|l| l.starts_with("base: Frechet distance"))
        .unwrap();
    assert!(
        line.contains(&format!("{:.3}", fd(origin))),
        "{line} vs {}",
        fd(origin)
    );
    // different weights give different images, so the objective has teeth
    assert!(points.iter().any(|pt| (fd(pt) - fd(origin)).abs() > 1e-6));
    // CMA-ES needs no gradient: it samples weights off the lattice, inside the
    // bounds, within its budget, and keeps the best one it scored
    let out = search(&["--strategy", "cmaes", "--cmaes-evals", "12"], "cmaes");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let json = read("cmaes");
    let points = json["points"].as_array().unwrap();
    assert!((2..=12).contains(&points.len()), "{} points", points.len());
    let weights: Vec<f64> = points
        .iter()
        .flat_map(|pt| pt["weights"].as_array().unwrap().clone())
        .map(|w| w.as_f64().unwrap())
        .collect();
    assert!(weights.iter().all(|w| (0.0..=1.0).contains(w)));
    assert!(
        weights
            .iter()
            .any(|w| ((w * 10.0).round() - w * 10.0).abs() > 1e-6)
    );
    let min = points.iter().map(fd).fold(f64::INFINITY, f64::min);
    assert_eq!(fd(&points[json["best"].as_u64().unwrap() as usize]), min);
}
