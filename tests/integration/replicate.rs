//! `replicate` end to end at a tiny size: every stage runs, the report holds the
//! five rows, the comparisons and its files, and a second run resumes to the same numbers.

use crate::common;

use burn::tensor::Device;
use common::{save_unet, tiny_config};
use deme_studio::engine::data::DataSpec;
use deme_studio::engine::model::UNet2DModel;
use deme_studio::engine::replicate::{BaseSource, ReplicateConfig, ReplicateEvent, replicate};
use deme_studio::engine::search::{GridSpec, Strategy};
use deme_studio::engine::train::CancelToken;

fn tiny_run(base: &std::path::Path, cache: &std::path::Path) -> ReplicateConfig {
    let mut c = ReplicateConfig {
        data: DataSpec::Mnist,
        base: BaseSource::Load(base.to_path_buf()),
        grid: GridSpec {
            n: 2,
            lo: 0.0,
            hi: 1.0,
            step: 0.5,
            sum_to_one: false,
        },
        strategy: Strategy::Refine { keep: 1 },
        search_samples: 16,
        report_samples: 16,
        metric_samples: 12,
        metric_ddim_steps: 2,
        metric_feature_steps: 30,
        metric_cache_dir: Some(cache.to_path_buf()),
        grid_images: 4,
        // enough to check the intervals' mechanics; the report's default is 200
        resamples: 20,
        ..ReplicateConfig::default()
    };
    c.finetune.experts = 2;
    c.finetune.steps_per_expert = 2;
    c.finetune.batch_size = 4;
    c.finetune.checkpoint_every = 100;
    c
}

/// A random tiny UNet saved as `dir/base`.
fn tiny_base(dir: &std::path::Path) -> std::path::PathBuf {
    let config = tiny_config();
    let base_dir = dir.join("base");
    save_unet(
        &base_dir,
        config.clone(),
        UNet2DModel::new(&config, 5, &Device::flex()).unwrap(),
    );
    base_dir
}

