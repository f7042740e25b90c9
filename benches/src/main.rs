//! Benchmarks sovc against a peer measured in the same run and prints the ratio.
//!
//! Today the only executor is the reference interpreter, so this measures how far the *oracle* is from
//! onnxruntime on the exported real models (1 thread each). It is a baseline that the compiled targets
//! will be measured against with the same harness, not a claim of speed.
//!
//! Run: `cargo run --release -p sovc-benches [-- ITERS]` after `scripts/setup-test-deps.sh`.

use std::path::Path;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn sovc_ms(dir: &Path, iters: usize) -> Result<f64, String> {
    let m = sovc_models::onnx::import_file(&dir.join("model.onnx"), &Default::default()).map_err(|e| e.to_string())?;
    let feeds = sovc_runtime::read_npy_dir(dir, "input.").map_err(|e| e.to_string())?;
    sovc_ir::interp::run(&m.graph, &m.weights, &feeds).map_err(|e| e.to_string())?;
    let times = (0..iters)
        .map(|_| {
            let t = Instant::now();
            sovc_ir::interp::run(&m.graph, &m.weights, &feeds).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(median(times))
}

fn ort_ms(root: &Path, dir: &Path, iters: usize) -> Result<f64, String> {
    let out = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("benches/ort_peer.py"))
        .arg(dir)
        .arg(iters.to_string())
        .arg("1")
        .output()
        .map_err(|e| format!("cannot start the onnxruntime peer: {e} (run scripts/setup-test-deps.sh)"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let v = s.split("\"median_ms\": ").nth(1).and_then(|r| r.split([',', '}']).next()).ok_or("bad peer output")?;
    v.trim().parse().map_err(|_| format!("bad peer output: {s}"))
}

fn main() {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let models = root.join("tests/data/generated/models");
    println!("{:<18} {:>14} {:>16} {:>14}", "model (1 thread)", "sovc interp ms", "onnxruntime ms", "sovc / ort");
    for name in ["resnet18", "mobilenet_v2", "squeezenet1_1", "efficientnet_b0", "bert_encoder", "gpt2_decoder"] {
        let dir = models.join(name);
        if !dir.exists() {
            eprintln!("{name}: missing, run scripts/setup-test-deps.sh");
            continue;
        }
        match (sovc_ms(&dir, iters), ort_ms(&root, &dir, iters)) {
            (Ok(s), Ok(o)) => println!("{name:<18} {s:>14.2} {o:>16.2} {:>13.1}x", s / o),
            (Err(e), _) | (_, Err(e)) => eprintln!("{name}: {e}"),
        }
    }
}
