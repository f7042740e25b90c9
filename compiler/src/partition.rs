//! Partitioning: the optimized graph split into fused kernel groups, the unit every target lowers. Each
//! non-elementwise op (matmul, conv, attention, a normalization, a reduction, a movement) anchors a group;
//! elementwise ops and reshapes join the group of the value they consume when that value has no other
//! use, has the op's result shape (an op that broadcasts a group's result up to a larger shape starts
//! its own group) and no cycle can form, so `matmul -> add bias -> gelu` or `conv -> add -> relu` become one kernel
//! with an epilogue. Elementwise ops with nowhere to go form their own (fused elementwise) group.

use sovc_ir::{Graph, OpKind, ValueDef, ValueId};
use std::collections::BTreeSet;

/// One fused kernel: graph nodes in execution order, the values it reads and the values it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelGroup {
    pub nodes: Vec<usize>,
    /// Values read from outside the group (graph inputs, constants, other groups' outputs), in first-use order.
    pub inputs: Vec<ValueId>,
    /// Values the group computes that something outside it needs (another group or a graph output).
    pub outputs: Vec<ValueId>,
}

impl KernelGroup {
    /// The op that gives the group its shape: the first non-elementwise node, or the first node.
    pub fn anchor<'a>(&self, g: &'a Graph) -> &'a sovc_ir::Op {
        let first = self.nodes.iter().find(|&&n| !joins(g, n)).unwrap_or(&self.nodes[0]);
        &g.nodes[*first].op
    }
}

/// Whether a node may join its producer's group (elementwise math and free reshapes).
fn joins(g: &Graph, n: usize) -> bool {
    let op = &g.nodes[n].op;
    op.info().kind == OpKind::Elementwise || matches!(op, sovc_ir::Op::Reshape { .. })
}

/// Splits `g` (nodes in topological order) into kernel groups, in an order that respects dependencies.
pub fn partition(g: &Graph) -> Vec<KernelGroup> {
    let defs = g.defs();
    let mut uses = vec![0usize; g.values.len()];
    for n in &g.nodes {
        for v in &n.inputs {
            uses[v.index()] += 1;
        }
    }
    let is_output: BTreeSet<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let mut group_of_node: Vec<usize> = vec![usize::MAX; g.nodes.len()];
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let producer_group = |group_of_node: &[usize], v: ValueId| match defs[v.index()] {
        Some(ValueDef::Node { node, .. }) => Some(group_of_node[node]),
        _ => None,
    };
    for n in 0..g.nodes.len() {
        let mut target = None;
        if joins(g, n) {
            // Join the latest group among the single-use producers of this node's inputs, if every other
            // input comes from outside any group or from a group created before it (so no cycle forms).
            let ins = &g.nodes[n].inputs;
            // Only through an operand of the result's own shape: an op that broadcasts a group's small
            // result up to a larger one (squeeze-and-excitation's channel scale) starts its own group,
            // since the group's kernel iterates over its anchor's result.
            let out_shape = &g.ty(g.nodes[n].outputs[0]).shape;
            let reshape = matches!(g.nodes[n].op, sovc_ir::Op::Reshape { .. });
            let candidate = ins
                .iter()
                .filter(|v| uses[v.index()] == 1 && !is_output.contains(v))
                .filter(|v| reshape || &g.ty(**v).shape == out_shape)
                .filter_map(|&v| producer_group(&group_of_node, v))
                .max();
            if let Some(c) = candidate {
                let safe = ins.iter().all(|&v| producer_group(&group_of_node, v).is_none_or(|p| p <= c));
                if safe {
                    target = Some(c);
                }
            }
        }
        let gi = target.unwrap_or_else(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[gi].push(n);
        group_of_node[n] = gi;
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(gi, nodes)| {
            let mut inputs = Vec::new();
            let mut outputs = Vec::new();
            for &n in &nodes {
                for &v in &g.nodes[n].inputs {
                    let inside = producer_group(&group_of_node, v) == Some(gi);
                    if !inside && !inputs.contains(&v) {
                        inputs.push(v);
                    }
                }
            }
            for &n in &nodes {
                for &v in &g.nodes[n].outputs {
                    let used_outside =
                        g.nodes.iter().enumerate().any(|(m, node)| group_of_node[m] != gi && node.inputs.contains(&v));
                    if used_outside || is_output.contains(&v) {
                        outputs.push(v);
                    }
                }
            }
            KernelGroup { nodes, inputs, outputs }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epilogues_fuse_into_their_anchor() {
        let m = sovc_models::builtin::encoder_layer(16, 64, 4);
        let groups = partition(&m.graph);
        let g = &m.graph;
        // Every node in exactly one group.
        let mut seen: Vec<usize> = groups.iter().flat_map(|k| k.nodes.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..g.nodes.len()).collect::<Vec<_>>());
        // matmul + bias add (+ reshape into heads) is one kernel; so is fc1 + bias + gelu.
        let names = |k: &KernelGroup| k.nodes.iter().map(|&n| g.nodes[n].op.name()).collect::<Vec<_>>();
        let all: Vec<Vec<&str>> = groups.iter().map(names).collect();
        assert!(all.contains(&vec!["matmul", "add", "gelu"]), "{all:?}");
        assert!(all.iter().filter(|k| k.starts_with(&["matmul", "add"])).count() >= 5, "{all:?}");
        // The residual add joins the output projection: matmul, bias, residual in one kernel.
        assert!(all.contains(&vec!["matmul", "add", "add"]), "{all:?}");
        assert!(groups.len() < g.nodes.len());
    }

    #[test]
    fn groups_form_a_dag_in_order() {
        for m in [
            sovc_models::builtin::decoder_layer(16, 64, 4),
            sovc_models::builtin::nasrnn(3, 32),
            sovc_models::builtin::mlp(),
        ] {
            let g = &m.graph;
            let groups = partition(g);
            let mut group_of = vec![usize::MAX; g.nodes.len()];
            for (i, k) in groups.iter().enumerate() {
                for &n in &k.nodes {
                    group_of[n] = i;
                }
            }
            let defs = g.defs();
            for (i, k) in groups.iter().enumerate() {
                for v in &k.inputs {
                    if let Some(ValueDef::Node { node, .. }) = defs[v.index()] {
                        assert!(group_of[node] < i, "group {i} reads a value of a later group");
                    }
                }
            }
            for o in &g.outputs {
                assert!(groups.iter().any(|k| k.outputs.contains(&o.value)), "output not written by any group");
            }
        }
    }
}
