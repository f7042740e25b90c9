//! The `cpu` target end to end: compile, load, run, compared with the reference interpreter; identical
//! results at every thread count; byte-identical rebuilds; and artifacts that are wrong in any way end in
//! a clear error, never a panic.

use sovc_compiler::compile::{compile, CompileOptions};
use sovc_ir::{Model, Tensor};
use sovc_runtime::artifact::{Artifact, ArtifactBuilder};
use sovc_runtime::{Device, Session};
use std::collections::BTreeMap;

fn cpu() -> CompileOptions {
    CompileOptions { target: "cpu".into(), optimize: true }
}

fn feeds_for(m: &Model, seed: u64) -> BTreeMap<String, Tensor> {
    m.graph
        .inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let shape = m.graph.ty(x.value).shape.as_consts().expect("static input");
            let n = shape.iter().product();
            let v = sovc_models::builtin::det_values(n, seed + i as u64, 2.0);
            (x.name.clone(), Tensor::from_vec(&shape, v).expect("shape"))
        })
        .collect()
}

/// Runs `m` compiled for cpu at `threads` and on the interpreter; returns the worst difference relative
/// to each output's largest magnitude (at least 1).
fn cpu_vs_interpreter(m: &Model, feeds: &BTreeMap<String, Tensor>, threads: usize) -> (f64, BTreeMap<String, Tensor>) {
    let bytes = compile(m, &cpu()).expect("compiles for cpu").bytes;
    let a = Artifact::from_bytes(&bytes).expect("valid artifact");
    let s = Session::with_threads(&a, Device::Cpu, threads).expect("loads on the cpu device");
    let got = s.run(feeds).expect("runs");
    let want = sovc_ir::interp::run(&m.graph, &m.weights, feeds).expect("interpreter runs");
    let mut worst = 0f64;
    for (name, w) in &want {
        let g = &got[name];
        let scale = w.to_f64_vec().iter().fold(1f64, |a, x| a.max(x.abs()));
        worst = worst.max(sovc_tests::max_abs_diff(g, w) / scale);
    }
    (worst, got)
}

#[test]
fn builtin_models_match_the_interpreter() {
    for (name, m) in [
        ("mlp", sovc_models::builtin::mlp()),
        ("encoder_layer", sovc_models::builtin::encoder_layer(16, 64, 4)),
        ("decoder_layer", sovc_models::builtin::decoder_layer(16, 64, 4)),
        ("bert", sovc_models::builtin::bert(2, 32, 64, 4)),
        ("matmul", sovc_models::builtin::matmul(37, 70, 45)),
    ] {
        let mut m = m;
        if name == "mlp" {
            let mut opts = sovc_models::onnx::ImportOptions::default();
            opts.shapes.insert("x".into(), vec![5, 64]);
            m = sovc_models::load_model(std::path::Path::new("builtin:mlp"), &opts).expect("fixes the batch");
        }
        let feeds = feeds_for(&m, 7);
        let (err, _) = cpu_vs_interpreter(&m, &feeds, 2);
        assert!(err < 1e-5, "{name}: cpu differs from the interpreter by {err:e}");
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let m = sovc_models::builtin::encoder_layer(24, 64, 4);
    let feeds = feeds_for(&m, 3);
    let (_, one) = cpu_vs_interpreter(&m, &feeds, 1);
    for threads in [2, 3] {
        let (_, other) = cpu_vs_interpreter(&m, &feeds, threads);
        for (name, t) in &one {
            assert_eq!(t.to_f64_vec(), other[name].to_f64_vec(), "{name} differs at {threads} threads");
        }
    }
}

#[test]
fn compiling_twice_or_on_another_thread_gives_identical_bytes() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let a = compile(&m, &cpu()).unwrap().bytes;
    let b = compile(&m, &cpu()).unwrap().bytes;
    let m2 = m.clone();
    let c = std::thread::spawn(move || compile(&m2, &cpu()).unwrap().bytes).join().unwrap();
    assert!(a == b && b == c, "cpu artifacts differ between compilations");
}

