//! One handler per ONNX op type: reads attributes and inputs as the op's opset defines them, and emits
//! sovc ops (folded when constant). Ops not listed here are refused with the op type, node and opset.

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

fn gemm(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let (mut a, mut b) = (req(cx, ins, 0)?.clone(), req(cx, ins, 1)?.clone());
    if cx.i("transA", 0) != 0 {
        a = imp.emit1(cx, Op::Transpose { perm: vec![1, 0] }, &[&a])?;
    }
    if cx.i("transB", 0) != 0 {
        b = imp.emit1(cx, Op::Transpose { perm: vec![1, 0] }, &[&b])?;
    }
    let mut y = imp.emit1(cx, Op::MatMul {}, &[&a, &b])?;
    let dt = y.ty.dtype;
    let alpha = cx.f("alpha", 1.0);
    if alpha != 1.0 {
        y = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&y, &scalar(dt, alpha as f64)])?;
    }
    if let Some(c) = opt(ins, 2) {
        let beta = cx.f("beta", 1.0);
        let mut c = c.clone();
        if beta != 1.0 {
            c = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&c, &scalar(dt, beta as f64)])?;
        }
        y = imp.emit1(cx, Op::Binary(BinaryOp::Add), &[&y, &c])?;
    }
    Ok(vec![y])
}

