//! Row programs: softmax and layer norm over the last axis, and attention. Each unit is one row of tiles
//! (all the column tiles of 32 rows). Row reductions use `reduce_tile` with a scaler tile of ones that
//! the reader writes once; per-row results (max, sum, mean, 1/std) live in column 0 of a tile and are
//! applied with column-broadcast FPU ops. Padding columns are excluded with -3e38 (softmax: exp gives 0)
//! or a 0/1 column mask (layer norm); intermediates between phases stay in FP32 circular buffers when
//! accumulation is FP32.

use crate::builder::*;
use crate::chain;
use crate::lower::{Ctx, LowerError};
use sovc_ir::ValueId;
use sovc_runtime::tensix::program::*;

type R<T> = Result<T, LowerError>;

/// The value padding columns get before a max or an exp (finite, so it prints and serializes).
const NEG_BIG: f32 = -3.0e38;
const CB_SCALER: u8 = 8;

fn v(i: u8) -> Ix {
    Ix::Var(i)
}

/// The reader's one-time fill of the scaler CB (ones, for sums and maxima).
fn scaler_fill() -> Vec<Op> {
    vec![
        Op::Reserve { cb: CB_SCALER, n: 1 },
        Op::FillTile { cb: CB_SCALER, slot: c(0), fill: Fill::Scaler(1.0) },
        Op::Push { cb: CB_SCALER, n: 1 },
    ]
}

/// Reduces the `w` waited tiles of `x` along rows into one tile pushed to `to`, with `post` ops on the
/// result. A max starts from the first tile itself (a fresh Dst holds zeros).
fn reduce_row(kind: ReduceKind, x: u8, w: u64, post: &[SfpuUnary], to: u8) -> Vec<Op> {
    let mut ops = vec![Op::Acquire];
    if kind == ReduceKind::Max {
        ops.push(Op::CopyTile { cb: x, tile: c(0), dst: 0 });
    }
    ops.push(lp(1, w, vec![Op::Reduce { kind, dim: ReduceDim::Row, cb: x, t: v(1), scaler_cb: CB_SCALER, dst: 0 }]));
    ops.extend(post.iter().map(|&op| Op::Unary { op, dst: 0 }));
    ops.extend([
        Op::Commit,
        Op::WaitDst,
        Op::Reserve { cb: to, n: 1 },
        Op::Pack { dst: 0, cb: to, slot: c(0) },
        Op::Push { cb: to, n: 1 },
        Op::Release,
    ]);
    ops
}

/// For each of `w` tiles: Dst 0 = `body`, then packed into slot `v1` of `to` (reserved and pushed as a
/// whole), or, when `to` is the output CB, pushed one tile at a time.
fn per_tile(w: u64, body: Vec<Op>, to: u8) -> Vec<Op> {
    let mut inner = vec![Op::Acquire];
    inner.extend(body);
    inner.extend([Op::Commit, Op::WaitDst]);
    if to == CB_OUT {
        inner.extend([
            Op::Reserve { cb: to, n: 1 },
            Op::Pack { dst: 0, cb: to, slot: c(0) },
            Op::Push { cb: to, n: 1 },
            Op::Release,
        ]);
        vec![lp(1, w, inner)]
    } else {
        inner.extend([Op::Pack { dst: 0, cb: to, slot: v(1) }, Op::Release]);
        vec![Op::Reserve { cb: to, n: w as u32 }, lp(1, w, inner), Op::Push { cb: to, n: w as u32 }]
    }
}

