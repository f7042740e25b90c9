//! Shared code of sovc's integration tests: the ONNX conformance harness and helpers to find test data.

pub mod conformance;

use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}
