//! `deme.json`: what deme-studio knows about a checkpoint it wrote (how it
//! was made, from what, at which step). Diffusers ignores the file.

use super::atomic::write_atomic_bytes;
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// File name of the metadata inside a checkpoint folder.
pub const META_FILE_NAME: &str = "deme.json";

/// The `format_version` this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;

/// Allowed values of [`CheckpointMeta::kind`].
pub const KINDS: [&str; 4] = ["pretrain", "finetune", "merge", "import"];

/// Provenance of a checkpoint. Optional fields may be missing from the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Layout version of this file ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// How the weights were made: `"pretrain"`, `"finetune"`, `"merge"` or `"import"`.
    pub kind: String,
    /// Optimiser steps taken to produce these weights.
    #[serde(default)]
    pub step: u64,
    /// Timestep range a decoupled finetune was trained on, `[lo, hi]`.
    #[serde(default)]
    pub timestep_range: Option<[usize; 2]>,
    /// Description of the training data (a preset name or a path).
    #[serde(default)]
    pub data: Option<String>,
    /// The training configuration, as free-form JSON.
    #[serde(default)]
    pub train_config: serde_json::Value,
    /// The checkpoint these weights started from (a path or a content hash).
    #[serde(default)]
    pub parent: Option<String>,
    /// Creation time, seconds since the Unix epoch.
    #[serde(default)]
    pub created_unix: u64,
    /// Free-form notes.
    #[serde(default)]
    pub notes: Option<String>,
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CheckpointMeta {
    /// New metadata of `kind` at `step`, created now, other fields empty.
    pub fn new(kind: &str, step: u64) -> Self {
        CheckpointMeta {
            format_version: FORMAT_VERSION,
            kind: kind.to_string(),
            step,
            timestep_range: None,
            data: None,
            train_config: serde_json::Value::Null,
            parent: None,
            created_unix: now_unix(),
            notes: None,
        }
    }

    /// Checks version, kind and timestep range.
    pub fn validate(&self) -> Result<()> {
        if self.format_version == 0 || self.format_version > FORMAT_VERSION {
            bail!(
                "format_version {} is not supported (this build reads 1 to {FORMAT_VERSION}; a newer deme-studio may have written it)",
                self.format_version
            );
        }
        if !KINDS.contains(&self.kind.as_str()) {
            bail!("kind {:?} is not one of {KINDS:?}", self.kind);
        }
        if let Some([lo, hi]) = self.timestep_range
            && lo > hi
        {
            bail!("timestep_range [{lo}, {hi}] is reversed");
        }
        Ok(())
    }

    /// Parses and validates `deme.json` text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let meta: CheckpointMeta = serde_json::from_str(text).map_err(|e| anyhow!("{e}"))?;
        meta.validate()?;
        Ok(meta)
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json_string_pretty(&self) -> Result<String> {
        let mut text =
            serde_json::to_string_pretty(self).context("metadata serialisation failed")?;
        text.push('\n');
        Ok(text)
    }
}

/// Reads `deme.json` at `path`; errors name the file.
pub fn read_meta(path: impl AsRef<Path>) -> Result<CheckpointMeta> {
    let path = path.as_ref();
    let text = crate::input::read_text(path)?;
    CheckpointMeta::from_json_str(&text)
        .map_err(|e| anyhow!("{}: invalid checkpoint metadata: {e:#}", path.display()))
}

/// Writes `meta` to `path` atomically, after validating it.
pub fn write_meta(path: impl AsRef<Path>, meta: &CheckpointMeta) -> Result<()> {
    let path = path.as_ref();
    meta.validate()
        .with_context(|| format!("refusing to write {}", path.display()))?;
    write_atomic_bytes(path, meta.to_json_string_pretty()?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(META_FILE_NAME);
        let mut m = CheckpointMeta::new("finetune", 1234);
        m.timestep_range = Some([0, 250]);
        m.data = Some("mnist".into());
        m.train_config = serde_json::json!({"lr": 1e-4, "batch": 64});
        m.parent = Some("sha256:abc".into());
        m.notes = Some("first expert".into());
        assert!(m.created_unix > 1_600_000_000);
        write_meta(&p, &m).unwrap();
        assert_eq!(read_meta(&p).unwrap(), m);
    }

    #[test]
    fn optional_fields_may_be_missing_and_extras_are_ignored() {
        let m =
            CheckpointMeta::from_json_str(r#"{"format_version":1,"kind":"merge","future":true}"#)
                .unwrap();
        assert_eq!(m.step, 0);
        assert_eq!(m.timestep_range, None);
        assert_eq!(m.train_config, serde_json::Value::Null);
        assert_eq!(m.parent, None);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(META_FILE_NAME);
        for bad in [
            "{ nope",
            r#"{"kind":"merge"}"#,
            r#"{"format_version":1,"kind":"dream"}"#,
            r#"{"format_version":99,"kind":"merge"}"#,
            r#"{"format_version":1,"kind":"merge","timestep_range":[5,1]}"#,
            r#"{"format_version":1,"kind":"merge","step":-3}"#,
        ] {
            std::fs::write(&p, bad).unwrap();
            let msg = format!("{:#}", read_meta(&p).unwrap_err());
            assert!(msg.contains("deme.json"), "{bad}: {msg}");
        }
        let mut m = CheckpointMeta::new("import", 0);
        m.kind = "unknown".into();
        assert!(write_meta(&p, &m).is_err());
    }
}
