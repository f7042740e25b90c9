//! Decompositions of composite ops into primitives. A target that does not implement a composite gets
//! this expansion; the interpreter runs composites directly, and the tests check both agree.

use crate::{BinaryOp, GeluApprox, Graph, IrError, Node, Op, ReduceKind, Shape, Tensor, UnaryOp, ValueId};

/// Builds primitive nodes for one composite node, naming them after it.
struct Emitter<'a> {
    g: &'a mut Graph,
    name: String,
    n: usize,
}

impl Emitter<'_> {
    fn node(&mut self, op: Op, ins: &[ValueId]) -> Result<ValueId, IrError> {
        self.n += 1;
        let name = format!("{}/{}{}", self.name, op.name(), self.n);
        self.g.add1(op, ins, name)
    }
    fn un(&mut self, u: UnaryOp, x: ValueId) -> Result<ValueId, IrError> {
        self.node(Op::Unary(u), &[x])
    }
    fn bin(&mut self, b: BinaryOp, x: ValueId, y: ValueId) -> Result<ValueId, IrError> {
        self.node(Op::Binary(b), &[x, y])
    }
    /// A scalar constant with the element type of `like`.
    fn scalar(&mut self, v: f64, like: ValueId) -> ValueId {
        self.n += 1;
        let dt = self.g.ty(like).dtype;
        self.g.add_inline(format!("{}/c{}", self.name, self.n), Tensor::from_f64_fn(dt, &[], |_| v))
    }
    fn reduce(&mut self, kind: ReduceKind, x: ValueId, axes: Vec<i64>) -> Result<ValueId, IrError> {
        self.node(Op::Reduce { kind, axes, keepdims: true }, &[x])
    }
    /// Reshapes a per-channel vector `[C]` to `[C, 1, ...]` so it broadcasts against NC... of `rank`.
    fn per_channel(&mut self, p: ValueId, rank: usize) -> Result<ValueId, IrError> {
        let mut dims = self.g.ty(p).shape.0.clone();
        dims.extend(std::iter::repeat_n(crate::Dim::Const(1), rank - 2));
        self.node(Op::Reshape { shape: Shape(dims) }, &[p])
    }
    fn normalize(&mut self, x: ValueId, axes: Vec<i64>, eps: f32, center: bool) -> Result<ValueId, IrError> {
        let d = if center {
            let mean = self.reduce(ReduceKind::Mean, x, axes.clone())?;
            self.bin(BinaryOp::Sub, x, mean)?
        } else {
            x
        };
        let sq = self.bin(BinaryOp::Mul, d, d)?;
        let var = self.reduce(ReduceKind::Mean, sq, axes)?;
        let e = self.scalar(eps as f64, x);
        let ve = self.bin(BinaryOp::Add, var, e)?;
        let inv = self.un(UnaryOp::Rsqrt, ve)?;
        self.bin(BinaryOp::Mul, d, inv)
    }
    /// `max(x, 0) + log(1 + exp(-|x|))`: equal to `log(1 + exp(x))` without overflowing for large x.
    fn softplus(&mut self, x: ValueId) -> Result<ValueId, IrError> {
        let a = self.un(UnaryOp::Abs, x)?;
        let na = self.un(UnaryOp::Neg, a)?;
        let e = self.un(UnaryOp::Exp, na)?;
        let one = self.scalar(1.0, x);
        let s = self.bin(BinaryOp::Add, e, one)?;
        let l = self.un(UnaryOp::Log, s)?;
        let r = self.un(UnaryOp::Relu, x)?;
        self.bin(BinaryOp::Add, r, l)
    }
}

