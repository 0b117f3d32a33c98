//! Host tensors: a dtype, a shape and little-endian bytes, exactly as they
//! sit in a safetensors file. No device, no autodiff, no burn.
//!
//! Float conversion goes through `f32`, the engine's working precision:
//! [`HostTensor::to_f32`] widens or narrows whatever the file holds, and
//! [`HostTensor::from_f32_as`] converts back so a checkpoint keeps the dtype
//! it was loaded in (an f16 checkpoint saves as f16).

use anyhow::{Result, bail, ensure};
use half::{bf16, f16};
use std::collections::BTreeMap;
use std::fmt;

/// Element types this layer reads and writes.
///
/// Any other safetensors dtype (bool, u8, i32, fp8, ...) is refused when a
/// file is read, with an error naming the tensor and its dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
    /// IEEE 754 double precision.
    F64,
    /// Signed 64-bit integer (not usable as a float weight).
    I64,
}

impl DType {
    /// Every supported dtype, for messages and tests.
    pub const ALL: [DType; 5] = [DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64];

    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
        }
    }

    /// The dtype's name as written in a safetensors header (`"F32"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F64 => "F64",
            DType::I64 => "I64",
        }
    }

    /// Parses a safetensors header dtype name; `None` for unsupported ones.
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Whether the dtype holds floating-point values.
    pub fn is_float(self) -> bool {
        !matches!(self, DType::I64)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor in host memory: dtype, shape and raw little-endian bytes.
///
/// The fields are public; [`HostTensor::new`] checks that they agree, and
/// every reader/writer in this module re-checks before touching the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTensor {
    /// Element type.
    pub dtype: DType,
    /// Shape, row-major (C order). `[]` is a scalar.
    pub shape: Vec<usize>,
    /// Little-endian element bytes, exactly as stored in the file.
    pub bytes: Vec<u8>,
}

/// Tensors by name, sorted by name (so iteration and saves are deterministic).
pub type TensorMap = BTreeMap<String, HostTensor>;

