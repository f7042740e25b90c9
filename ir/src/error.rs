//! The IR's error type. Every variant names where the problem is: the node and op, the value, the text line.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum IrError {
    /// A graph breaks a typing or structural rule.
    #[error("node `{node}` ({op}): {rule} [values {value}]")]
    Verify { node: String, op: &'static str, value: String, rule: String },
    /// A graph-level rule (inputs, outputs, constants) is broken.
    #[error("graph: {0}")]
    Graph(String),
    /// The text form could not be parsed.
    #[error("line {line}, column {col}: {msg}")]
    Parse { line: usize, col: usize, msg: String },
    /// Running a node failed.
    #[error("node `{node}` ({op}): {msg}")]
    Eval { node: String, op: &'static str, msg: String },
    /// The interpreter was called with bad inputs or missing weights.
    #[error("{0}")]
    Run(String),
}