/// Explicit pads from `auto_pad` for a sweep with output `ceil(in / stride)` (SAME) or none (VALID).
fn auto_pads(cx: &NodeCtx, in_sp: &[i64], k: &[i64], strides: &[i64], dil: &[i64]) -> R<Option<Vec<i64>>> {
    let mode = cx.s("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let n = in_sp.len();
    match mode.as_str() {
        "NOTSET" => Ok(None),
        "VALID" => Ok(Some(vec![0; 2 * n])),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = vec![0; 2 * n];
            for i in 0..n {
                let out = (in_sp[i] + strides[i] - 1) / strides[i];
                let total = ((out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - in_sp[i]).max(0);
                let (small, big) = (total / 2, total - total / 2);
                if mode == "SAME_UPPER" {
                    pads[i] = small;
                    pads[i + n] = big;
                } else {
                    pads[i] = big;
                    pads[i + n] = small;
                }
            }
            Ok(Some(pads))
        }
        m => Err(cx.err(format!("auto_pad `{m}` is not supported"))),
    }
}

/// The geometry both convolutions read: spatial dims, kernel shape, strides, dilations, input extent.
struct ConvGeometry {
    nsp: usize,
    k: Vec<i64>,
    strides: Vec<i64>,
    dil: Vec<i64>,
    in_sp: Vec<i64>,
}

fn conv_geometry(cx: &NodeCtx, x: &Val, w: &Val) -> R<ConvGeometry> {
    let nsp = rank(x).saturating_sub(2);
    let wd = static_dims(cx, w)?;
    Ok(ConvGeometry {
        nsp,
        k: cx.ints("kernel_shape").unwrap_or_else(|| wd.get(2..).unwrap_or(&[]).to_vec()),
        strides: cx.ints("strides").unwrap_or_else(|| vec![1; nsp]),
        dil: cx.ints("dilations").unwrap_or_else(|| vec![1; nsp]),
        in_sp: static_dims(cx, x)?.get(2..).unwrap_or(&[]).to_vec(),
    })
}

fn conv(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let (x, w) = (req(cx, ins, 0)?, req(cx, ins, 1)?);
    let ConvGeometry { nsp, k, strides, dil, in_sp } = conv_geometry(cx, x, w)?;
    let pads = match auto_pads(cx, &in_sp, &k, &strides, &dil)? {
        Some(p) => p,
        None => cx.ints("pads").unwrap_or_else(|| vec![0; 2 * nsp]),
    };
    let op = Op::Conv { strides, pads, dilations: dil, group: cx.i("group", 1) };
    let mut v = vec![x, w];
    v.extend(opt(ins, 2));
    Ok(vec![imp.emit1(cx, op, &v)?])
}

fn conv_transpose(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let (x, w) = (req(cx, ins, 0)?, req(cx, ins, 1)?);
    let ConvGeometry { nsp, k, strides, dil, in_sp } = conv_geometry(cx, x, w)?;
    let mut out_pad = cx.ints("output_padding").unwrap_or_else(|| vec![0; nsp]);
    let mode = cx.s("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let out_shape = cx.ints("output_shape").map(|o| o[o.len().saturating_sub(nsp)..].to_vec());
    let pads = if out_shape.is_some() || mode.starts_with("SAME") {
        let target: Vec<i64> = out_shape.unwrap_or_else(|| in_sp.iter().zip(&strides).map(|(i, s)| i * s).collect());
        let mut pads = vec![0; 2 * nsp];
        for i in 0..nsp {
            let full = strides[i] * (in_sp[i] - 1) + out_pad[i] + (k[i] - 1) * dil[i] + 1;
            let total = full - target[i];
            if total < 0 {
                // The requested output is larger than the sweep: the extra goes to output padding.
                out_pad[i] += -total;
                continue;
            }
            if mode == "SAME_UPPER" || mode == "NOTSET" {
                pads[i] = total / 2;
                pads[i + nsp] = total - total / 2;
            } else {
                pads[i] = total - total / 2;
                pads[i + nsp] = total / 2;
            }
        }
        pads
    } else if mode == "VALID" {
        vec![0; 2 * nsp]
    } else {
        cx.ints("pads").unwrap_or_else(|| vec![0; 2 * nsp])
    };
    let op = Op::ConvTranspose { strides, pads, dilations: dil, group: cx.i("group", 1), output_padding: out_pad };
    let mut v = vec![x, w];
    v.extend(opt(ins, 2));
    Ok(vec![imp.emit1(cx, op, &v)?])
}

fn pool(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    if cx.used_outputs() > 1 {
        return Err(cx.err("the Indices output of MaxPool is not supported"));
    }
    let nsp = rank(x).saturating_sub(2);
    let kernel = cx.ints("kernel_shape").ok_or_else(|| cx.err("kernel_shape is required"))?;
    let strides = cx.ints("strides").unwrap_or_else(|| vec![1; nsp]);
    let dil = cx.ints("dilations").unwrap_or_else(|| vec![1; nsp]);
    let in_sp = static_dims(cx, x)?.get(2..).unwrap_or(&[]).to_vec();
    let pads = match auto_pads(cx, &in_sp, &kernel, &strides, &dil)? {
        Some(p) => p,
        None => cx.ints("pads").unwrap_or_else(|| vec![0; 2 * nsp]),
    };
    let ceil_mode = cx.i("ceil_mode", 0) != 0;
    let op = match cx.op_type {
        "MaxPool" => Op::MaxPool { kernel, strides, pads, dilations: dil, ceil_mode },
        "AveragePool" => Op::AvgPool {
            kernel,
            strides,
            pads,
            dilations: dil,
            ceil_mode,
            count_include_pad: cx.i("count_include_pad", 0) != 0,
        },
        _ => Op::LpPool { kernel, strides, pads, dilations: dil, ceil_mode, p: cx.i("p", 2) },
    };
    Ok(vec![imp.emit1(cx, op, &[x])?])
}

fn reduce(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let kind = match cx.op_type {
        "ReduceSum" => ReduceKind::Sum,
        "ReduceMean" => ReduceKind::Mean,
        "ReduceMax" => ReduceKind::Max,
        "ReduceMin" => ReduceKind::Min,
        "ReduceProd" => ReduceKind::Prod,
        "ReduceL1" => ReduceKind::L1,
        "ReduceL2" => ReduceKind::L2,
        "ReduceLogSum" => ReduceKind::LogSum,
        "ReduceLogSumExp" => ReduceKind::LogSumExp,
        _ => ReduceKind::SumSquare,
    };
    let axes_from_input = (cx.op_type == "ReduceSum" && cx.opset >= 13) || cx.opset >= 18;
    let axes = if axes_from_input {
        match opt(ins, 1) {
            Some(v) => Some(ints(cx, v)?),
            None => None,
        }
    } else {
        cx.ints("axes")
    };
    let keepdims = cx.i("keepdims", 1) != 0;
    let axes = match axes {
        Some(a) if !a.is_empty() => axes_list(cx, &a, rank(x))?,
        _ if cx.i("noop_with_empty_axes", 0) != 0 => {
            return Ok(vec![imp.emit1(cx, Op::Unary(UnaryOp::Identity), &[x])?])
        }
        _ => (0..rank(x) as i64).collect(),
    };
    Ok(vec![imp.emit1(cx, Op::Reduce { kind, axes, keepdims }, &[x])?])
}

fn softmax(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let r = rank(x);
    let make = |axis: i64| match cx.op_type {
        "Softmax" => Op::Softmax { axis },
        "LogSoftmax" => Op::LogSoftmax { axis },
        _ => Op::Hardmax { axis },
    };
    if cx.opset >= 13 {
        let a = axis(cx, cx.i("axis", -1), r)?;
        return Ok(vec![imp.emit1(cx, make(a), &[x])?]);
    }
    // Before opset 13 the op works on the input flattened to 2-D at `axis`.
    let a = norm_axis(cx.i("axis", 1), r).map_err(|m| cx.err(m))?;
    if a == r - 1 {
        return Ok(vec![imp.emit1(cx, make(a as i64), &[x])?]);
    }
    let (outer, inner) = (product(&dims(x)[..a]), product(&dims(x)[a..]));
    let (Some(outer), Some(inner)) = (outer, inner) else { return Err(cx.err("cannot flatten symbolic dims")) };
    let flat = reshape(imp, cx, x, vec![outer, inner])?;
    let y = imp.emit1(cx, make(1), &[&flat])?;
    Ok(vec![reshape(imp, cx, &y, dims(x).to_vec())?])
}

fn layer_norm(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let r = rank(x);
    let a = axis(cx, cx.i("axis", -1), r)?;
    let eps = cx.f("epsilon", 1e-5);
    let mut v = vec![x, req(cx, ins, 1)?];
    v.extend(opt(ins, 2));
    let mut outs = vec![imp.emit1(cx, Op::LayerNorm { axis: a, epsilon: eps }, &v)?];
    if cx.used_outputs() > 1 {
        // Mean and inverse standard deviation, as the op's optional outputs define them.
        let axes: Vec<i64> = (a..r as i64).collect();
        let mean = imp.emit1(cx, Op::Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keepdims: true }, &[x])?;
        let d = imp.emit1(cx, Op::Binary(BinaryOp::Sub), &[x, &mean])?;
        let sq = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&d, &d])?;
        let var = imp.emit1(cx, Op::Reduce { kind: ReduceKind::Mean, axes, keepdims: true }, &[&sq])?;
        let ve = imp.emit1(cx, Op::Binary(BinaryOp::Add), &[&var, &scalar(x.ty.dtype, eps as f64)])?;
        let inv = imp.emit1(cx, Op::Unary(UnaryOp::Rsqrt), &[&ve])?;
        outs.push(mean);
        outs.push(inv);
    }
    Ok(outs)
}

