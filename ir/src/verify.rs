//! The verifier: checks a whole graph (value definitions, topological order, types against inference,
//! inputs, outputs and constants) and reports every problem, not just the first.

use crate::{infer, ConstData, Graph, IrError, TensorType, ValueId};

/// Checks `g` and returns every broken rule.
pub fn verify(g: &Graph) -> Result<(), Vec<IrError>> {
    let mut errs = Vec::new();
    let n = g.values.len();
    let mut defined = vec![false; n];
    let define = |defined: &mut Vec<bool>, v: ValueId, what: &str, errs: &mut Vec<IrError>| {
        if v.index() >= n {
            errs.push(IrError::Graph(format!("{what} defines {v}, which is not a value of the graph")));
        } else if defined[v.index()] {
            errs.push(IrError::Graph(format!("{v} is defined twice (again by {what})")));
        } else {
            defined[v.index()] = true;
        }
    };
    let mut names = std::collections::BTreeSet::new();
    for x in &g.inputs {
        define(&mut defined, x.value, &format!("input `{}`", x.name), &mut errs);
        if !names.insert(x.name.as_str()) {
            errs.push(IrError::Graph(format!("input name `{}` is used twice", x.name)));
        }
    }
    for c in &g.consts {
        define(&mut defined, c.value, &format!("constant `{}`", c.name), &mut errs);
        if let (ConstData::Inline(t), Some(ty)) = (&c.data, g.values.get(c.value.index())) {
            if t.ty() != *ty {
                errs.push(IrError::Graph(format!("constant `{}` is declared {ty} but holds {}", c.name, t.ty())));
            }
        }
    }
    for node in &g.nodes {
        let mut ok = true;
        for &v in &node.inputs {
            if v.index() >= n || !defined[v.index()] {
                errs.push(IrError::Verify {
                    node: node.name.clone(),
                    op: node.op.name(),
                    value: v.to_string(),
                    rule: "input is used before it is defined".into(),
                });
                ok = false;
            }
        }
        if ok {
            let tys: Vec<&TensorType> = node.inputs.iter().map(|&v| g.ty(v)).collect();
            match infer::infer(&node.op, &tys) {
                Err(rule) => errs.push(IrError::Verify {
                    node: node.name.clone(),
                    op: node.op.name(),
                    value: node.inputs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
                    rule,
                }),
                Ok(out) => {
                    if out.len() != node.outputs.len() {
                        errs.push(IrError::Verify {
                            node: node.name.clone(),
                            op: node.op.name(),
                            value: String::new(),
                            rule: format!("has {} results, the op gives {}", node.outputs.len(), out.len()),
                        });
                    }
                    for (t, &v) in out.iter().zip(&node.outputs) {
                        if let Some(decl) = g.values.get(v.index()) {
                            if decl != t {
                                errs.push(IrError::Verify {
                                    node: node.name.clone(),
                                    op: node.op.name(),
                                    value: v.to_string(),
                                    rule: format!("result is declared {decl} but the op gives {t}"),
                                });
                            }
                        }
                    }
                }
            }
        }
        for &v in &node.outputs {
            define(&mut defined, v, &format!("node `{}`", node.name), &mut errs);
        }
    }
    let mut out_names = std::collections::BTreeSet::new();
    for o in &g.outputs {
        if o.value.index() >= n || !defined[o.value.index()] {
            errs.push(IrError::Graph(format!("output `{}` refers to undefined value {}", o.name, o.value)));
        }
        if !out_names.insert(o.name.as_str()) {
            errs.push(IrError::Graph(format!("output name `{}` is used twice", o.name)));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}
