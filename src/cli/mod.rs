//! The command line: one file per subcommand, each a thin layer over the engine.

mod bench;
mod eval_eps;
mod finetune;
pub mod gradsim;
mod grid_search;
mod inspect;
mod interrupt;
mod landscape;
mod limits;
mod merge;
mod metric;
mod progress;
mod replicate;
mod sample;
mod train;
pub mod tv_stats;

use crate::engine::device::{ComputeDevice, DeviceChoice, select};
use anyhow::Result;
use clap::{Parser, Subcommand};

/// Decouple-then-Merge (DeMe) finetuning of diffusion models: train, sample,
/// inspect. With no subcommand, opens the desktop application.
#[derive(Debug, Parser)]
#[command(name = "deme-studio", version, about, long_about = None)]
pub struct Cli {
    /// Compute device: auto (wgpu on a hardware GPU, CPU otherwise), wgpu, or cpu.
    #[arg(long, global = true, default_value = "auto")]
    pub device: DeviceChoice,
    /// The view the window opens on (default: the one shown at the last exit).
    #[arg(long, value_enum)]
    pub view: Option<ViewArg>,
    /// What to do (omit to open the GUI).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The views of the window, as `--view` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "kebab-case")]
pub enum ViewArg {
    /// Merge weights, previews, losses, grid search.
    Merge,
    /// The loaded models in detail, the data, the device.
    About,
    /// Per-timestep gradient conflicts of the base model.
    GradientConflicts,
    /// Pretraining and DeMe finetuning with live curves.
    Train,
    /// The loss landscape on the task-vector plane.
    Landscape,
    /// Task-vector statistics: norms, per-layer spreads, cosines.
    TaskVectors,
    /// Teaching mode: 2D toy data with the MLP model.
    Teaching,
}

/// Headless jobs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pretrain a diffusion model from scratch (or resume a run).
    Train(train::TrainArgs),
    /// DeMe: finetune N timestep-range experts from a pretrained checkpoint (or resume).
    Finetune(finetune::FinetuneArgs),
    /// Generate samples with DDPM or DDIM.
    Sample(sample::SampleArgs),
    /// Evaluate the model's noise prediction on given inputs.
    EvalEps(eval_eps::EvalEpsArgs),
    /// Per-timestep gradient cosine-similarity heatmap (JSON, CSV, PNG).
    Gradsim(gradsim::GradSimArgs),
    /// Grid-search the merge weights on the held-out diffusion loss (JSON, CSV).
    GridSearch(grid_search::GridSearchArgs),
    /// Held-out loss landscape on the plane through the base and two models (JSON, CSV, PNG).
    Landscape(landscape::LandscapeArgs),
    /// Task-vector magnitudes, norms and cosine similarities per block or layer (JSON, CSV, PNG).
    TvStats(tv_stats::TvStatsArgs),
    /// Sample metric: Frechet distance of generated (or given) images to held-out real ones.
    Metric(metric::MetricArgs),
    /// Print a checkpoint's parameter table, totals and config.
    Inspect(inspect::InspectArgs),
    /// Merge experts into their base (task arithmetic, TIES, DARE), or reproduce a recipe.
    Merge(merge::MergeArgs),
    /// The whole DeMe pipeline in one command, with a Table-1-style report.
    Replicate(replicate::ReplicateArgs),
    /// Measure engine throughput (see bench/ for the reference side).
    Bench(bench::BenchArgs),
}

/// Resolves the device and prints the choice and the reason.
pub fn resolve_device(choice: DeviceChoice) -> Result<ComputeDevice> {
    let d = select(choice)?;
    eprintln!("device: {}", d.reason);
    Ok(d)
}

/// Runs a headless job on `device`.
pub fn run(command: Command, device: DeviceChoice) -> Result<()> {
    match command {
        Command::Train(a) => train::run(a, device),
        Command::Finetune(a) => finetune::run(a, device),
        Command::Sample(a) => sample::run(a, device),
        Command::EvalEps(a) => eval_eps::run(a, device),
        Command::Gradsim(a) => gradsim::run(a, device),
        Command::GridSearch(a) => grid_search::run(a, device),
        Command::Landscape(a) => landscape::run(a, device),
        Command::TvStats(a) => tv_stats::run(a),
        Command::Metric(a) => metric::run(a, device),
        Command::Inspect(a) => inspect::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Replicate(a) => replicate::run(a, device),
        Command::Bench(a) => bench::run(a, device),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing fills every field from its parser: a parser whose type differs from
    /// its field panics here, not in a user's hands.
    #[test]
    fn every_subcommand_parses_its_defaults() {
        let minimal: [&[&str]; 12] = [
            &["train", "--out", "o"],
            &["finetune", "--base", "b", "--out", "o"],
            &["sample", "--model", "m", "--out", "o.png"],
            &["eval-eps", "--model", "m", "--input", "i", "--out", "o"],
            &["inspect", "p"],
            &["merge", "--base", "b", "--experts", "e", "--out", "o"],
            &["grid-search", "--base", "b", "--experts", "e", "--out", "o"],
            &[
                "landscape",
                "--base",
                "b",
                "--a",
                "a",
                "--b",
                "b",
                "--out",
                "o",
            ],
            &["gradsim", "--model", "m", "--out", "o"],
            &["tv-stats", "--base", "b", "--experts", "e", "--out", "o"],
            &["metric", "--out", "o"],
            &["replicate", "--out", "o"],
        ];
        for args in minimal {
            let argv = std::iter::once("deme-studio").chain(args.iter().copied());
            let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(cli.command.is_some(), "{args:?}");
        }
    }
}
