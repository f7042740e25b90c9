//! Program templates for elementwise chains and matmuls. Both read their operands tile by tile from DRAM
//! into circular buffers (reader, RISCV_0), compute on Dst (compute, the three TRISCs), and write result
//! tiles back (writer, RISCV_1), zeroing the padding of partial tiles so that every DRAM tensor's padding
//! stays zero (what the matmul's K padding and the row reductions rely on).

use crate::builder::*;
use crate::chain::{self, Chain, Step as CStep};
use crate::lower::{Ctx, Group, LowerError};
use sovc_ir::{Op as GOp, ValueId};
use sovc_runtime::tensix::program::*;

type R<T> = Result<T, LowerError>;

/// Picks the template for a group by its anchor (the first node that is not an elementwise op).
pub fn lower_group(cx: &Ctx, grp: &Group, anchor: Option<usize>, name: &str, kernel: usize) -> R<Program> {
    let g = cx.g;
    if grp.outputs.len() != 1 {
        return Err(format!("the group writes {} values; Tensix programs write one", grp.outputs.len()).into());
    }
    if is_movement(g, grp) {
        return movement(cx, grp, name, kernel);
    }
    let Some(a) = anchor else {
        return eltwise(cx, grp, name, kernel);
    };
    let node = &g.nodes[a];
    let rest: Vec<usize> = grp.nodes.iter().copied().filter(|&n| n != a).collect();
    if grp.nodes[0] != a {
        return Err(format!("`{}` ({}) follows elementwise nodes in its group", node.name, node.op.name()).into());
    }
    match &node.op {
        GOp::MatMul {} => matmul(cx, grp, a, &rest, name, kernel),
        GOp::Softmax { axis } if last_axis(cx, node.inputs[0], *axis)? => {
            let out = reshaped(cx, &rest, node.outputs[0])?;
            crate::rows::softmax(cx, a, out, name, kernel)
        }
        GOp::LayerNorm { axis, epsilon } if last_axis(cx, node.inputs[0], *axis)? => {
            let out = reshaped(cx, &rest, node.outputs[0])?;
            crate::rows::layer_norm(cx, a, out, *epsilon, name, kernel)
        }
        GOp::Attention { scale } if rest.is_empty() => crate::rows::attention(cx, a, *scale, name, kernel),
        GOp::Concat { .. } => concat(cx, grp, a, name, kernel),
        GOp::Split { .. } | GOp::Slice { .. } | GOp::Gather { .. } => {
            crate::part::lower(cx, grp, a, &rest, name, kernel)
        }
        GOp::Reduce { .. } => {
            let out = reshaped_any(cx, &rest, node.outputs[0])?;
            crate::rows::reduce_to_row(cx, a, out, name, kernel)
        }
        GOp::Conv { .. } if crate::conv::supported(g, a).is_ok() => crate::conv::conv(cx, grp, a, &rest, name, kernel),
        GOp::Conv { .. } | GOp::MaxPool { .. } | GOp::AvgPool { .. } => {
            crate::window::supported(g, a)?;
            crate::window::lower(cx, grp, a, &rest, name, kernel)
        }
        op => Err(format!("no Tensix template for `{}` yet", op.name()).into()),
    }
}

/// The value `rest` (reshapes of `v` that keep its tiles where they are) ends with.
fn reshaped(cx: &Ctx, rest: &[usize], v: ValueId) -> R<ValueId> {
    let mut cur = v;
    for &n in rest {
        let node = &cx.g.nodes[n];
        let same = sovc_runtime::tensix::device::view(&cx.dims(node.outputs[0])?)
            == sovc_runtime::tensix::device::view(&cx.dims(cur)?);
        if !matches!(node.op, GOp::Reshape { .. }) || node.inputs[0] != cur || !same {
            return Err(format!("`{}` ({}) after a row kernel", node.name, node.op.name()).into());
        }
        cur = node.outputs[0];
    }
    Ok(cur)
}

/// The value `rest` (a chain of reshapes of `v`) ends with; the template checks the views.
fn reshaped_any(cx: &Ctx, rest: &[usize], v: ValueId) -> R<ValueId> {
    let mut cur = v;
    for &n in rest {
        let node = &cx.g.nodes[n];
        if !matches!(node.op, GOp::Reshape { .. }) || node.inputs[0] != cur {
            return Err(format!("`{}` ({}) after a reduction", node.name, node.op.name()).into());
        }
        cur = node.outputs[0];
    }
    Ok(cur)
}

fn last_axis(cx: &Ctx, v: ValueId, axis: i64) -> R<bool> {
    let r = cx.dims(v)?.len() as i64;
    Ok(axis == r - 1 || axis == -1)
}

/// Output tile coordinates (batch, row tile, column tile) of flat tile `t` of a `[b, rt, ct]` tiling.
fn coords(t: Ix, rt: u64, ct: u64) -> (Ix, Ix, Ix) {
    (t.clone().over((rt * ct) as i64), t.clone().over(ct as i64).modulo(rt as i64), t.modulo(ct as i64))
}

