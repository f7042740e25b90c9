//! Concrete tensors: the values the reference interpreter computes with, and the data of constants.
//! One variant per dtype, each an `ndarray` array, so the interpreter can use ndarray's views and kernels.

use crate::DType;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

/// A dense tensor with a concrete shape.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    F64(ArrayD<f64>),
    I8(ArrayD<i8>),
    U8(ArrayD<u8>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// Applies `$body` to the array inside any tensor variant, binding it as `$a`.
#[macro_export]
macro_rules! dispatch {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $body,
            $crate::Tensor::F16($a) => $body,
            $crate::Tensor::BF16($a) => $body,
            $crate::Tensor::F64($a) => $body,
            $crate::Tensor::I8($a) => $body,
            $crate::Tensor::U8($a) => $body,
            $crate::Tensor::I32($a) => $body,
            $crate::Tensor::I64($a) => $body,
            $crate::Tensor::Bool($a) => $body,
        }
    };
}

/// Like [`dispatch!`] but rebuilds a tensor of the same variant from the body's array.
#[macro_export]
macro_rules! map_same {
    ($t:expr, $a:ident => $body:expr) => {
        match $t {
            $crate::Tensor::F32($a) => $crate::Tensor::F32($body),
            $crate::Tensor::F16($a) => $crate::Tensor::F16($body),
            $crate::Tensor::BF16($a) => $crate::Tensor::BF16($body),
            $crate::Tensor::F64($a) => $crate::Tensor::F64($body),
            $crate::Tensor::I8($a) => $crate::Tensor::I8($body),
            $crate::Tensor::U8($a) => $crate::Tensor::U8($body),
            $crate::Tensor::I32($a) => $crate::Tensor::I32($body),
            $crate::Tensor::I64($a) => $crate::Tensor::I64($body),
            $crate::Tensor::Bool($a) => $crate::Tensor::Bool($body),
        }
    };
}

/// A scalar element type of a tensor, with lossy conversion through f64 and i64.
pub trait Elem: Copy + Default + PartialOrd + PartialEq + std::fmt::Debug + Send + Sync + 'static {
    const DTYPE: DType;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn to_i64(self) -> i64;
    fn from_i64(v: i64) -> Self;
    fn wrap(a: ArrayD<Self>) -> Tensor;
    fn unwrap_ref(t: &Tensor) -> Option<&ArrayD<Self>>;
}

