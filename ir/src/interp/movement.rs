//! Ops that move, select or replicate elements: transpose, expand, concat, split, slice, gathers and
//! scatters, pad, tile, trilu, one-hot, depth/space rearrangements and resize.

use crate::infer::{norm_axis, slice_range};
use crate::{
    map_same, CoordTransform, DepthToSpaceMode, Elem, NearestMode, PadMode, ResizeMode, ScatterReduction, Tensor,
};
use ndarray::{ArrayD, Axis, IxDyn, Slice};

pub fn transpose(x: &Tensor, perm: &[i64]) -> Tensor {
    let p: Vec<usize> = perm.iter().map(|&v| v as usize).collect();
    map_same!(x, a => a.view().permuted_axes(IxDyn(&p)).as_standard_layout().into_owned())
}

pub fn expand(x: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    let s = crate::broadcast_shapes(&crate::Shape::from_consts(x.shape()), &crate::Shape::from_consts(shape))
        .and_then(|s| s.as_consts())
        .ok_or_else(|| format!("{:?} does not broadcast to {shape:?}", x.shape()))?;
    Ok(map_same!(x, a => a.broadcast(IxDyn(&s)).ok_or("broadcast failed")?.to_owned()))
}

pub fn concat(ins: &[&Tensor], axis: i64) -> Result<Tensor, String> {
    let a = norm_axis(axis, ins[0].shape().len())?;
    macro_rules! go {
        ($($v:ident),*) => {
            match ins[0] {
                $(Tensor::$v(_) => {
                    let views = ins.iter().map(|t| match t { Tensor::$v(x) => Ok(x.view()), _ => Err("element types differ".to_string()) }).collect::<Result<Vec<_>, _>>()?;
                    Ok(Tensor::$v(ndarray::concatenate(Axis(a), &views).map_err(|e| e.to_string())?))
                })*
            }
        };
    }
    go!(F32, F16, BF16, F64, I8, U8, I32, I64, Bool)
}

pub fn split(x: &Tensor, axis: i64, sizes: &[i64]) -> Result<Vec<Tensor>, String> {
    let a = norm_axis(axis, x.shape().len())?;
    let mut start = 0i64;
    let mut out = Vec::new();
    for &s in sizes {
        let (b, e) = (start as isize, (start + s) as isize);
        out.push(map_same!(x, arr => arr.slice_axis(Axis(a), Slice::from(b..e)).to_owned()));
        start += s;
    }
    Ok(out)
}

pub fn slice(x: &Tensor, starts: &[i64], ends: &[i64], steps: &[i64]) -> Tensor {
    let dims = x.shape().to_vec();
    let specs: Vec<Slice> = (0..dims.len())
        .map(|i| {
            let n = dims[i] as i64;
            let (s, len) = slice_range(starts[i], ends[i], steps[i], n);
            if len == 0 {
                return Slice::new(0, Some(0), 1);
            }
            let step = steps[i];
            if step > 0 {
                Slice::new(s as isize, Some((s + (len - 1) * step + 1) as isize), step as isize)
            } else {
                let lo = s + (len - 1) * step;
                Slice::new(lo as isize, Some((s + 1) as isize), step as isize)
            }
        })
        .collect();
    map_same!(x, a => a.slice_each_axis(|ax| specs[ax.axis.index()]).to_owned())
}

/// Index tensors of gather/scatter-elements: the data's rank, and no larger than the data off the axis.
fn check_fits(ish: &[usize], sh: &[usize], axis: usize) -> Result<(), String> {
    if ish.len() != sh.len() || ish.iter().zip(sh).enumerate().any(|(i, (p, q))| i != axis && p > q) {
        return Err(format!("indices of shape {ish:?} do not fit data of shape {sh:?}"));
    }
    Ok(())
}

fn indices_of(t: &Tensor, n: usize) -> Result<Vec<usize>, String> {
    t.to_i64_vec()
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + n as i64 } else { i };
            if j < 0 || j >= n as i64 {
                Err(format!("index {i} is out of range for an axis of {n}"))
            } else {
                Ok(j as usize)
            }
        })
        .collect()
}

