//! Lowering: each kernel group of the partition to kernel IR (`sovc_ir::kernel`), the form every target
//! reads. A group lowers when its anchor has a template and all its values are f32 with static shapes:
//!
//! - elementwise chains, reshapes, transposes, expands, slices and reductions: one loop kernel over the
//!   output, every input read through an affine index (broadcast dims get stride 0, a transpose permutes
//!   strides, a reshape reads through the flat index);
//! - matmul (+ elementwise epilogue): a gemm over strided operands, the epilogue a loop kernel over the
//!   rows of C applied in place;
//! - softmax, layer norm and RMS norm over the last axis (+ epilogue): a row kernel with `let`-bound
//!   statistics from reductions;
//! - attention: an attention kernel (+ an in-place loop kernel for any epilogue).
//!
//! Anything else stays on the reference path, with the reason recorded for the audit. After building,
//! loop nests are collapsed where every access allows (adjacent loops whose strides chain), so kernels
//! have few, long, unit-stride inner loops.

use crate::partition::KernelGroup;
use sovc_ir::kernel::{Access, Buf, Expr, Gemm, Index, Kernel, KernelOp, Operand, Reduce, Stmt, Var};
use sovc_ir::{BinaryOp, ConstData, DType, GeluApprox, Graph, Op, ReduceKind, UnaryOp, ValueDef, ValueId};
use std::collections::BTreeMap;

mod group;
mod split;
pub use group::lower_group;

/// A lowered kernel and the graph value behind each of its buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct Lowered {
    pub op: KernelOp,
    pub values: Vec<ValueId>,
}

/// How a value of the group is produced at given coordinates, when not by its own node.
#[derive(Clone, Debug)]
enum Leaf {
    /// Read from this buffer, dense in the value's shape.
    Buffer(u32),
    /// Read from this buffer plus `bias[channel]` (dimension 1): a convolution's output with its bias.
    BufferBias(u32, ValueId),
    /// `exp(x - max) * inv` for a softmax row.
    Softmax { x: ValueId, max: u32, inv: u32 },
    /// `(x - mean) * rstd * gamma + beta`, `mean` absent for RMS norm.
    Norm { x: ValueId, mean: Option<u32>, rstd: u32, gamma: Option<ValueId>, beta: Option<ValueId> },
}

/// Coordinates of an element: one index per dimension, or one flat (row-major) index.
#[derive(Clone, Debug)]
enum Coords {
    Dims(Vec<Index>),
    Flat(Index),
}

fn ix_add(a: &Index, b: &Index) -> Index {
    let mut terms = a.terms.clone();
    terms.extend(b.terms.iter().copied());
    let mut merged: BTreeMap<Var, i64> = BTreeMap::new();
    for (v, c) in terms {
        *merged.entry(v).or_default() += c;
    }
    let t: Vec<(Var, i64)> = merged.into_iter().collect();
    Index::new(a.offset + b.offset, &t)
}

fn ix_scale(a: &Index, k: i64) -> Index {
    let t: Vec<(Var, i64)> = a.terms.iter().map(|&(v, c)| (v, c * k)).collect();
    Index::new(a.offset * k, &t)
}

fn var(v: Var) -> Index {
    Index::new(0, &[(v, 1)])
}

fn strides(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1] as i64;
    }
    s
}

fn flat(shape: &[usize], c: &Coords) -> Index {
    match c {
        Coords::Flat(ix) => ix.clone(),
        Coords::Dims(ds) => {
            let st = strides(shape);
            ds.iter().zip(&st).fold(Index::default(), |acc, (d, &s)| ix_add(&acc, &ix_scale(d, s)))
        }
    }
}

struct Build<'a> {
    g: &'a Graph,
    defs: Vec<Option<ValueDef>>,
    in_group: Vec<bool>,
    scalars: &'a BTreeMap<ValueId, f32>,
    bufs: Vec<(ValueId, Access)>,
    leaves: BTreeMap<ValueId, Leaf>,
    next_var: Var,
    next_let: u32,
    /// `let`s that expressions built so far refer to, to place before the store that uses them.
    shared: Vec<Stmt>,
}

type R<T> = Result<T, String>;

