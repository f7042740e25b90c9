//! Real architectures exported from PyTorch (ResNet-18, ResNet-50, Inception-v3, MobileNet-V2, SqueezeNet 1.1,
//! EfficientNet-B0, a
//! 6-layer BERT encoder at hidden 384 / sequence 128, a GPT-2-style decoder) import and run on the
//! reference interpreter within 1e-4 of PyTorch. The exports are made by `scripts/export_models.py`.

use sovc_ir::Tensor;
use sovc_models::onnx::ImportOptions;
use sovc_tests::{generated_models, max_abs_diff, require_generated};
use std::collections::BTreeMap;
use std::path::Path;

fn npys(dir: &Path, prefix: &str) -> BTreeMap<String, Tensor> {
    sovc_runtime::read_npy_dir(dir, prefix).expect("readable npy files")
}

/// How close to PyTorch: absolute, or relative to the largest reference value for deep nets whose fp32
/// rounding grows with the logits (onnxruntime itself is 1.6e-4 off on ResNet-50 and 1.4e-3 off on
/// Inception-v3, whose logits reach 2.3 and 16.6).
#[derive(Clone, Copy)]
enum Tol {
    Abs(f64),
    RelToMax(f64),
}

fn check(name: &str, shapes: &[(&str, Vec<u64>)], data_dir: Option<&str>) {
    check_tol(name, shapes, data_dir, Tol::Abs(1e-4));
}

fn check_tol(name: &str, shapes: &[(&str, Vec<u64>)], data_dir: Option<&str>, tol: Tol) {
    let dir = generated_models().join(name);
    if !require_generated(&dir) {
        return;
    }
    let mut opts = ImportOptions::default();
    for (n, d) in shapes {
        opts.shapes.insert(n.to_string(), d.clone());
    }
    let model = sovc_models::onnx::import_file(&dir.join("model.onnx"), &opts)
        .unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
    let data = data_dir.map_or(dir.clone(), |d| dir.join(d));
    let inputs = npys(&data, "input.");
    let want = npys(&data, "output.");
    assert!(!inputs.is_empty() && !want.is_empty(), "{name}: no reference data");
    let got = sovc_ir::interp::run(&model.graph, &model.weights, &inputs)
        .unwrap_or_else(|e| panic!("{name}: run failed: {e}"));
    for (out, w) in &want {
        let g = got.get(out).unwrap_or_else(|| panic!("{name}: output {out} missing"));
        let d = max_abs_diff(g, w);
        let bound = match tol {
            Tol::Abs(t) => t,
            Tol::RelToMax(t) => t * w.to_f64_vec().iter().fold(1.0f64, |m, v| m.max(v.abs())),
        };
        eprintln!("{name}/{out}: max |diff| {d:.3e} (bound {bound:.1e})");
        assert!(d <= bound, "{name}/{out}: max |diff| {d:.3e} exceeds {bound:.1e}");
    }
}

#[test]
fn resnet18() {
    check("resnet18", &[], None);
}

#[test]
fn mobilenet_v2() {
    check("mobilenet_v2", &[], None);
}

#[test]
fn squeezenet1_1() {
    check("squeezenet1_1", &[], None);
}

#[test]
fn efficientnet_b0() {
    check("efficientnet_b0", &[], None);
}

#[test]
fn resnet50() {
    check_tol("resnet50", &[], None, Tol::RelToMax(1e-4));
}

#[test]
fn inception_v3() {
    check_tol("inception_v3", &[], None, Tol::RelToMax(1e-4));
}

#[test]
fn bert_encoder() {
    check("bert_encoder", &[], None);
}

#[test]
fn gpt2_decoder() {
    check("gpt2_decoder", &[], None);
}

/// The same BERT exported with dynamic batch and sequence: symbolic at import, fixed with `--shape`.
#[test]
fn bert_encoder_dynamic_fixed_at_import() {
    let s = vec![1, 128];
    check(
        "bert_encoder_dynamic",
        &[("input_ids", s.clone()), ("attention_mask", s.clone()), ("token_type_ids", s)],
        None,
    );
    let s = vec![2, 48];
    check(
        "bert_encoder_dynamic",
        &[("input_ids", s.clone()), ("attention_mask", s.clone()), ("token_type_ids", s)],
        Some("batch2_seq48"),
    );
}

/// Without `--shape`, a dynamic model whose shape arithmetic needs the sequence length says so.
#[test]
fn bert_encoder_dynamic_unfixed_names_the_symbol() {
    let dir = generated_models().join("bert_encoder_dynamic");
    if !require_generated(&dir) {
        return;
    }
    let err = sovc_models::onnx::import_file(&dir.join("model.onnx"), &ImportOptions::default())
        .expect_err("needs --shape")
        .to_string();
    assert!(err.contains("sequence") && err.contains("--shape"), "{err}");
}

/// Symbolic dimensions survive import when nothing needs their value: the batch of the built-in MLP.
#[test]
fn symbolic_batch_runs_at_several_sizes() {
    let m = sovc_models::builtin::mlp();
    for batch in [1usize, 3, 64] {
        let x = Tensor::from_vec(&[batch, 64], sovc_models::builtin::det_values(batch * 64, 7, 1.0)).expect("len");
        let out = sovc_ir::interp::run(&m.graph, &m.weights, &BTreeMap::from([("x".to_string(), x)])).expect("runs");
        let p = &out["probs"];
        assert_eq!(p.shape(), &[batch, 10]);
        for row in p.to_f64_vec().chunks(10) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "softmax rows sum to 1");
        }
    }
    let too_big = Tensor::zeros(sovc_ir::DType::F32, &[65, 64]);
    let err = sovc_ir::interp::run(&m.graph, &m.weights, &BTreeMap::from([("x".to_string(), too_big)]))
        .expect_err("bound is 64");
    assert!(err.to_string().contains("exceeds its bound"), "{err}");
}
