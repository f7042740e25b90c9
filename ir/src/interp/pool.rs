//! Max, average and Lp pooling over the spatial dims of NC... tensors.

use super::linalg::unravel;
use crate::{Op, Tensor};

pub fn pool(op: &Op, x: &Tensor) -> Result<Tensor, String> {
    let (kernel, strides, pads, dil, ceil) = match op {
        Op::MaxPool { kernel, strides, pads, dilations, ceil_mode }
        | Op::AvgPool { kernel, strides, pads, dilations, ceil_mode, .. }
        | Op::LpPool { kernel, strides, pads, dilations, ceil_mode, .. } => {
            (kernel, strides, pads, dilations, *ceil_mode)
        }
        _ => return Err(format!("{} is not a pooling op", op.name())),
    };
    let sh = x.shape();
    let nsp = sh.len() - 2;
    let in_sp = &sh[2..];
    let out_sp: Vec<usize> = (0..nsp)
        .map(|d| {
            crate::infer::pool_out_len(in_sp[d] as i64, kernel[d], strides[d], pads[d], pads[d + nsp], dil[d], ceil)
                as usize
        })
        .collect();
    let k_sp: Vec<usize> = kernel.iter().map(|&k| k as usize).collect();
    let kn: usize = k_sp.iter().product();
    let pn: usize = out_sp.iter().product();
    let inn: usize = in_sp.iter().product();
    let planes = sh[0] * sh[1];
    let xs = x.to_f64_vec();
    let mut out = Vec::with_capacity(planes * pn);
    let (mut oo, mut kk) = (vec![0usize; nsp], vec![0usize; nsp]);
    for plane in 0..planes {
        let base = plane * inn;
        for p in 0..pn {
            unravel(p, &out_sp, &mut oo);
            let mut acc = match op {
                Op::MaxPool { .. } => f64::NEG_INFINITY,
                _ => 0.0,
            };
            let (mut count_valid, mut count_padded) = (0usize, 0usize);
            for ki in 0..kn {
                unravel(ki, &k_sp, &mut kk);
                let mut off = 0usize;
                let mut inside = true;
                let mut in_padded = true;
                for d in 0..nsp {
                    let i = oo[d] as i64 * strides[d] - pads[d] + kk[d] as i64 * dil[d];
                    if i < -pads[d] || i >= in_sp[d] as i64 + pads[d + nsp] {
                        in_padded = false;
                    }
                    if i < 0 || i >= in_sp[d] as i64 {
                        inside = false;
                    } else {
                        off = off * in_sp[d] + i as usize;
                    }
                }
                if in_padded {
                    count_padded += 1;
                }
                if !inside {
                    continue;
                }
                count_valid += 1;
                let v = xs[base + off];
                match op {
                    Op::MaxPool { .. } => {
                        if v > acc || v.is_nan() {
                            acc = v;
                        }
                    }
                    Op::LpPool { p, .. } => acc += v.abs().powi(*p as i32),
                    _ => acc += v,
                }
            }
            out.push(match op {
                Op::AvgPool { count_include_pad, .. } => {
                    let n = if *count_include_pad { count_padded } else { count_valid };
                    acc / n.max(1) as f64
                }
                Op::LpPool { p, .. } => acc.powf(1.0 / *p as f64),
                _ => acc,
            });
        }
    }
    let mut shape = sh[..2].to_vec();
    shape.extend(out_sp);
    Ok(Tensor::from_f64_fn(x.dtype(), &shape, |i| out[i]))
}
