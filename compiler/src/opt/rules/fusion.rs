//! Recognition of composite ops in the primitives that exporters emit: GELU (erf and tanh forms), layer
//! normalization, SiLU. A target then gets one fused kernel instead of five to ten.

use super::{all_equal, close, find_node, op_of, product_factors, same, scalar, Group, Rule, Term};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use sovc_ir::{BinaryOp, GeluApprox, Op, ReduceKind, Tensor, UnaryOp};

pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "gelu-erf", group: Group::Fuse, doc: "x * 0.5 * (1 + erf(x / sqrt 2)), in any factor order, is gelu(x)", find: gelu_erf },
        Rule { name: "gelu-tanh", group: Group::Fuse, doc: "0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) is gelu(x, tanh)", find: gelu_tanh },
        Rule { name: "layer-norm", group: Group::Fuse, doc: "(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) over trailing axes, scaled (and shifted), is layer_norm", find: layer_norm },
        Rule { name: "silu", group: Group::Fuse, doc: "x * sigmoid(x) is silu(x)", find: silu },
        Rule { name: "rms-norm", group: Group::Fuse, doc: "x * rsqrt(mean(x^2) + eps) * gamma over trailing axes (Llama's form, or x / sqrt(..)) is rms_norm", find: rms_norm },
        Rule { name: "attention", group: Group::Fuse, doc: "softmax(q @ k^T * s (+ mask)) @ v is one attention op (so a target can run it flash-style)", find: attention },
        Rule { name: "softmax", group: Group::Fuse, doc: "exp(x - max(x)) / sum(exp(x - max(x))) over one axis (max optional) is softmax", find: softmax },
    ]
}

/// Finds `x` and the `1 + f(...)` factor among product factors `fs`: the factor whose class holds
/// `add(one, inner)` with `one == 1`, returning (x candidates, inner).
fn one_plus(eg: &EG, f: Id) -> Option<Id> {
    let (_, ch) = find_node(eg, f, |op| matches!(op, Op::Binary(BinaryOp::Add)))?;
    if all_equal(eg, ch[1], 1.0) {
        Some(ch[0])
    } else if all_equal(eg, ch[0], 1.0) {
        Some(ch[1])
    } else {
        None
    }
}

/// Whether class `u` is `x / sqrt(2)` or `x * (1/sqrt 2)`.
fn is_x_over_sqrt2(eg: &EG, u: Id, x: Id) -> bool {
    let s2 = std::f64::consts::SQRT_2;
    if let Some((_, ch)) = find_node(eg, u, |op| matches!(op, Op::Binary(BinaryOp::Div))) {
        if same(eg, ch[0], x) && scalar(eg, ch[1]).is_some_and(|c| close(c, s2, 1e-4)) {
            return true;
        }
    }
    if let Some((_, ch)) = find_node(eg, u, |op| matches!(op, Op::Binary(BinaryOp::Mul))) {
        let (a, b) = (ch[0], ch[1]);
        let k = |c: Id| scalar(eg, c).is_some_and(|c| close(c, 1.0 / s2, 1e-4));
        return (same(eg, a, x) && k(b)) || (same(eg, b, x) && k(a));
    }
    false
}

/// Splits a product into (the 0.5 factor, the `1 + inner` factor, the remaining single factor `x`).
fn half_x_oneplus(eg: &EG, id: Id) -> Option<(Id, Id)> {
    let fs = product_factors(eg, id, 2);
    if fs.len() != 3 {
        return None;
    }
    let half = fs.iter().position(|&f| scalar(eg, f).is_some_and(|c| close(c, 0.5, 1e-6)))?;
    let rest: Vec<Id> = fs.iter().enumerate().filter(|&(i, _)| i != half).map(|(_, &f)| f).collect();
    for (a, b) in [(rest[0], rest[1]), (rest[1], rest[0])] {
        if let Some(inner) = one_plus(eg, b) {
            return Some((a, inner));
        }
    }
    None
}

