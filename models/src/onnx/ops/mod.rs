//! One handler per ONNX op type: reads attributes and inputs as the op's opset defines them, and emits
//! sovc ops (folded when constant). Ops not listed here are refused with the op type, node and opset.
//! The dispatch and the small handlers are here; `nn` holds the network layers (conv, pooling, norms,
//! attention, losses, quantization) and `shape` the shape and layout ops (reshape, slice, gather, pad,
//! resize, ...).

mod nn;
mod shape;

use nn::*;
use shape::*;

use super::import::{DimVal, Importer, NodeCtx, Val};
use super::tensor::dtype_from_onnx;
use super::ImportError;
use sovc_ir::infer::{norm_axis, slice_range};
use sovc_ir::{
    BinaryOp, CoordTransform, DType, DepthToSpaceMode, Dim, GeluApprox, NearestMode, Op, PadMode, ReduceKind,
    ResizeMode, ScatterReduction, Shape, Tensor, UnaryOp,
};

type R<T> = Result<T, ImportError>;

fn unary_of(t: &str) -> Option<UnaryOp> {
    Some(match t {
        "Abs" => UnaryOp::Abs,
        "Neg" => UnaryOp::Neg,
        "Exp" => UnaryOp::Exp,
        "Log" => UnaryOp::Log,
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Tan" => UnaryOp::Tan,
        "Asin" => UnaryOp::Asin,
        "Acos" => UnaryOp::Acos,
        "Atan" => UnaryOp::Atan,
        "Sinh" => UnaryOp::Sinh,
        "Cosh" => UnaryOp::Cosh,
        "Asinh" => UnaryOp::Asinh,
        "Acosh" => UnaryOp::Acosh,
        "Atanh" => UnaryOp::Atanh,
        "Tanh" => UnaryOp::Tanh,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Relu" => UnaryOp::Relu,
        "Erf" => UnaryOp::Erf,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Sign" => UnaryOp::Sign,
        "Not" => UnaryOp::Not,
        "IsNaN" => UnaryOp::IsNaN,
        "BitwiseNot" => UnaryOp::BitwiseNot,
        "Softplus" => UnaryOp::Softplus,
        "Softsign" => UnaryOp::Softsign,
        "HardSwish" => UnaryOp::HardSwish,
        "Mish" => UnaryOp::Mish,
        _ => return None,
    })
}

fn binary_of(t: &str) -> Option<BinaryOp> {
    Some(match t {
        "Add" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "LessOrEqual" => BinaryOp::LessEqual,
        "Greater" => BinaryOp::Greater,
        "GreaterOrEqual" => BinaryOp::GreaterEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        "Xor" => BinaryOp::Xor,
        "BitwiseAnd" => BinaryOp::BitAnd,
        "BitwiseOr" => BinaryOp::BitOr,
        "BitwiseXor" => BinaryOp::BitXor,
        "PRelu" => BinaryOp::PRelu,
        _ => return None,
    })
}

fn req<'a>(cx: &NodeCtx, ins: &'a [Option<Val>], i: usize) -> R<&'a Val> {
    ins.get(i).and_then(|v| v.as_ref()).ok_or_else(|| cx.err(format!("input {i} is required")))
}

fn opt(ins: &[Option<Val>], i: usize) -> Option<&Val> {
    ins.get(i).and_then(|v| v.as_ref())
}

/// The integer contents of an input that must be known at compile time.
fn ints(cx: &NodeCtx, v: &Val) -> R<Vec<i64>> {
    if let Some(t) = &v.known {
        return Ok(t.to_i64_vec());
    }
    if let Some(d) = v.as_dims() {
        if let Some(v) = d.iter().map(DimVal::as_int).collect::<Option<Vec<_>>>() {
            return Ok(v);
        }
    }
    let hint = if let Some(d) = &v.dims {
        let syms: Vec<String> =
            d.iter().filter_map(|e| if let DimVal::Sym(s) = e { Some(s.to_string()) } else { None }).collect();
        format!("; it depends on the symbolic dimension(s) {}: fix them with --shape", syms.join(", "))
    } else {
        String::from("; it is computed at run time (a graph input can be bound as a constant)")
    };
    Err(ImportError::NeedsConstant { node: cx.name.clone(), op_type: cx.op_type.into(), input: v.name.clone(), hint })
}