/// Element count of `shape`, or `None` if the product overflows `usize`.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl HostTensor {
    /// Builds a tensor from raw bytes, checking `bytes.len() == numel * dtype size`.
    pub fn new(dtype: DType, shape: Vec<usize>, bytes: Vec<u8>) -> Result<Self> {
        let t = HostTensor {
            dtype,
            shape,
            bytes,
        };
        t.check_len()?;
        Ok(t)
    }

    /// An f32 tensor from values; errors if `data.len()` does not match `shape`.
    pub fn from_f32(shape: Vec<usize>, data: &[f32]) -> Result<Self> {
        Self::from_f32_as(DType::F32, shape, data)
    }

    /// A tensor of `dtype` from f32 values, converting each value (round to
    /// nearest even for f16/bf16, exact widening for f64). `I64` is refused.
    pub fn from_f32_as(dtype: DType, shape: Vec<usize>, data: &[f32]) -> Result<Self> {
        let numel = checked_numel(&shape)
            .ok_or_else(|| anyhow::anyhow!("shape {shape:?} has too many elements"))?;
        ensure!(
            numel == data.len(),
            "shape {shape:?} holds {numel} elements but {} values were given",
            data.len()
        );
        let mut bytes = Vec::with_capacity(numel * dtype.size());
        match dtype {
            DType::F32 => data
                .iter()
                .for_each(|v| bytes.extend_from_slice(&v.to_le_bytes())),
            DType::F16 => data
                .iter()
                .for_each(|v| bytes.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
            DType::BF16 => data
                .iter()
                .for_each(|v| bytes.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
            DType::F64 => data
                .iter()
                .for_each(|v| bytes.extend_from_slice(&f64::from(*v).to_le_bytes())),
            DType::I64 => bail!("cannot store float values as I64"),
        }
        Ok(HostTensor {
            dtype,
            shape,
            bytes,
        })
    }

    /// The values as f32 (f16/bf16 widened, f64 narrowed). `I64` is an error,
    /// as is a byte length that does not match the shape.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        self.check_len()?;
        let b = &self.bytes;
        Ok(match self.dtype {
            DType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            DType::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::BF16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            DType::F64 => b
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a) as f32
                })
                .collect(),
            DType::I64 => bail!("an I64 tensor cannot be used as float weights"),
        })
    }

    /// Number of elements (product of the shape; `usize::MAX` if it overflows).
    pub fn numel(&self) -> usize {
        checked_numel(&self.shape).unwrap_or(usize::MAX)
    }

    /// Whether the dtype is a float type.
    pub fn is_float(&self) -> bool {
        self.dtype.is_float()
    }

    /// Checks that the byte length matches shape and dtype.
    pub fn check_len(&self) -> Result<()> {
        let expected = checked_numel(&self.shape)
            .and_then(|n| n.checked_mul(self.dtype.size()))
            .ok_or_else(|| anyhow::anyhow!("shape {:?} has too many elements", self.shape))?;
        ensure!(
            self.bytes.len() == expected,
            "{} tensor of shape {:?} needs {expected} bytes but holds {}",
            self.dtype,
            self.shape,
            self.bytes.len()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_round_trip_is_exact() {
        let v = [0.0, -1.5, 3.25e-8, f32::MAX, f32::MIN_POSITIVE];
        let t = HostTensor::from_f32(vec![5], &v).unwrap();
        assert_eq!(t.bytes.len(), 20);
        assert_eq!(t.to_f32().unwrap(), v);
        assert_eq!(t.numel(), 5);
        assert!(t.is_float());
    }

    #[test]
    fn half_types_round_trip_through_f32() {
        // Values exactly representable in f16 and bf16.
        let v = [0.0, 1.0, -2.5, 0.125, 1024.0];
        for dtype in [DType::F16, DType::BF16, DType::F64] {
            let t = HostTensor::from_f32_as(dtype, vec![1, 5], &v).unwrap();
            assert_eq!(t.bytes.len(), 5 * dtype.size());
            let back = t.to_f32().unwrap();
            assert_eq!(back, v, "{dtype}");
            // And back into the same dtype gives the same bytes.
            let again = HostTensor::from_f32_as(dtype, vec![1, 5], &back).unwrap();
            assert_eq!(again, t);
        }
    }

    #[test]
    fn f16_rounds_to_nearest() {
        let t = HostTensor::from_f32_as(DType::F16, vec![1], &[1.0 + 1e-4]).unwrap();
        assert_eq!(t.to_f32().unwrap(), [1.0]);
        assert_eq!(t.bytes, f16::ONE.to_le_bytes());
    }

    #[test]
    fn mismatches_and_i64_are_errors() {
        assert!(HostTensor::from_f32(vec![2, 2], &[1.0; 3]).is_err());
        assert!(HostTensor::from_f32_as(DType::I64, vec![1], &[1.0]).is_err());
        let t = HostTensor::new(DType::I64, vec![2], vec![0; 16]).unwrap();
        assert!(!t.is_float());
        let e = t.to_f32().unwrap_err().to_string();
        assert!(e.contains("I64"), "{e}");
        assert!(HostTensor::new(DType::F32, vec![2], vec![0; 7]).is_err());
        let bad = HostTensor {
            dtype: DType::F32,
            shape: vec![3],
            bytes: vec![0; 8],
        };
        assert!(bad.to_f32().is_err());
        let huge = HostTensor {
            dtype: DType::F32,
            shape: vec![usize::MAX, 2],
            bytes: vec![],
        };
        assert_eq!(huge.numel(), usize::MAX);
        assert!(huge.check_len().is_err());
    }

    #[test]
    fn scalar_has_one_element() {
        let t = HostTensor::from_f32(vec![], &[7.0]).unwrap();
        assert_eq!(t.numel(), 1);
        assert_eq!(t.to_f32().unwrap(), [7.0]);
    }

    #[test]
    fn dtype_names_round_trip() {
        for d in DType::ALL {
            assert_eq!(DType::from_name(d.name()), Some(d));
        }
        assert_eq!(DType::from_name("I32"), None);
    }
}
