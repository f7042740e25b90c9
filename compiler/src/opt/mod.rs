//! The optimizer: equality saturation over the graph IR with `egg`, judged by a per-target analytical
//! cost model, bounded and deterministic, keeping for every output node the chain of rules that produced
//! it. Pipeline: `convert::to_egraph` -> `runner::saturate` with `rules::all()` -> `convert::extract`
//! with `cost::CostFn`.

pub mod analysis;
pub mod convert;
pub mod cost;
pub mod lang;
pub mod rules;
pub mod runner;

pub use cost::TargetDesc;
pub use runner::{Limits, StopReason};

use sovc_ir::{Graph, Weights};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Options of one optimization.
#[derive(Clone, Debug)]
pub struct OptOptions {
    pub target: TargetDesc,
    pub limits: Limits,
    /// Run only these rules (by name); all rules when `None`.
    pub only_rules: Option<Vec<String>>,
}

impl Default for OptOptions {
    fn default() -> OptOptions {
        OptOptions { target: TargetDesc::cpu(), limits: Limits::default(), only_rules: None }
    }
}

/// What the optimizer did.
#[derive(Clone, Debug)]
pub struct Report {
    pub stop: StopReason,
    pub iterations: usize,
    pub enodes: usize,
    pub eclasses: usize,
    pub applied: BTreeMap<&'static str, usize>,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub cost_before: f64,
    pub cost_after: f64,
    pub ops_before: BTreeMap<&'static str, usize>,
    pub ops_after: BTreeMap<&'static str, usize>,
    /// Wall time of each phase: build, saturate, extract.
    pub phases: Vec<(&'static str, Duration)>,
}

impl Report {
    /// The human-readable report of `sovc opt --stats`.
    pub fn render(&self, target: &str) -> String {
        let mut s = format!(
            "e-graph: {} e-nodes in {} e-classes after {} iterations; stopped: {}\n",
            self.enodes, self.eclasses, self.iterations, self.stop
        );
        for (p, d) in &self.phases {
            s.push_str(&format!("  {p}: {:.1} ms\n", d.as_secs_f64() * 1e3));
        }
        s.push_str("rules applied:\n");
        for (r, n) in &self.applied {
            s.push_str(&format!("  {r}: {n}\n"));
        }
        s.push_str(&format!(
            "nodes: {} -> {}\nestimated cost on {target}: {:.1} us -> {:.1} us\nops:\n",
            self.nodes_before,
            self.nodes_after,
            self.cost_before * 1e6,
            self.cost_after * 1e6
        ));
        let names: std::collections::BTreeSet<&&str> = self.ops_before.keys().chain(self.ops_after.keys()).collect();
        for n in names {
            let (b, a) = (self.ops_before.get(*n).copied().unwrap_or(0), self.ops_after.get(*n).copied().unwrap_or(0));
            s.push_str(&format!("  {n}: {b} -> {a}\n"));
        }
        s
    }
}

/// The optimized graph, new weights (constants created by rules), the report and, for each node of the
/// new graph, the rules that produced it.
pub struct OptResult {
    pub graph: Graph,
    pub weights: Weights,
    pub report: Report,
    pub explain: Vec<Vec<&'static str>>,
}

#[derive(Debug, thiserror::Error)]
pub enum OptError {
    #[error("unknown rule `{0}`")]
    UnknownRule(String),
    #[error("optimizer: {0}")]
    Internal(String),
}

/// Optimizes `g`.
pub fn optimize(g: &Graph, weights: &Weights, opts: &OptOptions) -> Result<OptResult, OptError> {
    let mut rules = rules::all();
    if let Some(only) = &opts.only_rules {
        for name in only {
            if !rules.iter().any(|r| r.name == name) {
                return Err(OptError::UnknownRule(name.clone()));
            }
        }
        rules.retain(|r| only.iter().any(|n| n == r.name));
    }
    let t0 = Instant::now();
    let (mut eg, ids, names) = convert::to_egraph(g, weights);
    let t_build = t0.elapsed();
    let sat = runner::saturate(&mut eg, &rules, &opts.limits).map_err(OptError::Internal)?;
    let t1 = Instant::now();
    let (graph, weights, mut explain) =
        convert::extract(&eg, &opts.target, g, weights, &ids, &names, &sat.provenance).map_err(OptError::Internal)?;
    let (mut graph, mut weights) = (graph, weights);
    // Merged weights (and anything else computed from constants) are computed once, now.
    let kept =
        sovc_ir::fold::fold_constants(&mut graph, &mut weights).map_err(|e| OptError::Internal(e.to_string()))?;
    let mut k = kept.iter();
    explain.retain(|_| *k.next().unwrap_or(&true));
    let t_extract = t1.elapsed();
    sovc_ir::verify(&graph).map_err(|e| OptError::Internal(format!("extracted graph is invalid: {}", e[0])))?;
    let report = Report {
        stop: sat.stop,
        iterations: sat.iterations,
        enodes: eg.total_size(),
        eclasses: eg.number_of_classes(),
        applied: sat.applied,
        nodes_before: g.nodes.len(),
        nodes_after: graph.nodes.len(),
        cost_before: cost::graph_cost(g, &opts.target),
        cost_after: cost::graph_cost(&graph, &opts.target),
        ops_before: g.op_counts(),
        ops_after: graph.op_counts(),
        phases: vec![("build", t_build), ("saturate", sat.time), ("extract", t_extract)],
    };
    Ok(OptResult { graph, weights, report, explain })
}
