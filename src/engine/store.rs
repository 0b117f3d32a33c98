//! Models on disk: binds the model trees to checkpoint folders.
//!
//! A checkpoint is a diffusers model folder (`config.json` +
//! `diffusion_pytorch_model.safetensors`), plus our `deme.json` metadata and, for
//! resumable runs, `train_state.safetensors` (raw weights, EMA weights, AdamW
//! moments and the step, in one file so a resume always sees one consistent state).

use crate::engine::checkpoint::{
    CheckpointMeta, DType, FolderSave, HostTensor, KeyStyle, TensorMap, check_loadable_path,
    normalize_keys, read_meta, read_safetensors, safetensors_metadata, to_style,
    write_atomic_bytes, write_meta, write_safetensors,
};
use crate::engine::merge::structure::is_projection_key;
use crate::engine::model::params::NamedParam;
use crate::engine::model::{export_params, import_params};
use crate::engine::model_card::{
    CARD_FILE, CARD_MARKER, LOADER_FILE, LOADER_PY, Projections, model_card,
};
pub use crate::engine::model_spec::{AnyModel, ModelSpec};
use crate::engine::train::adamw::AdamW;
use anyhow::{Context, Result, anyhow, bail};
use burn::module::Module;
use burn::tensor::Device;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// File name of the weights in a diffusers model folder.
pub const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";
/// File name of the resumable training state.
pub const TRAIN_STATE_FILE: &str = "train_state.safetensors";
/// File name of our metadata.
pub const META_FILE: &str = "deme.json";

/// A model loaded from disk, with what is needed to write it back unchanged.
pub struct LoadedModel {
    /// Architecture.
    pub spec: ModelSpec,
    /// Weights on the device.
    pub model: AnyModel,
    /// Attention key naming of the file (kept on save).
    pub key_style: KeyStyle,
    /// Original dtype of each tensor (kept on save).
    pub dtypes: BTreeMap<String, DType>,
    /// Our metadata, when the folder has it.
    pub meta: Option<CheckpointMeta>,
    /// The weights file read.
    pub weights_path: PathBuf,
}

impl LoadedModel {
    /// The timestep range `[lo, hi)` its `deme.json` says it was finetuned on.
    pub fn timestep_range(&self) -> Option<[usize; 2]> {
        self.meta.as_ref().and_then(|m| m.timestep_range)
    }
}

/// Fills `model` from `tensors` (modern keys), requiring an exact key match.
pub fn bind_tensors<M: Module>(model: M, tensors: &TensorMap) -> Result<M> {
    let mut used = BTreeSet::new();
    let model = import_params(model, &mut |key, shape| {
        let t = tensors.get(key).ok_or_else(|| {
            anyhow!("the checkpoint has no tensor `{key}` (expected shape {shape:?})")
        })?;
        if t.shape != shape {
            bail!(
                "tensor `{key}` has shape {:?}, the model expects {shape:?}",
                t.shape
            );
        }
        used.insert(key.to_string());
        t.to_f32()
    })?;
    if let Some(extra) = tensors.keys().find(|k| !used.contains(*k)) {
        bail!(
            "the checkpoint has a tensor `{extra}` that this model does not have (a different architecture?)"
        );
    }
    Ok(model)
}

fn has_projections(tensors: &TensorMap) -> bool {
    tensors.keys().any(|k| is_projection_key(k))
}

/// Loads a model folder (diffusers or ours) or a bare `.safetensors` with a config
/// beside it; pickles are refused.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    let found = check_loadable_path(path)?;
    let weights = found.weights().to_path_buf();
    let config = found.config().map(Path::to_path_buf).ok_or_else(|| {
        anyhow!(
            "{}: no config.json beside the weights; put the model's diffusers config.json next to it",
            weights.display()
        )
    })?;
    let text = deme_formats::input::read_text(&config)?;
    let spec =
        ModelSpec::from_config_json(&text).with_context(|| format!("in {}", config.display()))?;
    let raw = read_safetensors(&weights)?;
    let (tensors, key_style) = normalize_keys(raw)?;
    for (k, t) in &tensors {
        if t.dtype.is_float()
            && let Some(bad) = t.to_f32()?.into_iter().find(|x| !x.is_finite())
        {
            bail!(
                "{}: the weights hold {bad} in `{k}`; a model with NaN or infinite weights \
                 cannot be sampled, merged or measured",
                weights.display()
            );
        }
    }
    let dtypes = tensors.iter().map(|(k, t)| (k.clone(), t.dtype)).collect();
    // weights that do not fit the config (another width, channel count or block
    // layout): the error names both files and the first tensor that differs
    let misfit = || {
        format!(
            "the weights in {} do not fit {}",
            weights.display(),
            config.display()
        )
    };
    let model = match (&spec, spec.build(0, device)?) {
        (ModelSpec::UNet(c), AnyModel::UNet(m)) => {
            let m = if has_projections(&tensors) {
                m.with_projections(c, device)
            } else {
                m
            };
            AnyModel::UNet(bind_tensors(m, &tensors).with_context(misfit)?)
        }
        (_, AnyModel::Mlp(m)) => AnyModel::Mlp(bind_tensors(m, &tensors).with_context(misfit)?),
        _ => unreachable!("build follows the spec"),
    };
    let dir = weights.parent().unwrap_or(Path::new("."));
    let meta_path = dir.join(META_FILE);
    let meta = if meta_path.exists() {
        Some(read_meta(&meta_path)?)
    } else {
        None
    };
    Ok(LoadedModel {
        spec,
        model,
        key_style,
        dtypes,
        meta,
        weights_path: weights,
    })
}

