//! The ONNX backend node tests through import and the reference interpreter. Every test in the committed
//! baseline must pass; the summary (with failures grouped by reason) is printed for the log. Run
//! `cargo run -p sovc-tests --bin conformance -- --bless` after adding ops to grow the baseline.

#[test]
fn onnx_node_tests_do_not_regress() {
    let root = sovc_tests::root();
    let Some(dir) = sovc_tests::conformance::node_test_dir(&root) else {
        if std::env::var("SOVC_SKIP_GENERATED").is_ok_and(|v| v == "1") {
            eprintln!("skipping: onnx node tests not installed");
            return;
        }
        panic!("onnx node tests not found: run scripts/setup-test-deps.sh (or set SOVC_ONNX_NODE_DIR)");
    };
    let report = sovc_tests::conformance::run_all(&dir, 2);
    eprint!("{}", report.summary(false));
    let baseline = std::fs::read_to_string(root.join("tests/conformance/baseline.txt")).expect("baseline is committed");
    let regressions: Vec<String> = baseline
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|t| match report.results.get(t) {
            Some(None) => None,
            Some(Some(f)) => Some(format!("{t}: {}: {}", f.group(), f.detail())),
            None => Some(format!("{t}: test not found")),
        })
        .collect();
    assert!(regressions.is_empty(), "{} baseline tests no longer pass:\n{}", regressions.len(), regressions.join("\n"));
    assert!(report.passed().len() >= 1000, "fewer than 1000 node tests pass");
}
