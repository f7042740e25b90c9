//! Multi-pattern rewrites (TASO/TENSAT style): independent matmuls that read the same input with
//! constant weights become one matmul over the concatenated weights and a split, as the Q, K and V
//! projections of attention do. The concatenation is of constants, so it is folded at compile time.

use super::{op_of, Group, Rule, Term};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use sovc_ir::Op;

pub fn rules() -> Vec<Rule> {
    vec![
        Rule {
            name: "merge-matmuls",
            group: Group::Merge,
            doc: "matmul(x, W1), ..., matmul(x, Wn) with constant 2-D weights = split(matmul(x, concat(W1..Wn)))",
            find: merge_matmuls,
        },
        Rule {
            name: "merge-convs",
            group: Group::Merge,
            doc: "convolutions of the same input with the same geometry and constant weights = one conv over the weights concatenated along output channels, then a split",
            find: merge_convs,
        },
        Rule {
            name: "fold-batch-norm",
            group: Group::Merge,
            doc: "batch_norm(conv(x, W, b)) with constant parameters = conv(x, W * k, (b - mean) * k + bias), k = scale / sqrt(var + eps)",
            find: fold_batch_norm,
        },
    ]
}

fn merge_convs(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    let op = op_of(eg, n)?;
    let Op::Conv { group: 1, .. } = op else { return None };
    let x = eg.find(n.children[0]);
    // Stored constants only (a class holding a leaf), so a merged conv over concatenated weights is not
    // merged again on the next iteration.
    let is_const = |c: Id| eg[c].data.constant && eg[c].nodes.iter().any(|n| n.children.is_empty());
    let compatible = |pn: &TNode, pop: &Op| -> bool {
        pop == op
            && eg.find(pn.children[0]) == x
            && pn.children.len() == n.children.len()
            && pn.children[1..].iter().all(|&c| is_const(c))
            && eg[pn.children[1]].data.ty().shape.0[1..] == eg[n.children[1]].data.ty().shape.0[1..]
            && eg[pn.children[1]].data.ty().dtype == eg[n.children[1]].data.ty().dtype
    };
    if !compatible(n, op) {
        return None;
    }
    // Every conv class reading x with the same op (strides, pads, dilations), kernel size and bias-ness.
    let mut sibs: Vec<(Id, Vec<Id>)> = Vec::new();
    for p in eg[x].parents() {
        let p = eg.find(p);
        for pn in &eg[p].nodes {
            if op_of(eg, pn).is_some_and(|pop| compatible(pn, pop)) && !sibs.iter().any(|s| s.0 == p) {
                sibs.push((p, pn.children[1..].iter().map(|&c| eg.find(c)).collect()));
            }
        }
    }
    sibs.sort();
    if sibs.len() < 2 {
        return None;
    }
    let me = sibs.iter().position(|s| s.0 == eg.find(id))?;
    let sizes: Vec<i64> =
        sibs.iter().map(|s| eg[s.1[0]].data.ty().shape.0[0].as_const().map(|c| c as i64)).collect::<Option<_>>()?;
    let concat =
        |k: usize, axis: i64| Term::Op(Op::Concat { axis }, sibs.iter().map(|s| Term::Class(s.1[k])).collect());
    let mut ins = vec![Term::Class(x), concat(0, 0)];
    if n.children.len() == 3 {
        ins.push(concat(1, 0));
    }
    let conv = Term::Op(op.clone(), ins);
    Some(Term::Get(Box::new(Term::Op(Op::Split { axis: 1, sizes }, vec![conv])), me))
}

