//! The reference interpreter's semantics, op by op, on small cases whose answers are worked out by hand
//! (ONNX semantics: broadcasting, integer division, rounding, NaN handling, index conventions), and the
//! decomposition of every composite op checked against the interpreter's direct implementation.

use sovc_ir::interp::eval;
use sovc_ir::{decompose, BinaryOp, DType, GeluApprox, Graph, Op, PadMode, ReduceKind, Tensor, TensorType, UnaryOp};
use std::collections::BTreeMap;

fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).expect("shape matches")
}

fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::from_vec(shape, v.to_vec()).expect("shape matches")
}

fn run1(op: Op, ins: &[&Tensor]) -> Tensor {
    eval(&op, ins, &Default::default()).unwrap_or_else(|e| panic!("{}: {e}", op.name())).remove(0)
}

#[test]
fn broadcasting_follows_numpy() {
    let a = f32s(&[2, 1], &[1.0, 2.0]);
    let b = f32s(&[3], &[10.0, 20.0, 30.0]);
    let y = run1(Op::Binary(BinaryOp::Add), &[&a, &b]);
    assert_eq!(y.shape(), &[2, 3]);
    assert_eq!(y.to_f64_vec(), vec![11.0, 21.0, 31.0, 12.0, 22.0, 32.0]);
    assert!(eval(&Op::Binary(BinaryOp::Add), &[&f32s(&[2], &[0.0; 2]), &f32s(&[3], &[0.0; 3])], &Default::default())
        .is_err());
}

#[test]
fn integer_division_truncates_and_mod_follows_the_divisor() {
    let a = i64s(&[4], &[7, -7, 7, -7]);
    let b = i64s(&[4], &[2, 2, -2, -2]);
    assert_eq!(run1(Op::Binary(BinaryOp::Div), &[&a, &b]).to_i64_vec(), vec![3, -3, -3, 3]);
    assert_eq!(run1(Op::Binary(BinaryOp::Mod), &[&a, &b]).to_i64_vec(), vec![1, 1, -1, -1]);
    assert_eq!(run1(Op::Binary(BinaryOp::Fmod), &[&a, &b]).to_i64_vec(), vec![1, -1, 1, -1]);
    let zero = i64s(&[1], &[0]);
    let err = eval(&Op::Binary(BinaryOp::Div), &[&a, &zero], &Default::default()).expect_err("division by zero");
    assert!(err.contains("division by zero"));
}

#[test]
fn integers_wrap_at_their_width() {
    let a = Tensor::from_vec(&[2], vec![250u8, 10]).expect("len");
    let b = Tensor::from_vec(&[2], vec![10u8, 20]).expect("len");
    assert_eq!(run1(Op::Binary(BinaryOp::Add), &[&a, &b]).to_i64_vec(), vec![4, 30]);
    let s = Tensor::from_vec(&[2], vec![1u8, 7]).expect("len");
    assert_eq!(run1(Op::Binary(BinaryOp::ShiftLeft), &[&a, &s]).to_i64_vec(), vec![244, 0]);
    assert_eq!(run1(Op::Binary(BinaryOp::ShiftRight), &[&a, &s]).to_i64_vec(), vec![125, 0]);
}

#[test]
fn round_is_half_to_even_and_cast_truncates() {
    let x = f32s(&[6], &[0.5, 1.5, 2.5, -0.5, -1.5, 2.6]);
    assert_eq!(run1(Op::Unary(UnaryOp::Round), &[&x]).to_f64_vec(), vec![0.0, 2.0, 2.0, -0.0, -2.0, 3.0]);
    assert_eq!(run1(Op::Cast { to: DType::I64 }, &[&x]).to_i64_vec(), vec![0, 1, 2, 0, -1, 2]);
    assert_eq!(run1(Op::Cast { to: DType::Bool }, &[&x]).to_i64_vec(), vec![1; 6]);
    let bf = run1(Op::Cast { to: DType::BF16 }, &[&f32s(&[1], &[1.0 + 1.0 / 256.0])]);
    assert_eq!(bf.to_f64_vec(), vec![1.0], "bf16 rounds to nearest even");
}

#[test]
fn nan_propagates_through_max_min_and_relu() {
    let x = f32s(&[3], &[f32::NAN, 1.0, -1.0]);
    let y = f32s(&[3], &[0.0, f32::NAN, 0.0]);
    let m = run1(Op::Binary(BinaryOp::Max), &[&x, &y]).to_f64_vec();
    assert!(m[0].is_nan() && m[1].is_nan() && m[2] == 0.0);
    let r = run1(Op::Unary(UnaryOp::Relu), &[&x]).to_f64_vec();
    assert!(r[0].is_nan() && r[1] == 1.0 && r[2] == 0.0);
    let red = run1(Op::Reduce { kind: ReduceKind::Max, axes: vec![0], keepdims: false }, &[&x]).to_f64_vec();
    assert!(red[0].is_nan());
}

