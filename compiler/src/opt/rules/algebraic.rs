//! Algebraic simplification and canonicalization: identities, transpose and reshape chains, casts that
//! do nothing, scalar scaling moved past a matmul.

use super::{all_equal, find_node, op_of, scalar, Group, Rule, Term};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use sovc_ir::{BinaryOp, Op, UnaryOp};

pub fn rules() -> Vec<Rule> {
    vec![
        Rule { name: "identity", group: Group::Simplify, doc: "identity(x) = x", find: identity },
        Rule {
            name: "transpose-noop",
            group: Group::Simplify,
            doc: "a transpose by the identity permutation is its input",
            find: transpose_noop,
        },
        Rule {
            name: "transpose-transpose",
            group: Group::Simplify,
            doc: "two transposes compose into one permutation",
            find: transpose_transpose,
        },
        Rule {
            name: "reshape-noop",
            group: Group::Simplify,
            doc: "a reshape or expand to the input's own shape is its input",
            find: reshape_noop,
        },
        Rule {
            name: "reshape-reshape",
            group: Group::Simplify,
            doc: "only the last of a chain of reshapes matters (row-major order is kept)",
            find: reshape_reshape,
        },
        Rule {
            name: "cast-noop",
            group: Group::Simplify,
            doc: "a cast to the element type the value already has is its input",
            find: cast_noop,
        },
        Rule {
            name: "neutral-element",
            group: Group::Simplify,
            doc: "x + 0, x - 0, x * 1, x / 1 are x when the constant does not change x's shape",
            find: neutral,
        },
        Rule {
            name: "where-mask-to-add",
            group: Group::Simplify,
            doc: "where(c, s, m) with a constant mask c and m <= -1e30 is s + where(c, 0, m) (exact in f32: s + m rounds to m), the additive-mask form attention matching expects",
            find: where_mask_to_add,
        },
        Rule {
            name: "transpose-of-matmul",
            group: Group::Simplify,
            doc: "(a b)^T = b^T a^T on the last two dims, so transposes can cancel against their neighbours",
            find: transpose_of_matmul,
        },
        Rule {
            name: "matmul-scale-out",
            group: Group::Simplify,
            doc:
                "matmul(a * s, b) = matmul(a, b) * s for a scalar s, so attention's scale fuses into the softmax input",
            find: matmul_scale_out,
        },
    ]
}

fn first_child(n: &TNode) -> Term {
    Term::Class(n.children[0])
}

fn identity(eg: &EG, _id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::Unary(UnaryOp::Identity)).then(|| first_child(n))
}

fn transpose_noop(eg: &EG, _id: Id, n: &TNode) -> Option<Term> {
    let Op::Transpose { perm } = op_of(eg, n)? else { return None };
    perm.iter().enumerate().all(|(i, &p)| p == i as i64).then(|| first_child(n))
}

fn transpose_transpose(eg: &EG, _id: Id, n: &TNode) -> Option<Term> {
    let Op::Transpose { perm: outer } = op_of(eg, n)? else { return None };
    let (inner_op, ch) = find_node(eg, n.children[0], |op| matches!(op, Op::Transpose { .. }))?;
    let Op::Transpose { perm: inner } = inner_op else { return None };
    // y[i] = x_inner[outer[i]] and x_inner[j] = x[inner[j]], so the composite takes inner[outer[i]].
    let perm: Vec<i64> = outer.iter().map(|&o| inner[o as usize]).collect();
    if perm.iter().enumerate().all(|(i, &p)| p == i as i64) {
        return Some(Term::Class(ch[0]));
    }
    Some(Term::Op(Op::Transpose { perm }, vec![Term::Class(ch[0])]))
}

fn reshape_noop(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::Reshape { .. } | Op::Expand { .. }).then_some(())?;
    (eg[n.children[0]].data.tys == eg[id].data.tys).then(|| first_child(n))
}

fn reshape_reshape(eg: &EG, _id: Id, n: &TNode) -> Option<Term> {
    let Op::Reshape { shape } = op_of(eg, n)? else { return None };
    let (_, ch) = find_node(eg, n.children[0], |op| matches!(op, Op::Reshape { .. }))?;
    Some(Term::Op(Op::Reshape { shape: shape.clone() }, vec![Term::Class(ch[0])]))
}

