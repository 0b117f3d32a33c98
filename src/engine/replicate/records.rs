//! What a finished search leaves beside the model it chose (`NAME.search.json`
//! next to folder `NAME`): the key it ran under (its settings, then the content
//! hashes of the models it searched over) and its result. A resumed run with the
//! same key does not search again; a report read back from measurements, after the
//! models were dropped, takes the result from here (its settings part must match).

use crate::engine::checkpoint::write_atomic_bytes;
use crate::engine::search::GridResult;
use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A finished merge-weight search, with the chosen weights and objective as bits
/// (JSON text need not read back to the same float).
#[derive(Serialize, Deserialize)]
pub struct SearchRecord {
    /// Settings and the experts' content hashes.
    pub key: String,
    /// The chosen weights.
    pub weights_bits: Vec<u64>,
    /// The objective there.
    pub value_bits: u64,
    /// Every point scored.
    pub result: GridResult,
}

/// A finished search of the scale alpha of one task vector.
#[derive(Serialize, Deserialize)]
pub struct ScaleRecord {
    /// Settings and the model's content hash.
    pub key: String,
    /// The chosen alpha.
    pub alpha_bits: u64,
}

/// Where the record of the search that made folder `out` lives.
pub fn record_path(out: &Path) -> PathBuf {
    out.with_extension("search.json")
}

/// The record beside `out`, or `None` when there is none or it does not parse (a
/// search cut short writes none; an unreadable one is searched again).
fn read<T: DeserializeOwned>(out: &Path) -> Option<T> {
    let text = deme_formats::input::read_text(&record_path(out)).ok()?;
    serde_json::from_str(&text).ok()
}

fn write<T: Serialize>(out: &Path, record: &T) -> Result<()> {
    write_atomic_bytes(
        record_path(out),
        serde_json::to_string_pretty(record)?.as_bytes(),
    )
}

impl SearchRecord {
    /// The finished record beside `out` whose key starts with `prefix` (the whole
    /// key: the same settings and models; the settings part: the same settings).
    pub fn read_matching(out: &Path, prefix: &str) -> Option<Self> {
        read::<Self>(out).filter(|r| r.key.starts_with(prefix) && !r.result.cancelled)
    }

    /// Writes it beside `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        write(out, self)
    }

    /// The chosen weights.
    pub fn weights(&self) -> Vec<f64> {
        self.weights_bits
            .iter()
            .map(|&b| f64::from_bits(b))
            .collect()
    }

    /// The objective at the chosen weights.
    pub fn value(&self) -> f64 {
        f64::from_bits(self.value_bits)
    }
}

impl ScaleRecord {
    /// The record beside `out` whose key starts with `prefix`.
    pub fn read_matching(out: &Path, prefix: &str) -> Option<Self> {
        read::<Self>(out).filter(|r| r.key.starts_with(prefix))
    }

    /// Writes it beside `out`.
    pub fn write(&self, out: &Path) -> Result<()> {
        write(out, self)
    }

    /// The chosen alpha.
    pub fn alpha(&self) -> f64 {
        f64::from_bits(self.alpha_bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_read_back_only_under_a_matching_key() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plain-finetune-scaled");
        assert!(ScaleRecord::read_matching(&out, "").is_none());
        let r = ScaleRecord {
            key: "v1|settings|hash|".into(),
            alpha_bits: 0.7f64.to_bits(),
        };
        r.write(&out).unwrap();
        assert!(record_path(&out).ends_with("plain-finetune-scaled.search.json"));
        let back = ScaleRecord::read_matching(&out, "v1|settings|").unwrap();
        assert_eq!(back.alpha(), 0.7);
        assert!(ScaleRecord::read_matching(&out, "v1|settings|hash|").is_some());
        assert!(ScaleRecord::read_matching(&out, "v1|other|").is_none());
        std::fs::write(record_path(&out), "{ not json").unwrap();
        assert!(ScaleRecord::read_matching(&out, "").is_none());
    }
}