/// Softmax of the `w` waited tiles of `x` (popped at the end) into `to`, using CBs `mx`, `ex`, `sm`.
fn softmax_ops(x: u8, w: u64, mx: u8, ex: u8, sm: u8, to: u8) -> Vec<Op> {
    let mut ops = reduce_row(ReduceKind::Max, x, w, &[], mx);
    ops.push(Op::Wait { cb: mx, n: 1 });
    ops.extend(per_tile(
        w,
        vec![
            Op::Binary { op: FpuBinary::Sub, bcast: Bcast::Cols, a: x, b: mx, ta: v(1), tb: c(0), dst: 0 },
            Op::Unary { op: SfpuUnary::Exp, dst: 0 },
        ],
        ex,
    ));
    ops.extend([Op::Pop { cb: x, n: w as u32 }, Op::Pop { cb: mx, n: 1 }, Op::Wait { cb: ex, n: w as u32 }]);
    ops.extend(reduce_row(ReduceKind::Sum, ex, w, &[SfpuUnary::Recip], sm));
    ops.push(Op::Wait { cb: sm, n: 1 });
    ops.extend(per_tile(
        w,
        vec![Op::Binary { op: FpuBinary::Mul, bcast: Bcast::Cols, a: ex, b: sm, ta: v(1), tb: c(0), dst: 0 }],
        to,
    ));
    ops.extend([Op::Pop { cb: ex, n: w as u32 }, Op::Pop { cb: sm, n: 1 }]);
    ops
}

/// The writer of a row unit: `w` tiles of row tile `r` (of `rt` per batch entry) of a `rows x cols` view.
fn row_writer(t: u8, r: Ix, rt: u64, w: u64, rows: u64, cols: u64) -> Vec<Op> {
    let mut body = vec![Op::Wait { cb: CB_OUT, n: 1 }];
    if !rows.is_multiple_of(32) || !cols.is_multiple_of(32) {
        body.push(Op::PadTile {
            cb: CB_OUT,
            slot: c(0),
            rows: valid(rows, r.clone().modulo(rt as i64)),
            cols: valid(cols, v(1)),
            value: 0.0,
            front: true,
        });
    }
    body.extend([
        Op::WriteTile { tensor: t, tile: r.times(w as i64).plus(v(1)), cb: CB_OUT, slot: c(0) },
        Op::WriteBarrier,
        Op::Pop { cb: CB_OUT, n: 1 },
    ]);
    vec![units_loop(vec![lp(1, w, body)])]
}

/// Reads row `r` (`w` tiles) of tensor `t` into `cb`, padding columns past `cols` with `pad`.
fn read_row(t: u8, r: Ix, w: u64, cols: u64, cb: u8, pad: Option<f32>) -> Vec<Op> {
    let mut ops = vec![
        Op::Reserve { cb, n: w as u32 },
        lp(1, w, vec![Op::ReadTile { tensor: t, tile: r.times(w as i64).plus(v(1)), cb, slot: v(1) }]),
        Op::ReadBarrier,
    ];
    if let (Some(value), true) = (pad, !cols.is_multiple_of(32)) {
        ops.push(Op::PadTile { cb, slot: c(w - 1), rows: c(32), cols: c(cols % 32), value, front: false });
    }
    ops.push(Op::Push { cb, n: w as u32 });
    ops
}

pub fn softmax(cx: &Ctx, a: usize, out: ValueId, name: &str, kernel: usize) -> R<Program> {
    let node = &cx.g.nodes[a];
    let x = node.inputs[0];
    cx.default_view(x)?;
    cx.default_view(out)?;
    let (b, rows, cols) = sovc_runtime::tensix::device::view(&cx.dims(x)?);
    let (rt, w) = (rows.div_ceil(32), cols.div_ceil(32));
    let mut pb = cx.builder(name, kernel, "softmax");
    let (xt, ot) = (pb.tensor(cx.dram(x)?), pb.tensor(cx.dram(out)?));
    let (xf, of, inter) =
        (cx.tensors[cx.dram(x)? as usize].format, cx.tensors[cx.dram(out)? as usize].format, cx.inter());
    pb.cb(0, xf, w as u32, "row");
    pb.cb(CB_SCALER, cx.act(), 1, "scaler");
    pb.cb(24, inter, 1, "row max");
    pb.cb(25, inter, w as u32, "exp");
    pb.cb(26, inter, 1, "1/sum");
    pb.cb(CB_OUT, of, 2, "out");
    let mut rd = scaler_fill();
    rd.push(units_loop(read_row(xt, unit(), w, cols, 0, Some(NEG_BIG))));
    pb.reader = rd;
    pb.compute = vec![
        Op::Wait { cb: CB_SCALER, n: 1 },
        units_loop({
            let mut o = vec![Op::Wait { cb: 0, n: w as u32 }];
            o.extend(softmax_ops(0, w, 24, 25, 26, CB_OUT));
            o
        }),
        Op::Pop { cb: CB_SCALER, n: 1 },
    ];
    pb.writer = row_writer(ot, unit(), rt, w, rows, cols);
    pb.notes.push(format!("rows of {w} tiles"));
    pb.finish(b * rt)
}