fn cast_noop(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::Cast { .. }).then_some(())?;
    (eg[n.children[0]].data.tys == eg[id].data.tys).then(|| first_child(n))
}

fn neutral(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    let Op::Binary(b) = op_of(eg, n)? else { return None };
    let (x, c) = (n.children[0], n.children[1]);
    let keeps_shape = |v: Id| eg[v].data.tys == eg[id].data.tys;
    match b {
        BinaryOp::Add if all_equal(eg, c, 0.0) && keeps_shape(x) => Some(Term::Class(x)),
        BinaryOp::Add if all_equal(eg, x, 0.0) && keeps_shape(c) => Some(Term::Class(c)),
        BinaryOp::Sub if all_equal(eg, c, 0.0) && keeps_shape(x) => Some(Term::Class(x)),
        BinaryOp::Mul if all_equal(eg, c, 1.0) && keeps_shape(x) => Some(Term::Class(x)),
        BinaryOp::Mul if all_equal(eg, x, 1.0) && keeps_shape(c) => Some(Term::Class(c)),
        BinaryOp::Div if all_equal(eg, c, 1.0) && keeps_shape(x) => Some(Term::Class(x)),
        _ => None,
    }
}

fn where_mask_to_add(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    if !matches!(op_of(eg, n)?, Op::Where {}) {
        return None;
    }
    let (c, s, m) = (n.children[0], n.children[1], n.children[2]);
    let mv = scalar(eg, m)?;
    let dtype = eg[s].data.ty().dtype;
    // Only where s + m is exactly m: a mask value at the bottom of f32's range (or -inf).
    if !(eg[c].data.constant && mv <= -1e30 && dtype == sovc_ir::DType::F32) {
        return None;
    }
    let zero = Term::Const(sovc_ir::Tensor::scalar(0.0f32));
    let bias = Term::Op(Op::Where {}, vec![Term::Class(c), zero, Term::Class(m)]);
    // The bias must broadcast into s without changing the result's shape.
    let bias_ty = sovc_ir::infer::infer(
        &Op::Where {},
        &[eg[c].data.ty(), &sovc_ir::TensorType::new(dtype, sovc_ir::Shape::scalar()), eg[m].data.ty()],
    )
    .ok()?
    .remove(0);
    let out = sovc_ir::infer::infer(&Op::Binary(BinaryOp::Add), &[eg[s].data.ty(), &bias_ty]).ok()?.remove(0);
    (out == *eg[id].data.ty()).then(|| Term::Op(Op::Binary(BinaryOp::Add), vec![Term::Class(s), bias]))
}

fn transpose_of_matmul(eg: &EG, _id: Id, n: &TNode) -> Option<Term> {
    let Op::Transpose { perm } = op_of(eg, n)? else { return None };
    let r = perm.len();
    if r < 2 {
        return None;
    }
    let mut swap_last: Vec<i64> = (0..r as i64).collect();
    swap_last.swap(r - 2, r - 1);
    if *perm != swap_last {
        return None;
    }
    let (_, ch) = find_node(eg, n.children[0], |op| matches!(op, Op::MatMul {}))?;
    let (a, b) = (ch[0], ch[1]);
    if eg[a].data.ty().shape.rank() != r || eg[b].data.ty().shape.rank() != r {
        return None;
    }
    let t = |x: Id| Term::Op(Op::Transpose { perm: swap_last.clone() }, vec![Term::Class(x)]);
    Some(Term::Op(Op::MatMul {}, vec![t(b), t(a)]))
}

fn matmul_scale_out(eg: &EG, _id: Id, n: &TNode) -> Option<Term> {
    if !matches!(op_of(eg, n)?, Op::MatMul {}) {
        return None;
    }
    let (a, b) = (n.children[0], n.children[1]);
    let (_, ch) = find_node(eg, a, |op| matches!(op, Op::Binary(BinaryOp::Mul)))?;
    let (x, s) = if scalar(eg, ch[1]).is_some() && eg[ch[1]].data.ty().shape.rank() == 0 {
        (ch[0], ch[1])
    } else if scalar(eg, ch[0]).is_some() && eg[ch[0]].data.ty().shape.rank() == 0 {
        (ch[1], ch[0])
    } else {
        return None;
    };
    if eg[x].data.tys != eg[a].data.tys {
        return None;
    }
    let mm = Term::Op(Op::MatMul {}, vec![Term::Class(x), Term::Class(b)]);
    Some(Term::Op(Op::Binary(BinaryOp::Mul), vec![mm, Term::Class(s)]))
}

