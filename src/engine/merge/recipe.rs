//! Merge recipes and exports.
//!
//! Every exported merge is a checkpoint folder (weights, `config.json`,
//! `deme.json`, each written atomically) plus `recipe.json`, written last: the
//! inputs with the SHA-256 of their weights files, the method and its settings,
//! the weights, the per-block weights, the seed, and the SHA-256 of the result.
//! Paths in a recipe are relative to the recipe file (absolute when no relative
//! path exists). Reproducing a recipe checks the input hashes first and, since
//! the merge runs on the host in a fixed order and saves are deterministic,
//! writes bit-identical weights.
//!
//! A recipe may name an `output` sub-folder; it is always taken inside the
//! folder the user chose, and `..` or absolute paths are refused.

use super::arithmetic::merge_host;
use super::drop_projections::{DroppedProjections, drop_projections};
use super::method::MergeSpec;
use super::task_vector::{HostTaskVectors, LabeledParams};
use crate::engine::checkpoint::metadata::now_unix;
use crate::engine::checkpoint::{CheckpointMeta, content_hash, write_atomic_bytes};
use crate::engine::model_card::Projections;
use crate::engine::store::{LoadedModel, load_model, save_model_folder};
use anyhow::{Context, Result, anyhow, bail};
use burn::tensor::Device;
pub use deme_formats::merge::recipe_file::{
    RECIPE_FILE, RECIPE_FORMAT_VERSION, Recipe, RecipeInput, safe_relative,
};
use std::path::{Component, Path, PathBuf};

/// `to` relative to the directory `from` (both made absolute); `to` itself,
/// absolute, when they share no root.
fn relative_to(from: &Path, to: &Path) -> Result<String> {
    let abs = |p: &Path| {
        p.canonicalize()
            .with_context(|| format!("resolving {}", p.display()))
    };
    let (from, to) = (abs(from)?, abs(to)?);
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let rel = if common == 0 {
        to.clone()
    } else {
        let mut rel = PathBuf::new();
        for _ in common..a.len() {
            rel.push("..");
        }
        for c in &b[common..] {
            rel.push(c);
        }
        if rel.as_os_str().is_empty() {
            rel.push(".");
        }
        rel
    };
    rel.to_str()
        .map(|s| s.replace('\\', "/"))
        .ok_or_else(|| anyhow!("{} is not valid UTF-8", rel.display()))
}

/// A merge of model folders.
#[derive(Debug, Clone)]
pub struct MergeJob {
    /// The pretrained model.
    pub base: PathBuf,
    /// The experts.
    pub experts: Vec<PathBuf>,
    /// What to compute.
    pub spec: MergeSpec,
    /// Sub-folder recorded in the recipe (see [`Recipe::output`]).
    pub output: Option<String>,
    /// Export a plain diffusers UNet: the channel-wise projections removed,
    /// with the eps difference measured (see [`drop_projections`]).
    pub drop_projections: bool,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// Its `recipe.json`.
    pub recipe_path: PathBuf,
    /// SHA-256 of the merged weights file.
    pub result_sha256: String,
    /// Number of parameter values merged.
    pub num_values: usize,
    /// For a reproduction: whether the result equals the recipe's recorded one
    /// (`None` when the recipe recorded none).
    pub matches_recorded: Option<bool>,
    /// The merged model's channel-wise projections, if it has any.
    pub projections: Option<Projections>,
    /// What `drop_projections` removed and changed.
    pub dropped: Option<DroppedProjections>,
}

fn load(label: &str, path: &Path, device: &Device) -> Result<LoadedModel> {
    load_model(path, device).with_context(|| format!("loading {label} {}", path.display()))
}

