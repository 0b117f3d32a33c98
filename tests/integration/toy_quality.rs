//! Sample quality of the Teaching view's toy diffusion with its default
//! settings: the clouds drawn after a run must lie on the data.
//!
//! The metric (the same as `bench/toy_reference.py`'s) compares 1000 samples
//! with 2000 fresh data points in the model's standardised coordinates:
//! `precision` is the fraction of samples within 0.1 of a data point,
//! `coverage` the fraction of data points within 0.1 of a sample. Data
//! against data scores about 0.98 / 0.95 on two moons.

use burn::tensor::Device;
use deme_studio::app::job_slot::Sink;
use deme_studio::app::teaching::config::{
    Point, Stage, TeachingConfig, TeachingJob, TeachingUpdate,
};
use deme_studio::app::teaching::run_teaching;
use deme_studio::engine::data::{ToyKind, sample_toy};
use deme_studio::engine::train::CancelToken;

/// Distance under which a point counts as on the other set.
const RADIUS: f32 = 0.1;

/// Fresh data points (not the training seed).
fn reference(kind: ToyKind, n: usize) -> Vec<Point> {
    sample_toy(kind, n, 12345)
        .points
        .chunks_exact(2)
        .map(|p| [p[0], p[1]])
        .collect()
}

fn nearest(p: Point, set: &[Point]) -> f32 {
    set.iter()
        .map(|q| (p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2))
        .fold(f32::INFINITY, f32::min)
        .sqrt()
}

/// `(precision, coverage)` of `samples` against `data`.
fn quality(samples: &[Point], data: &[Point]) -> (f64, f64) {
    let within = |from: &[Point], to: &[Point]| {
        from.iter().filter(|&&p| nearest(p, to) < RADIUS).count() as f64 / from.len() as f64
    };
    (within(samples, data), within(data, samples))
}

/// The last sample cloud of each stage of a default run on `kind`.
fn default_run(kind: ToyKind) -> (Vec<Point>, Vec<Point>) {
    let root = tempfile::tempdir().unwrap();
    let config = TeachingConfig {
        data: kind,
        ..TeachingConfig::new(root.path().to_path_buf())
    };
    assert_eq!(
        config.samples, 1000,
        "the metric's thresholds assume 1000 samples"
    );
    let job = TeachingJob {
        config,
        cancel: CancelToken::new(),
        sink: Sink::discard(),
    };
    let (mut base, mut experts) = (Vec::new(), Vec::new());
    run_teaching(&job, &Device::flex(), &mut |u| {
        if let TeachingUpdate::Samples(c) = u {
            match c.stage {
                Stage::Base => base = c.points.to_vec(),
                Stage::Experts => experts = c.points.to_vec(),
            }
        }
    })
    .unwrap();
    (base, experts)
}

/// The smallest set of [`CELL`]-wide grid cells over `[-4, 4]²` that holds 90 %
/// of the data's mass (from a histogram of 200 000 fresh points).
struct Region {
    mask: Vec<bool>,
}

const CELL: f32 = 0.1;
const BINS: usize = 80;

fn cell(p: Point) -> Option<usize> {
    let i = ((p[0] + 4.0) / CELL).floor();
    let j = ((p[1] + 4.0) / CELL).floor();
    let ok = (0.0..BINS as f32).contains(&i) && (0.0..BINS as f32).contains(&j);
    ok.then(|| i as usize * BINS + j as usize)
}

impl Region {
    fn new(kind: ToyKind) -> Self {
        let n = 200_000;
        let mut counts = vec![0usize; BINS * BINS];
        for p in sample_toy(kind, n, 4242).points.chunks_exact(2) {
            if let Some(c) = cell([p[0], p[1]]) {
                counts[c] += 1;
            }
        }
        let mut order: Vec<usize> = (0..counts.len()).collect();
        order.sort_by_key(|&c| std::cmp::Reverse(counts[c]));
        let mut mask = vec![false; counts.len()];
        let mut held = 0;
        for c in order {
            mask[c] = true;
            held += counts[c];
            if held as f64 >= 0.9 * n as f64 {
                break;
            }
        }
        Self { mask }
    }

    /// Fraction of `points` inside the region (0.9 for the data itself).
    fn inside(&self, points: &[Point]) -> f64 {
        let n = points
            .iter()
            .filter(|&&p| cell(p).is_some_and(|c| self.mask[c]))
            .count();
        n as f64 / points.len() as f64
    }
}