fn group_norm(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let g = cx.i("num_groups", 0);
    let c = static_dims(cx, x)?.get(1).copied().ok_or_else(|| cx.err("needs rank >= 2"))?;
    let mut params = Vec::new();
    for i in [1, 2] {
        let p = req(cx, ins, i)?;
        if g > 0 && c % g == 0 && p.ty.shape == Shape::from_consts(&[g as usize]) && g != c {
            // Opset 18 gives one scale per group: repeat it for each channel of the group.
            let col = reshape(imp, cx, p, vec![Dim::Const(g as u64), Dim::Const(1)])?;
            let rep =
                imp.emit1(cx, Op::Expand { shape: Shape::from_consts(&[g as usize, (c / g) as usize]) }, &[&col])?;
            params.push(reshape(imp, cx, &rep, vec![Dim::Const(c as u64)])?);
        } else {
            params.push(p.clone());
        }
    }
    Ok(vec![imp.emit1(
        cx,
        Op::GroupNorm { num_groups: g, epsilon: cx.f("epsilon", 1e-5) },
        &[x, &params[0], &params[1]],
    )?])
}

fn reshape_op(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let target: Vec<DimVal> = if cx.opset < 5 {
        cx.ints("shape").unwrap_or_default().into_iter().map(DimVal::Int).collect()
    } else {
        let s = req(cx, ins, 1)?;
        match s.as_dims() {
            Some(d) => d,
            None => ints(cx, s)?.into_iter().map(DimVal::Int).collect(),
        }
    };
    let allow_zero = cx.i("allowzero", 0) != 0;
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    for (i, t) in target.iter().enumerate() {
        out.push(match t {
            DimVal::Sym(s) => Some(s.clone()),
            DimVal::Int(0) if !allow_zero => Some(
                dims(x)
                    .get(i)
                    .cloned()
                    .ok_or_else(|| cx.err(format!("0 at position {i} copies a dimension the input does not have")))?,
            ),
            DimVal::Int(-1) => None,
            DimVal::Int(v) if *v >= 0 => Some(Dim::Const(*v as u64)),
            DimVal::Int(v) => return Err(cx.err(format!("invalid dimension {v}"))),
        });
    }
    if out.iter().filter(|d| d.is_none()).count() > 1 {
        return Err(cx.err("more than one -1 in the target shape"));
    }
    if let Some(pos) = out.iter().position(Option::is_none) {
        let known: Vec<Dim> = out.iter().flatten().cloned().collect();
        let d = infer_minus_one(dims(x), &known)
            .ok_or_else(|| cx.err(format!("cannot infer -1 reshaping {} to {target:?}", x.ty.shape)))?;
        out[pos] = Some(d);
    }
    let shape: Vec<Dim> = out.into_iter().flatten().collect();
    if let Some(d) = &x.dims {
        // Reshaping a shape value (e.g. a scalar to [1]) keeps its symbolic entries.
        return Ok(vec![Val::dims(d.clone(), shape.is_empty())]);
    }
    Ok(vec![reshape(imp, cx, x, shape)?])
}

/// The dimension that makes `known` hold as many elements as `input`, cancelling equal symbols.
fn infer_minus_one(input: &[Dim], known: &[Dim]) -> Option<Dim> {
    let mut syms_in: Vec<&Dim> = input.iter().filter(|d| d.as_const().is_none()).collect();
    let mut rest_syms: Vec<&Dim> = Vec::new();
    for d in known.iter().filter(|d| d.as_const().is_none()) {
        match syms_in.iter().position(|s| *s == d) {
            Some(p) => {
                syms_in.remove(p);
            }
            None => rest_syms.push(d),
        }
    }
    if !rest_syms.is_empty() {
        return None;
    }
    let pin: u64 = input.iter().filter_map(Dim::as_const).product();
    let pk: u64 = known.iter().filter_map(Dim::as_const).product();
    match syms_in.as_slice() {
        [] if pk != 0 && pin.is_multiple_of(pk) => Some(Dim::Const(pin / pk)),
        [s] if pk != 0 && pin == pk => Some((*s).clone()),
        _ => None,
    }
}

fn squeeze(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let axes = if cx.opset >= 13 {
        match opt(ins, 1) {
            Some(v) => Some(ints(cx, v)?),
            None => None,
        }
    } else {
        cx.ints("axes")
    };
    let mut d = dims(x).to_vec();
    if cx.op_type == "Squeeze" {
        let r = d.len();
        let axes = match axes {
            Some(a) => axes_list(cx, &a, r)?,
            None => (0..r as i64).filter(|&i| d[i as usize] == Dim::Const(1)).collect(),
        };
        for &a in axes.iter().rev() {
            if d[a as usize] != Dim::Const(1) {
                return Err(cx.err(format!("cannot squeeze axis {a} of size {}", d[a as usize])));
            }
            d.remove(a as usize);
        }
    } else {
        let axes = axes.ok_or_else(|| cx.err("axes are required"))?;
        let axes = axes_list(cx, &axes, d.len() + axes.len())?;
        for &a in &axes {
            d.insert(a as usize, Dim::Const(1));
        }
    }
    if let Some(sd) = &x.dims {
        return Ok(vec![Val::dims(sd.clone(), d.is_empty())]);
    }
    Ok(vec![reshape(imp, cx, x, d)?])
}

fn concat(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let vals: Vec<&Val> = ins.iter().flatten().collect();
    if vals.iter().any(|v| v.dims.is_some()) && vals.iter().all(|v| rank(v) == 1) {
        let mut d = Vec::new();
        for v in &vals {
            d.extend(v.as_dims().ok_or_else(|| cx.err("mixes a symbolic shape with a computed tensor"))?);
        }
        return Ok(vec![Val::dims(d, false)]);
    }
    let first = *vals.first().ok_or_else(|| cx.err("needs at least one input"))?;
    let a = axis(cx, cx.i("axis", 0), rank(first))?;
    // Empty inputs contribute nothing (exporters emit them for optional pieces).
    let nonempty: Vec<&Val> = vals.iter().copied().filter(|v| v.ty.shape.num_elements() != Some(0)).collect();
    let use_vals = if nonempty.is_empty() { vals } else { nonempty };
    Ok(vec![imp.emit1(cx, Op::Concat { axis: a }, &use_vals)?])
}