pub fn layer_norm(cx: &Ctx, a: usize, out: ValueId, eps: f32, name: &str, kernel: usize) -> R<Program> {
    let node = &cx.g.nodes[a];
    let x = node.inputs[0];
    for &v in node.inputs.iter().chain([&out]) {
        cx.default_view(v)?;
    }
    let (b, rows, cols) = sovc_runtime::tensix::device::view(&cx.dims(x)?);
    let (rt, w) = (rows.div_ceil(32), cols.div_ceil(32));
    let mut pb = cx.builder(name, kernel, "layer_norm");
    let (xt, ot) = (pb.tensor(cx.dram(x)?), pb.tensor(cx.dram(out)?));
    let (xf, of, inter) =
        (cx.tensors[cx.dram(x)? as usize].format, cx.tensors[cx.dram(out)? as usize].format, cx.inter());
    pb.cb(0, xf, w as u32, "row");
    pb.cb(CB_SCALER, cx.act(), 1, "scaler");
    let mut rd = scaler_fill();
    let mut cstart = vec![Op::Wait { cb: CB_SCALER, n: 1 }];
    let mut cend = vec![Op::Pop { cb: CB_SCALER, n: 1 }];
    // Scale and bias: one row of tiles each, broadcast down the rows once.
    let mut params = Vec::new();
    for (i, &p) in node.inputs[1..].iter().enumerate() {
        let d = cx.dims(p)?;
        if d.iter().rev().skip(1).any(|&x| x != 1) || d.last() != Some(&(cols as usize)) {
            return Err(format!("layer norm parameter %{} is {:?}, not one row of {cols}", p.0, d).into());
        }
        let cb = 2 + i as u8;
        let pt = pb.tensor(cx.dram(p)?);
        pb.cb(cb, cx.tensors[cx.dram(p)? as usize].format, w as u32, if i == 0 { "scale" } else { "bias" });
        rd.extend(read_row(pt, c(0), w, cols, cb, None));
        let last = rd.pop().expect("push");
        rd.push(lp(1, w, vec![Op::BcastTile { cb, slot: v(1), bcast: Bcast::Rows }]));
        rd.push(last);
        cstart.push(Op::Wait { cb, n: w as u32 });
        cend.push(Op::Pop { cb, n: w as u32 });
        params.push(cb);
    }
    let masked = cols % 32 != 0;
    if masked {
        pb.cb(4, cx.act(), w as u32, "column mask");
        rd.extend([
            Op::Reserve { cb: 4, n: w as u32 },
            lp(1, w, vec![Op::FillTile { cb: 4, slot: v(1), fill: Fill::Value(1.0) }]),
            Op::FillTile {
                cb: 4,
                slot: c(w - 1),
                fill: Fill::Cols { cols: (cols % 32) as u32, inside: 1.0, outside: 0.0 },
            },
            Op::Push { cb: 4, n: w as u32 },
        ]);
        cstart.push(Op::Wait { cb: 4, n: w as u32 });
        cend.push(Op::Pop { cb: 4, n: w as u32 });
    }
    pb.cb(24, inter, 1, "mean");
    pb.cb(25, inter, w as u32, "centered");
    pb.cb(26, inter, w as u32, "squares");
    pb.cb(27, inter, 1, "1/std");
    pb.cb(CB_OUT, of, 2, "out");
    rd.push(units_loop(read_row(xt, unit(), w, cols, 0, None)));
    pb.reader = rd;
    let inv = 1.0 / cols as f32;
    let mut o = vec![Op::Wait { cb: 0, n: w as u32 }];
    o.extend(reduce_row(ReduceKind::Sum, 0, w, &[SfpuUnary::MulScalar(inv)], 24));
    o.push(Op::Wait { cb: 24, n: 1 });
    let mut center =
        vec![Op::Binary { op: FpuBinary::Sub, bcast: Bcast::Cols, a: 0, b: 24, ta: v(1), tb: c(0), dst: 0 }];
    if masked {
        center.extend([Op::CopyTile { cb: 4, tile: v(1), dst: 1 }, Op::BinaryDst { op: SfpuBinary::Mul, a: 0, b: 1 }]);
    }
    o.extend(per_tile(w, center, 25));
    o.extend([Op::Pop { cb: 0, n: w as u32 }, Op::Pop { cb: 24, n: 1 }, Op::Wait { cb: 25, n: w as u32 }]);
    o.extend(per_tile(
        w,
        vec![Op::Binary { op: FpuBinary::Mul, bcast: Bcast::None, a: 25, b: 25, ta: v(1), tb: v(1), dst: 0 }],
        26,
    ));
    o.push(Op::Wait { cb: 26, n: w as u32 });
    o.extend(reduce_row(
        ReduceKind::Sum,
        26,
        w,
        &[SfpuUnary::MulScalar(inv), SfpuUnary::AddScalar(eps), SfpuUnary::Rsqrt],
        27,
    ));
    o.extend([Op::Pop { cb: 26, n: w as u32 }, Op::Wait { cb: 27, n: 1 }]);
    let mut norm =
        vec![Op::Binary { op: FpuBinary::Mul, bcast: Bcast::Cols, a: 25, b: 27, ta: v(1), tb: c(0), dst: 0 }];
    for (i, &cb) in params.iter().enumerate() {
        let op = if i == 0 { SfpuBinary::Mul } else { SfpuBinary::Add };
        norm.extend([Op::CopyTile { cb, tile: v(1), dst: 1 }, Op::BinaryDst { op, a: 0, b: 1 }]);
    }
    o.extend(per_tile(w, norm, CB_OUT));
    o.extend([Op::Pop { cb: 25, n: w as u32 }, Op::Pop { cb: 27, n: 1 }]);
    cstart.push(units_loop(o));
    cstart.extend(cend);
    pb.compute = cstart;
    pb.writer = row_writer(ot, unit(), rt, w, rows, cols);
    pb.notes.push(format!("rows of {w} tiles"));
    pb.finish(b * rt)
}

