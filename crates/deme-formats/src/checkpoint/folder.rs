//! A whole checkpoint: diffusers model folder (or bare safetensors file)
//! in, diffusers model folder out.
//!
//! Loading normalises attention keys to the modern style and remembers the
//! style the file used; saving writes it back in that style, so a user's
//! legacy-named checkpoint stays legacy-named. Saving writes, each
//! atomically and in this order, `diffusion_pytorch_model.safetensors`,
//! `config.json`, then `deme.json` (see [`super::atomic`] for what that
//! guarantees).

use super::atomic::write_atomic_bytes;
use super::folder_swap::FolderSave;
use super::host_tensor::{HostTensor, TensorMap};
use super::keys::{KeyStyle, normalize_keys, style_key};
use super::metadata::{CheckpointMeta, META_FILE_NAME, read_meta};
use super::refuse::{CONFIG_NAME, WEIGHTS_NAME, check_loadable_path};
use super::safetensors_io::{read_safetensors, write_entries};
use super::unet_config::{UNet2DConfig, load_config};
use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// A checkpoint in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointFolder {
    /// The model config; `None` for a bare safetensors file (the caller
    /// infers one from the tensor shapes or asks the user).
    pub config: Option<UNet2DConfig>,
    /// The weights, keys in the modern attention style.
    pub tensors: TensorMap,
    /// The attention key style of the file (used again when saving).
    pub key_style: KeyStyle,
    /// deme-studio's `deme.json`, if the folder has one.
    pub meta: Option<CheckpointMeta>,
}

impl CheckpointFolder {
    /// Loads a diffusers model folder, a pipeline folder's `unet/`, or a
    /// bare `.safetensors` file (see [`check_loadable_path`]; pickle
    /// checkpoints are refused). The config is parsed but not validated:
    /// call [`UNet2DConfig::validate`] before building a model.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let wp = check_loadable_path(path)?;
        let config = wp.config().map(load_config).transpose()?;
        let weights = wp.weights();
        let (tensors, key_style) = normalize_keys(read_safetensors(weights)?)
            .map_err(|e| anyhow!("{}: {e:#}", weights.display()))?;
        let meta = match wp.dir().map(|d| d.join(META_FILE_NAME)) {
            Some(p) if p.is_file() => Some(read_meta(&p)?),
            _ => None,
        };
        Ok(CheckpointFolder {
            config,
            tensors,
            key_style,
            meta,
        })
    }

    /// Saves as a diffusers model folder in `dir` (created if missing):
    /// weights in the original key style, then `config.json`, then
    /// `deme.json` when there is metadata. Without metadata a stale
    /// `deme.json` from an earlier save is removed, so it can never
    /// describe other weights. Everything that can be checked (config
    /// present, metadata valid, tensors consistent) is checked before the
    /// first file is written.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        let config = self.config.as_ref().ok_or_else(|| {
            anyhow!(
                "cannot save {} as a diffusers folder: the checkpoint has no config",
                dir.display()
            )
        })?;
        let config_text = config.to_json_string_pretty()?;
        let meta_text = match &self.meta {
            Some(m) => {
                m.validate()
                    .with_context(|| format!("cannot save {}: bad metadata", dir.display()))?;
                Some(m.to_json_string_pretty()?)
            }
            None => None,
        };
        for (name, t) in &self.tensors {
            t.check_len()
                .with_context(|| format!("cannot save {}: tensor `{name}`", dir.display()))?;
        }

        let mut save = FolderSave::begin(dir)?;
        let entries: Vec<(String, &HostTensor)> = self
            .tensors
            .iter()
            .map(|(k, v)| (style_key(k, self.key_style), v))
            .collect();
        let st_meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        write_entries(&save.path(WEIGHTS_NAME)?, entries, Some(&st_meta))?;
        write_atomic_bytes(save.path(CONFIG_NAME)?, config_text.as_bytes())?;
        match meta_text {
            Some(text) => write_atomic_bytes(save.path(META_FILE_NAME)?, text.as_bytes())?,
            None => save.remove(META_FILE_NAME)?,
        }
        save.commit()?;
        Ok(())
    }
}