pub fn gather(x: &Tensor, idx: &Tensor, axis: i64) -> Result<Tensor, String> {
    let sh = x.shape().to_vec();
    let a = norm_axis(axis, sh.len())?;
    let ix = indices_of(idx, sh[a])?;
    let mut out_shape = sh[..a].to_vec();
    out_shape.extend(idx.shape());
    out_shape.extend(&sh[a + 1..]);
    Ok(map_same!(x, arr => {
        let sel = arr.select(Axis(a), &ix).as_standard_layout().into_owned();
        sel.into_shape_with_order(IxDyn(&out_shape)).map_err(|e| e.to_string())?
    }))
}

/// Row-major strides of a shape.
fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

pub fn gather_elements(x: &Tensor, idx: &Tensor, axis: i64) -> Result<Tensor, String> {
    let sh = x.shape().to_vec();
    let a = norm_axis(axis, sh.len())?;
    let ish = idx.shape().to_vec();
    check_fits(&ish, &sh, a)?;
    let ix = indices_of(idx, sh[a])?;
    let (xs, is) = (strides_of(&sh), strides_of(&ish));
    let offs: Vec<usize> = (0..ix.len())
        .map(|k| {
            let mut off = 0;
            for d in 0..sh.len() {
                let c = (k / is[d]) % ish[d];
                off += if d == a { ix[k] } else { c } * xs[d];
            }
            off
        })
        .collect();
    Ok(map_same!(x, arr => {
        let flat: Vec<_> = arr.iter().copied().collect();
        ArrayD::from_shape_vec(IxDyn(&ish), offs.iter().map(|&o| flat[o]).collect()).map_err(|e| e.to_string())?
    }))
}

pub fn gather_nd(x: &Tensor, idx: &Tensor, b: usize) -> Result<Tensor, String> {
    let sh = x.shape().to_vec();
    let ish = idx.shape().to_vec();
    let depth = *ish.last().ok_or("indices must have rank >= 1")?;
    if b >= ish.len() || b + depth > sh.len() || ish[..b] != sh[..b] {
        return Err(format!("indices of shape {ish:?} do not fit data of shape {sh:?} with {b} batch dims"));
    }
    let batch: usize = sh[..b].iter().product();
    let slice_len: usize = sh[b + depth..].iter().product();
    let per_batch_data: usize = sh[b..].iter().product();
    let n_idx: usize = ish[b..ish.len() - 1].iter().product();
    let raw = idx.to_i64_vec();
    let st = strides_of(&sh[b..]);
    let mut offs = Vec::with_capacity(batch * n_idx);
    for bi in 0..batch {
        for k in 0..n_idx {
            let tuple = &raw[(bi * n_idx + k) * depth..(bi * n_idx + k + 1) * depth];
            let mut off = bi * per_batch_data;
            for (d, &i) in tuple.iter().enumerate() {
                let n = sh[b + d] as i64;
                let j = if i < 0 { i + n } else { i };
                if j < 0 || j >= n {
                    return Err(format!("index {i} is out of range for an axis of {n}"));
                }
                off += j as usize * st[d];
            }
            offs.push(off);
        }
    }
    let mut out_shape = ish[..ish.len() - 1].to_vec();
    out_shape.extend(&sh[b + depth..]);
    Ok(map_same!(x, arr => {
        let flat: Vec<_> = arr.iter().copied().collect();
        let v: Vec<_> = offs.iter().flat_map(|&o| flat[o..o + slice_len].iter().copied()).collect();
        ArrayD::from_shape_vec(IxDyn(&out_shape), v).map_err(|e| e.to_string())?
    }))
}

