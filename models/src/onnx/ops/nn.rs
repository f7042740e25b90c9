//! ONNX handlers for network layers: Gemm, convolutions, pooling, reductions, softmax, the normalizations,
//! attention, rotary embeddings, the loss functions and linear quantization.

use super::*;

pub(super) fn gemm(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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
pub(super) fn auto_pads(cx: &NodeCtx, in_sp: &[i64], k: &[i64], strides: &[i64], dil: &[i64]) -> R<Option<Vec<i64>>> {
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
pub(super) struct ConvGeometry {
    nsp: usize,
    k: Vec<i64>,
    strides: Vec<i64>,
    dil: Vec<i64>,
    in_sp: Vec<i64>,
}

pub(super) fn conv_geometry(cx: &NodeCtx, x: &Val, w: &Val) -> R<ConvGeometry> {
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

pub(super) fn conv(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn conv_transpose(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn pool(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn reduce(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn softmax(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn layer_norm(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn group_norm(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

/// Scaled dot-product attention (opset 23+), expanded into primitives as the ONNX reference defines it:
/// 3-D inputs split into heads, key/value cache concatenation, boolean or additive masks (padded to the
/// key length), upper-left-aligned causal masking after the cache, grouped-query head repetition, softcap,
/// and the optional `qk_matmul_output` in its four modes.
pub(super) fn attention(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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
pub(super) fn quantize(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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
pub(super) fn slice_last(imp: &mut Importer, cx: &NodeCtx, v: &Val, start: i64, end: i64, step: i64) -> R<Val> {
    let r = rank(v);
    let (mut s, mut e, mut st) = (vec![0; r], vec![i64::MAX; r], vec![1; r]);
    s[r - 1] = start;
    e[r - 1] = end;
    st[r - 1] = step;
    imp.emit1(cx, Op::Slice { starts: s, ends: e, steps: st }, &[v])
}

/// Rotary position embedding (opset 23), expanded into primitives as the ONNX reference defines it:
/// 3-D or 4-D input, optional position ids gathering the caches, partial rotation, interleaved or halves.
pub(super) fn rotary_embedding(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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
pub(super) fn nll_loss(imp: &mut Importer, cx: &NodeCtx, input: &Val, target: &Val, weight: Option<&Val>) -> R<Val> {
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