impl<'a> Build<'a> {
    fn shape(&self, v: ValueId) -> R<Vec<usize>> {
        let ty = self.g.ty(v);
        if ty.dtype != DType::F32 {
            return Err(format!("value {v} is {}, and cpu kernels are f32 so far", ty.dtype.name()));
        }
        ty.shape.as_consts().ok_or_else(|| format!("value {v} has a symbolic shape {}", ty.shape))
    }

    fn buf(&mut self, v: ValueId, access: Access) -> u32 {
        if let Some(i) = self.bufs.iter().position(|b| b.0 == v) {
            if self.bufs[i].1 != access {
                self.bufs[i].1 = Access::ReadWrite;
            }
            return i as u32;
        }
        self.bufs.push((v, access));
        (self.bufs.len() - 1) as u32
    }

    fn fresh_var(&mut self) -> Var {
        self.next_var += 1;
        self.next_var
    }

    /// `e` itself when it is cheap to repeat, else a `let` computed once before the store.
    fn share(&mut self, e: Expr) -> Expr {
        let mut costly = false;
        e.visit(&mut |x| costly |= matches!(x, Expr::Reduce { .. } | Expr::Guard { .. }));
        if !costly {
            return e;
        }
        let id = self.fresh_let();
        self.shared.push(Stmt::Let { id, value: e });
        Expr::Get(id)
    }

    fn fresh_let(&mut self) -> u32 {
        self.next_let += 1;
        self.next_let - 1
    }

    fn kbufs(&self) -> R<Vec<Buf>> {
        self.bufs
            .iter()
            .map(|&(v, access)| {
                let n = self.g.ty(v).shape.num_elements().ok_or_else(|| format!("value {v} has a symbolic shape"))?;
                Ok(Buf::global(v.to_string(), n, access))
            })
            .collect()
    }

    fn load(&mut self, v: ValueId, c: &Coords) -> R<Expr> {
        if let Some(&s) = self.scalars.get(&v) {
            return Ok(Expr::Const(s));
        }
        let shape = self.shape(v)?;
        let buf = match self.leaves.get(&v) {
            Some(Leaf::Buffer(b) | Leaf::BufferBias(b, _)) => *b,
            _ => self.buf(v, Access::Read),
        };
        Ok(Expr::Load { buf, index: flat(&shape, c) })
    }

    /// Coordinates in `in_shape` of the element that broadcasting reads for `c` in `out_shape`.
    fn broadcast(&self, c: &Coords, out: &[usize], inp: &[usize]) -> R<Coords> {
        match c {
            Coords::Dims(ds) => {
                let r = out.len() - inp.len();
                Ok(Coords::Dims(
                    (0..inp.len())
                        .map(|d| if inp[d] == 1 && out[d + r] != 1 { Index::default() } else { ds[d + r].clone() })
                        .collect(),
                ))
            }
            Coords::Flat(ix) => {
                let n_in: usize = inp.iter().product();
                let strip = |s: &[usize]| s.iter().skip_while(|&&d| d == 1).copied().collect::<Vec<_>>();
                if n_in == 1 {
                    Ok(Coords::Flat(Index::default()))
                } else if strip(inp) == strip(out) {
                    Ok(Coords::Flat(ix.clone()))
                } else {
                    Err("a broadcast after a reshape in one kernel".into())
                }
            }
        }
    }

    fn operand(&mut self, node: usize, i: usize, c: &Coords, out: &[usize]) -> R<Expr> {
        let v = self.g.nodes[node].inputs[i];
        let inp = self.shape(v)?;
        let ci = self.broadcast(c, out, &inp)?;
        self.expr(v, &ci)
    }