fn gelu_erf(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::Binary(BinaryOp::Mul)).then_some(())?;
    let (x, inner) = half_x_oneplus(eg, id)?;
    let (_, ch) = find_node(eg, inner, |op| matches!(op, Op::Unary(UnaryOp::Erf)))?;
    (is_x_over_sqrt2(eg, ch[0], x) && eg[x].data.tys == eg[id].data.tys)
        .then(|| Term::Op(Op::Gelu { approximate: GeluApprox::None }, vec![Term::Class(x)]))
}

/// Whether class `c` is `x^3` (as `pow(x, 3)` or `x * x * x`).
fn is_cube(eg: &EG, c: Id, x: Id) -> bool {
    if let Some((_, ch)) = find_node(eg, c, |op| matches!(op, Op::Binary(BinaryOp::Pow))) {
        if same(eg, ch[0], x) && scalar(eg, ch[1]) == Some(3.0) {
            return true;
        }
    }
    let fs = product_factors(eg, c, 2);
    fs.len() == 3 && fs.iter().all(|&f| same(eg, f, x))
}

fn gelu_tanh(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::Binary(BinaryOp::Mul)).then_some(())?;
    let (x, inner) = half_x_oneplus(eg, id)?;
    let (_, t) = find_node(eg, inner, |op| matches!(op, Op::Unary(UnaryOp::Tanh)))?;
    let fs = product_factors(eg, t[0], 1);
    if fs.len() != 2 {
        return None;
    }
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let (kpos, _) = fs.iter().enumerate().find(|(_, &f)| scalar(eg, f).is_some_and(|c| close(c, k, 1e-3)))?;
    let sum = fs[1 - kpos];
    let (_, s) = find_node(eg, sum, |op| matches!(op, Op::Binary(BinaryOp::Add)))?;
    let cubic = if same(eg, s[0], x) {
        s[1]
    } else if same(eg, s[1], x) {
        s[0]
    } else {
        return None;
    };
    let cf = product_factors(eg, cubic, 1);
    let ok = cf.len() == 2
        && (0..2).any(|i| scalar(eg, cf[i]).is_some_and(|c| close(c, 0.044715, 1e-3)) && is_cube(eg, cf[1 - i], x));
    (ok && eg[x].data.tys == eg[id].data.tys)
        .then(|| Term::Op(Op::Gelu { approximate: GeluApprox::Tanh }, vec![Term::Class(x)]))
}

/// `x - mean(x)` over trailing axes: returns (x, first normalized axis).
fn centered(eg: &EG, d: Id) -> Option<(Id, i64)> {
    let (_, ch) = find_node(eg, d, |op| matches!(op, Op::Binary(BinaryOp::Sub)))?;
    let (x, mean) = (ch[0], ch[1]);
    let (op, mch) = find_node(eg, mean, |op| matches!(op, Op::Reduce { kind: ReduceKind::Mean, keepdims: true, .. }))?;
    let Op::Reduce { axes, .. } = op else { return None };
    let rank = eg[x].data.ty().shape.rank() as i64;
    let first = *axes.first()?;
    let trailing = axes.iter().enumerate().all(|(i, &a)| a == first + i as i64) && *axes.last()? == rank - 1;
    (same(eg, mch[0], x) && trailing).then_some((x, first))
}

/// `v / sqrt(m + eps)` or `v * rsqrt(m + eps)`, the shape of both normalizations: returns
/// (v, the mean-of-squares class m, eps, m's reduce axes, m's reduce input).
fn over_root_mean(eg: &EG, id: Id) -> Option<(Id, f64, Vec<i64>, Id)> {
    let by_div = find_node(eg, id, |op| matches!(op, Op::Binary(BinaryOp::Div))).and_then(|(_, ch)| {
        let (_, sq) = find_node(eg, ch[1], |op| matches!(op, Op::Unary(UnaryOp::Sqrt)))?;
        Some((ch[0], sq[0]))
    });
    let by_rsqrt = || {
        let (_, ch) = find_node(eg, id, |op| matches!(op, Op::Binary(BinaryOp::Mul)))?;
        (0..2).find_map(|i| {
            let (_, r) = find_node(eg, ch[1 - i], |op| matches!(op, Op::Unary(UnaryOp::Rsqrt)))?;
            Some((ch[i], r[0]))
        })
    };
    let (v, var_eps) = by_div.or_else(by_rsqrt)?;
    let (_, ve) = find_node(eg, var_eps, |op| matches!(op, Op::Binary(BinaryOp::Add)))?;
    let (m, eps) = match (scalar(eg, ve[1]), scalar(eg, ve[0])) {
        (Some(e), _) => (ve[0], e),
        (None, Some(e)) => (ve[1], e),
        _ => return None,
    };
    let (op, mch) = find_node(eg, m, |op| matches!(op, Op::Reduce { kind: ReduceKind::Mean, keepdims: true, .. }))?;
    let Op::Reduce { axes, .. } = op else { return None };
    Some((v, eps, axes.clone(), mch[0]))
}