/// Reads every leaf's tile for one output tile position into slot `slot` of its CB, broadcast as needed.
pub fn read_leaves(
    cx: &Ctx,
    pb: &mut ProgramBuilder,
    leaves: &[(ValueId, u8)],
    out: &[usize],
    k: isize,
    pos: &[(Ix, Ix, Ix, Ix)],
) -> R<(Vec<Op>, Vec<Op>)> {
    let mut reads = Vec::new();
    let mut fix = Vec::new();
    for &(v, cb) in leaves {
        let t = pb.tensor(cx.dram(v)?);
        let d = cx.dims(v)?;
        let view = cx.view(v)?;
        for (ob, tr, tc, slot) in pos {
            let (tile, bcast) = chain::leaf_tile(&d, view, out, k, ob, tr, tc).ok_or_else(|| {
                format!(
                    "%{} ({}, stored as {view:?}) does not broadcast to {out:?} with rows at dim {k}",
                    v.0,
                    cx.g.ty(v)
                )
            })?;
            reads.push(Op::ReadTile { tensor: t, tile, cb, slot: slot.clone() });
            if bcast != Bcast::None {
                fix.push(Op::BcastTile { cb, slot: slot.clone(), bcast });
            }
        }
    }
    Ok((reads, fix))
}

/// The chain's steps as compute ops: leaf loads from their CBs at `slot`, Dst tiles renumbered by `dst`.
pub fn chain_ops(ch: &Chain, leaf_cb: &[u8], slot: &Ix, dst: &dyn Fn(u8) -> u8) -> Vec<Op> {
    ch.steps
        .iter()
        .map(|s| match s {
            CStep::Load { leaf, slot: d } => Op::CopyTile { cb: leaf_cb[*leaf], tile: slot.clone(), dst: dst(*d) },
            CStep::Op(op) => {
                let mut op = op.clone();
                match &mut op {
                    Op::BinaryDst { a, b, .. } => {
                        *a = dst(*a);
                        *b = dst(*b);
                    }
                    Op::Unary { dst: d, .. } => *d = dst(*d),
                    Op::CopyDst { from, to } => {
                        *from = dst(*from);
                        *to = dst(*to);
                    }
                    _ => {}
                }
                op
            }
        })
        .collect()
}

/// Zeroes the padding of output tile (`tr`, `tc`) of a `rows x cols` matrix when it is partial.
pub fn pad_out(rows: u64, cols: u64, tr: &Ix, tc: &Ix, cb: u8, slot: Ix) -> Option<Op> {
    (!rows.is_multiple_of(32) || !cols.is_multiple_of(32)).then(|| Op::PadTile {
        cb,
        slot,
        rows: valid(rows, tr.clone()),
        cols: valid(cols, tc.clone()),
        value: 0.0,
        front: true,
    })
}

/// An elementwise group: one output tile per unit.
fn eltwise(cx: &Ctx, grp: &Group, name: &str, kernel: usize) -> R<Program> {
    let out = grp.outputs[0];
    let od = cx.dims(out)?;
    let mut pb = cx.builder(name, kernel, "eltwise");
    let cap = pb.dst_cap();
    let ch = chain::compile(cx.g, &grp.nodes, None, out, &cx.scalars, cap)?;
    if ch.leaves.len() > 16 {
        return Err(format!("{} inputs; at most 16 input CBs", ch.leaves.len()).into());
    }
    let (b, rows, cols) = cx.view(out)?;
    let k = cx.k(out);
    let (rt, ct) = (rows.div_ceil(32), cols.div_ceil(32));
    let t = unit();
    let (ob, tr, tc) = coords(t.clone(), rt, ct);
    let leaves: Vec<(ValueId, u8)> = ch.leaves.iter().enumerate().map(|(i, &v)| (v, i as u8)).collect();
    for &(v, cb) in &leaves {
        let f = cx.tensors[cx.dram(v)? as usize].format;
        pb.cb(cb, f, 2, &format!("in%{}", v.0));
    }
    let ot = pb.tensor(cx.dram(out)?);
    let of = cx.tensors[cx.dram(out)? as usize].format;
    pb.cb(CB_OUT, of, 2, "out");
    let (reads, fix) = read_leaves(cx, &mut pb, &leaves, &od, k, &[(ob, tr.clone(), tc.clone(), c(0))])?;
    let mut rb: Vec<Op> = leaves.iter().map(|&(_, cb)| Op::Reserve { cb, n: 1 }).collect();
    rb.extend(reads);
    rb.push(Op::ReadBarrier);
    rb.extend(fix);
    rb.extend(leaves.iter().map(|&(_, cb)| Op::Push { cb, n: 1 }));
    pb.reader = vec![units_loop(rb)];
    let leaf_cb: Vec<u8> = leaves.iter().map(|l| l.1).collect();
    let mut cbody: Vec<Op> = leaves.iter().map(|&(_, cb)| Op::Wait { cb, n: 1 }).collect();
    cbody.push(Op::Acquire);
    cbody.extend(chain_ops(&ch, &leaf_cb, &c(0), &|d| d));
    cbody.extend(pack_one(ch.result));
    cbody.extend(leaves.iter().map(|&(_, cb)| Op::Pop { cb, n: 1 }));
    pb.compute = vec![units_loop(cbody)];
    let mut wb = vec![Op::Wait { cb: CB_OUT, n: 1 }];
    wb.extend(pad_out(rows, cols, &tr, &tc, CB_OUT, c(0)));
    wb.extend([
        Op::WriteTile { tensor: ot, tile: t, cb: CB_OUT, slot: c(0) },
        Op::WriteBarrier,
        Op::Pop { cb: CB_OUT, n: 1 },
    ]);
    pb.writer = vec![units_loop(wb)];
    pb.notes.push(format!("{} Dst tiles", ch.slots));
    pb.finish(b * rt * ct)
}

