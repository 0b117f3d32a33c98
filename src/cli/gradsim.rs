//! `deme-studio gradsim`: the per-timestep gradient cosine-similarity heatmap of a model.

use super::progress::bar;
use super::resolve_device;
use crate::engine::analysis::gradsim::{
    GradSimProgress, GradSimResult, describe_pairs, grad_similarity_any, gradsim_items,
};
use crate::engine::analysis::gradsim_files::write_gradsim_files;
use crate::engine::analysis::range_split::{suggest_ranges, uniform_split};
use crate::engine::analysis::{GradSimConfig, Granularity};
use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::data::DataSpec;
use crate::engine::device::DeviceChoice;
use crate::engine::diffusion::NoiseSchedule;
use crate::engine::store::load_model;
use crate::engine::train::CancelToken;
use anyhow::{Result, bail};
use clap::Args;
use std::path::PathBuf;

/// Arguments of `gradsim`.
#[derive(Debug, Args)]
pub struct GradSimArgs {
    /// Model folder (ours or diffusers).
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset the loss is taken on (its training split).
    #[arg(long, default_value = "mnist")]
    pub data: DataSpec,
    /// Number of timesteps, evenly spaced over [0, T) at bin centres.
    #[arg(long, default_value_t = 10, value_parser = super::limits::heatmap_k)]
    pub k: usize,
    /// Explicit timesteps (comma-separated), instead of --k.
    #[arg(long, value_delimiter = ',')]
    pub timesteps: Option<Vec<usize>>,
    /// Number of fixed batches the gradients are averaged over (two or more give
    /// the noise ceiling; 8 x 128 samples bring its median to about 0.8 on the
    /// shipped base, see docs/let-the-data-choose/heatmap-noise-ceiling.md).
    #[arg(long, default_value_t = 8, value_parser = super::limits::repeats)]
    pub batches: usize,
    /// Samples per batch.
    #[arg(long, default_value_t = 128, value_parser = super::limits::batch_size)]
    pub batch_size: usize,
    /// Sketch size per parameter group (groups at most this large are exact).
    #[arg(long, default_value_t = 1 << 16, value_parser = super::limits::sketch_dim)]
    pub sketch_dim: usize,
    /// Keep every gradient exactly (more device memory).
    #[arg(long)]
    pub exact: bool,
    /// Parameter grouping of the per-group matrices: block or layer.
    #[arg(long, default_value = "block")]
    pub granularity: Granularity,
    /// Range for the "inside a range" statistics, as LO,HI.
    #[arg(long, value_delimiter = ',', default_value = "0,250")]
    pub range: Vec<usize>,
    /// Seed of batches, noise and sketch.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Number of points drawn for toy datasets.
    #[arg(long, default_value_t = 20_000, value_parser = super::limits::toy_points)]
    pub toy_points: usize,
    /// Also suggest N timestep ranges: the N contiguous ranges whose gradients
    /// agree most within each (printed, and written to suggested_ranges.json
    /// with the uniform split's score beside it).
    #[arg(long, value_parser = super::limits::ranges)]
    pub suggest_ranges: Option<usize>,
    /// Output folder: gradsim.json, cosine.csv, cosine.npy, timesteps.npy,
    /// groups.csv, heatmap.png (and suggested_ranges.json).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `gradsim`.
pub fn run(args: GradSimArgs, device: DeviceChoice) -> Result<()> {
    if args.range.len() != 2 || args.range[0] >= args.range[1] {
        bail!("--range takes LO,HI with LO < HI, got {:?}", args.range);
    }
    crate::engine::output::ensure_writable_folder(&args.out)?;
    let compute = resolve_device(device)?;
    let loaded = load_model(&args.model, &compute.device)?;
    let items = gradsim_items(&args.data, &loaded.spec, args.toy_points)?;
    let schedule = NoiseSchedule::ddpm(1000);
    let config = GradSimConfig {
        timesteps: args
            .timesteps
            .clone()
            .unwrap_or_else(|| GradSimConfig::even_timesteps(args.k, 1000)),
        batches: args.batches,
        batch_size: args.batch_size,
        sketch_dim: (!args.exact).then_some(args.sketch_dim),
        granularity: args.granularity,
        seed: args.seed,
    };
    if let Some(n) = args.suggest_ranges
        && n > config.timesteps.len()
    {
        bail!(
            "--suggest-ranges {n} needs at least {n} timesteps; there are {}",
            config.timesteps.len()
        );
    }
    let total = (config.batches * config.timesteps.len()) as u64;
    let pb = bar(total, "gradsim");
    let cancel = CancelToken::new();
    let mut on_progress = |p: GradSimProgress| pb.set_position(p.done as u64);
    let result = grad_similarity_any(
        &loaded.model,
        &schedule,
        &items,
        &config,
        &cancel,
        &mut on_progress,
    )?;
    pb.finish_and_clear();
    write_gradsim_files(&result, &args.out)?;
    print_summary(&result, (args.range[0], args.range[1]));
    if let Some(n) = args.suggest_ranges {
        suggest(&result, n, &args.out)?;
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// Suggests `n` ranges from the conflicts, prints them beside the uniform
/// split and writes both to `suggested_ranges.json` in `out`.
fn suggest(r: &GradSimResult, n: usize, out: &std::path::Path) -> Result<()> {
    let t = 1000;
    let suggested = suggest_ranges(&r.cosine, &r.timesteps, t, n)?;
    let uniform = uniform_split(&r.cosine, &r.timesteps, t, n).ok();
    let list = |b: &[usize]| b.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
    eprintln!(
        "suggested ranges (N = {n}): {}  within-range score {:.3}",
        list(&suggested.boundaries),
        suggested.score
    );
    match &uniform {
        Some(u) => eprintln!(
            "uniform ranges   (N = {n}): {}  within-range score {:.3}",
            list(&u.boundaries),
            u.score
        ),
        None => eprintln!(
            "uniform ranges: a range would hold none of the {} timesteps",
            r.k()
        ),
    }
    let json = serde_json::json!({
        "n": n,
        "timesteps": r.timesteps,
        "suggested": suggested,
        "uniform": uniform,
    });
    write_atomic_bytes(
        out.join("suggested_ranges.json"),
        serde_json::to_string_pretty(&json)?.as_bytes(),
    )
}

fn print_summary(r: &GradSimResult, range: (usize, usize)) {
    let k = r.k();
    let adjacent: Vec<f64> = (0..k - 1).map(|i| r.cosine[i * k + i + 1]).collect();
    let far: Vec<f64> = (0..k)
        .flat_map(|i| (0..k).map(move |j| (i, j)))
        .filter(|(i, j)| j > i && j - i >= k / 2)
        .map(|(i, j)| r.cosine[i * k + j])
        .collect();
    eprintln!("all pairs:        {}", describe_pairs(&r.pair_values(None)));
    eprintln!(
        "pairs in [{}, {}): {}",
        range.0,
        range.1,
        describe_pairs(&r.pair_values(Some(range)))
    );
    eprintln!("adjacent pairs:   {}", describe_pairs(&adjacent));
    eprintln!(
        "distant pairs:    {} (|i - j| >= K/2)",
        describe_pairs(&far)
    );
    eprintln!(
        "{}",
        if r.exact {
            "exact gradients"
        } else {
            "sketched gradients (see --exact)"
        }
    );
    if let Some(c) = &r.ceiling {
        let mut sorted = c.clone();
        sorted.sort_by(f64::total_cmp);
        eprintln!(
            "noise ceiling:    min {:.3}, median {:.3} (cosine of the even and odd batches' gradients at each t; in gradsim.json)",
            sorted[0],
            sorted[sorted.len() / 2]
        );
    }
    for (name, _, mean) in r.groups_by_conflict().iter().take(5) {
        eprintln!("  most conflicting: {name:<28} mean cosine {mean:.3}");
    }
}