/// Host tensors of a model, each in its recorded dtype (f32 when unrecorded).
pub fn to_tensor_map(
    params: Vec<NamedParam>,
    dtypes: &BTreeMap<String, DType>,
) -> Result<TensorMap> {
    params
        .into_iter()
        .map(|(k, shape, v)| {
            let dtype = dtypes.get(&k).copied().unwrap_or(DType::F32);
            let t = HostTensor::from_f32_as(dtype, shape, &v)?;
            Ok((k, t))
        })
        .collect()
}

/// Writes a model folder: weights, config.json and (when given) deme.json,
/// appearing together (see [`FolderSave`]).
pub fn save_model_folder(
    dir: &Path,
    spec: &ModelSpec,
    params: Vec<NamedParam>,
    dtypes: &BTreeMap<String, DType>,
    key_style: KeyStyle,
    meta: Option<&CheckpointMeta>,
) -> Result<()> {
    if let Some((k, bad)) = first_non_finite(&params) {
        bail!(
            "the model for {} holds {bad} in `{k}`; not written (a merge with very large \
             weights, or a diverged run, gives such a model)",
            dir.display()
        );
    }
    let mut save = FolderSave::begin(dir)?;
    write_model_files(&mut save, spec, params, dtypes, key_style, meta)?;
    save.commit().map(drop)
}

/// The first parameter holding NaN or an infinity, and that value.
pub fn first_non_finite(params: &[NamedParam]) -> Option<(&str, f32)> {
    params.iter().find_map(|(k, _, v)| {
        v.iter()
            .find(|x| !x.is_finite())
            .map(|&bad| (k.as_str(), bad))
    })
}

/// The files of a model folder, written into a save in progress: weights
/// first, then `config.json`, then `deme.json`. A model with channel-wise
/// projections also gets the diffusers loader and its model card (see
/// [`crate::engine::model_card`]); one without has any left from an earlier
/// save removed (a card the user wrote is kept).
fn write_model_files(
    save: &mut FolderSave,
    spec: &ModelSpec,
    params: Vec<NamedParam>,
    dtypes: &BTreeMap<String, DType>,
    key_style: KeyStyle,
    meta: Option<&CheckpointMeta>,
) -> Result<()> {
    let tensors = to_style(to_tensor_map(params, dtypes)?, key_style);
    let projections = Projections::of(&tensors)?;
    write_safetensors(save.path(WEIGHTS_FILE)?, &tensors, None)?;
    drop(tensors);
    write_atomic_bytes(save.path("config.json")?, spec.to_config_json()?.as_bytes())?;
    if let Some(meta) = meta {
        write_meta(save.path(META_FILE)?, meta)?;
    }
    let card_path = save.target().join(CARD_FILE);
    let our_card = std::fs::read_to_string(&card_path).is_ok_and(|t| t.starts_with(CARD_MARKER));
    match projections {
        Some(p) => {
            write_atomic_bytes(save.path(LOADER_FILE)?, LOADER_PY.as_bytes())?;
            if our_card || !card_path.exists() {
                let card = model_card(spec, meta, &p);
                write_atomic_bytes(save.path(CARD_FILE)?, card.as_bytes())?;
            }
        }
        None => {
            save.remove(LOADER_FILE)?;
            if our_card {
                save.remove(CARD_FILE)?;
            }
        }
    }
    Ok(())
}

/// What a resumable run keeps besides its published weights.
pub struct TrainState<'a, M> {
    /// The raw (non-EMA) weights.
    pub model: &'a M,
    /// The optimizer.
    pub optimizer: &'a AdamW,
}

/// A checkpoint of a training run.
pub struct RunCheckpoint<'a, M> {
    /// Architecture.
    pub spec: &'a ModelSpec,
    /// The weights to publish (EMA when enabled).
    pub weights: &'a M,
    /// "pretrain", "finetune", ...
    pub kind: &'a str,
    /// Steps done.
    pub step: u64,
    /// Timestep range the weights were trained on, when restricted.
    pub timestep_range: Option<[usize; 2]>,
    /// Data description.
    pub data: Option<String>,
    /// The run's settings.
    pub train_config: serde_json::Value,
    /// The checkpoint the run started from (a path), if any.
    pub parent: Option<String>,
    /// Resumable state (raw weights, EMA weights = `weights`, optimizer).
    pub state: Option<TrainState<'a, M>>,
}

