//! Named access to a module's float parameters. Paths are the struct field names
//! joined by dots (Vec entries by index), which for our models are exactly the
//! diffusers state-dict keys.

use anyhow::{Result, anyhow};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};

/// One exported parameter: key, shape, values.
pub type NamedParam = (String, Vec<usize>, Vec<f32>);

#[derive(Default)]
struct PathStack(Vec<String>);

impl PathStack {
    fn key(&self) -> String {
        self.0.join(".")
    }
}

struct Shapes {
    path: PathStack,
    out: Vec<(String, Vec<usize>)>,
}

impl ModuleVisitor for Shapes {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.0.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.out
            .push((self.path.key(), param.lazy_shape().to_vec()));
    }
}

/// Keys and shapes of every float parameter, in module order.
pub fn param_shapes<M: Module>(module: &M) -> Vec<(String, Vec<usize>)> {
    let mut v = Shapes {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// Total number of float parameter values.
pub fn param_count<M: Module>(module: &M) -> usize {
    param_shapes(module)
        .iter()
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

struct Export {
    path: PathStack,
    out: Vec<NamedParam>,
}

impl ModuleVisitor for Export {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.0.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("float parameters convert to f32");
        self.out.push((self.path.key(), shape, values));
    }
}

/// Copies every float parameter to the host as f32, in module order.
pub fn export_params<M: Module>(module: &M) -> Vec<NamedParam> {
    let mut v = Export {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

struct Import<'a> {
    path: PathStack,
    source: &'a mut dyn FnMut(&str, &[usize]) -> Result<Vec<f32>>,
    error: Option<anyhow::Error>,
}

impl ModuleMapper for Import<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.0.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.dims();
        let key = self.path.key();
        match (self.source)(&key, &shape) {
            Ok(values) if values.len() == shape.iter().product::<usize>() => {
                let grad = tensor.is_require_grad();
                let mut fresh =
                    Tensor::<D>::from_data(TensorData::new(values, shape), &tensor.device());
                if grad {
                    fresh = fresh.require_grad();
                }
                Param::from_mapped_value(id, fresh, mapper)
            }
            Ok(values) => {
                self.error = Some(anyhow!(
                    "`{key}`: got {} values for shape {shape:?}",
                    values.len()
                ));
                Param::from_mapped_value(id, tensor, mapper)
            }
            Err(e) => {
                self.error = Some(e);
                Param::from_mapped_value(id, tensor, mapper)
            }
        }
    }
}

/// Replaces every float parameter with values from `source(key, shape)`.
/// The first error (missing key, wrong shape) aborts the import.
pub fn import_params<M: Module>(
    module: M,
    source: &mut dyn FnMut(&str, &[usize]) -> Result<Vec<f32>>,
) -> Result<M> {
    let mut m = Import {
        path: PathStack::default(),
        source,
        error: None,
    };
    let module = module.map(&mut m);
    match m.error {
        Some(e) => Err(e),
        None => Ok(module),
    }
}

struct CollectFlat {
    path: PathStack,
    out: Vec<(String, Tensor<1>)>,
}

impl ModuleVisitor for CollectFlat {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.0.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val().inner();
        let n = t.shape().num_elements();
        self.out.push((self.path.key(), t.reshape([n])));
    }
}

/// Every float parameter as a flat device tensor (no autodiff, no copy to the host).
pub fn flat_params<M: Module>(module: &M) -> Vec<(String, Tensor<1>)> {
    let mut v = CollectFlat {
        path: PathStack::default(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

struct MapFlat<'a> {
    path: PathStack,
    f: &'a mut dyn FnMut(&str, Tensor<1>) -> Tensor<1>,
}

impl ModuleMapper for MapFlat<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.0.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let shape = tensor.dims();
        let grad = tensor.is_require_grad();
        let autodiff = tensor.is_autodiff();
        let n = shape.iter().product::<usize>();
        let flat = (self.f)(&self.path.key(), tensor.inner().reshape([n]));
        let mut fresh: Tensor<D> = flat.reshape(shape);
        if autodiff {
            fresh = Tensor::from_inner(fresh);
        }
        if grad {
            fresh = fresh.require_grad();
        }
        Param::from_mapped_value(id, fresh, mapper)
    }
}

/// Replaces every float parameter by `f(key, flat value)` computed on the device.
/// Autodiff tracking and `require_grad` are kept as they were.
pub fn map_flat_params<M: Module>(module: M, f: &mut dyn FnMut(&str, Tensor<1>) -> Tensor<1>) -> M {
    let mut m = MapFlat {
        path: PathStack::default(),
        f,
    };
    module.map(&mut m)
}

struct CollectGrads<'a> {
    path: PathStack,
    grads: &'a burn::tensor::Gradients,
    out: Vec<(String, Tensor<1>)>,
}

impl ModuleVisitor for CollectGrads<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.0.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.0.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = param.val().grad(self.grads) {
            let n = g.shape().num_elements();
            self.out.push((self.path.key(), g.reshape([n])));
        }
    }
}

/// The gradient of every tracked float parameter, flattened, in module order.
/// Parameters without a gradient (not tracked, or not reached) are left out.
pub fn flat_grads<M: Module>(
    module: &M,
    grads: &burn::tensor::Gradients,
) -> Vec<(String, Tensor<1>)> {
    let mut v = CollectGrads {
        path: PathStack::default(),
        grads,
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}