/// Whether class `sq` is `v * v` or `pow(v, 2)`.
fn is_square_of(eg: &EG, sq: Id, v: Id) -> bool {
    find_node(eg, sq, |op| matches!(op, Op::Binary(BinaryOp::Pow)))
        .is_some_and(|(_, p)| same(eg, p[0], v) && scalar(eg, p[1]) == Some(2.0))
        || find_node(eg, sq, |op| matches!(op, Op::Binary(BinaryOp::Mul)))
            .is_some_and(|(_, p)| same(eg, p[0], v) && same(eg, p[1], v))
}

/// The normalized value `(x - mean) / sqrt(var + eps)` (or `(x - mean) * rsqrt(var + eps)`, the form of
/// sovc's own decomposition), mean and variance over the same trailing axes: returns (x, axis, eps).
fn normalized(eg: &EG, id: Id) -> Option<(Id, i64, f64)> {
    let (d, eps, axes, sq) = over_root_mean(eg, id)?;
    let (x, axis) = centered(eg, d)?;
    let rank = eg[x].data.ty().shape.rank() as i64;
    (axes == (axis..rank).collect::<Vec<i64>>() && is_square_of(eg, sq, d)).then_some((x, axis, eps))
}

/// A parameter of the normalized shape (trailing dims from `axis`), as layer norm takes it.
fn fits_param(eg: &EG, p: Id, x: Id, axis: i64) -> bool {
    let xs = &eg[x].data.ty().shape;
    let norm = sovc_ir::Shape(xs.0[axis as usize..].to_vec());
    let ps = &eg[p].data.ty().shape;
    eg[p].data.ty().dtype == eg[x].data.ty().dtype && sovc_ir::broadcast_shapes(&norm, ps).as_ref() == Some(&norm)
}

fn layer_norm(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    let op = op_of(eg, n)?;
    let ln = |x: Id, axis: i64, eps: f64, params: Vec<Term>| {
        let mut ins = vec![Term::Class(x)];
        ins.extend(params);
        Term::Op(Op::LayerNorm { axis, epsilon: eps as f32 }, ins)
    };
    match op {
        // (normalized * gamma) + beta
        Op::Binary(BinaryOp::Add) => {
            for (m, beta) in [(n.children[0], n.children[1]), (n.children[1], n.children[0])] {
                let Some((_, mc)) = find_node(eg, m, |op| matches!(op, Op::Binary(BinaryOp::Mul))) else { continue };
                for (z, gamma) in [(mc[0], mc[1]), (mc[1], mc[0])] {
                    if let Some((x, axis, eps)) = normalized(eg, z) {
                        if fits_param(eg, gamma, x, axis)
                            && fits_param(eg, beta, x, axis)
                            && eg[x].data.tys == eg[id].data.tys
                        {
                            return Some(ln(x, axis, eps, vec![Term::Class(gamma), Term::Class(beta)]));
                        }
                    }
                }
            }
            None
        }
        // normalized * gamma
        Op::Binary(BinaryOp::Mul)
            if [(n.children[0], n.children[1]), (n.children[1], n.children[0])]
                .iter()
                .any(|&(z, gamma)| normalized(eg, z).is_some_and(|(x, axis, _)| fits_param(eg, gamma, x, axis))) =>
        {
            for (z, gamma) in [(n.children[0], n.children[1]), (n.children[1], n.children[0])] {
                if let Some((x, axis, eps)) = normalized(eg, z) {
                    if fits_param(eg, gamma, x, axis) && eg[x].data.tys == eg[id].data.tys {
                        return Some(ln(x, axis, eps, vec![Term::Class(gamma)]));
                    }
                }
            }
            None
        }
        // bare normalization: scale of ones
        Op::Binary(BinaryOp::Div) | Op::Binary(BinaryOp::Mul) => {
            let (x, axis, eps) = normalized(eg, id)?;
            let t = eg[x].data.ty();
            let c = t.shape.0.last()?.as_const()? as usize;
            let ones = Tensor::from_f64_fn(t.dtype, &[c], |_| 1.0);
            (eg[x].data.tys == eg[id].data.tys && axis == t.shape.rank() as i64 - 1)
                .then(|| ln(x, axis, eps, vec![Term::Const(ones)]))
        }
        _ => None,
    }
}

