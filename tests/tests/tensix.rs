//! The Tensix target on the simulator: each program template on small graphs (shapes that are and are
//! not multiples of the tile), then whole models, compared with the reference interpreter by PCC and
//! largest error; planted protocol errors (CB deadlock, missing barrier, L1 overflow) are reported
//! with clear messages.

use sovc_compiler::compile::{compile, CompileOptions, TensixOptions};
use sovc_compiler::tensix_report::compare;
use sovc_ir::{BinaryOp, DType, GeluApprox, Graph, Model, Op, Shape, Tensor, TensorType, UnaryOp, ValueId, Weights};
use sovc_runtime::{Artifact, Device, Session};
use std::collections::BTreeMap;

fn ty(d: &[usize]) -> TensorType {
    TensorType::new(DType::F32, Shape::from_consts(d))
}

fn vals(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    sovc_models::builtin::det_values(n, seed, scale)
}

struct G {
    g: Graph,
    w: Weights,
    seed: u64,
}

impl G {
    fn new() -> G {
        G { g: Graph::new(), w: Weights::default(), seed: 7 }
    }
    fn input(&mut self, name: &str, d: &[usize]) -> ValueId {
        self.g.add_input(name, ty(d))
    }
    fn weight(&mut self, name: &str, d: &[usize], scale: f32) -> ValueId {
        self.seed += 1;
        let t = Tensor::from_vec(d, vals(d.iter().product(), self.seed, scale)).expect("len");
        let r = sovc_ir::WeightRef { file: "t".into(), key: name.into() };
        self.w.insert(r.clone(), t);
        self.g.add_const(name, ty(d), sovc_ir::ConstData::Weight(r))
    }
    fn scalar(&mut self, name: &str, v: f32) -> ValueId {
        self.g.add_inline(name, Tensor::from_vec(&[1], vec![v]).expect("len"))
    }
    fn op(&mut self, op: Op, ins: &[ValueId]) -> ValueId {
        let n = format!("n{}", self.g.nodes.len());
        self.g.add_node(op, ins, n).expect("well-typed")[0]
    }
    fn model(mut self, out: ValueId) -> Model {
        self.g.add_output("y", out);
        Model { graph: self.g, weights: self.w }
    }
}

fn inputs(m: &Model) -> BTreeMap<String, Tensor> {
    m.graph
        .inputs
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let d = m.graph.ty(x.value).shape.as_consts().expect("static");
            (x.name.clone(), Tensor::from_vec(&d, vals(d.iter().product(), 100 + i as u64, 1.0)).expect("len"))
        })
        .collect()
}

fn run_on(m: &Model, target: &str, tensix: TensixOptions) -> (f64, f64, String) {
    let opts = CompileOptions { target: target.into(), optimize: true, tensix };
    let bytes = compile(m, &opts).unwrap_or_else(|e| panic!("compile: {e}")).bytes;
    let a = Artifact::from_bytes(&bytes).expect("artifact");
    let feeds = inputs(m);
    let got = Session::new(&a, Device::TensixSim).expect("session").run(&feeds).unwrap_or_else(|e| panic!("run: {e}"));
    let want = Session::new(&a, Device::Reference).expect("session").run(&feeds).expect("reference");
    let (err, pcc) = compare(&got["y"], &want["y"]);
    let plan = String::from_utf8(a.section(sovc_runtime::SectionKind::Plan).expect("plan").data.clone()).expect("utf8");
    (err, pcc, plan)
}

fn check(m: &Model, what: &str, min_pcc: f64) -> String {
    let (err, pcc, plan) = run_on(m, "blackhole", TensixOptions::default());
    eprintln!("{what}: max abs error {err:.3e}, PCC {pcc:.6}");
    assert!(pcc >= min_pcc, "{what}: PCC {pcc} < {min_pcc} (max abs error {err})");
    plan
}

