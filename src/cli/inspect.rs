//! `deme-studio inspect`: parameter table, totals and config of a checkpoint.

use crate::engine::checkpoint::{check_loadable_path, normalize_keys, read_safetensors};
use crate::engine::model_card::Projections;
use crate::engine::store::{META_FILE, load_model};
use anyhow::Result;
use burn::tensor::Device;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Model folder or .safetensors file.
    pub path: PathBuf,
}

/// Runs `inspect`: prints the table, the config and the metadata, then checks
/// that the weights load with the config beside them.
pub fn run(args: InspectArgs) -> Result<()> {
    let found = check_loadable_path(&args.path)?;
    let (weights, config) = (
        found.weights().to_path_buf(),
        found.config().map(|p| p.to_path_buf()),
    );
    let (tensors, style) = normalize_keys(read_safetensors(&weights)?)?;
    println!("weights: {} ({style:?} attention keys)", weights.display());
    let width = tensors.keys().map(|k| k.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<18} {:>10} {:>6} {:>12}",
        "name", "shape", "count", "dtype", "L2 norm"
    );
    let (mut total, mut bytes) = (0usize, 0usize);
    for (name, t) in &tensors {
        let n = t.numel();
        total += n;
        bytes += t.bytes.len();
        let norm = if t.is_float() {
            let v = t.to_f32()?;
            format!(
                "{:.4}",
                v.iter()
                    .map(|x| (*x as f64) * (*x as f64))
                    .sum::<f64>()
                    .sqrt()
            )
        } else {
            "-".into()
        };
        println!(
            "{name:<width$}  {:<18} {n:>10} {:>6} {norm:>12}",
            format!("{:?}", t.shape),
            format!("{:?}", t.dtype)
        );
    }
    println!(
        "{} tensors, {total} parameters, {:.2} MB",
        tensors.len(),
        bytes as f64 / 1e6
    );
    match Projections::of(&tensors)? {
        Some(p) => println!("projections: {}", p.in_words()),
        None if tensors.contains_key("conv_in.weight") => println!(
            "projections: none; a plain diffusers UNet2DModel (from_pretrained computes what \
             this tool computes)"
        ),
        None => {}
    }
    drop(tensors);
    if let Some(config) = &config {
        let text = deme_formats::input::read_text(config)?;
        println!("config ({}):\n{text}", config.display());
    }
    let meta = weights.with_file_name(META_FILE);
    if meta.exists() {
        println!(
            "metadata ({}):\n{}",
            meta.display(),
            deme_formats::input::read_text(&meta)?
        );
    }
    // with a config the checkpoint must load: weights that do not fit it (another
    // width or channel count) are an error naming the first tensor that differs
    if config.is_some() {
        load_model(&args.path, &Device::flex())?;
    }
    Ok(())
}