fn split(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let a = axis(cx, cx.i("axis", 0), rank(x))?;
    let n = dims(x)[a as usize].as_const().ok_or_else(|| cx.err("cannot split a symbolic axis"))? as i64;
    let sizes = if cx.opset >= 13 { opt(ins, 1).map(|v| ints(cx, v)).transpose()? } else { cx.ints("split") };
    let sizes = match sizes {
        Some(s) if !s.is_empty() => s,
        _ => {
            let parts = if cx.opset >= 18 && cx.attr("num_outputs").is_some() {
                cx.i("num_outputs", 1)
            } else {
                cx.node.output.len() as i64
            };
            if parts <= 0 {
                return Err(cx.err("needs at least one output"));
            }
            let chunk = (n + parts - 1) / parts;
            let mut s = Vec::new();
            let mut left = n;
            for _ in 0..parts {
                s.push(chunk.min(left));
                left -= chunk.min(left);
            }
            s
        }
    };
    imp.emit(cx, Op::Split { axis: a, sizes }, &[x])
}

fn slice(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let r = rank(x);
    let (starts, ends, axes, steps) = if cx.opset < 10 {
        (cx.ints("starts").unwrap_or_default(), cx.ints("ends").unwrap_or_default(), cx.ints("axes"), None)
    } else {
        let g = |i: usize| opt(ins, i).map(|v| ints(cx, v)).transpose();
        (g(1)?.unwrap_or_default(), g(2)?.unwrap_or_default(), g(3)?, g(4)?)
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(cx.err("starts, ends, axes and steps differ in length"));
    }
    let (mut s, mut e, mut st) = (vec![0i64; r], vec![i64::MAX; r], vec![1i64; r]);
    for i in 0..starts.len() {
        let a = axis(cx, axes[i], r)? as usize;
        s[a] = starts[i];
        e[a] = ends[i];
        st[a] = steps[i];
        if steps[i] < 0 && e[a] == i64::MAX {
            e[a] = i64::MAX;
        }
    }
    if let Some(d) = &x.dims {
        // Slicing a shape value.
        let n = d.len() as i64;
        let (b, len) = slice_range(s[0], e[0], st[0], n);
        let picked: Vec<DimVal> = (0..len).map(|k| d[(b + k * st[0]) as usize].clone()).collect();
        return Ok(vec![Val::dims(picked, false)]);
    }
    // Clamp ends that point past the axis so the attributes stay readable.
    for a in 0..r {
        if let Some(n) = dims(x)[a].as_const() {
            let n = n as i64;
            if st[a] > 0 && e[a] > n {
                e[a] = i64::MAX;
            }
            if st[a] < 0 && e[a] < -n {
                e[a] = i64::MIN;
            }
        }
    }
    Ok(vec![imp.emit1(cx, Op::Slice { starts: s, ends: e, steps: st }, &[x])?])
}

fn gather(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let (x, idx) = (req(cx, ins, 0)?, req(cx, ins, 1)?);
    let a = axis(cx, cx.i("axis", 0), rank(x))?;
    if let Some(d) = &x.dims {
        let ix = ints(cx, idx)?;
        let n = d.len() as i64;
        let picked = ix
            .iter()
            .map(|&i| {
                let j = if i < 0 { i + n } else { i };
                d.get(j as usize).cloned().ok_or_else(|| cx.err(format!("index {i} out of range")))
            })
            .collect::<R<Vec<_>>>()?;
        return Ok(vec![Val::dims(picked, rank(idx) == 0)]);
    }
    Ok(vec![imp.emit1(cx, Op::Gather { axis: a }, &[x, idx])?])
}

fn pad(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let r = rank(x);
    let mode = cx.s("mode").unwrap_or_else(|| "constant".into());
    let mode = PadMode::parse(&mode).ok_or_else(|| cx.err(format!("mode `{mode}` is not supported")))?;
    let (raw, value) = if cx.opset < 11 {
        (cx.ints("pads").unwrap_or_default(), scalar(x.ty.dtype, cx.f("value", 0.0) as f64))
    } else {
        let p = ints(cx, req(cx, ins, 1)?)?;
        let v = match opt(ins, 2) {
            Some(v) => {
                let t = floats(cx, v).map(|_| v.known.as_deref().expect("known"))?;
                Val::known(t.reshape(&[]).ok_or_else(|| cx.err("constant_value must be a scalar"))?)
            }
            None => scalar(x.ty.dtype, 0.0),
        };
        (p, v)
    };
    let axes = match opt(ins, 3) {
        Some(a) => axes_list_unsorted(cx, &ints(cx, a)?, r)?,
        None => (0..r as i64).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(cx.err(format!("{} pads for {} axes", raw.len(), axes.len())));
    }
    let mut pads = vec![0i64; 2 * r];
    for (i, &a) in axes.iter().enumerate() {
        pads[a as usize] = raw[i];
        pads[a as usize + r] = raw[i + axes.len()];
    }
    Ok(vec![imp.emit1(cx, Op::Pad { pads, mode }, &[x, &value])?])
}

fn axes_list_unsorted(cx: &NodeCtx, axes: &[i64], r: usize) -> R<Vec<i64>> {
    axes.iter().map(|&a| axis(cx, a, r)).collect()
}

