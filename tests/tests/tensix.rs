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
    let opts = CompileOptions { target: target.into(), tensix, ..Default::default() };
    let bytes = compile(m, &opts).unwrap_or_else(|e| panic!("compile: {e}")).bytes;
    let a = Artifact::from_bytes(&bytes).expect("artifact");
    let feeds = inputs(m);
    let got = Session::new(&a, Device::TensixSim).expect("session").run(&feeds).unwrap_or_else(|e| panic!("run: {e}"));
    let want = Session::new(&a, Device::Reference).expect("session").run(&feeds).expect("reference");
    let (err, pcc) = compare(&got["y"], &want["y"]);
    let plan = String::from_utf8(a.section(sovc_runtime::SectionKind::Plan).expect("plan").data.clone()).expect("utf8");
    (err, pcc, plan)
}

/// Runs `m` in both precisions (FP32, the default, and bf16) and returns the default's kernel plan.
fn check(m: &Model, what: &str, min_pcc: f64) -> String {
    let mut plan = String::new();
    for precision in ["fp32", "bf16"] {
        let opts = TensixOptions { precision: Some(precision.into()), ..Default::default() };
        let (err, pcc, p) = run_on(m, "blackhole", opts);
        eprintln!("{what}, {precision}: max abs error {err:.3e}, PCC {pcc:.6}");
        assert!(pcc >= min_pcc, "{what}, {precision}: PCC {pcc} < {min_pcc} (max abs error {err})");
        if plan.is_empty() {
            plan = p;
        }
    }
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

/// The plan of `m` compiled for blackhole with `tensix`.
fn plan_of(m: &Model, tensix: TensixOptions) -> (Artifact, sovc_runtime::tensix::program::Plan) {
    let opts = CompileOptions { target: "blackhole".into(), tensix, ..Default::default() };
    let a =
        Artifact::from_bytes(&compile(m, &opts).unwrap_or_else(|e| panic!("compile: {e}")).bytes).expect("artifact");
    let s = a.sections.iter().find(|s| s.name == "tensix.plan").expect("plan section");
    let plan = serde_json::from_slice(&s.data).expect("plan parses");
    (a, plan)
}

#[test]
fn matmuls_share_operands_across_the_grid_with_the_same_results() {
    // 7 x 10 x 8 tiles (ragged) and 12 x 8 x 16 tiles: a column of 7 cores (A read once per row), and a
    // grid with both A and B multicast.
    for (m, k, n) in [(200usize, 300, 250), (384, 256, 512)] {
        let mut g = G::new();
        let x = g.input("x", &[m, k]);
        let w = g.weight("w", &[k, n], 0.2);
        let y = g.op(Op::MatMul {}, &[x, w]);
        let model = g.model(y);
        for precision in ["fp32", "bf16"] {
            let opts =
                |no_multicast| TensixOptions { precision: Some(precision.into()), no_multicast, ..Default::default() };
            let (shared, sp) = plan_of(&model, opts(false));
            let (alone, ap) = plan_of(&model, opts(true));
            let feeds = inputs(&model);
            let run = |a: &Artifact| Session::new(a, Device::TensixSim).expect("session").run(&feeds).expect("runs");
            let (ys, ya) = (run(&shared), run(&alone));
            // Multicast moves the same tiles to the same pages: bit-identical results.
            assert_eq!(ys["y"].to_le_bytes(), ya["y"].to_le_bytes(), "{m}x{k}x{n} {precision}");
            let want = Session::new(&shared, Device::Reference).expect("session").run(&feeds).expect("reference");
            let (err, pcc) = compare(&ys["y"], &want["y"]);
            eprintln!("multicast matmul {m}x{k}x{n} {precision}: max abs error {err:.3e}, PCC {pcc:.6}");
            assert!(pcc > 0.9999, "{pcc}");
            let prog = |p: &sovc_runtime::tensix::program::Plan| {
                p.steps
                    .iter()
                    .find_map(|s| match s {
                        sovc_runtime::tensix::program::Step::Device(p) if p.template == "matmul" => Some((**p).clone()),
                        _ => None,
                    })
                    .expect("a matmul program")
            };
            let (ps, pa) = (prog(&sp), prog(&ap));
            // FP32 precision: the activation's bf16 parts come from a split program on the SFPU; the
            // matmul's cores only read them.
            let split_step = sp
                .steps
                .iter()
                .any(|s| matches!(s, sovc_runtime::tensix::program::Step::Device(p) if p.template == "split"));
            assert_eq!(split_step, precision == "fp32");
            assert!(!format!("{:?}", ps.reader).contains("SplitTile"));
            assert!(!ps.semaphores.is_empty() && pa.semaphores.is_empty(), "{:?}", ps.notes);
            assert!(ps.notes.iter().any(|n| n.contains("multicast to")), "{:?}", ps.notes);
            // Fewer DRAM bytes with the operands shared.
            let dram = |p: &sovc_runtime::tensix::program::Plan| {
                let r = sovc_runtime::tensix::device::predict(p).expect("predicts");
                let mm = r.programs.iter().find(|p| p.template == "matmul").expect("a matmul program");
                (mm.dram_bytes, mm.mcast_bytes)
            };
            let ((ds, ms), (da, ma)) = (dram(&sp), dram(&ap));
            eprintln!("  DRAM bytes {ds} shared vs {da} alone; {ms} multicast");
            assert!(ds < da && ms > 0 && ma == 0, "{ds} {da} {ms} {ma}");
        }
    }
}

/// The first program of a plan's JSON whose cores share operands (it has semaphores).
fn mcast_program(v: &mut serde_json::Value) -> &mut serde_json::Value {
    let steps = v["steps"].as_array_mut().expect("steps");
    steps
        .iter_mut()
        .find_map(|s| s.get_mut("Device").filter(|p| p["semaphores"].as_array().is_some_and(|s| !s.is_empty())))
        .expect("a multicast program")
}

#[test]
fn planted_multicast_before_the_receivers_are_ready_is_caught() {
    // The A sender no longer waits for its receivers' ready semaphore: its multicast lands in pages the
    // receiver has not reserved.
    fn walk(ops: &mut [serde_json::Value]) {
        for o in ops.iter_mut() {
            if let Some(body) = o.get_mut("Loop").and_then(|l| l.get_mut("body")).and_then(|b| b.as_array_mut()) {
                walk(body);
            }
            if let Some(t) = o.get_mut("If").and_then(|i| i.get_mut("then")).and_then(|b| b.as_array_mut()) {
                t.retain(|o| o.get("SemWait").is_none());
                walk(t);
            }
        }
    }
    let a = edited_encoder(&|v| {
        let p = mcast_program(v);
        walk(p["reader"].as_array_mut().expect("reader"));
    });
    let e = sim_error(&a);
    eprintln!("{e}");
    assert!(e.contains("noc_async_write_multicast") && e.contains("which has reserved 0"), "{e}");
    assert!(e.contains("core (0,0) reader kernel") || e.contains("core (0,0) noc_async"), "{e}");
    // The receiver never says it is ready: the sender waits forever, reported as a deadlock naming the
    // semaphore.
    let a = edited_encoder(&|v| {
        let p = mcast_program(v);
        drop_ops(p["reader"].as_array_mut().expect("reader"), &|o| o.get("SemInc").is_some());
    });
    let e = sim_error(&a);
    eprintln!("{e}");
    assert!(e.contains("deadlock") && e.contains("noc_semaphore_wait") && e.contains("semaphore 0 is 0"), "{e}");
    // No flush between the tiles and their flag: on Blackhole the flag may overtake them.
    let a = edited_encoder(&|v| {
        let p = mcast_program(v);
        drop_ops(p["reader"].as_array_mut().expect("reader"), &|o| o == "WritesFlushed");
    });
    let e = sim_error(&a);
    eprintln!("{e}");
    assert!(e.contains("noc_async_writes_flushed first"), "{e}");
    // The flag sent before the tiles: the receiver pushes stale pages, and the late tiles are caught.
    let a = edited_encoder(&|v| {
        let p = mcast_program(v);
        fn reorder(ops: &mut [serde_json::Value]) {
            for o in ops.iter_mut() {
                for (op, field) in [("Loop", "body"), ("If", "then"), ("If", "els")] {
                    if let Some(b) = o.get_mut(op).and_then(|l| l.get_mut(field)).and_then(|b| b.as_array_mut()) {
                        let t = b.iter().position(|o| o.get("McastTiles").is_some());
                        let f = b.iter().position(|o| o.get("McastSem").is_some());
                        if let (Some(t), Some(f)) = (t, f) {
                            let flag = b.remove(f);
                            b.insert(t, flag);
                            b.retain(|o| o != "WritesFlushed");
                        }
                        reorder(b);
                    }
                }
            }
        }
        reorder(p["reader"].as_array_mut().expect("reader"));
    });
    let e = sim_error(&a);
    eprintln!("{e}");
    assert!(e.contains("noc_async_write_multicast") && e.contains("which has reserved 0"), "{e}");
}

#[test]
fn split_parts_with_their_own_epilogues_run_on_the_device() {
    // A merged projection's result split in three ragged parts (64, 96, 32 columns), each with its own
    // bias, the first reshaped into heads: one group with three results, one part program each. And a
    // slice followed by an elementwise op.
    let mut g = G::new();
    let x = g.input("x", &[1, 40, 192]);
    let parts = g.g.add_node(Op::Split { axis: 2, sizes: vec![64, 96, 32] }, &[x], "split").expect("typed");
    let mut outs = Vec::new();
    for (i, (&p, n)) in parts.iter().zip([64usize, 96, 32]).enumerate() {
        let b = g.weight(&format!("b{i}"), &[n], 1.0);
        let h = g.op(Op::Binary(BinaryOp::Add), &[p, b]);
        outs.push(if i == 0 { g.op(Op::Reshape { shape: Shape::from_consts(&[1, 40, 2, 32]) }, &[h]) } else { h });
    }
    let sl = g.op(Op::Slice { starts: vec![0, 3, 10], ends: vec![1, 37, 150], steps: vec![1, 2, 1] }, &[x]);
    outs.push(g.op(Op::Unary(UnaryOp::Relu), &[sl]));
    for (i, &o) in outs.iter().enumerate() {
        g.g.add_output(format!("y{i}"), o);
    }
    let model = Model { graph: g.g, weights: g.w };
    for precision in ["fp32", "bf16"] {
        let (a, plan) = plan_of(&model, TensixOptions { precision: Some(precision.into()), ..Default::default() });
        let parts = plan
            .steps
            .iter()
            .filter(|s| matches!(s, sovc_runtime::tensix::program::Step::Device(p) if p.template == "part"))
            .count();
        assert_eq!(parts, 4, "{precision}: {:?}", plan.steps.len());
        assert!(!plan.steps.iter().any(|s| matches!(s, sovc_runtime::tensix::program::Step::Host { .. })));
        let feeds = inputs(&model);
        let got = Session::new(&a, Device::TensixSim).expect("session").run(&feeds).expect("runs");
        let want = Session::new(&a, Device::Reference).expect("session").run(&feeds).expect("reference");
        for i in 0..4 {
            let y = format!("y{i}");
            assert_eq!(got[&y].shape(), want[&y].shape());
            let (err, pcc) = compare(&got[&y], &want[&y]);
            eprintln!("part {i}, {precision}: max abs error {err:.3e}, PCC {pcc:.6}");
            assert!(pcc > 0.9999 && err < 0.05, "{y}: {err} {pcc}");
        }
    }
}

#[test]
fn embedding_lookups_and_integer_masks_run_on_the_device() {
    // Word embeddings (negative ids count from the end) plus a bias, and a mask cast from integers: the
    // ids and the mask are integers stored as FP32 in DRAM.
    let mut g = G::new();
    let ids = g.g.add_input("ids", TensorType::new(DType::I64, Shape::from_consts(&[2, 7])));
    let mask = g.g.add_input("mask", TensorType::new(DType::I64, Shape::from_consts(&[2, 7])));
    let table = g.weight("table", &[50, 40], 1.0);
    let bias = g.weight("bias", &[40], 1.0);
    let e = g.op(Op::Gather { axis: 0 }, &[table, ids]);
    let y = g.op(Op::Binary(BinaryOp::Add), &[e, bias]);
    let m = g.op(Op::Cast { to: DType::F32 }, &[mask]);
    let m = g.op(Op::Binary(BinaryOp::Mul), &[m, m]);
    g.g.add_output("y", y);
    g.g.add_output("m", m);
    let model = Model { graph: g.g, weights: g.w };
    let id_vals: Vec<i64> = vec![0, 3, 49, -1, -50, 7, 7, 12, 1, 2, 30, -7, 44, 5];
    let feeds: BTreeMap<String, Tensor> = [
        ("ids".to_string(), Tensor::from_vec(&[2, 7], id_vals).expect("len")),
        ("mask".to_string(), Tensor::from_vec(&[2, 7], (0..14).map(|i| i % 3 - 1).collect::<Vec<i64>>()).expect("len")),
    ]
    .into_iter()
    .collect();
    for precision in ["fp32", "bf16"] {
        let (a, plan) = plan_of(&model, TensixOptions { precision: Some(precision.into()), ..Default::default() });
        assert!(!plan.steps.iter().any(|s| matches!(s, sovc_runtime::tensix::program::Step::Host { .. })));
        let got = Session::new(&a, Device::TensixSim).expect("session").run(&feeds).expect("runs");
        let want = Session::new(&a, Device::Reference).expect("session").run(&feeds).expect("reference");
        for o in ["y", "m"] {
            let (err, pcc) = compare(&got[o], &want[o]);
            eprintln!("embedding {o}, {precision}: max abs error {err:.3e}, PCC {pcc:.6}");
            assert!(pcc > 0.9999 && err < 0.02, "{o}: {err} {pcc}");
        }
    }
    // An id past the table is an error naming it, as on the interpreter.
    let (a, _) = plan_of(&model, TensixOptions::default());
    let mut bad = feeds.clone();
    bad.insert("ids".into(), Tensor::from_vec(&[2, 7], vec![50i64; 14]).expect("len"));
    let e = Session::new(&a, Device::TensixSim).expect("session").run(&bad).expect_err("out of range");
    assert!(e.to_string().contains("embedding index 50 is outside the table's 50 rows"), "{e}");
    // An integer an FP32 DRAM tensor cannot hold exactly is refused on upload.
    bad.insert("ids".into(), Tensor::from_vec(&[2, 7], vec![1i64 << 25; 14]).expect("len"));
    let e = Session::new(&a, Device::TensixSim).expect("session").run(&bad).expect_err("too large");
    assert!(e.to_string().contains("beyond the 2^24"), "{e}");
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
    // The run's timing report: a Perfetto trace with a slice per program, core and kernel.
    let (a, _) = plan_of(&m, TensixOptions::default());
    let s = Session::new(&a, Device::TensixSim).expect("session");
    s.run(&inputs(&m)).expect("runs");
    let r = s.tensix_model().and_then(|t| t.last_report()).expect("report");
    let v: serde_json::Value = serde_json::from_str(&r.trace_json()).expect("the trace is JSON");
    let slices = v["traceEvents"].as_array().expect("events").iter().filter(|e| e["ph"] == "X").count();
    let expect: usize = r.programs.iter().map(|p| p.cores.len() * 3).sum();
    assert_eq!(slices, expect);
    assert!(r.device_cycles() > 0 && r.fpu_utilization() > 0.0 && r.fpu_utilization() < 1.0);
    // The timing model alone predicts the same cycles as the run that computed values.
    let alone = sovc_runtime::tensix::device::predict(s.tensix_model().expect("tensix").plan()).expect("predicts");
    assert_eq!(alone.device_cycles(), r.device_cycles());
}

/// The encoder layer compiled for blackhole, with `edit` applied to its plan's JSON.
fn edited_encoder(edit: &dyn Fn(&mut serde_json::Value)) -> Artifact {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let (a, _) = plan_of(&m, TensixOptions::default());
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

/// Removes from `ops` every op matching `pred`, searching loops and branches.
fn drop_ops(ops: &mut Vec<serde_json::Value>, pred: &dyn Fn(&serde_json::Value) -> bool) {
    ops.retain(|o| !pred(o));
    for o in ops.iter_mut() {
        for (op, field) in [("Loop", "body"), ("If", "then"), ("If", "els")] {
            if let Some(body) = o.get_mut(op).and_then(|l| l.get_mut(field)).and_then(|b| b.as_array_mut()) {
                drop_ops(body, pred);
            }
        }
    }
}

/// Removes from the reader of the first matmul program every op matching `pred`.
fn drop_reader_ops(v: &mut serde_json::Value, pred: &dyn Fn(&serde_json::Value) -> bool) {
    let steps = v["steps"].as_array_mut().expect("steps");
    let p = steps
        .iter_mut()
        .find_map(|s| s.get_mut("Device").filter(|p| p["template"] == "matmul"))
        .expect("a matmul program");
    drop_ops(p["reader"].as_array_mut().expect("reader"), pred);
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
    assert!(e.contains("reader kernel") && e.contains("in flight") && e.contains("barrier first"), "{e}");
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
    let e = compile(&m, &CompileOptions { target: "blackhole".into(), tensix, ..Default::default() })
        .err()
        .expect("too big");
    let e = e.to_string();
    eprintln!("{e}");
    assert!(e.contains("B of L1 per core") && e.contains("B over"), "{e}");
    assert!(e.contains("CB 0 (in0 (A"), "{e}");
    // A description of the other architecture is refused.
    let tensix = TensixOptions { system_desc: Some(path.to_string_lossy().into()), ..Default::default() };
    let e = compile(&m, &CompileOptions { target: "wormhole_b0".into(), tensix, ..Default::default() })
        .err()
        .expect("arch");
    assert!(e.to_string().contains("describes a `blackhole` device"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

/// PCC each real model's outputs must reach on the simulator with `--precision bf16` (the defaults,
/// FP32 precision, must reach 0.999 on all). Four reach 0.999 in bf16 too. Three randomly initialised
/// CNNs cannot on any bf16 datapath: rounding only their input to bf16 already costs onnxruntime PCC
/// 0.9984 (MobileNet-V2), 0.9905 (ResNet-50) and 0.9875 (Inception-v3), and the FPU sees at most TF32.
/// For those the bf16 floor is loose, and what guards correctness is the check of every program alone
/// on the reference's inputs (PCC 0.999 for each).
const REAL_MODELS: [(&str, f64); 8] = [
    ("resnet18", 0.999),
    ("squeezenet1_1", 0.999),
    // 0.9989 since its squeeze-and-excitation scales run on the device in bf16 too.
    ("efficientnet_b0", 0.998),
    ("bert_encoder", 0.999),
    ("gpt2_decoder", 0.999),
    ("mobilenet_v2", 0.95),
    ("resnet50", 0.9),
    ("inception_v3", 0.75),
];

#[test]
fn every_real_model_compiles_for_blackhole_and_wormhole_and_matches_on_the_simulator() {
    let root = sovc_tests::generated_models();
    if !sovc_tests::require_generated(&root) {
        return;
    }
    for (name, floor) in REAL_MODELS {
        let dir = root.join(name);
        assert!(sovc_tests::require_generated(&dir));
        let m = sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports");
        let feeds = sovc_runtime::read_npy_dir(&dir, "input.").expect("inputs");
        for (target, precision) in [("blackhole", "fp32"), ("wormhole_b0", "fp32"), ("blackhole", "bf16")] {
            let tensix = TensixOptions { precision: Some(precision.into()), ..Default::default() };
            let floor = if precision == "fp32" { 0.999 } else { floor };
            let opts = CompileOptions { target: target.into(), tensix, ..Default::default() };
            let a = Artifact::from_bytes(&compile(&m, &opts).unwrap_or_else(|e| panic!("{name}: {e}")).bytes)
                .expect("artifact");
            let t = std::time::Instant::now();
            let s = Session::new(&a, Device::TensixSim).expect("session");
            let got = s.run(&feeds).unwrap_or_else(|e| panic!("{name} on {target}: {e}"));
            let secs = t.elapsed().as_secs_f64();
            let want = Session::new(&a, Device::Reference).expect("session").run(&feeds).expect("reference");
            let report = s.tensix_model().and_then(|m| m.last_report()).expect("a report");
            let plan = a.plan().expect("plan parses").expect("a plan");
            let on_device = plan.kernels.iter().filter(|k| k.lowering.starts_with("tensix")).count();
            for (o, w) in &want {
                let (err, pcc) = compare(&got[o], w);
                eprintln!(
                    "{name} on {target}, {precision}: {o}: max abs error {err:.3e}, PCC {pcc:.6}; {on_device}/{} kernels on the device, predicted {:.3} ms, simulated in {secs:.2} s",
                    plan.kernels.len(),
                    report.device_seconds() * 1e3
                );
                assert!(pcc >= floor, "{name} on {target}: {o}: PCC {pcc} < {floor}");
            }
            // Every program alone, on the reference's values of its inputs.
            if target == "blackhole" && precision == "bf16" {
                let all = s.reference_values(&feeds).expect("reference values");
                let results = s.tensix_model().expect("tensix").run_isolated(&all).expect("isolated run");
                let worst = results
                    .iter()
                    .map(|(step, v, t)| (compare(t, &all[v]).1, *step, *v))
                    .fold((1.0f64, 0, 0), |a, b| if b.0 < a.0 { b } else { a });
                eprintln!(
                    "{name}: {} program results alone, worst PCC {:.6} (step {}, %{})",
                    results.len(),
                    worst.0,
                    worst.1,
                    worst.2
                );
                assert!(worst.0 >= 0.999, "{name}: step {} alone gives %{} with PCC {}", worst.1, worst.2, worst.0);
            }
            // Convolutions and matrix products run on the device.
            assert!(
                plan.kernels
                    .iter()
                    .all(|k| !matches!(k.anchor.as_str(), "matmul" | "attention") || k.lowering.starts_with("tensix")),
                "{name} on {target}: a matmul or attention kernel runs on the host"
            );
            // Every kernel of every test model runs on the device: no host steps.
            let host: Vec<&str> = plan
                .kernels
                .iter()
                .filter(|k| !k.lowering.starts_with("tensix"))
                .map(|k| k.lowering.as_str())
                .collect();
            assert!(host.is_empty(), "{name} on {target}: kernels on the host: {host:?}");
        }
    }
}

fn write_project(a: &Artifact, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sovc-tensix-cpp-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    let n = sovc_compiler::tensix_report::emit_project(a, &d).expect("emits");
    assert!(n > 5, "{n} files");
    d
}

/// `g++ -fsyntax-only` on every file, against the project's declaration headers; returns the count.
fn syntax_check(files: &[std::path::PathBuf], include: &[std::path::PathBuf]) -> usize {
    let mut cmd = std::process::Command::new("g++");
    cmd.args(["-std=c++17", "-fsyntax-only"]);
    for i in include {
        cmd.arg("-I").arg(i);
    }
    cmd.args(files);
    let out = cmd.output().expect("g++ runs (the test set-up installs it)");
    assert!(out.status.success(), "g++ rejected emitted code:\n{}", String::from_utf8_lossy(&out.stderr));
    files.len()
}

#[test]
fn emitted_projects_compile_against_the_pinned_api_headers() {
    let inc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets/tensix/include");
    let enc = sovc_models::builtin::encoder_layer(16, 64, 4);
    let mut models = vec![("encoder", enc)];
    let r18 = sovc_tests::generated_models().join("resnet18/model.onnx");
    if sovc_tests::require_generated(&r18) {
        models.push(("resnet18", sovc_models::load_model(&r18, &Default::default()).expect("imports")));
    }
    for (name, m) in models {
        let opts =
            CompileOptions { target: "blackhole".into(), tensix: TensixOptions::default(), ..Default::default() };
        let a = Artifact::from_bytes(&compile(&m, &opts).expect("compiles").bytes).expect("artifact");
        let d = write_project(&a, name);
        let mut kernels: Vec<std::path::PathBuf> = std::fs::read_dir(d.join("kernels"))
            .expect("kernels")
            .flat_map(|e| std::fs::read_dir(e.expect("entry").path()).into_iter().flatten())
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "cpp"))
            .collect();
        kernels.sort();
        // Every program's three kernels, and the host program against the host API declarations.
        let n = syntax_check(&kernels, &[inc.clone(), d.join("kernels")]);
        let h = syntax_check(&[d.join("host/main.cpp")], &[inc.join("host"), d.join("host")]);
        eprintln!("{name}: {n} kernels and {h} host program pass g++ -fsyntax-only");
        // The encoder's matmuls share operands over the grid: multicasts and semaphores in the kernels, the
        // semaphores and NoC coordinates in the host program.
        if name == "encoder" {
            let text = |p: &std::path::Path| std::fs::read_to_string(p).expect("read");
            let all: String = kernels.iter().map(|k| text(k)).collect();
            for call in [
                "noc_async_write_multicast(",
                "noc_semaphore_set_multicast(",
                "noc_semaphore_inc(",
                "noc_semaphore_wait(",
            ] {
                assert!(all.contains(call), "no {call} in the encoder's kernels");
            }
            let host = text(&d.join("host/main.cpp"));
            assert!(host.contains("CreateSemaphore(program, cores, 0)") && host.contains("noc_x(mesh, "), "{host}");
        }
        assert!(
            d.join("CMakeLists.txt").exists()
                && std::fs::read_dir(d.join("data")).is_ok_and(|mut r| r.next().is_some())
        );
        std::fs::remove_dir_all(&d).ok();
    }
}

#[test]
fn speed_options_report_their_error() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let cases: [(&str, TensixOptions, f64); 5] = [
        ("default (FP32 activations, split-precision products)", TensixOptions::default(), 0.99999),
        (
            "bf16 (FP32 accumulation, HiFi4)",
            TensixOptions { precision: Some("bf16".into()), ..Default::default() },
            0.9999,
        ),
        ("BF16 accumulation", TensixOptions { bf16_acc: true, ..Default::default() }, 0.999),
        ("LoFi", TensixOptions { fidelity: Some("LoFi".into()), ..Default::default() }, 0.99),
        ("Bfp8_b weights", TensixOptions { weights: Some("bfp8".into()), ..Default::default() }, 0.999),
    ];
    let mut pccs = Vec::new();
    for (what, opts, floor) in cases {
        let (err, pcc, _) = run_on(&m, "blackhole", opts);
        eprintln!("encoder layer, {what}: max abs error {err:.3e}, PCC {pcc:.6}");
        assert!(pcc >= floor, "{what}: PCC {pcc}");
        pccs.push(pcc);
    }
    // Trading accuracy away shows: every faster option correlates less with the reference.
    assert!(pccs[1..].iter().all(|&p| p < pccs[0]), "{pccs:?}");
}

#[test]
fn movement_chains_gather_on_the_device() {
    let mut g = G::new();
    let x = g.input("x", &[2, 40, 6, 16]);
    let t = g.op(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[x]);
    let r = g.op(Op::Reshape { shape: Shape::from_consts(&[12, 640]) }, &[t]);
    let s = g.op(Op::Slice { starts: vec![1, 3], ends: vec![12, 603], steps: vec![2, 3] }, &[r]);
    let plan = check(&g.model(s), "transpose, reshape, strided slice", 0.99999);
    assert!(plan.contains("tensix movement"), "{plan}");
    // Zero padding (as Inception pads before its average pools), alone and after a transpose.
    let mut g = G::new();
    let x = g.input("x", &[1, 20, 9, 9]);
    let zero = g.scalar("zero", 0.0);
    let t = g.op(Op::Transpose { perm: vec![0, 1, 3, 2] }, &[x]);
    let pad = Op::Pad { pads: vec![0, 3, 1, 2, 0, 0, 2, 1], mode: sovc_ir::PadMode::Constant };
    let p = g.op(pad, &[t, zero]);
    let plan = check(&g.model(p), "transpose, zero pad", 0.99999);
    assert!(plan.contains("tensix movement"), "{plan}");
}

#[test]
fn depthwise_convolution_and_pooling_windows() {
    let mut g = G::new();
    let x = g.input("x", &[1, 40, 15, 13]);
    let w = g.weight("w", &[40, 1, 3, 3], 0.5);
    let b = g.weight("b", &[40], 0.5);
    let conv = Op::Conv { strides: vec![2, 1], pads: vec![1, 1, 1, 1], dilations: vec![1, 1], group: 40 };
    let h = g.op(conv, &[x, w, b]);
    let h = g.op(Op::Unary(UnaryOp::Relu), &[h]);
    let pool = Op::MaxPool {
        kernel: vec![3, 3],
        strides: vec![2, 2],
        pads: vec![1, 1, 1, 1],
        dilations: vec![1, 1],
        ceil_mode: false,
    };
    let h = g.op(pool, &[h]);
    let avg = Op::AvgPool {
        kernel: vec![2, 2],
        strides: vec![1, 1],
        pads: vec![0, 0, 0, 0],
        dilations: vec![1, 1],
        ceil_mode: false,
        count_include_pad: true,
    };
    let y = g.op(avg, &[h]);
    let plan = check(&g.model(y), "depthwise conv, relu, max pool, avg pool", 0.9999);
    for t in ["tensix depthwise_conv", "tensix max_pool", "tensix avg_pool"] {
        assert!(plan.contains(t), "{t}: {plan}");
    }
}

#[test]
fn concatenation_gathers_each_part() {
    for axis in [1i64, 2, -1] {
        let mut g = G::new();
        let a = g.input("a", &[2, 20, 7, 9]);
        let b = g.input("b", &[2, 20, 7, 9]);
        let e = g.op(Op::Unary(UnaryOp::Exp), &[b]);
        let y = g.op(Op::Concat { axis }, &[a, e, a]);
        let plan = check(&g.model(y), &format!("concat along {axis}"), 0.9999);
        assert!(plan.contains("tensix concat"), "{plan}");
    }
}

#[test]
fn global_pooling_reduces_rows_into_one_row() {
    for kind in [sovc_ir::ReduceKind::Mean, sovc_ir::ReduceKind::Max] {
        let mut g = G::new();
        let x = g.input("x", &[1, 8, 10, 10]);
        let w = g.weight("w", &[40, 8, 1, 1], 0.5);
        let conv = Op::Conv { strides: vec![1, 1], pads: vec![0, 0, 0, 0], dilations: vec![1, 1], group: 1 };
        let h = g.op(conv, &[x, w]);
        let r = g.op(Op::Reduce { kind, axes: vec![2, 3], keepdims: true }, &[h]);
        let y = g.op(Op::Reshape { shape: Shape::from_consts(&[1, 40]) }, &[r]);
        let plan = check(&g.model(y), &format!("conv then global {}", kind.as_str()), 0.9999);
        assert!(plan.contains("tensix reduce"), "{plan}");
    }
    // Squeeze-and-excitation's pooling: the pooled channels stay a column and feed a 1x1 convolution.
    let mut g = G::new();
    let x = g.input("x", &[1, 6, 9, 9]);
    let w0 = g.weight("w0", &[40, 6, 3, 3], 0.5);
    let conv = Op::Conv { strides: vec![1, 1], pads: vec![1, 1, 1, 1], dilations: vec![1, 1], group: 1 };
    let h = g.op(conv, &[x, w0]);
    let r = g.op(Op::Reduce { kind: sovc_ir::ReduceKind::Mean, axes: vec![2, 3], keepdims: true }, &[h]);
    let w = g.weight("w", &[8, 40, 1, 1], 0.5);
    let conv = Op::Conv { strides: vec![1, 1], pads: vec![0, 0, 0, 0], dilations: vec![1, 1], group: 1 };
    let y = g.op(conv, &[r, w]);
    let y = g.op(Op::Unary(UnaryOp::Sigmoid), &[y]);
    let plan = check(&g.model(y), "global mean pool as a column, then a 1x1 conv", 0.999);
    assert!(plan.contains("tensix reduce") && plan.contains("tensix conv"), "{plan}");
}

#[test]
fn slices_with_negative_starts_gather_the_right_elements() {
    let mut g = G::new();
    let x = g.input("x", &[2, 40, 48]);
    let s1 = g.op(Op::Slice { starts: vec![0, 0, -10], ends: vec![i64::MAX; 3], steps: vec![1; 3] }, &[x]);
    let y = g.op(Op::Slice { starts: vec![0, -33, 5], ends: vec![i64::MAX, -1, 10], steps: vec![1, 2, 1] }, &[s1]);
    let plan = check(&g.model(y), "negative slice starts", 0.99999);
    assert!(plan.contains("tensix movement"), "{plan}");
}

/// A crafted plan is an error, never a panic, a hang or an absurd allocation.
#[test]
fn crafted_plans_are_refused() {
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("no DRAM banks", Box::new(|v| v["device"]["dram_banks"] = 0.into()), "DRAM bank"),
        ("no NoC width", Box::new(|v| v["device"]["noc_bytes_per_cycle"] = 0.into()), "NoC width"),
        ("a 64 TiB L1", Box::new(|v| v["device"]["l1_bytes"] = (1u64 << 46).into()), "L1"),
        ("32 Dst tiles", Box::new(|v| v["device"]["dst_tiles"] = 64.into()), "Dst"),
        ("an address that wraps", Box::new(|v| v["tensors"][0]["address"] = (u64::MAX - 1000).into()), "outside"),
        (
            "a CB at the end of the address space",
            Box::new(|v| {
                let s = v["steps"].as_array_mut().expect("steps");
                let p = s.iter_mut().find_map(|s| s.get_mut("Device")).expect("a program");
                p["cbs"][0]["address"] = (u64::MAX - 100).into();
            }),
            "outside the free L1",
        ),
    ];
    for (what, edit, expect) in cases {
        let a = edited_encoder(&*edit);
        let e = match Session::new(&a, Device::TensixSim) {
            Err(e) => e.to_string(),
            Ok(s) => s.run(&inputs(&sovc_models::builtin::encoder_layer(16, 64, 4))).expect_err(what).to_string(),
        };
        assert!(e.contains(expect), "{what}: {e}");
    }
    // A loop longer than uint32_t, and a slot past the end of a circular buffer.
    let a = edited_encoder(&|v| {
        let s = v["steps"].as_array_mut().expect("steps");
        let p = s.iter_mut().find_map(|s| s.get_mut("Device")).expect("a program");
        p["reader"] =
            serde_json::json!([{"Loop": {"var": 0, "count": {"Const": 1u64 << 62}, "body": ["ReadBarrier"]}}]);
    });
    assert!(sim_error(&a).contains("uint32_t"));
    let a = edited_encoder(&|v| {
        let s = v["steps"].as_array_mut().expect("steps");
        let p = s.iter_mut().find_map(|s| s.get_mut("Device")).expect("a program");
        p["reader"] = serde_json::json!([{"Reserve": {"cb": 0, "n": 1}}, {"FillTile": {"cb": 0, "slot": {"Const": 5}, "fill": {"Value": 1.0}}}]);
    });
    let e = sim_error(&a);
    assert!(e.contains("reserved only 1"), "{e}");
}

/// Every `sovc_dm.h` helper instantiated (the models' projects use only some), through g++.
#[test]
fn every_data_movement_helper_compiles() {
    let inc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../targets/tensix/include");
    let d = std::env::temp_dir().join(format!("sovc-dm-helpers-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("dir");
    std::fs::write(d.join("sovc_dm.h"), sovc_target_tensix::emit::emit_dm_header()).expect("write");
    let src = r#"#include "api/dataflow/dataflow_api.h"
#include "sovc_dm.h"
void kernel_main() {
    constexpr auto a = TensorAccessorArgs<0>();
    const auto t = TensorAccessor(a, 0, 2048);
    static constexpr uint32_t map[] = {2, 4, 4, 1, 1, 2, 4, 4, 1, 0};
    const sovc::ConvGeom g{1, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 2, 2};
    sovc::im2col_tile<sovc::Fmt::Float16_b>(t, 4, 4, 0, 0, 0, 0, 0, g);
    sovc::tap_tile<sovc::Fmt::Float32>(t, 4, 4, 0, 0, 0, 0, 0, 0, 0, g);
    sovc::gather_tile<sovc::Fmt::Float16_b>(t, 4, 4, 0, 0, 0, 4, 4, map);
    sovc::embed_tile<sovc::Fmt::Float32>(t, 4, 4, 0, t, 1, 4, 0, 0, 0, 4, 4, 4, 4);
    sovc::concat_part_tile<sovc::Fmt::Float32>(t, 4, 4, 0, 0, 0, 4, 4, 1, 4, 4, 0, 2);
    sovc::split_tile(0, 0, 0);
    sovc::column_tile<sovc::Fmt::Float32>(0, 1, 0);
    sovc::fill_tile<sovc::Fmt::Float16_b>(0, 0);
    sovc::pad_tile<sovc::Fmt::Float32>(0, 3, 5, 0);
    sovc::bcast_tile<sovc::Fmt::Float16_b, sovc::Bcast::Cols>(0);
}
"#;
    std::fs::write(d.join("helpers.cpp"), src).expect("write");
    assert_eq!(syntax_check(&[d.join("helpers.cpp")], &[inc, d.clone()]), 1);
    std::fs::remove_dir_all(&d).ok();
}