    /// The expression for element `c` of value `v`.
    fn expr(&mut self, v: ValueId, c: &Coords) -> R<Expr> {
        match self.leaves.get(&v).cloned() {
            Some(Leaf::Buffer(_)) => return self.load(v, c),
            Some(Leaf::BufferBias(_, bias)) => {
                let Coords::Dims(ds) = c else { return Err("a convolution bias after a reshape in one kernel".into()) };
                let y = self.load(v, c)?;
                let b = self.load(bias, &Coords::Dims(vec![ds[1].clone()]))?;
                return Ok(Expr::binary(BinaryOp::Add, y, b));
            }
            Some(Leaf::Softmax { x, max, inv }) => {
                let xe = self.load(x, c)?;
                let e = Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, xe, Expr::Get(max)));
                return Ok(Expr::binary(BinaryOp::Mul, e, Expr::Get(inv)));
            }
            Some(Leaf::Norm { x, mean, rstd, gamma, beta }) => {
                let shape = self.shape(x)?;
                let mut e = self.load(x, c)?;
                if let Some(m) = mean {
                    e = Expr::binary(BinaryOp::Sub, e, Expr::Get(m));
                }
                e = Expr::binary(BinaryOp::Mul, e, Expr::Get(rstd));
                for (p, op) in [(gamma, BinaryOp::Mul), (beta, BinaryOp::Add)] {
                    if let Some(p) = p {
                        let ps = self.shape(p)?;
                        let pc = self.broadcast(c, &shape, &ps)?;
                        let pe = self.load(p, &pc)?;
                        e = Expr::binary(op, e, pe);
                    }
                }
                return Ok(e);
            }
            None => {}
        }
        let node = match self.defs[v.index()] {
            Some(ValueDef::Node { node, .. }) if self.in_group[node] => node,
            _ => return self.load(v, c),
        };
        let out = self.shape(v)?;
        let op = self.g.nodes[node].op.clone();
        let half = || Expr::Const(0.5);
        let e = match &op {
            Op::Unary(u) => {
                let x = self.operand(node, 0, c, &out)?;
                let x = if matches!(u, UnaryOp::Silu | UnaryOp::HardSwish) { self.share(x) } else { x };
                match u {
                    UnaryOp::Silu => Expr::binary(BinaryOp::Mul, x.clone(), Expr::unary(UnaryOp::Sigmoid, x)),
                    UnaryOp::HardSwish => {
                        let t = Expr::binary(
                            BinaryOp::Add,
                            Expr::binary(BinaryOp::Mul, x.clone(), Expr::Const(1.0 / 6.0)),
                            half(),
                        );
                        let t = Expr::binary(
                            BinaryOp::Min,
                            Expr::binary(BinaryOp::Max, t, Expr::Const(0.0)),
                            Expr::Const(1.0),
                        );
                        Expr::binary(BinaryOp::Mul, x, t)
                    }
                    u if sovc_ir::kernel::unary_supported(*u) => Expr::unary(*u, x),
                    u => return Err(format!("unary `{}` has no cpu kernel yet", u.as_str())),
                }
            }
            Op::Binary(b) if sovc_ir::kernel::binary_supported(*b) => {
                let x = self.operand(node, 0, c, &out)?;
                let y = self.operand(node, 1, c, &out)?;
                Expr::binary(*b, x, y)
            }
            Op::Gelu { approximate } => {
                let x = self.operand(node, 0, c, &out)?;
                let x = self.share(x);
                let inner = match approximate {
                    GeluApprox::None => Expr::unary(
                        UnaryOp::Erf,
                        Expr::binary(BinaryOp::Mul, x.clone(), Expr::Const(std::f32::consts::FRAC_1_SQRT_2)),
                    ),
                    GeluApprox::Tanh => {
                        let x3 =
                            Expr::binary(BinaryOp::Mul, Expr::binary(BinaryOp::Mul, x.clone(), x.clone()), x.clone());
                        let t = Expr::binary(
                            BinaryOp::Add,
                            x.clone(),
                            Expr::binary(BinaryOp::Mul, x3, Expr::Const(0.044715)),
                        );
                        Expr::unary(UnaryOp::Tanh, Expr::binary(BinaryOp::Mul, t, Expr::Const(0.797_884_6)))
                    }
                };
                let t = Expr::binary(BinaryOp::Add, inner, Expr::Const(1.0));
                Expr::binary(BinaryOp::Mul, Expr::binary(BinaryOp::Mul, x, t), half())
            }
            Op::LeakyRelu { alpha } if (0.0..=1.0).contains(alpha) => {
                let x = self.operand(node, 0, c, &out)?;
                Expr::binary(BinaryOp::Max, x.clone(), Expr::binary(BinaryOp::Mul, x, Expr::Const(*alpha)))
            }
            Op::HardSigmoid { alpha, beta } => {
                let x = self.operand(node, 0, c, &out)?;
                let t = Expr::binary(
                    BinaryOp::Add,
                    Expr::binary(BinaryOp::Mul, x, Expr::Const(*alpha)),
                    Expr::Const(*beta),
                );
                Expr::binary(BinaryOp::Min, Expr::binary(BinaryOp::Max, t, Expr::Const(0.0)), Expr::Const(1.0))
            }
            Op::Clip {} => {
                let x = self.operand(node, 0, c, &out)?;
                let lo = self.operand(node, 1, c, &out)?;
                let hi = self.operand(node, 2, c, &out)?;
                Expr::binary(BinaryOp::Min, Expr::binary(BinaryOp::Max, x, lo), hi)
            }
            Op::Cast { to: DType::F32 } => self.operand(node, 0, c, &out)?,
            Op::Reshape { .. } => {
                let x = self.g.nodes[node].inputs[0];
                self.expr(x, &Coords::Flat(flat(&out, c)))?
            }
            Op::Expand { .. } => self.operand(node, 0, c, &out)?,
            Op::Split { axis, sizes } => {
                let Coords::Dims(ds) = c else { return Err("a split after a reshape in one kernel".into()) };
                let Some(ValueDef::Node { output, .. }) = self.defs[v.index()] else { unreachable!("split result") };
                let x = self.g.nodes[node].inputs[0];
                let a = norm_axis(*axis, ds.len());
                let mut ci = ds.clone();
                ci[a] = ix_add(&ci[a], &Index::new(sizes[..output].iter().sum(), &[]));
                self.expr(x, &Coords::Dims(ci))?
            }
            Op::Transpose { perm } => {
                let Coords::Dims(ds) = c else { return Err("a transpose after a reshape in one kernel".into()) };
                let mut ci = vec![Index::default(); ds.len()];
                for (d, &p) in perm.iter().enumerate() {
                    ci[p as usize] = ds[d].clone();
                }
                let x = self.g.nodes[node].inputs[0];
                self.expr(x, &Coords::Dims(ci))?
            }
            Op::Slice { starts, ends, steps } => {
                let Coords::Dims(ds) = c else { return Err("a slice after a reshape in one kernel".into()) };
                let xs = self.shape(self.g.nodes[node].inputs[0])?;
                // The first index as the interpreter clamps it (negative starts count from the end).
                let first = |d: usize| sovc_ir::infer::slice_range(starts[d], ends[d], steps[d], xs[d] as i64).0;
                let ci = ds
                    .iter()
                    .enumerate()
                    .map(|(d, ix)| ix_add(&ix_scale(ix, steps[d]), &Index::new(first(d), &[])))
                    .collect();
                let x = self.g.nodes[node].inputs[0];
                self.expr(x, &Coords::Dims(ci))?
            }
            Op::MaxPool { kernel, strides, pads, dilations, ceil_mode }
            | Op::AvgPool { kernel, strides, pads, dilations, ceil_mode, .. } => {
                let Coords::Dims(ds) = c else { return Err("a pooling after a reshape in one kernel".into()) };
                let x = self.g.nodes[node].inputs[0];
                let xs = self.shape(x)?;
                if xs.len() != 4 {
                    return Err("pooling other than 2-D".into());
                }
                let (rv, sv) = (self.fresh_var(), self.fresh_var());
                let (kh, kw) = (kernel[0] as u64, kernel[1] as u64);
                let iy = ix_add(&ix_scale(&ds[2], strides[0]), &Index::new(-pads[0], &[(rv, dilations[0])]));
                let ixx = ix_add(&ix_scale(&ds[3], strides[1]), &Index::new(-pads[1], &[(sv, dilations[1])]));
                let conds = vec![(iy.clone(), xs[2] as u64), (ixx.clone(), xs[3] as u64)];
                let xe = self.load(x, &Coords::Dims(vec![ds[0].clone(), ds[1].clone(), iy.clone(), ixx.clone()]))?;
                let is_max = matches!(op, Op::MaxPool { .. });
                let (rop, other) = if is_max { (Reduce::Max, f32::NEG_INFINITY) } else { (Reduce::Add, 0.0) };
                let window = |body: Expr| Expr::Reduce {
                    op: rop,
                    var: rv,
                    extent: kh,
                    body: Box::new(Expr::Reduce { op: rop, var: sv, extent: kw, body: Box::new(body) }),
                };
                let total = window(Expr::Guard { conds: conds.clone(), then: Box::new(xe), other });
                match &op {
                    Op::MaxPool { .. } => total,
                    Op::AvgPool { count_include_pad: true, .. } if pads.iter().all(|&p| p == 0) && !*ceil_mode => {
                        Expr::binary(BinaryOp::Mul, total, Expr::Const(1.0 / (kh * kw) as f32))
                    }
                    Op::AvgPool { count_include_pad, .. } => {
                        // Window cells counted: inside the image, or inside the padded image.
                        let cconds = if *count_include_pad {
                            vec![
                                (ix_add(&iy, &Index::new(pads[0], &[])), (xs[2] as i64 + pads[0] + pads[2]) as u64),
                                (ix_add(&ixx, &Index::new(pads[1], &[])), (xs[3] as i64 + pads[1] + pads[3]) as u64),
                            ]
                        } else {
                            conds
                        };
                        let count = Expr::Reduce {
                            op: Reduce::Add,
                            var: rv,
                            extent: kh,
                            body: Box::new(Expr::Reduce {
                                op: Reduce::Add,
                                var: sv,
                                extent: kw,
                                body: Box::new(Expr::Guard {
                                    conds: cconds,
                                    then: Box::new(Expr::Const(1.0)),
                                    other: 0.0,
                                }),
                            }),
                        };
                        Expr::binary(BinaryOp::Div, total, Expr::binary(BinaryOp::Max, count, Expr::Const(1.0)))
                    }
                    _ => unreachable!(),
                }
            }
            Op::Conv { strides, pads, dilations, .. } if is_depthwise(self.g, node) => {
                // Each output channel filters its own input channel: a 2-D window sum with padding guards
                // (split away from the interior later), no matrix product.
                let Coords::Dims(ds) = c else { return Err("a convolution after a reshape in one kernel".into()) };
                let inputs = &self.g.nodes[node].inputs;
                let (x, w, bias) = (inputs[0], inputs[1], inputs.get(2).copied());
                let (xs, ws) = (self.shape(x)?, self.shape(w)?);
                let (rv, sv) = (self.fresh_var(), self.fresh_var());
                let iy = ix_add(&ix_scale(&ds[2], strides[0]), &Index::new(-pads[0], &[(rv, dilations[0])]));
                let ixx = ix_add(&ix_scale(&ds[3], strides[1]), &Index::new(-pads[1], &[(sv, dilations[1])]));
                let xe = self.load(x, &Coords::Dims(vec![ds[0].clone(), ds[1].clone(), iy.clone(), ixx.clone()]))?;
                let we = self.load(w, &Coords::Dims(vec![ds[1].clone(), Index::default(), var(rv), var(sv)]))?;
                let conds = vec![(iy, xs[2] as u64), (ixx, xs[3] as u64)];
                let tap = Expr::binary(BinaryOp::Mul, Expr::Guard { conds, then: Box::new(xe), other: 0.0 }, we);
                let sum = Expr::Reduce {
                    op: Reduce::Add,
                    var: rv,
                    extent: ws[2] as u64,
                    body: Box::new(Expr::Reduce {
                        op: Reduce::Add,
                        var: sv,
                        extent: ws[3] as u64,
                        body: Box::new(tap),
                    }),
                };
                match bias {
                    Some(bv) => {
                        let be = self.load(bv, &Coords::Dims(vec![ds[1].clone()]))?;
                        Expr::binary(BinaryOp::Add, sum, be)
                    }
                    None => sum,
                }
            }
            Op::Reduce { kind, axes, keepdims } => {
                let Coords::Dims(ds) = c else { return Err("a reduction after a reshape in one kernel".into()) };
                let x = self.g.nodes[node].inputs[0];
                let xs = self.shape(x)?;
                let r = xs.len() as i64;
                if axes.is_empty() {
                    // The IR's empty axis list reduces nothing; leave such rare nodes to the interpreter.
                    return Err("a reduce with no axes".into());
                }
                let axes: Vec<usize> = axes.iter().map(|&a| (if a < 0 { a + r } else { a }) as usize).collect();
                let (rop, scale) = match kind {
                    ReduceKind::Sum => (Reduce::Add, 1.0),
                    ReduceKind::Mean => (Reduce::Add, 1.0 / axes.iter().map(|&a| xs[a]).product::<usize>() as f32),
                    ReduceKind::Max => (Reduce::Max, 1.0),
                    k => return Err(format!("reduce `{}` has no cpu kernel yet", k.as_str())),
                };
                let mut ci = Vec::new();
                let mut vars = Vec::new();
                let mut k = 0;
                for d in 0..xs.len() {
                    if axes.contains(&d) {
                        let rv = self.fresh_var();
                        vars.push((rv, xs[d] as u64));
                        ci.push(var(rv));
                        if *keepdims {
                            k += 1;
                        }
                    } else {
                        ci.push(ds[k].clone());
                        k += 1;
                    }
                }
                let mut e = self.expr(x, &Coords::Dims(ci))?;
                for (rv, ext) in vars.into_iter().rev() {
                    e = Expr::Reduce { op: rop, var: rv, extent: ext, body: Box::new(e) };
                }
                if scale != 1.0 {
                    e = Expr::binary(BinaryOp::Mul, e, Expr::Const(scale));
                }
                e
            }
            other => return Err(format!("`{}` has no cpu kernel yet", other.name())),
        };
        Ok(e)
    }

    /// A loop kernel storing every element of `out` (into `out_buf`), with `lead` outer dimensions
    /// running `pre(lead coords)` statements before the innermost loop.
    fn elementwise_kernel(&mut self, name: &str, out: ValueId, out_buf: u32) -> R<Kernel> {
        // A trailing reshape moves no data: iterate over the shape before it (same flat layout).
        let mut out = out;
        while let Some(ValueDef::Node { node, .. }) = self.defs[out.index()] {
            if !self.in_group[node]
                || !matches!(self.g.nodes[node].op, Op::Reshape { .. })
                || self.leaves.contains_key(&out)
            {
                break;
            }
            out = self.g.nodes[node].inputs[0];
        }
        let shape = self.shape(out)?;
        let vars: Vec<Var> = (0..shape.len()).map(|d| if d == 0 { 0 } else { self.fresh_var() }).collect();
        let coords = Coords::Dims(vars.iter().map(|&v| var(v)).collect());
        let value = self.expr(out, &coords)?;
        let mut body = std::mem::take(&mut self.shared);
        body.push(Stmt::Store { buf: out_buf, index: flat(&shape, &coords), value });
        for d in (1..shape.len()).rev() {
            body = vec![Stmt::For { var: vars[d], extent: shape[d] as u64, body }];
        }
        let extent = shape.first().copied().unwrap_or(1) as u64;
        Ok(Kernel::new(name, Vec::new(), extent, body))
    }
}

