//! Runs the ONNX node conformance suite and prints the grouped report (`-v` lists every failure).
//! `--bless` rewrites the committed baseline with today's passing tests.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v");
    let bless = args.iter().any(|a| a == "--bless");
    let root = sovc_tests::root();
    let Some(dir) = sovc_tests::conformance::node_test_dir(&root) else {
        eprintln!("error: onnx node tests not found; run scripts/setup-test-deps.sh or set SOVC_ONNX_NODE_DIR");
        std::process::exit(2);
    };
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if bless && filter.is_some() {
        eprintln!("error: --bless records the whole suite; run it without a filter");
        std::process::exit(2);
    }
    let report = sovc_tests::conformance::run_all(&dir, 2);
    let report = match filter {
        Some(f) => sovc_tests::conformance::Report {
            results: report.results.into_iter().filter(|(n, _)| n.contains(f.as_str())).collect(),
        },
        None => report,
    };
    print!("{}", report.summary(verbose));
    if bless {
        let path = root.join("tests/conformance/baseline.txt");
        let body: String = report.passed().iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(&path, body).expect("write baseline");
        eprintln!("wrote {}", path.display());
    }
}
