//! The device-side merger behind the weight sliders.
//!
//! Built once from a base model and N experts, it keeps the base and the task
//! vectors as flat tensors on the models' device and produces the merged model
//! for given weights in one pass over the parameters, on the device, with no
//! host round trip. TIES and DARE first compute their processed task vectors
//! (once per method settings, on the host, then uploaded) and then take the same
//! path. The arithmetic follows [`super::arithmetic`] operation for operation.

use super::arithmetic::method_task_vectors;
use super::method::{MergeMethod, MergeSpec};
use super::structure::{Alignment, Shapes, Source, identity_values};
use super::task_vector::HostTaskVectors;
use crate::engine::kernels;
use crate::engine::model::EpsModel;
use crate::engine::model::params::{flat_params, map_flat_params, param_shapes};
use crate::engine::store::AnyModel;
use anyhow::{Result, anyhow, bail};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;

/// What the merge engine needs of a model: its float parameters by key, a way
/// to replace them on the device, and its noise prediction.
///
/// Implemented for every [`EpsModel`] and for [`AnyModel`].
pub trait Mergeable: Clone + Send + 'static {
    /// Keys and shapes of every float parameter, in module order.
    fn shapes(&self) -> Vec<(String, Vec<usize>)>;
    /// Every float parameter as a flat device tensor, in module order.
    fn flat(&self) -> Vec<(String, Tensor<1>)>;
    /// Replaces every float parameter by `f(key, flat value)`.
    fn map_flat(self, f: &mut dyn FnMut(&str, Tensor<1>) -> Tensor<1>) -> Self;
    /// Noise prediction.
    ///
    /// # Shapes
    /// `x: [n, c, h, w]`, `t: n timesteps -> [n, c, h, w]`
    fn predict_eps(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4>;
}

impl<M: EpsModel> Mergeable for M {
    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        param_shapes(self)
    }
    fn flat(&self) -> Vec<(String, Tensor<1>)> {
        flat_params(self)
    }
    fn map_flat(self, f: &mut dyn FnMut(&str, Tensor<1>) -> Tensor<1>) -> Self {
        map_flat_params(self, f)
    }
    fn predict_eps(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        self.eps(x, t)
    }
}

impl Mergeable for AnyModel {
    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        match self {
            Self::UNet(m) => param_shapes(m),
            Self::Mlp(m) => param_shapes(m),
        }
    }
    fn flat(&self) -> Vec<(String, Tensor<1>)> {
        match self {
            Self::UNet(m) => flat_params(m),
            Self::Mlp(m) => flat_params(m),
        }
    }
    fn map_flat(self, f: &mut dyn FnMut(&str, Tensor<1>) -> Tensor<1>) -> Self {
        match self {
            Self::UNet(m) => Self::UNet(map_flat_params(m, f)),
            Self::Mlp(m) => Self::Mlp(map_flat_params(m, f)),
        }
    }
    fn predict_eps(&self, x: Tensor<4>, t: &[f32]) -> Tensor<4> {
        self.eps(x, t)
    }
}

/// Flat tensors by key.
type FlatMap = HashMap<String, Tensor<1>>;

/// The method settings a set of processed task vectors was made for.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Prepared {
    method: MergeMethod,
    seed: u64,
}

/// Base plus task vectors on the device; merges for any weights in one pass.
pub struct Merger<M> {
    template: M,
    keys: Vec<(String, Vec<usize>)>,
    labels: Vec<String>,
    device: Device,
    base: FlatMap,
    taus: Vec<FlatMap>,
    processed: Option<(Prepared, Vec<FlatMap>)>,
}

fn upload(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn download(t: Tensor<1>) -> Result<Vec<f32>> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("reading a tensor back from the device: {e:?}"))
}