/// Expands one composite op applied to `ins` into primitives added to `g`; returns the results.
/// Returns `Ok(None)` for ops that are not composite.
pub fn expand(g: &mut Graph, op: &Op, ins: &[ValueId], name: &str) -> Result<Option<Vec<ValueId>>, IrError> {
    if !op.is_composite() {
        return Ok(None);
    }
    let x = ins[0];
    let rank = g.ty(x).shape.rank() as i64;
    let mut e = Emitter { g, name: name.to_string(), n: 0 };
    let y = match *op {
        Op::Softmax { axis } | Op::LogSoftmax { axis } => {
            let m = e.reduce(ReduceKind::Max, x, vec![(axis + rank) % rank])?;
            let d = e.bin(BinaryOp::Sub, x, m)?;
            let ex = e.un(UnaryOp::Exp, d)?;
            let s = e.reduce(ReduceKind::Sum, ex, vec![(axis + rank) % rank])?;
            if matches!(op, Op::Softmax { .. }) {
                e.bin(BinaryOp::Div, ex, s)?
            } else {
                let ls = e.un(UnaryOp::Log, s)?;
                e.bin(BinaryOp::Sub, d, ls)?
            }
        }
        Op::LayerNorm { axis, epsilon } | Op::RmsNorm { axis, epsilon } => {
            let a = (axis + rank) % rank;
            let n = e.normalize(x, (a..rank).collect(), epsilon, matches!(op, Op::LayerNorm { .. }))?;
            let y = e.bin(BinaryOp::Mul, n, ins[1])?;
            match ins.get(2) {
                Some(&b) => e.bin(BinaryOp::Add, y, b)?,
                None => y,
            }
        }
        Op::BatchNorm { epsilon } => {
            let r = rank as usize;
            let (s, b, m, v) = (
                e.per_channel(ins[1], r)?,
                e.per_channel(ins[2], r)?,
                e.per_channel(ins[3], r)?,
                e.per_channel(ins[4], r)?,
            );
            let eps = e.scalar(epsilon as f64, x);
            let ve = e.bin(BinaryOp::Add, v, eps)?;
            let inv = e.un(UnaryOp::Rsqrt, ve)?;
            let k = e.bin(BinaryOp::Mul, inv, s)?;
            let d = e.bin(BinaryOp::Sub, x, m)?;
            let y = e.bin(BinaryOp::Mul, d, k)?;
            e.bin(BinaryOp::Add, y, b)?
        }
        Op::InstanceNorm { epsilon } => {
            let r = rank as usize;
            let n = e.normalize(x, (2..rank).collect(), epsilon, true)?;
            let (s, b) = (e.per_channel(ins[1], r)?, e.per_channel(ins[2], r)?);
            let y = e.bin(BinaryOp::Mul, n, s)?;
            e.bin(BinaryOp::Add, y, b)?
        }
        Op::GroupNorm { num_groups, epsilon } => {
            let shape = e.g.ty(x).shape.clone();
            let c = shape.0[1]
                .as_const()
                .ok_or_else(|| IrError::Graph(format!("{name}: group_norm needs a known channel count")))?;
            let mut grouped = vec![
                shape.0[0].clone(),
                crate::Dim::Const(num_groups as u64),
                crate::Dim::Const(c / num_groups as u64),
            ];
            grouped.extend(shape.0[2..].iter().cloned());
            let gx = e.node(Op::Reshape { shape: Shape(grouped) }, &[x])?;
            let n = e.normalize(gx, (2..rank + 1).collect(), epsilon, true)?;
            let back = e.node(Op::Reshape { shape }, &[n])?;
            let r = rank as usize;
            let (s, b) = (e.per_channel(ins[1], r)?, e.per_channel(ins[2], r)?);
            let y = e.bin(BinaryOp::Mul, back, s)?;
            e.bin(BinaryOp::Add, y, b)?
        }
        Op::Gelu { approximate } => {
            let half = e.scalar(0.5, x);
            let one = e.scalar(1.0, x);
            let inner = match approximate {
                GeluApprox::None => {
                    let k = e.scalar(std::f64::consts::FRAC_1_SQRT_2, x);
                    let t = e.bin(BinaryOp::Mul, x, k)?;
                    e.un(UnaryOp::Erf, t)?
                }
                GeluApprox::Tanh => {
                    let x2 = e.bin(BinaryOp::Mul, x, x)?;
                    let x3 = e.bin(BinaryOp::Mul, x2, x)?;
                    let c1 = e.scalar(0.044715, x);
                    let t = e.bin(BinaryOp::Mul, x3, c1)?;
                    let s = e.bin(BinaryOp::Add, x, t)?;
                    let c2 = e.scalar((2.0 / std::f64::consts::PI).sqrt(), x);
                    let u = e.bin(BinaryOp::Mul, s, c2)?;
                    e.un(UnaryOp::Tanh, u)?
                }
            };
            let p = e.bin(BinaryOp::Add, inner, one)?;
            let hx = e.bin(BinaryOp::Mul, x, half)?;
            e.bin(BinaryOp::Mul, hx, p)?
        }
        Op::Attention { scale } => {
            let r = rank as usize;
            let mut perm: Vec<i64> = (0..rank).collect();
            perm.swap(r - 2, r - 1);
            let kt = e.node(Op::Transpose { perm }, &[ins[1]])?;
            let s = e.node(Op::MatMul {}, &[x, kt])?;
            let c = e.scalar(scale as f64, x);
            let mut s = e.bin(BinaryOp::Mul, s, c)?;
            if let Some(&m) = ins.get(3) {
                s = e.bin(BinaryOp::Add, s, m)?;
            }
            let p = e.node(Op::Softmax { axis: -1 }, &[s])?;
            e.node(Op::MatMul {}, &[p, ins[2]])?
        }
        Op::Unary(UnaryOp::Softplus) => e.softplus(x)?,
        Op::Unary(UnaryOp::Softsign) => {
            let a = e.un(UnaryOp::Abs, x)?;
            let one = e.scalar(1.0, x);
            let d = e.bin(BinaryOp::Add, a, one)?;
            e.bin(BinaryOp::Div, x, d)?
        }
        Op::Unary(UnaryOp::HardSwish) => {
            let k = e.scalar(1.0 / 6.0, x);
            let h = e.scalar(0.5, x);
            let t = e.bin(BinaryOp::Mul, x, k)?;
            let t = e.bin(BinaryOp::Add, t, h)?;
            let (lo, hi) = (e.scalar(0.0, x), e.scalar(1.0, x));
            let c = e.node(Op::Clip {}, &[t, lo, hi])?;
            e.bin(BinaryOp::Mul, x, c)?
        }
        Op::Unary(UnaryOp::Silu) => {
            let s = e.un(UnaryOp::Sigmoid, x)?;
            e.bin(BinaryOp::Mul, x, s)?
        }
        Op::Unary(UnaryOp::Mish) => {
            let sp = e.softplus(x)?;
            let t = e.un(UnaryOp::Tanh, sp)?;
            e.bin(BinaryOp::Mul, x, t)?
        }
        Op::Binary(BinaryOp::PRelu) => {
            let zero = e.scalar(0.0, x);
            let neg = e.bin(BinaryOp::Less, x, zero)?;
            let scaled = e.bin(BinaryOp::Mul, x, ins[1])?;
            e.node(Op::Where {}, &[neg, scaled, x])?
        }
        _ => {
            return Err(IrError::Graph(format!(
                "{name}: op {} is marked composite but has no decomposition",
                op.name()
            )))
        }
    };
    Ok(Some(vec![y]))
}

