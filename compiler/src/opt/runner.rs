//! Equality saturation: each iteration collects every rule match over the whole e-graph (classes and
//! nodes in id order, so runs are deterministic), then adds the built terms and unions them, then
//! rebuilds. It stops at saturation or at the node, iteration or time limit, and says which.

use super::analysis::EG;
use super::lang::{get_symbol, new_const_symbol, op_symbol, NodeKind, TNode};
use super::rules::{Rule, Term};
use egg::{Id, Language};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bounds on saturation.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub nodes: usize,
    pub iterations: usize,
    pub time: Duration,
}

impl Default for Limits {
    /// TENSAT's caps: 50,000 e-nodes and 15 iterations; and 10 seconds.
    fn default() -> Limits {
        Limits { nodes: 50_000, iterations: 15, time: Duration::from_secs(10) }
    }
}

/// Why saturation stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    Saturated,
    IterationLimit(usize),
    NodeLimit(usize),
    TimeLimit(Duration),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Saturated => f.write_str("saturated (no rule changes the e-graph)"),
            StopReason::IterationLimit(n) => write!(f, "iteration limit ({n})"),
            StopReason::NodeLimit(n) => write!(f, "e-node limit ({n})"),
            StopReason::TimeLimit(d) => write!(f, "time limit ({:.1} s)", d.as_secs_f64()),
        }
    }
}

/// The chain of rules that produced each node added by a rule (keyed by the canonical node).
pub type Provenance = BTreeMap<TNode, Vec<&'static str>>;

pub struct Saturation {
    pub stop: StopReason,
    pub iterations: usize,
    /// Rule name -> number of matches that changed the e-graph.
    pub applied: BTreeMap<&'static str, usize>,
    pub time: Duration,
    pub provenance: Provenance,
}

/// Adds a rule's term to the e-graph, recording its provenance; returns its class.
fn add_term(eg: &mut EG, t: &Term, chain: &[&'static str], prov: &mut Provenance) -> Id {
    match t {
        Term::Class(id) => *id,
        Term::Const(tensor) => {
            // The same value built again (every iteration re-matches) is the same constant.
            let k = match eg.analysis.new_consts.iter().position(|c| **c == *tensor) {
                Some(k) => k,
                None => {
                    eg.analysis.new_consts.push(Arc::new(tensor.clone()));
                    eg.analysis.new_consts.len() - 1
                }
            };
            let sym = new_const_symbol(k);
            eg.analysis.register(sym, NodeKind::NewConst(k));
            eg.add(TNode { op: sym, children: vec![] })
        }
        Term::Get(t, i) => {
            let tuple = add_term(eg, t, chain, prov);
            let sym = get_symbol(*i);
            eg.analysis.register(sym, NodeKind::Get(*i));
            eg.add(TNode { op: sym, children: vec![tuple] })
        }
        Term::Op(op, children) => {
            let ch: Vec<Id> = children.iter().map(|c| add_term(eg, c, chain, prov)).collect();
            let sym = op_symbol(op);
            eg.analysis.register(sym, NodeKind::Op(op.clone()));
            let node = TNode { op: sym, children: ch };
            prov.entry(node.clone()).or_insert_with(|| chain.to_vec());
            eg.add(node)
        }
    }
}

/// Runs `rules` on `eg` until it saturates or a limit is hit.
pub fn saturate(eg: &mut EG, rules: &[Rule], limits: &Limits) -> Result<Saturation, String> {
    let start = Instant::now();
    let mut applied: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut prov = Provenance::new();
    let mut iterations = 0;
    let stop = loop {
        if iterations >= limits.iterations {
            break StopReason::IterationLimit(limits.iterations);
        }
        iterations += 1;
        let mut classes: Vec<Id> = eg.classes().map(|c| c.id).collect();
        classes.sort();
        let mut matches: Vec<(&Rule, Id, Term, TNode)> = Vec::new();
        for &c in &classes {
            for n in &eg[c].nodes {
                for r in rules {
                    if let Some(t) = (r.find)(eg, c, n) {
                        matches.push((r, c, t, n.clone()));
                    }
                }
            }
        }
        let size_before = eg.total_size();
        let mut changed = false;
        for (r, c, t, src) in matches {
            let src = src.map_children(|x| eg.find(x));
            let mut chain = prov.get(&src).cloned().unwrap_or_default();
            chain.push(r.name);
            let new = add_term(eg, &t, &chain, &mut prov);
            if eg.union(c, new) {
                changed = true;
                *applied.entry(r.name).or_insert(0) += 1;
            }
        }
        eg.rebuild();
        if !eg.analysis.errors.is_empty() {
            return Err(format!("a rule built an ill-typed term: {}", eg.analysis.errors.join("; ")));
        }
        if !changed && eg.total_size() == size_before {
            break StopReason::Saturated;
        }
        if eg.total_size() > limits.nodes {
            break StopReason::NodeLimit(limits.nodes);
        }
        if start.elapsed() > limits.time {
            break StopReason::TimeLimit(limits.time);
        }
    };
    // Re-key provenance by canonical nodes so extraction can look chosen nodes up.
    let provenance = prov.into_iter().map(|(n, c)| (n.map_children(|x| eg.find(x)), c)).collect();
    Ok(Saturation { stop, iterations, applied, time: start.elapsed(), provenance })
}
