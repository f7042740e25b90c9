//! Tidy checks as ordinary tests: the conventions and architecture invariants that code review would
//! otherwise have to remember (STYLE.md and ARCHITECTURE.md).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable folder") {
        let p = e.expect("entry").path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if p.is_dir() {
            if !["target", "generated", "corpus", "artifacts"].contains(&name) && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let root = sovc_tests::root();
    let mut files = Vec::new();
    for d in ["ir", "models", "compiler", "runtime", "tests", "benches", "fuzz"] {
        rust_files(&root.join(d), &mut files);
    }
    files.sort();
    assert!(files.len() > 40, "found only {} source files", files.len());
    files
        .into_iter()
        .map(|p| (p.strip_prefix(&root).expect("under root").to_path_buf(), std::fs::read_to_string(&p).expect("utf8")))
        .collect()
}

#[test]
fn every_file_says_why_it_exists() {
    for (p, text) in sources() {
        assert!(text.starts_with("//!"), "{} does not open with a `//!` comment", p.display());
    }
}

#[test]
fn files_stay_readable_in_size() {
    for (p, text) in sources() {
        // The ONNX schema mirror is one struct per protobuf message; splitting it would not help a reader.
        if p.ends_with("models/src/onnx/proto.rs") {
            continue;
        }
        let n = text.lines().count();
        assert!(n <= 1000, "{} has {n} lines; split it (STYLE.md: files under about 1,000 lines)", p.display());
    }
}

#[test]
fn the_ir_does_no_io_beyond_its_text_form() {
    for (p, text) in sources().into_iter().filter(|(p, _)| p.starts_with("ir")) {
        for bad in ["std::fs", "File::open", "File::create", "std::net", "std::process"] {
            assert!(!text.contains(bad), "{} uses {bad}: sovc-ir does no I/O", p.display());
        }
    }
}

#[test]
fn anyhow_stays_at_the_cli_edge() {
    for (p, text) in sources() {
        let lib = ["ir", "models", "runtime", "compiler"].iter().any(|d| p.starts_with(d));
        let edge = p.ends_with("compiler/src/cli.rs") || p.ends_with("compiler/src/main.rs");
        if lib && !edge {
            assert!(!text.contains("anyhow"), "{} uses anyhow; libraries return typed errors", p.display());
        }
    }
}