impl<M: Module> RunCheckpoint<'_, M> {
    /// Writes the folder: train state, weights, config and metadata appear
    /// together (see [`FolderSave`]).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let published = export_params(self.weights);
        if let Some((k, bad)) = first_non_finite(&published) {
            bail!(
                "the weights hold {bad} in `{k}` at step {}; not saved, the previous checkpoint in {} is intact",
                self.step,
                dir.display()
            );
        }
        let mut save = FolderSave::begin(dir)?;
        if let Some(state) = &self.state {
            let mut map = TensorMap::new();
            for (k, shape, v) in export_params(state.model) {
                map.insert(format!("model.{k}"), HostTensor::from_f32(shape, &v)?);
            }
            let shapes: BTreeMap<&str, &Vec<usize>> =
                published.iter().map(|(k, s, _)| (k.as_str(), s)).collect();
            for (k, shape, v) in &published {
                map.insert(format!("ema.{k}"), HostTensor::from_f32(shape.clone(), v)?);
            }
            for (k, m, v) in state.optimizer.export() {
                let shape = shapes
                    .get(k.as_str())
                    .map(|s| (*s).clone())
                    .unwrap_or(vec![m.len()]);
                map.insert(
                    format!("adam_m.{k}"),
                    HostTensor::from_f32(shape.clone(), &m)?,
                );
                map.insert(format!("adam_v.{k}"), HostTensor::from_f32(shape, &v)?);
            }
            let mut md = BTreeMap::new();
            md.insert("step".to_string(), self.step.to_string());
            md.insert("adam_step".to_string(), state.optimizer.step.to_string());
            write_safetensors(save.path(TRAIN_STATE_FILE)?, &map, Some(md))?;
        }
        let meta = CheckpointMeta {
            format_version: 1,
            kind: self.kind.to_string(),
            step: self.step,
            timestep_range: self.timestep_range,
            data: self.data.clone(),
            train_config: self.train_config.clone(),
            parent: self.parent.clone(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            notes: None,
        };
        write_model_files(
            &mut save,
            self.spec,
            published,
            &BTreeMap::new(),
            KeyStyle::Modern,
            Some(&meta),
        )?;
        save.commit().map(drop)
    }
}

/// Resumable state read back from `train_state.safetensors`.
pub struct ResumeState {
    /// Steps done.
    pub step: u64,
    /// AdamW's own step count.
    pub adam_step: u64,
    /// Raw weights.
    pub model: TensorMap,
    /// EMA weights.
    pub ema: TensorMap,
    /// `(key, m, v)`.
    pub moments: Vec<(String, Vec<f32>, Vec<f32>)>,
}

/// Reads the resumable state of a run folder, if it has one.
pub fn load_train_state(dir: &Path) -> Result<Option<ResumeState>> {
    let path = dir.join(TRAIN_STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let md = safetensors_metadata(&path)?.unwrap_or_default();
    let num = |k: &str| -> Result<u64> {
        md.get(k)
            .ok_or_else(|| anyhow!("{}: metadata has no `{k}`", path.display()))?
            .parse()
            .with_context(|| format!("{}: bad `{k}`", path.display()))
    };
    let (step, adam_step) = (num("step")?, num("adam_step")?);
    let mut state = ResumeState {
        step,
        adam_step,
        model: TensorMap::new(),
        ema: TensorMap::new(),
        moments: Vec::new(),
    };
    let mut m_map = BTreeMap::new();
    let mut v_map = BTreeMap::new();
    for (k, t) in read_safetensors(&path)? {
        if let Some(rest) = k.strip_prefix("model.") {
            state.model.insert(rest.to_string(), t);
        } else if let Some(rest) = k.strip_prefix("ema.") {
            state.ema.insert(rest.to_string(), t);
        } else if let Some(rest) = k.strip_prefix("adam_m.") {
            m_map.insert(rest.to_string(), t.to_f32()?);
        } else if let Some(rest) = k.strip_prefix("adam_v.") {
            v_map.insert(rest.to_string(), t.to_f32()?);
        } else {
            bail!("{}: unexpected tensor `{k}`", path.display());
        }
    }
    for (k, m) in m_map {
        let v = v_map.remove(&k).ok_or_else(|| {
            anyhow!(
                "{}: `adam_m.{k}` has no matching `adam_v.{k}`",
                path.display()
            )
        })?;
        state.moments.push((k, m, v));
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_holding_nan_is_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = ModelSpec::Mlp(crate::engine::model::ToyMlpConfig::default());
        let mut params = spec.build(0, &Device::flex()).unwrap().export();
        params[1].2[3] = f32::INFINITY;
        let key = params[1].0.clone();
        let dir = tmp.path().join("m");
        let e = save_model_folder(
            &dir,
            &spec,
            params,
            &BTreeMap::new(),
            KeyStyle::Modern,
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("inf in `{key}`; not written")), "{e}");
        assert!(!dir.exists());
    }
}
