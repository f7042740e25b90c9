//! The e-graph language: one node type whose operator is an interned symbol naming an IR op *with its
//! attributes* (`softmax{axis=-1}`), a graph input, a constant, or a projection of a multi-result op.
//! The analysis keeps the symbol-to-op table, so rules work with typed `Op` values, never with strings.

use egg::{Id, Language, Symbol};
use sovc_ir::Op;
use std::fmt;

/// An e-node: an operator symbol and its children.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TNode {
    pub op: Symbol,
    pub children: Vec<Id>,
}

impl Language for TNode {
    type Discriminant = (Symbol, usize);

    fn discriminant(&self) -> Self::Discriminant {
        (self.op, self.children.len())
    }

    fn matches(&self, other: &Self) -> bool {
        self.op == other.op && self.children.len() == other.children.len()
    }

    fn children(&self) -> &[Id] {
        &self.children
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.children
    }
}

impl fmt::Display for TNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.as_str())
    }
}

/// What an operator symbol stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// Graph input `i` of the source graph.
    Input(usize),
    /// Constant `i` of the source graph.
    Const(usize),
    /// A constant created by a rule (index into the analysis' new constants).
    NewConst(usize),
    /// Result `i` of a multi-result op (the child is the op's tuple class).
    Get(usize),
    Op(Op),
}

/// The symbol of an op: its text name and attributes, without spaces (`transpose{perm=[1,0]}`).
pub fn op_symbol(op: &Op) -> Symbol {
    let attrs = op.attrs();
    if attrs.is_empty() {
        return Symbol::from(op.name());
    }
    let body: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Symbol::from(format!("{}{{{}}}", op.name(), body.join(",")).replace(' ', ""))
}

pub fn input_symbol(i: usize) -> Symbol {
    Symbol::from(format!("input#{i}"))
}

pub fn const_symbol(i: usize) -> Symbol {
    Symbol::from(format!("const#{i}"))
}

pub fn new_const_symbol(i: usize) -> Symbol {
    Symbol::from(format!("newconst#{i}"))
}

pub fn get_symbol(i: usize) -> Symbol {
    Symbol::from(format!("get#{i}"))
}