fn resize(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let x = req(cx, ins, 0)?;
    let r = rank(x);
    let in_d = static_dims(cx, x)?;
    let mode_s = cx.s("mode").unwrap_or_else(|| "nearest".into());
    let mode = match mode_s.as_str() {
        "nearest" => ResizeMode::Nearest,
        "linear" | "bilinear" | "trilinear" => ResizeMode::Linear,
        "cubic" | "bicubic" => ResizeMode::Cubic,
        m => return Err(cx.err(format!("mode `{m}` is not supported"))),
    };
    if cx.i("antialias", 0) != 0 {
        return Err(cx.err("antialias is not supported"));
    }
    let upsample = cx.op_type == "Upsample" || cx.opset < 11;
    let coord_s = if upsample {
        "asymmetric".to_string()
    } else {
        cx.s("coordinate_transformation_mode").unwrap_or_else(|| "half_pixel".into())
    };
    let coord = CoordTransform::parse(&coord_s)
        .ok_or_else(|| cx.err(format!("coordinate_transformation_mode `{coord_s}` is not supported")))?;
    let nearest_s = if upsample {
        "floor".to_string()
    } else {
        cx.s("nearest_mode").unwrap_or_else(|| "round_prefer_floor".into())
    };
    let nearest =
        NearestMode::parse(&nearest_s).ok_or_else(|| cx.err(format!("nearest_mode `{nearest_s}` is not supported")))?;
    let axes = match cx.ints("axes") {
        Some(a) => axes_list_unsorted(cx, &a, r)?,
        None => (0..r as i64).collect(),
    };
    let (scales_in, sizes_in) = if cx.op_type == "Upsample" {
        let s = match cx.floats("scales") {
            Some(s) => s.into_iter().map(f64::from).collect(),
            None => floats(cx, req(cx, ins, 1)?)?,
        };
        (Some(s), None)
    } else if cx.opset < 11 {
        (Some(floats(cx, req(cx, ins, 1)?)?), None)
    } else {
        let sc = opt(ins, 2).map(|v| floats(cx, v)).transpose()?.filter(|v| !v.is_empty());
        let sz = opt(ins, 3).map(|v| ints(cx, v)).transpose()?.filter(|v| !v.is_empty());
        (sc, sz)
    };
    let mut scales = vec![1.0f32; r];
    let mut sizes = in_d.clone();
    if let Some(sz) = sizes_in {
        if sz.len() != axes.len() {
            return Err(cx.err("sizes and axes differ in length"));
        }
        let policy = cx.s("keep_aspect_ratio_policy").unwrap_or_else(|| "stretch".into());
        let ratios: Vec<f64> = axes.iter().zip(&sz).map(|(&a, &s)| s as f64 / in_d[a as usize] as f64).collect();
        let common = match policy.as_str() {
            "stretch" => None,
            "not_larger" => Some(ratios.iter().copied().fold(f64::INFINITY, f64::min)),
            "not_smaller" => Some(ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            p => return Err(cx.err(format!("keep_aspect_ratio_policy `{p}` is not supported"))),
        };
        for (i, &a) in axes.iter().enumerate() {
            let a = a as usize;
            match common {
                None => {
                    sizes[a] = sz[i];
                    scales[a] = (sz[i] as f64 / in_d[a] as f64) as f32;
                }
                Some(c) => {
                    sizes[a] = (in_d[a] as f64 * c).round() as i64;
                    scales[a] = c as f32;
                }
            }
        }
    } else if let Some(sc) = scales_in {
        if sc.len() != axes.len() {
            return Err(cx.err("scales and axes differ in length"));
        }
        for (i, &a) in axes.iter().enumerate() {
            let a = a as usize;
            scales[a] = sc[i] as f32;
            sizes[a] = (in_d[a] as f64 * sc[i] as f32 as f64).floor() as i64;
        }
    } else {
        return Err(cx.err("needs scales or sizes"));
    }
    let op = Op::Resize {
        sizes,
        scales,
        mode,
        coord,
        nearest,
        cubic_a: cx.f("cubic_coeff_a", -0.75),
        exclude_outside: cx.i("exclude_outside", 0) != 0,
    };
    Ok(vec![imp.emit1(cx, op, &[x])?])
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

/// Scaled dot-product attention (opset 23+), expanded into primitives as the ONNX reference defines it:
/// 3-D inputs split into heads, key/value cache concatenation, boolean or additive masks (padded to the
/// key length), upper-left-aligned causal masking after the cache, grouped-query head repetition, softcap,
/// and the optional `qk_matmul_output` in its four modes.
fn attention(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let (q, k, v) = (req(cx, ins, 0)?, req(cx, ins, 1)?, req(cx, ins, 2)?);
    let dt = q.ty.dtype;
    let three_d = rank(q) == 3;
    let heads = |imp: &mut Importer, x: &Val, attr: &str| -> R<Val> {
        if !three_d {
            return Ok(x.clone());
        }
        let d = static_dims(cx, x)?;
        let h = cx.attr(attr).and_then(|a| a.i).ok_or_else(|| cx.err(format!("3-D inputs need `{attr}`")))?;
        if h <= 0 || d[2] % h != 0 {
            return Err(cx.err(format!("hidden size {} does not split into {h} heads", d[2])));
        }
        let r = reshape(imp, cx, x, [d[0], d[1], h, d[2] / h].iter().map(|&n| Dim::Const(n as u64)).collect())?;
        imp.emit1(cx, Op::Transpose { perm: vec![0, 2, 1, 3] }, &[&r])
    };
    let q = heads(imp, q, "q_num_heads")?;
    let mut k = heads(imp, k, "kv_num_heads")?;
    let mut v = heads(imp, v, "kv_num_heads")?;
    let qd = static_dims(cx, &q)?;
    let scale = match cx.attr("scale").and_then(|a| a.f) {
        Some(s) => s as f64,
        None => 1.0 / (qd[3] as f64).sqrt(),
    };
    let past_len = match opt(ins, 4) {
        Some(pk) => {
            let n = static_dims(cx, pk)?[2];
            k = imp.emit1(cx, Op::Concat { axis: 2 }, &[pk, &k])?;
            n
        }
        None => 0,
    };
    if let Some(pv) = opt(ins, 5) {
        v = imp.emit1(cx, Op::Concat { axis: 2 }, &[pv, &v])?;
    }
    let (present_k, present_v) = (k.clone(), v.clone());
    let kd = static_dims(cx, &k)?;
    let (q_len, kv_len) = (qd[2] as usize, kd[2] as usize);
    let neg_inf = scalar(dt, f64::NEG_INFINITY);
    let zero = scalar(dt, 0.0);
    // The additive bias: the user's mask (bool masks become 0 / -inf), padded to the key length.
    let mut bias: Option<Val> = None;
    if let Some(m) = opt(ins, 3) {
        let md = static_dims(cx, m)?;
        let mut m = m.clone();
        let short = kv_len as i64 - md[md.len() - 1];
        if short > 0 {
            let mut pads = vec![0; 2 * md.len()];
            pads[2 * md.len() - 1] = short;
            let fill = if m.ty.dtype == DType::Bool {
                Val::known(Tensor::scalar(false))
            } else {
                scalar(m.ty.dtype, f64::NEG_INFINITY)
            };
            m = imp.emit1(cx, Op::Pad { pads, mode: PadMode::Constant }, &[&m, &fill])?;
        }
        if m.ty.dtype == DType::Bool {
            m = imp.emit1(cx, Op::Where {}, &[&m, &zero, &neg_inf])?;
        }
        bias = Some(m);
    }
    if cx.i("is_causal", 0) != 0 {
        let causal = Tensor::from_f64_fn(dt, &[q_len, kv_len], |i| {
            let (row, col) = (i / kv_len.max(1), i % kv_len.max(1));
            if col >= past_len as usize && col - past_len as usize > row {
                f64::NEG_INFINITY
            } else {
                0.0
            }
        });
        let c = Val::known(causal);
        bias = Some(match bias {
            Some(b) => imp.emit1(cx, Op::Binary(BinaryOp::Add), &[&b, &c])?,
            None => c,
        });
    }
    if let Some(lens) = opt(ins, 6) {
        let batch = qd[0] as usize;
        let pos = Val::known(Tensor::from_vec(&[kv_len], (0..kv_len as i64).collect::<Vec<_>>()).expect("len"));
        let lens = reshape(imp, cx, lens, vec![Dim::Const(batch as u64), Dim::Const(1)])?;
        let lens = imp.emit1(cx, Op::Cast { to: DType::I64 }, &[&lens])?;
        let valid = imp.emit1(cx, Op::Binary(BinaryOp::Less), &[&pos, &lens])?;
        let valid = reshape(imp, cx, &valid, [batch, 1, 1, kv_len].iter().map(|&n| Dim::Const(n as u64)).collect())?;
        let pad_bias = imp.emit1(cx, Op::Where {}, &[&valid, &zero, &neg_inf])?;
        bias = Some(match bias {
            Some(b) => imp.emit1(cx, Op::Binary(BinaryOp::Add), &[&b, &pad_bias])?,
            None => pad_bias,
        });
    }
    // Grouped-query attention: repeat each key/value head for its group of query heads.
    let (qh, kvh) = (qd[1], kd[1]);
    if qh != kvh {
        if kvh == 0 || qh % kvh != 0 {
            return Err(cx.err(format!("{qh} query heads do not group over {kvh} key/value heads")));
        }
        let g = (qh / kvh) as u64;
        let repeat = |imp: &mut Importer, x: &Val| -> R<Val> {
            let d = static_dims(cx, x)?;
            let c = |n: i64| Dim::Const(n as u64);
            let r = reshape(imp, cx, x, vec![c(d[0]), c(d[1]), Dim::Const(1), c(d[2]), c(d[3])])?;
            let e = imp.emit1(
                cx,
                Op::Expand { shape: Shape(vec![c(d[0]), c(d[1]), Dim::Const(g), c(d[2]), c(d[3])]) },
                &[&r],
            )?;
            reshape(imp, cx, &e, vec![c(d[0]), Dim::Const(d[1] as u64 * g), c(d[2]), c(d[3])])
        };
        k = repeat(imp, &k)?;
        v = repeat(imp, &v)?;
    }
    let root = scalar(dt, scale.sqrt());
    let qs = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&q, &root])?;
    let ks = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&k, &root])?;
    let kt = imp.emit1(cx, Op::Transpose { perm: vec![0, 1, 3, 2] }, &[&ks])?;
    let mut scores = imp.emit1(cx, Op::MatMul {}, &[&qs, &kt])?;
    let softcap = cx.f("softcap", 0.0);
    if softcap > 0.0 {
        let c = scalar(dt, softcap as f64);
        let t = imp.emit1(cx, Op::Binary(BinaryOp::Div), &[&scores, &c])?;
        let t = imp.emit1(cx, Op::Unary(UnaryOp::Tanh), &[&t])?;
        scores = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&t, &c])?;
    }
    let with_bias = match &bias {
        Some(b) => imp.emit1(cx, Op::Binary(BinaryOp::Add), &[&scores, b])?,
        None => scores.clone(),
    };
    let mut logits = with_bias.clone();
    if let Some(p) = cx.attr("softmax_precision").and_then(|a| a.i) {
        logits = imp.emit1(cx, Op::Cast { to: dtype_from_onnx(p as i32, &cx.name)? }, &[&logits])?;
    }
    let mut probs = imp.emit1(cx, Op::Softmax { axis: -1 }, &[&logits])?;
    if probs.ty.dtype != dt {
        probs = imp.emit1(cx, Op::Cast { to: dt }, &[&probs])?;
    }
    let mut y = imp.emit1(cx, Op::MatMul {}, &[&probs, &v])?;
    if three_d {
        let d = static_dims(cx, &y)?;
        let t = imp.emit1(cx, Op::Transpose { perm: vec![0, 2, 1, 3] }, &[&y])?;
        y = reshape(
            imp,
            cx,
            &t,
            vec![Dim::Const(d[0] as u64), Dim::Const(d[2] as u64), Dim::Const((d[1] * d[3]) as u64)],
        )?;
    }
    let qk = match cx.i("qk_matmul_output_mode", 0) {
        0 | 1 => scores,
        2 => with_bias,
        3 => probs,
        m => return Err(cx.err(format!("qk_matmul_output_mode {m} is not supported"))),
    };
    Ok(vec![y, present_k, present_v, qk])
}