/// The end of a one-tile compute step: Dst tile `d` packed into the output CB and pushed.
pub fn pack_one(d: u8) -> Vec<Op> {
    vec![
        Op::Commit,
        Op::WaitDst,
        Op::Reserve { cb: CB_OUT, n: 1 },
        Op::Pack { dst: d, cb: CB_OUT, slot: c(0) },
        Op::Push { cb: CB_OUT, n: 1 },
        Op::Release,
    ]
}

/// Batch index of an operand with batch dims `leaf` for output batch index `ob` over batch dims `out`.
pub fn batch_index(leaf: &[usize], out: &[usize], ob: &Ix) -> Option<Ix> {
    let mut full = vec![1; out.len().checked_sub(leaf.len())?];
    full.extend_from_slice(leaf);
    let mut idx = Ix::Const(0);
    let (mut os, mut ls) = (1i64, 1i64);
    for j in (0..out.len()).rev() {
        if full[j] != 1 && full[j] != out[j] {
            return None;
        }
        if full[j] != 1 {
            idx = idx.plus(ob.clone().over(os).modulo(out[j] as i64).times(ls));
        }
        os *= out[j] as i64;
        ls *= full[j] as i64;
    }
    Some(idx)
}

/// The block of output tiles a product accumulates in Dst at once: `bh` rows by `bw` columns, dividing
/// `mt` and `nt`, as many as fit in Dst's `cap` tiles beside the epilogue's `extra` scratch tiles.
pub fn block_shape(cap: usize, extra: usize, mt: u64, nt: u64) -> R<(u64, u64)> {
    let block_cap = cap.saturating_sub(extra) as u64;
    if block_cap == 0 {
        return Err(format!("the epilogue needs all {cap} Dst tiles").into());
    }
    let bw = divisor(nt, block_cap);
    Ok((divisor(mt, block_cap / bw), bw))
}

/// The largest divisor of `n` that is at most `max`.
pub fn divisor(n: u64, max: u64) -> u64 {
    (1..=max.min(n)).rev().find(|d| n.is_multiple_of(*d)).unwrap_or(1)
}

/// Fidelity for a product of `a` by `b`: enough phases for full precision of the narrower operand
/// (4 for bf16, 2 for Bfp8_b, 1 for Bfp4_b), unless forced.
pub fn fidelity(cx: &Ctx, a: DataFormat, b: DataFormat) -> (MathFidelity, String) {
    if let Some(f) = cx.opts.numerics.fidelity {
        return (f, format!("{} (forced)", f.name()));
    }
    let need = |f: DataFormat| match f {
        DataFormat::Float32 | DataFormat::Float16_b => MathFidelity::HiFi4,
        DataFormat::Bfp8_b => MathFidelity::HiFi2,
        DataFormat::Bfp4_b => MathFidelity::LoFi,
    };
    let f = need(a).min(need(b));
    (f, format!("{} for {} x {}", f.name(), a.name(), b.name()))
}

