//! The Train view driven through egui_kittest on toy data with the toy MLP:
//! a pretrain from Start to its checkpoint with loss points, previews and the
//! CSV / PNG exports; Cancel leaving a resumable checkpoint; Pause holding the
//! step count and Step taking exactly one; bad settings shown as errors with
//! no thread panicking; a two-expert finetune with both curves and folders.

use crate::common;
use common::app::{train_app, wait_until_within};
use common::save_toy_base;

use deme_studio::app::train::form::TrainMode;
use deme_studio::app::train::{CSV_NAME, PNG_NAME, RunStatus};
use deme_studio::app::{StudioApp, View};
use deme_studio::engine::store::{TRAIN_STATE_FILE, WEIGHTS_FILE};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_until(h: &mut Harness<'_, StudioApp>, what: &str, cond: impl Fn(&StudioApp) -> bool) {
    wait_until_within(h, what, Duration::from_secs(120), cond);
}

/// Steps the UI for `d` (the thread keeps running meanwhile, unless held).
fn idle(h: &mut Harness<'_, StudioApp>, d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        h.step();
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn click(h: &mut Harness<'_, StudioApp>, label: &str) {
    h.get_by_label(label).click();
    h.step();
}

/// A toy pretrain of `steps` steps into `out`.
fn toy_pretrain(h: &mut Harness<'_, StudioApp>, out: &Path, steps: u64) {
    h.step();
    let f = &mut h.state_mut().train_mut().form;
    f.mode = TrainMode::Pretrain;
    f.data = "toy:moons".into();
    f.model = "toy-mlp".into();
    f.out = out.display().to_string();
    f.toy_points = 2000;
    f.pretrain.steps = steps;
    f.pretrain.batch_size = 64;
    f.pretrain.warmup_steps = 0;
    f.pretrain.checkpoint_every = 10;
    f.preview.samples = 2;
    f.preview.steps = 4;
}

fn finish(h: &mut Harness<'_, StudioApp>) {
    wait_until(h, "the job to end", |a| !a.train().is_running());
    assert_eq!(h.state().train().thread_ended_cleanly(), Some(true));
}

#[test]
fn pretrain_streams_losses_previews_and_saves_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("base");
    let mut h = train_app();
    h.step();
    h.get_by_label_contains("press Start");
    toy_pretrain(&mut h, &out, 30);
    click(&mut h, "Start");
    assert!(h.state().train().is_running());
    finish(&mut h);
    let t = h.state().train();
    assert_eq!(t.error, None);
    let o = t.outcome().expect("an outcome");
    assert!(!o.cancelled);
    assert_eq!(t.runs().len(), 1);
    let run = &t.runs()[0];
    assert_eq!(run.status, RunStatus::Done);
    assert_eq!(run.points.len(), 30);
    assert_eq!(run.points.last().unwrap().step, 30);
    assert!(
        run.points
            .iter()
            .all(|p| p.loss.is_finite() && p.loss > 0.0)
    );
    assert_eq!(run.checkpoint.as_ref().map(|c| c.0), Some(30));
    assert_eq!(run.preview.as_ref().map(|p| p.0), Some(30));
    assert!(run.preview.as_ref().unwrap().1.samples.are_points());
    assert!(out.join(WEIGHTS_FILE).is_file());
    assert!(out.join(TRAIN_STATE_FILE).is_file());
    assert!(h.query_all_by_label_contains("finished: saved").count() >= 1);
    h.get_by_label("30 / 30");
    h.get_by_label_contains("pretrain · step 30");
    h.get_by_label("Finetune this base");
    // exports
    click(&mut h, "Export CSV");
    wait_until(&mut h, "the CSV export", |a| !a.train().export.is_running());
    let csv = std::fs::read_to_string(out.join(CSV_NAME)).unwrap();
    assert_eq!(csv.lines().count(), 31, "{csv}");
    assert!(
        csv.lines()
            .nth(30)
            .unwrap()
            .starts_with("pretrain,0,1000,30,")
    );
    click(&mut h, "Export PNG");
    wait_until(&mut h, "the PNG export", |a| !a.train().export.is_running());
    let png = image::open(out.join(PNG_NAME)).unwrap();
    assert_eq!((png.width(), png.height()), (900, 500));
    h.get_by_label_contains("wrote");
    // the new base goes straight to the finetune form
    click(&mut h, "Finetune this base");
    let f = &h.state().train().form;
    assert_eq!(f.mode, TrainMode::Finetune);
    assert_eq!(Path::new(&f.base), out);
}

#[test]
fn cancel_stops_the_thread_and_leaves_a_resumable_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("base");
    let mut h = train_app();
    toy_pretrain(&mut h, &out, 1_000_000);
    h.state_mut().train_mut().form.pretrain.checkpoint_every = 1_000_000;
    click(&mut h, "Start");
    wait_until(&mut h, "a few steps", |a| a.train().steps_done() >= 3);
    click(&mut h, "Cancel");
    finish(&mut h);
    let t = h.state().train();
    assert_eq!(t.error, None);
    assert!(t.outcome().unwrap().cancelled);
    let run = &t.runs()[0];
    assert_eq!(run.status, RunStatus::Cancelled);
    let (step, dir) = run.checkpoint.clone().expect("a checkpoint on cancel");
    assert_eq!(step, run.done);
    assert!(step >= 3);
    assert_eq!(dir, out);
    assert!(out.join(TRAIN_STATE_FILE).is_file());
    assert!(
        h.query_all_by_label_contains("cancelled: every started run was saved")
            .count()
            >= 1
    );
    // resume continues from the step saved
    let f = &mut h.state_mut().train_mut().form;
    f.resume = true;
    f.pretrain.steps = step + 2;
    click(&mut h, "Start");
    finish(&mut h);
    let t = h.state().train();
    assert_eq!(t.error, None);
    let run = &t.runs()[0];
    assert_eq!(run.points.first().map(|p| p.step), Some(step + 1));
    assert_eq!(run.done, step + 2);
}