#[test]
fn eltwise_chains_with_broadcast() {
    for d in [[2usize, 40, 72], [1, 64, 64]] {
        let mut g = G::new();
        let x = g.input("x", &d);
        let z = g.input("z", &d);
        let b = g.weight("b", &[d[2]], 1.0);
        let col = g.weight("c", &[d[1], 1], 1.0);
        let k = g.scalar("k", 0.5);
        let h = g.op(Op::Binary(BinaryOp::Add), &[x, b]);
        let h = g.op(Op::Binary(BinaryOp::Mul), &[h, k]);
        let h = g.op(Op::Gelu { approximate: GeluApprox::None }, &[h]);
        let h2 = g.op(Op::Binary(BinaryOp::Sub), &[h, col]);
        let e = g.op(Op::Unary(UnaryOp::Exp), &[z]);
        let h3 = g.op(Op::Binary(BinaryOp::Mul), &[h2, e]);
        let y = g.op(Op::Binary(BinaryOp::Add), &[h3, h]);
        let plan = check(&g.model(y), &format!("eltwise {d:?}"), 0.9999);
        assert!(plan.contains("tensix eltwise"), "{plan}");
    }
}

#[test]
fn matmul_with_epilogue_and_odd_shapes() {
    for (m, k, n, batch) in [(64usize, 96, 128, 1usize), (40, 50, 70, 2), (128, 256, 256, 1)] {
        let mut g = G::new();
        let x = g.input("x", &[batch, m, k]);
        let w = g.weight("w", &[k, n], 0.2);
        let b = g.weight("b", &[n], 0.5);
        let r = g.input("r", &[batch, m, n]);
        let h = g.op(Op::MatMul {}, &[x, w]);
        let h = g.op(Op::Binary(BinaryOp::Add), &[h, b]);
        let h = g.op(Op::Unary(UnaryOp::Relu), &[h]);
        // The residual first: the chain's result lands in the operand's Dst tile, not the product's.
        let y = g.op(Op::Binary(BinaryOp::Add), &[r, h]);
        let plan = check(&g.model(y), &format!("matmul {batch}x{m}x{k}x{n}"), 0.9999);
        assert!(plan.contains("tensix matmul"), "{plan}");
    }
}

#[test]
fn batched_matmul_of_activations() {
    let mut g = G::new();
    let a = g.input("a", &[3, 48, 64]);
    let b = g.input("b", &[3, 64, 40]);
    let y = g.op(Op::MatMul {}, &[a, b]);
    check(&g.model(y), "batched matmul", 0.9999);
}

#[test]
fn softmax_and_layer_norm_rows() {
    for d in [[2usize, 40, 100], [1, 32, 128]] {
        let mut g = G::new();
        let x = g.input("x", &d);
        let y = g.op(Op::Softmax { axis: 2 }, &[x]);
        let plan = check(&g.model(y), &format!("softmax {d:?}"), 0.9999);
        assert!(plan.contains("tensix softmax"), "{plan}");
        let mut g = G::new();
        let x = g.input("x", &d);
        let s = g.weight("s", &[d[2]], 1.0);
        let b = g.weight("b", &[d[2]], 1.0);
        let y = g.op(Op::LayerNorm { axis: 2, epsilon: 1e-5 }, &[x, s, b]);
        let plan = check(&g.model(y), &format!("layer norm {d:?}"), 0.9999);
        assert!(plan.contains("tensix layer_norm"), "{plan}");
    }
}

#[test]
fn attention_with_and_without_mask() {
    for (sq, sk, d, mask) in [(64usize, 64usize, 64usize, false), (40, 50, 24, true)] {
        let mut g = G::new();
        let q = g.input("q", &[2, 3, sq, d]);
        let k = g.input("k", &[2, 3, sk, d]);
        let v = g.input("v", &[2, 3, sk, d]);
        let mut ins = vec![q, k, v];
        if mask {
            ins.push(g.weight("m", &[1, 1, sq, sk], 2.0));
        }
        if sq == 64 {
            // A BERT-style padding mask: one row broadcast to every query, the largest f32 negated on
            // masked keys (it becomes -inf in bf16).
            let mut mv = vec![0f32; sk];
            mv[sk - 5..].fill(-f32::MAX);
            let t = Tensor::from_vec(&[1, 1, 1, sk], mv).expect("len");
            let r = sovc_ir::WeightRef { file: "t".into(), key: "pad".into() };
            g.w.insert(r.clone(), t);
            ins.push(g.g.add_const("pad", ty(&[1, 1, 1, sk]), sovc_ir::ConstData::Weight(r)));
        }
        let y = g.op(Op::Attention { scale: 1.0 / (d as f32).sqrt() }, &ins);
        let plan = check(&g.model(y), &format!("attention {sq}x{sk}x{d} mask {mask}"), 0.9999);
        assert!(plan.contains("tensix attention"), "{plan}");
    }
}

