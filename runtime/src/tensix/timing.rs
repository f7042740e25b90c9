//! The timing model of the Tensix simulator: what each kernel call costs in AI-clock cycles. Every kernel
//! (reader, compute, writer) of a core keeps its own clock; a call advances it by its cost, and circular
//! buffers carry time between them (a `cb_wait_front` finishes no earlier than the matching
//! `cb_push_back`, a `cb_reserve_back` no earlier than the `cb_pop_front` that freed the pages). NoC reads
//! complete after the DRAM latency plus the bytes at the core's NoC width. A core's transfers on one NoC
//! in one direction share that link: the reader's on NoC 0, the writer's on NoC 1, data into the core
//! (reads) and out of it (writes, multicasts) on different links. Core-to-core writes (multicast tiles,
//! semaphores) land [`CORE_TO_CORE`] cycles after they leave. Contention inside the NoC (between cores,
//! at DRAM banks) is not modelled beyond the chip-wide DRAM bandwidth floor. A program takes the longest core's time, but no less than its DRAM bytes at the chip's
//! DRAM bandwidth, plus a fixed dispatch cost.
//!
//! Sources and assumptions:
//! - Matmul: 16 / 32 / 48 / 64 cycles per 32x32x32 tile product at LoFi / HiFi2 / HiFi3 / HiFi4, the
//!   ideal cycles tt-metal's GEMM_FLOPS report uses (4096 FLOP per cycle at one phase; tt-isa-documentation
//!   `MatrixUnit.md`). Utilization is ideal cycles over predicted cycles, as in that report.
//! - Eltwise on the FPU: ELWADD at 128 to 256 and ELWMUL at 256 FLOP per cycle (`MatrixUnit.md`), so 4 to 8
//!   cycles of math per tile; the unpack and pack around it dominate. Assumed: 16 cycles to unpack a tile
//!   (`copy_tile`, operand fetch of binary ops), 16 per fidelity phase for a multiply, 32 to pack.
//! - SFPU: 32 lanes, one FP32 multiply-add per lane per cycle (`VectorUnit.md`): a 1024-element tile is 32
//!   lane-rows. Assumed instruction counts per lane-row: 2 for add/mul/max and other simple ops, 12 for
//!   exp/log/sqrt/recip/rsqrt/sigmoid/tanh, 20 for gelu/erf/silu/pow/div/sin/cos.
//! - Reduce: one FPU pass per tile at the fidelity's phases (16 cycles per phase); transpose: 32.
//! - Data movement: 16 cycles to issue a NoC transaction, 64 for a barrier, DRAM latency from the device
//!   description; L1 fills and pads by the RISC-V core: 1 cycle per 4 bytes.
//! - Dispatch: 2000 cycles per program (slow-dispatch launch overhead is larger; fast dispatch with
//!   trace replay is smaller): an assumption, stated in the audit.

use super::program::{DataFormat, MathFidelity, Op, SfpuBinary, SfpuUnary};

pub const DISPATCH_CYCLES: u64 = 2000;
pub const NOC_ISSUE: u64 = 16;
pub const BARRIER: u64 = 64;
pub const UNPACK: u64 = 16;
pub const PACK: u64 = 32;
pub const CB_OP: u64 = 4;
/// Cycles from a core-to-core NoC write (multicast, semaphore) leaving its port to landing: a few
/// router hops and the write's handshake (assumed; NoC contention is not modelled).
pub const CORE_TO_CORE: u64 = 96;

/// Ideal cycles of one tile product at `f`.
pub fn matmul_cycles(f: MathFidelity) -> u64 {
    16 * f.phases() as u64
}

fn sfpu_rows_cost(instrs: u64) -> u64 {
    32 * instrs
}

pub fn unary_cycles(op: SfpuUnary) -> u64 {
    use SfpuUnary::*;
    sfpu_rows_cost(match op {
        Relu | Abs | Neg | Square | AddScalar(_) | MulScalar(_) | RsubScalar(_) | MaxScalar(_) | MinScalar(_)
        | LeakyRelu(_) | Sign | Floor => 2,
        Exp | Log | Recip | Sqrt | Rsqrt | Sigmoid | Tanh | Elu(_) => 12,
        Gelu | GeluTanh | Silu | Erf | Sin | Cos | PowScalar(_) => 20,
        // Shift, and, two integer adds, and, around the load and store (tt-metal's typecast).
        RoundBf16 => 7,
    })
}

pub fn binary_dst_cycles(op: SfpuBinary) -> u64 {
    sfpu_rows_cost(match op {
        SfpuBinary::Add | SfpuBinary::Sub | SfpuBinary::Mul | SfpuBinary::Max | SfpuBinary::Min => 2,
        SfpuBinary::Div | SfpuBinary::Pow => 20,
    })
}

/// Cycles of a compute op (not counting waits), at fidelity `f`.
pub fn compute_cycles(op: &Op, f: MathFidelity) -> u64 {
    match op {
        Op::Matmul { .. } => matmul_cycles(f),
        Op::Binary { op, .. } => {
            UNPACK + if matches!(op, super::program::FpuBinary::Mul) { 16 * f.phases() as u64 } else { 8 }
        }
        Op::BinaryDst { op, .. } => binary_dst_cycles(*op),
        Op::Unary { op, .. } => unary_cycles(*op),
        Op::CopyTile { .. } => UNPACK,
        Op::CopyDst { .. } => 32,
        Op::Reduce { .. } => 16 * f.phases() as u64,
        Op::Transpose { .. } => 32,
        Op::Pack { .. } => PACK,
        Op::Acquire | Op::Commit | Op::WaitDst | Op::Release => 2,
        _ => CB_OP,
    }
}

/// Cycles for a RISC-V core to write a tile of `format` into L1 by itself.
pub fn l1_fill_cycles(format: DataFormat) -> u64 {
    format.tile_bytes() as u64 / 4
}
