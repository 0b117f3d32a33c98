//! Task vectors `tau_i = theta_i - theta` on the host, keyed by parameter key.
//!
//! Projections count from the identity: where the base has no
//! `adapter_list.{k}.weight` but an expert does, the base value there is the
//! identity (see [`super::structure`]). The device-side counterpart, for
//! interactive merging, is [`super::Merger`].

use super::structure::{Alignment, Shapes, Source, identity_values};
use crate::engine::analysis::{Granularity, group_of};
use crate::engine::model::params::NamedParam;
use anyhow::{Result, anyhow, bail};
use std::collections::{BTreeMap, HashMap};

/// One model's float parameters on the host, with a label for messages.
#[derive(Debug, Clone)]
pub struct LabeledParams {
    /// Shown in errors (a path or "expert 2").
    pub label: String,
    /// `(key, shape, values)` in module order.
    pub params: Vec<NamedParam>,
}

impl LabeledParams {
    /// Labels `params`.
    pub fn new(label: impl Into<String>, params: Vec<NamedParam>) -> Self {
        Self {
            label: label.into(),
            params,
        }
    }

    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.params
            .iter()
            .map(|(k, s, _)| (k.clone(), s.clone()))
            .collect()
    }
}

/// The base values and the N task vectors, lined up key by key.
///
/// `base[k]` and `taus[i][k]` hold the values of `keys[k]` (row-major, the
/// shape in `keys[k].1`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTaskVectors {
    /// Keys and shapes in the template's module order.
    pub keys: Vec<(String, Vec<usize>)>,
    /// Base values per key (the identity where the base lacks a projection).
    pub base: Vec<Vec<f32>>,
    /// `taus[i][k]`: task vector of expert `i` at key `k`.
    pub taus: Vec<Vec<Vec<f32>>>,
    /// Labels of the experts.
    pub labels: Vec<String>,
}

/// Value of key `key` of `model`, or the identity when the alignment says so.
fn take_value(
    model: &mut HashMap<String, Vec<f32>>,
    source: Source,
    key: &str,
    shape: &[usize],
) -> Result<Vec<f32>> {
    match source {
        Source::Identity => Ok(identity_values(shape)),
        Source::Tensor => model
            .remove(key)
            .ok_or_else(|| anyhow!("tensor `{key}` vanished while lining up")),
    }
}

impl HostTaskVectors {
    /// Computes `tau_i = theta_i - theta` for every float tensor.
    ///
    /// Fails with a message naming the first differing tensor and both models
    /// when the structures differ (beyond projections, which count from the identity).
    pub fn new(base: LabeledParams, experts: Vec<LabeledParams>) -> Result<Self> {
        if experts.is_empty() {
            bail!("a merge needs at least one expert");
        }
        let shapes: Vec<Vec<(String, Vec<usize>)>> = std::iter::once(&base)
            .chain(&experts)
            .map(LabeledParams::shapes)
            .collect();
        let labeled: Vec<(&str, &Shapes)> = std::iter::once(&base)
            .chain(&experts)
            .zip(&shapes)
            .map(|(m, s)| (m.label.as_str(), s.as_slice()))
            .collect();
        let al = Alignment::new(&labeled)?;
        let labels = experts.iter().map(|e| e.label.clone()).collect();
        let to_map = |p: Vec<NamedParam>| -> HashMap<String, Vec<f32>> {
            p.into_iter().map(|(k, _, v)| (k, v)).collect()
        };
        let mut base_map = to_map(base.params);
        let mut base_vals = Vec::with_capacity(al.keys.len());
        for (key, shape) in &al.keys {
            base_vals.push(take_value(&mut base_map, al.source(0, key), key, shape)?);
        }
        let mut taus = Vec::with_capacity(experts.len());
        for (i, e) in experts.into_iter().enumerate() {
            let mut map = to_map(e.params);
            let mut tau = Vec::with_capacity(al.keys.len());
            for ((key, shape), b) in al.keys.iter().zip(&base_vals) {
                let mut v = take_value(&mut map, al.source(i + 1, key), key, shape)?;
                for (x, b) in v.iter_mut().zip(b) {
                    *x -= b;
                }
                tau.push(v);
            }
            taus.push(tau);
        }
        Ok(Self {
            keys: al.keys,
            base: base_vals,
            taus,
            labels,
        })
    }

