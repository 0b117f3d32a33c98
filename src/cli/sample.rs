//! `deme-studio sample`: DDPM or DDIM sampling to a PNG grid or a safetensors file.

use super::limits::MAX_IMAGES;
use super::progress::bar;
use super::resolve_device;
use crate::engine::checkpoint::{HostTensor, TensorMap, read_safetensors, write_safetensors};
use crate::engine::device::DeviceChoice;
use crate::engine::diffusion::{
    DdimConfig, DdpmConfig, NoiseSchedule, NoiseSource, SamplerKind, SeededNoise, VarianceType,
    sample,
};
use crate::engine::grid_image::save_grid_png;
use crate::engine::merge::TimestepEnsemble;
use crate::engine::store::{AnyModel, ModelSpec, load_model};
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::{Tensor, TensorData};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Images sampled in one batch.
const CHUNK: usize = 256;

/// Which sampler.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SamplerArg {
    /// Ancestral DDPM.
    Ddpm,
    /// DDIM.
    Ddim,
}

/// DDPM posterior variance.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum VarianceArg {
    /// beta-tilde (clipped at 1e-20), diffusers' default.
    FixedSmall,
    /// beta_t.
    FixedLarge,
}

/// Arguments of `sample`.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Model folder (ours or diffusers) or a .safetensors file with config.json beside it.
    #[arg(
        long,
        required_unless_present = "ensemble",
        conflicts_with = "ensemble"
    )]
    pub model: Option<PathBuf>,
    /// Sample with the timestep-wise ensemble of these expert folders instead of
    /// --model (comma-separated or repeated, in timestep order: the i-th of N
    /// handles t in [(i-1)T/N, iT/N), integer division, the range it was finetuned on).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub ensemble: Vec<PathBuf>,
    /// Sampler.
    #[arg(long, value_enum, default_value = "ddim")]
    pub sampler: SamplerArg,
    /// Number of sampling steps (DDPM defaults to all T steps).
    #[arg(long, value_parser = super::limits::sampler_steps)]
    pub steps: Option<usize>,
    /// DDIM eta (0 = deterministic).
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// DDPM variance type.
    #[arg(long, value_enum, default_value = "fixed-small")]
    pub variance: VarianceArg,
    /// Do not clip the predicted x0 to [-1, 1].
    #[arg(long)]
    pub no_clip: bool,
    /// Number of samples (ignored with --noise); sampled 256 at a time.
    #[arg(long, default_value_t = 16, value_parser = super::limits::images)]
    pub n: usize,
    /// Seed of the initial and per-step noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Initial noise: a safetensors file with tensor `x_T` [N,C,H,W] f32.
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Output: .png (grid) or .safetensors (tensor `x_0` [N,C,H,W] f32).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `sample`.
pub fn run(args: SampleArgs, device: DeviceChoice) -> Result<()> {
    let ext = args
        .out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ext != "png" && ext != "safetensors" {
        bail!(
            "--out must end in .png or .safetensors, got {}",
            args.out.display()
        );
    }
    crate::engine::output::ensure_writable_file(&args.out)?;
    let compute = resolve_device(device)?;
    let dev = &compute.device;
    let schedule = NoiseSchedule::ddpm(1000);
    let (spec, predictor) = load_predictor(&args, schedule.num_train_timesteps(), dev)?;
    let [c, h, w] = spec.item_shape();
    let mut noise = SeededNoise::new(args.seed);
    // recorded initial noise (all of it, as the file holds it), or none: drawn per chunk
    let recorded: Option<Vec<f32>> = match &args.noise {
        Some(path) => {
            let map = read_safetensors(path)?;
            let t = map
                .get("x_T")
                .ok_or_else(|| anyhow!("{}: no tensor `x_T`", path.display()))?;
            if t.shape.len() != 4 || t.shape[1..] != [c, h, w] {
                bail!(
                    "{}: `x_T` has shape {:?}, the model needs [N, {c}, {h}, {w}]",
                    path.display(),
                    t.shape
                );
            }
            if t.shape[0] == 0 || t.shape[0] > MAX_IMAGES {
                bail!(
                    "{}: `x_T` holds {} images; sample takes 1 to {MAX_IMAGES}",
                    path.display(),
                    t.shape[0]
                );
            }
            Some(t.to_f32()?)
        }
        None => None,
    };
    let per = c * h * w;
    let n = recorded.as_ref().map_or(args.n, |r| r.len() / per);
    deme_formats::data::image_set::check_dataset_size(n as u64, per as u64, "the samples")?;
    let clip = !args.no_clip;
    let kind = match args.sampler {
        SamplerArg::Ddim => SamplerKind::Ddim(DdimConfig {
            steps: args.steps.unwrap_or(50),
            eta: args.eta as f32,
            clip_sample: clip,
            ..DdimConfig::default()
        }),
        SamplerArg::Ddpm => SamplerKind::Ddpm(DdpmConfig {
            steps: args.steps.unwrap_or(1000),
            variance: match args.variance {
                VarianceArg::FixedSmall => VarianceType::FixedSmall,
                VarianceArg::FixedLarge => VarianceType::FixedLarge,
            },
            clip_sample: clip,
            ..DdpmConfig::default()
        }),
    };
    kind.validate(&schedule)?;
    let pb = bar(0, "sample");
    let mut values = Vec::with_capacity(n * per);
    // chunks bound the activations; a run of at most CHUNK images is one batch, as before
    for first in (0..n).step_by(CHUNK) {
        let m = CHUNK.min(n - first);
        let x_t = match &recorded {
            Some(r) => Tensor::<4>::from_data(
                TensorData::new(r[first * per..(first + m) * per].to_vec(), [m, c, h, w]),
                dev,
            ),
            None => noise.next([m, c, h, w], dev),
        };
        let x0 = sample(
            kind,
            &schedule,
            x_t,
            &mut noise,
            &mut |x, t| match &predictor {
                Predictor::Model(model) => model.eps(x, &vec![t as f32; m]),
                Predictor::Ensemble(ens) => ens.eps(x, t),
            },
            &mut |k, total, _| {
                pb.set_length((total * n) as u64);
                pb.set_position((first * total + (k + 1) * m) as u64);
                true
            },
        )
        .context("sampling was cancelled")?;
        values.extend(
            x0.into_data()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow!("reading samples: {e:?}"))?,
        );
    }
    pb.finish_and_clear();
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        bail!(
            "the samples hold {bad} (the model's predictions overflowed); nothing was written to {}",
            args.out.display()
        );
    }
    if ext == "png" {
        save_grid_png(&args.out, &values, n, c, h, w)?;
    } else {
        let mut map = TensorMap::new();
        map.insert(
            "x_0".into(),
            HostTensor::from_f32(vec![n, c, h, w], &values)?,
        );
        write_safetensors(&args.out, &map, None)?;
    }
    eprintln!("wrote {n} samples to {}", args.out.display());
    Ok(())
}