/// Whether node `n` is a depthwise 2-D convolution (one input channel per output channel).
pub(crate) fn is_depthwise(g: &Graph, n: usize) -> bool {
    let node = &g.nodes[n];
    let Op::Conv { group, .. } = &node.op else { return false };
    let (xs, ws) = (g.ty(node.inputs[0]).shape.as_consts(), g.ty(node.inputs[1]).shape.as_consts());
    match (xs, ws) {
        (Some(xs), Some(ws)) => {
            xs.len() == 4 && ws.len() == 4 && ws[1] == 1 && *group as usize == xs[1] && ws[0] == xs[1]
        }
        _ => false,
    }
}

/// Every index of a statement list, mutably.
fn for_each_index(body: &mut [Stmt], f: &mut dyn FnMut(&mut Index)) {
    fn expr(e: &mut Expr, f: &mut dyn FnMut(&mut Index)) {
        match e {
            Expr::Load { index, .. } => f(index),
            Expr::Unary(_, a) => expr(a, f),
            Expr::Binary(_, a, b) => {
                expr(a, f);
                expr(b, f);
            }
            Expr::Reduce { body, .. } => expr(body, f),
            Expr::Guard { conds, then, .. } => {
                conds.iter_mut().for_each(|(ix, _)| f(ix));
                expr(then, f);
            }
            Expr::Const(_) | Expr::Get(_) => {}
        }
    }
    for s in body {
        match s {
            Stmt::For { body, .. } => for_each_index(body, f),
            Stmt::Let { value, .. } => expr(value, f),
            Stmt::Store { index, value, .. } => {
                f(index);
                expr(value, f);
            }
            Stmt::Barrier => {}
        }
    }
}

