//! The `cpu` target end to end: compile, load, run, compared with the reference interpreter; identical
//! results at every thread count; byte-identical rebuilds; and artifacts that are wrong in any way end in
//! a clear error, never a panic.

use sovc_compiler::compile::{compile, CompileOptions};
use sovc_ir::{Model, Tensor};
use sovc_runtime::artifact::{Artifact, ArtifactBuilder};
use sovc_runtime::{Device, Session};
use std::collections::BTreeMap;

fn cpu() -> CompileOptions {
    CompileOptions { target: "cpu".into(), optimize: true, ..Default::default() }
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
        // The audit covers every kernel of the artifact.
        let a = Artifact::from_bytes(&compile(&m, &cpu()).expect("compiles").bytes).expect("valid");
        let plan = a.plan().expect("plan parses").expect("a plan");
        let audit = sovc_compiler::cli::audit_text(&a, &plan);
        assert_eq!(audit.matches("\n  runs as ").count(), plan.kernels.len(), "{name}: {audit}");
        assert!(audit.contains("root sha256") && audit.contains("activation memory"), "{name}");
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
    let null =
        compile(&m, &CompileOptions { target: "null".into(), optimize: true, ..Default::default() }).unwrap().bytes;
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

/// Small graphs in the IR's text form, compiled for cpu and compared with the interpreter.
fn cpu_matches_text(name: &str, text: &str) {
    let g = sovc_ir::text::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let m = Model { graph: g, weights: Default::default() };
    let feeds = feeds_for(&m, 9);
    let (err, _) = cpu_vs_interpreter(&m, &feeds, 2);
    assert!(err < 1e-6, "{name}: cpu differs from the interpreter by {err:e}");
}

#[test]
fn review_cases_match_the_interpreter() {
    // A constant that is also an output, and a value used under two output names.
    cpu_matches_text(
        "constant output",
        "sov 1\ninput %0 \"x\": f32[2]\nconst %1 \"c\": f32[2] = [3.0, 4.0]\n%2: f32[2] = add(%0, %1) \"y\"\n\
         output \"y\" = %2\noutput \"c\" = %1\noutput \"y2\" = %2\noutput \"x\" = %0",
    );
    // Concat then reshape in one group.
    cpu_matches_text(
        "concat + reshape",
        "sov 1\ninput %0 \"a\": f32[2,3]\ninput %1 \"b\": f32[2,3]\n%2: f32[2,6] = concat(%0, %1) {axis=1} \"c\"\n\
         %3: f32[3,4] = reshape(%2) {shape=shape[3,4]} \"r\"\noutput \"y\" = %3",
    );
    // Slices with negative starts and steps.
    cpu_matches_text(
        "slice",
        "sov 1\ninput %0 \"x\": f32[4,8]\n%1: f32[3,3] = slice(%0) {starts=[1, -3], ends=[4, 8], steps=[1, 1]} \"s\"\n\
         %2: f32[3,8] = slice(%0) {starts=[-1, 0], ends=[0, 8], steps=[-1, 1]} \"t\"\noutput \"y\" = %1\noutput \"z\" = %2",
    );
    // Depthwise convolution (strided, dilated, asymmetric padding) and pooling with ceil_mode: loops
    // split around their padding guards.
    cpu_matches_text(
        "depthwise",
        "sov 1\ninput %0 \"x\": f32[1,3,7,6]\nconst %1 \"w\": f32[3,1,3,3] = [0.5, -1.0, 2.0, 0.25, 1.5, -0.5, 1.0, 0.75, -2.0, \
         0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, -0.1, -0.2, -0.3, -0.4, -0.5, -0.6, -0.7, -0.8, -0.9]\n\
         const %2 \"b\": f32[3] = [1.0, -1.0, 0.5]\n\
         %3: f32[1,3,4,4] = conv(%0, %1, %2) {strides=[2, 1], pads=[1, 0, 1, 2], dilations=[1, 2], group=3} \"c\"\n\
         %4: f32[1,3,2,2] = max_pool(%3) {kernel=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1], ceil_mode=1} \"p\"\n\
         output \"y\" = %3\noutput \"z\" = %4",
    );
    // A reduce with no axes reduces nothing.
    cpu_matches_text(
        "reduce no axes",
        "sov 1\ninput %0 \"x\": f32[1,2]\n%1: f32[1,2] = reduce(%0) {kind=\"sum\", axes=[], keepdims=1} \"r\"\n\
         output \"y\" = %1",
    );
}

#[test]
fn one_session_runs_on_several_threads_at_once() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let a = Artifact::from_bytes(&compile(&m, &cpu()).unwrap().bytes).unwrap();
    let s = Session::with_threads(&a, Device::Cpu, 2).unwrap();
    let feeds = feeds_for(&m, 4);
    let want = s.run(&feeds).unwrap();
    std::thread::scope(|sc| {
        let runs: Vec<_> =
            (0..3).map(|_| sc.spawn(|| (0..5).map(|_| s.run(&feeds).unwrap()).collect::<Vec<_>>())).collect();
        for r in runs {
            for got in r.join().unwrap() {
                assert_eq!(got["y"].to_f64_vec(), want["y"].to_f64_vec());
            }
        }
    });
}

#[test]
fn crafted_programs_cannot_reach_outside_their_memory() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let bytes = compile(&m, &cpu()).unwrap().bytes;
    let step = |p: &mut serde_json::Value, kind: &str| -> serde_json::Value {
        p["steps"].as_array().unwrap().iter().find(|s| s.get(kind).is_some()).expect("a step of that kind")[kind]
            .clone()
    };
    let set_step = |p: &mut serde_json::Value, kind: &str, v: serde_json::Value| {
        let s = p["steps"].as_array_mut().unwrap().iter_mut().find(|s| s.get(kind).is_some()).unwrap();
        s[kind] = v;
    };
    // Sizes whose products would wrap, hidden behind zero strides.
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| {
        let mut g = step(p, "Gemm");
        g["k"] = (1u64 << 59).into();
        g["a"]["cols"] = 0.into();
        g["b"]["rows"] = 0.into();
        set_step(p, "Gemm", g);
    }));
    assert!(e.contains("out of range"), "{e}");
    // A loop over more iterations than its code was generated for.
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| {
        let mut l = step(p, "Loop");
        l["extent"] = (1u64 << 30).into();
        set_step(p, "Loop", l);
    }));
    assert!(e.contains("generated for"), "{e}");
    // A product that writes a graph input or a weight.
    let e = cpu_error(&rebuild_with_program(&bytes, &|p| {
        let mut g = step(p, "Gemm");
        let a = g["a"]["buf"].clone();
        g["c"]["buf"] = a;
        set_step(p, "Gemm", g);
    }));
    assert!(e.contains("not an activation") || e.contains("also an operand") || e.contains("outside"), "{e}");
}
