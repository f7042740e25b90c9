//! Elementwise chains on Dst: the elementwise nodes of a group (or a matmul's epilogue) as SFPU calls on
//! Dst tiles. Group inputs are unpacked into Dst (`copy_tile`) at their first use and kept until their
//! last; each op works in place on its first operand's tile (copied first if that value is used again);
//! scalar constants become the parameter of a scalar op (`add_unary_tile`, ...). The number of Dst tiles
//! live at once is what the chain costs in Dst capacity.

use sovc_ir::{BinaryOp, GeluApprox, Graph, Op as GOp, UnaryOp, ValueId};
use sovc_runtime::tensix::program::{Bcast, Ix, Op, SfpuBinary, SfpuUnary};
use std::collections::BTreeMap;

/// A chain step: load group input `leaf` into Dst tile `slot`, or run an op.
#[derive(Clone, Debug)]
pub enum Step {
    Load { leaf: usize, slot: u8 },
    Op(Op),
}

#[derive(Clone, Debug)]
pub struct Chain {
    /// Group inputs read by the chain, in load order.
    pub leaves: Vec<ValueId>,
    pub steps: Vec<Step>,
    /// Dst tile holding the result.
    pub result: u8,
    /// Dst tiles used (slots `0..slots` with the root's slot included).
    pub slots: usize,
}

/// Whether `op` can be a chain node.
pub fn supported(op: &GOp) -> bool {
    match op {
        GOp::Unary(u) => unary(*u).is_some(),
        GOp::Binary(b) => matches!(
            b,
            BinaryOp::Add
                | BinaryOp::Sub
                | BinaryOp::Mul
                | BinaryOp::Div
                | BinaryOp::Max
                | BinaryOp::Min
                | BinaryOp::Pow
        ),
        GOp::Gelu { .. } | GOp::LeakyRelu { .. } | GOp::Elu { .. } | GOp::Clip {} | GOp::Reshape { .. } => true,
        // Integers are stored as FP32 (see `lower`): a cast to f32 moves nothing.
        GOp::Cast { to: sovc_ir::DType::F32 } => true,
        _ => false,
    }
}

fn unary(u: UnaryOp) -> Option<SfpuUnary> {
    use SfpuUnary as S;
    Some(match u {
        UnaryOp::Neg => S::Neg,
        UnaryOp::Abs => S::Abs,
        UnaryOp::Exp => S::Exp,
        UnaryOp::Log => S::Log,
        UnaryOp::Sqrt => S::Sqrt,
        UnaryOp::Rsqrt => S::Rsqrt,
        UnaryOp::Reciprocal => S::Recip,
        UnaryOp::Sin => S::Sin,
        UnaryOp::Cos => S::Cos,
        UnaryOp::Tanh => S::Tanh,
        UnaryOp::Sigmoid => S::Sigmoid,
        UnaryOp::Relu => S::Relu,
        UnaryOp::Erf => S::Erf,
        UnaryOp::Floor => S::Floor,
        UnaryOp::Sign => S::Sign,
        UnaryOp::Silu => S::Silu,
        _ => return None,
    })
}

fn finite(x: f32, what: &str) -> Result<f32, String> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(format!("{what} has a non-finite constant ({x})"))
    }
}

/// Compiles `nodes` (elementwise, in order) into a chain. `root` is a value already in Dst tile 0 (a
/// matmul's result) or none; `out` is the chain's result. Values in `scalars` are constants with one
/// element. Leaves are every other value the nodes read.
pub fn compile(
    g: &Graph,
    nodes: &[usize],
    root: Option<ValueId>,
    out: ValueId,
    scalars: &BTreeMap<ValueId, f32>,
    cap: usize,
) -> Result<Chain, String> {
    let view = dims(g, out).map(|d| sovc_runtime::tensix::device::view(&d));
    compile_in(g, nodes, root, (out, view), scalars, cap)
}