/// `base + sum_i w_i tau_i` on the device, in [`super::arithmetic`]'s order;
/// `old` is the value it replaces (its buffer is reused where it can be).
fn combine(base: &Tensor<1>, taus: &[&Tensor<1>], weights: &[f32], old: Tensor<1>) -> Tensor<1> {
    let (terms, w): (Vec<&Tensor<1>>, Vec<f32>) = taus
        .iter()
        .zip(weights)
        .filter(|(_, w)| **w != 0.0)
        .map(|(t, w)| (*t, *w))
        .unzip();
    if let Some(sum) = kernels::merge::weighted_sum_tensors(base, &terms, &w, Some(old)) {
        return sum;
    }
    let mut acc: Option<Tensor<1>> = None;
    for (tau, &w) in taus.iter().zip(weights) {
        if w == 0.0 {
            continue;
        }
        let term = (*tau).clone().mul_scalar(w);
        acc = Some(match acc {
            None => term,
            Some(a) => a + term,
        });
    }
    match acc {
        None => base.clone(),
        Some(a) => a + base.clone(),
    }
}

impl<M: Mergeable> Merger<M> {
    /// Lines up `base` and `experts` (label, model) and stores the base and the
    /// task vectors on the base's device.
    ///
    /// Fails, naming the first differing tensor and both models, when the
    /// structures differ beyond projections (which count from the identity).
    pub fn new(base: (&str, &M), experts: &[(&str, &M)]) -> Result<Self> {
        if experts.is_empty() {
            bail!("a merge needs at least one expert");
        }
        let shapes: Vec<Vec<(String, Vec<usize>)>> = std::iter::once(&base)
            .chain(experts)
            .map(|(_, m)| m.shapes())
            .collect();
        let labeled: Vec<(&str, &Shapes)> = std::iter::once(&base)
            .chain(experts)
            .zip(&shapes)
            .map(|((l, _), s)| (*l, s.as_slice()))
            .collect();
        let al = Alignment::new(&labeled)?;
        let template = if al.template == 0 {
            base.1.clone()
        } else {
            experts[al.template - 1].1.clone()
        };
        let base_flat: FlatMap = base.1.flat().into_iter().collect();
        let device = base_flat
            .values()
            .next()
            .map(|t| t.device())
            .ok_or_else(|| anyhow!("`{}` has no parameters", base.0))?;
        let value = |own: &FlatMap, m: usize, key: &str, shape: &[usize]| -> Result<Tensor<1>> {
            match al.source(m, key) {
                Source::Identity => Ok(upload(identity_values(shape), &device)),
                Source::Tensor => own
                    .get(key)
                    .cloned()
                    .ok_or_else(|| anyhow!("tensor `{key}` vanished while lining up")),
            }
        };
        let mut base_map = FlatMap::new();
        for (key, shape) in &al.keys {
            base_map.insert(key.clone(), value(&base_flat, 0, key, shape)?);
        }
        drop(base_flat);
        let mut taus = Vec::with_capacity(experts.len());
        for (i, (_, expert)) in experts.iter().enumerate() {
            let own: FlatMap = expert.flat().into_iter().collect();
            let mut tau = FlatMap::new();
            for (key, shape) in &al.keys {
                let v = value(&own, i + 1, key, shape)?.to_device(&device);
                tau.insert(key.clone(), v - base_map[key].clone());
            }
            taus.push(tau);
        }
        Ok(Self {
            template,
            keys: al.keys,
            labels: experts.iter().map(|(l, _)| l.to_string()).collect(),
            device,
            base: base_map,
            taus,
            processed: None,
        })
    }

    /// Number of experts N.
    pub fn num_experts(&self) -> usize {
        self.taus.len()
    }

    /// Keys and shapes of the merged model, in module order.
    pub fn keys(&self) -> &[(String, Vec<usize>)] {
        &self.keys
    }

