//! Constant folding: every node whose inputs are all constants is evaluated once with the reference
//! interpreter and replaced by a constant (inline when small, else a weight under `folded/...`).

use crate::{interp, ConstData, Graph, IrError, Tensor, ValueId, WeightRef, Weights};
use std::collections::HashMap;
use std::sync::Arc;

/// Folds constant subgraphs of `g`; new weights are added to `w`. Returns, for each node of the input
/// graph, whether it was kept (node order is preserved).
pub fn fold_constants(g: &mut Graph, w: &mut Weights) -> Result<Vec<bool>, IrError> {
    let mut known: HashMap<ValueId, Arc<Tensor>> = HashMap::new();
    for c in &g.consts {
        let t = match &c.data {
            ConstData::Inline(t) => Arc::new(t.clone()),
            ConstData::Weight(r) => match w.get(r) {
                Some(t) => t.clone(),
                None => continue,
            },
        };
        known.insert(c.value, t);
    }
    let mut kept = Vec::with_capacity(g.nodes.len());
    let mut keep = Vec::with_capacity(g.nodes.len());
    for n in std::mem::take(&mut g.nodes) {
        let ins: Option<Vec<&Tensor>> = n.inputs.iter().map(|v| known.get(v).map(|t| &**t)).collect();
        let Some(ins) = ins else {
            keep.push(n);
            kept.push(true);
            continue;
        };
        let outs = interp::eval(&n.op, &ins, &Default::default()).map_err(|msg| IrError::Eval {
            node: n.name.clone(),
            op: n.op.name(),
            msg,
        })?;
        for (v, t) in n.outputs.iter().zip(outs) {
            // Node names need not be unique; value ids are, so they make the weight key unique.
            let name = format!("folded/{}#{}", n.name, v.0);
            let data = if t.len() <= 16 {
                ConstData::Inline(t.clone())
            } else {
                let r = WeightRef { file: "folded".into(), key: name.clone() };
                w.insert(r.clone(), t.clone());
                ConstData::Weight(r)
            };
            g.consts.push(crate::Constant { name, value: *v, data });
            known.insert(*v, Arc::new(t));
        }
        kept.push(false);
    }
    g.nodes = keep;
    g.remove_dead();
    *g = g.canonical();
    Ok(kept)
}