/// Attention per (batch entry, row tile of queries): S = Q K^T (K tiles transposed by `matmul_tiles`),
/// scaled, masked, softmax along the row, then P V.
pub fn attention(cx: &Ctx, a: usize, scale: f32, name: &str, kernel: usize) -> R<Program> {
    let node = &cx.g.nodes[a];
    let (q, k, val, out) = (node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]);
    let mask = node.inputs.get(3).copied();
    for &v in node.inputs.iter().chain(&node.outputs) {
        cx.default_view(v)?;
    }
    let (qd, kd, vd, od) = (cx.dims(q)?, cx.dims(k)?, cx.dims(val)?, cx.dims(out)?);
    if qd.len() < 2 || kd.len() < 2 || vd.len() < 2 {
        return Err("attention operands of rank < 2".to_string().into());
    }
    let (sq, d, sk, dv) =
        (qd[qd.len() - 2] as u64, qd[qd.len() - 1] as u64, kd[kd.len() - 2] as u64, vd[vd.len() - 1] as u64);
    let (sqt, dt, skt, dvt) = (sq.div_ceil(32), d.div_ceil(32), sk.div_ceil(32), dv.div_ceil(32));
    let obd = &od[..od.len() - 2];
    let obn: u64 = obd.iter().product::<usize>() as u64;
    let mut pb = cx.builder(name, kernel, "attention");
    let (qt, kt, vt, ot) =
        (pb.tensor(cx.dram(q)?), pb.tensor(cx.dram(k)?), pb.tensor(cx.dram(val)?), pb.tensor(cx.dram(out)?));
    let fmt = |x| cx.dram(x).map(|i| cx.tensors[i as usize].format);
    let inter = cx.inter();
    pb.cb(0, fmt(q)?, dt as u32, "q row");
    pb.cb(1, fmt(k)?, (skt * dt) as u32, "k");
    pb.cb(2, fmt(val)?, (skt * dvt) as u32, "v");
    pb.cb(CB_SCALER, cx.act(), 1, "scaler");
    let u = unit();
    let ob = u.clone().over(sqt as i64);
    let qi = u.modulo(sqt as i64);
    let bi = |dims: &[usize]| {
        crate::templates::batch_index(&dims[..dims.len() - 2], obd, &ob).ok_or("attention batch dims do not broadcast")
    };
    let (qb, kb, vb) = (bi(&qd)?, bi(&kd)?, bi(&vd)?);
    let mut rd = scaler_fill();
    let mut cstart = vec![Op::Wait { cb: CB_SCALER, n: 1 }];
    let mut cend = vec![Op::Pop { cb: CB_SCALER, n: 1 }];
    let kpad = sk % 32 != 0;
    if kpad {
        pb.cb(5, cx.act(), skt as u32, "key padding");
        rd.extend([
            Op::Reserve { cb: 5, n: skt as u32 },
            lp(1, skt, vec![Op::FillTile { cb: 5, slot: v(1), fill: Fill::Value(0.0) }]),
            Op::FillTile {
                cb: 5,
                slot: c(skt - 1),
                fill: Fill::Cols { cols: (sk % 32) as u32, inside: 0.0, outside: NEG_BIG },
            },
            Op::Push { cb: 5, n: skt as u32 },
        ]);
        cstart.push(Op::Wait { cb: 5, n: skt as u32 });
        cend.push(Op::Pop { cb: 5, n: skt as u32 });
    }
    let mut unit_rd = vec![
        Op::Reserve { cb: 0, n: dt as u32 },
        Op::Reserve { cb: 1, n: (skt * dt) as u32 },
        Op::Reserve { cb: 2, n: (skt * dvt) as u32 },
        lp(
            1,
            dt,
            vec![Op::ReadTile {
                tensor: qt,
                tile: qb.times(sqt as i64).plus(qi.clone()).times(dt as i64).plus(v(1)),
                cb: 0,
                slot: v(1),
            }],
        ),
        lp(
            1,
            skt,
            vec![lp(
                2,
                dt,
                vec![Op::ReadTile {
                    tensor: kt,
                    tile: kb.times(skt as i64).plus(v(1)).times(dt as i64).plus(v(2)),
                    cb: 1,
                    slot: v(1).times(dt as i64).plus(v(2)),
                }],
            )],
        ),
        lp(
            1,
            skt,
            vec![lp(
                2,
                dvt,
                vec![Op::ReadTile {
                    tensor: vt,
                    tile: vb.times(skt as i64).plus(v(1)).times(dvt as i64).plus(v(2)),
                    cb: 2,
                    slot: v(1).times(dvt as i64).plus(v(2)),
                }],
            )],
        ),
    ];
    let mut unit_push = vec![
        Op::Push { cb: 0, n: dt as u32 },
        Op::Push { cb: 1, n: (skt * dt) as u32 },
        Op::Push { cb: 2, n: (skt * dvt) as u32 },
    ];
    let mut cwait = vec![
        Op::Wait { cb: 0, n: dt as u32 },
        Op::Wait { cb: 1, n: (skt * dt) as u32 },
        Op::Wait { cb: 2, n: (skt * dvt) as u32 },
    ];
    let mut score = vec![
        lp(
            2,
            dt,
            vec![Op::Matmul {
                in0: 0,
                in1: 1,
                t0: v(2),
                t1: v(1).times(dt as i64).plus(v(2)),
                dst: 0,
                transpose: true,
            }],
        ),
        Op::Unary { op: SfpuUnary::MulScalar(scale), dst: 0 },
    ];
    let mut mask_fix = Vec::new();
    if let Some(m) = mask {
        let md = cx.dims(m)?;
        let mt = pb.tensor(cx.dram(m)?);
        pb.cb(3, fmt(m)?, skt as u32, "mask row");
        let mut sdims = obd.to_vec();
        sdims.extend([sq as usize, sk as usize]);
        let k = sdims.len() as isize - 2;
        let (tile, bcast) =
            chain::leaf_tile(&md, cx.view(m)?, &sdims, k, &ob, &qi, &v(1)).ok_or("the mask does not broadcast")?;
        unit_rd.push(Op::Reserve { cb: 3, n: skt as u32 });
        unit_rd.push(lp(1, skt, vec![Op::ReadTile { tensor: mt, tile, cb: 3, slot: v(1) }]));
        if bcast != Bcast::None {
            mask_fix.push(lp(1, skt, vec![Op::BcastTile { cb: 3, slot: v(1), bcast }]));
        }
        unit_push.push(Op::Push { cb: 3, n: skt as u32 });
        cwait.push(Op::Wait { cb: 3, n: skt as u32 });
        score.extend([Op::CopyTile { cb: 3, tile: v(1), dst: 1 }, Op::BinaryDst { op: SfpuBinary::Add, a: 0, b: 1 }]);
    }
    if kpad {
        score.extend([Op::CopyTile { cb: 5, tile: v(1), dst: 1 }, Op::BinaryDst { op: SfpuBinary::Add, a: 0, b: 1 }]);
    }
    unit_rd.push(Op::ReadBarrier);
    unit_rd.extend(mask_fix);
    unit_rd.extend(unit_push);
    rd.push(units_loop(unit_rd));
    pb.reader = rd;
    for (i, r) in [(24, "scores"), (25, "row max"), (26, "exp"), (27, "1/sum"), (28, "probabilities")] {
        let pages = if i == 24 || i == 26 || i == 28 { skt } else { 1 };
        pb.cb(i, inter, pages as u32, r);
    }
    pb.cb(CB_OUT, fmt(out)?, 2, "out");
    let mut o = cwait;
    o.extend(per_tile(skt, score, 24));
    o.extend([Op::Pop { cb: 0, n: dt as u32 }, Op::Pop { cb: 1, n: (skt * dt) as u32 }]);
    if mask.is_some() {
        o.push(Op::Pop { cb: 3, n: skt as u32 });
    }
    o.push(Op::Wait { cb: 24, n: skt as u32 });
    o.extend(softmax_ops(24, skt, 25, 26, 27, 28));
    o.push(Op::Wait { cb: 28, n: skt as u32 });
    o.extend(per_tile(
        dvt,
        vec![lp(
            2,
            skt,
            vec![Op::Matmul {
                in0: 28,
                in1: 2,
                t0: v(2),
                t1: v(2).times(dvt as i64).plus(v(1)),
                dst: 0,
                transpose: false,
            }],
        )],
        CB_OUT,
    ));
    o.extend([Op::Pop { cb: 28, n: skt as u32 }, Op::Pop { cb: 2, n: (skt * dvt) as u32 }]);
    cstart.push(units_loop(o));
    cstart.extend(cend);
    pb.compute = cstart;
    let r = ob.times(sqt as i64).plus(qi);
    pb.writer = row_writer(ot, r, sqt, dvt, sq, dv);
    let (fid, why) = crate::templates::fidelity(cx, fmt(q)?, fmt(k)?);
    pb.fidelity = fid;
    pb.notes.push(why);
    pb.finish(obn * sqt)
}