/// A matmul with its elementwise epilogue: each unit is a block of `bh x bw` output tiles accumulated in
/// Dst over K (A tiles reused across the block's columns, B tiles across its rows), the epilogue applied
/// tile by tile in Dst, and the block packed and written.
fn matmul(cx: &Ctx, grp: &Group, a: usize, rest: &[usize], name: &str, kernel: usize) -> R<Program> {
    let g = cx.g;
    let node = &g.nodes[a];
    let (av, bv, mv) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let (ad, bd, od) = (cx.dims(av)?, cx.dims(bv)?, cx.dims(mv)?);
    if ad.len() < 2 || bd.len() < 2 {
        return Err("matmul of a vector".to_string().into());
    }
    let out = grp.outputs[0];
    for v in [av, bv, out] {
        cx.default_view(v)?;
    }
    // The epilogue may reshape the product, but not move its tiles.
    let (pv, gv) = (sovc_runtime::tensix::device::view(&od), sovc_runtime::tensix::device::view(&cx.dims(out)?));
    if pv != gv {
        return Err(format!("the epilogue turns the {od:?} product into {}", cx.g.ty(out)).into());
    }
    let (m, k, n) = (ad[ad.len() - 2] as u64, ad[ad.len() - 1] as u64, bd[bd.len() - 1] as u64);
    let (mt, kt, nt) = (m.div_ceil(32), k.div_ceil(32), n.div_ceil(32));
    let obd = &od[..od.len() - 2];
    let ob_n: u64 = obd.iter().product::<usize>() as u64;
    let mut pb = cx.builder(name, kernel, "matmul");
    let cap = pb.dst_cap();
    let ch = if rest.is_empty() { None } else { Some(chain::compile(g, rest, Some(mv), out, &cx.scalars, cap)?) };
    let (bh, bw) = block_shape(cap, ch.as_ref().map_or(0, |c| c.slots.saturating_sub(1)), mt, nt)?;
    let (mb, nb) = (mt / bh, nt / bw);
    let split = cx.opts.numerics.split;
    // K tiles per step: enough products per step to hide the reader's latency, the operand buffers
    // (double-buffered, both parts in split precision) within 512 KiB.
    let step_bytes = 2 * (bh + bw) * 2048 * if split { 2 } else { 1 };
    let kb = divisor(kt, (512 * 1024 / step_bytes).clamp(1, 8));
    let ot = pb.tensor(cx.dram(out)?);
    let of = cx.tensors[cx.dram(out)? as usize].format;
    let fmt = |v: ValueId| -> R<DataFormat> {
        Ok(if split { DataFormat::Float16_b } else { cx.tensors[cx.dram(v)? as usize].format })
    };
    let (af, bf) = (fmt(av)?, fmt(bv)?);
    let (fid, why) = fidelity(cx, af, bf);
    pb.fidelity = fid;
    pb.notes.push(if split { format!("{why}; split precision: hi*hi + hi*lo + lo*hi") } else { why });
    pb.notes.push(format!("blocks of {bh}x{bw} tiles, K {kt} tiles in steps of {kb}"));
    let (an, bn) = ((bh * kb) as u32, (kb * bw) as u32);
    pb.cb(0, af, 2 * an, if split { "in0 (A high part)" } else { "in0 (A)" });
    pb.cb(1, bf, 2 * bn, if split { "in1 (B high part)" } else { "in1 (B)" });
    if split {
        pb.cb(17, af, 2 * an, "in0 (A low part)");
        pb.cb(18, bf, 2 * bn, "in1 (B low part)");
        for (v, scratch) in [(av, 5u8), (bv, 6u8)] {
            if !cx.parts.contains_key(&v) {
                pb.cb(scratch, DataFormat::Float32, 1, "FP32 tile to split");
            }
        }
    }
    let leaves: Vec<(ValueId, u8)> =
        ch.as_ref().map_or(Vec::new(), |c| c.leaves.iter().enumerate().map(|(i, &v)| (v, 2 + i as u8)).collect());
    if leaves.len() > 14 {
        return Err("the epilogue reads more than 14 inputs".to_string().into());
    }
    for &(v, cb) in &leaves {
        let f = cx.tensors[cx.dram(v)? as usize].format;
        pb.cb(cb, f, (bh * bw) as u32, &format!("epilogue in%{}", v.0));
    }
    pb.cb(CB_OUT, of, (2 * bh * bw) as u32, "out");
    let grid = if cx.opts.multicast { mcast_grid(&cx.opts.device, mb, nb, ob_n * mb * nb) } else { None };
    let (ob, mbi, nbi) = match grid {
        None => {
            let u = unit();
            (u.clone().over((mb * nb) as i64), u.clone().over(nb as i64).modulo(mb as i64), u.modulo(nb as i64))
        }
        // Core (x, y) takes block rows y * rpc .. and block columns x * cpc ..; every core of a grid
        // row walks the same block rows in the same order, every core of a column the same columns.
        Some((gx, gy)) => {
            let (rpc, cpc) = ((mb / gy) as i64, (nb / gx) as i64);
            let v = Ix::Var(0);
            (
                v.clone().over(rpc * cpc),
                Ix::Arg(arg::ROW0).plus(v.clone().over(cpc).modulo(rpc)),
                Ix::Arg(arg::COL0).plus(v.modulo(cpc)),
            )
        }
    };
    let a_b = batch_index(&ad[..ad.len() - 2], obd, &ob).ok_or("A's batch dims do not broadcast")?;
    let b_b = batch_index(&bd[..bd.len() - 2], obd, &ob).ok_or("B's batch dims do not broadcast")?;
    let kv = |kk: u64| Ix::Var(1).times(kb as i64).plus(c(kk));
    let tr = |i: u64| mbi.clone().times(bh as i64).plus(c(i));
    let tc = |j: u64| nbi.clone().times(bw as i64).plus(c(j));
    // Reader: per K step, A's tiles of the block rows, then B's of the block columns.
    let (an, bn) = (an as u64, bn as u64);
    let ins: &[(u8, u64)] = if split { &[(0, an), (17, an), (1, bn), (18, bn)] } else { &[(0, an), (1, bn)] };
    // A's block row-major (slot i * kb + kk), B's too (slot kk * bw + j).
    let mut a_reads = Vec::new();
    for (i, kk) in (0..bh).flat_map(|i| (0..kb).map(move |kk| (i, kk))) {
        let tile = a_b.clone().times(mt as i64).plus(tr(i)).times(kt as i64).plus(kv(kk));
        let slot = c(i * kb + kk);
        if split {
            a_reads.extend(split_operand(cx, &mut pb, av, tile, (0, 17, 5), slot)?);
        } else {
            let at = pb.tensor(cx.dram(av)?);
            a_reads.push(Op::ReadTile { tensor: at, tile, cb: 0, slot });
        }
    }
    let mut b_reads = Vec::new();
    for (kk, j) in (0..kb).flat_map(|kk| (0..bw).map(move |j| (kk, j))) {
        let tile = b_b.clone().times(kt as i64).plus(kv(kk)).times(nt as i64).plus(tc(j));
        let slot = c(kk * bw + j);
        if split {
            b_reads.extend(split_operand(cx, &mut pb, bv, tile, (1, 18, 6), slot)?);
        } else {
            let bt = pb.tensor(cx.dram(bv)?);
            b_reads.push(Op::ReadTile { tensor: bt, tile, cb: 1, slot });
        }
    }
    // A's blocks come through the reader (NoC 0), B's through the writer (NoC 1), so the two operands
    // move in parallel; on a grid each is read by one core per row (column) and multicast to the rest.
    let (a_cbs, b_cbs): (&[u8], &[u8]) = if split { (&[0, 17], &[1, 18]) } else { (&[0], &[1]) };
    let (gx, gy) = grid.unwrap_or((1, 1));
    let (a_step, a_start) = shared_operand(&mut pb, a_cbs, an as u32, a_reads, gx as u32, arg::SENDS);
    let (b_step, b_start) = shared_operand(&mut pb, b_cbs, bn as u32, b_reads, gy as u32, arg::SENDS + 1);
    if grid.is_some() {
        let shares = |g: u64, what: &str| {
            if g > 1 {
                format!("{what} multicast to {} cores", g - 1)
            } else {
                format!("{what} read by every core")
            }
        };
        pb.notes.push(format!(
            "grid {gx}x{gy}: A's blocks {}, B's {}",
            shares(gx, "from the first core of each row"),
            shares(gy, "from the first core of each column")
        ));
    }
    let mut rb = vec![lp(1, kt / kb, a_step)];
    let pos: Vec<(Ix, Ix, Ix, Ix)> = (0..bh)
        .flat_map(|i| (0..bw).map(move |j| (i, j)))
        .map(|(i, j)| (ob.clone(), tr(i), tc(j), c(i * bw + j)))
        .collect();
    if !leaves.is_empty() {
        let gd = cx.dims(out)?;
        let (reads, fix) = read_leaves(cx, &mut pb, &leaves, &gd, gd.len() as isize - 2, &pos)?;
        rb.extend(leaves.iter().map(|&(_, cb)| Op::Reserve { cb, n: (bh * bw) as u32 }));
        rb.extend(reads);
        rb.push(Op::ReadBarrier);
        rb.extend(fix);
        rb.extend(leaves.iter().map(|&(_, cb)| Op::Push { cb, n: (bh * bw) as u32 }));
    }
    pb.reader = a_start;
    pb.reader.push(units_loop(rb));
    // Compute.
    let mut kc: Vec<Op> = ins.iter().map(|&(cb, n)| Op::Wait { cb, n: n as u32 }).collect();
    kc.extend(products(bh, bw, kb, split));
    kc.extend(ins.iter().map(|&(cb, n)| Op::Pop { cb, n: n as u32 }));
    let mut cb_ = vec![Op::Acquire, lp(1, kt / kb, kc)];
    let blk = (bh * bw) as u8;
    if let Some(ch) = &ch {
        cb_.extend(leaves.iter().map(|&(_, cb)| Op::Wait { cb, n: blk as u32 }));
        let leaf_cb: Vec<u8> = leaves.iter().map(|l| l.1).collect();
        for s in 0..blk {
            let remap = move |d: u8| if d == 0 { s } else { blk + d - 1 };
            cb_.extend(chain_ops(ch, &leaf_cb, &c(s as u64), &remap));
        }
    }
    let r = ch.as_ref().map_or(0, |c| c.result);
    let result_of = |s: u8| if r == 0 { s } else { blk + r - 1 };
    cb_.extend([Op::Commit, Op::WaitDst, Op::Reserve { cb: CB_OUT, n: blk as u32 }]);
    for s in 0..blk {
        cb_.push(Op::Pack { dst: result_of(s), cb: CB_OUT, slot: c(s as u64) });
    }
    cb_.extend([Op::Push { cb: CB_OUT, n: blk as u32 }, Op::Release]);
    cb_.extend(leaves.iter().map(|&(_, cb)| Op::Pop { cb, n: blk as u32 }));
    pb.compute = vec![units_loop(cb_)];
    let mut wb = vec![lp(1, kt / kb, b_step)];
    wb.extend(block_writer_body(ot, &pos, (m, n), (mt, nt)));
    pb.writer = b_start;
    pb.writer.push(units_loop(wb));
    match grid {
        None => pb.finish(ob_n * mb * nb),
        Some((gx, gy)) => {
            let count = ob_n * (mb / gy) * (nb / gx);
            let cores = mcast_cores(&mut pb, gx, gy, mb / gy, nb / gx, count);
            pb.finish_on(cores)
        }
    }
}