#[test]
fn every_real_model_compiles_for_cpu_and_matches_the_interpreter() {
    let root = sovc_tests::generated_models();
    if !sovc_tests::require_generated(&root) {
        return;
    }
    for name in [
        "resnet18",
        "mobilenet_v2",
        "squeezenet1_1",
        "efficientnet_b0",
        "bert_encoder",
        "gpt2_decoder",
        "resnet50",
        "inception_v3",
    ] {
        let dir = root.join(name);
        assert!(sovc_tests::require_generated(&dir));
        let m = sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports");
        let feeds = sovc_runtime::read_npy_dir(&dir, "input.").expect("inputs");
        let (err, _) = cpu_vs_interpreter(&m, &feeds, 2);
        eprintln!("{name}: cpu vs interpreter {err:.2e} (relative to the largest output)");
        assert!(err < 1e-4, "{name}: cpu differs from the interpreter by {err:e}");
    }
}

fn rebuild_with_program(bytes: &[u8], edit: &dyn Fn(&mut serde_json::Value)) -> Vec<u8> {
    let a = Artifact::from_bytes(bytes).unwrap();
    let mut b = ArtifactBuilder::new();
    for s in &a.sections {
        let mut data = s.data.clone();
        if s.name == "cpu.program" {
            let mut v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            edit(&mut v);
            data = serde_json::to_vec(&v).unwrap();
        }
        b.section(s.kind, s.name.clone(), data);
    }
    b.build()
}

fn cpu_error(bytes: &[u8]) -> String {
    let a = Artifact::from_bytes(bytes).expect("the container itself is valid");
    match Session::with_threads(&a, Device::Cpu, 2) {
        Ok(_) => panic!("a bad cpu program was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_cpu_programs_are_refused_with_clear_errors() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let bytes = compile(&m, &cpu()).unwrap().bytes;
    // A null artifact has no cpu code.
    let null = compile(&m, &CompileOptions { target: "null".into(), optimize: true }).unwrap().bytes;
    let e = cpu_error(&null);
    assert!(e.contains("cpu"), "{e}");
    // Code for another architecture, a feature this machine lacks.
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| p["arch"] = "riscv64".into()));
    assert!(e.contains("riscv64"), "{e}");
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| p["features"] = serde_json::json!(["quantum"])));
    assert!(e.contains("quantum"), "{e}");
    // Slots, functions and operands outside their memory.
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| p["arena_bytes"] = 16.into()));
    assert!(e.contains("does not fit"), "{e}");
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| p["functions"][0]["offset"] = 1_000_000_000u64.into()));
    assert!(e.contains("outside the code"), "{e}");
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| {
        let steps = p["steps"].as_array_mut().unwrap();
        let gemm = steps.iter_mut().find(|s| s.get("Gemm").is_some()).expect("a gemm step");
        gemm["Gemm"]["m"] = 100_000.into();
    }));
    assert!(e.contains("outside its buffer"), "{e}");
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| p["slots"] = serde_json::json!([])));
    assert!(e.contains("slots"), "{e}");
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| p["steps"] = serde_json::json!("nonsense")));
    assert!(e.contains("cpu.program"), "{e}");
    // A corrupted code byte fails the artifact's hash check before anything runs.
    let a = Artifact::from_bytes(&bytes).unwrap();
    let code = a.sections.iter().find(|s| s.name == "cpu.code").unwrap();
    let mut bad = bytes.clone();
    bad[code.offset as usize + 3] ^= 0x40;
    assert!(Artifact::from_bytes(&bad).is_err());
    // Wrong inputs at run time.
    let s = Session::with_threads(&a, Device::Cpu, 1).unwrap();
    let mut feeds = feeds_for(&m, 1);
    feeds.insert("x".into(), Tensor::from_vec(&[2, 2], vec![0f32; 4]).unwrap());
    let e = s.run(&feeds).expect_err("wrong shape refused").to_string();
    assert!(e.contains("input `x`"), "{e}");
}

#[test]
fn symbolic_shapes_ask_for_shape() {
    let e = compile(&sovc_models::builtin::mlp(), &cpu()).err().expect("refused").to_string();
    assert!(e.contains("--shape x="), "{e}");
}
