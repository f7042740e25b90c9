//! The `.sov` text form round-trips: `parse(print(g)) == g.canonical()` for random graphs (proptest), the
//! built-in models and every imported real model; dumps are stable; parse errors name line and column.

use proptest::prelude::*;
use sovc_ir::{text, BinaryOp, DType, Dim, Graph, Op, ReduceKind, Shape, Tensor, TensorType, UnaryOp, ValueId};

/// One random step: an op applied to earlier values; steps that do not type-check are skipped.
#[derive(Clone, Debug)]
enum Step {
    Unary(usize, usize),
    Binary(usize, usize, usize),
    Softmax(usize, i64),
    Transpose(usize, u64),
    Reduce(usize, usize, u8, bool),
    AddConst(usize, f32),
    Cast(usize, usize),
    Flatten(usize),
    Concat(usize, usize),
    LeakyRelu(usize, f32),
}

const UNARY: [UnaryOp; 6] = [UnaryOp::Exp, UnaryOp::Tanh, UnaryOp::Relu, UnaryOp::Neg, UnaryOp::Sigmoid, UnaryOp::Abs];
const BINARY: [BinaryOp; 5] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Max, BinaryOp::Less];
const CASTS: [DType; 4] = [DType::F64, DType::I64, DType::BF16, DType::F32];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<usize>(), 0..UNARY.len()).prop_map(|(a, u)| Step::Unary(a, u)),
        (any::<usize>(), any::<usize>(), 0..BINARY.len()).prop_map(|(a, b, o)| Step::Binary(a, b, o)),
        (any::<usize>(), -3i64..3).prop_map(|(a, x)| Step::Softmax(a, x)),
        (any::<usize>(), any::<u64>()).prop_map(|(a, s)| Step::Transpose(a, s)),
        (any::<usize>(), any::<usize>(), 0u8..10, any::<bool>()).prop_map(|(a, ax, k, kd)| Step::Reduce(a, ax, k, kd)),
        (any::<usize>(), -1e6f32..1e6).prop_map(|(a, c)| Step::AddConst(a, c)),
        (any::<usize>(), 0..CASTS.len()).prop_map(|(a, c)| Step::Cast(a, c)),
        any::<usize>().prop_map(Step::Flatten),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Step::Concat(a, b)),
        (any::<usize>(), 0.0f32..1.0).prop_map(|(a, x)| Step::LeakyRelu(a, x)),
    ]
}

fn dim() -> impl Strategy<Value = Dim> {
    prop_oneof![
        4 => (1u64..5).prop_map(Dim::Const),
        1 => (0usize..2, proptest::option::of(1u64..100)).prop_map(|(i, max)| Dim::Sym { name: ["batch", "seq"][i].into(), max }),
    ]
}