/// Hashes, loads and merges `job`, and exports the result into `out_dir`.
/// `progress` gets one line per stage.
pub fn export_merge(
    job: &MergeJob,
    out_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ExportReport> {
    job.spec.validate(job.experts.len())?;
    progress("hashing inputs");
    let base_hash =
        content_hash(&job.base).with_context(|| format!("reading base {}", job.base.display()))?;
    let expert_hashes = job
        .experts
        .iter()
        .map(|p| content_hash(p).with_context(|| format!("reading expert {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    export_hashed(job, &base_hash, &expert_hashes, out_dir, progress)
}

fn export_hashed(
    job: &MergeJob,
    base_hash: &str,
    expert_hashes: &[String],
    out_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ExportReport> {
    refuse_overwriting_inputs(out_dir, job)?;
    // The host path on the CPU: the same bits on every machine.
    let device = Device::flex();
    progress(&format!("loading base {}", job.base.display()));
    let base = load("base", &job.base, &device)?;
    let base_label = job.base.display().to_string();
    let base_params = LabeledParams::new(&base_label, base.model.export());
    let mut experts = Vec::with_capacity(job.experts.len());
    for (i, path) in job.experts.iter().enumerate() {
        progress(&format!(
            "loading expert {}/{} {}",
            i + 1,
            job.experts.len(),
            path.display()
        ));
        let e = load("expert", path, &device)?;
        if e.spec != base.spec {
            bail!(
                "expert {} ({}) has another config.json than the base ({}): merging needs one architecture",
                i + 1,
                path.display(),
                job.base.display()
            );
        }
        experts.push(LabeledParams::new(
            path.display().to_string(),
            e.model.export(),
        ));
    }
    progress("computing task vectors");
    let tv = HostTaskVectors::new(base_params, experts)?;
    progress(&format!("merging ({})", job.spec.method.name()));
    let merged = merge_host(&tv, &job.spec)?;
    drop(tv);
    let mut merged = merged;
    let dropped = if job.drop_projections {
        progress("dropping the projections (measuring what that changes)");
        Some(drop_projections(&base.spec, &mut merged, &device)?)
    } else {
        None
    };
    let num_values = merged.iter().map(|(_, _, v)| v.len()).sum();
    let projections = Projections::of_params(&merged);

    progress(&format!("writing {}", out_dir.display()));
    let mut recipe = Recipe {
        format_version: RECIPE_FORMAT_VERSION,
        base: RecipeInput {
            path: String::new(),
            sha256: base_hash.to_string(),
        },
        experts: expert_hashes
            .iter()
            .map(|h| RecipeInput {
                path: String::new(),
                sha256: h.clone(),
            })
            .collect(),
        method: job.spec.method,
        weights: job.spec.weights.clone(),
        block_weights: job.spec.block_weights.clone(),
        seed: job.spec.seed,
        output: job.output.clone(),
        drop_projections: job.drop_projections,
        result_sha256: None,
        created_with: Some(format!("deme-studio {}", env!("CARGO_PKG_VERSION"))),
    };
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    recipe.base.path = relative_to(out_dir, &job.base)?;
    for (r, p) in recipe.experts.iter_mut().zip(&job.experts) {
        r.path = relative_to(out_dir, p)?;
    }
    let mut meta = CheckpointMeta::new("merge", 0);
    meta.parent = Some(format!("sha256:{base_hash}"));
    meta.created_unix = now_unix();
    meta.train_config = serde_json::to_value(&recipe)?;
    save_model_folder(
        out_dir,
        &base.spec,
        merged,
        &base.dtypes,
        base.key_style,
        Some(&meta),
    )?;
    let result_sha256 = content_hash(out_dir)?;
    recipe.result_sha256 = Some(result_sha256.clone());
    let recipe_path = out_dir.join(RECIPE_FILE);
    write_atomic_bytes(&recipe_path, recipe.to_json_string_pretty()?.as_bytes())?;
    Ok(ExportReport {
        dir: out_dir.to_path_buf(),
        recipe_path,
        result_sha256,
        num_values,
        matches_recorded: None,
        projections,
        dropped,
    })
}

/// Refuses an output folder that is one of the input model folders.
fn refuse_overwriting_inputs(out_dir: &Path, job: &MergeJob) -> Result<()> {
    let Ok(out) = out_dir.canonicalize() else {
        return Ok(()); // a new folder cannot be an input
    };
    for input in std::iter::once(&job.base).chain(&job.experts) {
        let Ok(p) = input.canonicalize() else {
            continue;
        };
        let dir = if p.is_file() {
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            p
        };
        if dir == out {
            bail!(
                "the output folder {} is the input model {}: choose another folder",
                out_dir.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// Re-runs the merge `recipe_path` describes into `chosen_out` (or its
/// `output` sub-folder), after checking every input's hash.
pub fn reproduce(
    recipe_path: &Path,
    chosen_out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<ExportReport> {
    let recipe = Recipe::read(recipe_path)?;
    let dir = recipe_path.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let out_dir = recipe.output_dir(chosen_out)?;
    let resolve = |input: &RecipeInput| -> PathBuf {
        let p = Path::new(&input.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            dir.join(p)
        }
    };
    let base = resolve(&recipe.base);
    let experts: Vec<PathBuf> = recipe.experts.iter().map(resolve).collect();
    progress("checking input hashes");
    let check = |what: &str, path: &Path, want: &str| -> Result<String> {
        let got = content_hash(path)
            .with_context(|| format!("reading {what} {} named by the recipe", path.display()))?;
        if !got.eq_ignore_ascii_case(want) {
            bail!(
                "{what} {} does not match the recipe: its weights hash to sha256 {got}, the recipe expects {want} (the file changed since the merge was made)",
                path.display()
            );
        }
        Ok(got)
    };
    let base_hash = check("base", &base, &recipe.base.sha256)?;
    let expert_hashes = experts
        .iter()
        .zip(&recipe.experts)
        .enumerate()
        .map(|(i, (p, r))| check(&format!("expert {}", i + 1), p, &r.sha256))
        .collect::<Result<Vec<_>>>()?;
    check_inside(chosen_out, &out_dir)?;
    let job = MergeJob {
        base,
        experts,
        spec: recipe.spec(),
        output: recipe.output.clone(),
        drop_projections: recipe.drop_projections,
    };
    let mut report = export_hashed(&job, &base_hash, &expert_hashes, &out_dir, progress)?;
    report.matches_recorded = recipe
        .result_sha256
        .as_ref()
        .map(|h| h.eq_ignore_ascii_case(&report.result_sha256));
    Ok(report)
}

/// Checks that `out_dir`, with links resolved, lies inside `chosen`, then creates
/// it. The check looks at the deepest part of `out_dir` that already exists before
/// anything is created, so a link inside the chosen folder that points elsewhere
/// never gets a folder made through it.
fn check_inside(chosen: &Path, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(chosen).with_context(|| format!("creating {}", chosen.display()))?;
    let c = chosen
        .canonicalize()
        .with_context(|| format!("resolving {}", chosen.display()))?;
    let outside = || {
        anyhow!(
            "the recipe's output {} resolves outside the chosen folder {}",
            out_dir.display(),
            chosen.display()
        )
    };
    let existing = crate::engine::output::deepest_existing(out_dir);
    let e = existing
        .canonicalize()
        .with_context(|| format!("resolving {}", existing.display()))?;
    if !e.starts_with(&c) {
        return Err(outside());
    }
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let o = out_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", out_dir.display()))?;
    if !o.starts_with(&c) {
        return Err(outside());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn no_folder_is_made_through_a_link_that_leads_outside() {
        let tmp = tempfile::tempdir().unwrap();
        let chosen = tmp.path().join("chosen");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&chosen).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, chosen.join("link")).unwrap();
        let e = check_inside(&chosen, &chosen.join("link/merged")).unwrap_err();
        assert!(e.to_string().contains("resolves outside"), "{e}");
        assert!(
            !elsewhere.join("merged").exists(),
            "a folder was made outside"
        );
        check_inside(&chosen, &chosen.join("inside/merged")).unwrap();
        assert!(chosen.join("inside/merged").is_dir());
    }

    fn recipe_json(output: &str) -> String {
        format!(
            r#"{{"format_version": 1, "base": {{"path": "b", "sha256": "00"}},
               "experts": [{{"path": "e", "sha256": "11"}}], "method": {{"name": "ta"}},
               "weights": [0.5], "seed": 0{output}}}"#
        )
    }

    #[test]
    fn escaping_outputs_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/x", "a/.."] {
            let text = recipe_json(&format!(r#", "output": {bad:?}"#));
            let msg = format!("{:#}", Recipe::from_json_str(&text).unwrap_err());
            assert!(
                msg.contains("leaves the chosen output folder"),
                "{bad}: {msg}"
            );
        }
        let r = Recipe::from_json_str(&recipe_json(r#", "output": "./runs/m1""#)).unwrap();
        assert_eq!(
            r.output_dir(Path::new("/tmp/out")).unwrap(),
            Path::new("/tmp/out/runs/m1")
        );
        let r = Recipe::from_json_str(&recipe_json("")).unwrap();
        assert_eq!(r.output_dir(Path::new("o")).unwrap(), Path::new("o"));
    }

    #[test]
    fn bad_recipes_are_refused() {
        let newer = recipe_json("").replace("\"format_version\": 1", "\"format_version\": 9");
        assert!(format!("{:#}", Recipe::from_json_str(&newer).unwrap_err()).contains("newer"));
        let two = recipe_json("").replace("[0.5]", "[0.5, 0.5]");
        assert!(Recipe::from_json_str(&two).is_err());
    }

    #[test]
    fn relative_paths_walk_up_from_the_recipe() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("merges").join("m1");
        let base = root.path().join("models").join("base");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&base).unwrap();
        assert_eq!(relative_to(&out, &base).unwrap(), "../../models/base");
        assert_eq!(relative_to(&out, &out).unwrap(), ".");
    }
}
