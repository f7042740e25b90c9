//! Contractions: matmul, convolution (im2col + GEMM through ndarray), transposed convolution, einsum.

use crate::{Elem, Tensor};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayD, ArrayView2, Axis, Ix2, IxDyn, LinalgScalar};

/// Runs `f32`/`f64`/integer kernels directly and f16/bf16 through f32.
macro_rules! numeric {
    ($ts:expr, |$($a:ident),*| $body:expr) => {{
        let ts: Vec<&Tensor> = $ts;
        match ts[0] {
            Tensor::F32(_) => { let [$($a),*] = arrays::<f32, _>(&ts)?; Ok(Tensor::F32($body)) }
            Tensor::F64(_) => { let [$($a),*] = arrays::<f64, _>(&ts)?; Ok(Tensor::F64($body)) }
            Tensor::I32(_) => { let [$($a),*] = arrays::<i32, _>(&ts)?; Ok(Tensor::I32($body)) }
            Tensor::I64(_) => { let [$($a),*] = arrays::<i64, _>(&ts)?; Ok(Tensor::I64($body)) }
            Tensor::U8(_) => { let [$($a),*] = arrays::<u8, _>(&ts)?; Ok(Tensor::U8($body)) }
            Tensor::I8(_) => { let [$($a),*] = arrays::<i8, _>(&ts)?; Ok(Tensor::I8($body)) }
            Tensor::F16(_) | Tensor::BF16(_) => {
                let dt = ts[0].dtype();
                let conv: Vec<Tensor> = ts.iter().map(|t| t.cast(crate::DType::F32)).collect();
                let refs: Vec<&Tensor> = conv.iter().collect();
                let [$($a),*] = arrays::<f32, _>(&refs)?;
                Ok(Tensor::F32($body).cast(dt))
            }
            Tensor::Bool(_) => Err("not defined for bool".to_string()),
        }
    }};
}

fn arrays<'a, T: Elem, const N: usize>(ts: &[&'a Tensor]) -> Result<[&'a ArrayD<T>; N], String> {
    let v: Vec<&ArrayD<T>> = ts
        .iter()
        .take(N)
        .map(|t| T::unwrap_ref(t).ok_or("operands differ in element type"))
        .collect::<Result<_, _>>()?;
    v.try_into().map_err(|_| "wrong operand count".to_string())
}

pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor, String> {
    numeric!(vec![a, b], |x, y| matmul_t(x, y)?)
}