#[test]
fn replicate_runs_every_stage_and_resumes_to_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = Device::flex();
    let base_dir = tiny_base(dir.path());
    let out = dir.path().join("report");
    let run = tiny_run(&base_dir, &dir.path().join("cache"));
    let mut stages = Vec::new();
    let report = replicate(&run, &out, &d, &CancelToken::new(), &mut |e| {
        if let ReplicateEvent::Stage(s) = e {
            stages.push(s)
        }
    })
    .unwrap();

    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pretrained",
            "plain-finetune",
            "plain-finetune-scaled",
            "ensemble",
            "merged"
        ]
    );
    // the control's scale comes from the same lattice, {0, 0.5, 1}
    let search = &report.searches[0];
    assert_eq!(search.seed, 0);
    assert!([0.0, 0.5, 1.0].contains(&search.alpha), "{}", search.alpha);
    // the merge against every other row, with intervals that hold their estimates
    let others: Vec<&str> = report
        .comparisons
        .iter()
        .map(|c| c.other.as_str())
        .collect();
    assert_eq!(others, &names[..4]);
    for c in &report.comparisons {
        let i = c.loss.interval;
        assert!(i.lo <= i.estimate && i.estimate <= i.hi, "{c:?}");
        assert_eq!(c.loss_per_range.len(), 2);
        assert!(c.frechet.is_some(), "{c:?}");
    }
    assert_eq!(report.ranges, vec![[0, 500], [500, 1000]]);
    for row in &report.rows {
        assert!(row.loss.is_finite() && row.loss > 0.0, "{row:?}");
        assert_eq!(row.loss_per_range.len(), 2);
        let f = row.frechet.expect("every row has a sample metric");
        assert!(f.is_finite() && f >= 0.0);
        let labels = row.labels.as_ref().expect("every row has its class labels");
        assert_eq!(labels.images, 12);
        assert_eq!(labels.histogram.iter().sum::<usize>(), 12);
        assert!(out.join(row.grid_png.as_ref().unwrap()).exists());
    }
    // the search scored the lattice {0, 0.5, 1}^2 at least partly, and picked its best
    assert!(search.points >= 4, "{}", search.points);
    assert_eq!(search.weights.len(), 2);
    for f in [
        "report.md",
        "report.json",
        "seed-0/merged.search.json",
        "seed-0/merged/recipe.json",
        "seed-0/plain-finetune-scaled/recipe.json",
        "measurements/pretrained.json",
        "seed-0/measurements/merged.json",
        "seed-0/measurements/merged.safetensors",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    for f in [
        "seed-0/deme/expert_1",
        "seed-0/deme/expert_2",
        "seed-0/deme/baseline",
    ] {
        assert!(
            out.join(f)
                .join("diffusion_pytorch_model.safetensors")
                .exists()
        );
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| Before finetuning (pretrained) |"));
    assert!(md.contains("merged vs pretrained"));
    assert!(md.contains("| Held-out real images |"), "{md}");
    // the random base has no training metadata: no budget line
    assert_eq!(report.budget.base_images, None);
    assert!(stages.iter().any(|s| s.starts_with("seed 0: finetuning")));

    // again, the models still there: the finished unit is read back, nothing is
    // retrained, the numbers repeat and its recorded times are kept, not replaced
    // by the read-back's
    let record = out.join("seed-0/units/main.json");
    let recorded = std::fs::read(&record).unwrap();
    let mut events = Vec::new();
    let again = replicate(&run, &out, &d, &CancelToken::new(), &mut |e| match e {
        ReplicateEvent::Stage(s) | ReplicateEvent::Note(s) => events.push(s),
        ReplicateEvent::Finetune(_) => events.push("trained".into()),
        _ => {}
    })
    .unwrap();
    assert!(!events.iter().any(|e| e == "trained"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|s| s == "seed 0: the main job was measured before; read back"),
        "{events:?}"
    );
    assert_eq!(std::fs::read(&record).unwrap(), recorded);
    assert_eq!(again.rows, report.rows);
    assert_eq!(again.searches, report.searches);
    assert_eq!(again.comparisons, report.comparisons);
    assert_eq!(again.seconds.finetune, report.seconds.finetune);
    assert_eq!(again.seconds.search, report.seconds.search);
}

#[test]
fn seeds_and_arms_each_get_their_runs_rows_and_intervals() {
    use deme_studio::engine::replicate::arms;
    let dir = tempfile::tempdir().unwrap();
    let d = Device::flex();
    let base_dir = tiny_base(dir.path());
    let out = dir.path().join("report");
    let mut run = tiny_run(&base_dir, &dir.path().join("cache"));
    run.seeds = vec![3, 4];
    run.arms = vec![
        // N = 1: one expert, merged by a searched weight
        arms::ablations(&run.finetune)[0].clone(),
        // Min-SNR: a plain run with its own loss weighting
        arms::reweighting(&run.finetune)[0].clone(),
    ];
    let report = replicate(&run, &out, &d, &CancelToken::new(), &mut |_| {}).unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "pretrained",
            "plain-finetune",
            "plain-finetune-scaled",
            "ablation-n1",
            "min-snr",
            "ensemble",
            "merged"
        ]
    );
    let seeds: Vec<u64> = report.searches.iter().map(|s| s.seed).collect();
    assert_eq!(seeds, [3, 4]);
    for s in &report.searches {
        assert_eq!(s.arm_weights.len(), 1);
        assert_eq!(s.arm_weights[0].0, "ablation-n1");
        assert_eq!(s.arm_weights[0].1.len(), 1);
    }
    for row in &report.rows {
        assert_eq!(row.loss_per_seed.len(), 2, "{row:?}");
        let mean = row.loss_per_seed.iter().sum::<f64>() / 2.0;
        assert!((row.loss - mean).abs() < 1e-12);
    }
    // the pretrained model is one model: the same measurement for both seeds
    let pre = report.row("pretrained").unwrap();
    assert_eq!(pre.loss_per_seed[0], pre.loss_per_seed[1]);
    // two seeds that trained differently: the plain finetunes differ
    let plain = report.row("plain-finetune").unwrap();
    assert_ne!(plain.loss_per_seed[0], plain.loss_per_seed[1]);
    assert_eq!(report.comparisons.len(), 6);
    for f in [
        "seed-3/arms/ablation-n1/deme/expert_1",
        "seed-4/arms/ablation-n1/merged",
        "seed-4/arms/min-snr/deme/baseline",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    let meta =
        std::fs::read_to_string(out.join("seed-4/arms/min-snr/deme/baseline/deme.json")).unwrap();
    assert!(meta.contains("min-snr"), "{meta}");

    // the models' weights dropped (a report folder kept in a repository): every unit
    // is read back from its measurements and records, nothing trains, the report repeats,
    // and a pair of rows asked for is compared from what was read back
    let dropped = drop_weights(&out);
    assert!(dropped >= 2 * 8, "{dropped} weight files");
    let mut asked = run.clone();
    asked.compare = vec![["ablation-n1".into(), "plain-finetune".into()]];
    let mut events = Vec::new();
    let again = replicate(&asked, &out, &d, &CancelToken::new(), &mut |e| match e {
        ReplicateEvent::Stage(s) | ReplicateEvent::Note(s) => events.push(s),
        ReplicateEvent::Finetune(_) => events.push("trained".into()),
        _ => {}
    })
    .unwrap();
    assert!(!events.iter().any(|e| e == "trained"), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| e.ends_with("read back")).count(),
        2 * 3,
        "{events:?}"
    );
    assert_eq!(again.rows, report.rows);
    assert_eq!(again.searches, report.searches);
    assert_eq!(again.comparisons[..6], report.comparisons[..]);
    assert_eq!(again.seconds.finetune, report.seconds.finetune);
    let pair = &again.comparisons[6];
    assert_eq!(
        (pair.subject.as_str(), pair.other.as_str()),
        ("ablation-n1", "plain-finetune")
    );
    let (n1, plain) = (
        again.row("ablation-n1").unwrap(),
        again.row("plain-finetune").unwrap(),
    );
    assert!(
        (pair.loss.interval.estimate - (n1.loss - plain.loss)).abs() < 1e-12,
        "{pair:?}"
    );
    assert_eq!(pair.other_loss, plain.loss);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("- ablation-n1 vs plain-finetune: held-out loss"),
        "{md}"
    );
    assert!(
        md.contains("Each difference is the first model minus the second"),
        "{md}"
    );

    // one unit's measurement lost: that unit alone is trained and measured again
    std::fs::remove_file(out.join("seed-4/measurements/min-snr.json")).unwrap();
    let mut stages = Vec::new();
    let third = replicate(&run, &out, &d, &CancelToken::new(), &mut |e| {
        if let ReplicateEvent::Stage(s) = e {
            stages.push(s)
        }
    })
    .unwrap();
    let trained: Vec<&String> = stages.iter().filter(|s| s.contains(" x ")).collect();
    assert_eq!(trained.len(), 1, "{stages:?}");
    assert!(trained[0].starts_with("seed 4, min-snr: "), "{stages:?}");
    assert_eq!(third.rows.len(), report.rows.len());
    // a folder of another base's replication is refused before anything is overwritten
    let other_base = dir.path().join("other-base");
    save_unet(
        &other_base,
        tiny_config(),
        UNet2DModel::new(&tiny_config(), 6, &Device::flex()).unwrap(),
    );
    let before = std::fs::read(out.join("measurements/pretrained.safetensors")).unwrap();
    let other = ReplicateConfig {
        base: BaseSource::Load(other_base),
        ..run.clone()
    };
    let err = replicate(&other, &out, &d, &CancelToken::new(), &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("another base"), "{err:#}");
    assert_eq!(
        std::fs::read(out.join("measurements/pretrained.safetensors")).unwrap(),
        before
    );
}