/// `x * rsqrt(mean(x^2) + eps)` or `x / sqrt(mean(x^2) + eps)` over trailing axes: (x, axis, eps).
fn rms_normalized(eg: &EG, z: Id) -> Option<(Id, i64, f64)> {
    let (x, eps, axes, sq) = over_root_mean(eg, z)?;
    let rank = eg[x].data.ty().shape.rank() as i64;
    let first = *axes.first()?;
    (axes == (first..rank).collect::<Vec<i64>>() && is_square_of(eg, sq, x)).then_some((x, first, eps))
}

fn rms_norm(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::Binary(BinaryOp::Mul)).then_some(())?;
    for (z, gamma) in [(n.children[0], n.children[1]), (n.children[1], n.children[0])] {
        if let Some((x, axis, eps)) = rms_normalized(eg, z) {
            if fits_param(eg, gamma, x, axis) && eg[x].data.tys == eg[id].data.tys {
                return Some(Term::Op(
                    Op::RmsNorm { axis, epsilon: eps as f32 },
                    vec![Term::Class(x), Term::Class(gamma)],
                ));
            }
        }
    }
    None
}

fn silu(eg: &EG, _id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::Binary(BinaryOp::Mul)).then_some(())?;
    for (x, s) in [(n.children[0], n.children[1]), (n.children[1], n.children[0])] {
        if let Some((_, ch)) = find_node(eg, s, |op| matches!(op, Op::Unary(UnaryOp::Sigmoid))) {
            if same(eg, ch[0], x) && eg[x].data.tys == eg[s].data.tys {
                return Some(Term::Op(Op::Unary(UnaryOp::Silu), vec![Term::Class(x)]));
            }
        }
    }
    None
}

fn attention(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::MatMul {}).then_some(())?;
    let (p, v) = (n.children[0], n.children[1]);
    let rank = eg[p].data.ty().shape.rank() as i64;
    let (_, sm) = find_node(eg, p, |op| matches!(op, Op::Softmax { axis } if *axis == -1 || *axis == rank - 1))?;
    let mut s = sm[0];
    // Optional additive mask.
    let mut mask = None;
    if let Some((_, a)) = find_node(eg, s, |op| matches!(op, Op::Binary(BinaryOp::Add))) {
        let scored = |c: Id| {
            find_node(eg, c, |op| matches!(op, Op::MatMul {} | Op::Binary(BinaryOp::Mul | BinaryOp::Div))).is_some()
        };
        if scored(a[0]) {
            (s, mask) = (a[0], Some(a[1]));
        } else if scored(a[1]) {
            (s, mask) = (a[1], Some(a[0]));
        }
    }
    // Optional scale.
    let mut scale = 1.0f64;
    if let Some((op, m)) = find_node(eg, s, |op| matches!(op, Op::Binary(BinaryOp::Mul | BinaryOp::Div))) {
        let div = matches!(op, Op::Binary(BinaryOp::Div));
        let (c0, c1) = (scalar(eg, m[0]), scalar(eg, m[1]));
        match (c0, c1) {
            (_, Some(c)) if c != 0.0 => (s, scale) = (m[0], if div { 1.0 / c } else { c }),
            (Some(c), None) if !div => (s, scale) = (m[1], c),
            _ => {}
        }
    }
    let (_, qk) = find_node(eg, s, |op| matches!(op, Op::MatMul {}))?;
    let (q, kt) = (qk[0], qk[1]);
    let r = eg[kt].data.ty().shape.rank();
    if r < 2 {
        return None;
    }
    let mut perm: Vec<i64> = (0..r as i64).collect();
    perm.swap(r - 2, r - 1);
    let k_ty = sovc_ir::infer::infer(&Op::Transpose { perm: perm.clone() }, &[eg[kt].data.ty()]).ok()?.remove(0);
    let mut tys = vec![eg[q].data.ty(), &k_ty, eg[v].data.ty()];
    if let Some(m) = mask {
        tys.push(eg[m].data.ty());
    }
    let op = Op::Attention { scale: scale as f32 };
    let out = sovc_ir::infer::infer(&op, &tys).ok()?;
    if out[0] != *eg[id].data.ty() {
        return None;
    }
    let mut ins = vec![Term::Class(q), Term::Op(Op::Transpose { perm }, vec![Term::Class(kt)]), Term::Class(v)];
    ins.extend(mask.map(Term::Class));
    Some(Term::Op(op, ins))
}

