//! The e-graph optimizer: sound (random graphs and every real model compute the same before and after),
//! effective (the BERT export gets fused layer norms and GELUs), bounded (limits stop it and the report
//! says which), deterministic (same input, same output text), and explained (rule chains per node).

use proptest::prelude::*;
use sovc_compiler::opt::{optimize, Limits, OptOptions, StopReason, TargetDesc};
use sovc_ir::{BinaryOp, DType, Graph, Op, ReduceKind, Shape, Tensor, TensorType, UnaryOp, ValueId, Weights};
use sovc_tests::{generated_models, max_abs_diff, require_generated};
use std::collections::BTreeMap;

fn inputs_of(dir: &std::path::Path) -> BTreeMap<String, Tensor> {
    sovc_runtime::read_npy_dir(dir, "input.").expect("readable npy files")
}

#[test]
fn real_models_compute_the_same_after_optimization() {
    let root = generated_models();
    if !require_generated(&root) {
        return;
    }
    for name in [
        "resnet18",
        "resnet50",
        "inception_v3",
        "mobilenet_v2",
        "squeezenet1_1",
        "efficientnet_b0",
        "bert_encoder",
        "gpt2_decoder",
    ] {
        let dir = root.join(name);
        let m = sovc_models::onnx::import_file(&dir.join("model.onnx"), &Default::default()).expect("imports");
        let feeds = inputs_of(&dir);
        for target in [TargetDesc::cpu(), TargetDesc::blackhole()] {
            let opts = OptOptions { target, ..OptOptions::default() };
            let r = optimize(&m.graph, &m.weights, &opts).expect("optimizes");
            let mut w = m.weights.clone();
            w.map.extend(r.weights.map.clone());
            let before = sovc_ir::interp::run(&m.graph, &m.weights, &feeds).expect("runs");
            let after = sovc_ir::interp::run(&r.graph, &w, &feeds).expect("runs optimized");
            for (k, v) in &before {
                let d = max_abs_diff(v, &after[k]);
                assert!(d <= 1e-4, "{name}/{k}: optimized differs by {d:.3e}");
            }
            assert!(r.report.cost_after <= r.report.cost_before * (1.0 + 1e-9), "{name}: cost went up");
        }
    }
}

#[test]
fn bert_gets_fused_layer_norm_and_gelu() {
    let dir = generated_models().join("bert_encoder");
    if !require_generated(&dir) {
        return;
    }
    let m = sovc_models::onnx::import_file(&dir.join("model.onnx"), &Default::default()).expect("imports");
    let r = optimize(&m.graph, &m.weights, &OptOptions::default()).expect("optimizes");
    let ops = &r.report.ops_after;
    assert_eq!(ops.get("layer_norm"), Some(&13), "12 layers x 2 + embeddings... {ops:?}");
    assert_eq!(ops.get("gelu"), Some(&6), "{ops:?}");
    assert_eq!(ops.get("attention"), Some(&6), "{ops:?}");
    assert_eq!(ops.get("split"), Some(&6), "merged QKV projections: {ops:?}");
    assert_eq!(ops.get("matmul"), Some(&(49 - 12 - 12)), "attention takes 12, merging 18 into 6 takes 12: {ops:?}");
    for gone in ["erf", "pow", "sqrt", "reduce"] {
        assert_eq!(ops.get(gone), None, "{gone} left: {ops:?}");
    }
    assert_eq!(r.report.stop, StopReason::Saturated);
    let explained: Vec<(&str, &Vec<&str>)> =
        r.graph.nodes.iter().zip(&r.explain).filter(|(_, e)| !e.is_empty()).map(|(n, e)| (n.op.name(), e)).collect();
    assert!(explained.iter().any(|(op, e)| *op == "layer_norm" && e.contains(&"layer-norm")), "{explained:?}");
    assert!(explained.iter().any(|(op, e)| *op == "gelu" && e.contains(&"gelu-erf")), "{explained:?}");
    let text = r.report.render("cpu");
    assert!(text.contains("stopped: saturated") && text.contains("layer_norm: 0 -> 13"), "{text}");
}

