//! Split precision for activations: before a matmul or convolution reads an FP32 activation as bf16
//! high and low parts, one program writes both parts to DRAM, split on the SFPU (`typecast_tile` rounds
//! to bf16 with integer ops, an FP32 subtraction leaves the remainder, the packer rounds it to bf16).
//! Every core that reads the activation then reads its parts as it reads a constant's, instead of
//! splitting each tile on a RISC-V core (which has no floating point: about 32 cycles per element
//! against a few SFPU instructions per 32 elements), and a multicast shares the parts like any tile.

use crate::builder::*;
use crate::lower::{Ctx, LowerError};
use sovc_ir::{Op as GOp, ValueId};
use sovc_runtime::tensix::program::*;

type R<T> = Result<T, LowerError>;

/// The FP32 activations of group node `anchor` (a matmul's operands, a dense convolution's image) that
/// its products read in split precision and that have no parts yet.
pub fn operands(cx: &Ctx, anchor: usize) -> Vec<ValueId> {
    let node = &cx.g.nodes[anchor];
    let ins: Vec<ValueId> = match node.op {
        GOp::MatMul {} => node.inputs.iter().take(2).copied().collect(),
        GOp::Conv { .. } if crate::conv::supported(cx.g, anchor).is_ok() => vec![node.inputs[0]],
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for v in ins {
        let fp32 = cx.dram(v).is_ok_and(|t| cx.tensors[t as usize].format == DataFormat::Float32);
        if fp32 && !cx.parts.contains_key(&v) && !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// A program writing `v`'s high and low parts (plan tensors `hi` and `lo`, the same view) tile by tile.
pub fn program(cx: &Ctx, v: ValueId, (hi, lo): (u32, u32), name: &str, kernel: usize) -> R<Program> {
    let src = cx.dram(v)?;
    let tiles = cx.tensors[src as usize].tiles();
    let mut pb = cx.builder(name, kernel, "split");
    if !pb.fp32_dest_acc {
        return Err("splitting needs FP32 accumulation".to_string().into());
    }
    pb.notes.push(format!("%{} split into bf16 high and low parts on the SFPU", v.0));
    let (st, ht, lt) = (pb.tensor(src), pb.tensor(hi), pb.tensor(lo));
    pb.cb(0, DataFormat::Float32, 2, "in (FP32)");
    pb.cb(CB_OUT, DataFormat::Float16_b, 2, "high part");
    pb.cb(CB_OUT + 1, DataFormat::Float16_b, 2, "low part");
    let u = unit();
    pb.reader = vec![units_loop(vec![
        Op::Reserve { cb: 0, n: 1 },
        Op::ReadTile { tensor: st, tile: u.clone(), cb: 0, slot: c(0) },
        Op::ReadBarrier,
        Op::Push { cb: 0, n: 1 },
    ])];
    // Dst 0: x, then x - hi (exact in FP32); Dst 1: hi = bf16(x).
    pb.compute = vec![units_loop(vec![
        Op::Wait { cb: 0, n: 1 },
        Op::Acquire,
        Op::CopyTile { cb: 0, tile: c(0), dst: 0 },
        Op::CopyDst { from: 0, to: 1 },
        Op::Unary { op: SfpuUnary::RoundBf16, dst: 1 },
        Op::BinaryDst { op: SfpuBinary::Sub, a: 0, b: 1 },
        Op::Commit,
        Op::WaitDst,
        Op::Reserve { cb: CB_OUT, n: 1 },
        Op::Reserve { cb: CB_OUT + 1, n: 1 },
        Op::Pack { dst: 1, cb: CB_OUT, slot: c(0) },
        Op::Pack { dst: 0, cb: CB_OUT + 1, slot: c(0) },
        Op::Push { cb: CB_OUT, n: 1 },
        Op::Push { cb: CB_OUT + 1, n: 1 },
        Op::Release,
        Op::Pop { cb: 0, n: 1 },
    ])];
    pb.writer = vec![units_loop(vec![
        Op::Wait { cb: CB_OUT, n: 1 },
        Op::Wait { cb: CB_OUT + 1, n: 1 },
        Op::WriteTile { tensor: ht, tile: u.clone(), cb: CB_OUT, slot: c(0) },
        Op::WriteTile { tensor: lt, tile: u, cb: CB_OUT + 1, slot: c(0) },
        Op::WriteBarrier,
        Op::Pop { cb: CB_OUT, n: 1 },
        Op::Pop { cb: CB_OUT + 1, n: 1 },
    ])];
    pb.finish(tiles)
}