fn fold_batch_norm(eg: &EG, _id: Id, n: &TNode) -> Option<Term> {
    let Op::BatchNorm { epsilon } = op_of(eg, n)? else { return None };
    let (y, scale, bias, mean, var) = (n.children[0], n.children[1], n.children[2], n.children[3], n.children[4]);
    if ![scale, bias, mean, var].iter().all(|&c| eg[c].data.constant) {
        return None;
    }
    let (conv, ch) = super::find_node(eg, y, |op| matches!(op, Op::Conv { .. }))?;
    let (x, w) = (ch[0], ch[1]);
    if !eg[w].data.constant || ch.get(2).is_some_and(|&b| !eg[b].data.constant) {
        return None;
    }
    let wt = eg[w].data.ty().clone();
    let m = wt.shape.0[0].as_const()?;
    let dt = wt.dtype;
    let c = |v: f64| Term::Const(sovc_ir::Tensor::from_f64_fn(dt, &[], |_| v));
    let bin = |b: sovc_ir::BinaryOp, x: Term, y: Term| Term::Op(Op::Binary(b), vec![x, y]);
    use sovc_ir::BinaryOp as B;
    // k = scale / sqrt(var + eps), per output channel.
    let k = bin(
        B::Div,
        Term::Class(scale),
        Term::Op(Op::Unary(sovc_ir::UnaryOp::Sqrt), vec![bin(B::Add, Term::Class(var), c(*epsilon as f64))]),
    );
    let mut kshape = vec![sovc_ir::Dim::Const(m)];
    kshape.extend(std::iter::repeat_n(sovc_ir::Dim::Const(1), wt.shape.rank() - 1));
    let kw = Term::Op(Op::Reshape { shape: sovc_ir::Shape(kshape) }, vec![k.clone()]);
    let w2 = bin(B::Mul, Term::Class(w), kw);
    let b0 = match ch.get(2) {
        Some(&b) => Term::Class(b),
        None => Term::Const(sovc_ir::Tensor::from_f64_fn(dt, &[m as usize], |_| 0.0)),
    };
    let b2 = bin(B::Add, bin(B::Mul, bin(B::Sub, b0, Term::Class(mean)), k), Term::Class(bias));
    Some(Term::Op(conv.clone(), vec![Term::Class(x), w2, b2]))
}

/// A constant 2-D weight class (not itself a merged concatenation).
fn is_weight(eg: &EG, w: Id) -> bool {
    let d = &eg[w].data;
    d.constant && d.ty().shape.rank() == 2 && eg[w].nodes.iter().any(|n| n.children.is_empty())
}

fn merge_matmuls(eg: &EG, id: Id, n: &TNode) -> Option<Term> {
    matches!(op_of(eg, n)?, Op::MatMul {}).then_some(())?;
    let (x, w) = (eg.find(n.children[0]), eg.find(n.children[1]));
    if !is_weight(eg, w) {
        return None;
    }
    let (k, dtype) = (eg[w].data.ty().shape.0[0].clone(), eg[w].data.ty().dtype);
    // Every matmul class reading x with a compatible constant weight, in id order (the same set, hence the
    // same merged term, from each member's point of view).
    let mut sibs: Vec<(Id, Id)> = Vec::new();
    for p in eg[x].parents() {
        let p = eg.find(p);
        for pn in &eg[p].nodes {
            if !matches!(op_of(eg, pn), Some(Op::MatMul {})) || eg.find(pn.children[0]) != x {
                continue;
            }
            let pw = eg.find(pn.children[1]);
            let t = eg[pw].data.ty();
            if is_weight(eg, pw) && t.shape.0[0] == k && t.dtype == dtype && !sibs.iter().any(|s| s.0 == p) {
                sibs.push((p, pw));
            }
        }
    }
    sibs.sort();
    if sibs.len() < 2 {
        return None;
    }
    let me = sibs.iter().position(|s| s.0 == eg.find(id))?;
    let sizes: Vec<i64> =
        sibs.iter().map(|s| eg[s.1].data.ty().shape.0[1].as_const().map(|c| c as i64)).collect::<Option<_>>()?;
    let concat = Term::Op(Op::Concat { axis: 1 }, sibs.iter().map(|s| Term::Class(s.1)).collect());
    let mm = Term::Op(Op::MatMul {}, vec![Term::Class(x), concat]);
    let split = Term::Op(Op::Split { axis: -1, sizes }, vec![mm]);
    Some(Term::Get(Box::new(split), me))
}

