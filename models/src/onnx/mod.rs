//! The ONNX importer: decodes a model with prost (the message structs are in `proto`), converts its
//! tensors, and translates the graph node by node into sovc IR (`import`, with one handler per op type in
//! `ops`). Shape computations (Shape, Gather, Concat, ... on shapes) are folded at import so the IR only
//! carries static attributes; dimensions marked dynamic stay symbolic until `--shape` fixes them.

mod import;
mod ops;
pub mod proto;
mod tensor;

pub use import::{import_bytes, import_file, import_model};
pub use tensor::{tensor_from_proto, tensor_to_proto};

use sovc_ir::Tensor;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Highest default-domain opset this importer knows; newer models are refused with a clear error.
pub const MAX_OPSET: i64 = 27;
/// Lowest default-domain opset supported.
pub const MIN_OPSET: i64 = 1;

/// Options of an import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Fixed shapes for named graph inputs (`--shape NAME=1x128`); also binds the symbols those inputs use.
    pub shapes: BTreeMap<String, Vec<u64>>,
    /// Graph inputs whose values are known at compile time; they become constants.
    pub constant_inputs: BTreeMap<String, Tensor>,
    /// Folder for external-data files (defaults to the model file's folder).
    pub base_dir: Option<PathBuf>,
    /// Largest tensor, in bytes, that an import will allocate (guards against malformed dimensions).
    pub max_tensor_bytes: Option<u64>,
}

/// Default cap on a single tensor: 16 GiB.
pub const DEFAULT_MAX_TENSOR_BYTES: u64 = 16 << 30;

/// Why an import failed. Messages name the node, its op type and the opset.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("not a valid ONNX model: {0}")]
    Decode(String),
    #[error("unsupported op `{op_type}` (domain `{domain}`, opset {opset}) at node `{node}`")]
    UnsupportedOp { op_type: String, domain: String, opset: i64, node: String },
    #[error("node `{node}` ({op_type}, opset {opset}): {msg}")]
    Node { node: String, op_type: String, opset: i64, msg: String },
    #[error("node `{node}` ({op_type}): input `{input}` must be known at compile time{hint}")]
    NeedsConstant { node: String, op_type: String, input: String, hint: String },
    #[error("unsupported element type {dtype} for `{name}`")]
    UnsupportedDType { name: String, dtype: String },
    #[error("{0}")]
    Graph(String),
}