/// The grid (`gx` core columns by `gy` core rows) over which a matmul's `mb x nb` blocks (`units` with
/// the batch) share their operands, or `None` when that would leave more than half the cores a plain
/// split uses idle, or no operand would be shared.
fn mcast_grid(dev: &DeviceDesc, mb: u64, nb: u64, units: u64) -> Option<(u64, u64)> {
    let (gx, gy) = (divisor(nb, dev.grid_x as u64), divisor(mb, dev.grid_y as u64));
    let plain = units.min(dev.cores() as u64);
    (gx * gy >= 2 && 2 * gx * gy >= plain).then_some((gx, gy))
}

/// Runtime arguments of the multicast matmul: block row and column of the core's first block, its
/// block count, whether it sends A (first core of its row) and B (first core of its column), and for
/// each operand the sender's coordinates and the rectangle of its receivers.
mod arg {
    pub const ROW0: u8 = 0;
    pub const COL0: u8 = 2;
    /// `SENDS + 0` for A, `SENDS + 1` for B.
    pub const SENDS: u8 = 3;
    /// Per operand `o`: sender x, y at `PEER + 6 o`, receivers' rectangle x0, y0, x1, y1 after them.
    pub const PEER: u8 = 5;
}

fn mcast_cores(pb: &mut ProgramBuilder, gx: u64, gy: u64, rpc: u64, cpc: u64, count: u64) -> Vec<CoreWork> {
    for o in 0..2u8 {
        for (k, axis) in [Axis::X, Axis::Y, Axis::X, Axis::Y, Axis::X, Axis::Y].into_iter().enumerate() {
            pb.noc_args.push((arg::PEER + 6 * o + k as u8, axis));
        }
    }
    let mut cores = Vec::new();
    for y in 0..gy as u32 {
        for x in 0..gx as u32 {
            let (gx, gy) = (gx as u32, gy as u32);
            let mut args = vec![y * rpc as u32, count as u32, x * cpc as u32, u32::from(x == 0), u32::from(y == 0)];
            // A: sender (0, y), receivers (1, y) .. (gx - 1, y); B: sender (x, 0), receivers (x, 1) .. (x, gy - 1).
            args.extend([0, y, 1.min(gx - 1), y, gx - 1, y]);
            args.extend([x, 0, x, 1.min(gy - 1), x, gy - 1]);
            cores.push(CoreWork { x, y, args });
        }
    }
    cores
}

