//! Groups that start by taking a part of a value (one output of a `split`, a `slice`, rows of an
//! embedding table picked by a `gather`) and continue with elementwise ops: the reader gathers each tile
//! of the part from the source's tiles (`GatherTile` with a slice step, any offsets; `EmbedTile` for an
//! embedding), compute runs the elementwise chain on it in Dst, as a matmul's epilogue runs on its
//! product, and the writer writes the result. A group with several results (a split whose
//! parts each get a bias, as in a merged Q/K/V projection) is lowered as one such program per result.

use crate::builder::*;
use crate::chain;
use crate::lower::{Ctx, Group, LowerError};
use crate::templates::{chain_ops, pack_one, pad_out, read_leaves};
use sovc_ir::{Op as GOp, ValueId};
use sovc_runtime::tensix::program::*;

type R<T> = Result<T, LowerError>;

/// Per result of `grp`, the group of the nodes it needs (a node several results need is in each).
pub fn cones(g: &sovc_ir::Graph, grp: &Group) -> Vec<Group> {
    grp.outputs
        .iter()
        .map(|&o| {
            let mut need = vec![o];
            let mut nodes = Vec::new();
            for &n in grp.nodes.iter().rev() {
                if g.nodes[n].outputs.iter().any(|v| need.contains(v)) {
                    nodes.push(n);
                    need.extend(&g.nodes[n].inputs);
                }
            }
            nodes.reverse();
            let inputs = grp.inputs.iter().copied().filter(|v| need.contains(v)).collect();
            Group { nodes, inputs, outputs: vec![o] }
        })
        .collect()
}