macro_rules! impl_elem {
    ($t:ty, $d:ident, $to_f:expr, $from_f:expr, $to_i:expr, $from_i:expr) => {
        impl Elem for $t {
            const DTYPE: DType = DType::$d;
            fn to_f64(self) -> f64 {
                let f: fn($t) -> f64 = $to_f;
                f(self)
            }
            fn from_f64(v: f64) -> Self {
                let f: fn(f64) -> $t = $from_f;
                f(v)
            }
            fn to_i64(self) -> i64 {
                let f: fn($t) -> i64 = $to_i;
                f(self)
            }
            fn from_i64(v: i64) -> Self {
                let f: fn(i64) -> $t = $from_i;
                f(v)
            }
            fn wrap(a: ArrayD<Self>) -> Tensor {
                Tensor::$d(a)
            }
            fn unwrap_ref(t: &Tensor) -> Option<&ArrayD<Self>> {
                match t {
                    Tensor::$d(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}

impl_elem!(f32, F32, |x| x as f64, |v| v as f32, |x| x as i64, |v| v as f32);
impl_elem!(f64, F64, |x| x, |v| v, |x| x as i64, |v| v as f64);
impl_elem!(f16, F16, |x| x.to_f64(), f16::from_f64, |x| x.to_f64() as i64, |v| f16::from_f64(v as f64));
impl_elem!(bf16, BF16, |x| x.to_f64(), bf16::from_f64, |x| x.to_f64() as i64, |v| bf16::from_f64(v as f64));
impl_elem!(i8, I8, |x| x as f64, |v| v as i8, |x| x as i64, |v| v as i8);
impl_elem!(u8, U8, |x| x as f64, |v| v as u8, |x| x as i64, |v| v as u8);
impl_elem!(i32, I32, |x| x as f64, |v| v as i32, |x| x as i64, |v| v as i32);
impl_elem!(i64, I64, |x| x as f64, |v| v as i64, |x| x, |v| v);
impl_elem!(bool, Bool, |x| x as u8 as f64, |v| v != 0.0, |x| x as i64, |v| v != 0);

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F16(_) => DType::F16,
            Tensor::BF16(_) => DType::BF16,
            Tensor::F64(_) => DType::F64,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::I32(_) => DType::I32,
            Tensor::I64(_) => DType::I64,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        dispatch!(self, a => a.shape())
    }

    pub fn len(&self) -> usize {
        dispatch!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn ty(&self) -> crate::TensorType {
        crate::TensorType::new(self.dtype(), crate::Shape::from_consts(self.shape()))
    }

    /// A tensor of zeros.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Tensor {
        Tensor::from_f64_fn(dtype, shape, |_| 0.0)
    }

    /// A tensor whose element `i` (row-major) is `f(i)` converted to `dtype`.
    pub fn from_f64_fn(dtype: DType, shape: &[usize], f: impl Fn(usize) -> f64) -> Tensor {
        fn build<T: Elem>(shape: &[usize], f: &dyn Fn(usize) -> f64) -> Tensor {
            let n: usize = shape.iter().product();
            let v: Vec<T> = (0..n).map(|i| T::from_f64(f(i))).collect();
            T::wrap(ArrayD::from_shape_vec(IxDyn(shape), v).expect("length matches shape"))
        }
        match dtype {
            DType::F32 => build::<f32>(shape, &f),
            DType::F16 => build::<f16>(shape, &f),
            DType::BF16 => build::<bf16>(shape, &f),
            DType::F64 => build::<f64>(shape, &f),
            DType::I8 => build::<i8>(shape, &f),
            DType::U8 => build::<u8>(shape, &f),
            DType::I32 => build::<i32>(shape, &f),
            DType::I64 => build::<i64>(shape, &f),
            DType::Bool => build::<bool>(shape, &f),
        }
    }

    pub fn from_vec<T: Elem>(shape: &[usize], v: Vec<T>) -> Option<Tensor> {
        ArrayD::from_shape_vec(IxDyn(shape), v).ok().map(T::wrap)
    }

    pub fn scalar<T: Elem>(v: T) -> Tensor {
        T::wrap(ArrayD::from_elem(IxDyn(&[]), v))
    }

    /// Elements as f64, row-major.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        dispatch!(self, a => a.iter().map(|x| x.to_f64()).collect())
    }

    /// Elements as i64, row-major (floats truncate toward zero).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        dispatch!(self, a => a.iter().map(|x| x.to_i64()).collect())
    }

    /// Converts to `to` with ONNX Cast semantics: floats truncate toward zero (saturating) when cast to
    /// integers, anything non-zero is `true`, integers wrap.
    pub fn cast(&self, to: DType) -> Tensor {
        if self.dtype() == to {
            return self.clone();
        }
        if self.dtype().is_int() && to.is_int() || self.dtype() == DType::Bool {
            let v = self.to_i64_vec();
            return Tensor::from_i64_slice(to, self.shape(), &v);
        }
        let v = self.to_f64_vec();
        Tensor::from_f64_fn(to, self.shape(), |i| v[i])
    }

    /// A tensor of `dtype` from i64 values (integers wrap, floats convert).
    pub fn from_i64_slice(dtype: DType, shape: &[usize], v: &[i64]) -> Tensor {
        fn build<T: Elem>(shape: &[usize], v: &[i64]) -> Tensor {
            T::wrap(
                ArrayD::from_shape_vec(IxDyn(shape), v.iter().map(|&x| T::from_i64(x)).collect())
                    .expect("length matches shape"),
            )
        }
        match dtype {
            DType::F32 => build::<f32>(shape, v),
            DType::F16 => build::<f16>(shape, v),
            DType::BF16 => build::<bf16>(shape, v),
            DType::F64 => build::<f64>(shape, v),
            DType::I8 => build::<i8>(shape, v),
            DType::U8 => build::<u8>(shape, v),
            DType::I32 => build::<i32>(shape, v),
            DType::I64 => build::<i64>(shape, v),
            DType::Bool => build::<bool>(shape, v),
        }
    }

    /// Reshapes to `shape` (same element count), keeping row-major order.
    pub fn reshape(&self, shape: &[usize]) -> Option<Tensor> {
        Some(map_same!(self, a => {
            let v: Vec<_> = a.iter().copied().collect();
            ArrayD::from_shape_vec(IxDyn(shape), v).ok()?
        }))
    }

    /// Raw little-endian bytes of the elements, row-major (bool as one byte 0/1).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len() * self.dtype().size());
        match self {
            Tensor::F32(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::F16(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::BF16(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::F64(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::I8(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::U8(a) => out.extend(a.iter().copied()),
            Tensor::I32(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::I64(a) => a.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            Tensor::Bool(a) => out.extend(a.iter().map(|&b| b as u8)),
        }
        out
    }

    /// Builds a tensor from raw little-endian bytes; `None` if the length does not match.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Option<Tensor> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        if bytes.len() != n.checked_mul(dtype.size())? {
            return None;
        }
        macro_rules! chunks {
            ($t:ty, $w:expr) => {
                bytes
                    .chunks_exact($w)
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk width")))
                    .collect::<Vec<$t>>()
            };
        }
        match dtype {
            DType::F32 => Tensor::from_vec(shape, chunks!(f32, 4)),
            DType::F16 => Tensor::from_vec(shape, chunks!(f16, 2)),
            DType::BF16 => Tensor::from_vec(shape, chunks!(bf16, 2)),
            DType::F64 => Tensor::from_vec(shape, chunks!(f64, 8)),
            DType::I8 => Tensor::from_vec(shape, chunks!(i8, 1)),
            DType::U8 => Tensor::from_vec(shape, bytes.to_vec()),
            DType::I32 => Tensor::from_vec(shape, chunks!(i32, 4)),
            DType::I64 => Tensor::from_vec(shape, chunks!(i64, 8)),
            DType::Bool => Tensor::from_vec(shape, bytes.iter().map(|&b| b != 0).collect::<Vec<bool>>()),
        }
    }

    /// Converts to an f32 array (any dtype).
    pub fn to_f32_array(&self) -> ArrayD<f32> {
        match self {
            Tensor::F32(a) => a.clone(),
            _ => dispatch!(self, a => a.mapv(|x| x.to_f64() as f32)),
        }
    }

    /// Converts to an f64 array (any dtype).
    pub fn to_f64_array(&self) -> ArrayD<f64> {
        dispatch!(self, a => a.mapv(|x| x.to_f64()))
    }

    /// Converts to an i64 array (any dtype).
    pub fn to_i64_array(&self) -> ArrayD<i64> {
        dispatch!(self, a => a.mapv(|x| x.to_i64()))
    }
}