#[test]
fn encoder_layer_on_blackhole_and_wormhole() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    for t in ["blackhole", "wormhole_b0"] {
        let (err, pcc, _) = run_on(&m, t, TensixOptions::default());
        eprintln!("encoder layer on {t}: max abs error {err:.3e}, PCC {pcc:.6}");
        assert!(pcc >= 0.999, "{t}: PCC {pcc}");
    }
}

#[test]
#[ignore]
fn debug_first_divergence() {
    let p = std::env::var("MODEL").expect("MODEL=path/model.onnx");
    let m = sovc_models::load_model(std::path::Path::new(&p), &Default::default()).unwrap();
    let opts = CompileOptions { target: "blackhole".into(), optimize: true, tensix: TensixOptions::default() };
    let a = Artifact::from_bytes(&compile(&m, &opts).unwrap().bytes).unwrap();
    let feeds = sovc_runtime::read_npy_dir(std::path::Path::new(&p).parent().unwrap(), "input.").unwrap();
    let s = Session::new(&a, Device::TensixSim).unwrap();
    let want = s.reference_values(&feeds).unwrap();
    let mut shown = 0;
    let outs = s
        .tensix_model()
        .unwrap()
        .run_watched(&feeds, &mut |step, v, t| {
            let (e, p) = compare(t, &want[&v]);
            if p < 0.9999 && shown < 10 {
                shown += 1;
                eprintln!("step {step} wrote %{v} {:?}: err {e:.3e} pcc {p:.6}", t.shape());
            }
        })
        .unwrap();
    for o in &s.graph().outputs {
        let (e, p) = compare(&outs[&o.name], &want[&o.value.index()]);
        eprintln!("output {} %{}: err {e:.3e} pcc {p:.6}", o.name, o.value.0);
    }
}

#[test]
#[ignore]
fn debug_encoder_intermediates() {
    let mut m = match std::env::var("MODEL") {
        Ok(p) => sovc_models::load_model(std::path::Path::new(&p), &Default::default()).unwrap(),
        Err(_) => sovc_models::builtin::encoder_layer(16, 64, 4),
    };
    let names: Vec<(String, ValueId)> = m.graph.nodes.iter().map(|n| (n.name.clone(), n.outputs[0])).collect();
    let only = std::env::var("ONLY").unwrap_or_default();
    for (n, v) in &names {
        if only == "all" || only.split(',').any(|o| o == n) {
            if !m.graph.outputs.iter().any(|o| o.value == *v) {
                m.graph.add_output(format!("o_{}_{n}", v.0), *v);
            }
        }
    }
    let opts = CompileOptions { target: "blackhole".into(), optimize: true, tensix: TensixOptions::default() };
    let bytes = compile(&m, &opts).unwrap().bytes;
    let a = Artifact::from_bytes(&bytes).unwrap();
    let feeds = match std::env::var("MODEL") {
        Ok(p) => sovc_runtime::read_npy_dir(std::path::Path::new(&p).parent().unwrap(), "input.").unwrap(),
        Err(_) => inputs(&m),
    };
    let got = Session::new(&a, Device::TensixSim).unwrap().run(&feeds).unwrap();
    let want = Session::new(&a, Device::Reference).unwrap().run(&feeds).unwrap();
    for k in got.keys() {
        let n = k;
        if let (Some(x), Some(y)) = (got.get(k), want.get(k)) {
            let (e, p) = compare(x, y);
            eprintln!("{n}: err {e:.3e} pcc {p:.6}");
        }
    }
}