/// GPT-2's masked attention (a `where` with the most negative f32) is recognized too.
#[test]
fn gpt2_gets_fused_attention() {
    let dir = generated_models().join("gpt2_decoder");
    if !require_generated(&dir) {
        return;
    }
    let m = sovc_models::onnx::import_file(&dir.join("model.onnx"), &Default::default()).expect("imports");
    let r = optimize(&m.graph, &m.weights, &OptOptions::default()).expect("optimizes");
    let ops = &r.report.ops_after;
    assert_eq!(ops.get("attention"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("gelu"), Some(&2), "{ops:?}");
    assert_eq!(ops.get("layer_norm"), Some(&5), "{ops:?}");
    assert_eq!(ops.get("softmax"), None, "{ops:?}");
}

#[test]
fn optimizing_twice_gives_the_same_text() {
    let m = sovc_models::builtin::decoder_layer(16, 64, 4);
    let dg = sovc_ir::decompose::decompose_all(&m.graph).expect("decomposes");
    let run = || {
        let r = optimize(&dg, &m.weights, &OptOptions::default()).expect("optimizes");
        sovc_ir::text::print(&r.graph)
    };
    let a = run();
    let dg2 = dg.clone();
    let b = std::thread::spawn(move || {
        let w = sovc_models::builtin::decoder_layer(16, 64, 4).weights;
        sovc_ir::text::print(&optimize(&dg2, &w, &OptOptions::default()).expect("optimizes").graph)
    })
    .join()
    .expect("thread");
    assert_eq!(a, b);
    assert_eq!(a, run());
}

#[test]
fn limits_stop_saturation_and_say_so() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let g = sovc_ir::decompose::decompose_all(&m.graph).expect("decomposes");
    let tight = |limits: Limits| {
        optimize(&g, &m.weights, &OptOptions { limits, ..OptOptions::default() }).expect("optimizes").report
    };
    let r = tight(Limits { nodes: 10, ..Limits::default() });
    assert_eq!(r.stop, StopReason::NodeLimit(10));
    let r = tight(Limits { iterations: 1, ..Limits::default() });
    assert_eq!(r.stop, StopReason::IterationLimit(1));
    assert_eq!(r.iterations, 1);
    let r = tight(Limits { time: std::time::Duration::ZERO, ..Limits::default() });
    // The first iteration changes the e-graph, so only the time limit can stop it there.
    assert!(matches!(r.stop, StopReason::TimeLimit(_)), "{:?}", r.stop);
    assert_eq!(r.iterations, 1);
    let err = optimize(
        &g,
        &m.weights,
        &OptOptions { only_rules: Some(vec!["no-such-rule".into()]), ..OptOptions::default() },
    );
    assert!(err.err().expect("unknown rule").to_string().contains("no-such-rule"));
}

/// The decomposed built-in layers are recomposed: what decomposition splits, recognition joins again.
#[test]
fn decomposed_layers_are_recognized_again() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let g = sovc_ir::decompose::decompose_all(&m.graph).expect("decomposes");
    let r = optimize(&g, &m.weights, &OptOptions::default()).expect("optimizes");
    assert_eq!(r.report.ops_after.get("gelu"), Some(&1), "{:?}", r.report.ops_after);
    assert_eq!(r.report.ops_after.get("layer_norm"), Some(&2), "{:?}", r.report.ops_after);
    // What decomposition split, recognition joins again, and further: the attention core becomes one op
    // and the Q, K, V projections one matmul (over weights concatenated at compile time) and a split.
    let want: BTreeMap<&str, usize> = [
        ("add", 8),
        ("attention", 1),
        ("gelu", 1),
        ("layer_norm", 2),
        ("matmul", 4),
        ("reshape", 4),
        ("split", 1),
        ("transpose", 4),
    ]
    .into();
    assert_eq!(r.report.ops_after, want);
    let x = Tensor::from_vec(&[1, 16, 64], sovc_models::builtin::det_values(1024, 5, 1.0)).expect("len");
    let feeds = BTreeMap::from([("x".to_string(), x)]);
    let mut w = m.weights.clone();
    w.map.extend(r.weights.map.clone());
    let a = sovc_ir::interp::run(&m.graph, &m.weights, &feeds).expect("runs");
    let b = sovc_ir::interp::run(&r.graph, &w, &feeds).expect("runs");
    assert!(max_abs_diff(&a["y"], &b["y"]) < 1e-4);
}

