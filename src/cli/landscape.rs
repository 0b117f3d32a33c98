//! `deme-studio landscape`: the held-out loss on the plane through a base model
//! and two other models (two experts, typically), overall and per timestep range.

use super::progress::{bar, log_line_due};
use super::resolve_device;
use crate::engine::analysis::landscape::{Landscape, LandscapeGrid, MarkKind};
use crate::engine::analysis::landscape_files::write_landscape_files;
use crate::engine::analysis::{
    LandscapeConfig, LandscapeEvent, LandscapeModels, MarkRequest, loss_landscape,
};
use crate::engine::data::{DataSpec, split_items};
use crate::engine::device::DeviceChoice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::eval::{EvalSet, EvalSetConfig, timestep_ranges};
use crate::engine::merge::expert_ranges_of;
use crate::engine::store::load_model;
use crate::engine::train::CancelToken;
use anyhow::{Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};

/// Arguments of `landscape`.
#[derive(Debug, Args)]
pub struct LandscapeArgs {
    /// The pretrained base model folder (the origin of the plane).
    #[arg(long)]
    pub base: PathBuf,
    /// Model a: a folder, or the 1-based number of one of --experts. Its task
    /// vector is the x axis and the unit of both axes.
    #[arg(long)]
    pub a: String,
    /// Model b: a folder, or the 1-based number of one of --experts.
    #[arg(long)]
    pub b: String,
    /// All N experts (comma-separated or repeated, in timestep-range order):
    /// each is projected onto the plane and marked; --weights refer to them.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    pub experts: Vec<PathBuf>,
    /// Points per axis G (the lattice is G x G).
    #[arg(long, default_value_t = 21, value_parser = super::limits::grid_side)]
    pub grid: usize,
    /// Range of both axes as LO,HI, in units of |theta_a - theta|.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        default_value = "-0.2,1.2"
    )]
    pub range: Vec<f64>,
    /// Range of the y axis as LO,HI, when it differs from --range.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub range_y: Option<Vec<f64>>,
    /// Merge weights to mark, one per expert (per --experts, or for a,b without it).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub weights: Option<Vec<f64>>,
    /// Number of uniform timestep ranges of the per-range surfaces (default: the
    /// ranges the --experts were finetuned on, as their deme.json says; else as
    /// many uniform ranges as --experts when at least 2, else 4).
    #[arg(long, value_parser = super::limits::ranges)]
    pub ranges: Option<usize>,
    /// Dataset whose held-out split is evaluated.
    #[arg(long, default_value = "mnist")]
    pub data: DataSpec,
    /// Held-out samples per point (the same ones at every point).
    #[arg(long, default_value_t = 128, value_parser = super::limits::eval_samples)]
    pub samples: usize,
    /// Samples per forward pass.
    #[arg(long, default_value_t = 64, value_parser = super::limits::batch_size)]
    pub batch_size: usize,
    /// Seed of the evaluation set.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Fraction of the data held out (must match training to stay unseen).
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Number of points drawn for toy datasets.
    #[arg(long, default_value_t = 20_000, value_parser = super::limits::toy_points)]
    pub toy_points: usize,
    /// Output folder: landscape.json, landscape.csv, per surface (all,
    /// range{i}) landscape_{surface}.png and landscape_{surface}.npy, and the
    /// grid's axes landscape_x.npy, landscape_y.npy.
    #[arg(long)]
    pub out: PathBuf,
}

/// `--a` / `--b`: a folder or a number among the experts.
enum ModelRef {
    Path(PathBuf),
    Expert(usize),
}

