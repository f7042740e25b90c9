//! The analytical cost model that judges e-graph candidates without a device: per kernel roughly
//! `launch + max(compute time, memory time)`, from a target description. It knows what will fuse:
//! elementwise ops join their neighbour's kernel (no launch, no memory traffic, a small per-op cost),
//! reshapes are free, and a composite op (softmax, layer norm, GELU, ...) is one kernel where its
//! decomposition is several.

use super::analysis::EG;
use super::lang::{NodeKind, TNode};
use egg::{CostFunction, Id};
use sovc_ir::{Op, OpKind, TensorType};

/// What the cost model needs to know about a target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetDesc {
    pub name: &'static str,
    /// Peak f32 (or the target's default format) FLOP/s.
    pub peak_flops: f64,
    /// Main-memory bandwidth in bytes/s.
    pub mem_bw: f64,
    /// Cost of launching one kernel, in seconds.
    pub launch_s: f64,
    /// On-chip memory per core in bytes.
    pub onchip_bytes: u64,
    /// Where the numbers come from.
    pub source: &'static str,
}

impl TargetDesc {
    /// The host CPU this project is measured on: AMD Zen 4, 2 cores, AVX-512.
    pub fn cpu() -> TargetDesc {
        TargetDesc {
            name: "cpu",
            peak_flops: 2.0 * 116e9,
            mem_bw: 30e9,
            launch_s: 1e-6,
            onchip_bytes: 1 << 20,
            source: "DESIGN.md section 7: about 116 GFLOP/s fp32 per core, 2 cores, about 30 GB/s",
        }
    }

    /// Tenstorrent Blackhole p150: 110 compute Tensix cores at 1.35 GHz, HiFi2 bf16, 512 GB/s GDDR6.
    pub fn blackhole() -> TargetDesc {
        TargetDesc {
            name: "blackhole",
            peak_flops: 110.0 * 4096.0 * 1.35e9 / 2.0,
            mem_bw: 512e9,
            launch_s: 5e-6,
            onchip_bytes: 1536 << 10,
            source: "shared/reference/tenstorrent.md: 11x10 compute cores (firmware 19.5), 4096 FLOP/cycle LoFi halved for HiFi2, 1.35 GHz, 512 GB/s, 1536 KiB L1",
        }
    }

    pub fn by_name(name: &str) -> Option<TargetDesc> {
        match name {
            "cpu" => Some(TargetDesc::cpu()),
            "blackhole" => Some(TargetDesc::blackhole()),
            _ => None,
        }
    }
}

/// Elements of a type; a symbol counts as its bound, or 128 when unbounded.
pub fn elements(t: &TensorType) -> f64 {
    t.shape.0.iter().map(|d| d.upper_bound().unwrap_or(128) as f64).product()
}

fn bytes(t: &TensorType) -> f64 {
    elements(t) * t.dtype.size() as f64
}

/// FLOPs per element of an elementwise op (transcendentals count more).
fn elementwise_weight(op: &Op) -> f64 {
    use sovc_ir::UnaryOp as U;
    match op {
        Op::Unary(U::Identity) => 0.0,
        Op::Unary(U::Exp | U::Log | U::Erf | U::Tanh | U::Sigmoid | U::Sin | U::Cos | U::Tan) => 4.0,
        Op::Unary(U::Silu) => 5.0,
        Op::Unary(U::Softplus | U::Mish) => 6.0,
        Op::Gelu { .. } => 6.0,
        Op::Unary(U::Sqrt | U::Rsqrt | U::Reciprocal) => 2.0,
        Op::Binary(sovc_ir::BinaryOp::Pow) => 4.0,
        // A select reads a mask besides its operands.
        Op::Where {} => 2.0,
        _ => 1.0,
    }
}

fn dim(t: &TensorType, from_end: usize) -> f64 {
    let r = t.shape.rank();
    if from_end > r {
        return 1.0;
    }
    t.shape.0[r - from_end].upper_bound().unwrap_or(128) as f64
}