fn combine<T: Elem>(old: T, new: T, r: ScatterReduction) -> T {
    let (a, b) = (old.to_f64(), new.to_f64());
    let int = T::DTYPE.is_int();
    match r {
        ScatterReduction::None => new,
        ScatterReduction::Add if int => T::from_i64(old.to_i64().wrapping_add(new.to_i64())),
        ScatterReduction::Mul if int => T::from_i64(old.to_i64().wrapping_mul(new.to_i64())),
        ScatterReduction::Add => T::from_f64(a + b),
        ScatterReduction::Mul => T::from_f64(a * b),
        ScatterReduction::Max => {
            if b > a {
                new
            } else {
                old
            }
        }
        ScatterReduction::Min => {
            if b < a {
                new
            } else {
                old
            }
        }
    }
}

fn scatter_into<T: Elem>(
    data: &ArrayD<T>,
    offs: &[(usize, usize)],
    updates: &ArrayD<T>,
    r: ScatterReduction,
) -> ArrayD<T> {
    let mut flat: Vec<T> = data.iter().copied().collect();
    let upd: Vec<T> = updates.iter().copied().collect();
    for &(dst, src) in offs {
        flat[dst] = combine(flat[dst], upd[src], r);
    }
    ArrayD::from_shape_vec(IxDyn(data.shape()), flat).expect("same shape")
}

macro_rules! scatter_dispatch {
    ($x:expr, $upd:expr, $offs:expr, $r:expr) => {
        match ($x, $upd) {
            (Tensor::F32(a), Tensor::F32(u)) => Ok(Tensor::F32(scatter_into(a, $offs, u, $r))),
            (Tensor::F16(a), Tensor::F16(u)) => Ok(Tensor::F16(scatter_into(a, $offs, u, $r))),
            (Tensor::BF16(a), Tensor::BF16(u)) => Ok(Tensor::BF16(scatter_into(a, $offs, u, $r))),
            (Tensor::F64(a), Tensor::F64(u)) => Ok(Tensor::F64(scatter_into(a, $offs, u, $r))),
            (Tensor::I8(a), Tensor::I8(u)) => Ok(Tensor::I8(scatter_into(a, $offs, u, $r))),
            (Tensor::U8(a), Tensor::U8(u)) => Ok(Tensor::U8(scatter_into(a, $offs, u, $r))),
            (Tensor::I32(a), Tensor::I32(u)) => Ok(Tensor::I32(scatter_into(a, $offs, u, $r))),
            (Tensor::I64(a), Tensor::I64(u)) => Ok(Tensor::I64(scatter_into(a, $offs, u, $r))),
            (Tensor::Bool(a), Tensor::Bool(u)) => Ok(Tensor::Bool(scatter_into(a, $offs, u, $r))),
            _ => Err("data and updates differ in element type".to_string()),
        }
    };
}

pub fn scatter_elements(
    x: &Tensor,
    idx: &Tensor,
    upd: &Tensor,
    axis: i64,
    r: ScatterReduction,
) -> Result<Tensor, String> {
    let sh = x.shape().to_vec();
    let a = norm_axis(axis, sh.len())?;
    let ish = idx.shape().to_vec();
    check_fits(&ish, &sh, a)?;
    if upd.shape() != ish.as_slice() {
        return Err("updates and indices shapes differ".into());
    }
    let ix = indices_of(idx, sh[a])?;
    let (xs, is) = (strides_of(&sh), strides_of(&ish));
    let offs: Vec<(usize, usize)> = (0..ix.len())
        .map(|k| {
            let mut off = 0;
            for d in 0..sh.len() {
                let c = (k / is[d]) % ish[d];
                off += if d == a { ix[k] } else { c } * xs[d];
            }
            (off, k)
        })
        .collect();
    scatter_dispatch!(x, upd, &offs, r)
}