fn softmax(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::Binary(BinaryOp::Div)).then_some(())?;
    let (e, s) = (n.children[0], n.children[1]);
    let (sop, sch) = find_node(eg, s, |op| matches!(op, Op::Reduce { kind: ReduceKind::Sum, keepdims: true, .. }))?;
    let Op::Reduce { axes, .. } = sop else { return None };
    let [axis] = axes.as_slice() else { return None };
    if !same(eg, sch[0], e) {
        return None;
    }
    let (_, ech) = find_node(eg, e, |op| matches!(op, Op::Unary(UnaryOp::Exp)))?;
    let arg = ech[0];
    // Either exp(x) directly or exp(x - max(x)) with the max over the same axis.
    let x = match find_node(eg, arg, |op| matches!(op, Op::Binary(BinaryOp::Sub))) {
        Some((_, d)) if find_node(eg, d[1], |op| matches!(op, Op::Reduce { kind: ReduceKind::Max, keepdims: true, axes } if axes.as_slice() == [*axis]))
            .is_some_and(|(_, m)| same(eg, m[0], d[0])) =>
        {
            d[0]
        }
        _ => arg,
    };
    (eg[x].data.tys == eg[id].data.tys && eg[x].data.ty().dtype.is_float())
        .then(|| Term::Op(Op::Softmax { axis: *axis }, vec![Term::Class(x)]))
}

#[cfg(test)]
mod tests {
    use crate::opt::rules::testing::{check_rule, f32_input, feed, ops};
    use sovc_ir::{BinaryOp, Graph, Op, ReduceKind, Tensor, UnaryOp};
    use std::collections::BTreeMap;

    fn scalar(g: &mut Graph, name: &str, v: f32) -> sovc_ir::ValueId {
        g.add_inline(name, Tensor::scalar(v))
    }

    fn bin(g: &mut Graph, b: BinaryOp, x: sovc_ir::ValueId, y: sovc_ir::ValueId) -> sovc_ir::ValueId {
        let n = g.nodes.len();
        g.add1(Op::Binary(b), &[x, y], format!("n{n}")).unwrap()
    }

    fn un(g: &mut Graph, u: UnaryOp, x: sovc_ir::ValueId) -> sovc_ir::ValueId {
        let n = g.nodes.len();
        g.add1(Op::Unary(u), &[x], format!("n{n}")).unwrap()
    }