/// A reduction (sum, mean or max) over the columns of the input's view, with an output that is one row:
/// global pooling of `[1, C, H*W]` activations followed by a flatten to `[1, C]`. Per row tile of
/// channels the reader reads the row of tiles; the compute kernel reduces along rows (`reduce_tile`,
/// results in column 0), packs, transposes the tile (`transpose_wh_tile`) so the results form row 0, and
/// packs that.
pub fn reduce_to_row(cx: &Ctx, a: usize, out: ValueId, name: &str, kernel: usize) -> R<Program> {
    let g = cx.g;
    let node = &g.nodes[a];
    let sovc_ir::Op::Reduce { kind, axes, .. } = &node.op else { unreachable!("dispatched on reduce") };
    let x = node.inputs[0];
    let xd = cx.dims(x)?;
    let k = cx.k(x);
    let after: Vec<i64> = ((k + 1).max(0) as usize..xd.len()).map(|i| i as i64).collect();
    if k < 0 || *axes != after || axes.is_empty() {
        return Err(format!("reduce over axes {axes:?} of a value stored with rows at dim {k}").into());
    }
    let (b, rows, cols) = cx.view(x)?;
    // The result as one row (transposed: global pooling before a flatten) or as the column the row
    // reduction gives (keepdims, feeding a convolution).
    let as_row = b == 1 && cx.view(out)? == (1, 1, rows);
    if !as_row && cx.view(out)? != (b, rows, 1) || g.ty(x).dtype != sovc_ir::DType::F32 {
        return Err("a reduction whose result is neither one row nor one column of the input's rows"
            .to_string()
            .into());
    }
    let (kind, scale) = match kind {
        sovc_ir::ReduceKind::Sum => (ReduceKind::Sum, 1.0),
        sovc_ir::ReduceKind::Mean => (ReduceKind::Sum, 1.0 / cols as f32),
        sovc_ir::ReduceKind::Max => (ReduceKind::Max, 1.0),
        other => return Err(format!("a `{}` reduction", other.as_str()).into()),
    };
    let (rt, w) = (rows.div_ceil(32), cols.div_ceil(32));
    let mut pb = cx.builder(name, kernel, "reduce");
    let fmt = |v: ValueId| cx.dram(v).map(|i| cx.tensors[i as usize].format);
    let (xt, ot) = (pb.tensor(cx.dram(x)?), pb.tensor(cx.dram(out)?));
    pb.cb(0, fmt(x)?, w as u32, "row");
    pb.cb(CB_SCALER, cx.act(), 1, "scaler");
    pb.cb(24, cx.inter(), 1, "column of results");
    pb.cb(CB_OUT, fmt(out)?, 2, "out");
    let pad = if kind == ReduceKind::Max { Some(NEG_BIG) } else { None };
    let mut rd = scaler_fill();
    rd.push(units_loop(read_row(xt, unit(), w, cols, 0, pad)));
    pb.reader = rd;
    let post: Vec<SfpuUnary> = if scale == 1.0 { Vec::new() } else { vec![SfpuUnary::MulScalar(scale)] };
    let mut o = vec![Op::Wait { cb: 0, n: w as u32 }];
    if as_row {
        o.extend(reduce_row(kind, 0, w, &post, 24));
        o.extend([
            Op::Pop { cb: 0, n: w as u32 },
            Op::Wait { cb: 24, n: 1 },
            Op::Acquire,
            Op::Transpose { cb: 24, t: c(0), dst: 0 },
            Op::Commit,
            Op::WaitDst,
            Op::Reserve { cb: CB_OUT, n: 1 },
            Op::Pack { dst: 0, cb: CB_OUT, slot: c(0) },
            Op::Push { cb: CB_OUT, n: 1 },
            Op::Release,
            Op::Pop { cb: 24, n: 1 },
        ]);
    } else {
        o.extend(reduce_row(kind, 0, w, &post, CB_OUT));
        o.push(Op::Pop { cb: 0, n: w as u32 });
    }
    pb.compute = vec![Op::Wait { cb: CB_SCALER, n: 1 }, units_loop(o), Op::Pop { cb: CB_SCALER, n: 1 }];
    // The result row (column tile `unit` of the output, one valid row) or column (row tile `unit`).
    let mut wb = vec![Op::Wait { cb: CB_OUT, n: 1 }];
    let (vr, vc) = if as_row { (c(1), valid(rows, unit())) } else { (valid(rows, unit().modulo(rt as i64)), c(1)) };
    wb.push(Op::PadTile { cb: CB_OUT, slot: c(0), rows: vr, cols: vc, value: 0.0, front: true });
    wb.extend([
        Op::WriteTile { tensor: ot, tile: unit(), cb: CB_OUT, slot: c(0) },
        Op::WriteBarrier,
        Op::Pop { cb: CB_OUT, n: 1 },
    ]);
    pb.writer = vec![units_loop(wb)];
    pb.notes.push(if as_row {
        format!("rows of {w} tiles reduced, then transposed into one row")
    } else {
        format!("rows of {w} tiles reduced into a column")
    });
    pb.finish(b * rt)
}