/// One operand's K step: every core reserves the block in `cbs` (`n` tiles each). Alone (`peers` 1), a
/// core reads it itself (`reads`). On a multicast grid, the sender (runtime argument `SENDS + o`) reads
/// it, waits until its `peers - 1` receivers have reserved theirs, multicasts the tiles and then the
/// ready flag; a receiver clears its flag, tells the sender it is ready and waits for the flag. Returns
/// the step and the ops that run once at the start of the kernel (the sender's flag set to 1, the value
/// it multicasts).
fn shared_operand(
    pb: &mut ProgramBuilder,
    cbs: &[u8],
    n: u32,
    reads: Vec<Op>,
    peers: u32,
    sends: u8,
) -> (Vec<Op>, Vec<Op>) {
    let mut step: Vec<Op> = cbs.iter().map(|&cb| Op::Reserve { cb, n }).collect();
    if peers == 1 {
        step.extend(reads);
        step.push(Op::ReadBarrier);
        step.extend(cbs.iter().map(|&cb| Op::Push { cb, n }));
        return (step, Vec::new());
    }
    let (ready, valid) = (pb.semaphore(0), pb.semaphore(0));
    let o = sends - arg::SENDS;
    let peer = arg::PEER + 6 * o;
    let rect = || {
        Box::new(Rect { x0: Ix::Arg(peer + 2), y0: Ix::Arg(peer + 3), x1: Ix::Arg(peer + 4), y1: Ix::Arg(peer + 5) })
    };
    let dests = peers - 1;
    let mut send = reads;
    send.push(Op::ReadBarrier);
    send.extend([Op::SemWait { sem: ready, value: dests }, Op::SemSet { sem: ready, value: 0 }]);
    send.extend(cbs.iter().map(|&cb| Op::McastTiles { cb, n, rect: rect(), dests }));
    // The flag must not overtake the tiles (on Blackhole they leave through different command buffers).
    send.extend([Op::WritesFlushed, Op::McastSem { sem: valid, rect: rect(), dests }, Op::WriteBarrier]);
    let receive = vec![
        Op::SemSet { sem: valid, value: 0 },
        Op::SemInc { sem: ready, x: Ix::Arg(peer), y: Ix::Arg(peer + 1) },
        Op::SemWait { sem: valid, value: 1 },
    ];
    step.push(Op::If { cond: Ix::Arg(sends), then: send, els: receive });
    step.extend(cbs.iter().map(|&cb| Op::Push { cb, n }));
    let start = vec![Op::If { cond: Ix::Arg(sends), then: vec![Op::SemSet { sem: valid, value: 1 }], els: vec![] }];
    (step, start)
}

/// The writer of a product's blocks: per unit, every output tile at `pos` (batch, row tile, column tile,
/// CB slot) of an `m x n` result (`mt x nt` tiles per batch entry), padding zeroed.
pub fn block_writer(ot: u8, pos: &[(Ix, Ix, Ix, Ix)], mn: (u64, u64), tiles: (u64, u64)) -> Vec<Op> {
    vec![units_loop(block_writer_body(ot, pos, mn, tiles))]
}

/// One unit of [`block_writer`].
pub fn block_writer_body(ot: u8, pos: &[(Ix, Ix, Ix, Ix)], (m, n): (u64, u64), (mt, nt): (u64, u64)) -> Vec<Op> {
    let blk = pos.len() as u32;
    let mut wb = vec![Op::Wait { cb: CB_OUT, n: blk }];
    for (ob, tr, tc, slot) in pos {
        wb.extend(pad_out(m, n, tr, tc, CB_OUT, slot.clone()));
        let tile = ob.clone().times(mt as i64).plus(tr.clone()).times(nt as i64).plus(tc.clone());
        wb.push(Op::WriteTile { tensor: ot, tile, cb: CB_OUT, slot: slot.clone() });
    }
    wb.extend([Op::WriteBarrier, Op::Pop { cb: CB_OUT, n: blk }]);
    wb
}