#[cfg(test)]
mod tests {
    use crate::opt::rules::testing::{check_rule, f32_input, feed, ops};
    use sovc_ir::{Graph, Op, Tensor};
    use std::collections::BTreeMap;

    #[test]
    fn parallel_convs_merge() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[1, 3, 6, 6]);
        let conv = Op::Conv { strides: vec![1, 1], pads: vec![1, 1, 1, 1], dilations: vec![1, 1], group: 1 };
        for (i, m) in [4usize, 2].iter().enumerate() {
            let w = g.add_inline(
                format!("w{i}"),
                Tensor::from_vec(&[*m, 3, 3, 3], (0..m * 27).map(|j| ((j % 5) as f32 - 2.0) * 0.1).collect()).unwrap(),
            );
            let b = g.add_inline(
                format!("b{i}"),
                Tensor::from_vec(&[*m], (0..*m).map(|j| j as f32 * 0.5).collect()).unwrap(),
            );
            let y = g.add1(conv.clone(), &[x, w, b], format!("conv{i}")).unwrap();
            g.add_output(format!("y{i}"), y);
        }
        let out = check_rule("merge-convs", &g, &BTreeMap::from([feed("x", &[1, 3, 6, 6])]));
        assert_eq!(ops(&out), vec!["conv", "split"]);
    }

    #[test]
    fn batch_norm_folds_into_conv() {
        for with_bias in [false, true] {
            let mut g = Graph::new();
            let x = f32_input(&mut g, "x", &[1, 2, 5, 5]);
            let w =
                g.add_inline("w", Tensor::from_vec(&[3, 2, 1, 1], vec![0.5f32, -1.0, 0.25, 2.0, -0.5, 1.5]).unwrap());
            let mut ins = vec![x, w];
            if with_bias {
                ins.push(g.add_inline("b", Tensor::from_vec(&[3], vec![0.1f32, -0.2, 0.3]).unwrap()));
            }
            let conv = Op::Conv { strides: vec![1, 1], pads: vec![0, 0, 0, 0], dilations: vec![1, 1], group: 1 };
            let y = g.add1(conv, &ins, "conv").unwrap();
            let p = |g: &mut Graph, n: &str, v: [f32; 3]| g.add_inline(n, Tensor::from_vec(&[3], v.to_vec()).unwrap());
            let (s, b, m, v) = (
                p(&mut g, "s", [1.5, 0.5, -2.0]),
                p(&mut g, "bb", [0.1, 0.2, 0.3]),
                p(&mut g, "m", [0.3, -0.1, 0.0]),
                p(&mut g, "v", [2.0, 0.5, 1.0]),
            );
            let z = g.add1(Op::BatchNorm { epsilon: 1e-5 }, &[y, s, b, m, v], "bn").unwrap();
            g.add_output("z", z);
            let out = check_rule("fold-batch-norm", &g, &BTreeMap::from([feed("x", &[1, 2, 5, 5])]));
            assert_eq!(ops(&out), vec!["conv"], "the new weights and bias are folded constants");
        }
    }

    #[test]
    fn qkv_projections_merge() {
        let mut g = Graph::new();
        let x = f32_input(&mut g, "x", &[1, 4, 8]);
        let mut outs = Vec::new();
        for (i, n) in [8usize, 8, 4].iter().enumerate() {
            let w = g.add_inline(
                format!("w{i}"),
                Tensor::from_vec(&[8, *n], (0..8 * n).map(|j| (j % 7) as f32 * 0.1).collect()).unwrap(),
            );
            outs.push(g.add1(Op::MatMul {}, &[x, w], format!("mm{i}")).unwrap());
        }
        for (i, o) in outs.iter().enumerate() {
            g.add_output(format!("y{i}"), *o);
        }
        let out = check_rule("merge-matmuls", &g, &BTreeMap::from([feed("x", &[1, 4, 8])]));
        assert_eq!(ops(&out), vec!["matmul", "split"], "the weight concatenation is folded");
    }
}