/// As [`compile`], for a result stored in the view `out.1` (a value whose rows are not its next-to-last dim).
pub fn compile_in(
    g: &Graph,
    nodes: &[usize],
    root: Option<ValueId>,
    (out, out_view): (ValueId, Option<(u64, u64, u64)>),
    scalars: &BTreeMap<ValueId, f32>,
    cap: usize,
) -> Result<Chain, String> {
    let mut uses: BTreeMap<ValueId, usize> = BTreeMap::new();
    for &n in nodes {
        for &v in &g.nodes[n].inputs {
            *uses.entry(v).or_default() += 1;
        }
    }
    let mut slot_of: BTreeMap<ValueId, u8> = BTreeMap::new();
    let mut free: Vec<u8> = (0..cap as u8).rev().collect();
    let mut used = usize::from(root.is_some());
    let take = |free: &mut Vec<u8>, used: &mut usize| -> Result<u8, String> {
        let s = free.pop().ok_or_else(|| format!("the elementwise chain needs more than {cap} Dst tiles"))?;
        *used = (*used).max(s as usize + 1);
        Ok(s)
    };
    if let Some(r) = root {
        free.retain(|&s| s != 0);
        slot_of.insert(r, 0);
    }
    let mut chain = Chain { leaves: Vec::new(), steps: Vec::new(), result: 0, slots: 0 };
    let scalar =
        |v: ValueId| scalars.get(&v).copied().filter(|_| !nodes.iter().any(|&n| g.nodes[n].outputs.contains(&v)));
    for &n in nodes {
        let node = &g.nodes[n];
        let what = format!("node `{}` ({})", node.name, node.op.name());
        // Integers are stored as FP32; a reshape keeps them as they are (a cast then makes them f32).
        let int_reshape = matches!(node.op, GOp::Reshape { .. }) && g.ty(node.outputs[0]).dtype.is_int();
        if g.ty(node.outputs[0]).dtype != sovc_ir::DType::F32 && !int_reshape {
            return Err(format!("{what} is not f32"));
        }
        // Every value in Dst is the output's tile at the same position, so it must have the output's view.
        // A value of the result's shape is computed in the result's view; another (before a reshape)
        // must put its elements in the same tiles in its own default view.
        let same_shape = g.ty(node.outputs[0]).shape == g.ty(out).shape;
        let v = dims(g, node.outputs[0]).map(|d| sovc_runtime::tensix::device::view(&d));
        if !same_shape && (v.is_none() || v != out_view) {
            return Err(format!("{what} gives {} but the group's result is {}", g.ty(node.outputs[0]), g.ty(out)));
        }
        // A group input is read broadcast against the result's dims, which a reshape of it matches only
        // when it adds or drops leading 1s.
        let lead = |v: ValueId| dims(g, v).map(|d| d.into_iter().skip_while(|&x| x == 1).collect::<Vec<_>>());
        if matches!(node.op, GOp::Reshape { .. })
            && !slot_of.contains_key(&node.inputs[0])
            && (lead(node.inputs[0]).is_none() || lead(node.inputs[0]) != lead(node.outputs[0]))
        {
            return Err(format!("{what} reshapes a group input (its tiles would move)"));
        }
        // Operands that are tensors get Dst tiles.
        let tensor_ins: Vec<ValueId> = match &node.op {
            GOp::Clip {} | GOp::Reshape { .. } | GOp::Cast { .. } => vec![node.inputs[0]],
            _ => node.inputs.iter().copied().filter(|&v| scalar(v).is_none()).collect(),
        };
        for &v in &tensor_ins {
            if let std::collections::btree_map::Entry::Vacant(e) = slot_of.entry(v) {
                if nodes.iter().any(|&m| g.nodes[m].outputs.contains(&v)) || Some(v) == root {
                    return Err(format!("{what} reads %{} before it is computed", v.0));
                }
                let s = take(&mut free, &mut used)?;
                let leaf = chain.leaves.iter().position(|&l| l == v).unwrap_or_else(|| {
                    chain.leaves.push(v);
                    chain.leaves.len() - 1
                });
                chain.steps.push(Step::Load { leaf, slot: s });
                e.insert(s);
            }
        }
        let mut binary: Option<(SfpuBinary, ValueId, ValueId)> = None;
        let ops: Vec<SfpuUnary> = match &node.op {
            GOp::Reshape { .. } | GOp::Cast { .. } => Vec::new(),
            GOp::Unary(u) => vec![unary(*u).ok_or_else(|| format!("{what}: no SFPU op"))?],
            GOp::Gelu { approximate } => {
                vec![if *approximate == GeluApprox::Tanh { SfpuUnary::GeluTanh } else { SfpuUnary::Gelu }]
            }
            GOp::LeakyRelu { alpha } => vec![SfpuUnary::LeakyRelu(finite(*alpha, &what)?)],
            GOp::Elu { alpha } => vec![SfpuUnary::Elu(finite(*alpha, &what)?)],
            GOp::Clip {} => {
                let lo = scalar(node.inputs[1]).ok_or_else(|| format!("{what}: bounds are not constants"))?;
                let hi = scalar(node.inputs[2]).ok_or_else(|| format!("{what}: bounds are not constants"))?;
                let mut v = Vec::new();
                if lo.is_finite() && lo > -f32::MAX {
                    v.push(SfpuUnary::MaxScalar(lo));
                }
                if hi.is_finite() && hi < f32::MAX {
                    v.push(SfpuUnary::MinScalar(hi));
                }
                v
            }
            GOp::Binary(b) => {
                let (x, y) = (node.inputs[0], node.inputs[1]);
                let (sx, sy) = (scalar(x), scalar(y));
                match (b, sx, sy) {
                    (_, Some(_), Some(_)) => return Err(format!("{what}: both operands are constants")),
                    (BinaryOp::Add, None, Some(k)) | (BinaryOp::Add, Some(k), None) => {
                        vec![SfpuUnary::AddScalar(finite(k, &what)?)]
                    }
                    (BinaryOp::Mul, None, Some(k)) | (BinaryOp::Mul, Some(k), None) => {
                        vec![SfpuUnary::MulScalar(finite(k, &what)?)]
                    }
                    (BinaryOp::Max, None, Some(k)) | (BinaryOp::Max, Some(k), None) => {
                        vec![SfpuUnary::MaxScalar(finite(k, &what)?)]
                    }
                    (BinaryOp::Min, None, Some(k)) | (BinaryOp::Min, Some(k), None) => {
                        vec![SfpuUnary::MinScalar(finite(k, &what)?)]
                    }
                    (BinaryOp::Sub, None, Some(k)) => vec![SfpuUnary::AddScalar(finite(-k, &what)?)],
                    (BinaryOp::Sub, Some(k), None) => vec![SfpuUnary::RsubScalar(finite(k, &what)?)],
                    (BinaryOp::Div, None, Some(k)) => vec![SfpuUnary::MulScalar(finite(1.0 / k, &what)?)],
                    (BinaryOp::Div, Some(k), None) => vec![SfpuUnary::Recip, SfpuUnary::MulScalar(finite(k, &what)?)],
                    (BinaryOp::Pow, None, Some(2.0)) => vec![SfpuUnary::Square],
                    (BinaryOp::Pow, None, Some(0.5)) => vec![SfpuUnary::Sqrt],
                    (BinaryOp::Pow, None, Some(k)) => vec![SfpuUnary::PowScalar(finite(k, &what)?)],
                    (BinaryOp::Pow, Some(_), None) => return Err(format!("{what}: a constant raised to a tensor")),
                    (_, None, None) => {
                        let op = match b {
                            BinaryOp::Add => SfpuBinary::Add,
                            BinaryOp::Sub => SfpuBinary::Sub,
                            BinaryOp::Mul => SfpuBinary::Mul,
                            BinaryOp::Div => SfpuBinary::Div,
                            BinaryOp::Max => SfpuBinary::Max,
                            BinaryOp::Min => SfpuBinary::Min,
                            BinaryOp::Pow => SfpuBinary::Pow,
                            _ => return Err(format!("{what}: no SFPU op")),
                        };
                        binary = Some((op, x, y));
                        Vec::new()
                    }
                    _ => return Err(format!("{what}: no SFPU op")),
                }
            }
            _ => return Err(format!("{what} is not an elementwise op the SFPU runs")),
        };
        let outv = node.outputs[0];
        // The result goes to the first tensor operand's tile, copied first if that value is used later.
        let (first, op_steps): (ValueId, Vec<Op>) = match binary {
            Some((op, mut x, mut y)) => {
                let commutes = matches!(op, SfpuBinary::Add | SfpuBinary::Mul | SfpuBinary::Max | SfpuBinary::Min);
                if commutes && x != y && uses[&x] > 1 && uses[&y] == 1 {
                    std::mem::swap(&mut x, &mut y);
                }
                (x, vec![Op::BinaryDst { op, a: u8::MAX, b: slot_of[&y] }])
            }
            None => (tensor_ins[0], ops.into_iter().map(|op| Op::Unary { op, dst: u8::MAX }).collect()),
        };
        let here = node.inputs.iter().filter(|&&v| v == first).count();
        let d = if uses[&first] == here {
            slot_of[&first]
        } else {
            let s = take(&mut free, &mut used)?;
            chain.steps.push(Step::Op(Op::CopyDst { from: slot_of[&first], to: s }));
            s
        };
        for mut o in op_steps {
            match &mut o {
                Op::BinaryDst { a, .. } => *a = d,
                Op::Unary { dst, .. } => *dst = d,
                _ => {}
            }
            chain.steps.push(Step::Op(o));
        }
        for &v in &node.inputs {
            if let Some(u) = uses.get_mut(&v) {
                *u -= 1;
            }
        }
        for &v in &node.inputs {
            if uses[&v] == 0 {
                if let Some(s) = slot_of.remove(&v) {
                    if s != d && !free.contains(&s) {
                        free.push(s);
                    }
                }
            }
        }
        let dst = d;
        slot_of.insert(outv, dst);
    }
    chain.result = *slot_of.get(&out).ok_or_else(|| format!("the chain does not compute %{}", out.0))?;
    // With a root (a block of matmul results, one chain per tile), the result must end where the root
    // was: the other tiles are shared scratch that the next tile's chain overwrites.
    if root.is_some() && chain.result != 0 {
        chain.steps.push(Step::Op(Op::CopyDst { from: chain.result, to: 0 }));
        chain.result = 0;
    }
    chain.slots = used;
    Ok(chain)
}