/// Whether a group only moves data: a chain of reshapes, transposes and forward slices.
pub fn is_movement(g: &sovc_ir::Graph, grp: &Group) -> bool {
    grp.nodes.iter().all(|&n| match &g.nodes[n].op {
        GOp::Reshape { .. } | GOp::Transpose { .. } => true,
        GOp::Slice { steps, .. } => steps.iter().all(|&s| s > 0),
        GOp::Pad { pads, mode: sovc_ir::PadMode::Constant } => pads.iter().all(|&p| p >= 0),
        _ => false,
    })
}

/// A movement group: each output tile gathered element by element from the source's tiles by the
/// reader (`sovc::gather_tile`) and written by the writer; no compute.
fn movement(cx: &Ctx, grp: &Group, name: &str, kernel: usize) -> R<Program> {
    let g = cx.g;
    let src = g.nodes[grp.nodes[0]].inputs[0];
    let out = grp.outputs[0];
    let u = |d: Vec<usize>| d.into_iter().map(|x| x as u64).collect::<Vec<u64>>();
    let mut map = MoveMap { src_dims: u(cx.dims(src)?), steps: Vec::new() };
    let mut cur = src;
    for &n in &grp.nodes {
        let node = &g.nodes[n];
        if node.inputs[0] != cur {
            return Err(format!("`{}` does not continue the movement chain", node.name).into());
        }
        let dims = u(cx.dims(node.outputs[0])?);
        if dims.len() > 8 {
            return Err("a movement of rank above 8".to_string().into());
        }
        map.steps.push(match &node.op {
            GOp::Reshape { .. } => MoveStep::Reshape { dims },
            GOp::Transpose { perm } => MoveStep::Transpose { perm: perm.iter().map(|&p| p as u32).collect(), dims },
            GOp::Slice { starts, ends, steps } => {
                // Starts as the IR keeps them (negative counts from the end), resolved as the
                // interpreter does.
                let in_dims = cx.dims(node.inputs[0])?;
                let starts = (0..in_dims.len())
                    .map(|i| sovc_ir::infer::slice_range(starts[i], ends[i], steps[i], in_dims[i] as i64).0 as u64)
                    .collect();
                MoveStep::Slice { starts, steps: steps.iter().map(|&s| s as u64).collect(), dims }
            }
            GOp::Pad { pads, .. } => {
                // Zero padding only: a pad value other than 0 would need a fill the gather does not do.
                if let Some(&pv) = node.inputs.get(1) {
                    if cx.scalars.get(&pv) != Some(&0.0) {
                        return Err(format!("`{}` pads with a value other than a constant 0", node.name).into());
                    }
                }
                let r = dims.len();
                MoveStep::Pad { begins: pads[..r].iter().map(|&p| p as u64).collect(), dims }
            }
            op => return Err(format!("`{}` in a movement group", op.name()).into()),
        });
        cur = node.outputs[0];
    }
    if cur != out || g.ty(src).dtype != sovc_ir::DType::F32 {
        return Err("the movement chain does not end in the group's f32 result".to_string().into());
    }
    if map.src_dims.len() > 8 || map.steps.len() > 16 {
        return Err("a movement chain beyond rank 8 or 16 steps (sovc::gather_tile's limits)".to_string().into());
    }
    let mut pb = cx.builder(name, kernel, "movement");
    let (st, ot) = (pb.tensor(cx.dram(src)?), pb.tensor(cx.dram(out)?));
    let fmt = |v: ValueId| cx.dram(v).map(|i| cx.tensors[i as usize].format);
    let (b, rows, cols) = cx.view(out)?;
    if fmt(src)? != fmt(out)? {
        return Err("a movement between data formats (the gather copies elements)".to_string().into());
    }
    pb.cb(7, fmt(src)?, 1, "gather scratch");
    pb.cb(CB_OUT, fmt(out)?, 2, "out");
    let steps = map.steps.len();
    pb.reader = vec![units_loop(vec![
        Op::Reserve { cb: CB_OUT, n: 1 },
        Op::GatherTile { tensor: st, scratch: 7, tile: unit(), rows, cols, map: Box::new(map), cb: CB_OUT, slot: c(0) },
        Op::Push { cb: CB_OUT, n: 1 },
    ])];
    pb.writer = vec![units_loop(vec![
        Op::Wait { cb: CB_OUT, n: 1 },
        Op::WriteTile { tensor: ot, tile: unit(), cb: CB_OUT, slot: c(0) },
        Op::WriteBarrier,
        Op::Pop { cb: CB_OUT, n: 1 },
    ])];
    pb.notes.push(format!("{steps} movement steps gathered by the reader"));
    pb.finish(b * rows.div_ceil(32) * cols.div_ceil(32))
}

