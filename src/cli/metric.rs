//! `deme-studio metric`: the offline sample metric (Frechet distance in the
//! feature space of a classifier trained on the dataset) of generated samples,
//! of a timestep-wise ensemble's samples, or of given images.

use super::progress::{bar, log_line_due};
use super::resolve_device;
use super::sample::SamplerArg;
use crate::engine::checkpoint::{
    HostTensor, TensorMap, read_safetensors, write_atomic_bytes, write_safetensors,
};
use crate::engine::data::DataSpec;
use crate::engine::device::DeviceChoice;
use crate::engine::diffusion::{
    DdimConfig, DdpmConfig, NoiseSchedule, NoiseSource, SamplerKind, SeededNoise, sample,
};
use crate::engine::merge::TimestepEnsemble;
use crate::engine::metric::features::FeatureTrainConfig;
use crate::engine::metric::{LabelSummary, SampleMetric, default_cache_dir};
use crate::engine::store::{AnyModel, ModelSpec, load_model};
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Device;
use clap::Args;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Arguments of `metric`.
#[derive(Debug, Args)]
pub struct MetricArgs {
    /// Model folder whose samples are scored.
    #[arg(long, conflicts_with_all = ["ensemble", "images"])]
    pub model: Option<PathBuf>,
    /// Score the timestep-wise ensemble of these expert folders (comma-separated
    /// or repeated, in timestep order).
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "images")]
    pub ensemble: Vec<PathBuf>,
    /// Score these images instead of sampling: a safetensors file with tensor
    /// `x_0` [N,C,H,W] in [-1, 1] (what `sample --out FILE.safetensors` writes).
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Number of samples generated.
    #[arg(long, default_value_t = 2000, value_parser = super::limits::images)]
    pub samples: usize,
    /// Samples generated per batch.
    #[arg(long, default_value_t = 64, value_parser = super::limits::batch_size)]
    pub batch_size: usize,
    /// Sampler.
    #[arg(long, value_enum, default_value = "ddim")]
    pub sampler: SamplerArg,
    /// Sampling steps (default: 50 for DDIM, 1000 for DDPM).
    #[arg(long, value_parser = super::limits::sampler_steps)]
    pub steps: Option<usize>,
    /// DDIM eta (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// Seed of the sampling noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Dataset of the real images and of the feature network.
    #[arg(long, default_value = "mnist")]
    pub data: DataSpec,
    /// Fraction of the data held out (the real images compared against).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Training steps of the feature network.
    #[arg(long, default_value_t = FeatureTrainConfig::default().steps, value_parser = super::limits::step_count)]
    pub feature_steps: usize,
    /// Batch size of the feature network's training.
    #[arg(long, default_value_t = FeatureTrainConfig::default().batch_size, value_parser = super::limits::batch_size)]
    pub feature_batch_size: usize,
    /// Cache folder of trained feature networks (default: ~/.cache/deme-studio).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Train the feature network afresh and do not cache it.
    #[arg(long)]
    pub no_cache: bool,
    /// Also write the generated samples (tensor `x_0`) to this .safetensors file.
    #[arg(long)]
    pub save_samples: Option<PathBuf>,
    /// Output: a JSON report.
    #[arg(long)]
    pub out: PathBuf,
}

/// What was scored.
#[derive(Debug, Serialize)]
struct Source {
    /// `model`, `ensemble` or `images`.
    kind: &'static str,
    /// The folders or the file.
    paths: Vec<String>,
}

/// How samples were generated.
#[derive(Debug, Serialize)]
struct SamplingReport {
    sampler: &'static str,
    steps: usize,
    eta: f64,
    seed: u64,
    clip_sample: bool,
    seconds: f64,
}

