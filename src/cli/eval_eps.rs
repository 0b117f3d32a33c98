//! `deme-studio eval-eps`: the model's noise prediction for given `x` and `t`.

use super::resolve_device;
use crate::engine::checkpoint::{
    DType, HostTensor, TensorMap, read_safetensors, write_safetensors,
};
use crate::engine::device::DeviceChoice;
use crate::engine::store::load_model;
use anyhow::{Result, anyhow, bail};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use std::path::PathBuf;

/// Inputs evaluated in one batch.
const CHUNK: usize = 256;

/// Arguments of `eval-eps`.
#[derive(Debug, Args)]
pub struct EvalEpsArgs {
    /// Model folder or .safetensors with config.json beside it.
    #[arg(long)]
    pub model: PathBuf,
    /// safetensors with `x` [N,C,H,W] f32 and `t` [N] i64.
    #[arg(long)]
    pub input: PathBuf,
    /// Output safetensors with `eps` [N,C,H,W] f32.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `eval-eps`.
pub fn run(args: EvalEpsArgs, device: DeviceChoice) -> Result<()> {
    let compute = resolve_device(device)?;
    let dev = &compute.device;
    let loaded = load_model(&args.model, dev)?;
    let input = read_safetensors(&args.input)?;
    let get = |k: &str| {
        input
            .get(k)
            .ok_or_else(|| anyhow!("{}: no tensor `{k}`", args.input.display()))
    };
    let (x, t) = (get("x")?, get("t")?);
    let [c, h, w] = loaded.spec.item_shape();
    if x.shape.len() != 4 || x.shape[1..] != [c, h, w] {
        bail!(
            "`x` has shape {:?}, the model needs [N, {c}, {h}, {w}]",
            x.shape
        );
    }
    let n = x.shape[0];
    if t.dtype != DType::I64 || t.shape != [n] {
        bail!(
            "`t` must be i64 of shape [{n}], got {:?} {:?}",
            t.dtype,
            t.shape
        );
    }
    let ts: Vec<f32> = t
        .bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
        .collect();
    let xs = x.to_f32()?;
    let per = c * h * w;
    let mut eps = Vec::with_capacity(xs.len());
    // chunks bound the activations whatever the input's size
    for (xc, tc) in xs.chunks(CHUNK * per).zip(ts.chunks(CHUNK)) {
        let m = tc.len();
        let xt = Tensor::<4>::from_data(TensorData::new(xc.to_vec(), [m, c, h, w]), dev);
        eps.extend(
            loaded
                .model
                .eps(xt, tc)
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow!("{e:?}"))?,
        );
    }
    let mut out = TensorMap::new();
    out.insert("eps".into(), HostTensor::from_f32(vec![n, c, h, w], &eps)?);
    write_safetensors(&args.out, &out, None)?;
    eprintln!("wrote eps [{n}, {c}, {h}, {w}] to {}", args.out.display());
    Ok(())
}
