//! The optimizer on whole models: e-nodes, iterations, stop reason, optimization wall time and the
//! estimated cost before and after, per model. Models given as primitives (as exporters emit them):
//! the exported ONNX models when present (`scripts/setup-test-deps.sh`), and, built in code and then
//! decomposed into primitives, a 12-layer BERT-base encoder (hidden 768, sequence 128) and a NAS-RNN cell.
//!
//! Run: `cargo run --release -p sovc-benches --bin optimizer [-- --target blackhole]`.

use sovc_compiler::opt::{optimize, OptOptions, TargetDesc};
use sovc_ir::Model;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.iter().position(|a| a == "--target").and_then(|i| args.get(i + 1)).map_or("cpu", |s| s.as_str());
    let desc = TargetDesc::by_name(target).unwrap_or_else(|| panic!("unknown target {target}"));
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("root").join("tests/data/generated/models");
    let mut models: Vec<(String, Model)> = Vec::new();
    let decomposed = |m: Model| Model {
        graph: sovc_ir::decompose::decompose_all(&m.graph).expect("decomposes"),
        weights: m.weights,
    };
    models.push(("bert-base (12x768, built)".into(), decomposed(sovc_models::builtin::bert(12, 128, 768, 12))));
    models.push(("nasrnn (4 steps x 512)".into(), decomposed(sovc_models::builtin::nasrnn(4, 512))));
    for name in [
        "bert_encoder",
        "gpt2_decoder",
        "resnet18",
        "resnet50",
        "squeezenet1_1",
        "inception_v3",
        "mobilenet_v2",
        "efficientnet_b0",
    ] {
        let p = root.join(name).join("model.onnx");
        if !p.exists() {
            eprintln!("{name}: not exported, skipped (run scripts/setup-test-deps.sh)");
            continue;
        }
        models.push((name.into(), sovc_models::onnx::import_file(&p, &Default::default()).expect("imports")));
    }
    println!("target {target} ({})", desc.source);
    println!(
        "{:<26} {:>6} {:>6} {:>8} {:>5} {:>9} {:>12} {:>12}  stop",
        "model", "nodes", "after", "e-nodes", "iters", "opt ms", "cost us", "after us"
    );
    for (name, m) in &models {
        let t = Instant::now();
        let r = optimize(&m.graph, &m.weights, &OptOptions { target: desc.clone(), ..OptOptions::default() })
            .expect("optimizes");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let rep = &r.report;
        println!(
            "{:<26} {:>6} {:>6} {:>8} {:>5} {:>9.1} {:>12.1} {:>12.1}  {}",
            name,
            rep.nodes_before,
            rep.nodes_after,
            rep.enodes,
            rep.iterations,
            ms,
            rep.cost_before * 1e6,
            rep.cost_after * 1e6,
            rep.stop
        );
    }
}