pub fn scatter_nd(x: &Tensor, idx: &Tensor, upd: &Tensor, r: ScatterReduction) -> Result<Tensor, String> {
    let sh = x.shape().to_vec();
    let ish = idx.shape().to_vec();
    let depth = *ish.last().ok_or("indices must have rank >= 1")?;
    if depth > sh.len() {
        return Err("index depth exceeds data rank".into());
    }
    let mut want = ish[..ish.len() - 1].to_vec();
    want.extend(&sh[depth..]);
    if upd.shape() != want.as_slice() {
        return Err(format!("updates have shape {:?}, expected {want:?}", upd.shape()));
    }
    let slice_len: usize = sh[depth..].iter().product();
    let n_idx: usize = ish[..ish.len() - 1].iter().product();
    let raw = idx.to_i64_vec();
    let st = strides_of(&sh);
    let mut offs = Vec::new();
    for k in 0..n_idx {
        let mut base = 0usize;
        for d in 0..depth {
            let n = sh[d] as i64;
            let i = raw[k * depth + d];
            let j = if i < 0 { i + n } else { i };
            if j < 0 || j >= n {
                return Err(format!("index {i} is out of range for an axis of {n}"));
            }
            base += j as usize * st[d];
        }
        for e in 0..slice_len {
            offs.push((base + e, k * slice_len + e));
        }
    }
    scatter_dispatch!(x, upd, &offs, r)
}

/// For each output index along one axis, the input index it reads (or `None` for the fill value).
fn pad_map(n: usize, before: i64, after: i64, mode: PadMode) -> Vec<Option<usize>> {
    let out = (n as i64 + before + after).max(0);
    (0..out)
        .map(|o| {
            let i = o - before;
            if i >= 0 && i < n as i64 {
                return Some(i as usize);
            }
            if n == 0 {
                return None;
            }
            let n = n as i64;
            match mode {
                PadMode::Constant => None,
                PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
                PadMode::Wrap => Some(i.rem_euclid(n) as usize),
                PadMode::Reflect => {
                    if n == 1 {
                        return Some(0);
                    }
                    let period = 2 * (n - 1);
                    let m = i.rem_euclid(period);
                    Some(if m < n { m } else { period - m } as usize)
                }
            }
        })
        .collect()
}

pub fn pad(x: &Tensor, value: &Tensor, pads: &[i64], mode: PadMode) -> Result<Tensor, String> {
    let sh = x.shape().to_vec();
    let r = sh.len();
    let maps: Vec<Vec<Option<usize>>> = (0..r).map(|d| pad_map(sh[d], pads[d], pads[d + r], mode)).collect();
    let out_shape: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    let st = strides_of(&sh);
    let n: usize = out_shape.iter().product();
    let mut src = Vec::with_capacity(n);
    let mut idx = vec![0usize; r];
    for k in 0..n {
        super::linalg::unravel(k, &out_shape, &mut idx);
        let mut off = Some(0usize);
        for d in 0..r {
            off = match (off, maps[d][idx[d]]) {
                (Some(o), Some(i)) => Some(o + i * st[d]),
                _ => None,
            };
        }
        src.push(off);
    }
    macro_rules! go {
        ($($v:ident),*) => {
            match (x, value) {
                $((Tensor::$v(a), Tensor::$v(fill)) => {
                    let f = *fill.iter().next().ok_or("pad value is empty")?;
                    let flat: Vec<_> = a.iter().copied().collect();
                    Ok(Tensor::$v(ArrayD::from_shape_vec(IxDyn(&out_shape), src.iter().map(|o| o.map_or(f, |o| flat[o])).collect()).map_err(|e| e.to_string())?))
                })*
                _ => Err("pad value has another element type".to_string()),
            }
        };
    }
    go!(F32, F16, BF16, F64, I8, U8, I32, I64, Bool)
}

pub fn tile(x: &Tensor, repeats: &[i64]) -> Tensor {
    let mut t = x.clone();
    for (d, &r) in repeats.iter().enumerate() {
        if r != 1 {
            let copies: Vec<&Tensor> = std::iter::repeat_n(&t, r as usize).collect();
            t = if copies.is_empty() {
                slice(
                    &t,
                    &vec![0; t.shape().len()],
                    &t.shape().iter().enumerate().map(|(i, &n)| if i == d { 0 } else { n as i64 }).collect::<Vec<_>>(),
                    &vec![1; t.shape().len()],
                )
            } else {
                concat(&copies, d as i64).expect("same types")
            };
        }
    }
    t
}

