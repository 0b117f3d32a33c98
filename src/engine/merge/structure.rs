//! Lining up the parameters of a base model and its experts by key.
//!
//! Every model must have the same tensors with the same shapes, with one
//! exception: DeMe's channel-wise projections (`adapter_list.{k}.weight`,
//! `[C, C, 1, 1]`) may be missing from some models, where they count as the
//! identity (a model without projections computes exactly what it would with
//! identity projections). The model with the most tensors is the *template*:
//! its key order is the order of everything downstream, and its structure is
//! the structure of the merged model.

use anyhow::{Result, bail};
use std::collections::{HashMap, HashSet};

/// Key prefix of DeMe's channel-wise projections.
pub const PROJECTION_PREFIX: &str = "adapter_list.";

/// Keys and shapes of one model's float parameters, in module order.
pub type Shapes = [(String, Vec<usize>)];

/// Whether `key` is a channel-wise projection weight (`adapter_list.{k}.weight`).
pub fn is_projection_key(key: &str) -> bool {
    key.strip_prefix(PROJECTION_PREFIX)
        .and_then(|rest| rest.strip_suffix(".weight"))
        .is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()))
}

/// Whether `shape` is that of a channel-wise projection, `[C, C, 1, 1]`.
pub fn is_projection_shape(shape: &[usize]) -> bool {
    matches!(shape, [a, b, 1, 1] if a == b)
}

/// The identity projection `[C, C, 1, 1]` flattened (row-major), for `shape`.
///
/// # Shapes
/// `shape = [C, C, 1, 1] -> C * C values`
pub fn identity_values(shape: &[usize]) -> Vec<f32> {
    let c = shape.first().copied().unwrap_or(0);
    let mut eye = vec![0f32; c * c];
    for i in 0..c {
        eye[i * c + i] = 1.0;
    }
    eye
}

/// Where a model's value of a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The model has the tensor.
    Tensor,
    /// The model has no projection here: the identity stands in.
    Identity,
}

/// The common structure of a set of models (index 0 is the base).
#[derive(Debug, Clone)]
pub struct Alignment {
    /// Keys and shapes of the template, in its module order.
    pub keys: Vec<(String, Vec<usize>)>,
    /// Index of the template among the models.
    pub template: usize,
    /// `missing[m]`: keys of the template that model `m` lacks (identity-filled).
    missing: Vec<HashSet<String>>,
}

impl Alignment {
    /// Checks that `models` (label, shapes) share one structure and lines them up.
    ///
    /// Errors name the first differing tensor and the two models compared.
    pub fn new(models: &[(&str, &Shapes)]) -> Result<Self> {
        if models.is_empty() {
            bail!("no models to line up");
        }
        // The first model with the most tensors (ties keep the earlier one, so the base wins).
        let template = models.iter().enumerate().fold(0, |best, (i, (_, s))| {
            if s.len() > models[best].1.len() {
                i
            } else {
                best
            }
        });
        let (t_label, t_shapes) = models[template];
        let mut missing = Vec::with_capacity(models.len());
        for (m, (label, shapes)) in models.iter().enumerate() {
            if m == template {
                missing.push(HashSet::new());
                continue;
            }
            // Report against the base when possible: "base vs expert" reads best.
            let (a_label, b_label, a, b) = if template == 0 {
                (t_label, *label, t_shapes, *shapes)
            } else {
                (*label, t_label, *shapes, t_shapes)
            };
            compare(a_label, a, b_label, b)?;
            let own: HashSet<&str> = shapes.iter().map(|(k, _)| k.as_str()).collect();
            missing.push(
                t_shapes
                    .iter()
                    .filter(|(k, _)| !own.contains(k.as_str()))
                    .map(|(k, _)| k.clone())
                    .collect(),
            );
        }
        Ok(Self {
            keys: t_shapes.to_vec(),
            template,
            missing,
        })
    }

    /// Where model `m`'s value of `key` comes from.
    pub fn source(&self, m: usize, key: &str) -> Source {
        if self.missing[m].contains(key) {
            Source::Identity
        } else {
            Source::Tensor
        }
    }