/// The part program of `grp`, whose first node `a` is a `split` or `slice` and whose other nodes
/// (`rest`) are elementwise ops and reshapes that keep the part's tiles in place.
pub fn lower(cx: &Ctx, grp: &Group, a: usize, rest: &[usize], name: &str, kernel: usize) -> R<Program> {
    let g = cx.g;
    let node = &g.nodes[a];
    let x = node.inputs[0];
    let xd = cx.dims(x)?;
    let u64s = |d: &[usize]| d.iter().map(|&v| v as u64).collect::<Vec<u64>>();
    // The part `sv` the rest reads, and where it starts in `x` (an embedding has no map).
    // A gather along an axis with only 1s before it picks rows of a `vocab x width` table.
    let gather_axis = match &node.op {
        GOp::Gather { axis } => {
            let ax = if *axis < 0 { axis + xd.len() as i64 } else { *axis };
            (0..xd.len() as i64).contains(&ax).then_some(ax as usize).filter(|&a| xd[..a].iter().all(|&d| d == 1))
        }
        _ => None,
    };
    let (sv, starts, steps) = match &node.op {
        GOp::Gather { .. } if gather_axis.is_some() => (node.outputs[0], Vec::new(), Vec::new()),
        GOp::Split { axis, .. } => {
            let used = |v: &ValueId| grp.outputs.contains(v) || rest.iter().any(|&n| g.nodes[n].inputs.contains(v));
            let i = node.outputs.iter().position(used).ok_or("no part of the split is used")?;
            let ax = if *axis < 0 { axis + xd.len() as i64 } else { *axis } as usize;
            let mut starts = vec![0u64; xd.len()];
            for &o in &node.outputs[..i] {
                starts[ax] += cx.dims(o)?[ax] as u64;
            }
            (node.outputs[i], starts, vec![1u64; xd.len()])
        }
        GOp::Slice { starts, ends, steps } => {
            let st = (0..xd.len())
                .map(|i| sovc_ir::infer::slice_range(starts[i], ends[i], steps[i], xd[i] as i64).0 as u64)
                .collect();
            if steps.iter().any(|&s| s < 1) {
                return Err("a slice with a negative step".to_string().into());
            }
            (node.outputs[0], st, steps.iter().map(|&s| s as u64).collect())
        }
        op => return Err(format!("no Tensix template for `{}` yet", op.name()).into()),
    };
    let sd = cx.dims(sv)?;
    let out = grp.outputs[0];
    // Integers are stored as FP32; a device program writes f32 values only.
    if g.ty(out).dtype != sovc_ir::DType::F32 {
        return Err(format!("the {} gives {}, not f32", node.op.name(), g.ty(out)).into());
    }
    let od = cx.dims(out)?;
    if xd.len() > 8 {
        return Err("a part of a value of rank above 8".to_string().into());
    }
    // The part is gathered in the result's view. When the chain reshapes it, its tiles in the part's
    // default view must be the result's, and the chain's inputs broadcast against the part's dims.
    let (pv, ov) = (sovc_runtime::tensix::device::view(&sd), cx.view(out)?);
    let (leaf_dims, leaf_k) = if sd == od { (od.clone(), cx.k(out)) } else { (sd.clone(), sd.len() as isize - 2) };
    if sd != od && pv != ov {
        return Err(format!("the ops after the {} move its tiles ({sd:?} to {od:?})", node.op.name()).into());
    }
    let embedding = matches!(node.op, GOp::Gather { .. });
    let map = MoveMap { src_dims: u64s(&xd), steps: vec![MoveStep::Slice { starts, steps, dims: u64s(&sd) }] };
    let mut pb = cx.builder(name, kernel, "part");
    let cap = pb.dst_cap();
    let ch = match rest {
        [] => None,
        _ => Some(chain::compile_in(g, rest, Some(sv), (out, Some(ov)), &cx.scalars, cap)?),
    };
    let fmt = |v: ValueId| cx.dram(v).map(|i| cx.tensors[i as usize].format);
    let (xf, of) = (fmt(x)?, fmt(out)?);
    if ch.is_none() && xf != of {
        return Err("a part moved between data formats (the gather copies elements)".to_string().into());
    }
    let (xt, ot) = (pb.tensor(cx.dram(x)?), pb.tensor(cx.dram(out)?));
    let gather_cb = if ch.is_some() { 0 } else { CB_OUT };
    if ch.is_some() {
        pb.cb(0, xf, 2, &format!("part of %{}", x.0));
    }
    pb.cb(7, xf, 1, "gather scratch");
    let ids = if embedding {
        let iv = node.inputs[1];
        pb.cb(8, fmt(iv)?, 1, "embedding ids scratch");
        Some(pb.tensor(cx.dram(iv)?))
    } else {
        None
    };
    let leaves: Vec<(ValueId, u8)> =
        ch.as_ref().map_or(Vec::new(), |c| c.leaves.iter().enumerate().map(|(i, &v)| (v, 2 + i as u8)).collect());
    if leaves.len() > 5 {
        return Err("the ops after the part read more than 5 inputs".to_string().into());
    }
    for &(v, cb) in &leaves {
        pb.cb(cb, fmt(v)?, 2, &format!("in%{}", v.0));
    }
    pb.cb(CB_OUT, of, 2, "out");
    let (b, rows, cols) = cx.view(out)?;
    let (rt, ct) = (rows.div_ceil(32), cols.div_ceil(32));
    let t = unit();
    let (ob, tr, tc) =
        (t.clone().over((rt * ct) as i64), t.clone().over(ct as i64).modulo(rt as i64), t.clone().modulo(ct as i64));
    // Reader: the part's tile, then the chain's other inputs.
    let source = match ids {
        Some(ids) => Op::EmbedTile {
            table: xt,
            ids,
            scratch: 7,
            ids_scratch: 8,
            tile: t.clone(),
            rows,
            cols,
            vocab: xd[gather_axis.unwrap_or(0)] as u64,
            width: xd[gather_axis.unwrap_or(0) + 1..].iter().product::<usize>() as u64,
            cb: gather_cb,
            slot: c(0),
        },
        None => {
            let map = Box::new(map);
            Op::GatherTile { tensor: xt, scratch: 7, tile: t.clone(), rows, cols, map, cb: gather_cb, slot: c(0) }
        }
    };
    let mut rb = vec![Op::Reserve { cb: gather_cb, n: 1 }, source, Op::Push { cb: gather_cb, n: 1 }];
    if !leaves.is_empty() {
        let pos = [(ob, tr.clone(), tc.clone(), c(0))];
        let (reads, fix) = read_leaves(cx, &mut pb, &leaves, &leaf_dims, leaf_k, &pos)?;
        rb.extend(leaves.iter().map(|&(_, cb)| Op::Reserve { cb, n: 1 }));
        rb.extend(reads);
        rb.push(Op::ReadBarrier);
        rb.extend(fix);
        rb.extend(leaves.iter().map(|&(_, cb)| Op::Push { cb, n: 1 }));
    }
    pb.reader = vec![units_loop(rb)];
    // Compute: the part into Dst 0, the chain on it.
    if let Some(ch) = &ch {
        let leaf_cb: Vec<u8> = leaves.iter().map(|l| l.1).collect();
        let mut cbody = vec![Op::Wait { cb: 0, n: 1 }];
        cbody.extend(leaves.iter().map(|&(_, cb)| Op::Wait { cb, n: 1 }));
        cbody.extend([Op::Acquire, Op::CopyTile { cb: 0, tile: c(0), dst: 0 }]);
        cbody.extend(chain_ops(ch, &leaf_cb, &c(0), &|d| d));
        cbody.extend(pack_one(ch.result));
        cbody.push(Op::Pop { cb: 0, n: 1 });
        cbody.extend(leaves.iter().map(|&(_, cb)| Op::Pop { cb, n: 1 }));
        pb.compute = vec![units_loop(cbody)];
        pb.notes.push(format!("{} Dst tiles", ch.slots));
    }
    let mut wb = vec![Op::Wait { cb: CB_OUT, n: 1 }];
    if ch.is_some() {
        wb.extend(pad_out(rows, cols, &tr, &tc, CB_OUT, c(0)));
    }
    wb.extend([
        Op::WriteTile { tensor: ot, tile: t, cb: CB_OUT, slot: c(0) },
        Op::WriteBarrier,
        Op::Pop { cb: CB_OUT, n: 1 },
    ]);
    pb.writer = vec![units_loop(wb)];
    pb.notes.push(if embedding {
        format!("rows of the {xd:?} table %{} picked by %{}, gathered by the reader", x.0, node.inputs[1].0)
    } else {
        format!("part of %{} ({:?} of {xd:?}) gathered by the reader", x.0, sd)
    });
    pb.finish(b * rt * ct)
}