#[test]
fn matmul_promotes_vectors_and_broadcasts_batches() {
    let a = f32s(&[2, 1, 2, 3], &(0..12).map(|v| v as f32).collect::<Vec<_>>());
    let b = f32s(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let y = run1(Op::MatMul {}, &[&a, &b]);
    assert_eq!(y.shape(), &[2, 1, 2, 2]);
    assert_eq!(y.to_f64_vec()[..4], [2.0, 3.0, 8.0, 9.0]);
    let v = f32s(&[3], &[1.0, 2.0, 3.0]);
    assert_eq!(run1(Op::MatMul {}, &[&v, &v]).shape(), &[] as &[usize]);
    assert_eq!(run1(Op::MatMul {}, &[&v, &v]).to_f64_vec(), vec![14.0]);
    let ints = i64s(&[1, 2], &[3, 4]);
    assert_eq!(run1(Op::MatMul {}, &[&ints, &i64s(&[2, 1], &[5, 6])]).to_i64_vec(), vec![39]);
}

#[test]
fn slices_clamp_and_step_backwards() {
    let x = i64s(&[5], &[0, 1, 2, 3, 4]);
    let s = |a: i64, b: i64, st: i64| {
        run1(Op::Slice { starts: vec![a], ends: vec![b], steps: vec![st] }, &[&x]).to_i64_vec()
    };
    assert_eq!(s(1, 100, 1), vec![1, 2, 3, 4]);
    assert_eq!(s(-2, i64::MAX, 1), vec![3, 4]);
    assert_eq!(s(-1, i64::MIN, -1), vec![4, 3, 2, 1, 0]);
    assert_eq!(s(4, 0, -2), vec![4, 2]);
    assert_eq!(s(3, 1, 1), Vec::<i64>::new());
}

#[test]
fn gather_takes_negative_indices_and_rejects_out_of_range() {
    let x = f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let idx = i64s(&[2], &[-1, 0]);
    assert_eq!(run1(Op::Gather { axis: 0 }, &[&x, &idx]).to_f64_vec(), vec![5.0, 6.0, 1.0, 2.0]);
    assert_eq!(run1(Op::Gather { axis: 1 }, &[&x, &idx]).to_f64_vec(), vec![2.0, 1.0, 4.0, 3.0, 6.0, 5.0]);
    let err = eval(&Op::Gather { axis: 0 }, &[&x, &i64s(&[1], &[3])], &Default::default()).expect_err("out of range");
    assert!(err.contains("out of range"));
}

#[test]
fn pad_modes() {
    let x = f32s(&[3], &[1.0, 2.0, 3.0]);
    let v = f32s(&[], &[9.0]);
    let p = |m: PadMode| run1(Op::Pad { pads: vec![2, 2], mode: m }, &[&x, &v]).to_f64_vec();
    assert_eq!(p(PadMode::Constant), vec![9.0, 9.0, 1.0, 2.0, 3.0, 9.0, 9.0]);
    assert_eq!(p(PadMode::Reflect), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
    assert_eq!(p(PadMode::Edge), vec![1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 3.0]);
    assert_eq!(p(PadMode::Wrap), vec![2.0, 3.0, 1.0, 2.0, 3.0, 1.0, 2.0]);
    assert_eq!(run1(Op::Pad { pads: vec![-1, 0], mode: PadMode::Constant }, &[&x, &v]).to_f64_vec(), vec![2.0, 3.0]);
}

#[test]
fn conv_and_pool_on_a_worked_example() {
    let x = f32s(&[1, 1, 3, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let w = f32s(&[1, 1, 2, 2], &[1.0, 0.0, 0.0, -1.0]);
    let b = f32s(&[1], &[0.5]);
    let y =
        run1(Op::Conv { strides: vec![1, 1], pads: vec![0, 0, 0, 0], dilations: vec![1, 1], group: 1 }, &[&x, &w, &b]);
    assert_eq!(y.to_f64_vec(), vec![-3.5; 4]);
    let y = run1(Op::Conv { strides: vec![2, 2], pads: vec![1, 1, 1, 1], dilations: vec![1, 1], group: 1 }, &[&x, &w]);
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    assert_eq!(y.to_f64_vec(), vec![-1.0, -3.0, -7.0, -4.0]);
    let mp = run1(
        Op::MaxPool {
            kernel: vec![2, 2],
            strides: vec![2, 2],
            pads: vec![0, 0, 0, 0],
            dilations: vec![1, 1],
            ceil_mode: true,
        },
        &[&x],
    );
    assert_eq!(mp.to_f64_vec(), vec![5.0, 6.0, 8.0, 9.0]);
    let ap = |inc: bool| {
        run1(
            Op::AvgPool {
                kernel: vec![2, 2],
                strides: vec![1, 1],
                pads: vec![1, 1, 0, 0],
                dilations: vec![1, 1],
                ceil_mode: false,
                count_include_pad: inc,
            },
            &[&x],
        )
        .to_f64_vec()[0]
    };
    assert_eq!(ap(false), 1.0);
    assert_eq!(ap(true), 0.25);
}

#[test]
fn topk_breaks_ties_by_lower_index() {
    let x = f32s(&[5], &[3.0, 1.0, 3.0, 2.0, 5.0]);
    let out = eval(&Op::TopK { axis: 0, k: 3, largest: true, sorted: true }, &[&x], &Default::default()).expect("runs");
    assert_eq!(out[0].to_f64_vec(), vec![5.0, 3.0, 3.0]);
    assert_eq!(out[1].to_i64_vec(), vec![4, 0, 2]);
}

fn composite_cases() -> Vec<(Op, Vec<Tensor>)> {
    let x = f32s(&[2, 3, 4], &(0..24).map(|v| ((v * 7 % 11) as f32 - 5.0) * 0.37).collect::<Vec<_>>());
    let v4 = |s: f32| f32s(&[4], &[0.5 * s, 1.0, -0.7, 1.3]);
    let v3 = |s: f32| f32s(&[3], &[0.9 * s, 1.1, -0.4]);
    let var3 = f32s(&[3], &[0.5, 1.5, 2.0]);
    vec![
        (Op::Softmax { axis: -1 }, vec![x.clone()]),
        (Op::Softmax { axis: 1 }, vec![x.clone()]),
        (Op::LogSoftmax { axis: 0 }, vec![x.clone()]),
        (Op::LayerNorm { axis: -1, epsilon: 1e-5 }, vec![x.clone(), v4(1.0), v4(-1.0)]),
        (Op::LayerNorm { axis: 1, epsilon: 1e-3 }, vec![x.clone(), f32s(&[3, 4], &[1.0; 12])]),
        (Op::RmsNorm { axis: -1, epsilon: 1e-6 }, vec![x.clone(), v4(2.0)]),
        (Op::BatchNorm { epsilon: 1e-5 }, vec![x.clone(), v3(1.0), v3(-1.0), v3(0.3), var3.clone()]),
        (Op::InstanceNorm { epsilon: 1e-5 }, vec![x.clone(), v3(1.0), v3(2.0)]),
        (Op::GroupNorm { num_groups: 1, epsilon: 1e-5 }, vec![x.clone(), v3(1.0), v3(2.0)]),
        (Op::Gelu { approximate: GeluApprox::None }, vec![x.clone()]),
        (Op::Gelu { approximate: GeluApprox::Tanh }, vec![x.clone()]),
        (Op::Unary(UnaryOp::Softplus), vec![x.clone()]),
        (Op::Unary(UnaryOp::Softsign), vec![x.clone()]),
        (Op::Unary(UnaryOp::HardSwish), vec![x.clone()]),
        (Op::Unary(UnaryOp::Silu), vec![x.clone()]),
        (Op::Unary(UnaryOp::Mish), vec![x.clone()]),
        (Op::Binary(BinaryOp::PRelu), vec![x.clone(), v4(0.25)]),
        (Op::Attention { scale: 0.5 }, vec![x.clone(), x.clone(), f32s(&[2, 3, 4], &[0.1; 24])]),
        (Op::Attention { scale: 0.3 }, vec![x.clone(), x.clone(), x.clone(), f32s(&[1, 3], &[0.0, -1.0, -1e9])]),
    ]
}

#[test]
fn every_composite_has_a_decomposition_that_matches_it() {
    let mut covered = std::collections::BTreeSet::new();
    for (op, ins) in composite_cases() {
        let mut g = Graph::new();
        let vals: Vec<_> = ins
            .iter()
            .enumerate()
            .map(|(i, t)| {
                g.add_input(format!("i{i}"), TensorType::new(t.dtype(), sovc_ir::Shape::from_consts(t.shape())))
            })
            .collect();
        let y = g.add1(op.clone(), &vals, "op").expect("well typed");
        g.add_output("y", y);
        let feeds: BTreeMap<String, Tensor> =
            ins.iter().enumerate().map(|(i, t)| (format!("i{i}"), t.clone())).collect();
        let direct = sovc_ir::interp::run(&g, &Default::default(), &feeds).expect("direct");
        let dg = decompose::decompose_all(&g).expect("decomposes");
        assert!(dg.nodes.iter().all(|n| !n.op.is_composite()), "{}: composite left after decomposition", op.name());
        assert!(sovc_ir::verify(&dg).is_ok());
        let expanded = sovc_ir::interp::run(&dg, &Default::default(), &feeds).expect("decomposed");
        let d = sovc_tests::max_abs_diff(&direct["y"], &expanded["y"]);
        assert!(d < 1e-5, "{}: decomposition differs by {d}", op.name());
        assert!(op.is_composite(), "{} is not composite", op.name());
        covered.insert(op.name());
    }
    let mut expected: std::collections::BTreeSet<&str> = [
        "softmax",
        "log_softmax",
        "layer_norm",
        "rms_norm",
        "batch_norm",
        "instance_norm",
        "group_norm",
        "gelu",
        "prelu",
        "attention",
    ]
    .into();
    expected.extend(UnaryOp::ALL.iter().filter(|u| u.is_composite()).map(|u| u.as_str()));
    assert_eq!(covered, expected, "every composite op needs a decomposition case here");
}

#[test]
fn constant_folding_evaluates_constant_subgraphs_once() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::F32, sovc_ir::Shape::from_consts(&[4, 5])));
    let mut w = sovc_ir::Weights::default();
    let mut add_weight = |g: &mut Graph, key: &str, v: f32| {
        let r = sovc_ir::WeightRef { file: "t".into(), key: key.into() };
        w.insert(r.clone(), f32s(&[5, 4], &[v; 20]));
        g.add_const(
            key,
            TensorType::new(DType::F32, sovc_ir::Shape::from_consts(&[5, 4])),
            sovc_ir::ConstData::Weight(r),
        )
    };
    let (a, b) = (add_weight(&mut g, "a", 1.0), add_weight(&mut g, "b", 2.0));
    // Two constant transposes with the same node name: their folded weights must not collide.
    let ta = g.add1(Op::Transpose { perm: vec![1, 0] }, &[a], "same").expect("typed");
    let tb = g.add1(Op::Transpose { perm: vec![1, 0] }, &[b], "same").expect("typed");
    let s = g.add1(Op::Binary(BinaryOp::Sub), &[ta, tb], "sub").expect("typed");
    let y = g.add1(Op::Binary(BinaryOp::Add), &[x, s], "add").expect("typed");
    g.add_output("y", y);
    let feeds = BTreeMap::from([("x".to_string(), f32s(&[4, 5], &[0.5; 20]))]);
    let before = sovc_ir::interp::run(&g, &w, &feeds).expect("runs");
    let mut folded = g.clone();
    let kept = sovc_ir::fold::fold_constants(&mut folded, &mut w).expect("folds");
    assert_eq!(kept, vec![false, false, false, true]);
    assert_eq!(folded.nodes.len(), 1);
    let after = sovc_ir::interp::run(&folded, &w, &feeds).expect("runs");
    assert_eq!(before, after);
    assert_eq!(after["y"].to_f64_vec(), vec![-0.5; 20]);
}

/// Cases found in review: edge values that once overflowed, lost precision or panicked.
#[test]
fn integer_edges_are_exact() {
    let a = i64s(&[3], &[i64::MIN, 5, -7]);
    let b = i64s(&[3], &[-1, i64::MAX, 3]);
    assert_eq!(run1(Op::Binary(BinaryOp::Mod), &[&a, &b]).to_i64_vec(), vec![0, 5, 2]);
    let big = i64s(&[2], &[1 << 53, 1]);
    let c = run1(Op::CumSum { axis: 0, exclusive: false, reverse: false }, &[&big]);
    assert_eq!(c.to_i64_vec(), vec![1 << 53, (1 << 53) + 1]);
    let wrap = i64s(&[2], &[i64::MAX, 1]);
    assert_eq!(
        run1(Op::CumSum { axis: 0, exclusive: false, reverse: false }, &[&wrap]).to_i64_vec(),
        vec![i64::MAX, i64::MIN]
    );
    let empty = Tensor::from_vec(&[0, 3], Vec::<i32>::new()).expect("empty");
    let mx = run1(Op::Reduce { kind: ReduceKind::Max, axes: vec![0], keepdims: false }, &[&empty]);
    assert_eq!(mx.to_i64_vec(), vec![i32::MIN as i64; 3]);
    let mn = run1(Op::Reduce { kind: ReduceKind::Min, axes: vec![0], keepdims: false }, &[&empty]);
    assert_eq!(mn.to_i64_vec(), vec![i32::MAX as i64; 3]);
}

#[test]
fn odd_shapes_error_instead_of_panicking() {
    let x = f32s(&[10], &[1.0; 10]);
    let s = run1(Op::Slice { starts: vec![0], ends: vec![10], steps: vec![i64::MAX] }, &[&x]);
    assert_eq!(s.shape(), &[1]);
    let s = run1(Op::Slice { starts: vec![9], ends: vec![i64::MIN], steps: vec![i64::MIN] }, &[&x]);
    assert_eq!(s.shape(), &[1]);
    let zero_c = f32s(&[1, 0, 4], &[]);
    let e = f32s(&[0], &[]);
    assert_eq!(run1(Op::InstanceNorm { epsilon: 1e-5 }, &[&zero_c, &e, &e]).shape(), &[1, 0, 4]);
    let data = f32s(&[4, 3], &[0.0; 12]);
    let bad_updates = f32s(&[1], &[1.0]);
    let idx = i64s(&[2, 1], &[0, 1]);
    assert!(eval(
        &Op::ScatterNd { reduction: sovc_ir::ScatterReduction::None },
        &[&data, &idx, &bad_updates],
        &Default::default()
    )
    .is_err());
    let d2 = f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    let too_many = i64s(&[3, 1], &[0, 1, 0]);
    assert!(eval(&Op::GatherElements { axis: 1 }, &[&d2, &too_many], &Default::default()).is_err());
    let ty = |s: &[usize]| TensorType::new(DType::F32, sovc_ir::Shape::from_consts(s));
    let it = |s: &[usize]| TensorType::new(DType::I64, sovc_ir::Shape::from_consts(s));
    assert!(sovc_ir::infer::infer(
        &Op::ScatterNd { reduction: sovc_ir::ScatterReduction::None },
        &[&ty(&[4, 3]), &it(&[2, 1]), &ty(&[1])]
    )
    .is_err());
    assert!(sovc_ir::infer::infer(&Op::GatherElements { axis: 1 }, &[&ty(&[2, 2]), &it(&[3, 1])]).is_err());
    assert!(sovc_ir::infer::infer(
        &Op::GroupNorm { num_groups: 2, epsilon: 1e-5 },
        &[&ty(&[1, 4, 2]), &ty(&[3]), &ty(&[3])]
    )
    .is_err());
    let huge = "sov 1\nconst %0 \"c\": f32[4294967296,4294967296] = []";
    assert!(sovc_ir::text::parse(huge).expect_err("too large").to_string().contains("too large"));
}

#[test]
fn softplus_decomposition_does_not_overflow() {
    let mut g = Graph::new();
    let x = g.add_input("x", TensorType::new(DType::F16, sovc_ir::Shape::from_consts(&[3])));
    let y = g.add1(Op::Unary(UnaryOp::Softplus), &[x], "sp").expect("typed");
    g.add_output("y", y);
    let feeds = BTreeMap::from([("x".to_string(), Tensor::from_f64_fn(DType::F16, &[3], |i| [12.0, -12.0, 0.5][i]))]);
    let direct = sovc_ir::interp::run(&g, &Default::default(), &feeds).expect("runs");
    let dg = decompose::decompose_all(&g).expect("decomposes");
    let expanded = sovc_ir::interp::run(&dg, &Default::default(), &feeds).expect("runs");
    let (a, b) = (direct["y"].to_f64_vec(), expanded["y"].to_f64_vec());
    assert!(b.iter().all(|v| v.is_finite()), "{b:?}");
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() <= 1e-2 * (1.0 + p.abs()), "{a:?} vs {b:?}");
    }
}

#[test]
fn bitcast_reinterprets_bits() {
    let x = f32s(&[2], &[1.0, -2.0]);
    assert_eq!(
        run1(Op::BitCast { to: DType::I32 }, &[&x]).to_i64_vec(),
        vec![0x3f80_0000, 0xc000_0000u32 as i32 as i64]
    );
    let ty = TensorType::new(DType::F32, sovc_ir::Shape::from_consts(&[2]));
    assert!(sovc_ir::infer::infer(&Op::BitCast { to: DType::I64 }, &[&ty]).is_err(), "sizes differ");
}