/// The entries of a shape input: known numbers or symbolic dims.
fn shape_entries(cx: &NodeCtx, v: &Val) -> R<Vec<DimVal>> {
    match v.as_dims() {
        Some(d) => Ok(d),
        None => ints(cx, v).map(|v| v.into_iter().map(DimVal::Int).collect()),
    }
}

fn floats(cx: &NodeCtx, v: &Val) -> R<Vec<f64>> {
    match &v.known {
        Some(t) => Ok(t.to_f64_vec()),
        None => Err(ImportError::NeedsConstant {
            node: cx.name.clone(),
            op_type: cx.op_type.into(),
            input: v.name.clone(),
            hint: String::new(),
        }),
    }
}

fn scalar(dtype: DType, v: f64) -> Val {
    Val::known(Tensor::from_f64_fn(dtype, &[], |_| v))
}

fn rank(v: &Val) -> usize {
    v.ty.shape.rank()
}

fn dims(v: &Val) -> &[Dim] {
    &v.ty.shape.0
}

fn static_dims(cx: &NodeCtx, v: &Val) -> R<Vec<i64>> {
    v.ty.shape.as_consts().map(|d| d.into_iter().map(|x| x as i64).collect()).ok_or_else(|| {
        cx.err(format!("needs a static shape for `{}`, found {}: fix symbols with --shape", v.name, v.ty.shape))
    })
}

fn axis(cx: &NodeCtx, a: i64, r: usize) -> R<i64> {
    norm_axis(a, r).map(|a| a as i64).map_err(|m| cx.err(m))
}

fn axes_list(cx: &NodeCtx, axes: &[i64], r: usize) -> R<Vec<i64>> {
    let mut v: Vec<i64> = axes.iter().map(|&a| axis(cx, a, r)).collect::<R<_>>()?;
    v.sort_unstable();
    Ok(v)
}

/// Reshape through the IR op (with folding).
fn reshape(imp: &mut Importer, cx: &NodeCtx, x: &Val, shape: Vec<Dim>) -> R<Val> {
    imp.emit1(cx, Op::Reshape { shape: Shape(shape) }, &[x])
}