/// Linear (de)quantization to or from int8/uint8, per tensor or per axis (block quantization and the
/// float8/int4 formats are refused).
fn quantize(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let (x, s) = (req(cx, ins, 0)?, req(cx, ins, 1)?);
    if cx.i("block_size", 0) != 0 {
        return Err(cx.err("block quantization is not supported"));
    }
    let zp = opt(ins, 2);
    let r = rank(x);
    // A 1-D scale (and zero point) applies along `axis`.
    let along = |imp: &mut Importer, p: &Val| -> R<Val> {
        if rank(p) != 1 || r <= 1 {
            return Ok(p.clone());
        }
        let a = axis(cx, cx.i("axis", 1), r)? as usize;
        let mut dims = vec![Dim::Const(1); r];
        dims[a] = p.ty.shape.0[0].clone();
        reshape(imp, cx, p, dims)
    };
    let s = along(imp, s)?;
    if cx.op_type == "DequantizeLinear" {
        let fdt = s.ty.dtype;
        let xf = imp.emit1(cx, Op::Cast { to: fdt }, &[x])?;
        let centered = match zp {
            Some(z) => {
                let z = along(imp, z)?;
                let zf = imp.emit1(cx, Op::Cast { to: fdt }, &[&z])?;
                imp.emit1(cx, Op::Binary(BinaryOp::Sub), &[&xf, &zf])?
            }
            None => xf,
        };
        return Ok(vec![imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&centered, &s])?]);
    }
    let out = match (zp, cx.attr("output_dtype").and_then(|a| a.i)) {
        (Some(z), _) => z.ty.dtype,
        (None, Some(c)) if c != 0 => dtype_from_onnx(c as i32, &cx.name)?,
        _ => DType::U8,
    };
    let (lo, hi) = match out {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        d => return Err(cx.err(format!("quantizing to {d} is not supported (int8 and uint8 are)"))),
    };
    let fdt = x.ty.dtype;
    let q = imp.emit1(cx, Op::Binary(BinaryOp::Div), &[x, &s])?;
    let mut q = imp.emit1(cx, Op::Unary(UnaryOp::Round), &[&q])?;
    if let Some(z) = zp {
        let z = along(imp, z)?;
        let zf = imp.emit1(cx, Op::Cast { to: fdt }, &[&z])?;
        q = imp.emit1(cx, Op::Binary(BinaryOp::Add), &[&q, &zf])?;
    }
    let q = imp.emit1(cx, Op::Clip {}, &[&q, &scalar(fdt, lo), &scalar(fdt, hi)])?;
    Ok(vec![imp.emit1(cx, Op::Cast { to: out }, &[&q])?])
}

