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
        ..ReplicateConfig::default()
    };
    c.finetune.experts = 2;
    c.finetune.steps_per_expert = 2;
    c.finetune.batch_size = 4;
    c.finetune.checkpoint_every = 100;
    c
}

#[test]
fn replicate_runs_every_stage_and_resumes_to_the_same_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = Device::flex();
    let config = tiny_config();
    let base_dir = dir.path().join("base");
    save_unet(
        &base_dir,
        config.clone(),
        UNet2DModel::new(&config, 5, &d).unwrap(),
    );
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
    assert!(
        [0.0, 0.5, 1.0].contains(&report.scale_alpha),
        "{}",
        report.scale_alpha
    );
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
        assert!(out.join(row.grid_png.as_ref().unwrap()).exists());
    }
    // the search scored the lattice {0, 0.5, 1}^2 at least partly, and picked its best
    assert!(report.search_points >= 4, "{}", report.search_points);
    assert_eq!(report.weights.len(), 2);
    for f in [
        "report.md",
        "report.json",
        "search.json",
        "merged/recipe.json",
        "plain-finetune-scaled/recipe.json",
    ] {
        assert!(out.join(f).exists(), "missing {f}");
    }
    for f in ["deme/expert_1", "deme/expert_2", "deme/baseline"] {
        assert!(
            out.join(f)
                .join("diffusion_pytorch_model.safetensors")
                .exists()
        );
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| Before finetuning (pretrained) |"));
    assert!(md.contains("merged vs pretrained"));
    assert!(stages.iter().any(|s| s.starts_with("finetuning")));

    // again: the finished runs are found, nothing is retrained, the numbers repeat
    let mut stages = Vec::new();
    let again = replicate(&run, &out, &d, &CancelToken::new(), &mut |e| {
        if let ReplicateEvent::Stage(s) = e {
            stages.push(s)
        }
    })
    .unwrap();
    assert!(
        stages.iter().any(|s| s.starts_with("resuming")),
        "{stages:?}"
    );
    assert_eq!(again.rows, report.rows);
    assert_eq!(again.weights, report.weights);
}

#[test]
fn a_lattice_of_the_wrong_size_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = tiny_run(&dir.path().join("missing"), dir.path());
    run.grid.n = 3;
    let err = replicate(
        &run,
        dir.path(),
        &Device::flex(),
        &CancelToken::new(),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("3 weights but there are 2 experts"), "{err}");
}
