//! What the report measures of one model for one seed: its per-sample held-out losses
//! on the report's evaluation set, and the sample metric's features of the images it
//! generates from the shared initial noise. Kept on disk (the numbers bit for bit, in
//! safetensors), so that a resumed run samples no model twice and reports the same.

use crate::engine::checkpoint::{
    DType, HostTensor, TensorMap, read_safetensors, write_atomic_bytes, write_safetensors,
};
use crate::engine::eval::EvalLosses;
use crate::engine::metric::features::FEATURE_DIM;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One model's measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurements {
    /// Row name.
    pub name: String,
    /// What was measured and how: the models' content hashes and the evaluation
    /// settings. A stored measurement with another key is stale and taken again.
    pub key: String,
    /// Per-sample held-out losses.
    pub losses: EvalLosses,
    /// Row-major `[n, FEATURE_DIM]` features of its generated images (None without the metric).
    pub features: Option<Vec<f32>>,
    /// Frechet distance of those images to the held-out set.
    pub frechet: Option<f64>,
}

/// The text part of a stored measurement; the numbers live in the safetensors file,
/// bit for bit.
#[derive(Serialize, Deserialize)]
struct Header {
    name: String,
    key: String,
    num_train_timesteps: usize,
}

fn f64_tensor(values: &[f64]) -> Result<HostTensor> {
    let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    HostTensor::new(DType::F64, vec![values.len()], bytes)
}

fn f64_values(t: &HostTensor) -> Result<Vec<f64>> {
    if t.dtype != DType::F64 {
        bail!("expected float64 values, found {}", t.dtype.name());
    }
    Ok(t.bytes
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect())
}

impl Measurements {
    fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        (
            dir.join(format!("{name}.json")),
            dir.join(format!("{name}.safetensors")),
        )
    }

    /// Writes `dir/NAME.safetensors` (losses, timesteps, features, distance) and then
    /// `dir/NAME.json` (name and key), so a JSON on disk always has its numbers.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (json, numbers) = Self::paths(dir, &self.name);
        let mut map = TensorMap::new();
        map.insert("loss".into(), f64_tensor(&self.losses.loss)?);
        let t: Vec<f64> = self.losses.t.iter().map(|&t| t as f64).collect();
        map.insert("t".into(), f64_tensor(&t)?);
        if let Some(f) = &self.features {
            map.insert(
                "features".into(),
                HostTensor::from_f32(vec![f.len() / FEATURE_DIM, FEATURE_DIM], f)?,
            );
        }
        if let Some(fd) = self.frechet {
            map.insert("frechet".into(), f64_tensor(&[fd])?);
        }
        write_safetensors(&numbers, &map, None)?;
        let header = Header {
            name: self.name.clone(),
            key: self.key.clone(),
            num_train_timesteps: self.losses.num_train_timesteps,
        };
        write_atomic_bytes(&json, serde_json::to_string(&header)?.as_bytes())
    }

    /// Reads what [`Self::save`] wrote, or `None` when it was never written.
    pub fn load(dir: &Path, name: &str) -> Result<Option<Self>> {
        let (json, numbers) = Self::paths(dir, name);
        if !json.exists() {
            return Ok(None);
        }
        let text = deme_formats::input::read_text(&json)?;
        let header: Header = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a measurement", json.display()))?;
        let map = read_safetensors(&numbers)?;
        let get = |k: &str| {
            map.get(k)
                .ok_or_else(|| anyhow!("{}: no tensor `{k}`", numbers.display()))
        };
        let loss = f64_values(get("loss")?)?;
        let t: Vec<usize> = f64_values(get("t")?)?.iter().map(|&v| v as usize).collect();
        if t.len() != loss.len() {
            bail!(
                "{}: {} timesteps for {} losses",
                numbers.display(),
                t.len(),
                loss.len()
            );
        }
        let features = match map.get("features") {
            Some(f) => Some(f.to_f32()?),
            None => None,
        };
        let frechet = match map.get("frechet") {
            Some(f) => f64_values(f)?.first().copied(),
            None => None,
        };
        Ok(Some(Self {
            name: header.name,
            key: header.key,
            losses: EvalLosses {
                t,
                loss,
                num_train_timesteps: header.num_train_timesteps,
            },
            features,
            frechet,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measurements_round_trip_with_their_features() {
        let dir = tempfile::tempdir().unwrap();
        let m = Measurements {
            name: "merged".into(),
            key: "k".into(),
            losses: EvalLosses {
                t: vec![5, 500],
                loss: vec![0.123456789012345, 0.01],
                num_train_timesteps: 1000,
            },
            features: Some((0..2 * FEATURE_DIM).map(|v| v as f32 * 0.5).collect()),
            frechet: Some(3.25),
        };
        m.save(dir.path()).unwrap();
        assert_eq!(Measurements::load(dir.path(), "merged").unwrap(), Some(m));
        assert_eq!(Measurements::load(dir.path(), "other").unwrap(), None);
        let bare = Measurements {
            name: "bare".into(),
            features: None,
            frechet: None,
            ..Measurements::load(dir.path(), "merged").unwrap().unwrap()
        };
        bare.save(dir.path()).unwrap();
        assert_eq!(Measurements::load(dir.path(), "bare").unwrap(), Some(bare));
    }
}