    #[test]
    fn gelu_erf_as_pytorch_exports_it() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 8]);
        let (s2, one, half) =
            (scalar(&mut g, "s2", std::f32::consts::SQRT_2), scalar(&mut g, "one", 1.0), scalar(&mut g, "half", 0.5));
        let d = bin(&mut g, BinaryOp::Div, x, s2);
        let e = un(&mut g, UnaryOp::Erf, d);
        let a = bin(&mut g, BinaryOp::Add, e, one);
        let m = bin(&mut g, BinaryOp::Mul, x, a);
        let y = bin(&mut g, BinaryOp::Mul, m, half);
        g.add_output("y", y);
        assert_eq!(ops(&check_rule("gelu-erf", &g, &BTreeMap::from([feed("x", &[2, 8])]))), vec!["gelu"]);
    }

    #[test]
    fn gelu_tanh_as_gpt2_exports_it() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 8]);
        let half = scalar(&mut g, "half", 0.5);
        let three = scalar(&mut g, "three", 3.0);
        let c = scalar(&mut g, "c", 0.044715);
        let k = scalar(&mut g, "k", (2.0 / std::f32::consts::PI).sqrt());
        let one = scalar(&mut g, "one", 1.0);
        let hx = bin(&mut g, BinaryOp::Mul, half, x);
        let p = bin(&mut g, BinaryOp::Pow, x, three);
        let cp = bin(&mut g, BinaryOp::Mul, c, p);
        let s = bin(&mut g, BinaryOp::Add, x, cp);
        let ks = bin(&mut g, BinaryOp::Mul, k, s);
        let t = un(&mut g, UnaryOp::Tanh, ks);
        let a = bin(&mut g, BinaryOp::Add, one, t);
        let y = bin(&mut g, BinaryOp::Mul, hx, a);
        g.add_output("y", y);
        assert_eq!(ops(&check_rule("gelu-tanh", &g, &BTreeMap::from([feed("x", &[2, 8])]))), vec!["gelu"]);
    }

    #[test]
    fn layer_norm_as_bert_exports_it() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 4, 8]);
        let gamma =
            g.add_inline("gamma", Tensor::from_vec(&[8], (0..8).map(|i| 1.0 + i as f32 * 0.1).collect()).unwrap());
        let beta = g.add_inline("beta", Tensor::from_vec(&[8], (0..8).map(|i| i as f32 * 0.05).collect()).unwrap());
        let (two, eps) = (scalar(&mut g, "two", 2.0), scalar(&mut g, "eps", 1e-12));
        let mean = g.add1(Op::Reduce { kind: ReduceKind::Mean, axes: vec![2], keepdims: true }, &[x], "mean").unwrap();
        let d = bin(&mut g, BinaryOp::Sub, x, mean);
        let p = bin(&mut g, BinaryOp::Pow, d, two);
        let var = g.add1(Op::Reduce { kind: ReduceKind::Mean, axes: vec![2], keepdims: true }, &[p], "var").unwrap();
        let ve = bin(&mut g, BinaryOp::Add, var, eps);
        let s = un(&mut g, UnaryOp::Sqrt, ve);
        let z = bin(&mut g, BinaryOp::Div, d, s);
        let m = bin(&mut g, BinaryOp::Mul, z, gamma);
        let y = bin(&mut g, BinaryOp::Add, m, beta);
        g.add_output("y", y);
        let out = check_rule("layer-norm", &g, &BTreeMap::from([feed("x", &[2, 4, 8])]));
        assert_eq!(ops(&out), vec!["layer_norm"]);
        assert!(matches!(out.nodes[0].op, Op::LayerNorm { axis: 2, .. }));
    }

    #[test]
    fn softmax_with_and_without_max_subtraction() {
        for stable in [true, false] {
            let mut g = Graph::new();
            let x = f32_input(&mut g, "x", &[3, 5]);
            let arg = if stable {
                let m =
                    g.add1(Op::Reduce { kind: ReduceKind::Max, axes: vec![1], keepdims: true }, &[x], "max").unwrap();
                bin(&mut g, BinaryOp::Sub, x, m)
            } else {
                x
            };
            let e = un(&mut g, UnaryOp::Exp, arg);
            let s = g.add1(Op::Reduce { kind: ReduceKind::Sum, axes: vec![1], keepdims: true }, &[e], "sum").unwrap();
            let y = bin(&mut g, BinaryOp::Div, e, s);
            g.add_output("y", y);
            assert_eq!(ops(&check_rule("softmax", &g, &BTreeMap::from([feed("x", &[3, 5])]))), vec!["softmax"]);
        }
    }

    #[test]
    fn attention_as_bert_exports_it() {
        let mut g = Graph::new();
        let q = f32_input(&mut g, "q", &[1, 2, 8, 4]);
        let k = f32_input(&mut g, "k", &[1, 2, 8, 4]);
        let v = f32_input(&mut g, "v", &[1, 2, 8, 4]);
        let mask = f32_input(&mut g, "mask", &[1, 1, 1, 8]);
        let kt = g.add1(Op::Transpose { perm: vec![0, 1, 3, 2] }, &[k], "kt").unwrap();
        let s = g.add1(Op::MatMul {}, &[q, kt], "qk").unwrap();
        let c = scalar(&mut g, "c", 2.0);
        let s = bin(&mut g, BinaryOp::Div, s, c);
        let s = bin(&mut g, BinaryOp::Add, s, mask);
        let p = g.add1(Op::Softmax { axis: -1 }, &[s], "softmax").unwrap();
        let y = g.add1(Op::MatMul {}, &[p, v], "pv").unwrap();
        g.add_output("y", y);
        let feeds = BTreeMap::from([
            feed("q", &[1, 2, 8, 4]),
            feed("k", &[1, 2, 8, 4]),
            feed("v", &[1, 2, 8, 4]),
            feed("mask", &[1, 1, 1, 8]),
        ]);
        let out = check_rule("attention", &g, &feeds);
        let names = ops(&out);
        assert!(names.contains(&"attention") && !names.contains(&"softmax"), "{names:?}");
        assert!(out.nodes.iter().any(|n| n.op == Op::Attention { scale: 0.5 }));
    }

    #[test]
    fn layer_norm_needs_the_same_axes_for_mean_and_variance() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 3, 4]);
        let eps = scalar(&mut g, "eps", 1e-5);
        let mean =
            g.add1(Op::Reduce { kind: ReduceKind::Mean, axes: vec![1, 2], keepdims: true }, &[x], "mean").unwrap();
        let d = bin(&mut g, BinaryOp::Sub, x, mean);
        let sq = bin(&mut g, BinaryOp::Mul, d, d);
        let var = g.add1(Op::Reduce { kind: ReduceKind::Mean, axes: vec![1], keepdims: true }, &[sq], "var").unwrap();
        let ve = bin(&mut g, BinaryOp::Add, var, eps);
        let s = un(&mut g, UnaryOp::Sqrt, ve);
        let y = bin(&mut g, BinaryOp::Div, d, s);
        g.add_output("y", y);
        let opts = crate::opt::OptOptions { only_rules: Some(vec!["layer-norm".into()]), ..Default::default() };
        let r = crate::opt::optimize(&g, &sovc_ir::Weights::default(), &opts).unwrap();
        assert!(r.report.applied.is_empty(), "variance over fewer axes than the mean is not a layer norm");
    }

    #[test]
    fn rms_norm_as_llama_writes_it() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 3, 8]);
        let gamma =
            g.add_inline("gamma", Tensor::from_vec(&[8], (0..8).map(|i| 1.0 + i as f32 * 0.1).collect()).unwrap());
        let (two, eps) = (scalar(&mut g, "two", 2.0), scalar(&mut g, "eps", 1e-6));
        let p = bin(&mut g, BinaryOp::Pow, x, two);
        let ms = g.add1(Op::Reduce { kind: ReduceKind::Mean, axes: vec![2], keepdims: true }, &[p], "ms").unwrap();
        let a = bin(&mut g, BinaryOp::Add, ms, eps);
        let r = un(&mut g, UnaryOp::Rsqrt, a);
        let z = bin(&mut g, BinaryOp::Mul, x, r);
        let y = bin(&mut g, BinaryOp::Mul, gamma, z);
        g.add_output("y", y);
        assert_eq!(ops(&check_rule("rms-norm", &g, &BTreeMap::from([feed("x", &[2, 3, 8])]))), vec!["rms_norm"]);
    }

    #[test]
    fn silu_from_sigmoid() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[6]);
        let s = un(&mut g, UnaryOp::Sigmoid, x);
        let y = bin(&mut g, BinaryOp::Mul, s, x);
        g.add_output("y", y);
        assert_eq!(ops(&check_rule("silu", &g, &BTreeMap::from([feed("x", &[6])]))), vec!["silu"]);
    }
}
