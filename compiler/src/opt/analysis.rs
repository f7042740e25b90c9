//! The e-class analysis: every class knows the type of its value (or the types of a multi-result op's
//! results) and, for small constants, the value itself. Types come from `sovc_ir::infer`, the same
//! inference the graph builder uses, so a rule that would build an ill-typed term is caught when it adds
//! it; merging two classes of different types is a rule bug and is recorded, not hidden.

use super::lang::{NodeKind, TNode};
use egg::{Analysis, DidMerge, EGraph, Id, Symbol};
use sovc_ir::{Op, Tensor, TensorType};
use std::collections::HashMap;
use std::sync::Arc;

/// Constants with at most this many elements carry their value in the analysis (for rule conditions).
pub const VALUE_LIMIT: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct ClassData {
    /// One type for a tensor; several for the tuple of a multi-result op.
    pub tys: Vec<TensorType>,
    pub tuple: bool,
    pub value: Option<Arc<Tensor>>,
    /// Computed from constants only, so a compiler folds it before run time.
    pub constant: bool,
}

impl ClassData {
    pub fn ty(&self) -> &TensorType {
        &self.tys[0]
    }
}

/// Tables the analysis needs: what each symbol means, the source graph's input and constant types.
#[derive(Debug, Default)]
pub struct TensorAnalysis {
    pub kinds: HashMap<Symbol, NodeKind>,
    pub input_tys: Vec<TensorType>,
    pub const_tys: Vec<TensorType>,
    pub const_values: Vec<Option<Arc<Tensor>>>,
    pub new_consts: Vec<Arc<Tensor>>,
    /// Type errors found while adding or merging (rule bugs); reported, and they fail the optimization.
    pub errors: Vec<String>,
}

pub type EG = EGraph<TNode, TensorAnalysis>;

impl TensorAnalysis {
    pub fn kind(&self, s: Symbol) -> &NodeKind {
        self.kinds.get(&s).expect("every symbol in the e-graph is registered")
    }

    pub fn register(&mut self, s: Symbol, k: NodeKind) {
        self.kinds.entry(s).or_insert(k);
    }
}

fn data_of(egraph: &EG, enode: &TNode) -> Result<ClassData, String> {
    let a = &egraph.analysis;
    let child = |i: usize| &egraph[enode.children[i]].data;
    match a.kind(enode.op) {
        NodeKind::Input(i) => {
            Ok(ClassData { tys: vec![a.input_tys[*i].clone()], tuple: false, value: None, constant: false })
        }
        NodeKind::Const(i) => Ok(ClassData {
            tys: vec![a.const_tys[*i].clone()],
            tuple: false,
            value: a.const_values[*i].clone(),
            constant: true,
        }),
        NodeKind::NewConst(i) => {
            let t = &a.new_consts[*i];
            let value = (t.len() <= VALUE_LIMIT).then(|| t.clone());
            Ok(ClassData { tys: vec![t.ty()], tuple: false, value, constant: true })
        }
        NodeKind::Get(i) => {
            let c = child(0);
            let t = c.tys.get(*i).ok_or_else(|| format!("get#{i} of a value with {} results", c.tys.len()))?;
            Ok(ClassData { tys: vec![t.clone()], tuple: false, value: None, constant: c.constant })
        }
        NodeKind::Op(op) => {
            let tys: Vec<&TensorType> = (0..enode.children.len()).map(|i| child(i).ty()).collect();
            let out = sovc_ir::infer::infer(op, &tys).map_err(|e| format!("{}: {e}", op.name()))?;
            let tuple = op.num_outputs() > 1;
            let value = fold_small(op, enode, egraph, &out);
            let constant = enode.children.iter().all(|&c| egraph[c].data.constant);
            Ok(ClassData { tys: out, tuple, value, constant })
        }
    }
}

/// Folds an op whose inputs are all small known values (keeps scalar arithmetic visible to rules).
fn fold_small(op: &Op, enode: &TNode, egraph: &EG, out: &[TensorType]) -> Option<Arc<Tensor>> {
    if op.num_outputs() != 1 || out[0].shape.num_elements()? > VALUE_LIMIT as u64 {
        return None;
    }
    let vals: Option<Vec<&Tensor>> = enode.children.iter().map(|&c| egraph[c].data.value.as_deref()).collect();
    let vals = vals?;
    sovc_ir::interp::eval(op, &vals, &Default::default()).ok().map(|mut v| Arc::new(v.remove(0)))
}

impl Analysis<TNode> for TensorAnalysis {
    type Data = ClassData;

    fn make(egraph: &mut EG, enode: &TNode, _id: Id) -> ClassData {
        match data_of(egraph, enode) {
            Ok(d) => d,
            Err(e) => {
                egraph.analysis.errors.push(format!("ill-typed node {}: {e}", enode.op));
                ClassData {
                    tys: vec![TensorType::new(sovc_ir::DType::F32, sovc_ir::Shape::scalar())],
                    tuple: false,
                    value: None,
                    constant: false,
                }
            }
        }
    }

    fn merge(&mut self, a: &mut ClassData, b: ClassData) -> DidMerge {
        if a.tys != b.tys {
            self.errors.push(format!("merged classes of different types: {:?} and {:?}", a.tys, b.tys));
        }
        let mut changed_a = false;
        if !a.constant && b.constant {
            a.constant = true;
            changed_a = true;
        }
        if a.value.is_none() && b.value.is_some() {
            a.value = b.value;
            changed_a = true;
        }
        DidMerge(changed_a, true)
    }
}