/// What predicts the noise: one model, or the timestep-wise ensemble of experts.
enum Predictor {
    Model(Box<AnyModel>),
    Ensemble(TimestepEnsemble<AnyModel>),
}

/// Loads `--model`, or every `--ensemble` expert (all of one architecture).
fn load_predictor(
    args: &SampleArgs,
    num_timesteps: usize,
    dev: &burn::tensor::Device,
) -> Result<(ModelSpec, Predictor)> {
    if let Some(path) = &args.model {
        let loaded = load_model(path, dev)?;
        return Ok((loaded.spec, Predictor::Model(Box::new(loaded.model))));
    }
    let first = args
        .ensemble
        .first()
        .ok_or_else(|| anyhow!("give --model DIR or --ensemble DIR1,DIR2,..."))?;
    let mut spec: Option<ModelSpec> = None;
    let mut experts = Vec::with_capacity(args.ensemble.len());
    for path in &args.ensemble {
        let loaded = load_model(path, dev)?;
        match &spec {
            None => spec = Some(loaded.spec),
            Some(s) if *s != loaded.spec => bail!(
                "ensemble expert {} has another config.json than {}: the experts must share one architecture",
                path.display(),
                first.display()
            ),
            Some(_) => {}
        }
        experts.push(loaded.model);
    }
    let spec = spec.ok_or_else(|| anyhow!("--ensemble needs at least one expert"))?;
    let ensemble = TimestepEnsemble::new(experts, num_timesteps)?;
    for (i, path) in args.ensemble.iter().enumerate() {
        let r = ensemble.range(i);
        eprintln!(
            "ensemble: t in [{}, {}) -> {}",
            r.start,
            r.end,
            path.display()
        );
    }
    Ok((spec, Predictor::Ensemble(ensemble)))
}