/// SHA-256 (lowercase hex) of the weights file at `path`: a safetensors
/// file, or the weights of the model folder `path` resolves to. Saves are
/// deterministic, so equal weights saved alike hash alike.
pub fn content_hash(path: impl AsRef<Path>) -> Result<String> {
    let wp = check_loadable_path(path)?;
    let weights = wp.weights();
    let mut file = crate::input::open_regular(weights)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", weights.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::host_tensor::DType;
    use crate::checkpoint::safetensors_io::{read_safetensors, write_safetensors};
    use crate::checkpoint::unet_config::preset;

    fn tensors() -> TensorMap {
        let mut m = TensorMap::new();
        m.insert(
            "conv_in.weight".into(),
            HostTensor::from_f32_as(DType::F16, vec![2, 1, 1, 1], &[0.5, -0.25]).unwrap(),
        );
        m.insert(
            "down_blocks.1.attentions.0.to_q.weight".into(),
            HostTensor::from_f32_as(DType::F16, vec![1, 1], &[2.0]).unwrap(),
        );
        m.insert(
            "down_blocks.1.attentions.0.to_out.0.bias".into(),
            HostTensor::from_f32_as(DType::F16, vec![1], &[3.0]).unwrap(),
        );
        m
    }

    fn checkpoint(style: KeyStyle) -> CheckpointFolder {
        let mut meta = CheckpointMeta::new("merge", 10);
        meta.parent = Some("abc".into());
        CheckpointFolder {
            config: preset("mnist-small"),
            tensors: tensors(),
            key_style: style,
            meta: Some(meta),
        }
    }

    #[test]
    fn save_load_round_trip_keeps_style_dtype_and_meta() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ckpt");
        let ck = checkpoint(KeyStyle::Legacy);
        ck.save(&out).unwrap();
        let raw = read_safetensors(out.join(WEIGHTS_NAME)).unwrap();
        assert!(raw.contains_key("down_blocks.1.attentions.0.query.weight"));
        assert!(raw.contains_key("down_blocks.1.attentions.0.proj_attn.bias"));
        assert!(!raw.contains_key("down_blocks.1.attentions.0.to_q.weight"));
        let back = CheckpointFolder::load(&out).unwrap();
        assert_eq!(back, ck);
        assert_eq!(back.tensors["conv_in.weight"].dtype, DType::F16);

        let modern = checkpoint(KeyStyle::Modern);
        modern.save(&out).unwrap();
        let raw = read_safetensors(out.join(WEIGHTS_NAME)).unwrap();
        assert_eq!(raw, tensors());
        assert_eq!(CheckpointFolder::load(&out).unwrap(), modern);
    }

    #[test]
    fn save_without_meta_drops_stale_meta() {
        let dir = tempfile::tempdir().unwrap();
        let mut ck = checkpoint(KeyStyle::Modern);
        ck.save(dir.path()).unwrap();
        assert!(dir.path().join(META_FILE_NAME).is_file());
        ck.meta = None;
        ck.save(dir.path()).unwrap();
        assert!(!dir.path().join(META_FILE_NAME).exists());
        assert_eq!(CheckpointFolder::load(dir.path()).unwrap().meta, None);
    }

    #[test]
    fn save_refuses_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x");
        let mut ck = checkpoint(KeyStyle::Modern);
        ck.config = None;
        assert!(format!("{:#}", ck.save(&out).unwrap_err()).contains("no config"));
        let mut ck = checkpoint(KeyStyle::Modern);
        ck.meta.as_mut().unwrap().kind = "bogus".into();
        assert!(ck.save(&out).is_err());
        let mut ck = checkpoint(KeyStyle::Modern);
        ck.tensors.get_mut("conv_in.weight").unwrap().bytes.push(0);
        assert!(ck.save(&out).is_err());
        assert!(!out.exists());
    }

    #[test]
    fn bare_file_loads_without_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        write_safetensors(&p, &tensors(), None).unwrap();
        let ck = CheckpointFolder::load(&p).unwrap();
        assert_eq!(ck.config, None);
        assert_eq!(ck.meta, None);
        assert_eq!(ck.tensors, tensors());
    }

    #[test]
    fn mixed_styles_fail_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("mixed.safetensors");
        let mut m = tensors();
        m.insert(
            "mid_block.attentions.0.key.weight".into(),
            HostTensor::from_f32(vec![1], &[1.0]).unwrap(),
        );
        write_safetensors(&p, &m, None).unwrap();
        let msg = format!("{:#}", CheckpointFolder::load(&p).unwrap_err());
        assert!(
            msg.contains("mixed.safetensors") && msg.contains("mixes"),
            "{msg}"
        );
    }

    #[test]
    fn content_hash_is_stable_and_sensitive() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        checkpoint(KeyStyle::Modern).save(&a).unwrap();
        checkpoint(KeyStyle::Modern).save(&b).unwrap();
        let ha = content_hash(&a).unwrap();
        assert_eq!(ha.len(), 64);
        assert!(
            ha.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(ha, content_hash(&b).unwrap());
        assert_eq!(ha, content_hash(a.join(WEIGHTS_NAME)).unwrap());
        let mut changed = checkpoint(KeyStyle::Modern);
        changed.tensors.get_mut("conv_in.weight").unwrap().bytes[0] ^= 1;
        changed.save(&b).unwrap();
        assert_ne!(ha, content_hash(&b).unwrap());

        let known = dir.path().join("abc.safetensors");
        std::fs::write(&known, b"abc").unwrap();
        assert_eq!(
            content_hash(&known).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
