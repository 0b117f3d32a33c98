//! The Train view's "Gradient conflicts at each checkpoint" driven through
//! egui_kittest on toy data with the toy MLP: a short pretrain with the option
//! on leaves the Gradient-conflicts view holding the matrices of its last
//! checkpoint, captioned with the run and step, drawn without pressing Compute;
//! a two-expert finetune sends those of the first expert only.

use crate::common;
use common::app::{train_app, wait_until_within};
use common::save_toy_base;

use deme_studio::app::gradsim::HEATMAP_LABEL;
use deme_studio::app::train::form::{GRADSIM_LIVE_LABEL, TrainMode};
use deme_studio::app::{StudioApp, View};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::time::Duration;

#[test]
fn pretrain_sends_each_checkpoints_gradient_conflicts_to_the_view() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("base");
    let mut h = train_app();
    h.step();
    {
        let g = h.state_mut().gradsim_mut();
        g.k = 6;
        g.batches = 1;
        g.batch_size = 8;
    }
    let f = &mut h.state_mut().train_mut().form;
    f.mode = TrainMode::Pretrain;
    f.data = "toy:moons".into();
    f.model = "toy-mlp".into();
    f.out = out.display().to_string();
    f.toy_points = 2000;
    f.pretrain.steps = 24;
    f.pretrain.batch_size = 64;
    f.pretrain.warmup_steps = 0;
    f.pretrain.checkpoint_every = 8;
    f.preview.enabled = false;
    h.step();
    // the option is in the (collapsed) data section of the settings
    assert!(h.query_by_label(GRADSIM_LIVE_LABEL).is_none());
    h.get_by_label("Data and previews").click();
    h.step();
    h.get_by_label(GRADSIM_LIVE_LABEL).click();
    h.step();
    assert!(h.state().train().form.gradsim_live);
    h.get_by_label_contains("of the pretrain run");
    h.step();
    start_and_finish(&mut h);
    assert!(
        h.state().train().notes().is_empty(),
        "{:?}",
        h.state().train().notes()
    );

    let g = h.state().gradsim();
    assert!(!g.is_running(), "Compute was never pressed");
    assert_eq!(g.source(), Some("training run pretrain, step 24"));
    let r = g.result().expect("a live result").clone();
    let k = r.k();
    assert_eq!(k, 6);
    assert_eq!(r.cosine.len(), k * k);
    for i in 0..k {
        assert!((r.cosine[i * k + i] - 1.0).abs() < 1e-6, "diagonal {i}");
        for j in 0..k {
            let (a, b) = (r.cosine[i * k + j], r.cosine[j * k + i]);
            assert!((a - b).abs() < 1e-9, "({i}, {j}): {a} vs {b}");
            assert!((-1.0 - 1e-9..=1.0 + 1e-9).contains(&a));
        }
    }
    assert!(r.timesteps.iter().all(|&t| t < 1000));

    // the view shows it without Compute, captioned with its source
    h.state_mut().set_view(View::GradientConflicts);
    h.step();
    h.step();
    h.get_by_label(HEATMAP_LABEL);
    h.get_by_label_contains("training run pretrain, step 24");
    assert!(h.query_by_label_contains("Press Compute").is_none());
}

#[test]
fn finetune_sends_the_first_experts_gradient_conflicts() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    save_toy_base(&base);
    let mut h = train_app();
    h.step();
    let f = &mut h.state_mut().train_mut().form;
    f.mode = TrainMode::Finetune;
    f.base = base.display().to_string();
    f.data = "toy:moons".into();
    f.out = tmp.path().join("deme").display().to_string();
    f.toy_points = 2000;
    f.finetune.experts = 2;
    // interleaved: the second expert checkpoints after the first, and must not show
    f.finetune.steps_per_expert = 6;
    f.finetune.batch_size = 32;
    f.finetune.checkpoint_every = 3;
    f.preview.enabled = false;
    f.gradsim_live = true;
    h.step();
    start_and_finish(&mut h);
    assert_eq!(h.state().train().error, None);
    let g = h.state().gradsim();
    assert_eq!(g.source(), Some("training run expert_1, step 6"));
    let r = g.result().expect("a live result");
    assert_eq!(r.k(), 10, "the view's default K");
    assert_eq!(
        r.config.batch_size,
        deme_studio::app::gradsim::GradSimState::default().batch_size,
        "the view's default batch size"
    );
    h.state_mut().set_view(View::GradientConflicts);
    h.step();
    h.step();
    h.get_by_label(HEATMAP_LABEL);
    h.get_by_label_contains("training run expert_1, step 6");
}

/// Presses Start and steps until the job has ended, with its thread ended cleanly.
fn start_and_finish(h: &mut Harness<'_, StudioApp>) {
    h.get_by_label("Start").click();
    h.step();
    wait_until_within(h, "the job to end", Duration::from_secs(120), |a| {
        !a.train().is_running()
    });
    assert_eq!(h.state().train().thread_ended_cleanly(), Some(true));
}