/// Dispatches one node to its handler.
pub fn handle(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let t = cx.op_type;
    if let Some(u) = unary_of(t) {
        return Ok(vec![imp.emit1(cx, Op::Unary(u), &[req(cx, ins, 0)?])?]);
    }
    if let Some(b) = binary_of(t) {
        return Ok(vec![imp.emit1(cx, Op::Binary(b), &[req(cx, ins, 0)?, req(cx, ins, 1)?])?]);
    }
    let x = || req(cx, ins, 0);
    let one = |v: Val| Ok(vec![v]);
    match t {
        "Identity" => one(x()?.clone()),
        "Dropout" => {
            if opt(ins, 2).is_some_and(|m| m.known.as_ref().is_none_or(|k| k.to_i64_vec() != [0]))
                || cx.i("is_test", 1) == 0 && cx.opset < 7
            {
                return Err(cx.err("training mode is not supported"));
            }
            if cx.used_outputs() > 1 {
                let mask =
                    imp.emit1(cx, Op::Expand { shape: x()?.ty.shape.clone() }, &[&Val::known(Tensor::scalar(true))])?;
                return Ok(vec![x()?.clone(), mask]);
            }
            one(x()?.clone())
        }
        "Mod" => {
            let op = if cx.i("fmod", 0) == 1 { BinaryOp::Fmod } else { BinaryOp::Mod };
            one(imp.emit1(cx, Op::Binary(op), &[x()?, req(cx, ins, 1)?])?)
        }
        "BitShift" => {
            let op = match cx.s("direction").as_deref() {
                Some("LEFT") => BinaryOp::ShiftLeft,
                Some("RIGHT") => BinaryOp::ShiftRight,
                d => return Err(cx.err(format!("direction {d:?} must be LEFT or RIGHT"))),
            };
            one(imp.emit1(cx, Op::Binary(op), &[x()?, req(cx, ins, 1)?])?)
        }
        "Max" | "Min" | "Sum" | "Mean" => variadic(imp, cx, ins),
        "Clip" => clip(imp, cx, ins),
        "Where" => one(imp.emit1(cx, Op::Where {}, &[x()?, req(cx, ins, 1)?, req(cx, ins, 2)?])?),
        "Cast" | "CastLike" => {
            let to =
                if t == "Cast" { dtype_from_onnx(cx.i("to", 0) as i32, &cx.name)? } else { req(cx, ins, 1)?.ty.dtype };
            let v = x()?;
            if let (Some(d), true) = (&v.dims, to.is_int()) {
                return one(Val::dims(d.clone(), rank(v) == 0));
            }
            one(imp.emit1(cx, Op::Cast { to }, &[v])?)
        }
        "BitCast" => {
            one(imp.emit1(cx, Op::BitCast { to: dtype_from_onnx(cx.i("to", 0) as i32, &cx.name)? }, &[x()?])?)
        }
        "LeakyRelu" => one(imp.emit1(cx, Op::LeakyRelu { alpha: cx.f("alpha", 0.01) }, &[x()?])?),
        "Elu" => one(imp.emit1(cx, Op::Elu { alpha: cx.f("alpha", 1.0) }, &[x()?])?),
        "Selu" => one(imp.emit1(
            cx,
            Op::Selu { alpha: cx.f("alpha", 1.673_263_2), gamma: cx.f("gamma", 1.050_701) },
            &[x()?],
        )?),
        "Celu" => one(imp.emit1(cx, Op::Celu { alpha: cx.f("alpha", 1.0) }, &[x()?])?),
        "HardSigmoid" => {
            one(imp.emit1(cx, Op::HardSigmoid { alpha: cx.f("alpha", 0.2), beta: cx.f("beta", 0.5) }, &[x()?])?)
        }
        "ThresholdedRelu" => one(imp.emit1(cx, Op::ThresholdedRelu { alpha: cx.f("alpha", 1.0) }, &[x()?])?),
        "Shrink" => one(imp.emit1(cx, Op::Shrink { bias: cx.f("bias", 0.0), lambd: cx.f("lambd", 0.5) }, &[x()?])?),
        "Gelu" => {
            let approximate = match cx.s("approximate").as_deref() {
                None | Some("none") => GeluApprox::None,
                Some("tanh") => GeluApprox::Tanh,
                Some(a) => return Err(cx.err(format!("approximate `{a}` must be none or tanh"))),
            };
            one(imp.emit1(cx, Op::Gelu { approximate }, &[x()?])?)
        }
        "IsInf" => one(imp.emit1(
            cx,
            Op::IsInf {
                detect_positive: cx.i("detect_positive", 1) != 0,
                detect_negative: cx.i("detect_negative", 1) != 0,
            },
            &[x()?],
        )?),
        "MatMul" => one(imp.emit1(cx, Op::MatMul {}, &[x()?, req(cx, ins, 1)?])?),
        "Gemm" => gemm(imp, cx, ins),
        "Conv" => conv(imp, cx, ins),
        "ConvTranspose" => conv_transpose(imp, cx, ins),
        "MaxPool" | "AveragePool" | "LpPool" => pool(imp, cx, ins),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let v = x()?;
            let kind = match t {
                "GlobalAveragePool" => ReduceKind::Mean,
                "GlobalMaxPool" => ReduceKind::Max,
                _ => match cx.i("p", 2) {
                    1 => ReduceKind::L1,
                    2 => ReduceKind::L2,
                    p => return Err(cx.err(format!("p = {p} is not supported (1 or 2)"))),
                },
            };
            one(imp.emit1(cx, Op::Reduce { kind, axes: (2..rank(v) as i64).collect(), keepdims: true }, &[v])?)
        }
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2"
        | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce(imp, cx, ins),
        "ArgMax" | "ArgMin" => {
            let v = x()?;
            let a = axis(cx, cx.i("axis", 0), rank(v))?;
            let (keepdims, select_last) = (cx.i("keepdims", 1) != 0, cx.i("select_last_index", 0) != 0);
            let op = if t == "ArgMax" {
                Op::ArgMax { axis: a, keepdims, select_last }
            } else {
                Op::ArgMin { axis: a, keepdims, select_last }
            };
            one(imp.emit1(cx, op, &[v])?)
        }
        "Softmax" | "LogSoftmax" | "Hardmax" => softmax(imp, cx, ins),
        "LayerNormalization" => layer_norm(imp, cx, ins),
        "RMSNormalization" => {
            let v = x()?;
            let a = axis(cx, cx.i("axis", -1), rank(v))?;
            one(imp.emit1(cx, Op::RmsNorm { axis: a, epsilon: cx.f("epsilon", 1e-5) }, &[v, req(cx, ins, 1)?])?)
        }
        "BatchNormalization" => {
            if cx.i("training_mode", 0) != 0 || cx.used_outputs() > 1 {
                return Err(cx.err("training mode is not supported"));
            }
            let v: Vec<&Val> = (0..5).map(|i| req(cx, ins, i)).collect::<R<_>>()?;
            one(imp.emit1(cx, Op::BatchNorm { epsilon: cx.f("epsilon", 1e-5) }, &v)?)
        }
        "InstanceNormalization" => one(imp.emit1(
            cx,
            Op::InstanceNorm { epsilon: cx.f("epsilon", 1e-5) },
            &[x()?, req(cx, ins, 1)?, req(cx, ins, 2)?],
        )?),
        "GroupNormalization" => group_norm(imp, cx, ins),
        "LRN" => one(imp.emit1(
            cx,
            Op::Lrn {
                size: cx.i("size", 0),
                alpha: cx.f("alpha", 1e-4),
                beta: cx.f("beta", 0.75),
                bias: cx.f("bias", 1.0),
            },
            &[x()?],
        )?),
        "CumSum" | "CumProd" => {
            let v = x()?;
            let a = ints(cx, req(cx, ins, 1)?)?;
            let a = axis(cx, *a.first().ok_or_else(|| cx.err("axis is empty"))?, rank(v))?;
            let (exclusive, reverse) = (cx.i("exclusive", 0) != 0, cx.i("reverse", 0) != 0);
            let op = if t == "CumSum" {
                Op::CumSum { axis: a, exclusive, reverse }
            } else {
                Op::CumProd { axis: a, exclusive, reverse }
            };
            one(imp.emit1(cx, op, &[v])?)
        }
        "Transpose" => {
            let v = x()?;
            let perm = cx.ints("perm").unwrap_or_else(|| (0..rank(v) as i64).rev().collect());
            one(imp.emit1(cx, Op::Transpose { perm }, &[v])?)
        }
        "Reshape" => reshape_op(imp, cx, ins),
        "Flatten" => {
            let v = x()?;
            let r = rank(v);
            let a =
                if cx.i("axis", 1) == r as i64 { r } else { norm_axis(cx.i("axis", 1), r).map_err(|m| cx.err(m))? };
            let (outer, inner) = (product(&dims(v)[..a]), product(&dims(v)[a..]));
            let (outer, inner) = (
                outer.ok_or_else(|| cx.err("cannot flatten symbolic dims"))?,
                inner.ok_or_else(|| cx.err("cannot flatten symbolic dims"))?,
            );
            one(reshape(imp, cx, v, vec![outer, inner])?)
        }
        "Squeeze" | "Unsqueeze" => squeeze(imp, cx, ins),
        "Expand" => {
            let v = x()?;
            let shape = shape_entries(cx, req(cx, ins, 1)?)?;
            let shape: Vec<Dim> = shape
                .into_iter()
                .map(|d| match d {
                    DimVal::Int(i) if i >= 0 => Ok(Dim::Const(i as u64)),
                    DimVal::Sym(s) => Ok(s),
                    DimVal::Int(i) => Err(cx.err(format!("negative dimension {i}"))),
                })
                .collect::<R<_>>()?;
            one(imp.emit1(cx, Op::Expand { shape: Shape(shape) }, &[v])?)
        }
        "Concat" => concat(imp, cx, ins),
        "Split" => split(imp, cx, ins),
        "Slice" => slice(imp, cx, ins),
        "Gather" => gather(imp, cx, ins),
        "GatherElements" => {
            let v = x()?;
            one(imp.emit1(
                cx,
                Op::GatherElements { axis: axis(cx, cx.i("axis", 0), rank(v))? },
                &[v, req(cx, ins, 1)?],
            )?)
        }
        "GatherND" => {
            one(imp.emit1(cx, Op::GatherNd { batch_dims: cx.i("batch_dims", 0) }, &[x()?, req(cx, ins, 1)?])?)
        }
        "ScatterElements" | "Scatter" => {
            let v = x()?;
            let a = axis(cx, cx.i("axis", 0), rank(v))?;
            one(imp.emit1(
                cx,
                Op::ScatterElements { axis: a, reduction: reduction(cx)? },
                &[v, req(cx, ins, 1)?, req(cx, ins, 2)?],
            )?)
        }
        "ScatterND" => one(imp.emit1(
            cx,
            Op::ScatterNd { reduction: reduction(cx)? },
            &[x()?, req(cx, ins, 1)?, req(cx, ins, 2)?],
        )?),
        "Pad" => pad(imp, cx, ins),
        "Tile" => {
            let repeats = ints(cx, req(cx, ins, 1)?)?;
            one(imp.emit1(cx, Op::Tile { repeats }, &[x()?])?)
        }
        "Trilu" => {
            let k = match opt(ins, 1) {
                Some(k) => ints(cx, k)?.first().copied().unwrap_or(0),
                None => 0,
            };
            one(imp.emit1(cx, Op::Trilu { upper: cx.i("upper", 1) != 0, k }, &[x()?])?)
        }
        "OneHot" => {
            let mut idx = x()?.clone();
            if !matches!(idx.ty.dtype, DType::I64 | DType::I32) {
                idx = imp.emit1(cx, Op::Cast { to: DType::I64 }, &[&idx])?;
            }
            let depth = floats(cx, req(cx, ins, 1)?)?.first().copied().ok_or_else(|| cx.err("depth is empty"))? as i64;
            let a = axis(cx, cx.i("axis", -1), rank(&idx) + 1)?;
            one(imp.emit1(cx, Op::OneHot { axis: a, depth }, &[&idx, req(cx, ins, 2)?])?)
        }
        "TopK" => {
            let v = x()?;
            let k =
                if cx.opset < 10 { cx.i("k", 0) } else { ints(cx, req(cx, ins, 1)?)?.first().copied().unwrap_or(0) };
            let a = axis(cx, cx.i("axis", -1), rank(v))?;
            imp.emit(
                cx,
                Op::TopK { axis: a, k, largest: cx.i("largest", 1) != 0, sorted: cx.i("sorted", 1) != 0 },
                &[v],
            )
        }
        "DepthToSpace" => {
            let mode = match cx.s("mode").as_deref() {
                None | Some("DCR") => DepthToSpaceMode::Dcr,
                Some("CRD") => DepthToSpaceMode::Crd,
                Some(m) => return Err(cx.err(format!("mode `{m}` must be DCR or CRD"))),
            };
            one(imp.emit1(cx, Op::DepthToSpace { blocksize: cx.i("blocksize", 0), mode }, &[x()?])?)
        }
        "SpaceToDepth" => one(imp.emit1(cx, Op::SpaceToDepth { blocksize: cx.i("blocksize", 0) }, &[x()?])?),
        "Resize" | "Upsample" => resize(imp, cx, ins),
        "Einsum" => {
            let eq = cx.s("equation").ok_or_else(|| cx.err("equation is required"))?;
            let eq = explicit_einsum(&eq);
            let v: Vec<&Val> = ins.iter().flatten().collect();
            one(imp.emit1(cx, Op::Einsum { equation: eq }, &v)?)
        }
        "Constant" => one(constant(cx)?),
        "Attention" => attention(imp, cx, ins),
        "RotaryEmbedding" => rotary_embedding(imp, cx, ins),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => {
            let n = ints(cx, x()?)?.first().copied().ok_or_else(|| cx.err("size is empty"))?;
            if !(0..=1 << 24).contains(&n) {
                return Err(cx.err(format!("window size {n} is out of range")));
            }
            let dt = dtype_from_onnx(cx.i("output_datatype", 1) as i32, &cx.name)?;
            let denom = if cx.i("periodic", 1) == 1 { n } else { n - 1 } as f64;
            let pi = std::f64::consts::PI;
            let t = cx.op_type;
            one(Val::known(Tensor::from_f64_fn(dt, &[n as usize], |i| {
                let i = i as f64;
                match t {
                    "HannWindow" => (i * pi / denom).sin().powi(2),
                    "HammingWindow" => 25.0 / 46.0 - (21.0 / 46.0) * (2.0 * pi * i / denom).cos(),
                    _ => 0.42 - 0.5 * (2.0 * pi * i / denom).cos() + 0.08 * (4.0 * pi * i / denom).cos(),
                }
            })))
        }
        "MeanVarianceNormalization" => {
            let v = x()?;
            let axes = axes_list(cx, &cx.ints("axes").unwrap_or_else(|| vec![0, 2, 3]), rank(v))?;
            let mean =
                imp.emit1(cx, Op::Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keepdims: true }, &[v])?;
            let d = imp.emit1(cx, Op::Binary(BinaryOp::Sub), &[v, &mean])?;
            let sq = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&d, &d])?;
            let var = imp.emit1(cx, Op::Reduce { kind: ReduceKind::Mean, axes, keepdims: true }, &[&sq])?;
            let sd = imp.emit1(cx, Op::Unary(UnaryOp::Sqrt), &[&var])?;
            let sde = imp.emit1(cx, Op::Binary(BinaryOp::Add), &[&sd, &scalar(v.ty.dtype, 1e-9)])?;
            one(imp.emit1(cx, Op::Binary(BinaryOp::Div), &[&d, &sde])?)
        }
        "QuantizeLinear" | "DequantizeLinear" => quantize(imp, cx, ins),
        "NegativeLogLikelihoodLoss" => {
            let w = opt(ins, 2);
            one(nll_loss(imp, cx, x()?, req(cx, ins, 1)?, w)?)
        }
        "SoftmaxCrossEntropyLoss" => {
            let x = x()?;
            let log_prob = imp.emit1(cx, Op::LogSoftmax { axis: 1 }, &[x])?;
            let loss = nll_loss(imp, cx, &log_prob, req(cx, ins, 1)?, opt(ins, 2))?;
            Ok(vec![loss, log_prob])
        }
        "LpNormalization" => {
            let v = x()?;
            let a = axis(cx, cx.i("axis", -1), rank(v))?;
            let kind = match cx.i("p", 2) {
                1 => ReduceKind::L1,
                2 => ReduceKind::L2,
                p => return Err(cx.err(format!("p = {p} is not supported (1 or 2)"))),
            };
            let n = imp.emit1(cx, Op::Reduce { kind, axes: vec![a], keepdims: true }, &[v])?;
            // A zero norm means a zero vector: divide by 1 instead so it stays zero.
            let zero = imp.emit1(cx, Op::Binary(BinaryOp::Equal), &[&n, &scalar(v.ty.dtype, 0.0)])?;
            let safe = imp.emit1(cx, Op::Where {}, &[&zero, &scalar(v.ty.dtype, 1.0), &n])?;
            one(imp.emit1(cx, Op::Binary(BinaryOp::Div), &[v, &safe])?)
        }
        "Swish" => {
            let v = x()?;
            let ax = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[v, &scalar(v.ty.dtype, cx.f("alpha", 1.0) as f64)])?;
            let s = imp.emit1(cx, Op::Unary(UnaryOp::Sigmoid), &[&ax])?;
            one(imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[v, &s])?)
        }
        "EyeLike" => {
            let v = x()?;
            let d = static_dims(cx, v)?;
            if d.len() != 2 {
                return Err(cx.err("input must be 2-D"));
            }
            let dt = match cx.attr("dtype").and_then(|a| a.i) {
                Some(c) => dtype_from_onnx(c as i32, &cx.name)?,
                None => v.ty.dtype,
            };
            let (r, c, k) = (d[0], d[1], cx.i("k", 0));
            one(Val::known(Tensor::from_f64_fn(dt, &[r as usize, c as usize], |i| {
                let (row, col) = (i as i64 / c.max(1), i as i64 % c.max(1));
                if col - row == k {
                    1.0
                } else {
                    0.0
                }
            })))
        }
        "CenterCropPad" => {
            let v = x()?;
            let target = ints(cx, req(cx, ins, 1)?)?;
            let r = rank(v);
            let axes = match cx.ints("axes") {
                Some(a) => axes_list_unsorted(cx, &a, r)?,
                None => (0..r as i64).collect(),
            };
            if axes.len() != target.len() {
                return Err(cx.err("shape and axes differ in length"));
            }
            let d = static_dims(cx, v)?;
            let (mut starts, mut ends, steps) = (vec![0; r], vec![i64::MAX; r], vec![1; r]);
            let mut pads = vec![0; 2 * r];
            for (&a, &t) in axes.iter().zip(&target) {
                let (a, n) = (a as usize, d[a as usize]);
                if t < n {
                    starts[a] = (n - t) / 2;
                    ends[a] = starts[a] + t;
                } else if t > n {
                    pads[a] = (t - n) / 2;
                    pads[a + r] = t - n - pads[a];
                }
            }
            let cropped = imp.emit1(cx, Op::Slice { starts, ends, steps }, &[v])?;
            if pads.iter().all(|&p| p == 0) {
                return one(cropped);
            }
            one(imp.emit1(cx, Op::Pad { pads, mode: PadMode::Constant }, &[&cropped, &scalar(v.ty.dtype, 0.0)])?)
        }
        "ConstantOfShape" => {
            let value = match cx.attr("value").and_then(|a| a.t.as_ref()) {
                Some(t) => super::tensor_from_proto(t, None, 1 << 20)?,
                None => Tensor::from_vec(&[1], vec![0.0f32]).expect("one element"),
            };
            let fill = value.reshape(&[]).ok_or_else(|| cx.err("value must hold one element"))?;
            let shape = shape_entries(cx, req(cx, ins, 0)?)?;
            let shape: Vec<Dim> = shape
                .into_iter()
                .map(|d| match d {
                    DimVal::Int(i) => Dim::Const(i.max(0) as u64),
                    DimVal::Sym(s) => s,
                })
                .collect();
            one(imp.emit1(cx, Op::Expand { shape: Shape(shape) }, &[&Val::known(fill)])?)
        }
        "Shape" => {
            let v = x()?;
            let r = rank(v) as i64;
            let clampi = |i: i64| if i < 0 { (i + r).max(0) } else { i.min(r) };
            let start = clampi(cx.i("start", 0));
            let end = clampi(cx.i("end", r));
            let d: Vec<DimVal> =
                dims(v)[start as usize..end.max(start) as usize].iter().map(DimVal::from_dim).collect();
            one(Val::dims(d, false))
        }
        "Size" => {
            let v = x()?;
            let n =
                v.ty.shape
                    .num_elements()
                    .ok_or_else(|| cx.err("size of a tensor with symbolic dims: fix them with --shape"))?;
            one(Val::known(Tensor::scalar(n as i64)))
        }
        "Range" => {
            let (s, l, d) = (req(cx, ins, 0)?, req(cx, ins, 1)?, req(cx, ins, 2)?);
            let dt = s.ty.dtype;
            let first = |v: &Val| -> R<f64> {
                floats(cx, v)?.first().copied().ok_or_else(|| cx.err(format!("`{}` must hold one value", v.name)))
            };
            let (s, l, d) = (first(s)?, first(l)?, first(d)?);
            if d == 0.0 {
                return Err(cx.err("delta is 0"));
            }
            let n = ((l - s) / d).ceil().max(0.0) as usize;
            if n > 1 << 28 {
                return Err(cx.err(format!("range of {n} elements is too large")));
            }
            one(Val::known(Tensor::from_f64_fn(dt, &[n], |i| s + i as f64 * d)))
        }
        _ => Err(ImportError::UnsupportedOp {
            op_type: t.into(),
            domain: String::new(),
            opset: cx.opset,
            node: cx.name.clone(),
        }),
    }
}