fn graph() -> impl Strategy<Value = Graph> {
    (
        proptest::collection::vec(proptest::collection::vec(dim(), 0..4), 1..4),
        proptest::collection::vec(step(), 0..24),
        any::<u8>(),
    )
        .prop_map(|(input_shapes, steps, nout)| {
            let mut g = Graph::new();
            let mut vals: Vec<ValueId> = Vec::new();
            for (i, dims) in input_shapes.into_iter().enumerate() {
                vals.push(g.add_input(format!("in\"{i}\\"), TensorType::new(DType::F32, Shape(dims))));
            }
            for (k, s) in steps.into_iter().enumerate() {
                let pick = |i: usize| vals[i % vals.len()];
                let name = format!("n{k}");
                let r = match s {
                    Step::Unary(a, u) => g.add1(Op::Unary(UNARY[u]), &[pick(a)], name),
                    Step::Binary(a, b, o) => g.add1(Op::Binary(BINARY[o]), &[pick(a), pick(b)], name),
                    Step::Softmax(a, x) => g.add1(Op::Softmax { axis: x }, &[pick(a)], name),
                    Step::Transpose(a, seed) => {
                        let r = g.ty(pick(a)).shape.rank();
                        let mut perm: Vec<i64> = (0..r as i64).collect();
                        if r > 1 {
                            perm.rotate_left((seed % r as u64) as usize);
                        }
                        g.add1(Op::Transpose { perm }, &[pick(a)], name)
                    }
                    Step::Reduce(a, ax, k, keepdims) => {
                        let r = g.ty(pick(a)).shape.rank();
                        let axes = if r == 0 { vec![] } else { vec![(ax % r) as i64] };
                        let kinds = [
                            ReduceKind::Sum,
                            ReduceKind::Mean,
                            ReduceKind::Max,
                            ReduceKind::Min,
                            ReduceKind::Prod,
                            ReduceKind::L1,
                            ReduceKind::L2,
                            ReduceKind::LogSum,
                            ReduceKind::LogSumExp,
                            ReduceKind::SumSquare,
                        ];
                        g.add1(Op::Reduce { kind: kinds[k as usize], axes, keepdims }, &[pick(a)], name)
                    }
                    Step::AddConst(a, c) => {
                        let dt = g.ty(pick(a)).dtype;
                        let cst = g.add_inline(
                            format!("c{k}"),
                            Tensor::from_f64_fn(dt, &[2], |i| c as f64 * (i as f64 + 1.0)),
                        );
                        g.add1(Op::Binary(BinaryOp::Add), &[pick(a), cst], name)
                    }
                    Step::Cast(a, c) => g.add1(Op::Cast { to: CASTS[c] }, &[pick(a)], name),
                    Step::Flatten(a) => {
                        let n = g.ty(pick(a)).shape.num_elements();
                        match n {
                            Some(n) => {
                                g.add1(Op::Reshape { shape: Shape::from_consts(&[n as usize]) }, &[pick(a)], name)
                            }
                            None => continue,
                        }
                    }
                    Step::Concat(a, b) => g.add1(Op::Concat { axis: 0 }, &[pick(a), pick(b)], name),
                    Step::LeakyRelu(a, x) => g.add1(Op::LeakyRelu { alpha: x }, &[pick(a)], name),
                };
                if let Ok(v) = r {
                    vals.push(v);
                }
            }
            let n = 1 + nout as usize % vals.len().min(3);
            for (i, v) in vals.iter().rev().take(n).enumerate() {
                g.add_output(format!("out{i}"), *v);
            }
            g
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn print_parse_round_trips(g in graph()) {
        let printed = text::print(&g);
        let parsed = text::parse(&printed).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
        prop_assert_eq!(&parsed, &g.canonical());
        prop_assert_eq!(text::print(&parsed), printed);
        prop_assert!(sovc_ir::verify(&parsed).is_ok());
    }
}

#[test]
fn builtin_models_round_trip() {
    for name in sovc_models::builtin::NAMES {
        let m = sovc_models::builtin::by_name(name).expect("known");
        let printed = text::print(&m.graph);
        assert_eq!(text::parse(&printed).expect("parses"), m.graph.canonical(), "{name}");
    }
}

#[test]
fn imported_real_models_round_trip_and_print_identically_twice() {
    let dir = sovc_tests::generated_models();
    if !sovc_tests::require_generated(&dir) {
        return;
    }
    for name in ["resnet18", "bert_encoder", "gpt2_decoder"] {
        let path = dir.join(name).join("model.onnx");
        let opts = sovc_models::onnx::ImportOptions::default();
        let a = sovc_models::onnx::import_file(&path, &opts).expect("imports");
        let b = sovc_models::onnx::import_file(&path, &opts).expect("imports");
        let (pa, pb) = (text::print(&a.graph), text::print(&b.graph));
        assert_eq!(pa, pb, "{name}: importing twice gives different IR");
        assert_eq!(text::parse(&pa).expect("parses"), a.graph.canonical(), "{name}");
    }
}

#[test]
fn parse_errors_name_line_and_column() {
    let cases = [
        ("", "line 1"),
        ("sov 1\ninput %0 \"x\": f99[2]", "unknown element type `f99`"),
        ("sov 1\ninput %0 \"x\": f32[2]\n%1: f32[2] = frobnicate(%0) \"n\"", "unknown op `frobnicate`"),
        ("sov 1\ninput %0 \"x\": f32[2]\n%1: f32[3] = exp(%0) \"n\"", "line 3"),
        ("sov 1\ninput %0 \"x\": f32[2]\n%1: f32[2] = exp(%7) \"n\"", "%7 is used before it is defined"),
        ("sov 1\ninput %0 \"x\": f32[2]\n%1: f32[2] = softmax(%0) \"n\"", "needs attribute `axis`"),
        ("sov 1\ninput %0 \"x\": f32[2]\n%1: f32[2] = exp(%0) {axis=1} \"n\"", "has no attribute `axis`"),
        ("sov 1\nconst %0 \"c\": i64[3] = [1, 2]", "needs 3 elements"),
        ("sov 1\ninput %0 \"x\": f32[2]\n%1: f32[2] = softmax(%0) {axis=\"a\"} \"n\"", "wrong type"),
        ("sov 1\ninput %0 \"x: f32[2]", "unterminated string"),
    ];
    for (src, want) in cases {
        let err = text::parse(src).expect_err(src).to_string();
        assert!(err.contains(want), "{src:?}: {err}");
        assert!(err.starts_with("line "), "{err}");
    }
}

#[test]
fn mlp_dump_is_stable() {
    let printed = text::print(&sovc_models::builtin::mlp().graph);
    let expected = r#"sov 1
input %0 "x": f32[batch<=64,64]
const %1 "fc1.weight": f32[64,128] = weight "builtin:mlp" "fc1.weight"
const %2 "fc1.bias": f32[128] = weight "builtin:mlp" "fc1.bias"
const %3 "fc2.weight": f32[128,10] = weight "builtin:mlp" "fc2.weight"
const %4 "fc2.bias": f32[10] = weight "builtin:mlp" "fc2.bias"
%5: f32[batch<=64,128] = matmul(%0, %1) "fc1/matmul"
%6: f32[batch<=64,128] = add(%5, %2) "fc1/bias"
%7: f32[batch<=64,128] = gelu(%6) {approximate="none"} "gelu"
%8: f32[batch<=64,10] = matmul(%7, %3) "fc2/matmul"
%9: f32[batch<=64,10] = add(%8, %4) "fc2/bias"
%10: f32[batch<=64,10] = softmax(%9) {axis=-1} "softmax"
output "probs" = %10
"#;
    assert_eq!(printed, expected);
}
