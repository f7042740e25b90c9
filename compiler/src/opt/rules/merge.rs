//! Multi-pattern rewrites (TASO/TENSAT style): independent matmuls that read the same input with
//! constant weights become one matmul over the concatenated weights and a split, as the Q, K and V
//! projections of attention do. The concatenation is of constants, so it is folded at compile time.

use super::{op_of, Group, Rule, Term};
use crate::opt::analysis::EG;
use crate::opt::lang::TNode;
use egg::Id;
use sovc_ir::Op;

pub fn rules() -> Vec<Rule> {
    vec![Rule {
        name: "merge-matmuls",
        group: Group::Merge,
        doc: "matmul(x, W1), ..., matmul(x, Wn) with constant 2-D weights = split(matmul(x, concat(W1..Wn)))",
        find: merge_matmuls,
    }]
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