    /// Number of experts N.
    pub fn num_experts(&self) -> usize {
        self.taus.len()
    }

    /// Index of `key` in [`Self::keys`].
    pub fn key_index(&self, key: &str) -> Option<usize> {
        self.keys.iter().position(|(k, _)| k == key)
    }

    /// Task vector of expert `i` at `key`.
    pub fn tau(&self, i: usize, key: &str) -> Option<&[f32]> {
        let k = self.key_index(key)?;
        self.taus.get(i).map(|t| t[k].as_slice())
    }

    /// L2 norm of the whole task vector of expert `i` (accumulated in f64).
    pub fn norm(&self, i: usize) -> f64 {
        self.taus[i]
            .iter()
            .flatten()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt()
    }

    /// L2 norm of expert `i`'s task vector per group of keys (blocks or layers),
    /// groups in order of first appearance.
    pub fn group_norms(&self, i: usize, granularity: Granularity) -> Vec<(String, f64)> {
        let mut order = Vec::new();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for ((key, _), v) in self.keys.iter().zip(&self.taus[i]) {
            let g = group_of(key, granularity);
            let sq: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum();
            match sums.get_mut(&g) {
                Some(s) => *s += sq,
                None => {
                    order.push(g.clone());
                    sums.insert(g, sq);
                }
            }
        }
        order
            .into_iter()
            .map(|g| {
                let s = sums[&g].sqrt();
                (g, s)
            })
            .collect()
    }

    /// Cosine similarity of the task vectors of experts `i` and `j` (0 when one is zero).
    pub fn cosine(&self, i: usize, j: usize) -> f64 {
        let dot: f64 = self.taus[i]
            .iter()
            .flatten()
            .zip(self.taus[j].iter().flatten())
            .map(|(&a, &b)| a as f64 * b as f64)
            .sum();
        let d = self.norm(i) * self.norm(j);
        if d == 0.0 { 0.0 } else { dot / d }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn p(key: &str, shape: &[usize], v: &[f32]) -> NamedParam {
        (key.to_string(), shape.to_vec(), v.to_vec())
    }

    #[test]
    fn task_vectors_subtract_the_base() {
        let base = LabeledParams::new("b", vec![p("w", &[2], &[1.0, 2.0]), p("c", &[1], &[0.5])]);
        let e = LabeledParams::new("e", vec![p("w", &[2], &[1.5, 1.0]), p("c", &[1], &[0.5])]);
        let tv = HostTaskVectors::new(base, vec![e]).unwrap();
        assert_eq!(tv.tau(0, "w").unwrap(), &[0.5, -1.0]);
        assert_eq!(tv.tau(0, "c").unwrap(), &[0.0]);
        assert!((tv.norm(0) - 1.25f64.sqrt()).abs() < 1e-12);
        assert_eq!(tv.group_norms(0, Granularity::Block)[0].0, "w");
        assert!((tv.cosine(0, 0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn projections_count_from_identity() {
        let base = LabeledParams::new("b", vec![p("w", &[1], &[1.0])]);
        let e = LabeledParams::new(
            "e",
            vec![
                p("w", &[1], &[1.0]),
                p(
                    "adapter_list.0.weight",
                    &[2, 2, 1, 1],
                    &[1.5, 0.25, 0.0, 1.0],
                ),
            ],
        );
        let tv = HostTaskVectors::new(base, vec![e]).unwrap();
        assert_eq!(tv.keys.len(), 2);
        assert_eq!(tv.base[1], vec![1.0, 0.0, 0.0, 1.0]);
        assert_eq!(
            tv.tau(0, "adapter_list.0.weight").unwrap(),
            &[0.5, 0.25, 0.0, 0.0]
        );
    }

    #[test]
    fn mismatch_is_named() {
        let base = LabeledParams::new("base-dir", vec![p("w", &[2], &[1.0, 2.0])]);
        let e = LabeledParams::new("expert-dir", vec![p("v", &[2], &[1.0, 2.0])]);
        let msg = format!("{:#}", HostTaskVectors::new(base, vec![e]).unwrap_err());
        assert!(msg.contains("`w`") && msg.contains("base-dir") && msg.contains("expert-dir"));
    }
}
