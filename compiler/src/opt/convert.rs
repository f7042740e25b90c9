//! Conversion between the graph IR and the e-graph. Graph to e-graph is one e-node per IR node (plus a
//! projection per result of multi-result ops); back is extraction: the cheapest node of each class
//! needed by an output, built bottom-up with sharing, so common subexpressions are built once.

use super::analysis::{TensorAnalysis, EG, VALUE_LIMIT};
use super::cost::{node_cost, CostFn, TargetDesc};
use super::lang::{const_symbol, get_symbol, input_symbol, op_symbol, NodeKind, TNode};
use super::runner::Provenance;
use egg::{Extractor, Id, Language};
use sovc_ir::{ConstData, Graph, Tensor, ValueId, WeightRef, Weights};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The e-graph of `g`, the class of every value of `g`, and each class' source node name.
pub fn to_egraph(g: &Graph, weights: &Weights) -> (EG, Vec<Id>, BTreeMap<Id, String>) {
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
    let mut names = BTreeMap::new();
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

/// The node chosen in each class (canonical children): first the cheapest tree per class (egg's
/// extractor), then a sharing-aware improvement: a class used by several chosen classes (the merged
/// matmul behind three projections) is adopted by all of them at once when that lowers the cost of the
/// whole DAG, which tree costs cannot see.
pub fn choose(eg: &EG, target: &TargetDesc, roots: &[Id]) -> HashMap<Id, TNode> {
    let ex = Extractor::new(eg, CostFn { egraph: eg, target: target.clone() });
    let mut choice: HashMap<Id, TNode> = HashMap::new();
    let mut classes: Vec<Id> = eg.classes().map(|c| c.id).collect();
    classes.sort();
    for &c in &classes {
        choice.insert(c, ex.find_best_node(c).clone().map_children(|x| eg.find(x)));
    }
    let mut best = dag_cost(eg, target, &choice, roots).unwrap_or(f64::INFINITY);
    for _pass in 0..3 {
        let mut improved = false;
        let used = reachable(&choice, roots);
        for &x in &classes {
            if used.contains(&x) {
                continue;
            }
            // Chosen classes that have a node reading `x`, and that node.
            let mut switch: Vec<(Id, TNode)> = Vec::new();
            for p in eg[x].parents() {
                let p = eg.find(p);
                if !used.contains(&p) || switch.iter().any(|s| s.0 == p) {
                    continue;
                }
                let candidates = eg[p]
                    .nodes
                    .iter()
                    .map(|n| n.clone().map_children(|c| eg.find(c)))
                    .filter(|n| n.children.contains(&x));
                if let Some(n) = candidates.min_by(|a, b| node_cost(eg, target, a).total_cmp(&node_cost(eg, target, b)))
                {
                    switch.push((p, n));
                }
            }
            if switch.len() < 2 {
                continue;
            }
            let mut trial = choice.clone();
            for (p, n) in &switch {
                trial.insert(*p, n.clone());
            }
            if let Some(c) = dag_cost(eg, target, &trial, roots) {
                if c < best * (1.0 - 1e-9) {
                    best = c;
                    choice = trial;
                    improved = true;
                }
            }
        }
        if !improved {
            break;
        }
    }
    choice
}

/// Classes reachable from `roots` through the chosen nodes.
fn reachable(choice: &HashMap<Id, TNode>, roots: &[Id]) -> std::collections::HashSet<Id> {
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<Id> = roots.to_vec();
    while let Some(c) = stack.pop() {
        if seen.insert(c) {
            stack.extend(choice[&c].children.iter().copied());
        }
    }
    seen
}

/// The cost of the DAG the choices induce (each class once), or `None` if the choices form a cycle.
fn dag_cost(eg: &EG, target: &TargetDesc, choice: &HashMap<Id, TNode>, roots: &[Id]) -> Option<f64> {
    // 0 = unvisited, 1 = on the path, 2 = done.
    let mut state: HashMap<Id, u8> = HashMap::new();
    let mut total = 0.0;
    let mut stack: Vec<(Id, bool)> = roots.iter().map(|&r| (r, false)).collect();
    while let Some((c, exiting)) = stack.pop() {
        if exiting {
            state.insert(c, 2);
            total += node_cost(eg, target, &choice[&c]);
            continue;
        }
        match state.get(&c) {
            Some(2) => continue,
            Some(1) => continue,
            _ => {}
        }
        state.insert(c, 1);
        stack.push((c, true));
        for &ch in &choice[&c].children {
            match state.get(&ch) {
                Some(1) => return None,
                Some(2) => {}
                _ => stack.push((ch, false)),
            }
        }
    }
    Some(total)
}

/// Builds the cheapest graph for the classes of `src`'s outputs.
pub fn extract(
    eg: &EG,
    target: &TargetDesc,
    src: &Graph,
    weights: &Weights,
    value_ids: &[Id],
    names: &BTreeMap<Id, String>,
    prov: &Provenance,
) -> Result<(Graph, Weights, Vec<Vec<&'static str>>), String> {
    let roots: Vec<Id> = src.outputs.iter().map(|o| eg.find(value_ids[o.value.index()])).collect();
    let choice = choose(eg, target, &roots);
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
    // Classes merged by rules keep the name of their oldest source node, so names are deterministic.
    let mut canon_names: HashMap<Id, &String> = HashMap::new();
    for (k, v) in names {
        canon_names.entry(eg.find(*k)).or_insert(v);
    }
    // Build in the source graph's order where it still applies (an unchanged graph comes back in its own
    // order), then whatever the outputs still need. Iterative post-order, so deep graphs cannot overflow
    // the stack.
    let needed = reachable(&choice, &roots);
    let mut starts: Vec<Id> = Vec::new();
    for n in &src.nodes {
        for o in &n.outputs {
            let c = eg.find(value_ids[o.index()]);
            if needed.contains(&c) {
                starts.push(c);
            }
        }
    }
    starts.extend(roots.iter().copied());
    for root in starts {
        let mut stack = vec![(root, false)];
        while let Some((id, ready)) = stack.pop() {
            if memo.contains_key(&id) {
                continue;
            }
            let node = choice[&id].clone();
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
