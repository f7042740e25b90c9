//! Shared code of sovc's integration tests: the ONNX conformance harness and helpers to find test data.

pub mod conformance;

use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The folder of generated real-model exports (see `scripts/setup-test-deps.sh`).
pub fn generated_models() -> PathBuf {
    root().join("tests/data/generated/models")
}

/// Fails with a pointer to the set-up script when generated test data is missing, unless the test is
/// explicitly skipped with `SOVC_SKIP_GENERATED=1` (for quick local runs; CI never sets it).
pub fn require_generated(path: &std::path::Path) -> bool {
    if path.exists() {
        return true;
    }
    if std::env::var("SOVC_SKIP_GENERATED").is_ok_and(|v| v == "1") {
        eprintln!("skipping: {} is missing and SOVC_SKIP_GENERATED=1", path.display());
        return false;
    }
    panic!(
        "{} is missing: run scripts/setup-test-deps.sh first (or set SOVC_SKIP_GENERATED=1 to skip)",
        path.display()
    );
}

/// Largest absolute difference between two float tensors of the same shape.
pub fn max_abs_diff(a: &sovc_ir::Tensor, b: &sovc_ir::Tensor) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.to_f64_vec().iter().zip(b.to_f64_vec()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

pub mod fuzz;
