//! Reductions, softmax and the normalizations, arg-max/min, cumulative sums and top-k.
//! Float math runs in f64; integer sums and products in i64 with wrap-around.

use crate::infer::norm_axis;
use crate::{dispatch, Elem, ReduceKind, Tensor};
use ndarray::{ArrayD, IxDyn};

/// Moves `axes` to the end and returns (outer shape, the data as rows of the reduced elements).
fn rows<T: Elem>(a: &ArrayD<T>, axes: &[usize]) -> (Vec<usize>, usize, Vec<T>) {
    let r = a.ndim();
    let mut perm: Vec<usize> = (0..r).filter(|i| !axes.contains(i)).collect();
    let outer: Vec<usize> = perm.iter().map(|&i| a.shape()[i]).collect();
    perm.extend(axes);
    let inner: usize = axes.iter().map(|&i| a.shape()[i]).product();
    let p = a.view().permuted_axes(IxDyn(&perm));
    let data: Vec<T> = p.iter().copied().collect();
    (outer, inner, data)
}

fn out_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, &d) in shape.iter().enumerate() {
        if !axes.contains(&i) {
            out.push(d);
        } else if keepdims {
            out.push(1);
        }
    }
    out
}

pub fn reduce(kind: ReduceKind, x: &Tensor, axes: &[i64], keepdims: bool) -> Result<Tensor, String> {
    let r = x.shape().len();
    let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, r)).collect::<Result<_, _>>()?;
    let shape = out_shape(x.shape(), &axes, keepdims);
    if x.dtype().is_int()
        && matches!(
            kind,
            ReduceKind::Sum
                | ReduceKind::Prod
                | ReduceKind::Max
                | ReduceKind::Min
                | ReduceKind::L1
                | ReduceKind::SumSquare
        )
    {
        let vals: Vec<i64> = dispatch!(x, a => {
            let (_, inner, data) = rows(a, &axes);
            data.chunks(inner.max(1)).take(if inner == 0 { 0 } else { usize::MAX }).map(|row| reduce_i64(kind, row)).collect()
        });
        let n: usize = shape.iter().product();
        let vals = if vals.len() == n {
            vals
        } else {
            // Reducing an empty axis: the identity of the reduction at this element type's range.
            let (lo, hi) = match x.dtype() {
                crate::DType::I8 => (i8::MIN as i64, i8::MAX as i64),
                crate::DType::U8 => (0, u8::MAX as i64),
                crate::DType::I32 => (i32::MIN as i64, i32::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            let id = match kind {
                ReduceKind::Max => lo,
                ReduceKind::Min => hi,
                ReduceKind::Prod => 1,
                _ => 0,
            };
            vec![id; n]
        };
        return Ok(Tensor::from_i64_slice(x.dtype(), &shape, &vals));
    }
    let vals: Vec<f64> = dispatch!(x, a => {
        let (outer, inner, data) = rows(a, &axes);
        let n: usize = outer.iter().product();
        (0..n).map(|i| reduce_f64(kind, &data[i * inner..(i + 1) * inner])).collect()
    });
    Ok(Tensor::from_f64_fn(x.dtype(), &shape, |i| vals[i]))
}

fn reduce_i64<T: Elem>(kind: ReduceKind, row: &[T]) -> i64 {
    let it = row.iter().map(|v| v.to_i64());
    match kind {
        ReduceKind::Sum => it.fold(0i64, i64::wrapping_add),
        ReduceKind::Prod => it.fold(1i64, i64::wrapping_mul),
        ReduceKind::Max => it.max().unwrap_or(i64::MIN),
        ReduceKind::Min => it.min().unwrap_or(i64::MAX),
        ReduceKind::L1 => it.map(i64::wrapping_abs).fold(0, i64::wrapping_add),
        _ => it.map(|v| v.wrapping_mul(v)).fold(0, i64::wrapping_add),
    }
}

fn reduce_f64<T: Elem>(kind: ReduceKind, row: &[T]) -> f64 {
    let it = row.iter().map(|v| v.to_f64());
    match kind {
        ReduceKind::Sum => it.sum(),
        ReduceKind::Mean => it.sum::<f64>() / row.len() as f64,
        ReduceKind::Prod => it.product(),
        ReduceKind::Max => it.fold(f64::NEG_INFINITY, |m, v| if v > m || v.is_nan() { v } else { m }),
        ReduceKind::Min => it.fold(f64::INFINITY, |m, v| if v < m || v.is_nan() { v } else { m }),
        ReduceKind::L1 => it.map(f64::abs).sum(),
        ReduceKind::L2 => it.map(|v| v * v).sum::<f64>().sqrt(),
        ReduceKind::LogSum => it.sum::<f64>().ln(),
        ReduceKind::SumSquare => it.map(|v| v * v).sum(),
        ReduceKind::LogSumExp => {
            let v: Vec<f64> = it.collect();
            let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if m.is_infinite() {
                return v.iter().map(|x| x.exp()).sum::<f64>().ln();
            }
            m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
        }
    }
}

pub fn arg(x: &Tensor, axis: i64, keepdims: bool, last: bool, max: bool) -> Result<Tensor, String> {
    let a = norm_axis(axis, x.shape().len())?;
    let shape = out_shape(x.shape(), &[a], keepdims);
    let vals: Vec<i64> = dispatch!(x, arr => {
        let (_, inner, data) = rows(arr, &[a]);
        if inner == 0 {
            return Err("arg reduction over an empty axis".into());
        }
        data.chunks(inner).map(|row| {
            let mut best = 0usize;
            for (i, v) in row.iter().enumerate().skip(1) {
                let b = &row[best];
                let better = if max { v > b } else { v < b };
                if better || (last && v == b) {
                    best = i;
                }
            }
            best as i64
        }).collect()
    });
    Ok(Tensor::from_i64_slice(crate::DType::I64, &shape, &vals))
}

/// The permutation that moves `axis` last, and its inverse.
fn axis_last(r: usize, axis: usize) -> (Vec<usize>, Vec<usize>) {
    let mut perm: Vec<usize> = (0..r).filter(|&i| i != axis).collect();
    perm.push(axis);
    let mut inv = vec![0usize; r];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    (perm, inv)
}

/// Applies `f` to every lane along `axis`, in place.
fn map_lanes<T: Clone>(data: ArrayD<T>, axis: usize, f: impl Fn(&mut [T])) -> ArrayD<T> {
    let n = data.shape()[axis];
    let (perm, inv) = axis_last(data.ndim(), axis);
    let mut moved = data.permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned();
    if n > 0 {
        for lane in moved.as_slice_mut().expect("standard layout").chunks_mut(n) {
            f(lane);
        }
    }
    moved.permuted_axes(IxDyn(&inv)).as_standard_layout().into_owned()
}

/// Applies `f` to every lane along `axis` (as f64 values), in place.
fn along_axis(x: &Tensor, axis: usize, f: impl Fn(&mut [f64])) -> Tensor {
    Tensor::F64(map_lanes(x.to_f64_array(), axis, f)).cast(x.dtype())
}

pub fn softmax(x: &Tensor, axis: i64, log: bool) -> Result<Tensor, String> {
    let a = norm_axis(axis, x.shape().len())?;
    Ok(along_axis(x, a, |lane| {
        let m = lane.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = lane.iter().map(|v| (v - m).exp()).sum();
        for v in lane.iter_mut() {
            *v = if log { *v - m - s.ln() } else { (*v - m).exp() / s };
        }
    }))
}

pub fn hardmax(x: &Tensor, axis: i64) -> Result<Tensor, String> {
    let a = norm_axis(axis, x.shape().len())?;
    Ok(along_axis(x, a, |lane| {
        let mut best = 0;
        for i in 1..lane.len() {
            if lane[i] > lane[best] {
                best = i;
            }
        }
        for (i, v) in lane.iter_mut().enumerate() {
            *v = if i == best { 1.0 } else { 0.0 };
        }
    }))
}

pub fn cumulative(x: &Tensor, axis: i64, exclusive: bool, reverse: bool, prod: bool) -> Result<Tensor, String> {
    let a = norm_axis(axis, x.shape().len())?;
    if x.dtype().is_int() {
        // Exact integer path: i64 lanes with wrap-around, then back to the type (wrapping again).
        let lanes = map_lanes(x.to_i64_array(), a, |lane| {
            let n = lane.len();
            let order: Vec<usize> = if reverse { (0..n).rev().collect() } else { (0..n).collect() };
            let mut acc: i64 = if prod { 1 } else { 0 };
            for &i in &order {
                let next = if prod { acc.wrapping_mul(lane[i]) } else { acc.wrapping_add(lane[i]) };
                lane[i] = if exclusive { acc } else { next };
                acc = next;
            }
        });
        let v: Vec<i64> = lanes.iter().copied().collect();
        return Ok(Tensor::from_i64_slice(x.dtype(), x.shape(), &v));
    }
    Ok(along_axis(x, a, |lane| {
        let n = lane.len();
        let order: Vec<usize> = if reverse { (0..n).rev().collect() } else { (0..n).collect() };
        let mut acc = if prod { 1.0 } else { 0.0 };
        for &i in &order {
            let v = lane[i];
            if exclusive {
                lane[i] = acc;
                acc = if prod { acc * v } else { acc + v };
            } else {
                acc = if prod { acc * v } else { acc + v };
                lane[i] = acc;
            }
        }
    }))
}

pub fn topk(x: &Tensor, axis: i64, k: i64, largest: bool, _sorted: bool) -> Result<Vec<Tensor>, String> {
    let a = norm_axis(axis, x.shape().len())?;
    let k = k as usize;
    let sh = x.shape().to_vec();
    let r = sh.len();
    let data = x.to_f64_array();
    let (perm, inv) = axis_last(r, a);
    let moved = data.permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned();
    let n = sh[a];
    let mut vals = Vec::new();
    let mut idxs = Vec::new();
    if n > 0 {
        for lane in moved.as_slice().expect("standard layout").chunks(n) {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&i, &j| {
                let c = lane[i].partial_cmp(&lane[j]).unwrap_or(std::cmp::Ordering::Equal);
                let c = if largest { c.reverse() } else { c };
                c.then(i.cmp(&j))
            });
            for &i in &order[..k] {
                vals.push(lane[i]);
                idxs.push(i as i64);
            }
        }
    }
    let mut moved_shape: Vec<usize> = perm.iter().map(|&p| sh[p]).collect();
    *moved_shape.last_mut().expect("rank >= 1") = k;
    let v = ArrayD::from_shape_vec(IxDyn(&moved_shape), vals).map_err(|e| e.to_string())?;
    let ix = ArrayD::from_shape_vec(IxDyn(&moved_shape), idxs).map_err(|e| e.to_string())?;
    let v = Tensor::F64(v.permuted_axes(IxDyn(&inv)).as_standard_layout().into_owned()).cast(x.dtype());
    let ix = Tensor::I64(ix.permuted_axes(IxDyn(&inv)).as_standard_layout().into_owned());
    Ok(vec![v, ix])
}