/// Merges loop `inner` (extent `e`) into `outer` (extent `oe`) where every access allows it
/// (`coeff(outer) == coeff(inner)·e`, or `outer` has one iteration): afterwards `outer` runs `oe·e`
/// iterations and `inner` is gone.
fn merge(body: &mut [Stmt], outer: Var, oe: u64, inner: Var, e: u64) -> bool {
    let mut ok = true;
    if oe != 1 {
        for_each_index(body, &mut |ix| ok &= ix.coeff(outer) == ix.coeff(inner) * e as i64);
    }
    if ok {
        for_each_index(body, &mut |ix| {
            let c = ix.coeff(inner);
            let t: Vec<(Var, i64)> =
                ix.terms.iter().filter(|t| t.0 != inner && t.0 != outer).copied().chain([(outer, c)]).collect();
            *ix = Index::new(ix.offset, &t);
        });
    }
    ok
}

/// Merges the single loop in `body` into the loop `outer` (extent `*oe`) while allowed and the extent
/// stays at most `max`.
fn merge_nest(outer: Var, oe: &mut u64, body: &mut Vec<Stmt>, max: u64) {
    while let [Stmt::For { var, extent, body: ib }] = body.as_mut_slice() {
        if oe.saturating_mul(*extent) > max {
            break;
        }
        let (v2, e2) = (*var, *extent);
        let mut inner = std::mem::take(ib);
        if merge(&mut inner, outer, *oe, v2, e2) {
            *oe *= e2;
            *body = inner;
        } else {
            if let [Stmt::For { body: ib, .. }] = body.as_mut_slice() {
                *ib = inner;
            }
            break;
        }
    }
}