fn matmul_t<T: LinalgScalar>(a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<T>, String> {
    let (ra, rb) = (a.ndim(), b.ndim());
    let a2 = if ra == 1 { a.view().insert_axis(Axis(0)) } else { a.view() };
    let b2 = if rb == 1 { b.view().insert_axis(Axis(1)) } else { b.view() };
    let (m, k) = (a2.shape()[a2.ndim() - 2], a2.shape()[a2.ndim() - 1]);
    let (k2, n) = (b2.shape()[b2.ndim() - 2], b2.shape()[b2.ndim() - 1]);
    if k != k2 {
        return Err(format!("contracted dims differ: {:?} x {:?}", a.shape(), b.shape()));
    }
    let ba = crate::Shape::from_consts(&a2.shape()[..a2.ndim() - 2]);
    let bb = crate::Shape::from_consts(&b2.shape()[..b2.ndim() - 2]);
    let batch = crate::broadcast_shapes(&ba, &bb).and_then(|s| s.as_consts()).ok_or("batch dims do not broadcast")?;
    let nb: usize = batch.iter().product();
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    let mut out = ArrayD::<T>::zeros(IxDyn(&out_shape));
    if b2.ndim() == 2 && nb > 0 {
        // A stack of rows times one matrix: a single GEMM.
        let a_rows =
            a2.as_standard_layout().into_owned().into_shape_with_order((nb * m, k)).map_err(|e| e.to_string())?;
        let mut o = out.view_mut().into_shape_with_order((nb * m, n)).map_err(|e| e.to_string())?;
        let bm = b2.into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
        general_mat_mul(T::one(), &a_rows, &bm, T::zero(), &mut o);
    } else {
        let mut sa = batch.clone();
        sa.extend([m, k]);
        let mut sb = batch.clone();
        sb.extend([k, n]);
        let av = a2.broadcast(IxDyn(&sa)).ok_or("broadcast failed")?.as_standard_layout().into_owned();
        let bv = b2.broadcast(IxDyn(&sb)).ok_or("broadcast failed")?.as_standard_layout().into_owned();
        let a3 = av.into_shape_with_order((nb, m, k)).map_err(|e| e.to_string())?;
        let b3 = bv.into_shape_with_order((nb, k, n)).map_err(|e| e.to_string())?;
        let mut o3 = out.view_mut().into_shape_with_order((nb, m, n)).map_err(|e| e.to_string())?;
        for i in 0..nb {
            let mut oi = o3.index_axis_mut(Axis(0), i);
            general_mat_mul(T::one(), &a3.index_axis(Axis(0), i), &b3.index_axis(Axis(0), i), T::zero(), &mut oi);
        }
    }
    let mut final_shape = batch;
    if ra != 1 {
        final_shape.push(m);
    }
    if rb != 1 {
        final_shape.push(n);
    }
    out.into_shape_with_order(IxDyn(&final_shape)).map_err(|e| e.to_string())
}

struct ConvGeom {
    n: usize,
    c: usize,
    in_sp: Vec<usize>,
    k_sp: Vec<usize>,
    out_sp: Vec<usize>,
}

/// For each kernel position and output position, the flat input offset it reads, or `usize::MAX` when it
/// falls in the padding. Row-major over (kernel position, output position).
fn im2col_offsets(
    in_sp: &[usize],
    k_sp: &[usize],
    out_sp: &[usize],
    strides: &[i64],
    pads: &[i64],
    dil: &[i64],
) -> Vec<usize> {
    let nsp = in_sp.len();
    let kn: usize = k_sp.iter().product();
    let pn: usize = out_sp.iter().product();
    let mut table = vec![usize::MAX; kn * pn];
    let mut kk = vec![0usize; nsp];
    for ki in 0..kn {
        unravel(ki, k_sp, &mut kk);
        let mut oo = vec![0usize; nsp];
        for p in 0..pn {
            unravel(p, out_sp, &mut oo);
            let mut off = 0usize;
            let mut inside = true;
            for d in 0..nsp {
                let i = oo[d] as i64 * strides[d] - pads[d] + kk[d] as i64 * dil[d];
                if i < 0 || i >= in_sp[d] as i64 {
                    inside = false;
                    break;
                }
                off = off * in_sp[d] + i as usize;
            }
            if inside {
                table[ki * pn + p] = off;
            }
        }
    }
    table
}

pub fn unravel(mut i: usize, dims: &[usize], out: &mut [usize]) {
    for d in (0..dims.len()).rev() {
        out[d] = i % dims[d];
        i /= dims[d];
    }
}

fn geom(x: &[usize], w: &[usize], out_sp: Vec<usize>) -> ConvGeom {
    ConvGeom { n: x[0], c: x[1], in_sp: x[2..].to_vec(), k_sp: w[2..].to_vec(), out_sp }
}

pub fn conv(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    strides: &[i64],
    pads: &[i64],
    dil: &[i64],
    group: i64,
) -> Result<Tensor, String> {
    numeric!(vec![x, w], |xs, ws| conv_t(xs, ws, strides, pads, dil, group as usize)?)
        .and_then(|out| add_channel_bias(out, b))
}

fn add_channel_bias(out: Tensor, b: Option<&Tensor>) -> Result<Tensor, String> {
    let Some(b) = b else { return Ok(out) };
    let r = out.shape().len();
    let mut s = vec![1usize; r];
    s[1] = b.len();
    let b = b.reshape(&s).ok_or("bad bias")?;
    super::elementwise::binary(crate::BinaryOp::Add, &out, &b)
}

fn conv_t<T: LinalgScalar>(
    x: &ArrayD<T>,
    w: &ArrayD<T>,
    strides: &[i64],
    pads: &[i64],
    dil: &[i64],
    group: usize,
) -> Result<ArrayD<T>, String> {
    let nsp = x.ndim() - 2;
    let out_sp: Vec<usize> = (0..nsp)
        .map(|d| {
            let (n, k) = (x.shape()[2 + d] as i64, w.shape()[2 + d] as i64);
            ((n + pads[d] + pads[d + nsp] - dil[d] * (k - 1) - 1) / strides[d] + 1).max(0) as usize
        })
        .collect();
    let g = geom(x.shape(), w.shape(), out_sp);
    let m = w.shape()[0];
    let (cg, mg) = (g.c / group, m / group);
    let kn: usize = g.k_sp.iter().product();
    let pn: usize = g.out_sp.iter().product();
    let inn: usize = g.in_sp.iter().product();
    let table = im2col_offsets(&g.in_sp, &g.k_sp, &g.out_sp, strides, pads, dil);
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().ok_or("input not contiguous")?;
    let ws = w.as_standard_layout().into_owned();
    let w2 = ws.into_shape_with_order((m, cg * kn)).map_err(|e| e.to_string())?;
    let mut out_shape = vec![g.n, m];
    out_shape.extend(&g.out_sp);
    let mut out = ArrayD::<T>::zeros(IxDyn(&out_shape));
    let mut o3 = out.view_mut().into_shape_with_order((g.n, m, pn)).map_err(|e| e.to_string())?;
    let mut col = ndarray::Array2::<T>::zeros((cg * kn, pn));
    for n in 0..g.n {
        for gi in 0..group {
            for c in 0..cg {
                let base = (n * g.c + gi * cg + c) * inn;
                for ki in 0..kn {
                    let row = c * kn + ki;
                    let dst = col.row_mut(row).into_slice().expect("owned rows are contiguous");
                    let src = &table[ki * pn..(ki + 1) * pn];
                    for (d, &off) in dst.iter_mut().zip(src) {
                        *d = if off == usize::MAX { T::zero() } else { xs[base + off] };
                    }
                }
            }
            let wg: ArrayView2<T> = w2.slice(ndarray::s![gi * mg..(gi + 1) * mg, ..]);
            let mut og = o3.slice_mut(ndarray::s![n, gi * mg..(gi + 1) * mg, ..]);
            general_mat_mul(T::one(), &wg, &col, T::zero(), &mut og);
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
pub fn conv_transpose(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    strides: &[i64],
    pads: &[i64],
    dil: &[i64],
    group: i64,
    out_pad: &[i64],
) -> Result<Tensor, String> {
    numeric!(vec![x, w], |xs, ws| conv_transpose_t(xs, ws, strides, pads, dil, group as usize, out_pad)?)
        .and_then(|out| add_channel_bias(out, b))
}

fn conv_transpose_t<T: LinalgScalar>(
    x: &ArrayD<T>,
    w: &ArrayD<T>,
    strides: &[i64],
    pads: &[i64],
    dil: &[i64],
    group: usize,
    out_pad: &[i64],
) -> Result<ArrayD<T>, String> {
    let nsp = x.ndim() - 2;
    let out_sp: Vec<usize> = (0..nsp)
        .map(|d| {
            let (n, k) = (x.shape()[2 + d] as i64, w.shape()[2 + d] as i64);
            (strides[d] * (n - 1) + out_pad[d] + (k - 1) * dil[d] + 1 - pads[d] - pads[d + nsp]).max(0) as usize
        })
        .collect();
    let g = geom(x.shape(), w.shape(), out_sp);
    let mg = w.shape()[1];
    let m = mg * group;
    let cg = g.c / group;
    let kn: usize = g.k_sp.iter().product();
    let pin: usize = g.in_sp.iter().product();
    let pout: usize = g.out_sp.iter().product();
    let xs = x.as_standard_layout().into_owned();
    let x3 = xs.into_shape_with_order((g.n, g.c, pin)).map_err(|e| e.to_string())?;
    let ws = w.as_standard_layout().into_owned();
    let w2 = ws.into_shape_with_order((g.c, mg * kn)).map_err(|e| e.to_string())?;
    let mut out_shape = vec![g.n, m];
    out_shape.extend(&g.out_sp);
    let mut out = ArrayD::<T>::zeros(IxDyn(&out_shape));
    let mut o3 = out.view_mut().into_shape_with_order((g.n, m, pout)).map_err(|e| e.to_string())?;
    let mut col = ndarray::Array2::<T>::zeros((mg * kn, pin));
    let (mut kk, mut ii) = (vec![0usize; nsp], vec![0usize; nsp]);
    for n in 0..g.n {
        for gi in 0..group {
            let wg = w2.slice(ndarray::s![gi * cg..(gi + 1) * cg, ..]);
            let xg = x3.slice(ndarray::s![n, gi * cg..(gi + 1) * cg, ..]);
            general_mat_mul(T::one(), &wg.t(), &xg, T::zero(), &mut col);
            for mi in 0..mg {
                let mut orow = o3.slice_mut(ndarray::s![n, gi * mg + mi, ..]);
                for ki in 0..kn {
                    unravel(ki, &g.k_sp, &mut kk);
                    for p in 0..pin {
                        unravel(p, &g.in_sp, &mut ii);
                        let mut off = 0usize;
                        let mut inside = true;
                        for d in 0..nsp {
                            let o = ii[d] as i64 * strides[d] - pads[d] + kk[d] as i64 * dil[d];
                            if o < 0 || o >= g.out_sp[d] as i64 {
                                inside = false;
                                break;
                            }
                            off = off * g.out_sp[d] + o as usize;
                        }
                        if inside {
                            orow[off] = orow[off] + col[(mi * kn + ki, p)];
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// `softmax(q @ k^T * scale + mask) @ v`, the reference for the fused attention op.
pub fn attention(ins: &[&Tensor], scale: f32) -> Result<Tensor, String> {
    let (q, k, v) = (ins[0], ins[1], ins[2]);
    let r = k.shape().len() as i64;
    let mut perm: Vec<i64> = (0..r).collect();
    perm.swap(r as usize - 2, r as usize - 1);
    let kt = super::movement::transpose(k, &perm);
    let s = matmul(q, &kt)?;
    let mut s =
        super::elementwise::binary(crate::BinaryOp::Mul, &s, &Tensor::from_f64_fn(q.dtype(), &[], |_| scale as f64))?;
    if let Some(m) = ins.get(3) {
        s = super::elementwise::binary(crate::BinaryOp::Add, &s, m)?;
    }
    let p = super::reduce::softmax(&s, -1, false)?;
    matmul(&p, v)
}

pub fn einsum(eq: &str, ins: &[&Tensor]) -> Result<Tensor, String> {
    let (labels, out) = crate::infer::parse_einsum(eq)?;
    let mut size: std::collections::BTreeMap<char, usize> = Default::default();
    for (l, t) in labels.iter().zip(ins) {
        for (c, &d) in l.iter().zip(t.shape()) {
            let e = size.entry(*c).or_insert(d);
            if *e == 1 {
                *e = d;
            }
        }
    }
    let all: Vec<char> = size.keys().copied().collect();
    let sum_labels: Vec<char> = all.iter().filter(|c| !out.contains(c)).copied().collect();
    let out_dims: Vec<usize> = out.iter().map(|c| size[c]).collect();
    let sum_dims: Vec<usize> = sum_labels.iter().map(|c| size[c]).collect();
    let float = ins[0].dtype().is_float();
    let vals: Vec<Vec<f64>> = ins.iter().map(|t| t.to_f64_vec()).collect();
    let strides: Vec<Vec<usize>> = labels
        .iter()
        .zip(ins)
        .map(|(l, t)| {
            let sh = t.shape();
            let mut st = vec![0usize; l.len()];
            let mut acc = 1;
            for i in (0..l.len()).rev() {
                st[i] = if sh[i] == 1 { 0 } else { acc };
                acc *= sh[i];
            }
            st
        })
        .collect();
    let on: usize = out_dims.iter().product();
    let sn: usize = sum_dims.iter().product();
    let mut idx: std::collections::BTreeMap<char, usize> = Default::default();
    let (mut oi, mut si) = (vec![0; out.len()], vec![0; sum_labels.len()]);
    let mut result = Vec::with_capacity(on);
    for o in 0..on {
        unravel(o, &out_dims, &mut oi);
        for (c, &v) in out.iter().zip(&oi) {
            idx.insert(*c, v);
        }
        let mut acc = 0.0f64;
        let mut iacc = 0i64;
        for s in 0..sn {
            unravel(s, &sum_dims, &mut si);
            for (c, &v) in sum_labels.iter().zip(&si) {
                idx.insert(*c, v);
            }
            let mut prod = 1.0f64;
            let mut iprod = 1i64;
            for ((l, st), v) in labels.iter().zip(&strides).zip(&vals) {
                let off: usize = l.iter().zip(st).map(|(c, s)| idx[c] * s).sum();
                prod *= v[off];
                iprod = iprod.wrapping_mul(v[off] as i64);
            }
            acc += prod;
            iacc = iacc.wrapping_add(iprod);
        }
        result.push(if float { acc } else { iacc as f64 });
    }
    Ok(Tensor::from_f64_fn(ins[0].dtype(), &out_dims, |i| result[i]))
}