/// The JSON report.
#[derive(Debug, Serialize)]
struct MetricReport {
    /// Frechet distance to the held-out real images (lower is better).
    frechet_distance: f64,
    /// Mean Frechet distance of disjoint chunks of `floor_half_size` images to the
    /// floor's second half: the figure to set beside `real_vs_real_floor`.
    frechet_at_floor_size: Option<f64>,
    /// Frechet distance between two disjoint halves of the held-out real images.
    real_vs_real_floor: f64,
    /// Images in each half of the floor.
    floor_half_size: usize,
    /// What the classifier labels the scored images (confident: softmax above 0.9).
    labels: LabelSummary,
    /// The same for the held-out real images.
    real_labels: LabelSummary,
    /// Held-out accuracy of the feature network (a sanity check of the features).
    feature_accuracy: f64,
    /// Number of images scored.
    samples: usize,
    /// Number of held-out real images in the reference statistics.
    real_images: usize,
    /// `[c, h, w]`.
    image_shape: [usize; 3],
    data: String,
    val_fraction: f64,
    source: Source,
    sampling: Option<SamplingReport>,
    feature_net: FeatureTrainConfig,
    feature_net_cache: Option<String>,
}

/// One model, or the timestep-wise ensemble of experts.
enum Predictor {
    Model(Box<AnyModel>),
    Ensemble(TimestepEnsemble<AnyModel>),
}

fn load_predictor(args: &MetricArgs, dev: &Device) -> Result<(ModelSpec, Predictor, Source)> {
    if let Some(path) = &args.model {
        let loaded = load_model(path, dev)?;
        let source = Source {
            kind: "model",
            paths: vec![path.display().to_string()],
        };
        return Ok((
            loaded.spec,
            Predictor::Model(Box::new(loaded.model)),
            source,
        ));
    }
    let mut spec: Option<ModelSpec> = None;
    let mut experts = Vec::with_capacity(args.ensemble.len());
    for path in &args.ensemble {
        let loaded = load_model(path, dev)?;
        match &spec {
            None => spec = Some(loaded.spec),
            Some(s) if *s != loaded.spec => bail!(
                "ensemble expert {} has another architecture than the first: the experts must share one",
                path.display()
            ),
            Some(_) => {}
        }
        experts.push(loaded.model);
    }
    let spec =
        spec.ok_or_else(|| anyhow!("give --model DIR, --ensemble DIR,... or --images FILE"))?;
    let source = Source {
        kind: "ensemble",
        paths: args
            .ensemble
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    };
    Ok((
        spec,
        Predictor::Ensemble(TimestepEnsemble::new(experts, 1000)?),
        source,
    ))
}

/// Reads tensor `x_0` [N,C,H,W] of a safetensors file.
fn read_images(path: &Path) -> Result<(Vec<f32>, [usize; 3])> {
    let map = read_safetensors(path)?;
    let t = map
        .get("x_0")
        .ok_or_else(|| anyhow!("{}: no tensor `x_0`", path.display()))?;
    let [_, c, h, w] = t.shape[..] else {
        bail!(
            "{}: `x_0` has shape {:?}, expected [N, C, H, W]",
            path.display(),
            t.shape
        );
    };
    Ok((t.to_f32()?, [c, h, w]))
}

/// Generates `args.samples` images in batches; returns them and the sampling settings.
fn generate(
    args: &MetricArgs,
    predictor: &Predictor,
    shape: [usize; 3],
    dev: &Device,
) -> Result<(Vec<f32>, SamplingReport)> {
    if args.samples < 2 || args.batch_size == 0 {
        bail!("the metric needs at least 2 samples and a batch size of at least 1");
    }
    let schedule = NoiseSchedule::ddpm(1000);
    let (kind, name, steps) = match args.sampler {
        SamplerArg::Ddim => {
            let steps = args.steps.unwrap_or(50);
            let k = SamplerKind::Ddim(DdimConfig {
                steps,
                eta: args.eta as f32,
                clip_sample: true,
                ..DdimConfig::default()
            });
            (k, "ddim", steps)
        }
        SamplerArg::Ddpm => {
            let steps = args.steps.unwrap_or(1000);
            let k = SamplerKind::Ddpm(DdpmConfig {
                steps,
                clip_sample: true,
                ..DdpmConfig::default()
            });
            (k, "ddpm", steps)
        }
    };
    kind.validate(&schedule)?;
    let [c, h, w] = shape;
    let mut noise = SeededNoise::new(args.seed);
    let pb = bar(args.samples as u64, "sample");
    let started = std::time::Instant::now();
    deme_formats::data::image_set::check_dataset_size(
        args.samples as u64,
        (c * h * w) as u64,
        "the generated images",
    )?;
    let mut out = Vec::with_capacity(args.samples * c * h * w);
    let mut done = 0;
    while done < args.samples {
        let n = args.batch_size.min(args.samples - done);
        let x_t = noise.next([n, c, h, w], dev);
        let x0 = sample(
            kind,
            &schedule,
            x_t,
            &mut noise,
            &mut |x, t| match predictor {
                Predictor::Model(m) => m.eps(x, &vec![t as f32; n]),
                Predictor::Ensemble(e) => e.eps(x, t),
            },
            &mut |_, _, _| true,
        )
        .context("sampling stopped")?;
        out.extend(
            x0.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow!("reading samples: {e:?}"))?,
        );
        done += n;
        pb.set_position(done as u64);
        if log_line_due(done as u64, args.samples as u64) {
            eprintln!("sample: {done}/{} images", args.samples);
        }
    }
    pb.finish_and_clear();
    let report = SamplingReport {
        sampler: name,
        steps,
        eta: args.eta,
        seed: args.seed,
        clip_sample: true,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((out, report))
}