/// Collapses the parallel dimension with the loops directly inside it while its extent stays at most
/// `max_extent`, then perfect nests further in.
fn collapse(k: &mut Kernel, max_extent: u64) {
    merge_nest(0, &mut k.extent, &mut k.body, max_extent);
    collapse_inner(&mut k.body);
}

fn collapse_inner(body: &mut [Stmt]) {
    for s in body.iter_mut() {
        if let Stmt::For { var, extent, body } = s {
            merge_nest(*var, extent, body, u64::MAX);
            collapse_inner(body);
        }
    }
}

/// Iterations of everything inside the parallel dimension (a rough work measure per iteration).
pub fn inner_work(body: &[Stmt]) -> u64 {
    body.iter()
        .map(|s| match s {
            Stmt::For { extent, body, .. } => extent * inner_work(body).max(1),
            Stmt::Barrier => 0,
            Stmt::Let { value, .. } | Stmt::Store { value, .. } => {
                let mut w = 1;
                value.visit(&mut |e| {
                    if let Expr::Reduce { extent, .. } = e {
                        w += extent;
                    }
                });
                w
            }
        })
        .sum()
}

/// Small f32 constants whose value lowering inlines.
pub fn scalar_consts(g: &Graph) -> BTreeMap<ValueId, f32> {
    g.consts
        .iter()
        .filter_map(|c| match &c.data {
            ConstData::Inline(t) if t.dtype() == DType::F32 && t.shape().iter().product::<usize>() == 1 => {
                Some((c.value, t.to_f64_vec()[0] as f32))
            }
            _ => None,
        })
        .collect()
}

fn norm_axis(axis: i64, rank: usize) -> usize {
    (if axis < 0 { axis + rank as i64 } else { axis }) as usize
}

/// The error when a target that needs static shapes gets a graph with a symbolic input.
pub fn require_static_shapes(g: &Graph, target: &str) -> Result<(), String> {
    match g.inputs.iter().find(|x| g.ty(x.value).shape.as_consts().is_none()) {
        None => Ok(()),
        Some(x) => Err(format!(
            "the {target} target needs static shapes: input `{}` is {}; fix its dimensions with --shape {}=DIMS",
            x.name,
            g.ty(x.value),
            x.name
        )),
    }
}

/// How a lowered kernel runs, as the audit names it: `loop`, `gemm`, `gemm+epilogue` or `attention`.
pub fn form(op: &KernelOp) -> &'static str {
    match op {
        KernelOp::Loop(_) => "loop",
        KernelOp::Gemm(gm) if gm.epilogue.is_some() => "gemm+epilogue",
        KernelOp::Gemm(_) => "gemm",
        KernelOp::Attention(_) => "attention",
    }
}
