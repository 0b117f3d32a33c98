//! `deme-studio merge`: merge experts into their base (task arithmetic, TIES,
//! DARE) and export a checkpoint folder with its `recipe.json`, or reproduce a
//! merge from a recipe.

use crate::engine::merge::drop_projections::PROBES;
use crate::engine::merge::{
    BlockWeights, DEFAULT_DARE_P, DEFAULT_TIES_K, ExportReport, MergeJob, MergeMethod, MergeSpec,
    export_merge, reproduce,
};
use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Merge method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    /// Task arithmetic: theta + sum_i w_i tau_i.
    Ta,
    /// TIES: trim, elect sign, disjoint mean.
    Ties,
    /// DARE: random drop and rescale, then task arithmetic.
    Dare,
}

/// Arguments of `merge`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  deme-studio merge --base pre --experts e1,e2,e3,e4 --weights 0.3,0.2,0.2,0.3 --out merged\n  deme-studio merge --recipe merged/recipe.json --out again"
)]
pub struct MergeArgs {
    /// The pretrained model folder (theta).
    #[arg(long, required_unless_present = "recipe", conflicts_with = "recipe")]
    pub base: Option<PathBuf>,
    /// Expert model folders (theta_i), comma-separated or repeated, in weight order.
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with = "recipe")]
    pub experts: Vec<PathBuf>,
    /// One weight per expert, comma-separated (e.g. 0.3,0.2,0.2,0.3) or repeated.
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        conflicts_with = "recipe"
    )]
    pub weights: Vec<f32>,
    /// Merge method.
    #[arg(long, value_enum, default_value = "ta", conflicts_with = "recipe")]
    pub method: MethodArg,
    /// TIES: fraction of each task vector kept, by magnitude [default: 0.2].
    #[arg(long)]
    pub ties_k: Option<f32>,
    /// TIES: scale of the merged task vector (lambda) [default: 1].
    #[arg(long)]
    pub ties_scale: Option<f32>,
    /// DARE: drop probability [default: 0.9].
    #[arg(long)]
    pub dare_p: Option<f32>,
    /// Seed of DARE's drops.
    #[arg(long, default_value_t = 0, conflicts_with = "recipe")]
    pub seed: u64,
    /// JSON file of per-block weights, e.g. {"mid_block": 0, "down_blocks.1": [0.5, 0.2]}.
    #[arg(long, conflicts_with = "recipe")]
    pub block_weights: Option<PathBuf>,
    /// Reproduce the merge a recipe.json describes (input hashes are checked).
    #[arg(long)]
    pub recipe: Option<PathBuf>,
    /// Output folder (a diffusers model folder plus recipe.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Remove the experts' channel-wise projections from the result, for a plain
    /// diffusers UNet2DModel; prints how much that changes the model's eps.
    #[arg(long)]
    pub drop_projections: bool,
}

fn method(args: &MergeArgs) -> Result<MergeMethod> {
    let only = |flag: &str, set: bool, m: &str| -> Result<()> {
        if set {
            bail!("{flag} only applies to --method {m}");
        }
        Ok(())
    };
    let is = |m: MethodArg| args.method == m;
    only(
        "--ties-k",
        args.ties_k.is_some() && !is(MethodArg::Ties),
        "ties",
    )?;
    only(
        "--ties-scale",
        args.ties_scale.is_some() && !is(MethodArg::Ties),
        "ties",
    )?;
    only(
        "--dare-p",
        args.dare_p.is_some() && !is(MethodArg::Dare),
        "dare",
    )?;
    Ok(match args.method {
        MethodArg::Ta => MergeMethod::TaskArithmetic,
        MethodArg::Ties => MergeMethod::Ties {
            k: args.ties_k.unwrap_or(DEFAULT_TIES_K),
            scale: args.ties_scale.unwrap_or(1.0),
        },
        MethodArg::Dare => MergeMethod::Dare {
            p: args.dare_p.unwrap_or(DEFAULT_DARE_P),
        },
    })
}

fn summary(r: &ExportReport) {
    eprintln!(
        "wrote the merged model ({} values) to {}\n  weights sha256 {}\n  recipe {}",
        r.num_values,
        r.dir.display(),
        r.result_sha256,
        r.recipe_path.display()
    );
    if let Some(p) = &r.projections {
        eprintln!("  projections: {}", p.in_words());
    }
    if let Some(d) = &r.dropped {
        eprintln!(
            "  dropped {} channel-wise projections: a plain diffusers UNet2DModel now, whose eps \
             differs from the merge with them by up to {:.2e} (mean {:.2e}) on {} N(0, 1) probe \
             images over the schedule",
            d.count, d.max_eps_diff, d.mean_eps_diff, PROBES
        );
    }
}

/// Runs `merge`.
pub fn run(args: MergeArgs) -> Result<()> {
    let mut progress = |stage: &str| eprintln!("merge: {stage}");
    if let Some(recipe) = &args.recipe {
        if args.ties_k.is_some()
            || args.ties_scale.is_some()
            || args.dare_p.is_some()
            || args.drop_projections
        {
            bail!(
                "--recipe takes its settings from the recipe: drop \
                 --ties-k/--ties-scale/--dare-p/--drop-projections"
            );
        }
        let report = reproduce(recipe, &args.out, &mut progress)?;
        summary(&report);
        return match report.matches_recorded {
            Some(true) => {
                eprintln!("the weights are identical to the recorded merge");
                Ok(())
            }
            Some(false) => bail!(
                "the reproduced weights differ from the ones the recipe recorded (sha256 {})",
                report.result_sha256
            ),
            None => Ok(()),
        };
    }
    let Some(base) = args.base.clone() else {
        bail!("give --base and --experts, or --recipe");
    };
    if args.experts.is_empty() {
        bail!("give the expert folders with --experts DIR1,DIR2,...");
    }
    if args.weights.len() != args.experts.len() {
        bail!(
            "--weights has {} values for {} experts: give one weight per expert",
            args.weights.len(),
            args.experts.len()
        );
    }
    let block_weights = match &args.block_weights {
        Some(p) => BlockWeights::read(p)?,
        None => BlockWeights::default(),
    };
    let job = MergeJob {
        base,
        experts: args.experts.clone(),
        spec: MergeSpec {
            method: method(&args)?,
            weights: args.weights.clone(),
            block_weights,
            seed: args.seed,
        },
        output: None,
        drop_projections: args.drop_projections,
    };
    let report = export_merge(&job, &args.out, &mut progress)?;
    summary(&report);
    Ok(())
}