    /// The device everything lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Total number of parameter values of the merged model.
    pub fn num_values(&self) -> usize {
        self.keys
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Copies the base and the task vectors to the host (for statistics).
    pub fn host_task_vectors(&self) -> Result<HostTaskVectors> {
        let base = self
            .keys
            .iter()
            .map(|(k, _)| download(self.base[k].clone()))
            .collect::<Result<_>>()?;
        let taus = self
            .taus
            .iter()
            .map(|t| {
                self.keys
                    .iter()
                    .map(|(k, _)| download(t[k].clone()))
                    .collect::<Result<_>>()
            })
            .collect::<Result<_>>()?;
        Ok(HostTaskVectors {
            keys: self.keys.clone(),
            base,
            taus,
            labels: self.labels.clone(),
        })
    }

    /// `<g[key], tau_i[key]>` for every expert `i` and key, keys in [`Self::keys`]
    /// order (the plain task vectors). With `grads` the gradient of a loss at a
    /// task-arithmetic merge, entry `[i][k]` is the loss's derivative in a weight
    /// that scales `tau_i` on key `k` alone; summed over keys it is `dL/dw_i`.
    /// Keys absent from `grads` have a zero gradient.
    pub fn task_vector_inner_products(
        &self,
        grads: &[(String, Tensor<1>)],
    ) -> Result<Vec<Vec<f64>>> {
        let by_key: HashMap<&str, &Tensor<1>> =
            grads.iter().map(|(k, g)| (k.as_str(), g)).collect();
        let present: Vec<usize> = (0..self.keys.len())
            .filter(|&k| by_key.contains_key(self.keys[k].0.as_str()))
            .collect();
        let mut out = vec![vec![0.0; self.keys.len()]; self.taus.len()];
        if present.is_empty() {
            return Ok(out);
        }
        let mut sums = Vec::with_capacity(self.taus.len() * present.len());
        for tau in &self.taus {
            for &k in &present {
                let key = self.keys[k].0.as_str();
                let g = by_key[key].clone().to_device(&self.device);
                sums.push((g * tau[key].clone()).sum());
            }
        }
        let values = download(Tensor::cat(sums, 0))?;
        for (i, row) in out.iter_mut().enumerate() {
            for (j, &k) in present.iter().enumerate() {
                row[k] = f64::from(values[i * present.len() + j]);
            }
        }
        Ok(out)
    }

    /// Computes (once per settings) the processed task vectors of `method`;
    /// a no-op for task arithmetic or settings already prepared.
    pub fn prepare(&mut self, method: &MergeMethod, seed: u64) -> Result<()> {
        method.validate()?;
        let want = Prepared {
            method: *method,
            // only DARE draws random numbers
            seed: if matches!(method, MergeMethod::Dare { .. }) {
                seed
            } else {
                0
            },
        };
        if *method == MergeMethod::TaskArithmetic
            || self.processed.as_ref().is_some_and(|(p, _)| *p == want)
        {
            return Ok(());
        }
        self.processed = None; // free the old ones before making new ones
        let host = self.host_task_vectors()?;
        let processed = method_task_vectors(&host, method, seed)?
            .ok_or_else(|| anyhow!("method `{}` has no processed task vectors", method.name()))?;
        let uploaded = processed
            .into_iter()
            .map(|tau| {
                self.keys
                    .iter()
                    .zip(tau)
                    .map(|((k, _), v)| (k.clone(), upload(v, &self.device)))
                    .collect()
            })
            .collect();
        self.processed = Some((want, uploaded));
        Ok(())
    }

    /// The merged model for `spec` (a fresh copy of the template structure).
    pub fn merge(&mut self, spec: &MergeSpec) -> Result<M> {
        let template = self.template.clone();
        self.apply(template, spec)
    }

    /// Re-merges into `model` (an earlier result, or any model of the merged
    /// structure), replacing its parameters on the device.
    pub fn merge_into(&mut self, model: M, spec: &MergeSpec) -> Result<M> {
        let shapes = model.shapes();
        if shapes != self.keys {
            let diff = shapes
                .iter()
                .zip(&self.keys)
                .find(|(a, b)| a != b)
                .map(|((k, _), _)| k.clone())
                .unwrap_or_else(|| "(a different number of tensors)".into());
            bail!("cannot merge into a model of another structure: it differs at `{diff}`");
        }
        self.apply(model, spec)
    }

    fn apply(&mut self, model: M, spec: &MergeSpec) -> Result<M> {
        spec.validate(self.num_experts())?;
        let key_weights = spec.block_weights.resolve(&self.keys, &spec.weights)?;
        self.prepare(&spec.method, spec.seed)?;
        let taus: &[FlatMap] = match (&spec.method, &self.processed) {
            (MergeMethod::TaskArithmetic, _) => &self.taus,
            (_, Some((_, p))) => p,
            (_, None) => bail!("processed task vectors are missing"),
        };
        let weights: HashMap<&str, &[f32]> = self
            .keys
            .iter()
            .zip(&key_weights)
            .map(|((k, _), w)| (k.as_str(), w.as_slice()))
            .collect();
        let mut missing: Option<String> = None;
        let merged = model.map_flat(
            &mut |key, old| match (self.base.get(key), weights.get(key)) {
                (Some(base), Some(w)) => {
                    let per_expert: Vec<&Tensor<1>> = taus.iter().map(|t| &t[key]).collect();
                    combine(base, &per_expert, w, old)
                }
                _ => {
                    missing.get_or_insert_with(|| key.to_string());
                    old
                }
            },
        );
        match missing {
            Some(key) => bail!("the model has a tensor `{key}` the merger does not know"),
            None => Ok(merged),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::checkpoint::preset;
    use crate::engine::merge::arithmetic::merge_host;
    use crate::engine::merge::task_vector::LabeledParams;
    use crate::engine::model::{ToyMlp, ToyMlpConfig, UNet2DModel, export_params};

    /// `mnist-small`'s structure at widths 8/16/16.
    pub(crate) fn tiny_unet_config() -> crate::engine::checkpoint::UNet2DConfig {
        let mut c = preset("mnist-small").expect("preset exists");
        c.block_out_channels = vec![8, 16, 16];
        c.norm_num_groups = 4;
        c.sample_size = Some(8);
        c
    }

    fn bits(p: &[crate::engine::model::params::NamedParam]) -> Vec<(String, Vec<u32>)> {
        p.iter()
            .map(|(k, _, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect()))
            .collect()
    }

    fn mlps(n: usize) -> Vec<ToyMlp> {
        let d = Device::flex();
        (0..=n)
            .map(|s| ToyMlp::new(&ToyMlpConfig::default(), s as u64, &d))
            .collect()
    }

    fn merger(models: &[ToyMlp]) -> Merger<ToyMlp> {
        let experts: Vec<(&str, &ToyMlp)> = models[1..].iter().map(|m| ("expert", m)).collect();
        Merger::new(("base", &models[0]), &experts).unwrap()
    }

    #[test]
    fn zero_weights_give_the_base_bit_for_bit() {
        let models = mlps(3);
        let mut m = merger(&models);
        let out = m.merge(&MergeSpec::task_arithmetic(vec![0.0; 3])).unwrap();
        assert_eq!(bits(&export_params(&out)), bits(&export_params(&models[0])));
    }

    #[test]
    fn one_hot_weights_give_the_expert() {
        let models = mlps(3);
        let mut m = merger(&models);
        let out = m
            .merge(&MergeSpec::task_arithmetic(vec![0.0, 1.0, 0.0]))
            .unwrap();
        for ((k, _, a), (_, _, b)) in export_params(&out).iter().zip(export_params(&models[2])) {
            for (x, y) in a.iter().zip(&b) {
                // b + (e - b): at most one rounding in each step, relative to max(|b|, |e|)
                assert!(
                    (x - y).abs() <= 2.0 * f32::EPSILON * 1f32.max(y.abs()),
                    "{k}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn device_path_equals_the_host_path_for_every_method() {
        let models = mlps(2);
        let mut m = merger(&models);
        let host_tv = HostTaskVectors::new(
            LabeledParams::new("base", export_params(&models[0])),
            models[1..]
                .iter()
                .map(|e| LabeledParams::new("expert", export_params(e)))
                .collect(),
        )
        .unwrap();
        let mut merged = m
            .merge(&MergeSpec::task_arithmetic(vec![0.5, 0.5]))
            .unwrap();
        for method in [
            MergeMethod::TaskArithmetic,
            MergeMethod::Ties { k: 0.3, scale: 0.8 },
            MergeMethod::Dare { p: 0.5 },
        ] {
            let spec = MergeSpec {
                method,
                weights: vec![0.7, -0.25],
                seed: 5,
                ..MergeSpec::default()
            };
            merged = m.merge_into(merged, &spec).unwrap();
            let host = merge_host(&host_tv, &spec).unwrap();
            assert_eq!(bits(&export_params(&merged)), bits(&host), "{method:?}");
        }
    }

    #[test]
    fn projected_experts_over_a_plain_base() {
        let d = Device::flex();
        let config = tiny_unet_config();
        let base = UNet2DModel::new(&config, 0, &d).unwrap();
        let expert = UNet2DModel::new(&config, 1, &d)
            .unwrap()
            .with_projections(&config, &d);
        // nudge one projection away from the identity
        let expert = map_flat_params(expert, &mut |k, v| {
            if k == "adapter_list.0.weight" {
                v.add_scalar(0.5)
            } else {
                v
            }
        });
        let mut m = Merger::new(("base", &base), &[("expert", &expert)]).unwrap();
        assert!(m.keys().iter().any(|(k, _)| k == "adapter_list.0.weight"));
        let half = m.merge(&MergeSpec::task_arithmetic(vec![0.5])).unwrap();
        assert_eq!(half.adapter_list.len(), expert.adapter_list.len());
        let proj = half.adapter_list[0]
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let c = (proj.len() as f64).sqrt() as usize;
        // identity + 0.5 * (identity + 0.5 - identity) = identity + 0.25
        assert_eq!(proj[0], 1.25);
        assert_eq!(proj[1], 0.25);
        assert_eq!(proj[c + 1], 1.25);
        let zero = m.merge(&MergeSpec::task_arithmetic(vec![0.0])).unwrap();
        let p0 = zero.adapter_list[1]
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(p0[0], 1.0);
        assert_eq!(p0[1], 0.0);
        // the merged model runs
        let x = Tensor::<4>::zeros([1, config.in_channels, 8, 8], &d);
        let y = half.forward(x, &[10.0]);
        assert_eq!(y.dims()[1], config.out_channels);
    }

    #[test]
    fn mismatched_structures_are_named() {
        let d = Device::flex();
        let base = ToyMlp::new(&ToyMlpConfig::default(), 0, &d);
        let wider = ToyMlp::new(
            &ToyMlpConfig {
                hidden: ToyMlpConfig::default().hidden * 2,
                ..ToyMlpConfig::default()
            },
            1,
            &d,
        );
        let err = Merger::new(("base.dir", &base), &[("wide.dir", &wider)])
            .err()
            .expect("different widths are refused");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("base.dir") && msg.contains("wide.dir"),
            "{msg}"
        );
        let first = param_shapes(&base)
            .into_iter()
            .zip(param_shapes(&wider))
            .find(|(a, b)| a != b)
            .unwrap()
            .0
            .0;
        assert!(msg.contains(&format!("`{first}`")), "{msg}");
    }

    #[test]
    fn any_model_merges_too() {
        let d = Device::flex();
        let a = AnyModel::Mlp(ToyMlp::new(&ToyMlpConfig::default(), 0, &d));
        let b = AnyModel::Mlp(ToyMlp::new(&ToyMlpConfig::default(), 1, &d));
        let mut m = Merger::new(("a", &a), &[("b", &b)]).unwrap();
        let out = m.merge(&MergeSpec::task_arithmetic(vec![0.0])).unwrap();
        assert_eq!(bits(&out.export()), bits(&a.export()));
        let err = m
            .merge(&MergeSpec::task_arithmetic(vec![0.0, 1.0]))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("one weight per expert"));
    }
}