/// Layer norm (or RMS norm when `rms`) over the dims from `axis` on.
pub fn layer_norm(
    x: &Tensor,
    scale: &Tensor,
    bias: Option<&Tensor>,
    axis: i64,
    eps: f32,
    rms: bool,
) -> Result<Tensor, String> {
    let sh = x.shape().to_vec();
    let a = norm_axis(axis, sh.len())?;
    let inner: usize = sh[a..].iter().product();
    let xs = x.to_f64_vec();
    let mut out = vec![0.0f64; xs.len()];
    let eps = eps as f64;
    if inner > 0 {
        for (row, o) in xs.chunks(inner).zip(out.chunks_mut(inner)) {
            let mean = if rms { 0.0 } else { row.iter().sum::<f64>() / inner as f64 };
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / inner as f64;
            let inv = 1.0 / (var + eps).sqrt();
            for (d, v) in o.iter_mut().zip(row) {
                *d = (v - mean) * inv;
            }
        }
    }
    let normed = Tensor::from_f64_fn(crate::DType::F64, &sh, |i| out[i]);
    let mut y = super::elementwise::binary(crate::BinaryOp::Mul, &normed, &scale.cast(crate::DType::F64))?;
    if let Some(b) = bias {
        y = super::elementwise::binary(crate::BinaryOp::Add, &y, &b.cast(crate::DType::F64))?;
    }
    Ok(y.cast(x.dtype()))
}