/// The encoder layer compiled for blackhole, with `edit` applied to its plan's JSON.
fn edited_encoder(edit: &dyn Fn(&mut serde_json::Value)) -> Artifact {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let opts = CompileOptions { target: "blackhole".into(), optimize: true, tensix: TensixOptions::default() };
    let a = Artifact::from_bytes(&compile(&m, &opts).expect("compiles").bytes).expect("artifact");
    let mut b = sovc_runtime::ArtifactBuilder::new();
    for s in &a.sections {
        let mut data = s.data.clone();
        if s.name == "tensix.plan" {
            let mut v: serde_json::Value = serde_json::from_slice(&data).expect("json");
            edit(&mut v);
            data = serde_json::to_vec(&v).expect("json");
        }
        b.section(s.kind, s.name.clone(), data);
    }
    Artifact::from_bytes(&b.build()).expect("artifact")
}

/// Removes from the reader of the first matmul program every op matching `pred` (searching loops).
fn drop_reader_ops(v: &mut serde_json::Value, pred: &dyn Fn(&serde_json::Value) -> bool) {
    fn walk(ops: &mut Vec<serde_json::Value>, pred: &dyn Fn(&serde_json::Value) -> bool) {
        ops.retain(|o| !pred(o));
        for o in ops.iter_mut() {
            if let Some(body) = o.get_mut("Loop").and_then(|l| l.get_mut("body")).and_then(|b| b.as_array_mut()) {
                walk(body, pred);
            }
        }
    }
    let steps = v["steps"].as_array_mut().expect("steps");
    let p = steps
        .iter_mut()
        .find_map(|s| s.get_mut("Device").filter(|p| p["template"] == "matmul"))
        .expect("a matmul program");
    walk(p["reader"].as_array_mut().expect("reader"), pred);
}

fn sim_error(a: &Artifact) -> String {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let s = Session::new(a, Device::TensixSim).expect("the plan passes the static checks");
    format!("{}", s.run(&inputs(&m)).expect_err("the planted error is caught"))
}

#[test]
fn planted_cb_deadlock_is_reported_with_core_kernel_and_cb() {
    // The reader never pushes its A tiles: compute waits on CB 0 forever.
    let a = edited_encoder(&|v| drop_reader_ops(v, &|o| o.get("Push").is_some_and(|p| p["cb"] == 0)));
    let e = sim_error(&a);
    eprintln!("{e}");
    assert!(e.contains("deadlock") && e.contains("core (0,0)"), "{e}");
    assert!(e.contains("compute kernel blocked in cb_wait_front") && e.contains("CB 0"), "{e}");
    assert!(e.contains("program `k0000_matmul`"), "{e}");
}

#[test]
fn planted_missing_read_barrier_is_a_protocol_violation() {
    let a = edited_encoder(&|v| drop_reader_ops(v, &|o| o == "ReadBarrier"));
    let e = sim_error(&a);
    eprintln!("{e}");
    assert!(e.contains("reader kernel") && e.contains("NoC read into it is in flight"), "{e}");
}

#[test]
fn planted_l1_overflow_is_a_compile_error_with_the_uses() {
    let d = std::env::temp_dir().join(format!("sovc-tensix-l1-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("dir");
    let mut desc = sovc_target_tensix::devices::builtin("blackhole").expect("built in");
    desc.l1_bytes = desc.l1_unreserved_base + 20 * 1024;
    let path = d.join("small_l1.json");
    std::fs::write(&path, serde_json::to_string(&desc).expect("json")).expect("write");
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let tensix = TensixOptions { system_desc: Some(path.to_string_lossy().into()), ..Default::default() };
    let e = compile(&m, &CompileOptions { target: "blackhole".into(), optimize: true, tensix }).err().expect("too big");
    let e = e.to_string();
    eprintln!("{e}");
    assert!(e.contains("B of L1 per core") && e.contains("B over"), "{e}");
    assert!(e.contains("CB 0 (in0 (A)"), "{e}");
    // A description of the other architecture is refused.
    let tensix = TensixOptions { system_desc: Some(path.to_string_lossy().into()), ..Default::default() };
    let e = compile(&m, &CompileOptions { target: "wormhole_b0".into(), optimize: true, tensix }).err().expect("arch");
    assert!(e.to_string().contains("describes a `blackhole` device"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}
