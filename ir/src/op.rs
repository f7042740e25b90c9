//! The closed set of graph ops. Each op is declared once in `define_ops!` below, with its text name, its
//! kind, its input arity and its typed attributes; the property table, the generic attribute form used by
//! the text format and the e-graph, and the exhaustive matches elsewhere (shape inference, interpreter,
//! decomposition) all follow from that declaration. `docs/add-an-op.md` lists the steps.

use crate::attr::{AttrType, AttrValue};
use crate::{keyword_enum, DType, Shape};
use std::collections::BTreeMap;

keyword_enum! {
    /// Elementwise ops of one input whose output has the input's type (except the predicates, which give bool).
    UnaryOp {
        Neg = "neg", Abs = "abs", Exp = "exp", Log = "log", Sqrt = "sqrt", Rsqrt = "rsqrt",
        Reciprocal = "reciprocal", Sin = "sin", Cos = "cos", Tan = "tan", Asin = "asin", Acos = "acos",
        Atan = "atan", Sinh = "sinh", Cosh = "cosh", Asinh = "asinh", Acosh = "acosh", Atanh = "atanh",
        Tanh = "tanh", Sigmoid = "sigmoid", Relu = "relu", Erf = "erf", Floor = "floor", Ceil = "ceil",
        Round = "round", Sign = "sign", Not = "not", IsNaN = "isnan", BitwiseNot = "bitwise_not",
        Softplus = "softplus", Softsign = "softsign", HardSwish = "hardswish", Silu = "silu", Mish = "mish",
        Identity = "identity",
    }
}

keyword_enum! {
    /// Elementwise ops of two inputs with numpy broadcasting.
    BinaryOp {
        Add = "add", Sub = "sub", Mul = "mul", Div = "div", Pow = "pow", Max = "max", Min = "min",
        /// Integer modulo with the sign of the divisor (Python), or C `fmod` for `fmod`.
        Mod = "mod", Fmod = "fmod",
        Equal = "eq", Less = "lt", LessEqual = "le", Greater = "gt", GreaterEqual = "ge",
        And = "and", Or = "or", Xor = "xor",
        BitAnd = "bitwise_and", BitOr = "bitwise_or", BitXor = "bitwise_xor",
        ShiftLeft = "shl", ShiftRight = "shr",
        /// `x < 0 ? slope * x : x` with `slope` broadcast.
        PRelu = "prelu",
    }
}

impl UnaryOp {
    /// Unary ops defined by a decomposition into other ops.
    pub fn is_composite(self) -> bool {
        matches!(self, UnaryOp::Softplus | UnaryOp::Softsign | UnaryOp::HardSwish | UnaryOp::Silu | UnaryOp::Mish)
    }

    /// Ops whose result is `bool` whatever the input.
    pub fn is_predicate(self) -> bool {
        matches!(self, UnaryOp::IsNaN)
    }
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal | BinaryOp::Less | BinaryOp::LessEqual | BinaryOp::Greater | BinaryOp::GreaterEqual
        )
    }

    pub fn is_logical(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Xor)
    }
}

keyword_enum! {
    /// The combining function of a reduction.
    ReduceKind {
        Sum = "sum", Mean = "mean", Max = "max", Min = "min", Prod = "prod", L1 = "l1", L2 = "l2",
        LogSum = "logsum", LogSumExp = "logsumexp", SumSquare = "sumsquare",
    }
}

keyword_enum! {
    /// Which GELU formula.
    GeluApprox { None = "none", Tanh = "tanh" }
}

keyword_enum! {
    /// How `pad` fills the border.
    PadMode { Constant = "constant", Reflect = "reflect", Edge = "edge", Wrap = "wrap" }
}

keyword_enum! {
    /// How scatter combines an update with the existing element.
    ScatterReduction { None = "none", Add = "add", Mul = "mul", Max = "max", Min = "min" }
}

keyword_enum! {
    /// Element order of depth-to-space.
    DepthToSpaceMode { Dcr = "DCR", Crd = "CRD" }
}

keyword_enum! {
    /// Interpolation of `resize`.
    ResizeMode { Nearest = "nearest", Linear = "linear", Cubic = "cubic" }
}

keyword_enum! {
    /// How `resize` maps an output coordinate to an input coordinate.
    CoordTransform {
        HalfPixel = "half_pixel", HalfPixelSymmetric = "half_pixel_symmetric", PytorchHalfPixel = "pytorch_half_pixel",
        AlignCorners = "align_corners", Asymmetric = "asymmetric",
    }
}