pub fn trilu(x: &Tensor, upper: bool, k: i64) -> Tensor {
    let sh = x.shape().to_vec();
    let r = sh.len();
    let (rows, cols) = (sh[r - 2], sh[r - 1]);
    map_same!(x, a => {
        let mut out = a.clone();
        for (i, v) in out.iter_mut().enumerate() {
            let c = (i % cols) as i64;
            let row = ((i / cols.max(1)) % rows.max(1)) as i64;
            let keep = if upper { c - row >= k } else { c - row <= k };
            if !keep {
                *v = Default::default();
            }
        }
        out
    })
}

pub fn one_hot(idx: &Tensor, values: &Tensor, axis: i64, depth: i64) -> Result<Tensor, String> {
    let ish = idx.shape().to_vec();
    let a = norm_axis(axis, ish.len() + 1)?;
    let mut out_shape = ish.clone();
    out_shape.insert(a, depth as usize);
    let raw = idx.to_i64_vec();
    let outer: usize = ish[..a].iter().product();
    let inner: usize = ish[a..].iter().product();
    Ok(map_same!(values, v => {
        let (off, on) = (v.iter().next().copied().unwrap_or_default(), v.iter().nth(1).copied().unwrap_or_default());
        let n: usize = out_shape.iter().product();
        let mut out = vec![off; n];
        for o in 0..outer {
            for i in 0..inner {
                let mut j = raw[o * inner + i];
                if j < 0 {
                    j += depth;
                }
                if j >= 0 && j < depth {
                    out[(o * depth as usize + j as usize) * inner + i] = on;
                }
            }
        }
        ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| e.to_string())?
    }))
}

pub fn depth_to_space(x: &Tensor, b: usize, mode: DepthToSpaceMode) -> Tensor {
    let sh = x.shape().to_vec();
    let (n, c, h, w) = (sh[0], sh[1], sh[2], sh[3]);
    let c2 = c / (b * b);
    let (tmp, perm): (Vec<usize>, [usize; 6]) = match mode {
        DepthToSpaceMode::Dcr => (vec![n, b, b, c2, h, w], [0, 3, 4, 1, 5, 2]),
        DepthToSpaceMode::Crd => (vec![n, c2, b, b, h, w], [0, 1, 4, 2, 5, 3]),
    };
    let t = x.reshape(&tmp).expect("element count matches");
    let t = transpose(&t, &perm.map(|p| p as i64));
    t.reshape(&[n, c2, h * b, w * b]).expect("element count matches")
}

pub fn space_to_depth(x: &Tensor, b: usize) -> Tensor {
    let sh = x.shape().to_vec();
    let (n, c, h, w) = (sh[0], sh[1], sh[2], sh[3]);
    let t = x.reshape(&[n, c, h / b, b, w / b, b]).expect("element count matches");
    let t = transpose(&t, &[0, 3, 5, 1, 2, 4]);
    t.reshape(&[n, c * b * b, h / b, w / b]).expect("element count matches")
}

pub struct ResizeParams<'a> {
    pub sizes: &'a [i64],
    pub scales: &'a [f32],
    pub mode: ResizeMode,
    pub coord: CoordTransform,
    pub nearest: NearestMode,
    pub cubic_a: f32,
    pub exclude_outside: bool,
}

