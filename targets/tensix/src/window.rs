//! Window kernels over 2-D images in the `[N, C, H*W]` view: depthwise convolution, max pooling and
//! average pooling. Each unit is one output tile (32 channels by 32 output positions); for every tap of
//! the window the reader gathers the tile of input elements under that tap (`TapTile`), and the compute
//! kernel combines the tap tiles in Dst: weight times tap summed (the weight of each channel broadcast
//! along its row, `ColumnTile`), or the maximum, or the sum scaled by the window size. Bias and an
//! elementwise epilogue follow as in the convolution template.

use crate::builder::*;
use crate::chain;
use crate::lower::{Ctx, Group, LowerError};
use crate::templates::{chain_ops, pad_out, read_leaves};
use sovc_ir::{Graph, Op as GOp, ValueId};
use sovc_runtime::tensix::program::*;

type R<T> = Result<T, LowerError>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Depthwise,
    Max,
    Avg,
}

/// The window geometry of node `a` if this template handles it.
fn window(g: &Graph, a: usize) -> Result<(Kind, ConvGeom), String> {
    let n = &g.nodes[a];
    let x = g.ty(n.inputs[0]);
    let xd = x.shape.as_consts().ok_or("symbolic shape")?;
    let od = g.ty(n.outputs[0]).shape.as_consts().ok_or("symbolic shape")?;
    if xd.len() != 4 || x.dtype != sovc_ir::DType::F32 {
        return Err("a window op that is not 2-D over f32".into());
    }
    let (kind, k, s, p, d) = match &n.op {
        GOp::Conv { strides, pads, dilations, group } => {
            let wd = g.ty(n.inputs[1]).shape.as_consts().ok_or("symbolic shape")?;
            if *group as usize != xd[1] || wd[0] != xd[1] || wd[1] != 1 {
                return Err(format!("grouped convolution ({group} groups) that is not depthwise"));
            }
            (Kind::Depthwise, vec![wd[2] as i64, wd[3] as i64], strides, pads, dilations.clone())
        }
        GOp::MaxPool { kernel, strides, pads, dilations, .. } => {
            (Kind::Max, kernel.clone(), strides, pads, dilations.clone())
        }
        GOp::AvgPool { kernel, strides, pads, dilations, ceil_mode, count_include_pad } => {
            if (*ceil_mode || !*count_include_pad) && pads.iter().any(|&p| p != 0) {
                return Err("average pooling whose divisor varies at the borders".into());
            }
            if *ceil_mode {
                return Err("average pooling with ceil_mode".into());
            }
            (Kind::Avg, kernel.clone(), strides, pads, dilations.clone())
        }
        _ => return Err("not a window op".into()),
    };
    if k.len() != 2 || k[0] * k[1] > 32 || k.iter().chain(s).chain(p).chain(&d).any(|&v| v < 0) {
        return Err(format!("window {k:?} (at most 32 taps)"));
    }
    let geom = ConvGeom {
        c: xd[1] as u64,
        h: xd[2] as u64,
        w: xd[3] as u64,
        kh: k[0] as u64,
        kw: k[1] as u64,
        sh: s[0] as u64,
        sw: s[1] as u64,
        ph: p[0] as u64,
        pw: p[1] as u64,
        dh: d[0] as u64,
        dw: d[1] as u64,
        oh: od[2] as u64,
        ow: od[3] as u64,
    };
    Ok((kind, geom))
}

/// Whether node `a` is a window op this template handles.
pub fn supported(g: &Graph, a: usize) -> Result<(), String> {
    window(g, a).map(|_| ())
}