// ---- soundness on random graphs ----

#[derive(Clone, Debug)]
enum Step {
    Unary(usize, u8),
    Binary(usize, usize, u8),
    Scalar(usize, u8, i8),
    Transpose(usize, u8),
    Reshape(usize),
    Reduce(usize, u8, u8),
    MatMul(usize),
    Cast(usize),
    Identity(usize),
    /// (x - mean over axes from `m`) / sqrt(mean of squares over axes `v..=v_end` + eps): a layer norm
    /// only when both cover the same trailing axes, a near miss otherwise.
    Norm(usize, u8, u8, u8),
    /// x * 0.5 * (1 + erf(x / c)): GELU when c is sqrt 2.
    Gelu(usize, bool),
    /// matmul with the second constant weight.
    MatMul2(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<usize>(), 0u8..5).prop_map(|(a, k)| Step::Unary(a, k)),
        (any::<usize>(), any::<usize>(), 0u8..4).prop_map(|(a, b, k)| Step::Binary(a, b, k)),
        (any::<usize>(), 0u8..4, -2i8..3).prop_map(|(a, k, c)| Step::Scalar(a, k, c)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, s)| Step::Transpose(a, s)),
        any::<usize>().prop_map(Step::Reshape),
        (any::<usize>(), any::<u8>(), 0u8..3).prop_map(|(a, ax, k)| Step::Reduce(a, ax, k)),
        any::<usize>().prop_map(Step::MatMul),
        any::<usize>().prop_map(Step::Cast),
        any::<usize>().prop_map(Step::Identity),
        (any::<usize>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(a, m, v, e)| Step::Norm(a, m, v, e)),
        (any::<usize>(), any::<bool>()).prop_map(|(a, s)| Step::Gelu(a, s)),
        any::<usize>().prop_map(Step::MatMul2),
    ]
}