/// The input coordinate an output coordinate maps to.
fn source_coord(o: usize, in_len: usize, out_len: usize, scale: f64, coord: CoordTransform) -> f64 {
    let o = o as f64;
    // ONNX measures the resized length as `in * scale`, before rounding to whole elements.
    let (il, ol) = (in_len as f64, in_len as f64 * scale);
    match coord {
        CoordTransform::HalfPixel => (o + 0.5) / scale - 0.5,
        CoordTransform::HalfPixelSymmetric => {
            let adj = out_len as f64 / ol;
            let center = il / 2.0;
            let offset = center * (1.0 - adj);
            offset + (o + 0.5) / scale - 0.5
        }
        CoordTransform::PytorchHalfPixel => {
            if ol > 1.0 {
                (o + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordTransform::AlignCorners => {
            if ol == 1.0 {
                0.0
            } else {
                o * (il - 1.0) / (ol - 1.0)
            }
        }
        CoordTransform::Asymmetric => o / scale,
    }
}

fn cubic_weights(t: f64, a: f64) -> [f64; 4] {
    let w = |x: f64| {
        let x = x.abs();
        if x <= 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
        } else {
            0.0
        }
    };
    [w(t + 1.0), w(t), w(1.0 - t), w(2.0 - t)]
}

/// Resizes one axis: for each output index, a list of (input index, weight).
fn axis_taps(in_len: usize, out_len: usize, scale: f64, p: &ResizeParams) -> Vec<Vec<(usize, f64)>> {
    (0..out_len)
        .map(|o| {
            let x = source_coord(o, in_len, out_len, scale, p.coord);
            let n = in_len as i64;
            match p.mode {
                ResizeMode::Nearest => {
                    let r = match p.nearest {
                        NearestMode::RoundPreferFloor => {
                            if x.fract() == 0.5 {
                                x.floor()
                            } else {
                                x.round()
                            }
                        }
                        NearestMode::RoundPreferCeil => x.round(),
                        NearestMode::Floor => x.floor(),
                        NearestMode::Ceil => x.ceil(),
                    };
                    vec![((r as i64).clamp(0, n - 1) as usize, 1.0)]
                }
                ResizeMode::Linear => {
                    let x = x.clamp(0.0, (n - 1) as f64);
                    let lo = x.floor() as i64;
                    let hi = (lo + 1).min(n - 1);
                    let t = x - lo as f64;
                    vec![(lo as usize, 1.0 - t), (hi as usize, t)]
                }
                ResizeMode::Cubic => {
                    let lo = x.floor() as i64;
                    let t = x - lo as f64;
                    let w = cubic_weights(t, p.cubic_a as f64);
                    let mut taps: Vec<(i64, f64)> = (0..4).map(|k| (lo - 1 + k, w[k as usize])).collect();
                    if p.exclude_outside {
                        taps.retain(|&(i, _)| i >= 0 && i < n);
                        let s: f64 = taps.iter().map(|t| t.1).sum();
                        for t in &mut taps {
                            t.1 /= s;
                        }
                    }
                    taps.into_iter().map(|(i, w)| (i.clamp(0, n - 1) as usize, w)).collect()
                }
            }
        })
        .collect()
}

pub fn resize(x: &Tensor, p: &ResizeParams) -> Result<Tensor, String> {
    let mut cur = x.to_f64_array();
    for d in 0..cur.ndim() {
        let (inl, outl) = (cur.shape()[d], p.sizes[d] as usize);
        if inl == outl && p.scales[d] == 1.0 {
            continue;
        }
        if inl == 0 {
            return Err("cannot resize an empty axis".into());
        }
        let taps = axis_taps(inl, outl, p.scales[d] as f64, p);
        let mut shape = cur.shape().to_vec();
        shape[d] = outl;
        let mut next = ArrayD::<f64>::zeros(IxDyn(&shape));
        for (o, tl) in taps.iter().enumerate() {
            let mut dst = next.index_axis_mut(Axis(d), o);
            for &(i, w) in tl {
                dst.scaled_add(w, &cur.index_axis(Axis(d), i));
            }
        }
        cur = next;
    }
    let out = Tensor::F64(cur);
    if x.dtype().is_int() {
        let v: Vec<f64> = out.to_f64_vec();
        return Ok(Tensor::from_f64_fn(x.dtype(), out.shape(), |i| v[i].round()));
    }
    Ok(out.cast(x.dtype()))
}