/// A copy of `g` with every composite op replaced by its decomposition.
pub fn decompose_all(g: &Graph) -> Result<Graph, IrError> {
    let mut out = Graph {
        values: g.values.clone(),
        inputs: g.inputs.clone(),
        consts: g.consts.clone(),
        nodes: Vec::new(),
        outputs: Vec::new(),
    };
    let mut map: Vec<ValueId> = (0..g.values.len() as u32).map(ValueId).collect();
    for Node { op, inputs, outputs, name } in &g.nodes {
        let ins: Vec<ValueId> = inputs.iter().map(|v| map[v.index()]).collect();
        match expand(&mut out, op, &ins, name)? {
            Some(results) => {
                for (o, r) in outputs.iter().zip(results) {
                    map[o.index()] = r;
                }
            }
            None => out.nodes.push(Node { op: op.clone(), inputs: ins, outputs: outputs.clone(), name: name.clone() }),
        }
    }
    out.outputs =
        g.outputs.iter().map(|o| crate::Output { name: o.name.clone(), value: map[o.value.index()] }).collect();
    // A decomposition may use other composites (attention uses softmax): expand until none is left.
    if out.nodes.iter().any(|n| n.op.is_composite()) {
        return decompose_all(&out);
    }
    Ok(out.canonical())
}
