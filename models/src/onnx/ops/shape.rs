//! ONNX handlers for shape and layout ops: Reshape, Squeeze/Unsqueeze, Concat, Split, Slice, Gather, Pad
//! and Resize, including the symbolic-shape paths that keep dynamic dimensions named.

use super::*;

pub(super) fn reshape_op(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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
pub(super) fn infer_minus_one(input: &[Dim], known: &[Dim]) -> Option<Dim> {
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

pub(super) fn squeeze(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn concat(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn split(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn slice(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn gather(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn pad(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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

pub(super) fn axes_list_unsorted(cx: &NodeCtx, axes: &[i64], r: usize) -> R<Vec<i64>> {
    axes.iter().map(|&a| axis(cx, a, r)).collect()
}

pub(super) fn resize(imp: &mut Importer, cx: &NodeCtx, ins: &[Option<Val>]) -> R<Vec<Val>> {
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