fn model_ref(arg: &str, experts: &[PathBuf], flag: &str) -> Result<ModelRef> {
    let path = PathBuf::from(arg);
    if path.exists() {
        return Ok(ModelRef::Path(path));
    }
    match arg.parse::<usize>() {
        Ok(k) if (1..=experts.len()).contains(&k) => Ok(ModelRef::Expert(k - 1)),
        Ok(k) if !experts.is_empty() => bail!(
            "{flag} {k}: there are {} experts, numbered from 1",
            experts.len()
        ),
        _ => bail!("{flag} {arg}: no such model folder"),
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// The N models (experts, then a and b when not among them) and the indices of a and b.
fn model_list(args: &LandscapeArgs) -> Result<(Vec<PathBuf>, usize, usize)> {
    let mut models = args.experts.clone();
    let mut index = |r: ModelRef| -> usize {
        match r {
            ModelRef::Expert(k) => k,
            ModelRef::Path(p) => match models.iter().position(|m| same_path(m, &p)) {
                Some(k) => k,
                None => {
                    models.push(p);
                    models.len() - 1
                }
            },
        }
    };
    let a = index(model_ref(&args.a, &args.experts, "--a")?);
    let b = index(model_ref(&args.b, &args.experts, "--b")?);
    if a == b {
        bail!("--a and --b name the same model: the plane needs two different ones");
    }
    Ok((models, a, b))
}

fn range_arg(v: &[f64], flag: &str) -> Result<[f64; 2]> {
    match v {
        [lo, hi] if lo < hi => Ok([*lo, *hi]),
        _ => bail!("{flag} takes LO,HI with LO < HI, got {v:?}"),
    }
}

/// Runs `landscape`.
pub fn run(args: LandscapeArgs, device: DeviceChoice) -> Result<()> {
    // Ctrl-C stops the job at its next step or point and keeps what it did; installed
    // before anything is printed, so a signal sent after the first line is never lost
    let cancel = CancelToken::new();
    super::interrupt::install(&cancel);
    crate::engine::output::ensure_writable_folder(&args.out)?;
    let x = range_arg(&args.range, "--range")?;
    let y = match &args.range_y {
        Some(v) => range_arg(v, "--range-y")?,
        None => x,
    };
    let grid = LandscapeGrid {
        size: args.grid,
        x,
        y,
    };
    grid.validate()?;
    let (paths, a, b) = model_list(&args)?;
    let n = paths.len();
    let merges = match &args.weights {
        None => vec![],
        Some(w) => {
            let mut full = vec![0.0; n];
            if args.experts.is_empty() {
                if w.len() != 2 {
                    bail!("--weights: give 2 weights (for a and b), got {}", w.len());
                }
                full[a] = w[0];
                full[b] = w[1];
            } else {
                if w.len() != args.experts.len() {
                    bail!(
                        "--weights: give one weight per expert ({}), got {}",
                        args.experts.len(),
                        w.len()
                    );
                }
                full[..w.len()].copy_from_slice(w);
            }
            vec![MarkRequest {
                label: "merge".into(),
                weights: full,
            }]
        }
    };
    let compute = resolve_device(device)?;
    let dev = &compute.device;
    let base = load_model(&args.base, dev)?;
    let models = paths
        .iter()
        .map(|p| load_model(p, dev))
        .collect::<Result<Vec<_>>>()?;
    let labels: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let pairs: Vec<(&str, _)> = labels
        .iter()
        .zip(&models)
        .map(|(l, m)| (l.as_str(), &m.model))
        .collect();
    let items = split_items(&args.data, &base.spec, args.val_fraction, args.toy_points)?;
    let schedule = NoiseSchedule::ddpm(1000);
    let eval = EvalSet::new(
        &items.val,
        &schedule,
        EvalSetConfig {
            samples: args.samples,
            batch_size: args.batch_size,
            seed: args.seed,
        },
        dev,
    )?;
    let base_label = args.base.display().to_string();
    let total = (args.grid * args.grid) as u64;
    let pb = bar(total, "landscape");
    let mut best = f64::INFINITY;
    let mut on_event = |e: LandscapeEvent| match e {
        LandscapeEvent::Mark(m) => pb.suspend(|| {
            eprintln!(
                "{:<6} ({:>7.3}, {:>7.3})  off-plane {:>9.3e} ({:.3} of its norm)  loss {:.5}  {}",
                format!("{:?}", m.kind).to_lowercase(),
                m.projection.xy[0],
                m.projection.xy[1],
                m.projection.residual,
                m.projection.residual_rel,
                m.loss,
                m.label
            )
        }),
        LandscapeEvent::Level { .. } => {}
        LandscapeEvent::Point {
            score, done, total, ..
        } => {
            best = best.min(score.loss);
            pb.set_position(done as u64);
            pb.set_message(format!("lowest {best:.5}"));
            if log_line_due(done as u64, total as u64) {
                eprintln!("landscape: {done}/{total} points, lowest loss {best:.5}");
            }
        }
    };
    let stored: Vec<Option<[usize; 2]>> = models.iter().map(|m| m.timestep_range()).collect();
    let big_t = schedule.num_train_timesteps();
    let ranges = match args.ranges {
        Some(r) => timestep_ranges(r, big_t),
        None if args.experts.len() >= 2 => expert_ranges_of(&stored, big_t),
        None => timestep_ranges(4, big_t),
    };
    let config = LandscapeConfig { grid, ranges };
    let started = std::time::Instant::now();
    let input = LandscapeModels {
        base: (base_label.as_str(), &base.model),
        models: &pairs,
        a,
        b,
        merges: &merges,
    };
    let ls = loss_landscape(&input, &eval, &config, &cancel, &mut on_event)?;
    pb.finish_and_clear();
    write_outputs(&ls, &args.out)?;
    print_summary(&ls, started.elapsed().as_secs_f64());
    if ls.cancelled {
        bail!(
            "cancelled after {} of {} points: {} holds them, the rest empty (landscape.json says \"cancelled\": true)",
            ls.done,
            ls.total,
            args.out.display()
        );
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Writes the landscape's files (`landscape.json`, `landscape.csv`, a PNG and a
/// `.npy` grid per surface, the axes), each atomically; a partial landscape gives
/// rows for its scored points only and NaN in the grids elsewhere.
pub fn write_outputs(ls: &Landscape, dir: &Path) -> Result<()> {
    write_landscape_files(ls, dir).map(|_| ())
}

fn print_summary(ls: &Landscape, seconds: f64) {
    let p = &ls.plane;
    let n = p.n;
    let cos = p.gram[p.a * n + p.b] / (p.gram[p.a * n + p.a] * p.gram[p.b * n + p.b]).sqrt();
    eprintln!(
        "plane: |tau_a| = {:.4e}, b at ({:.3}, {:.3}), cos(tau_a, tau_b) = {cos:.3}",
        p.unit, p.b_xy[0], p.b_xy[1]
    );
    for s in &ls.surfaces {
        let g = ls.grid.size;
        let lowest = (0..g * g)
            .filter_map(|k| s.values[k].map(|v| (k, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((k, v)) = lowest {
            let range = s
                .range
                .map_or_else(String::new, |[lo, hi]| format!(" (t in [{lo}, {hi}))"));
            eprintln!(
                "  {:<8} lowest {v:.5} at ({:.3}, {:.3}){range}",
                s.name,
                ls.xs[k % g],
                ls.ys[k / g]
            );
        }
    }
    if let Some(base) = ls.marks.iter().find(|m| m.kind == MarkKind::Base) {
        eprintln!("  base loss {:.5}", base.loss);
    }
    let evaluations = ls.done + ls.marks.len();
    eprintln!(
        "{} of {} points and {} marks in {seconds:.1} s ({:.3} s per evaluation)",
        ls.done,
        ls.total,
        ls.marks.len(),
        seconds / evaluations.max(1) as f64
    );
}