keyword_enum! {
    /// Rounding of `resize` in nearest mode.
    NearestMode { RoundPreferFloor = "round_prefer_floor", RoundPreferCeil = "round_prefer_ceil", Floor = "floor", Ceil = "ceil" }
}

/// Broad classes of ops, used by passes and targets to treat families alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Output element i depends only on input elements i (after broadcasting).
    Elementwise,
    /// Reduces along axes.
    Reduction,
    /// Matmul and convolution: multiply-accumulate over a contracted dimension.
    Contraction,
    /// Moves or selects elements without arithmetic.
    Movement,
    /// Normalizations and softmax: reductions feeding elementwise math.
    Normalization,
    /// Everything else.
    Other,
}

/// The property table entry of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpInfo {
    pub name: &'static str,
    pub kind: OpKind,
    pub min_inputs: usize,
    /// `usize::MAX` for variadic ops.
    pub max_inputs: usize,
    /// Defined by a decomposition into other ops (see `decompose`).
    pub composite: bool,
}

const VARIADIC: usize = usize::MAX;

macro_rules! define_ops {
    ($(
        $(#[doc = $doc:literal])*
        $var:ident { $($field:ident : $fty:ty),* } = $name:literal, $kind:ident, $min:expr, $max:expr, $composite:expr;
    )*) => {
        /// A graph op with its attributes. `Unary` and `Binary` hold the attribute-free elementwise ops.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            Unary(UnaryOp),
            Binary(BinaryOp),
            $( $(#[doc = $doc])* $var { $(#[allow(missing_docs)] $field: $fty),* }, )*
        }

        impl Op {
            /// The property table entry of this op.
            pub fn info(&self) -> OpInfo {
                match self {
                    Op::Unary(u) => OpInfo { name: u.as_str(), kind: OpKind::Elementwise, min_inputs: 1, max_inputs: 1, composite: u.is_composite() },
                    Op::Binary(b) => OpInfo { name: b.as_str(), kind: OpKind::Elementwise, min_inputs: 2, max_inputs: 2, composite: matches!(b, BinaryOp::PRelu) },
                    $( Op::$var { .. } => OpInfo { name: $name, kind: OpKind::$kind, min_inputs: $min, max_inputs: $max, composite: $composite }, )*
                }
            }

            /// The attributes in declaration order, in generic form.
            pub fn attrs(&self) -> Vec<(&'static str, AttrValue)> {
                match self {
                    Op::Unary(_) | Op::Binary(_) => Vec::new(),
                    $( Op::$var { $($field),* } => vec![$((stringify!($field), $field.to_attr())),*], )*
                }
            }

            /// Builds an op from its text name and generic attributes. Every attribute must be present, of
            /// the right type, and none may be left over.
            pub fn from_name_attrs(name: &str, attrs: &BTreeMap<String, AttrValue>) -> Result<Op, String> {
                if let Some(u) = UnaryOp::parse(name) {
                    return no_attrs(name, attrs).map(|_| Op::Unary(u));
                }
                if let Some(b) = BinaryOp::parse(name) {
                    return no_attrs(name, attrs).map(|_| Op::Binary(b));
                }
                match name {
                    $( $name => {
                        let known: &[&str] = &[$(stringify!($field)),*];
                        if let Some(extra) = attrs.keys().find(|k| !known.contains(&k.as_str())) {
                            return Err(format!("op `{}` has no attribute `{}`", name, extra));
                        }
                        Ok(Op::$var { $($field: get_attr(name, attrs, stringify!($field))?),* })
                    } )*
                    _ => Err(format!("unknown op `{name}`")),
                }
            }

            /// Every op name, for documentation and fuzzing.
            pub fn all_names() -> Vec<&'static str> {
                let mut v: Vec<&'static str> = Vec::new();
                v.extend([$($name),*]);
                v
            }
        }
    };
}

fn no_attrs(name: &str, attrs: &BTreeMap<String, AttrValue>) -> Result<(), String> {
    match attrs.keys().next() {
        Some(k) => Err(format!("op `{name}` has no attribute `{k}`")),
        None => Ok(()),
    }
}

fn get_attr<T: AttrType>(op: &str, attrs: &BTreeMap<String, AttrValue>, field: &str) -> Result<T, String> {
    let v = attrs.get(field).ok_or_else(|| format!("op `{op}` needs attribute `{field}`"))?;
    T::from_attr(v).ok_or_else(|| format!("op `{op}`: attribute `{field}` has the wrong type ({v})"))
}

define_ops! {
    /// Converts element type with ONNX Cast semantics.
    Cast { to: DType } = "cast", Elementwise, 1, 1, false;
    /// Reinterprets the bits of each element as `to`, which must have the same size.
    BitCast { to: DType } = "bitcast", Elementwise, 1, 1, false;
    /// `cond ? a : b`, broadcast.
    Where {} = "where", Elementwise, 3, 3, false;
    /// `min(max(x, lo), hi)` with scalar bounds as inputs 1 and 2.
    Clip {} = "clip", Elementwise, 3, 3, false;
    LeakyRelu { alpha: f32 } = "leaky_relu", Elementwise, 1, 1, false;
    Elu { alpha: f32 } = "elu", Elementwise, 1, 1, false;
    Selu { alpha: f32, gamma: f32 } = "selu", Elementwise, 1, 1, false;
    Celu { alpha: f32 } = "celu", Elementwise, 1, 1, false;
    HardSigmoid { alpha: f32, beta: f32 } = "hard_sigmoid", Elementwise, 1, 1, false;
    ThresholdedRelu { alpha: f32 } = "thresholded_relu", Elementwise, 1, 1, false;
    Shrink { bias: f32, lambd: f32 } = "shrink", Elementwise, 1, 1, false;
    /// GELU, exact (erf) or tanh approximation.
    Gelu { approximate: GeluApprox } = "gelu", Elementwise, 1, 1, true;
    IsInf { detect_positive: bool, detect_negative: bool } = "isinf", Elementwise, 1, 1, false;
    /// Batched matrix product with numpy semantics (1-D operands promoted, batch dims broadcast).
    MatMul {} = "matmul", Contraction, 2, 2, false;
    /// N-d convolution, NCHW layout, weights `[M, C/group, k...]`, optional bias `[M]`; pads are
    /// `[begin..., end...]`.
    Conv { strides: Vec<i64>, pads: Vec<i64>, dilations: Vec<i64>, group: i64 } = "conv", Contraction, 2, 3, false;
    /// Transposed convolution; weights `[C, M/group, k...]`.
    ConvTranspose { strides: Vec<i64>, pads: Vec<i64>, dilations: Vec<i64>, group: i64, output_padding: Vec<i64> } = "conv_transpose", Contraction, 2, 3, false;
    MaxPool { kernel: Vec<i64>, strides: Vec<i64>, pads: Vec<i64>, dilations: Vec<i64>, ceil_mode: bool } = "max_pool", Reduction, 1, 1, false;
    AvgPool { kernel: Vec<i64>, strides: Vec<i64>, pads: Vec<i64>, dilations: Vec<i64>, ceil_mode: bool, count_include_pad: bool } = "avg_pool", Reduction, 1, 1, false;
    LpPool { kernel: Vec<i64>, strides: Vec<i64>, pads: Vec<i64>, dilations: Vec<i64>, ceil_mode: bool, p: i64 } = "lp_pool", Reduction, 1, 1, false;
    /// Reduction over `axes` (non-negative, sorted). Empty `axes` reduces over no axis: each element is
    /// reduced alone (sum gives x, l2 gives |x|, sumsquare x^2).
    Reduce { kind: ReduceKind, axes: Vec<i64>, keepdims: bool } = "reduce", Reduction, 1, 1, false;
    ArgMax { axis: i64, keepdims: bool, select_last: bool } = "argmax", Reduction, 1, 1, false;
    ArgMin { axis: i64, keepdims: bool, select_last: bool } = "argmin", Reduction, 1, 1, false;
    Softmax { axis: i64 } = "softmax", Normalization, 1, 1, true;
    LogSoftmax { axis: i64 } = "log_softmax", Normalization, 1, 1, true;
    Hardmax { axis: i64 } = "hardmax", Normalization, 1, 1, false;
    /// Normalizes over the dims from `axis` on, then `* scale (+ bias)`.
    LayerNorm { axis: i64, epsilon: f32 } = "layer_norm", Normalization, 2, 3, true;
    /// `x / sqrt(mean(x^2 over dims from axis) + eps) * scale`.
    RmsNorm { axis: i64, epsilon: f32 } = "rms_norm", Normalization, 2, 2, true;
    /// Inference batch norm: inputs x, scale, bias, mean, var; channel axis 1.
    BatchNorm { epsilon: f32 } = "batch_norm", Normalization, 5, 5, true;
    /// Inputs x, scale, bias; normalizes over spatial dims per (n, c).
    InstanceNorm { epsilon: f32 } = "instance_norm", Normalization, 3, 3, true;
    /// Inputs x, scale, bias (per channel); normalizes each group of channels with its spatial dims.
    GroupNorm { num_groups: i64, epsilon: f32 } = "group_norm", Normalization, 3, 3, true;
    /// Local response normalization across channels.
    Lrn { size: i64, alpha: f32, beta: f32, bias: f32 } = "lrn", Normalization, 1, 1, false;
    CumSum { axis: i64, exclusive: bool, reverse: bool } = "cumsum", Other, 1, 1, false;
    CumProd { axis: i64, exclusive: bool, reverse: bool } = "cumprod", Other, 1, 1, false;
    Transpose { perm: Vec<i64> } = "transpose", Movement, 1, 1, false;
    /// Row-major reshape to a shape that may name symbols.
    Reshape { shape: Shape } = "reshape", Movement, 1, 1, false;
    /// Broadcast to `shape` (numpy rules, the result has the broadcast of input and `shape`).
    Expand { shape: Shape } = "expand", Movement, 1, 1, false;
    Concat { axis: i64 } = "concat", Movement, 1, VARIADIC, false;
    /// One output per entry of `sizes`.
    Split { axis: i64, sizes: Vec<i64> } = "split", Movement, 1, 1, false;
    /// Per-axis `starts`, `ends`, `steps` (one entry per input dim), already clamped as ONNX does.
    Slice { starts: Vec<i64>, ends: Vec<i64>, steps: Vec<i64> } = "slice", Movement, 1, 1, false;
    /// Gathers along `axis` with an integer index tensor (negative indices count from the end).
    Gather { axis: i64 } = "gather", Movement, 2, 2, false;
    GatherElements { axis: i64 } = "gather_elements", Movement, 2, 2, false;
    GatherNd { batch_dims: i64 } = "gather_nd", Movement, 2, 2, false;
    /// Inputs data, indices, updates.
    ScatterElements { axis: i64, reduction: ScatterReduction } = "scatter_elements", Movement, 3, 3, false;
    ScatterNd { reduction: ScatterReduction } = "scatter_nd", Movement, 3, 3, false;
    /// Inputs x and a scalar fill value; pads are `[begin..., end...]` and may be negative (crop).
    Pad { pads: Vec<i64>, mode: PadMode } = "pad", Movement, 2, 2, false;
    Tile { repeats: Vec<i64> } = "tile", Movement, 1, 1, false;
    /// Keeps the upper (or lower) triangle of the last two dims from diagonal `k`.
    Trilu { upper: bool, k: i64 } = "trilu", Movement, 1, 1, false;
    /// Inputs indices and `[off, on]` values; a new axis of size `depth` at `axis`.
    OneHot { axis: i64, depth: i64 } = "one_hot", Movement, 2, 2, false;
    /// Outputs values and i64 indices of the `k` largest (or smallest) along `axis`.
    TopK { axis: i64, k: i64, largest: bool, sorted: bool } = "topk", Other, 1, 1, false;
    DepthToSpace { blocksize: i64, mode: DepthToSpaceMode } = "depth_to_space", Movement, 1, 1, false;
    SpaceToDepth { blocksize: i64 } = "space_to_depth", Movement, 1, 1, false;
    /// Resize to the static `sizes`; `scales` are the scale factors used by the coordinate transform.
    Resize { sizes: Vec<i64>, scales: Vec<f32>, mode: ResizeMode, coord: CoordTransform, nearest: NearestMode, cubic_a: f32, exclude_outside: bool } = "resize", Movement, 1, 1, false;
    /// Scaled dot-product attention: `softmax(q @ k^T * scale (+ mask)) @ v` with q `[..., Sq, D]`,
    /// k `[..., Skv, D]`, v `[..., Skv, Dv]` and an optional additive mask broadcast to `[..., Sq, Skv]`.
    Attention { scale: f32 } = "attention", Contraction, 3, 4, true;
    /// Einstein summation with an explicit `->` output.
    Einsum { equation: String } = "einsum", Contraction, 1, VARIADIC, false;
}

impl Op {
    pub fn name(&self) -> &'static str {
        self.info().name
    }

    pub fn is_composite(&self) -> bool {
        self.info().composite
    }

    /// Number of results this op produces.
    pub fn num_outputs(&self) -> usize {
        match self {
            Op::Split { sizes, .. } => sizes.len(),
            Op::TopK { .. } => 2,
            _ => 1,
        }
    }

    /// Parses a text-form op name (used where no attributes are given, e.g. elementwise ops).
    pub fn elementwise(name: &str) -> Option<Op> {
        UnaryOp::parse(name).map(Op::Unary).or_else(|| BinaryOp::parse(name).map(Op::Binary))
    }
}