fn product(d: &[Dim]) -> Option<Dim> {
    match d {
        [one] => Some(one.clone()),
        _ => d.iter().try_fold(1u64, |a, x| x.as_const().map(|c| a * c)).map(Dim::Const),
    }
}

fn reduction(cx: &NodeCtx) -> R<ScatterReduction> {
    let r = cx.s("reduction").unwrap_or_else(|| "none".into());
    ScatterReduction::parse(&r).ok_or_else(|| cx.err(format!("reduction `{r}` is not supported")))
}

fn variadic(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let vals: Vec<&Val> = ins.iter().flatten().collect();
    let first = *vals.first().ok_or_else(|| cx.err("needs at least one input"))?;
    let op = match cx.op_type {
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        _ => BinaryOp::Add,
    };
    let mut acc = first.clone();
    for v in &vals[1..] {
        acc = imp.emit1(cx, Op::Binary(op), &[&acc, v])?;
    }
    if vals.len() == 1 {
        // A single input still broadcasts to itself; keep it as an identity.
        acc = imp.emit1(cx, Op::Unary(UnaryOp::Identity), &[&acc])?;
    }
    if cx.op_type == "Mean" {
        let n = scalar(acc.ty.dtype, vals.len() as f64);
        acc = imp.emit1(cx, Op::Binary(BinaryOp::Div), &[&acc, &n])?;
    }
    Ok(vec![acc])
}