/// Trains with the view's defaults on two moons (about 14 s) and checks the
/// last clouds of the base and of the experts' ensemble.
///
/// Measured (in90 = fraction of samples inside the region holding 90 % of
/// the data, which scores 0.905 for fresh data; precision as above, data 0.984):
/// * the original toy MLP (time only at the input, batch 128, EMA 0.99):
///   base in90 0.628, precision 0.808; experts in90 0.644, precision 0.824
///   (a blurred blob);
/// * the current preset (sinusoidal x features, time at every layer, the
///   Gaussian skip; batch 512, EMA 0.995): base in90 0.863, precision 0.945;
///   experts in90 0.887, precision 0.957; coverage 0.92 for both.
#[test]
fn default_teaching_run_draws_crisp_moons() {
    let data = reference(ToyKind::TwoMoons, 2000);
    let region = Region::new(ToyKind::TwoMoons);
    let (base, experts) = default_run(ToyKind::TwoMoons);
    for (name, cloud) in [("base", &base), ("experts", &experts)] {
        let inside = region.inside(cloud);
        let (precision, coverage) = quality(cloud, &data);
        eprintln!("{name}: in90 {inside:.3} precision {precision:.3} coverage {coverage:.3}");
        assert!(
            inside > 0.8,
            "{name}: only {inside:.3} of the samples lie on the data"
        );
        assert!(precision > 0.9, "{name}: precision {precision:.3}");
        assert!(
            coverage > 0.85,
            "{name}: coverage {coverage:.3} (a mode is missing)"
        );
    }
}

/// A run with settings from the environment (`TOY_DATA`, `TOY_BASE`,
/// `TOY_EXPERT`, `TOY_BATCH`, `TOY_LR`, `TOY_EXPERT_LR`, `TOY_DDIM`,
/// `TOY_EMA`), printing its time and sample quality:
/// `cargo test --test integration toy_quality:: -- --ignored --nocapture`.
#[test]
#[ignore]
fn explore() {
    let root = tempfile::tempdir().unwrap();
    let mut c = TeachingConfig::new(root.path().to_path_buf());
    let env = |k: &str| std::env::var(k).ok();
    if let Some(v) = env("TOY_DATA") {
        c.data = v.parse().unwrap();
    }
    if let Some(v) = env("TOY_BASE") {
        c.base_steps = v.parse().unwrap();
    }
    if let Some(v) = env("TOY_EXPERT") {
        c.expert_steps = v.parse().unwrap();
    }
    if let Some(v) = env("TOY_BATCH") {
        c.batch_size = v.parse().unwrap();
    }
    if let Some(v) = env("TOY_LR") {
        c.base_lr = v.parse().unwrap();
    }
    if let Some(v) = env("TOY_EXPERT_LR") {
        c.expert_lr = v.parse().unwrap();
    }
    if let Some(v) = env("TOY_DDIM") {
        c.sample_steps = v.parse().unwrap();
    }
    if let Some(v) = env("TOY_EMA") {
        c.ema_max_decay = v.parse().ok().filter(|&d: &f64| d > 0.0);
    }
    let kind = c.data;
    eprintln!("{c:?}");
    let job = TeachingJob {
        config: c,
        cancel: CancelToken::new(),
        sink: Sink::discard(),
    };
    let t0 = std::time::Instant::now();
    let mut marks = Vec::new();
    let (mut base, mut experts) = (Vec::new(), Vec::new());
    run_teaching(&job, &Device::flex(), &mut |u| {
        if let TeachingUpdate::Samples(c) = u {
            marks.push((c.stage, c.step, t0.elapsed().as_secs_f64()));
            match c.stage {
                Stage::Base => base = c.points.to_vec(),
                Stage::Experts => experts = c.points.to_vec(),
            }
        }
    })
    .unwrap();
    let total = t0.elapsed().as_secs_f64();
    let data = reference(kind, 2000);
    let region = Region::new(kind);
    for (name, cloud) in [("base", &base), ("experts", &experts)] {
        let (p, c) = quality(cloud, &data);
        eprintln!(
            "{name}: in90 {:.3} precision {p:.3} coverage {c:.3}",
            region.inside(cloud)
        );
    }
    eprintln!("marks {marks:?}");
    eprintln!("total {total:.2} s");
}