/// The tile of an operand of shape `leaf` read for output tile (`ob`, `tr`, `tc`) of an output of shape
/// `out` viewed with rows at dim `k` (numpy broadcasting), and how the tile must be broadcast; `view`
/// is how the operand is stored in DRAM, which must be the operand's view aligned with the output's.
/// `None` if `leaf` does not broadcast to `out` in that view.
pub fn leaf_tile(
    leaf: &[usize],
    view: (u64, u64, u64),
    out: &[usize],
    k: isize,
    ob: &Ix,
    tr: &Ix,
    tc: &Ix,
) -> Option<(Ix, Bcast)> {
    let n = out.len();
    if leaf.len() > n {
        return None;
    }
    let mut full = vec![1; n - leaf.len()];
    full.extend_from_slice(leaf);
    if full.iter().zip(out).any(|(&l, &o)| l != o && l != 1) {
        return None;
    }
    let (kb, kr) = if k < 0 { (0, None) } else { (k as usize, Some(k as usize)) };
    let cols_from = kr.map_or(0, |r| r + 1);
    // The merged columns broadcast as a whole or not at all.
    let lc: usize = full[cols_from..].iter().product();
    let oc: usize = out[cols_from..].iter().product();
    if lc != oc && lc != 1 {
        return None;
    }
    let (lr, or) = kr.map_or((1, 1), |r| (full[r], out[r]));
    let lb: usize = full[..kb].iter().product();
    // The operand must be stored in the view aligned with the output's (its rows at the same dim).
    if view != (lb as u64, lr as u64, lc as u64) {
        return None;
    }
    let bi = crate::templates::batch_index(&full[..kb], &out[..kb], ob)?;
    let (lrt, lct) = ((lr as i64 + 31) / 32, (lc as i64 + 31) / 32);
    let r = if lr == 1 { Ix::Const(0) } else { tr.clone() };
    let col = if lc == 1 { Ix::Const(0) } else { tc.clone() };
    let tile = bi.times(lrt).plus(r).times(lct).plus(col);
    let bcast = match (lr == 1 && or > 1, lc == 1 && oc > 1) {
        (false, false) => Bcast::None,
        (true, false) => Bcast::Rows,
        (false, true) => Bcast::Cols,
        (true, true) => Bcast::Scalar,
    };
    Some((tile, bcast))
}

/// Static dims of a value.
pub fn dims(g: &Graph, v: ValueId) -> Option<Vec<usize>> {
    g.ty(v).shape.as_consts()
}