fn clip(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let dt = x.ty.dtype;
    let (lo_default, hi_default) = match dt {
        DType::I8 => (i8::MIN as f64, i8::MAX as f64),
        DType::U8 => (0.0, u8::MAX as f64),
        DType::I32 => (i32::MIN as f64, i32::MAX as f64),
        DType::I64 => (i64::MIN as f64, i64::MAX as f64),
        _ => (f64::NEG_INFINITY, f64::INFINITY),
    };
    let bound = |i: usize, attr: &str, default: f64| -> R<Val> {
        if cx.opset < 11 {
            return Ok(scalar(dt, cx.attr(attr).and_then(|a| a.f).map_or(default, |f| f as f64)));
        }
        match opt(ins, i) {
            Some(v) if dt == DType::I64 && v.known.is_some() => Ok(Val::known(
                v.known.as_deref().expect("known").reshape(&[]).ok_or_else(|| cx.err("bound must be a scalar"))?,
            )),
            Some(v) => Ok(v.clone()),
            None if dt == DType::I64 => Ok(Val::known(Tensor::scalar(if i == 1 { i64::MIN } else { i64::MAX }))),
            None => Ok(scalar(dt, default)),
        }
    };
    let lo = bound(1, "min", lo_default)?;
    let hi = bound(2, "max", hi_default)?;
    Ok(vec![imp.emit1(cx, Op::Clip {}, &[x, &lo, &hi])?])
}