#[cfg(test)]
mod tests {
    use crate::opt::rules::testing::{check_rule, f32_input, feed, ops};
    use sovc_ir::{BinaryOp, Graph, Op, Shape, Tensor, UnaryOp};
    use std::collections::BTreeMap;

    #[test]
    fn identity_goes() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 3]);
        let i = g.add1(Op::Unary(UnaryOp::Identity), &[x], "id").unwrap();
        let y = g.add1(Op::Unary(UnaryOp::Exp), &[i], "exp").unwrap();
        g.add_output("y", y);
        let out = check_rule("identity", &g, &BTreeMap::from([feed("x", &[2, 3])]));
        assert_eq!(ops(&out), vec!["exp"]);
    }

    #[test]
    fn transposes_compose_and_cancel() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 3, 4]);
        let t1 = g.add1(Op::Transpose { perm: vec![1, 2, 0] }, &[x], "t1").unwrap();
        let t2 = g.add1(Op::Transpose { perm: vec![2, 0, 1] }, &[t1], "t2").unwrap();
        let t3 = g.add1(Op::Transpose { perm: vec![0, 2, 1] }, &[x], "t3").unwrap();
        let t4 = g.add1(Op::Transpose { perm: vec![1, 0, 2] }, &[t3], "t4").unwrap();
        let y = g.add1(Op::Binary(BinaryOp::Add), &[t2, x], "add").unwrap();
        g.add_output("y", y);
        g.add_output("z", t4);
        let out = check_rule("transpose-transpose", &g, &BTreeMap::from([feed("x", &[2, 3, 4])]));
        let transposes: Vec<_> =
            out.nodes.iter().filter(|n| matches!(n.op, Op::Transpose { .. })).map(|n| n.op.clone()).collect();
        assert_eq!(transposes, vec![Op::Transpose { perm: vec![2, 0, 1] }], "t1;t2 cancels, t3;t4 composes");
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 3]);
        let t = g.add1(Op::Transpose { perm: vec![0, 1] }, &[x], "t").unwrap();
        g.add_output("y", t);
        assert!(check_rule("transpose-noop", &g, &BTreeMap::from([feed("x", &[2, 3])])).nodes.is_empty());
    }

    #[test]
    fn reshape_chains_collapse() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 6]);
        let r1 = g.add1(Op::Reshape { shape: Shape::from_consts(&[3, 4]) }, &[x], "r1").unwrap();
        let r2 = g.add1(Op::Reshape { shape: Shape::from_consts(&[12]) }, &[r1], "r2").unwrap();
        g.add_output("y", r2);
        let out = check_rule("reshape-reshape", &g, &BTreeMap::from([feed("x", &[2, 6])]));
        assert_eq!(out.nodes.len(), 1);
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 6]);
        let r = g.add1(Op::Reshape { shape: Shape::from_consts(&[2, 6]) }, &[x], "r").unwrap();
        let y = g.add1(Op::Unary(UnaryOp::Neg), &[r], "neg").unwrap();
        g.add_output("y", y);
        assert_eq!(ops(&check_rule("reshape-noop", &g, &BTreeMap::from([feed("x", &[2, 6])]))), vec!["neg"]);
    }

    #[test]
    fn casts_to_the_same_type_go() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[4]);
        let c = g.add1(Op::Cast { to: sovc_ir::DType::F32 }, &[x], "c").unwrap();
        let y = g.add1(Op::Unary(UnaryOp::Neg), &[c], "neg").unwrap();
        g.add_output("y", y);
        assert_eq!(ops(&check_rule("cast-noop", &g, &BTreeMap::from([feed("x", &[4])]))), vec!["neg"]);
    }

    #[test]
    fn neutral_elements_go_but_not_when_they_broadcast() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[2, 3]);
        let one = g.add_inline("one", Tensor::scalar(1.0f32));
        let zero = g.add_inline("zero", Tensor::from_vec(&[2, 1, 3], vec![0.0f32; 6]).unwrap());
        let m = g.add1(Op::Binary(BinaryOp::Mul), &[x, one], "m").unwrap();
        let a = g.add1(Op::Binary(BinaryOp::Add), &[m, zero], "a").unwrap();
        g.add_output("y", a);
        let out = check_rule("neutral-element", &g, &BTreeMap::from([feed("x", &[2, 3])]));
        assert_eq!(ops(&out), vec!["add"], "x*1 goes; +0 broadcasting to [2,2,3] stays");
    }

    #[test]
    fn transpose_of_matmul_cancels_with_input_transposes() {
        // (a^T b)^T becomes b^T a: one transpose fewer.
        let mut g = Graph::new();
        let a = f32_input(&mut g, "a", &[2, 5, 3]);
        let b = f32_input(&mut g, "b", &[2, 5, 4]);
        let at = g.add1(Op::Transpose { perm: vec![0, 2, 1] }, &[a], "at").unwrap();
        let m = g.add1(Op::MatMul {}, &[at, b], "mm").unwrap();
        let y = g.add1(Op::Transpose { perm: vec![0, 2, 1] }, &[m], "t").unwrap();
        g.add_output("y", y);
        let opts = crate::opt::OptOptions {
            only_rules: Some(vec!["transpose-of-matmul".into(), "transpose-transpose".into()]),
            ..Default::default()
        };
        let r = crate::opt::optimize(&g, &sovc_ir::Weights::default(), &opts).unwrap();
        assert_eq!(ops(&r.graph), vec!["transpose", "matmul"]);
        check_rule("transpose-of-matmul", &g, &BTreeMap::from([feed("a", &[2, 5, 3]), feed("b", &[2, 5, 4])]));
    }

    #[test]
    fn where_masks_become_additive() {
        let mut g = Graph::new();
        let s = f32_input(&mut g, "s", &[2, 4, 4]);
        let c = g.add_inline("c", Tensor::from_vec(&[1, 2, 2], vec![true, false, true, true]).unwrap());
        let c = g.add1(Op::Tile { repeats: vec![1, 2, 2] }, &[c], "tile").unwrap();
        let m = g.add_inline("m", Tensor::scalar(f32::MIN));
        let w = g.add1(Op::Where {}, &[c, s, m], "where").unwrap();
        let y = g.add1(Op::Softmax { axis: -1 }, &[w], "softmax").unwrap();
        g.add_output("y", y);
        let out = check_rule("where-mask-to-add", &g, &BTreeMap::from([feed("s", &[2, 4, 4])]));
        assert_eq!(ops(&out), vec!["add", "softmax"], "the mask is a folded constant");
        // A mild mask value is not exact: no rewrite.
        let mut g = Graph::new();
        let s = f32_input(&mut g, "s", &[4]);
        let c = g.add_inline("c", Tensor::from_vec(&[4], vec![true, false, true, true]).unwrap());
        let m = g.add_inline("m", Tensor::scalar(-1e4f32));
        let w = g.add1(Op::Where {}, &[c, s, m], "where").unwrap();
        g.add_output("y", w);
        let opts = crate::opt::OptOptions { only_rules: Some(vec!["where-mask-to-add".into()]), ..Default::default() };
        assert!(crate::opt::optimize(&g, &sovc_ir::Weights::default(), &opts).unwrap().report.applied.is_empty());
    }

    #[test]
    fn scale_moves_out_of_matmul() {
        let mut g = Graph::new();
        // Scaling the [4, 2] product is cheaper than scaling the [4, 8] operand.
        let a = f32_input(&mut g, "a", &[4, 8]);
        let b = f32_input(&mut g, "b", &[8, 2]);
        let s = g.add_inline("s", Tensor::scalar(0.125f32));
        let m = g.add1(Op::Binary(BinaryOp::Mul), &[a, s], "scale").unwrap();
        let y = g.add1(Op::MatMul {}, &[m, b], "mm").unwrap();
        g.add_output("y", y);
        let out = check_rule("matmul-scale-out", &g, &BTreeMap::from([feed("a", &[4, 8]), feed("b", &[8, 2])]));
        assert_eq!(ops(&out), vec!["matmul", "mul"]);
    }
}