/// A concatenation: per output tile, the reader fills it with zeros and writes each input's part
/// (`ConcatPartTile`, one per input), the writer writes it; no compute.
fn concat(cx: &Ctx, grp: &Group, a: usize, name: &str, kernel: usize) -> R<Program> {
    let g = cx.g;
    let node = &g.nodes[a];
    let GOp::Concat { axis } = &node.op else { unreachable!("dispatched on concat") };
    let out = node.outputs[0];
    if grp.nodes.len() != 1 || grp.outputs[0] != out {
        return Err("a concatenation with an epilogue".to_string().into());
    }
    let dims: Vec<u64> = cx.dims(out)?.into_iter().map(|d| d as u64).collect();
    let axis = if *axis < 0 { *axis + dims.len() as i64 } else { *axis } as usize;
    if axis >= dims.len() || node.inputs.len() > 16 || g.ty(out).dtype != sovc_ir::DType::F32 {
        return Err("a concatenation this template does not handle".to_string().into());
    }
    let mut pb = cx.builder(name, kernel, "concat");
    let fmt = |v: ValueId| cx.dram(v).map(|i| cx.tensors[i as usize].format);
    let of = fmt(out)?;
    if node.inputs.iter().any(|&v| fmt(v).ok() != Some(of)) || matches!(of, DataFormat::Bfp8_b | DataFormat::Bfp4_b) {
        return Err("a concatenation of tensors in different formats".to_string().into());
    }
    let ot = pb.tensor(cx.dram(out)?);
    let (b, rows, cols) = cx.view(out)?;
    pb.cb(7, of, 1, "gather scratch");
    pb.cb(CB_OUT, of, 2, "out");
    let mut rb =
        vec![Op::Reserve { cb: CB_OUT, n: 1 }, Op::FillTile { cb: CB_OUT, slot: c(0), fill: Fill::Value(0.0) }];
    let mut start = 0u64;
    for &v in &node.inputs {
        let size = cx.dims(v)?[axis] as u64;
        let t = pb.tensor(cx.dram(v)?);
        rb.push(Op::ConcatPartTile {
            tensor: t,
            scratch: 7,
            tile: unit(),
            rows,
            cols,
            dims: dims.clone(),
            axis: axis as u32,
            start,
            size,
            cb: CB_OUT,
            slot: c(0),
        });
        start += size;
    }
    rb.push(Op::Push { cb: CB_OUT, n: 1 });
    pb.reader = vec![units_loop(rb)];
    pb.writer = vec![units_loop(vec![
        Op::Wait { cb: CB_OUT, n: 1 },
        Op::WriteTile { tensor: ot, tile: unit(), cb: CB_OUT, slot: c(0) },
        Op::WriteBarrier,
        Op::Pop { cb: CB_OUT, n: 1 },
    ])];
    pb.notes.push(format!("{} inputs along axis {axis}, gathered by the reader", node.inputs.len()));
    pb.finish(b * rows.div_ceil(32) * cols.div_ceil(32))
}

/// The tile products of a `bh x bw` block over `kb` K tiles from A in CB 0 (`bh x kb` tiles) and B in CB
/// 1 (`kb x bw`) (and, in split precision, their low parts in CBs 17 and 18: hi*hi + hi*lo + lo*hi),
/// accumulated into Dst tile `i * bw + j`.
pub fn products(bh: u64, bw: u64, kb: u64, split: bool) -> Vec<Op> {
    let pairs: &[(u8, u8)] = if split { &[(0, 1), (0, 18), (17, 1)] } else { &[(0, 1)] };
    let mut ops = Vec::new();
    for i in 0..bh {
        for j in 0..bw {
            for kk in 0..kb {
                for &(in0, in1) in pairs {
                    let (t0, t1) = (c(i * kb + kk), c(kk * bw + j));
                    ops.push(Op::Matmul { in0, in1, t0, t1, dst: (i * bw + j) as u8, transpose: false });
                }
            }
        }
    }
    ops
}

/// Split precision: the ops that put tile `tile` of operand `v` into slot `slot` of CBs `hi` and `lo` (its
/// bf16 high and low parts): a constant's stored parts, or the FP32 tile read into `scratch` and split by
/// the reader. Reads of stored parts are left for the caller's barrier.
pub fn split_operand(
    cx: &Ctx,
    pb: &mut ProgramBuilder,
    v: ValueId,
    tile: Ix,
    cbs: (u8, u8, u8),
    slot: Ix,
) -> R<Vec<Op>> {
    let (hi, lo, scratch) = cbs;
    if let Some(&(h, l)) = cx.parts.get(&v) {
        let (ht, lt) = (pb.tensor(h), pb.tensor(l));
        return Ok(vec![
            Op::ReadTile { tensor: ht, tile: tile.clone(), cb: hi, slot: slot.clone() },
            Op::ReadTile { tensor: lt, tile, cb: lo, slot },
        ]);
    }
    let t = cx.dram(v)?;
    if cx.tensors[t as usize].format != DataFormat::Float32 {
        return Err(format!("split precision needs %{} in FP32", v.0).into());
    }
    let t = pb.tensor(t);
    Ok(vec![
        Op::Reserve { cb: scratch, n: 1 },
        Op::ReadTile { tensor: t, tile, cb: scratch, slot: c(0) },
        Op::ReadBarrier,
        Op::SplitTile { from: scratch, hi, lo, slot },
    ])
}
