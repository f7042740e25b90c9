//! 2-D convolution as a matrix product per image: out `[Cout, OH*OW]` = W `[Cout, Cin*KH*KW]` @
//! im2col(x) `[Cin*KH*KW, OH*OW]`. The output is stored in the `[N, C, H*W]` view, so its tiles are the
//! product's tiles; the reader reads weight tiles from DRAM and gathers each im2col tile from the
//! image's tiles (`sovc_im2col_tile`); the compute kernel accumulates blocks of output tiles over K in
//! Dst, adds the bias (one value per output channel, a column broadcast) and runs the elementwise
//! epilogue (ReLU, residual add, ...) before packing.

use crate::builder::*;
use crate::chain;
use crate::lower::{Ctx, Group, LowerError};
use crate::templates::{chain_ops, fidelity, read_leaves};
use sovc_ir::{Graph, Op as GOp, ValueId};
use sovc_runtime::tensix::program::*;

type R<T> = Result<T, LowerError>;

/// Whether node `a` is a convolution this template handles: 2-D, one group, f32, static shapes.
pub fn supported(g: &Graph, a: usize) -> Result<(), String> {
    let n = &g.nodes[a];
    let GOp::Conv { group, .. } = &n.op else { return Err("not a convolution".into()) };
    let x = g.ty(n.inputs[0]);
    if x.shape.rank() != 4 {
        return Err(format!("{}-D convolution (only 2-D yet)", x.shape.rank().saturating_sub(2)));
    }
    if *group != 1 {
        return Err(format!("grouped convolution ({group} groups) has no Tensix template yet"));
    }
    if x.dtype != sovc_ir::DType::F32 || x.shape.as_consts().is_none() {
        return Err("convolution of a non-f32 or symbolic input".into());
    }
    Ok(())
}