/// Floating-point operations of one op (multiply-adds count two; transcendentals count more).
pub fn op_flops(op: &Op, ins: &[&TensorType], out: &[TensorType]) -> f64 {
    let n_out: f64 = out.iter().map(elements).sum();
    match op {
        Op::Reshape { .. } | Op::Split { .. } | Op::Unary(sovc_ir::UnaryOp::Identity) => 0.0,
        Op::MatMul {} => 2.0 * n_out * dim(ins[0], 1),
        Op::Conv { .. } | Op::ConvTranspose { .. } => {
            let w = elements(ins[1]);
            let cout = ins[1].shape.0.first().and_then(|d| d.upper_bound()).unwrap_or(1) as f64;
            let per_out = if matches!(op, Op::Conv { .. }) { w / cout.max(1.0) } else { w / elements(ins[0]).max(1.0) };
            2.0 * n_out * per_out
        }
        Op::Einsum { .. } => 2.0 * n_out * 16.0,
        // Per output row: q.k over D for every key, the softmax, then p.v over every key.
        Op::Attention { .. } => {
            let (d, skv, dv) = (dim(ins[0], 1), dim(ins[1], 2), dim(ins[2], 1));
            n_out / dv * skv * (2.0 * d + 2.0 * dv + 8.0)
        }
        _ => match op.info().kind {
            OpKind::Elementwise => n_out * elementwise_weight(op),
            OpKind::Normalization => 8.0 * n_out,
            OpKind::Reduction => ins.iter().map(|x| elements(x)).sum(),
            OpKind::Movement | OpKind::Contraction | OpKind::Other => 0.0,
        },
    }
}

/// The cost in seconds of one op producing `out` from `ins` on `t`.
pub fn op_cost(t: &TargetDesc, op: &Op, ins: &[&TensorType], out: &[TensorType]) -> f64 {
    let out_bytes: f64 = out.iter().map(bytes).sum();
    let in_bytes: f64 = ins.iter().map(|x| bytes(x)).sum();
    let flops = op_flops(op, ins, out);
    let kernel = |traffic: f64| t.launch_s + (flops / t.peak_flops).max(traffic / t.mem_bw);
    match op {
        // Views: no data moves.
        Op::Reshape { .. } | Op::Split { .. } | Op::Unary(sovc_ir::UnaryOp::Identity) => 0.0,
        Op::MatMul {} | Op::Conv { .. } | Op::ConvTranspose { .. } | Op::Einsum { .. } | Op::Attention { .. } => {
            kernel(in_bytes + out_bytes)
        }
        _ => match op.info().kind {
            // Fused into a neighbouring kernel: compute only, plus one unit per element for the op itself.
            OpKind::Elementwise => (flops + out.iter().map(elements).sum::<f64>()) / t.peak_flops,
            // Parameters (scale, bias) are small and read once; the main input and the output dominate.
            OpKind::Normalization => kernel(bytes(ins[0]) + out_bytes),
            // A reduction's input is materialized by its producer (written, then read back).
            OpKind::Reduction => {
                t.launch_s + (in_bytes / 4.0 / t.peak_flops).max((2.0 * in_bytes + out_bytes) / t.mem_bw)
            }
            OpKind::Movement | OpKind::Contraction | OpKind::Other => kernel(in_bytes + out_bytes),
        },
    }
}

/// Bytes of a value of type `t` (symbols at their bound, or 128).
pub fn type_bytes(t: &TensorType) -> f64 {
    bytes(t)
}

/// Extraction cost: the sum over the chosen tree of each node's cost on the target.
pub struct CostFn<'a> {
    pub egraph: &'a EG,
    pub target: TargetDesc,
}

impl CostFunction<TNode> for CostFn<'_> {
    type Cost = f64;

    fn cost<C>(&mut self, enode: &TNode, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let children: f64 = enode.children.iter().map(|&c| costs(c)).sum();
        children + node_cost(self.egraph, &self.target, enode)
    }
}

/// The cost of one e-node by itself (its children not included).
pub fn node_cost(eg: &EG, t: &TargetDesc, enode: &TNode) -> f64 {
    let folded = !enode.children.is_empty() && enode.children.iter().all(|&c| eg[c].data.constant);
    match eg.analysis.kind(enode.op) {
        // Computed from constants only: folded at compile time.
        NodeKind::Op(_) if folded => 0.0,
        NodeKind::Op(op) => {
            let ins: Vec<&TensorType> = enode.children.iter().map(|&c| eg[c].data.ty()).collect();
            match sovc_ir::infer::infer(op, &ins) {
                Ok(out) => op_cost(t, op, &ins, &out),
                Err(_) => f64::INFINITY,
            }
        }
        _ => 0.0,
    }
}

/// The estimated cost of a whole graph (each value counted once) on `t`, in seconds.
pub fn graph_cost(g: &sovc_ir::Graph, t: &TargetDesc) -> f64 {
    let mut constant = vec![false; g.values.len()];
    for c in &g.consts {
        constant[c.value.index()] = true;
    }
    g.nodes
        .iter()
        .map(|n| {
            if n.inputs.iter().all(|v| constant[v.index()]) {
                for o in &n.outputs {
                    constant[o.index()] = true;
                }
                return 0.0;
            }
            let ins: Vec<&TensorType> = n.inputs.iter().map(|&v| g.ty(v)).collect();
            let out: Vec<TensorType> = n.outputs.iter().map(|&v| g.ty(v).clone()).collect();
            op_cost(t, &n.op, &ins, &out)
        })
        .sum()
}