    /// Total number of values over all keys.
    pub fn num_values(&self) -> usize {
        self.keys
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

/// Checks two models' structures, walking both key lists in step so the
/// reported tensor is the first difference in module order.
fn compare(a_label: &str, a: &Shapes, b_label: &str, b: &Shapes) -> Result<()> {
    let a_map: HashMap<&str, &Vec<usize>> = a.iter().map(|(k, s)| (k.as_str(), s)).collect();
    let b_map: HashMap<&str, &Vec<usize>> = b.iter().map(|(k, s)| (k.as_str(), s)).collect();
    let check = |key: &str,
                 shape: &[usize],
                 other: &HashMap<&str, &Vec<usize>>,
                 (has, lacks): (&str, &str)|
     -> Result<()> {
        match other.get(key) {
            Some(s) if s.as_slice() == shape => Ok(()),
            Some(s) => bail!(
                "`{a_label}` and `{b_label}` have different structures: tensor `{key}` has shape {shape:?} in `{has}` but {s:?} in `{lacks}`"
            ),
            None if is_projection_key(key) && is_projection_shape(shape) => Ok(()),
            None => bail!(
                "`{a_label}` and `{b_label}` have different structures: tensor `{key}` (shape {shape:?}) is in `{has}` but not in `{lacks}`"
            ),
        }
    };
    for p in 0..a.len().max(b.len()) {
        if let Some((k, s)) = a.get(p) {
            check(k, s, &b_map, (a_label, b_label))?;
        }
        if let Some((k, s)) = b.get(p) {
            check(k, s, &a_map, (b_label, a_label))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(v: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
        v.iter().map(|(k, s)| (k.to_string(), s.to_vec())).collect()
    }

    #[test]
    fn projection_keys_and_identity() {
        assert!(is_projection_key("adapter_list.3.weight"));
        assert!(!is_projection_key("adapter_list.3.bias"));
        assert!(!is_projection_key("adapter_list..weight"));
        assert!(!is_projection_key("conv_in.weight"));
        assert!(is_projection_shape(&[4, 4, 1, 1]));
        assert!(!is_projection_shape(&[4, 3, 1, 1]));
        assert_eq!(identity_values(&[2, 2, 1, 1]), vec![1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn projected_experts_take_the_template_role() {
        let base = shapes(&[("a.weight", &[2, 3]), ("b.bias", &[3])]);
        let expert = shapes(&[
            ("a.weight", &[2, 3]),
            ("b.bias", &[3]),
            ("adapter_list.0.weight", &[3, 3, 1, 1]),
        ]);
        let al = Alignment::new(&[("base", &base), ("e1", &expert), ("e2", &base)]).unwrap();
        assert_eq!(al.template, 1);
        assert_eq!(al.keys, expert);
        assert_eq!(al.source(0, "adapter_list.0.weight"), Source::Identity);
        assert_eq!(al.source(1, "adapter_list.0.weight"), Source::Tensor);
        assert_eq!(al.source(2, "a.weight"), Source::Tensor);
        assert_eq!(al.num_values(), 6 + 3 + 9);
    }

    #[test]
    fn differences_name_the_tensor_and_both_models() {
        let base = shapes(&[("a.weight", &[2, 3]), ("b.bias", &[3]), ("c.bias", &[1])]);
        let other = shapes(&[("a.weight", &[2, 3]), ("b.bias", &[4]), ("c.bias", &[1])]);
        let msg = format!(
            "{:#}",
            Alignment::new(&[("base/x", &base), ("exp/y", &other)]).unwrap_err()
        );
        assert!(msg.contains("`b.bias`"), "{msg}");
        assert!(msg.contains("base/x") && msg.contains("exp/y"), "{msg}");

        let lacking = shapes(&[("a.weight", &[2, 3]), ("c.bias", &[1])]);
        let msg = format!(
            "{:#}",
            Alignment::new(&[("base", &base), ("e", &lacking)]).unwrap_err()
        );
        assert!(
            msg.contains("`b.bias`") && msg.contains("not in `e`"),
            "{msg}"
        );

        // a projection with a non-projection shape is not identity-filled
        let odd = shapes(&[
            ("a.weight", &[2, 3]),
            ("b.bias", &[3]),
            ("c.bias", &[1]),
            ("adapter_list.0.weight", &[3, 2, 1, 1]),
        ]);
        let msg = format!(
            "{:#}",
            Alignment::new(&[("base", &base), ("e", &odd)]).unwrap_err()
        );
        assert!(msg.contains("adapter_list.0.weight"), "{msg}");
    }
}