pub fn lower(cx: &Ctx, grp: &Group, a: usize, rest: &[usize], name: &str, kernel: usize) -> R<Program> {
    let g = cx.g;
    let (kind, geom) = window(g, a)?;
    let node = &g.nodes[a];
    let (xv, mv, out) = (node.inputs[0], node.outputs[0], grp.outputs[0]);
    let (wv, bias) = match kind {
        Kind::Depthwise => (Some(node.inputs[1]), node.inputs.get(2).copied()),
        _ => (None, None),
    };
    if cx.k(out) != 1 || wv.is_some_and(|w| cx.k(w) != 0) || bias.is_some_and(|b| cx.k(b) != 0) {
        return Err("the window op's tensors are not in the convolution views".to_string().into());
    }
    let od = cx.dims(mv)?;
    let taps = (geom.kh * geom.kw) as u32;
    let (ct, nt) = (geom.c.div_ceil(32), (geom.oh * geom.ow).div_ceil(32));
    let images = od[0] as u64;
    let template = match kind {
        Kind::Depthwise => "depthwise_conv",
        Kind::Max => "max_pool",
        Kind::Avg => "avg_pool",
    };
    let mut pb = cx.builder(name, kernel, template);
    let cap = pb.dst_cap();
    let ch = if rest.is_empty() { None } else { Some(chain::compile(g, rest, Some(mv), out, &cx.scalars, cap)?) };
    if ch.as_ref().is_some_and(|c| c.slots.max(2) > cap || cx.opts.numerics.split && c.slots > 3) {
        return Err(format!("the epilogue needs more than {cap} Dst tiles").into());
    }
    let fmt = |v: ValueId| cx.dram(v).map(|i| cx.tensors[i as usize].format);
    let (xt, ot) = (pb.tensor(cx.dram(xv)?), pb.tensor(cx.dram(out)?));
    pb.cb(0, fmt(xv)?, taps, "window taps");
    pb.cb(7, fmt(xv)?, 1, "gather scratch");
    if let Some(w) = wv {
        pb.cb(1, fmt(w)?, taps, "tap weights");
        pb.cb(6, fmt(w)?, 1, "weights tile");
        if fmt(w)? != fmt(xv)? {
            let (f, why) = crate::templates::fidelity(cx, fmt(xv)?, fmt(w)?);
            pb.fidelity = f;
            pb.notes.push(why);
        }
    }
    if let Some(b) = bias {
        pb.cb(2, fmt(b)?, 1, "bias");
    }
    let leaves: Vec<(ValueId, u8)> =
        ch.as_ref().map_or(Vec::new(), |c| c.leaves.iter().enumerate().map(|(i, &v)| (v, 3 + i as u8)).collect());
    if leaves.len() > 3 {
        return Err("the epilogue reads more than 3 inputs".to_string().into());
    }
    for &(v, cb) in &leaves {
        pb.cb(cb, fmt(v)?, 1, &format!("epilogue in%{}", v.0));
    }
    pb.cb(CB_OUT, fmt(out)?, 2, "out");
    pb.notes.push(format!("{}x{} window, stride {}x{}, {taps} taps", geom.kh, geom.kw, geom.sh, geom.sw));
    let u = unit();
    let img = u.clone().over((ct * nt) as i64);
    let cti = u.clone().over(nt as i64).modulo(ct as i64);
    let nti = u.modulo(nt as i64);
    let pad = if kind == Kind::Max { -3.0e38 } else { 0.0 };
    // Reader.
    let mut rb = vec![Op::Reserve { cb: 0, n: taps }];
    for tap in 0..taps {
        rb.push(Op::TapTile {
            tensor: xt,
            scratch: 7,
            image: img.clone(),
            ct: cti.clone(),
            nt: nti.clone(),
            tap,
            geom: Box::new(geom.clone()),
            pad,
            cb: 0,
            slot: c(tap as u64),
        });
    }
    rb.push(Op::Push { cb: 0, n: taps });
    if let Some(w) = wv {
        let wt = pb.tensor(cx.dram(w)?);
        rb.extend([
            Op::Reserve { cb: 6, n: 1 },
            Op::ReadTile { tensor: wt, tile: cti.clone(), cb: 6, slot: c(0) },
            Op::ReadBarrier,
            Op::Reserve { cb: 1, n: taps },
        ]);
        rb.extend((0..taps).map(|tap| Op::ColumnTile { from: 6, col: tap, cb: 1, slot: c(tap as u64) }));
        rb.push(Op::Push { cb: 1, n: taps });
    }
    if let Some(b) = bias {
        let bt = pb.tensor(cx.dram(b)?);
        rb.extend([
            Op::Reserve { cb: 2, n: 1 },
            Op::ReadTile { tensor: bt, tile: cti.clone(), cb: 2, slot: c(0) },
            Op::ReadBarrier,
            Op::BcastTile { cb: 2, slot: c(0), bcast: Bcast::Cols },
            Op::Push { cb: 2, n: 1 },
        ]);
    }
    let pos = [(img.clone(), cti.clone(), nti.clone(), c(0))];
    if !leaves.is_empty() {
        let (reads, fix) = read_leaves(cx, &mut pb, &leaves, &cx.dims(out)?, 1, &pos)?;
        rb.extend(leaves.iter().map(|&(_, cb)| Op::Reserve { cb, n: 1 }));
        rb.extend(reads);
        rb.push(Op::ReadBarrier);
        rb.extend(fix);
        rb.extend(leaves.iter().map(|&(_, cb)| Op::Push { cb, n: 1 }));
    }
    pb.reader = vec![units_loop(rb)];
    // Compute: combine the taps in Dst tile 0, tile 1 as scratch.
    let mut cb_ = vec![Op::Wait { cb: 0, n: taps }];
    if wv.is_some() {
        cb_.push(Op::Wait { cb: 1, n: taps });
    }
    cb_.push(Op::Acquire);
    // In split precision the products run on the SFPU in FP32 (the FPU would read TF32).
    let sfpu = cx.opts.numerics.split && kind == Kind::Depthwise;
    if sfpu && cap < 3 {
        return Err("FP32 depthwise products need 3 Dst tiles".to_string().into());
    }
    for tap in 0..taps {
        let t = c(tap as u64);
        let d = if tap == 0 { 0 } else { 1 };
        if sfpu {
            cb_.extend([
                Op::CopyTile { cb: 0, tile: t.clone(), dst: d },
                Op::CopyTile { cb: 1, tile: t, dst: 2 },
                Op::BinaryDst { op: SfpuBinary::Mul, a: d, b: 2 },
            ]);
        } else {
            cb_.push(match kind {
                Kind::Depthwise => {
                    Op::Binary { op: FpuBinary::Mul, bcast: Bcast::None, a: 0, b: 1, ta: t.clone(), tb: t, dst: d }
                }
                _ => Op::CopyTile { cb: 0, tile: t, dst: d },
            });
        }
        if tap > 0 {
            let op = if kind == Kind::Max { SfpuBinary::Max } else { SfpuBinary::Add };
            cb_.push(Op::BinaryDst { op, a: 0, b: 1 });
        }
    }
    if kind == Kind::Avg {
        cb_.push(Op::Unary { op: SfpuUnary::MulScalar(1.0 / taps as f32), dst: 0 });
    }
    if bias.is_some() {
        cb_.extend([
            Op::Wait { cb: 2, n: 1 },
            Op::CopyTile { cb: 2, tile: c(0), dst: 1 },
            Op::BinaryDst { op: SfpuBinary::Add, a: 0, b: 1 },
        ]);
    }
    if let Some(ch) = &ch {
        cb_.extend(leaves.iter().map(|&(_, cb)| Op::Wait { cb, n: 1 }));
        let leaf_cb: Vec<u8> = leaves.iter().map(|l| l.1).collect();
        cb_.extend(chain_ops(ch, &leaf_cb, &c(0), &|d| d));
    }
    cb_.extend([
        Op::Commit,
        Op::WaitDst,
        Op::Reserve { cb: CB_OUT, n: 1 },
        Op::Pack { dst: 0, cb: CB_OUT, slot: c(0) },
        Op::Push { cb: CB_OUT, n: 1 },
        Op::Release,
        Op::Pop { cb: 0, n: taps },
    ]);
    if wv.is_some() {
        cb_.push(Op::Pop { cb: 1, n: taps });
    }
    if bias.is_some() {
        cb_.push(Op::Pop { cb: 2, n: 1 });
    }
    cb_.extend(leaves.iter().map(|&(_, cb)| Op::Pop { cb, n: 1 }));
    pb.compute = vec![units_loop(cb_)];
    // Writer.
    let mut wb = vec![Op::Wait { cb: CB_OUT, n: 1 }];
    wb.extend(pad_out(geom.c, geom.oh * geom.ow, &cti, &nti, CB_OUT, c(0)));
    let tile = img.times(ct as i64).plus(cti).times(nt as i64).plus(nti);
    wb.extend([
        Op::WriteTile { tensor: ot, tile, cb: CB_OUT, slot: c(0) },
        Op::WriteBarrier,
        Op::Pop { cb: CB_OUT, n: 1 },
    ]);
    pb.writer = vec![units_loop(wb)];
    pb.finish(images * ct * nt)
}
