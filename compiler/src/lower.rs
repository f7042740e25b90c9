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

    fn fresh_let(&mut self) -> u32 {
        self.next_let += 1;
        self.next_let - 1
    }

    fn kbufs(&self) -> R<Vec<Buf>> {
        self.bufs
            .iter()
            .map(|&(v, access)| {
                let n = self.g.ty(v).shape.num_elements().ok_or_else(|| format!("value {v} has a symbolic shape"))?;
                Ok(Buf { name: v.to_string(), len: n, access })
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
            Op::Slice { starts, steps, .. } => {
                let Coords::Dims(ds) = c else { return Err("a slice after a reshape in one kernel".into()) };
                let ci = ds
                    .iter()
                    .enumerate()
                    .map(|(d, ix)| ix_add(&ix_scale(ix, steps[d]), &Index::new(starts[d], &[])))
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
            Op::Reduce { kind, axes, keepdims } => {
                let Coords::Dims(ds) = c else { return Err("a reduction after a reshape in one kernel".into()) };
                let x = self.g.nodes[node].inputs[0];
                let xs = self.shape(x)?;
                let r = xs.len() as i64;
                let axes: Vec<usize> = if axes.is_empty() {
                    (0..xs.len()).collect()
                } else {
                    axes.iter().map(|&a| (if a < 0 { a + r } else { a }) as usize).collect()
                };
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
        let mut body = vec![Stmt::Store { buf: out_buf, index: flat(&shape, &coords), value }];
        for d in (1..shape.len()).rev() {
            body = vec![Stmt::For { var: vars[d], extent: shape[d] as u64, body }];
        }
        let extent = shape.first().copied().unwrap_or(1) as u64;
        Ok(Kernel { name: name.to_string(), bufs: Vec::new(), extent, body })
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

/// Lowers one group, or says why it stays on the reference path.
pub fn lower_group(g: &Graph, k: &KernelGroup, name: &str, scalars: &BTreeMap<ValueId, f32>) -> R<Vec<Lowered>> {
    let mut in_group = vec![false; g.nodes.len()];
    for &n in &k.nodes {
        in_group[n] = true;
    }
    let defs = g.defs();
    let new_build = || Build {
        g,
        defs: defs.clone(),
        in_group: in_group.clone(),
        scalars,
        bufs: Vec::new(),
        leaves: BTreeMap::new(),
        next_var: 0,
        next_let: 0,
    };
    let mut b = new_build();
    for &v in k.inputs.iter().chain(&k.outputs) {
        b.shape(v)?;
    }
    let is_reshape = |n: usize| matches!(g.nodes[n].op, Op::Reshape { .. });
    let anchor_node =
        k.nodes.iter().copied().find(|&n| g.nodes[n].op.info().kind != sovc_ir::OpKind::Elementwise && !is_reshape(n));
    // Nodes after the anchor that compute something (reshapes move no data).
    let epilogue_nodes = k.nodes.iter().filter(|&&n| Some(n) != anchor_node && !is_reshape(n)).count();
    let out = k.outputs[0];
    let movement = matches!(
        anchor_node.map(|n| &g.nodes[n].op),
        None | Some(
            Op::Transpose { .. }
                | Op::Expand { .. }
                | Op::Slice { .. }
                | Op::Reduce { .. }
                | Op::Split { .. }
                | Op::MaxPool { .. }
                | Op::AvgPool { .. }
        )
    );
    if k.outputs.len() != 1 && !movement {
        return Err(format!("{} outputs", k.outputs.len()));
    }
    let finish = |b: &Build, mut kern: Kernel, max_extent: u64| -> R<Kernel> {
        kern.bufs = b.kbufs()?;
        collapse(&mut kern, max_extent);
        sovc_ir::kernel::verify(&kern).map_err(|e| format!("lowering made an invalid kernel: {}", e.join("; ")))?;
        Ok(kern)
    };
    let values = |b: &Build| b.bufs.iter().map(|x| x.0).collect::<Vec<_>>();
    let anchor = anchor_node.map(|n| g.nodes[n].op.clone());
    match anchor {
        _ if movement => {
            // One loop kernel per output.
            let mut res = Vec::new();
            for (i, &o) in k.outputs.iter().enumerate() {
                let mut b = new_build();
                let ob = b.buf(o, Access::Write);
                let kname = if k.outputs.len() == 1 { name.to_string() } else { format!("{name}.{i}") };
                let kern = b.elementwise_kernel(&kname, o, ob)?;
                let kern = finish(&b, kern, u64::MAX)?;
                res.push(Lowered { op: KernelOp::Loop(kern), values: values(&b) });
            }
            Ok(res)
        }
        Some(Op::MatMul {}) => {
            let n = anchor_node.unwrap_or_default();
            let (av, bv, mv) = (g.nodes[n].inputs[0], g.nodes[n].inputs[1], g.nodes[n].outputs[0]);
            let (ash, bsh, msh) = (b.shape(av)?, b.shape(bv)?, b.shape(mv)?);
            if ash.len() < 2 || bsh.len() < 2 {
                return Err("matmul of a vector".into());
            }
            let (kk, nn) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
            let m = ash[ash.len() - 2];
            let (batch, mm, a_batch, b_batch) = if bsh.len() == 2 {
                (1, ash.iter().product::<usize>() / kk, 0, 0)
            } else if ash[..ash.len() - 2] == bsh[..bsh.len() - 2] {
                (bsh[..bsh.len() - 2].iter().product(), m, (m * kk) as i64, (kk * nn) as i64)
            } else if ash.len() == 2 {
                (bsh[..bsh.len() - 2].iter().product(), m, 0, (kk * nn) as i64)
            } else {
                return Err("matmul with broadcast batch dimensions".into());
            };
            if g.ty(out).shape.num_elements() != Some((batch * mm * nn) as u64) {
                return Err("an epilogue that changes the matmul's size".into());
            }
            let ab = b.buf(av, Access::Read);
            let bb = b.buf(bv, Access::Read);
            let has_epilogue = epilogue_nodes > 0;
            let cb = b.buf(out, if has_epilogue { Access::ReadWrite } else { Access::Write });
            let b_const = matches!(b.defs[bv.index()], Some(ValueDef::Const(_)));
            let _ = msh;
            let mut gemm = Gemm {
                name: name.to_string(),
                bufs: Vec::new(),
                batch: batch as u64,
                m: mm as u64,
                n: nn as u64,
                k: kk as u64,
                a: Operand { buf: ab, offset: 0, batch: a_batch, group: 0, rows: kk as i64, cols: 1 },
                b: Operand { buf: bb, offset: 0, batch: b_batch, group: 0, rows: nn as i64, cols: 1 },
                b_const,
                b_im2col: None,
                groups: 1,
                c: Operand {
                    buf: cb,
                    offset: 0,
                    batch: (mm * nn) as i64,
                    group: (mm * nn) as i64,
                    rows: nn as i64,
                    cols: 1,
                },
                epilogue: None,
            };
            if !has_epilogue {
                gemm.bufs = b.kbufs()?;
                sovc_ir::kernel::verify_op(&KernelOp::Gemm(Box::new(gemm.clone()))).map_err(|e| e.join("; "))?;
                return Ok(vec![Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: values(&b) }]);
            }
            b.leaves.insert(mv, Leaf::Buffer(cb));
            let kern = b.elementwise_kernel(&format!("{name}.epilogue"), out, cb)?;
            let rows = (batch * mm) as u64;
            let kern = finish(&b, kern, rows)?;
            gemm.bufs = kern.bufs.clone();
            if kern.extent == rows {
                gemm.epilogue = Some(kern);
                sovc_ir::kernel::verify_op(&KernelOp::Gemm(Box::new(gemm.clone()))).map_err(|e| e.join("; "))?;
                Ok(vec![Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: values(&b) }])
            } else {
                // The epilogue does not run row by row: a separate in-place kernel after the gemm.
                let vals = values(&b);
                Ok(vec![
                    Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: vals.clone() },
                    Lowered { op: KernelOp::Loop(kern), values: vals },
                ])
            }
        }
        Some(Op::Conv { strides, pads, dilations, group }) => {
            let n = anchor_node.unwrap_or_default();
            let node = &g.nodes[n];
            let (xv, wv, yv) = (node.inputs[0], node.inputs[1], node.outputs[0]);
            let (xs, ws, ys) = (b.shape(xv)?, b.shape(wv)?, b.shape(yv)?);
            if xs.len() != 4 {
                return Err("convolution other than 2-D".into());
            }
            if b.shape(out)?.iter().product::<usize>() != ys.iter().product::<usize>() {
                return Err("an epilogue that changes the convolution's size".into());
            }
            let groups = group as usize;
            let (nb, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
            let (co, kh, kw) = (ws[0], ws[2], ws[3]);
            let (oh, ow) = (ys[2], ys[3]);
            let (cpg, copg) = (c / groups, co / groups);
            let (kk, pp) = (cpg * kh * kw, oh * ow);
            let bias = node.inputs.get(2).copied();
            let has_epilogue = epilogue_nodes > 0 || bias.is_some();
            let xb = b.buf(xv, Access::Read);
            let wb = b.buf(wv, Access::Read);
            let cb = b.buf(out, if has_epilogue { Access::ReadWrite } else { Access::Write });
            let pointwise = kh == 1 && kw == 1 && strides.iter().all(|&s| s == 1) && pads.iter().all(|&p| p == 0);
            let (b_rows, b_cols, im2col) = if pointwise {
                (pp as i64, 1, None)
            } else {
                let im = sovc_ir::kernel::Im2col {
                    channels: cpg as u64,
                    h: h as u64,
                    w: w as u64,
                    kh: kh as u64,
                    kw: kw as u64,
                    sh: strides[0] as u64,
                    sw: strides[1] as u64,
                    ph: pads[0] as u64,
                    pw: pads[1] as u64,
                    dh: dilations[0] as u64,
                    dw: dilations[1] as u64,
                    oh: oh as u64,
                    ow: ow as u64,
                };
                (0, 0, Some(im))
            };
            let mut gemm = Gemm {
                name: name.to_string(),
                bufs: Vec::new(),
                batch: nb as u64,
                m: copg as u64,
                n: pp as u64,
                k: kk as u64,
                a: Operand { buf: wb, offset: 0, batch: 0, group: (copg * kk) as i64, rows: kk as i64, cols: 1 },
                b: Operand {
                    buf: xb,
                    offset: 0,
                    batch: (c * h * w) as i64,
                    group: (cpg * h * w) as i64,
                    rows: b_rows,
                    cols: b_cols,
                },
                b_const: false,
                b_im2col: im2col,
                groups: groups as u64,
                c: Operand {
                    buf: cb,
                    offset: 0,
                    batch: (co * pp) as i64,
                    group: (copg * pp) as i64,
                    rows: pp as i64,
                    cols: 1,
                },
                epilogue: None,
            };
            if !has_epilogue {
                gemm.bufs = b.kbufs()?;
                sovc_ir::kernel::verify_op(&KernelOp::Gemm(Box::new(gemm.clone()))).map_err(|e| e.join("; "))?;
                return Ok(vec![Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: values(&b) }]);
            }
            b.leaves.insert(
                yv,
                match bias {
                    Some(bv) => Leaf::BufferBias(cb, bv),
                    None => Leaf::Buffer(cb),
                },
            );
            let kern = b.elementwise_kernel(&format!("{name}.epilogue"), out, cb)?;
            let rows = (nb * co) as u64;
            let kern = finish(&b, kern, rows)?;
            gemm.bufs = kern.bufs.clone();
            let vals = values(&b);
            if kern.extent == rows {
                gemm.epilogue = Some(kern);
                sovc_ir::kernel::verify_op(&KernelOp::Gemm(Box::new(gemm.clone()))).map_err(|e| e.join("; "))?;
                Ok(vec![Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: vals }])
            } else {
                Ok(vec![
                    Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: vals.clone() },
                    Lowered { op: KernelOp::Loop(kern), values: vals },
                ])
            }
        }
        Some(Op::Concat { axis }) if epilogue_nodes == 0 => {
            // One copy kernel per input, each into its slice of the output.
            let n = anchor_node.unwrap_or_default();
            let os = b.shape(out)?;
            let a = norm_axis(axis, os.len());
            let mut offset = 0usize;
            let mut res = Vec::new();
            for (i, &xv) in g.nodes[n].inputs.iter().enumerate() {
                let xs = b.shape(xv)?;
                let mut bi = new_build();
                let ob = bi.buf(out, Access::Write);
                let vars: Vec<Var> = (0..xs.len()).map(|d| if d == 0 { 0 } else { bi.fresh_var() }).collect();
                let coords: Vec<Index> = vars.iter().map(|&v| var(v)).collect();
                let value = bi.load(xv, &Coords::Dims(coords.clone()))?;
                let mut oc = coords;
                oc[a] = ix_add(&oc[a], &Index::new(offset as i64, &[]));
                let mut body = vec![Stmt::Store { buf: ob, index: flat(&os, &Coords::Dims(oc)), value }];
                for d in (1..xs.len()).rev() {
                    body = vec![Stmt::For { var: vars[d], extent: xs[d] as u64, body }];
                }
                offset += xs[a];
                if xs.contains(&0) {
                    continue;
                }
                let kern = Kernel { name: format!("{name}.{i}"), bufs: Vec::new(), extent: xs[0] as u64, body };
                let kern = finish(&bi, kern, u64::MAX)?;
                res.push(Lowered { op: KernelOp::Loop(kern), values: values(&bi) });
            }
            Ok(res)
        }
        Some(op @ (Op::Softmax { .. } | Op::LayerNorm { .. } | Op::RmsNorm { .. })) => {
            let n = anchor_node.unwrap_or_default();
            let node = &g.nodes[n];
            let (x, nv) = (node.inputs[0], node.outputs[0]);
            let xs = b.shape(x)?;
            let axis = match op {
                Op::Softmax { axis } | Op::LayerNorm { axis, .. } | Op::RmsNorm { axis, .. } => {
                    norm_axis(axis, xs.len())
                }
                _ => unreachable!(),
            };
            if axis + 1 != xs.len() || b.shape(out)? != xs {
                return Err("a normalization over other than the last axis".into());
            }
            let width = xs[axis] as u64;
            // Loops over the leading dims, statistics, then the row.
            let lead: Vec<Var> = (0..xs.len() - 1).map(|d| if d == 0 { 0 } else { b.fresh_var() }).collect();
            let j = if xs.len() == 1 { 0 } else { b.fresh_var() };
            let rv = b.fresh_var();
            let at = |last: Var| Coords::Dims(lead.iter().map(|&v| var(v)).chain([var(last)]).collect());
            let xr = b.load(x, &at(rv))?;
            let inv_n = Expr::Const(1.0 / width as f32);
            let mut pre = Vec::new();
            match op {
                Op::Softmax { .. } => {
                    let (mx, inv) = (b.fresh_let(), b.fresh_let());
                    pre.push(Stmt::Let {
                        id: mx,
                        value: Expr::Reduce { op: Reduce::Max, var: rv, extent: width, body: Box::new(xr.clone()) },
                    });
                    let e = Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, xr, Expr::Get(mx)));
                    let s = Expr::Reduce { op: Reduce::Add, var: rv, extent: width, body: Box::new(e) };
                    pre.push(Stmt::Let { id: inv, value: Expr::unary(UnaryOp::Reciprocal, s) });
                    b.leaves.insert(nv, Leaf::Softmax { x, max: mx, inv });
                }
                Op::LayerNorm { epsilon, .. } | Op::RmsNorm { epsilon, .. } => {
                    let rms = matches!(op, Op::RmsNorm { .. });
                    let rstd = b.fresh_let();
                    let (mean, centered) = if rms {
                        (None, xr.clone())
                    } else {
                        let m = b.fresh_let();
                        let s = Expr::Reduce { op: Reduce::Add, var: rv, extent: width, body: Box::new(xr.clone()) };
                        pre.push(Stmt::Let { id: m, value: Expr::binary(BinaryOp::Mul, s, inv_n.clone()) });
                        (Some(m), Expr::binary(BinaryOp::Sub, xr, Expr::Get(m)))
                    };
                    let sq = Expr::binary(BinaryOp::Mul, centered.clone(), centered);
                    let var_e = Expr::binary(
                        BinaryOp::Mul,
                        Expr::Reduce { op: Reduce::Add, var: rv, extent: width, body: Box::new(sq) },
                        inv_n,
                    );
                    let v = Expr::binary(BinaryOp::Add, var_e, Expr::Const(epsilon));
                    pre.push(Stmt::Let { id: rstd, value: Expr::unary(UnaryOp::Rsqrt, v) });
                    let gamma = node.inputs.get(1).copied();
                    let beta = node.inputs.get(2).copied();
                    b.leaves.insert(nv, Leaf::Norm { x, mean, rstd, gamma, beta });
                }
                _ => unreachable!(),
            }
            let ob = b.buf(out, Access::Write);
            let coords = at(j);
            let value = b.expr(out, &coords)?;
            let store = Stmt::Store { buf: ob, index: flat(&xs, &coords), value };
            let mut body = pre;
            if xs.len() == 1 {
                return Err("a normalization of a vector".into());
            }
            body.push(Stmt::For { var: j, extent: width, body: vec![store] });
            for d in (1..lead.len()).rev() {
                body = vec![Stmt::For { var: lead[d], extent: xs[d] as u64, body }];
            }
            let kern = Kernel { name: name.to_string(), bufs: Vec::new(), extent: xs[0] as u64, body };
            let kern = finish(&b, kern, u64::MAX)?;
            Ok(vec![Lowered { op: KernelOp::Loop(kern), values: values(&b) }])
        }
        Some(Op::Attention { scale }) => {
            let n = anchor_node.unwrap_or_default();
            let node = &g.nodes[n];
            let (q, kv, v, ov) = (node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]);
            let (qs, ks, vs) = (b.shape(q)?, b.shape(kv)?, b.shape(v)?);
            let r = qs.len();
            if r < 2 || ks.len() != r || vs.len() != r || qs[..r - 2] != ks[..r - 2] || qs[..r - 2] != vs[..r - 2] {
                return Err("attention with broadcast batch or head dimensions".into());
            }
            let heads: usize = qs[..r - 2].iter().product();
            let (sq, d, sk, dv) = (qs[r - 2], qs[r - 1], ks[r - 2], vs[r - 1]);
            let has_epilogue = epilogue_nodes > 0;
            let (qb, kb, vb) = (b.buf(q, Access::Read), b.buf(kv, Access::Read), b.buf(v, Access::Read));
            let ob = b.buf(out, if has_epilogue { Access::ReadWrite } else { Access::Write });
            let mask = match node.inputs.get(3) {
                None => None,
                Some(&mv) => {
                    let ms = b.shape(mv)?;
                    let full: Vec<usize> = qs[..r - 2].iter().copied().chain([sq, sk]).collect();
                    if ms.len() > full.len() {
                        return Err("attention mask of higher rank".into());
                    }
                    let pad = full.len() - ms.len();
                    let st = strides(&ms);
                    let stride = |d: usize| if d < pad || ms[d - pad] == 1 { 0 } else { st[d - pad] };
                    let lead: Vec<i64> = (0..r - 2).map(stride).collect();
                    let hs = if lead.iter().all(|&s| s == 0) {
                        0
                    } else if (0..r - 2).all(|d| stride(d) != 0 || qs[d] == 1)
                        && (0..r - 3).all(|d| qs[d + 1] == 1 || lead[d] == lead[d + 1] * qs[d + 1] as i64)
                    {
                        *lead.iter().rev().find(|&&s| s != 0).unwrap_or(&0)
                    } else {
                        return Err("attention mask broadcast over some but not all heads".into());
                    };
                    Some((b.buf(mv, Access::Read), hs, stride(r - 2), stride(r - 1)))
                }
            };
            let att = sovc_ir::kernel::Attention {
                name: name.to_string(),
                bufs: b.kbufs()?,
                heads: heads as u64,
                sq: sq as u64,
                sk: sk as u64,
                d: d as u64,
                dv: dv as u64,
                scale,
                q: qb,
                k: kb,
                v: vb,
                o: ob,
                mask,
            };
            let mut res = Vec::new();
            if has_epilogue {
                b.leaves.insert(ov, Leaf::Buffer(ob));
                let kern = b.elementwise_kernel(&format!("{name}.epilogue"), out, ob)?;
                let kern = finish(&b, kern, u64::MAX)?;
                let mut att = att;
                att.bufs = kern.bufs.clone();
                sovc_ir::kernel::verify_op(&KernelOp::Attention(att.clone())).map_err(|e| e.join("; "))?;
                res.push(Lowered { op: KernelOp::Attention(att), values: values(&b) });
                res.push(Lowered { op: KernelOp::Loop(kern), values: values(&b) });
            } else {
                sovc_ir::kernel::verify_op(&KernelOp::Attention(att.clone())).map_err(|e| e.join("; "))?;
                res.push(Lowered { op: KernelOp::Attention(att), values: values(&b) });
            }
            Ok(res)
        }
        other => Err(format!("`{}` has no cpu kernel yet", other.map_or("?", |o| o.name()))),
    }
}