pub fn batch_norm(
    x: &Tensor,
    scale: &Tensor,
    bias: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f32,
) -> Result<Tensor, String> {
    let sh = x.shape();
    let c = sh[1];
    let inner: usize = sh[2..].iter().product();
    let (s, b, m, v) = (scale.to_f64_vec(), bias.to_f64_vec(), mean.to_f64_vec(), var.to_f64_vec());
    let mut xs = x.to_f64_vec();
    for (i, val) in xs.iter_mut().enumerate() {
        let ch = (i / inner.max(1)) % c;
        *val = (*val - m[ch]) / (v[ch] + eps as f64).sqrt() * s[ch] + b[ch];
    }
    Ok(Tensor::from_f64_fn(x.dtype(), sh, |i| xs[i]))
}

/// Instance norm (`groups == None`: one group per channel) or group norm; scale and bias per channel.
pub fn group_norm(x: &Tensor, scale: &Tensor, bias: &Tensor, groups: Option<i64>, eps: f32) -> Result<Tensor, String> {
    let sh = x.shape();
    let (n, c) = (sh[0], sh[1]);
    let sp: usize = sh[2..].iter().product();
    let g = groups.map(|g| g as usize).unwrap_or(c);
    if c == 0 || g == 0 || x.is_empty() {
        return Ok(x.clone());
    }
    let cpg = c / g;
    let (s, b) = (scale.to_f64_vec(), bias.to_f64_vec());
    let mut xs = x.to_f64_vec();
    let len = cpg * sp;
    for i in 0..n * g {
        let chunk = &mut xs[i * len..(i + 1) * len];
        let mean = chunk.iter().sum::<f64>() / len as f64;
        let var = chunk.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for (j, v) in chunk.iter_mut().enumerate() {
            let ch = (i % g) * cpg + j / sp.max(1);
            *v = (*v - mean) * inv * s[ch] + b[ch];
        }
    }
    Ok(Tensor::from_f64_fn(x.dtype(), sh, |i| xs[i]))
}

pub fn lrn(x: &Tensor, size: i64, alpha: f32, beta: f32, bias: f32) -> Result<Tensor, String> {
    let sh = x.shape();
    let (n, c) = (sh[0], sh[1]);
    let sp: usize = sh[2..].iter().product();
    let xs = x.to_f64_vec();
    let lo = (size - 1) / 2;
    let hi = size - 1 - lo;
    let mut out = vec![0.0; xs.len()];
    for b in 0..n {
        for ch in 0..c {
            for p in 0..sp {
                let mut sq = 0.0;
                for cc in (ch as i64 - lo).max(0)..=(ch as i64 + hi).min(c as i64 - 1) {
                    let v = xs[(b * c + cc as usize) * sp + p];
                    sq += v * v;
                }
                let i = (b * c + ch) * sp + p;
                out[i] = xs[i] / (bias as f64 + alpha as f64 / size as f64 * sq).powf(beta as f64);
            }
        }
    }
    Ok(Tensor::from_f64_fn(x.dtype(), sh, |i| out[i]))
}