#[test]
fn pause_holds_the_step_count_and_step_takes_exactly_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = train_app();
    toy_pretrain(&mut h, &tmp.path().join("base"), 1_000_000);
    h.state_mut().train_mut().form.pretrain.checkpoint_every = 1_000_000;
    click(&mut h, "Start");
    wait_until(&mut h, "a few steps", |a| a.train().steps_done() >= 2);
    click(&mut h, "Pause");
    wait_until(&mut h, "the thread to hold", |a| a.train().is_held());
    h.get_by_label("paused");
    let n = h.state().train().steps_done();
    idle(&mut h, Duration::from_millis(1500));
    assert_eq!(h.state().train().steps_done(), n, "no step while paused");
    assert!(h.state().train().is_held());
    click(&mut h, "Step");
    wait_until(&mut h, "one step and the hold", |a| {
        a.train().steps_done() > n && a.train().is_held()
    });
    idle(&mut h, Duration::from_millis(1500));
    assert_eq!(h.state().train().steps_done(), n + 1, "exactly one step");
    click(&mut h, "Resume");
    wait_until(&mut h, "steps after resuming", |a| {
        a.train().steps_done() > n + 3
    });
    assert!(!h.state().train().is_held());
    // cancel while paused ends the thread too
    click(&mut h, "Pause");
    wait_until(&mut h, "the thread to hold", |a| a.train().is_held());
    click(&mut h, "Cancel");
    finish(&mut h);
    assert!(h.state().train().outcome().unwrap().cancelled);
}

#[test]
fn bad_settings_show_an_error_and_no_thread_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = train_app();
    toy_pretrain(&mut h, &tmp.path().join("base"), 10);
    h.state_mut().train_mut().form.pretrain.batch_size = 0;
    click(&mut h, "Start");
    assert!(!h.state().train().is_running());
    let e = h.state().train().error.clone().expect("an error");
    assert!(e.contains("batch size"), "{e}");
    h.step();
    h.get_by_label(&e);
    // a base folder that does not exist
    let f = &mut h.state_mut().train_mut().form;
    f.mode = TrainMode::Finetune;
    f.base = tmp.path().join("missing").display().to_string();
    click(&mut h, "Start");
    assert!(!h.state().train().is_running());
    let e = h.state().train().error.clone().unwrap();
    assert!(e.contains("not a model folder"), "{e}");
    // a mismatch only the thread finds: points for an image model
    let f = &mut h.state_mut().train_mut().form;
    f.mode = TrainMode::Pretrain;
    f.pretrain.batch_size = 8;
    f.model = "mnist-tiny".into();
    click(&mut h, "Start");
    finish(&mut h);
    let e = h
        .state()
        .train()
        .error
        .clone()
        .expect("an error from the thread");
    assert!(e.contains("2D points"), "{e}");
    h.step();
    h.get_by_label(&e);
    assert!(h.state().notice().is_some_and(|n| n.error));
}

#[test]
fn finetune_of_two_experts_shows_both_curves_and_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    save_toy_base(&base);
    let out = tmp.path().join("deme");
    let mut h = train_app();
    h.step();
    let f = &mut h.state_mut().train_mut().form;
    f.mode = TrainMode::Finetune;
    f.base = base.display().to_string();
    f.data = "toy:moons".into();
    f.out = out.display().to_string();
    f.toy_points = 2000;
    f.finetune.experts = 2;
    f.finetune.steps_per_expert = 5;
    f.finetune.batch_size = 32;
    f.finetune.checkpoint_every = 5;
    f.preview.samples = 2;
    f.preview.steps = 4;
    click(&mut h, "Start");
    finish(&mut h);
    let t = h.state().train();
    assert_eq!(t.error, None);
    // projection is on by default and does not apply to the MLP
    assert!(
        t.notes().iter().any(|n| n.contains("projection")),
        "{:?}",
        t.notes()
    );
    assert_eq!(t.runs().len(), 2);
    for (k, r) in t.runs().iter().enumerate() {
        assert_eq!(r.label(), format!("expert_{}", k + 1));
        assert_eq!(r.plan.range, [k * 500, (k + 1) * 500]);
        assert_eq!(r.status, RunStatus::Done);
        assert_eq!(r.points.len(), 5);
        assert!(
            r.points
                .iter()
                .all(|p| p.eps.is_some() && p.consistency.is_some())
        );
        assert!(r.preview.is_some());
        assert!(
            out.join(format!("expert_{}", k + 1))
                .join(WEIGHTS_FILE)
                .is_file()
        );
        h.get_by_label(&format!("[{}, {})", k * 500, (k + 1) * 500));
    }
    assert_eq!(t.steps_done(), 10);
    let set = t.outcome().unwrap().set.clone().expect("a model set");
    assert_eq!(set.base, base);
    assert_eq!(set.experts.len(), 2);
    assert_eq!(h.query_all_by_label("5 / 5").count(), 2);
    assert!(h.query_all_by_label_contains("finished: 2 experts").count() >= 1);
    click(&mut h, "Open in merge view");
    assert_eq!(h.state().view(), View::Merge);
}
