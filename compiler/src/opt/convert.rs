//! Conversion between the graph IR and the e-graph. Graph to e-graph is one e-node per IR node (plus a
//! projection per result of multi-result ops); back is extraction: the cheapest node of each class
//! needed by an output, built bottom-up with sharing, so common subexpressions are built once.

use super::analysis::{TensorAnalysis, EG, VALUE_LIMIT};
use super::lang::{const_symbol, get_symbol, input_symbol, op_symbol, NodeKind, TNode};
use super::runner::Provenance;
use egg::{CostFunction, Extractor, Id, Language};
use sovc_ir::{ConstData, Graph, Tensor, ValueId, WeightRef, Weights};
use std::collections::HashMap;
use std::sync::Arc;

/// The e-graph of `g`, the class of every value of `g`, and each class' source node name.
pub fn to_egraph(g: &Graph, weights: &Weights) -> (EG, Vec<Id>, HashMap<Id, String>) {
    let mut a = TensorAnalysis::default();
    for x in &g.inputs {
        a.input_tys.push(g.ty(x.value).clone());
    }
    for c in &g.consts {
        a.const_tys.push(g.ty(c.value).clone());
        let v = match &c.data {
            ConstData::Inline(t) => Some(Arc::new(t.clone())),
            ConstData::Weight(r) => weights.get(r).filter(|t| t.len() <= VALUE_LIMIT).cloned(),
        };
        a.const_values.push(v);
    }
    let mut eg = EG::new(a);
    let mut ids = vec![Id::from(0usize); g.values.len()];
    let mut names = HashMap::new();
    for (i, x) in g.inputs.iter().enumerate() {
        let s = input_symbol(i);
        eg.analysis.register(s, NodeKind::Input(i));
        ids[x.value.index()] = eg.add(TNode { op: s, children: vec![] });
    }
    for (i, c) in g.consts.iter().enumerate() {
        let s = const_symbol(i);
        eg.analysis.register(s, NodeKind::Const(i));
        ids[c.value.index()] = eg.add(TNode { op: s, children: vec![] });
    }
    for n in &g.nodes {
        let s = op_symbol(&n.op);
        eg.analysis.register(s, NodeKind::Op(n.op.clone()));
        let node = TNode { op: s, children: n.inputs.iter().map(|v| ids[v.index()]).collect() };
        let id = eg.add(node);
        names.entry(id).or_insert_with(|| n.name.clone());
        if n.op.num_outputs() > 1 {
            for (k, o) in n.outputs.iter().enumerate() {
                let gs = get_symbol(k);
                eg.analysis.register(gs, NodeKind::Get(k));
                ids[o.index()] = eg.add(TNode { op: gs, children: vec![id] });
                names.entry(ids[o.index()]).or_insert_with(|| n.name.clone());
            }
        } else {
            ids[n.outputs[0].index()] = id;
        }
    }
    eg.rebuild();
    (eg, ids, names)
}

/// Builds the cheapest graph for the classes of `src`'s outputs.
pub fn extract<CF: CostFunction<TNode>>(
    eg: &EG,
    cost: CF,
    src: &Graph,
    weights: &Weights,
    value_ids: &[Id],
    names: &HashMap<Id, String>,
    prov: &Provenance,
) -> Result<(Graph, Weights, Vec<Vec<&'static str>>), String> {
    let ex = Extractor::new(eg, cost);
    let mut g = Graph::new();
    let mut out_w = weights.clone();
    let mut memo: HashMap<Id, Vec<ValueId>> = HashMap::new();
    // For each node of the new graph, the rules that produced it (empty for nodes of the input graph).
    let mut explain: Vec<Vec<&'static str>> = Vec::new();
    for x in &src.inputs {
        g.add_input(x.name.clone(), src.ty(x.value).clone());
    }
    for c in &src.consts {
        g.add_const(c.name.clone(), src.ty(c.value).clone(), c.data.clone());
    }
    let canon_names: HashMap<Id, &String> = names.iter().map(|(k, v)| (eg.find(*k), v)).collect();
    // Iterative post-order over classes, so deep graphs cannot overflow the stack.
    for o in &src.outputs {
        let root = eg.find(value_ids[o.value.index()]);
        let mut stack = vec![(root, false)];
        while let Some((id, ready)) = stack.pop() {
            if memo.contains_key(&id) {
                continue;
            }
            let node = ex.find_best_node(id).clone().map_children(|c| eg.find(c));
            if !ready {
                stack.push((id, true));
                for &c in node.children.iter().rev() {
                    if !memo.contains_key(&c) {
                        stack.push((c, false));
                    }
                }
                continue;
            }
            let vals = match eg.analysis.kind(node.op) {
                NodeKind::Input(i) => vec![ValueId(*i as u32)],
                NodeKind::Const(i) => vec![g.consts[*i].value],
                NodeKind::NewConst(k) => {
                    let t: &Tensor = &eg.analysis.new_consts[*k];
                    let name = format!("opt/c{k}");
                    let v = if t.len() <= 16 {
                        g.add_inline(name, t.clone())
                    } else {
                        let r = WeightRef { file: "optimizer".into(), key: name.clone() };
                        out_w.map.insert(r.clone(), eg.analysis.new_consts[*k].clone());
                        g.add_const(name, t.ty(), ConstData::Weight(r))
                    };
                    vec![v]
                }
                NodeKind::Get(k) => vec![memo[&node.children[0]][*k]],
                NodeKind::Op(op) => {
                    let ins: Vec<ValueId> = node.children.iter().map(|c| memo[c][0]).collect();
                    let rules = prov.get(&node).cloned().unwrap_or_default();
                    let base = canon_names.get(&id).map(|s| s.as_str()).unwrap_or("opt");
                    let name = if rules.is_empty() {
                        base.to_string()
                    } else {
                        format!("{base}/{}", rules.last().expect("non-empty"))
                    };
                    let outs = g.add_node(op.clone(), &ins, name).map_err(|e| e.to_string())?;
                    explain.push(rules);
                    outs
                }
            };
            memo.insert(id, vals);
        }
    }
    for o in &src.outputs {
        let root = eg.find(value_ids[o.value.index()]);
        g.add_output(o.name.clone(), memo[&root][0]);
    }
    // Every node built is reachable from an output, so removing dead values only drops unused
    // constants and node order (hence `explain`) is kept.
    g.remove_dead();
    debug_assert_eq!(g.nodes.len(), explain.len());
    Ok((g.canonical(), out_w, explain))
}