/// Slices the last axis of `v` as `start:end:step`.
fn slice_last(imp: &mut Importer, cx: &NodeCtx, v: &Val, start: i64, end: i64, step: i64) -> R<Val> {
    let r = rank(v);
    let (mut s, mut e, mut st) = (vec![0; r], vec![i64::MAX; r], vec![1; r]);
    s[r - 1] = start;
    e[r - 1] = end;
    st[r - 1] = step;
    imp.emit1(cx, Op::Slice { starts: s, ends: e, steps: st }, &[v])
}

/// Rotary position embedding (opset 23), expanded into primitives as the ONNX reference defines it:
/// 3-D or 4-D input, optional position ids gathering the caches, partial rotation, interleaved or halves.
fn rotary_embedding(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
    let (x, cos, sin) = (req(cx, ins, 0)?, req(cx, ins, 1)?, req(cx, ins, 2)?);
    let xd = static_dims(cx, x)?;
    let c = |n: i64| Dim::Const(n as u64);
    // To [batch, seq, heads, head_size].
    let x4 = match xd.len() {
        4 => imp.emit1(cx, Op::Transpose { perm: vec![0, 2, 1, 3] }, &[x])?,
        3 => {
            let h = cx.i("num_heads", 0);
            if h <= 0 || xd[2] % h != 0 {
                return Err(cx.err(format!("num_heads {h} does not divide hidden size {}", xd[2])));
            }
            reshape(imp, cx, x, vec![c(xd[0]), c(xd[1]), c(h), c(xd[2] / h)])?
        }
        r => return Err(cx.err(format!("input must have rank 3 or 4, found {r}"))),
    };
    let d4 = static_dims(cx, &x4)?;
    let head = d4[3];
    let rd = match cx.i("rotary_embedding_dim", 0) {
        0 => head,
        r if r > 0 && r <= head && r % 2 == 0 => r,
        r => return Err(cx.err(format!("rotary_embedding_dim {r} must be even and at most the head size {head}"))),
    };
    let half = rd / 2;
    let x_rot = slice_last(imp, cx, &x4, 0, rd, 1)?;
    let (mut cos, mut sin) = (cos.clone(), sin.clone());
    if let Some(pos) = opt(ins, 3) {
        cos = imp.emit1(cx, Op::Gather { axis: 0 }, &[&cos, pos])?;
        sin = imp.emit1(cx, Op::Gather { axis: 0 }, &[&sin, pos])?;
    }
    let cd = static_dims(cx, &cos)?;
    if cd.len() != 3 || cd[2] != half {
        return Err(cx.err(format!("cos/sin caches must be [batch, seq, {half}], found {cd:?}")));
    }
    let cos = reshape(imp, cx, &cos, vec![c(cd[0]), c(cd[1]), c(1), c(half)])?;
    let sin = reshape(imp, cx, &sin, vec![c(cd[0]), c(cd[1]), c(1), c(half)])?;
    let interleaved = cx.i("interleaved", 0) != 0;
    let (x1, x2) = if interleaved {
        (slice_last(imp, cx, &x_rot, 0, rd, 2)?, slice_last(imp, cx, &x_rot, 1, rd, 2)?)
    } else {
        (slice_last(imp, cx, &x_rot, 0, half, 1)?, slice_last(imp, cx, &x_rot, half, rd, 1)?)
    };
    let mul = |imp: &mut Importer, a: &Val, b: &Val| imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[a, b]);
    let (c1, s2, s1, c2) = (mul(imp, &cos, &x1)?, mul(imp, &sin, &x2)?, mul(imp, &sin, &x1)?, mul(imp, &cos, &x2)?);
    let real = imp.emit1(cx, Op::Binary(BinaryOp::Sub), &[&c1, &s2])?;
    let imag = imp.emit1(cx, Op::Binary(BinaryOp::Add), &[&s1, &c2])?;
    let rotated = if interleaved {
        let rdims = static_dims(cx, &real)?;
        let mut e = rdims.iter().map(|&n| c(n)).collect::<Vec<_>>();
        e.push(c(1));
        let (r5, i5) = (reshape(imp, cx, &real, e.clone())?, reshape(imp, cx, &imag, e)?);
        let both = imp.emit1(cx, Op::Concat { axis: 4 }, &[&r5, &i5])?;
        reshape(imp, cx, &both, vec![c(d4[0]), c(d4[1]), c(d4[2]), c(rd)])?
    } else {
        imp.emit1(cx, Op::Concat { axis: 3 }, &[&real, &imag])?
    };
    let out4 = if rd < head {
        let pass = slice_last(imp, cx, &x4, rd, head, 1)?;
        imp.emit1(cx, Op::Concat { axis: 3 }, &[&rotated, &pass])?
    } else {
        rotated
    };
    let out = if xd.len() == 4 {
        imp.emit1(cx, Op::Transpose { perm: vec![0, 2, 1, 3] }, &[&out4])?
    } else {
        reshape(imp, cx, &out4, xd.iter().map(|&n| c(n)).collect())?
    };
    Ok(vec![out])
}