pub fn conv(cx: &Ctx, grp: &Group, a: usize, rest: &[usize], name: &str, kernel: usize) -> R<Program> {
    let g = cx.g;
    supported(g, a)?;
    let node = &g.nodes[a];
    let GOp::Conv { strides, pads, dilations, .. } = &node.op else { unreachable!("checked") };
    let (xv, wv, mv) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let bias = node.inputs.get(2).copied();
    let (xd, wd, od) = (cx.dims(xv)?, cx.dims(wv)?, cx.dims(mv)?);
    let out = grp.outputs[0];
    if cx.k(out) != 1 || cx.k(wv) != 0 || bias.is_some_and(|b| cx.k(b) != 0) {
        return Err("the convolution's tensors are not in the convolution views".to_string().into());
    }
    let geom = ConvGeom {
        c: xd[1] as u64,
        h: xd[2] as u64,
        w: xd[3] as u64,
        kh: wd[2] as u64,
        kw: wd[3] as u64,
        sh: strides[0] as u64,
        sw: strides[1] as u64,
        ph: pads[0] as u64,
        pw: pads[1] as u64,
        dh: dilations[0] as u64,
        dw: dilations[1] as u64,
        oh: od[2] as u64,
        ow: od[3] as u64,
    };
    let (m, k, n) = (wd[0] as u64, geom.c * geom.kh * geom.kw, geom.oh * geom.ow);
    let (mt, kt, nt) = (m.div_ceil(32), k.div_ceil(32), n.div_ceil(32));
    let images = xd[0] as u64;
    let mut pb = cx.builder(name, kernel, "conv");
    let cap = pb.dst_cap();
    let ch = if rest.is_empty() { None } else { Some(chain::compile(g, rest, Some(mv), out, &cx.scalars, cap)?) };
    let extra = ch.as_ref().map_or(0, |c| c.slots.saturating_sub(1)).max(usize::from(bias.is_some()));
    let (bh, bw) = crate::templates::block_shape(cap, extra, mt, nt)?;
    let (mb, nb) = (mt / bh, nt / bw);
    let split = cx.opts.numerics.split;
    // In split precision the image's parts, written by a split program, when it has them.
    let x_parts = cx.parts.get(&xv).copied().filter(|_| split);
    let xt = pb.tensor(x_parts.map_or_else(|| cx.dram(xv), |p| Ok(p.0))?);
    let x_lo = x_parts.map(|p| pb.tensor(p.1));
    let ot = pb.tensor(cx.dram(out)?);
    let fmt = |v: ValueId| cx.dram(v).map(|i| cx.tensors[i as usize].format);
    let (xf, of) = (fmt(xv)?, fmt(out)?);
    let wf = if split { DataFormat::Float16_b } else { fmt(wv)? };
    let (fid, why) = fidelity(cx, if split { wf } else { xf }, wf);
    pb.fidelity = fid;
    pb.notes.push(if split { format!("{why}; split precision: hi*hi + hi*lo + lo*hi") } else { why });
    pb.notes.push(format!(
        "{}x{} kernel, stride {}x{}, im2col K {k} ({kt} tiles); blocks of {bh}x{bw} tiles",
        geom.kh, geom.kw, geom.sh, geom.sw
    ));
    pb.cb(0, wf, 2 * bh as u32, "in0 (weights)");
    pb.cb(1, if split { DataFormat::Float16_b } else { xf }, 2 * bw as u32, "in1 (im2col)");
    if split {
        if xf != DataFormat::Float32 {
            return Err("split precision needs FP32 activations".to_string().into());
        }
        pb.cb(17, wf, 2 * bh as u32, "in0 (weights low part)");
        pb.cb(18, DataFormat::Float16_b, 2 * bw as u32, "in1 (im2col low part)");
        if x_parts.is_none() {
            pb.cb(6, xf, 1, "FP32 im2col tile to split");
        }
    }
    if x_parts.is_some() {
        pb.cb(7, DataFormat::Float16_b, 1, "im2col scratch (image high part)");
        pb.cb(8, DataFormat::Float16_b, 1, "im2col scratch (image low part)");
    } else {
        pb.cb(7, xf, 1, "im2col scratch");
    }
    let blk = (bh * bw) as u8;
    let bias_cb = 2u8;
    if let Some(b) = bias {
        pb.tensor(cx.dram(b)?);
        pb.cb(bias_cb, fmt(b)?, bh as u32, "bias");
    }
    let leaves: Vec<(ValueId, u8)> =
        ch.as_ref().map_or(Vec::new(), |c| c.leaves.iter().enumerate().map(|(i, &v)| (v, 3 + i as u8)).collect());
    if leaves.len() > 13 {
        return Err("the epilogue reads more than 13 inputs".to_string().into());
    }
    for &(v, cb) in &leaves {
        pb.cb(cb, fmt(v)?, blk as u32, &format!("epilogue in%{}", v.0));
    }
    pb.cb(CB_OUT, of, 2 * blk as u32, "out");
    let u = unit();
    let img = u.clone().over((mb * nb) as i64);
    let mbi = u.clone().over(nb as i64).modulo(mb as i64);
    let nbi = u.modulo(nb as i64);
    let kv = Ix::Var(1);
    let tr = |i: u64| mbi.clone().times(bh as i64).plus(c(i));
    let tc = |j: u64| nbi.clone().times(bw as i64).plus(c(j));
    // Reader.
    let ins: &[(u8, u64)] = if split { &[(0, bh), (17, bh), (1, bw), (18, bw)] } else { &[(0, bh), (1, bw)] };
    let mut kbody: Vec<Op> = ins.iter().map(|&(cb, n)| Op::Reserve { cb, n: n as u32 }).collect();
    for i in 0..bh {
        let tile = tr(i).times(kt as i64).plus(kv.clone());
        if split {
            kbody.extend(crate::templates::split_operand(cx, &mut pb, wv, tile, (0, 17, 5), c(i))?);
        } else {
            let wt = pb.tensor(cx.dram(wv)?);
            kbody.push(Op::ReadTile { tensor: wt, tile, cb: 0, slot: c(i) });
        }
    }
    kbody.push(Op::ReadBarrier);
    for j in 0..bw {
        let geom = Box::new(geom.clone());
        if let Some(lt) = x_lo {
            for (tensor, scratch, cb) in [(xt, 7, 1), (lt, 8, 18)] {
                let geom = geom.clone();
                kbody.push(Op::Im2colTile {
                    tensor,
                    scratch,
                    image: img.clone(),
                    kt: kv.clone(),
                    nt: tc(j),
                    geom,
                    cb,
                    slot: c(j),
                });
            }
            continue;
        }
        let (cb, slot) = if split { (6, c(0)) } else { (1, c(j)) };
        if split {
            kbody.push(Op::Reserve { cb: 6, n: 1 });
        }
        kbody.push(Op::Im2colTile {
            tensor: xt,
            scratch: 7,
            image: img.clone(),
            kt: kv.clone(),
            nt: tc(j),
            geom,
            cb,
            slot,
        });
        if split {
            kbody.push(Op::SplitTile { from: 6, hi: 1, lo: 18, slot: c(j) });
        }
    }
    kbody.extend(ins.iter().map(|&(cb, n)| Op::Push { cb, n: n as u32 }));
    let mut rb = vec![lp(1, kt, kbody)];
    if let Some(b) = bias {
        let bt = pb.tensor(cx.dram(b)?);
        rb.push(Op::Reserve { cb: bias_cb, n: bh as u32 });
        for i in 0..bh {
            rb.push(Op::ReadTile { tensor: bt, tile: tr(i), cb: bias_cb, slot: c(i) });
        }
        rb.push(Op::ReadBarrier);
        for i in 0..bh {
            rb.push(Op::BcastTile { cb: bias_cb, slot: c(i), bcast: Bcast::Cols });
        }
        rb.push(Op::Push { cb: bias_cb, n: bh as u32 });
    }
    let pos: Vec<(Ix, Ix, Ix, Ix)> = (0..bh)
        .flat_map(|i| (0..bw).map(move |j| (i, j)))
        .map(|(i, j)| (img.clone(), tr(i), tc(j), c(i * bw + j)))
        .collect();
    if !leaves.is_empty() {
        let (reads, fix) = read_leaves(cx, &mut pb, &leaves, &od, 1, &pos)?;
        rb.extend(leaves.iter().map(|&(_, cb)| Op::Reserve { cb, n: blk as u32 }));
        rb.extend(reads);
        rb.push(Op::ReadBarrier);
        rb.extend(fix);
        rb.extend(leaves.iter().map(|&(_, cb)| Op::Push { cb, n: blk as u32 }));
    }
    pb.reader = vec![units_loop(rb)];
    // Compute.
    let mut kc: Vec<Op> = ins.iter().map(|&(cb, n)| Op::Wait { cb, n: n as u32 }).collect();
    kc.extend(crate::templates::products(bh, bw, 1, split));
    kc.extend(ins.iter().map(|&(cb, n)| Op::Pop { cb, n: n as u32 }));
    let mut cbody = vec![Op::Acquire, lp(1, kt, kc)];
    if bias.is_some() {
        cbody.push(Op::Wait { cb: bias_cb, n: bh as u32 });
        for i in 0..bh {
            for j in 0..bw {
                let s = (i * bw + j) as u8;
                cbody.push(Op::CopyTile { cb: bias_cb, tile: c(i), dst: blk });
                cbody.push(Op::BinaryDst { op: SfpuBinary::Add, a: s, b: blk });
            }
        }
    }
    if let Some(ch) = &ch {
        cbody.extend(leaves.iter().map(|&(_, cb)| Op::Wait { cb, n: blk as u32 }));
        let leaf_cb: Vec<u8> = leaves.iter().map(|l| l.1).collect();
        for s in 0..blk {
            let remap = move |d: u8| if d == 0 { s } else { blk + d - 1 };
            cbody.extend(chain_ops(ch, &leaf_cb, &c(s as u64), &remap));
        }
    }
    cbody.extend([Op::Commit, Op::WaitDst, Op::Reserve { cb: CB_OUT, n: blk as u32 }]);
    for s in 0..blk {
        cbody.push(Op::Pack { dst: s, cb: CB_OUT, slot: c(s as u64) });
    }
    cbody.extend([Op::Push { cb: CB_OUT, n: blk as u32 }, Op::Release]);
    if bias.is_some() {
        cbody.push(Op::Pop { cb: bias_cb, n: bh as u32 });
    }
    cbody.extend(leaves.iter().map(|&(_, cb)| Op::Pop { cb, n: blk as u32 }));
    pb.compute = vec![units_loop(cbody)];
    pb.writer = crate::templates::block_writer(ot, &pos, (m, n), (mt, nt));
    pb.finish(images * mb * nb)
}