/// A random graph over one [2,3,4] input, a [4,4] input and two constant [4,4] weights, with ops the
/// rules touch (and near misses of the fusion patterns).
fn random_graph(steps: &[Step]) -> Graph {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::F32, Shape::from_consts(&[2, 3, 4])));
    let w_in = g.add_input("w", TensorType::new(DType::F32, Shape::from_consts(&[4, 4])));
    let w = g.add_inline("wc", Tensor::from_vec(&[4, 4], sovc_models::builtin::det_values(16, 41, 1.0)).expect("len"));
    let w2 =
        g.add_inline("wc2", Tensor::from_vec(&[4, 4], sovc_models::builtin::det_values(16, 42, 1.0)).expect("len"));
    let mut vals: Vec<ValueId> = vec![x, w_in];
    for (k, s) in steps.iter().enumerate() {
        let pick = |i: usize| vals[i % vals.len()];
        let name = format!("n{k}");
        let r = match *s {
            Step::Unary(a, u) => {
                let op = [UnaryOp::Tanh, UnaryOp::Neg, UnaryOp::Sigmoid, UnaryOp::Abs, UnaryOp::Relu][u as usize];
                g.add1(Op::Unary(op), &[pick(a)], name)
            }
            Step::Binary(a, b, o) => {
                let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max][o as usize];
                g.add1(Op::Binary(op), &[pick(a), pick(b)], name)
            }
            Step::Scalar(a, o, c) => {
                let cst =
                    g.add_inline(format!("c{k}"), Tensor::scalar(c as f32 * 0.5 + if o == 2 { 1.0 } else { 0.0 }));
                let op = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div][o as usize];
                if op == BinaryOp::Div && c == 0 {
                    continue;
                }
                g.add1(Op::Binary(op), &[pick(a), cst], name)
            }
            Step::Transpose(a, seed) => {
                let r = g.ty(pick(a)).shape.rank();
                let mut perm: Vec<i64> = (0..r as i64).collect();
                if r > 1 {
                    perm.rotate_left(seed as usize % r);
                    if seed % 2 == 1 {
                        perm.swap(0, r - 1);
                    }
                }
                g.add1(Op::Transpose { perm }, &[pick(a)], name)
            }
            Step::Reshape(a) => {
                let n = g.ty(pick(a)).shape.num_elements().expect("static") as usize;
                let target =
                    if n.is_multiple_of(4) && g.ty(pick(a)).shape.rank() != 2 { vec![n / 4, 4] } else { vec![n] };
                g.add1(Op::Reshape { shape: Shape::from_consts(&target) }, &[pick(a)], name)
            }
            Step::Reduce(a, ax, k) => {
                let r = g.ty(pick(a)).shape.rank();
                if r == 0 {
                    continue;
                }
                let kind = [ReduceKind::Sum, ReduceKind::Mean, ReduceKind::Max][k as usize];
                g.add1(
                    Op::Reduce { kind, axes: vec![(ax as usize % r) as i64], keepdims: ax % 2 == 0 },
                    &[pick(a)],
                    name,
                )
            }
            Step::MatMul(a) => g.add1(Op::MatMul {}, &[pick(a), w], name),
            Step::MatMul2(a) => g.add1(Op::MatMul {}, &[pick(a), w2], name),
            Step::Norm(a, m, v, e) => {
                let v0 = pick(a);
                let r = g.ty(v0).shape.rank();
                if r == 0 {
                    continue;
                }
                let (m, v) = ((m as usize % r) as i64, (v as usize % r) as i64);
                let v_end = v + (e as i64 % (r as i64 - v));
                let eps = g.add_inline(format!("eps{k}"), Tensor::scalar(1e-3f32));
                let mean = g
                    .add1(
                        Op::Reduce { kind: ReduceKind::Mean, axes: (m..r as i64).collect(), keepdims: true },
                        &[v0],
                        format!("{name}m"),
                    )
                    .expect("typed");
                let d = g.add1(Op::Binary(BinaryOp::Sub), &[v0, mean], format!("{name}d")).expect("typed");
                let sq = g.add1(Op::Binary(BinaryOp::Mul), &[d, d], format!("{name}q")).expect("typed");
                let var = g
                    .add1(
                        Op::Reduce { kind: ReduceKind::Mean, axes: (v..=v_end).collect(), keepdims: true },
                        &[sq],
                        format!("{name}v"),
                    )
                    .expect("typed");
                let ve = g.add1(Op::Binary(BinaryOp::Add), &[var, eps], format!("{name}e")).expect("typed");
                let sd = g.add1(Op::Unary(UnaryOp::Sqrt), &[ve], format!("{name}s")).expect("typed");
                let z = g.add1(Op::Binary(BinaryOp::Div), &[d, sd], format!("{name}z")).expect("typed");
                // Scaled by a parameter of the normalized shape, as exporters write layer norm.
                let pshape: Vec<usize> = g.ty(v0).shape.as_consts().expect("static")[m as usize..].to_vec();
                let n: usize = pshape.iter().product();
                let gamma = g.add_inline(
                    format!("g{k}"),
                    Tensor::from_vec(&pshape, sovc_models::builtin::det_values(n, k as u64, 1.0)).expect("len"),
                );
                g.add1(Op::Binary(BinaryOp::Mul), &[z, gamma], name)
            }
            Step::Gelu(a, exact) => {
                let v0 = pick(a);
                let c =
                    g.add_inline(format!("c{k}"), Tensor::scalar(if exact { std::f32::consts::SQRT_2 } else { 1.3 }));
                let (one, half) = (
                    g.add_inline(format!("one{k}"), Tensor::scalar(1.0f32)),
                    g.add_inline(format!("half{k}"), Tensor::scalar(0.5f32)),
                );
                let d = g.add1(Op::Binary(BinaryOp::Div), &[v0, c], format!("{name}d")).expect("typed");
                let e = g.add1(Op::Unary(UnaryOp::Erf), &[d], format!("{name}e")).expect("typed");
                let p = g.add1(Op::Binary(BinaryOp::Add), &[e, one], format!("{name}p")).expect("typed");
                let m = g.add1(Op::Binary(BinaryOp::Mul), &[v0, p], format!("{name}m")).expect("typed");
                g.add1(Op::Binary(BinaryOp::Mul), &[m, half], name)
            }
            Step::Cast(a) => g.add1(Op::Cast { to: DType::F32 }, &[pick(a)], name),
            Step::Identity(a) => g.add1(Op::Unary(UnaryOp::Identity), &[pick(a)], name),
        };
        if let Ok(v) = r {
            vals.push(v);
        }
    }
    let last = *vals.last().expect("non-empty");
    g.add_output("y", last);
    if vals.len() > 3 {
        g.add_output("z", vals[vals.len() / 2]);
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn optimization_preserves_results(steps in proptest::collection::vec(step(), 1..20), seed in any::<u64>()) {
        let g = random_graph(&steps);
        let r = optimize(&g, &Weights::default(), &OptOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let xs = sovc_models::builtin::det_values(24, seed, 1.0);
        let ws = sovc_models::builtin::det_values(16, seed ^ 7, 1.0);
        let feeds = BTreeMap::from([
            ("x".to_string(), Tensor::from_vec(&[2, 3, 4], xs).expect("len")),
            ("w".to_string(), Tensor::from_vec(&[4, 4], ws).expect("len")),
        ]);
        let before = sovc_ir::interp::run(&g, &Weights::default(), &feeds).expect("runs");
        let after = sovc_ir::interp::run(&r.graph, &r.weights, &feeds).expect("runs optimized");
        for (k, v) in &before {
            let a = &after[k];
            prop_assert_eq!(v.shape(), a.shape());
            for (p, q) in v.to_f64_vec().iter().zip(a.to_f64_vec()) {
                prop_assert!((p - q).abs() <= 1e-4 * (1.0 + p.abs()), "{}: {} vs {}\n{}", k, p, q, sovc_ir::text::print(&g));
            }
        }
    }
}

/// Graph to e-graph and back, with no rule, is lossless: the same text comes out.
#[test]
fn conversion_without_rules_is_lossless() {
    let none = OptOptions { only_rules: Some(vec![]), ..OptOptions::default() };
    let mut models: Vec<(String, sovc_ir::Model)> = sovc_models::builtin::NAMES
        .iter()
        .map(|n| (n.to_string(), sovc_models::builtin::by_name(n).expect("known")))
        .collect();
    let dec = sovc_models::builtin::decoder_layer(16, 64, 4);
    models.push((
        "decomposed decoder".into(),
        sovc_ir::Model { graph: sovc_ir::decompose::decompose_all(&dec.graph).expect("ok"), weights: dec.weights },
    ));
    let root = generated_models();
    for name in ["resnet18", "bert_encoder", "gpt2_decoder"] {
        let p = root.join(name).join("model.onnx");
        if p.exists() {
            models.push((name.into(), sovc_models::onnx::import_file(&p, &Default::default()).expect("imports")));
        }
    }
    for (name, m) in models {
        let r = optimize(&m.graph, &m.weights, &none).expect("optimizes");
        assert_eq!(sovc_ir::text::print(&r.graph), sovc_ir::text::print(&m.graph), "{name}");
        assert!(r.report.applied.is_empty());
    }
}

/// Partitioning of every optimized real model: each node in one group, groups in dependency order.
#[test]
fn real_models_partition_into_ordered_kernel_groups() {
    let root = generated_models();
    if !require_generated(&root) {
        return;
    }
    for name in ["resnet50", "inception_v3", "bert_encoder", "gpt2_decoder"] {
        let m =
            sovc_models::onnx::import_file(&root.join(name).join("model.onnx"), &Default::default()).expect("imports");
        let g = optimize(&m.graph, &m.weights, &OptOptions::default()).expect("optimizes").graph;
        let groups = sovc_compiler::partition::partition(&g);
        let mut group_of = vec![usize::MAX; g.nodes.len()];
        for (i, k) in groups.iter().enumerate() {
            for &n in &k.nodes {
                assert_eq!(group_of[n], usize::MAX, "{name}: node {n} in two groups");
                group_of[n] = i;
            }
        }
        assert!(group_of.iter().all(|&x| x != usize::MAX), "{name}: a node in no group");
        let defs = g.defs();
        for (i, k) in groups.iter().enumerate() {
            for v in &k.inputs {
                if let Some(sovc_ir::ValueDef::Node { node, .. }) = defs[v.index()] {
                    assert!(group_of[node] < i, "{name}: group {i} reads a later group");
                }
            }
        }
        assert!(groups.len() < g.nodes.len(), "{name}: nothing fused");
        eprintln!("{name}: {} nodes -> {} kernel groups", g.nodes.len(), groups.len());
    }
}