/// Deletes every model's weights and training state under `dir`; returns how many files.
fn drop_weights(dir: &std::path::Path) -> usize {
    let mut dropped = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            dropped += drop_weights(&path);
        } else if path.file_name().is_some_and(|n| {
            n == "diffusion_pytorch_model.safetensors" || n == "train_state.safetensors"
        }) {
            std::fs::remove_file(&path).unwrap();
            dropped += 1;
        }
    }
    dropped
}

/// The error `replicate` stops `run` with (writing into `out`).
fn refusal(run: &ReplicateConfig, out: &std::path::Path) -> String {
    replicate(run, out, &Device::flex(), &CancelToken::new(), &mut |_| {})
        .unwrap_err()
        .to_string()
}

#[test]
fn a_lattice_of_the_wrong_size_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = tiny_run(&dir.path().join("missing"), dir.path());
    run.grid.n = 3;
    let err = refusal(&run, dir.path());
    assert!(err.contains("3 weights but there are 2 experts"), "{err}");
}

#[test]
fn a_pair_naming_no_row_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = tiny_run(&dir.path().join("missing"), dir.path());
    let out = dir.path().join("report");
    run.compare = vec![["ablation-n1".into(), "plain-finetune".into()]];
    let err = refusal(&run, &out);
    assert!(
        err.contains("`ablation-n1` (in --compare ablation-n1:plain-finetune) is not a row")
            && err.contains("pretrained, plain-finetune, plain-finetune-scaled, ensemble, merged"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written before the check");
    run.compare = vec![["merged".into(), "merged".into()]];
    let err = refusal(&run, &out);
    assert!(err.contains("compares a row with itself"), "{err}");
}
