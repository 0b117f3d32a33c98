//! Starting a run: fresh from a model, or resumed from a run folder's train state.

use super::adamw::{AdamW, AdamWConfig};
use super::train_config::TrainConfig;
use crate::engine::checkpoint::read_meta;
use crate::engine::model::EpsModel;
use crate::engine::store::{META_FILE, bind_tensors, load_train_state};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use std::path::Path;

/// Where a run starts from.
pub struct RunStart<M> {
    /// Weights being trained (on an autodiff device).
    pub model: M,
    /// EMA weights (plain device).
    pub ema: M,
    /// Optimizer state.
    pub optimizer: AdamW,
    /// Steps already done.
    pub step: u64,
}

/// A fresh run: `model` is copied for the EMA and moved to the autodiff device.
pub fn fresh_run<M: EpsModel>(model: M, config: &TrainConfig, device: &Device) -> RunStart<M> {
    fresh_start(model, config.adamw, device)
}

/// A fresh run of any kind: `model` is copied for the EMA and moved to the autodiff device.
pub fn fresh_start<M: EpsModel>(model: M, adamw: AdamWConfig, device: &Device) -> RunStart<M> {
    RunStart {
        ema: model.clone(),
        model: model.to_device(&device.clone().autodiff()).train(),
        optimizer: AdamW::new(adamw),
        step: 0,
    }
}

/// Resumes the run saved in `dir`; `template` gives the architecture.
pub fn resume_run<M: EpsModel>(
    template: M,
    dir: &Path,
    config: &TrainConfig,
    device: &Device,
) -> Result<RunStart<M>> {
    resume_start(template, dir, config.adamw, device)
}

/// Resumes a run of any kind saved in `dir`; `template` gives the architecture.
pub fn resume_start<M: EpsModel>(
    template: M,
    dir: &Path,
    adamw: AdamWConfig,
    device: &Device,
) -> Result<RunStart<M>> {
    let Some(state) = load_train_state(dir)? else {
        bail!(
            "{} holds no train_state.safetensors to resume from",
            dir.display()
        );
    };
    let meta_path = dir.join(META_FILE);
    if meta_path.exists() {
        let meta = read_meta(&meta_path)?;
        if meta.step != state.step {
            bail!(
                "{}: the train state is at step {} but {META_FILE} says step {}; the folder \
                 was changed after its last save, so resuming could overwrite newer weights \
                 with older ones (remove {META_FILE} to resume from the train state anyway)",
                dir.display(),
                state.step,
                meta.step
            );
        }
    }
    let ema = bind_tensors(template.clone(), &state.ema).context("restoring EMA weights")?;
    let model = bind_tensors(template, &state.model).context("restoring weights")?;
    let model = model.to_device(&device.clone().autodiff()).train();
    let mut optimizer = AdamW::new(adamw);
    optimizer.import(&model, state.adam_step, state.moments)?;
    Ok(RunStart {
        model,
        ema,
        optimizer,
        step: state.step,
    })
}