/// Adds the implicit output of an einsum equation without `->`: labels seen once, in alphabetical order.
fn explicit_einsum(eq: &str) -> String {
    if eq.contains("->") {
        return eq.to_string();
    }
    let mut counts = std::collections::BTreeMap::new();
    for c in eq.chars().filter(|c| c.is_ascii_alphabetic()) {
        *counts.entry(c).or_insert(0) += 1;
    }
    let out: String = counts.into_iter().filter(|&(_, n)| n == 1).map(|(c, _)| c).collect();
    format!("{eq}->{out}")
}

fn constant(cx: &NodeCtx) -> R<Val> {
    if let Some(t) = cx.attr("value").and_then(|a| a.t.as_ref()) {
        return Ok(Val::known(super::tensor_from_proto(t, None, super::DEFAULT_MAX_TENSOR_BYTES)?));
    }
    if let Some(a) = cx.attr("value_float").and_then(|a| a.f) {
        return Ok(Val::known(Tensor::scalar(a)));
    }
    if let Some(a) = cx.attr("value_int").and_then(|a| a.i) {
        return Ok(Val::known(Tensor::scalar(a)));
    }
    if let Some(a) = cx.attr("value_floats") {
        return Ok(Val::known(Tensor::from_vec(&[a.floats.len()], a.floats.clone()).expect("length")));
    }
    if let Some(a) = cx.attr("value_ints") {
        return Ok(Val::known(Tensor::from_vec(&[a.ints.len()], a.ints.clone()).expect("length")));
    }
    Err(cx.err("unsupported value kind (sparse and string constants are not supported)"))
}