/// Negative log-likelihood of `target` classes under `input` (`[N, C, ...]` log-probabilities), with
/// optional class weights, `ignore_index` and the reduction the node asks for.
fn nll_loss(imp: &mut Importer, cx: &NodeCtx, input: &Val, target: &Val, weight: Option<&Val>) -> R<Val> {
    let dt = input.ty.dtype;
    let tdims = dims(target).to_vec();
    let ignore = cx.attr("ignore_index").and_then(|a| a.i);
    let zero_t = Val::known(Tensor::from_i64_slice(target.ty.dtype, &[], &[0]));
    let (valid, safe) = match ignore {
        Some(ii) => {
            let iiv = Val::known(Tensor::from_i64_slice(target.ty.dtype, &[], &[ii]));
            let is_ignored = imp.emit1(cx, Op::Binary(BinaryOp::Equal), &[target, &iiv])?;
            let valid = imp.emit1(cx, Op::Unary(UnaryOp::Not), &[&is_ignored])?;
            let safe = imp.emit1(cx, Op::Where {}, &[&valid, target, &zero_t])?;
            (Some(valid), safe)
        }
        None => (None, target.clone()),
    };
    let mut with_class = tdims.clone();
    with_class.insert(1, Dim::Const(1));
    let idx = reshape(imp, cx, &safe, with_class)?;
    let picked = imp.emit1(cx, Op::GatherElements { axis: 1 }, &[input, &idx])?;
    let picked = reshape(imp, cx, &picked, tdims.clone())?;
    let mut loss = imp.emit1(cx, Op::Unary(UnaryOp::Neg), &[&picked])?;
    let mut w = match weight {
        Some(wt) => imp.emit1(cx, Op::Gather { axis: 0 }, &[wt, &safe])?,
        None => imp.emit1(cx, Op::Expand { shape: Shape(tdims.clone()) }, &[&scalar(dt, 1.0)])?,
    };
    if let Some(valid) = &valid {
        w = imp.emit1(cx, Op::Where {}, &[valid, &w, &scalar(dt, 0.0)])?;
    }
    if weight.is_some() || valid.is_some() {
        loss = imp.emit1(cx, Op::Binary(BinaryOp::Mul), &[&loss, &w])?;
    }
    let all: Vec<i64> = (0..tdims.len() as i64).collect();
    let sum = |imp: &mut Importer, v: &Val| {
        imp.emit1(cx, Op::Reduce { kind: ReduceKind::Sum, axes: all.clone(), keepdims: false }, &[v])
    };
    match cx.s("reduction").as_deref().unwrap_or("mean") {
        "none" => Ok(loss),
        "sum" => sum(imp, &loss),
        "mean" => {
            let (l, n) = (sum(imp, &loss)?, sum(imp, &w)?);
            imp.emit1(cx, Op::Binary(BinaryOp::Div), &[&l, &n])
        }
        r => Err(cx.err(format!("reduction `{r}` is not supported"))),
    }
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
