//! Rewrite rules as data: each rule has a name, a group, one line saying why it is sound and useful, and a
//! matcher that looks at one e-node in its class and returns the equivalent term to add. Rules are
//! directional (see `README.md` beside this file). Helpers here read the e-graph for matchers.

mod algebraic;
mod fusion;
mod merge;

use super::analysis::EG;
use super::lang::{NodeKind, TNode};
use egg::Id;
use sovc_ir::{Op, Tensor};

/// What a rule is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// Algebraic simplification and canonicalization.
    Simplify,
    /// Recognition of composite ops from the primitives exporters emit.
    Fuse,
    /// Multi-pattern rewrites that merge independent ops sharing an input.
    Merge,
}

/// A term a rule builds: existing classes, new ops over terms, new constants.
#[derive(Clone, Debug)]
pub enum Term {
    Class(Id),
    Op(Op, Vec<Term>),
    Const(Tensor),
    /// Result `i` of a multi-result op.
    Get(Box<Term>, usize),
}

/// One rewrite rule.
pub struct Rule {
    pub name: &'static str,
    pub group: Group,
    pub doc: &'static str,
    /// Given a class and one of its nodes, the term equal to the class, if the rule applies.
    pub find: fn(&EG, Id, &TNode) -> Option<Term>,
}

/// Every rule, in application order.
pub fn all() -> Vec<Rule> {
    let mut v = algebraic::rules();
    v.extend(fusion::rules());
    v.extend(merge::rules());
    v
}

// ---- helpers for matchers ----

/// The op of a node, if it is an op (not an input, constant or projection).
pub fn op_of<'a>(eg: &'a EG, n: &TNode) -> Option<&'a Op> {
    match eg.analysis.kind(n.op) {
        NodeKind::Op(op) => Some(op),
        _ => None,
    }
}

/// The first node of class `id` whose op satisfies `pred`, with its children.
pub fn find_node(eg: &EG, id: Id, pred: impl Fn(&Op) -> bool) -> Option<(&Op, &[Id])> {
    eg[id].nodes.iter().find_map(|n| op_of(eg, n).filter(|op| pred(op)).map(|op| (op, n.children.as_slice())))
}

/// The single value of a class holding a known one-element constant.
pub fn scalar(eg: &EG, id: Id) -> Option<f64> {
    let v = eg[id].data.value.as_ref()?;
    (v.len() == 1).then(|| v.to_f64_vec()[0])
}

/// Whether class `id` is a known constant whose every element equals `x`.
pub fn all_equal(eg: &EG, id: Id, x: f64) -> bool {
    eg[id].data.value.as_ref().is_some_and(|v| !v.is_empty() && v.to_f64_vec().iter().all(|&e| e == x))
}

pub fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-30)
}

/// Whether two classes are the same value.
pub fn same(eg: &EG, a: Id, b: Id) -> bool {
    eg.find(a) == eg.find(b)
}

/// The factors of a product rooted at class `id` (through up to `depth` nested binary `mul`s).
pub fn product_factors(eg: &EG, id: Id, depth: usize) -> Vec<Id> {
    if depth > 0 {
        if let Some((_, ch)) = find_node(eg, id, |op| matches!(op, Op::Binary(sovc_ir::BinaryOp::Mul))) {
            let mut f = product_factors(eg, ch[0], depth - 1);
            f.extend(product_factors(eg, ch[1], depth - 1));
            return f;
        }
    }
    vec![eg.find(id)]
}

#[cfg(test)]
pub(crate) mod testing {
    //! Rule unit tests: build a graph, run one rule to saturation, check the result has the expected ops
    //! and computes the same values on the reference interpreter.

    use crate::opt::{optimize, OptOptions};
    use sovc_ir::{Graph, Tensor, Weights};
    use std::collections::BTreeMap;

    /// Optimizes `g` with only `rule` enabled; returns the optimized graph after checking it computes
    /// what `g` computes on `inputs`.
    pub fn check_rule(rule: &str, g: &Graph, inputs: &BTreeMap<String, Tensor>) -> Graph {
        let opts = OptOptions { only_rules: Some(vec![rule.to_string()]), ..OptOptions::default() };
        let r = optimize(g, &Weights::default(), &opts).unwrap_or_else(|e| panic!("{rule}: {e}"));
        let before = sovc_ir::interp::run(g, &Weights::default(), inputs).expect("runs before");
        let after = sovc_ir::interp::run(&r.graph, &r.weights, inputs).expect("runs after");
        for (k, v) in &before {
            assert_eq!(v.shape(), after[k].shape(), "{rule}: output {k} changed shape");
            assert_eq!(v.dtype(), after[k].dtype(), "{rule}: output {k} changed type");
            let a = after[k].to_f64_vec();
            for (x, y) in v.to_f64_vec().iter().zip(&a) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{rule}: output {k} differs: {x} vs {y}");
            }
        }
        assert!(r.report.applied.get(rule).copied().unwrap_or(0) > 0, "{rule} did not fire");
        r.graph
    }

    pub fn f32_input(g: &mut Graph, name: &str, shape: &[usize]) -> sovc_ir::ValueId {
        g.add_input(name, sovc_ir::TensorType::new(sovc_ir::DType::F32, sovc_ir::Shape::from_consts(shape)))
    }

    pub fn feed(name: &str, shape: &[usize]) -> (String, Tensor) {
        let n = shape.iter().product();
        (
            name.to_string(),
            Tensor::from_vec(shape, (0..n).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.21).collect()).expect("len"),
        )
    }

    pub fn ops(g: &Graph) -> Vec<&'static str> {
        g.nodes.iter().map(|n| n.op.name()).collect()
    }
}

#[cfg(test)]
mod tidy {
    /// Every rule has a unit test that runs it through `check_rule` (fires, and keeps the results).
    #[test]
    fn every_rule_has_a_unit_test() {
        let sources = [include_str!("algebraic.rs"), include_str!("fusion.rs"), include_str!("merge.rs")].concat();
        let mut names = std::collections::BTreeSet::new();
        for r in super::all() {
            assert!(names.insert(r.name), "rule name `{}` is used twice", r.name);
            assert!(!r.doc.is_empty(), "rule `{}` has no doc line", r.name);
            assert!(
                sources.contains(&format!("check_rule(\"{}\"", r.name)),
                "rule `{}` has no check_rule test",
                r.name
            );
        }
    }
}
