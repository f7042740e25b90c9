//! The typed SSA tensor graph: values with types, graph inputs and outputs, constants that reference their
//! data (inline for small ones, by file and key for weights), and nodes in topological order.
//! Value ids are dense indices; the text printer renumbers canonically so dumps diff cleanly.

use crate::{infer, IrError, Op, Tensor, TensorType};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A value: an index into [`Graph::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Where a weight's data lives: a file (safetensors or ONNX) and the tensor's key in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightRef {
    pub file: String,
    pub key: String,
}

/// The data of a constant.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstData {
    /// Small constants (shapes, scalars) printed in the text form.
    Inline(Tensor),
    /// Weights, referenced and loaded separately into a [`Weights`] store.
    Weight(WeightRef),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    pub value: ValueId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub value: ValueId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Constant {
    pub name: String,
    pub value: ValueId,
    pub data: ConstData,
}

/// One op application. `name` is where it came from (the ONNX node name) and appears in every error about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    pub name: String,
}

/// How a value is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueDef {
    Input(usize),
    Const(usize),
    Node { node: usize, output: usize },
}

/// A tensor graph. Nodes are kept in topological order: each node's inputs are defined before it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub values: Vec<TensorType>,
    pub inputs: Vec<Input>,
    pub consts: Vec<Constant>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<Output>,
}

/// Weight data of a graph, keyed by reference. Shared so that passes can copy graphs cheaply.
#[derive(Clone, Debug, Default)]
pub struct Weights {
    pub map: BTreeMap<WeightRef, Arc<Tensor>>,
}

impl Weights {
    pub fn insert(&mut self, r: WeightRef, t: Tensor) {
        self.map.insert(r, Arc::new(t));
    }

    pub fn get(&self, r: &WeightRef) -> Option<&Arc<Tensor>> {
        self.map.get(r)
    }
}

/// A graph together with its weights.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub graph: Graph,
    pub weights: Weights,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn ty(&self, v: ValueId) -> &TensorType {
        &self.values[v.index()]
    }

    fn new_value(&mut self, ty: TensorType) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(ty);
        id
    }

    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let value = self.new_value(ty);
        self.inputs.push(Input { name: name.into(), value });
        value
    }

    /// Adds a constant; for inline data the type must be the tensor's.
    pub fn add_const(&mut self, name: impl Into<String>, ty: TensorType, data: ConstData) -> ValueId {
        let value = self.new_value(ty);
        self.consts.push(Constant { name: name.into(), value, data });
        value
    }

    /// Adds a small inline constant.
    pub fn add_inline(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        let ty = t.ty();
        self.add_const(name, ty, ConstData::Inline(t))
    }

    /// Adds a node, inferring its result types. Fails with the rule the inputs break.
    pub fn add_node(&mut self, op: Op, inputs: &[ValueId], name: impl Into<String>) -> Result<Vec<ValueId>, IrError> {
        let name = name.into();
        for &v in inputs {
            if v.index() >= self.values.len() {
                return Err(IrError::Verify {
                    node: name,
                    op: op.name(),
                    value: v.to_string(),
                    rule: "input is not a value of this graph".into(),
                });
            }
        }
        let tys: Vec<&TensorType> = inputs.iter().map(|&v| self.ty(v)).collect();
        let out_tys = infer::infer(&op, &tys).map_err(|rule| IrError::Verify {
            node: name.clone(),
            op: op.name(),
            value: inputs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", "),
            rule,
        })?;
        let outputs: Vec<ValueId> = out_tys.into_iter().map(|t| self.new_value(t)).collect();
        self.nodes.push(Node { op, inputs: inputs.to_vec(), outputs: outputs.clone(), name });
        Ok(outputs)
    }

    /// Adds a single-result node.
    pub fn add1(&mut self, op: Op, inputs: &[ValueId], name: impl Into<String>) -> Result<ValueId, IrError> {
        let outs = self.add_node(op, inputs, name)?;
        Ok(outs[0])
    }

    pub fn add_output(&mut self, name: impl Into<String>, value: ValueId) {
        self.outputs.push(Output { name: name.into(), value });
    }

    /// Where each value is defined; `None` for values nothing defines.
    pub fn defs(&self) -> Vec<Option<ValueDef>> {
        let mut d = vec![None; self.values.len()];
        for (i, x) in self.inputs.iter().enumerate() {
            d[x.value.index()] = Some(ValueDef::Input(i));
        }
        for (i, c) in self.consts.iter().enumerate() {
            d[c.value.index()] = Some(ValueDef::Const(i));
        }
        for (n, node) in self.nodes.iter().enumerate() {
            for (o, v) in node.outputs.iter().enumerate() {
                if let Some(slot) = d.get_mut(v.index()) {
                    *slot = Some(ValueDef::Node { node: n, output: o });
                }
            }
        }
        d
    }

    /// For each value, the index of the last node that reads it (`usize::MAX` if a graph output).
    pub fn last_uses(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            for v in &node.inputs {
                last[v.index()] = Some(n);
            }
        }
        for o in &self.outputs {
            last[o.value.index()] = Some(usize::MAX);
        }
        last
    }

    /// A copy with values renumbered canonically: inputs, then constants, then node results in node order;
    /// values nothing defines are dropped.
    pub fn canonical(&self) -> Graph {
        let mut map: Vec<Option<ValueId>> = vec![None; self.values.len()];
        let mut g = Graph::new();
        let remap = |g: &mut Graph, map: &mut Vec<Option<ValueId>>, old: ValueId| {
            let id = ValueId(g.values.len() as u32);
            g.values.push(self.values[old.index()].clone());
            map[old.index()] = Some(id);
            id
        };
        for x in &self.inputs {
            let v = remap(&mut g, &mut map, x.value);
            g.inputs.push(Input { name: x.name.clone(), value: v });
        }
        for c in &self.consts {
            let v = remap(&mut g, &mut map, c.value);
            g.consts.push(Constant { name: c.name.clone(), value: v, data: c.data.clone() });
        }
        for n in &self.nodes {
            let inputs = n.inputs.iter().map(|i| map[i.index()].unwrap_or(*i)).collect();
            let outputs = n.outputs.iter().map(|&o| remap(&mut g, &mut map, o)).collect();
            g.nodes.push(Node { op: n.op.clone(), inputs, outputs, name: n.name.clone() });
        }
        for o in &self.outputs {
            g.outputs.push(Output { name: o.name.clone(), value: map[o.value.index()].unwrap_or(o.value) });
        }
        g
    }

    /// Number of parameters: elements of weight constants (symbolic shapes count as zero).
    pub fn parameter_count(&self) -> u64 {
        self.consts
            .iter()
            .filter(|c| matches!(c.data, ConstData::Weight(_)))
            .map(|c| self.ty(c.value).shape.num_elements().unwrap_or(0))
            .sum()
    }

    /// Op name -> how many nodes use it, sorted by name.
    pub fn op_counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for n in &self.nodes {
            *m.entry(n.op.name()).or_insert(0) += 1;
        }
        m
    }

    /// Removes nodes and constants whose results no output needs.
    pub fn remove_dead(&mut self) {
        let mut live = vec![false; self.values.len()];
        for o in &self.outputs {
            live[o.value.index()] = true;
        }
        let mut keep = vec![false; self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate().rev() {
            if n.outputs.iter().any(|o| live[o.index()]) {
                keep[i] = true;
                for v in &n.inputs {
                    live[v.index()] = true;
                }
            }
        }
        let mut i = 0;
        self.nodes.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        self.consts.retain(|c| live[c.value.index()]);
    }
}