/// Runs `metric`.
pub fn run(args: MetricArgs, device: DeviceChoice) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("json") {
        bail!("--out must be a .json file, got {}", args.out.display());
    }
    crate::engine::output::ensure_writable_file(&args.out)?;
    let compute = resolve_device(device)?;
    let dev = &compute.device;
    let (pixels, shape, source, sampling) = match &args.images {
        Some(path) => {
            let (pixels, shape) = read_images(path)?;
            let source = Source {
                kind: "images",
                paths: vec![path.display().to_string()],
            };
            (pixels, shape, source, None)
        }
        None => {
            let (spec, predictor, source) = load_predictor(&args, dev)?;
            if matches!(spec, ModelSpec::Mlp(_)) {
                bail!("the sample metric is defined for image models, not toy-mlp");
            }
            let shape = spec.item_shape();
            let (pixels, report) = generate(&args, &predictor, shape, dev)?;
            if let Some(path) = &args.save_samples {
                let mut map = TensorMap::new();
                let n = pixels.len() / shape.iter().product::<usize>();
                let [c, h, w] = shape;
                map.insert(
                    "x_0".into(),
                    HostTensor::from_f32(vec![n, c, h, w], &pixels)?,
                );
                write_safetensors(path, &map, None)?;
            }
            (pixels, shape, source, Some(report))
        }
    };
    let feature_net = FeatureTrainConfig {
        steps: args.feature_steps,
        batch_size: args.feature_batch_size,
        ..FeatureTrainConfig::default()
    };
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(default_cache_dir)
    };
    eprintln!("feature network: preparing (trained once per dataset and settings, then cached)");
    let metric = SampleMetric::for_dataset(
        &args.data,
        shape,
        args.val_fraction,
        feature_net,
        cache_dir.as_deref(),
        dev,
    )?;
    let score = metric.score_in_full(&pixels, dev)?;
    let (floor, floor_half_size) = metric.floor()?;
    let fd = score.frechet_distance;
    let n = pixels.len() / shape.iter().product::<usize>();
    let report = MetricReport {
        frechet_distance: fd,
        frechet_at_floor_size: score.frechet_at_floor_size,
        real_vs_real_floor: floor,
        floor_half_size,
        labels: score.labels.clone(),
        real_labels: metric.real_labels.clone(),
        feature_accuracy: metric.accuracy,
        samples: n,
        real_images: metric.real_count(),
        image_shape: shape,
        data: args.data.to_string(),
        val_fraction: args.val_fraction,
        source,
        sampling,
        feature_net,
        feature_net_cache: metric.cache_file.as_ref().map(|p| p.display().to_string()),
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomic_bytes(&args.out, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!(
        "Frechet distance {fd:.4} ({n} images vs {} held-out real); feature network accuracy {:.3}",
        metric.real_count(),
        metric.accuracy
    );
    if let Some(at) = score.frechet_at_floor_size {
        println!(
            "at {floor_half_size} vs {floor_half_size} images: {at:.4}, real-vs-real floor {floor:.4}"
        );
    }
    println!(
        "confidently labelled (p > 0.9): {:.1}% of the samples, {:.1}% of held-out real images; classes {:?}",
        100.0 * score.labels.confident_share,
        100.0 * metric.real_labels.confident_share,
        score.labels.histogram
    );
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
