//! Runs the fuzz targets' bodies over deterministic mutations of real inputs, so every CI run exercises
//! the parsers' error paths; `cargo fuzz` (see `fuzz/`) explores further.

use sovc_tests::fuzz;

#[test]
fn onnx_import_survives_mutations() {
    let root = sovc_tests::root();
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    if let Some(dir) = sovc_tests::conformance::node_test_dir(&root) {
        for t in [
            "test_conv_with_strides_padding",
            "test_gemm_default_single_elem_vector_bias",
            "test_reshape_reordered_all_dims",
            "test_slice_neg_steps",
            "test_layer_normalization_2d_axis0",
        ] {
            if let Ok(b) = std::fs::read(dir.join(t).join("model.onnx")) {
                seeds.push(b);
            }
        }
    }
    let gpt2 = sovc_tests::generated_models().join("gpt2_decoder/model.onnx");
    if let Ok(b) = std::fs::read(gpt2) {
        seeds.push(b[..b.len().min(64 << 10)].to_vec());
    }
    assert!(
        !seeds.is_empty() || std::env::var("SOVC_SKIP_GENERATED").is_ok_and(|v| v == "1"),
        "no seed models: run scripts/setup-test-deps.sh"
    );
    for s in &seeds {
        fuzz::onnx_import(s);
        for m in fuzz::mutations(s, 400) {
            fuzz::onnx_import(&m);
        }
    }
}

#[test]
fn sov_parser_survives_mutations() {
    for name in sovc_models::builtin::NAMES {
        let text = sovc_ir::text::print(&sovc_models::builtin::by_name(name).expect("known").graph);
        fuzz::sov_parse(text.as_bytes());
        for m in fuzz::mutations(text.as_bytes(), 400) {
            fuzz::sov_parse(&m);
        }
    }
}

#[test]
fn artifact_reader_survives_mutations() {
    let m = sovc_models::builtin::mlp();
    let opts = sovc_compiler::compile::CompileOptions { target: "null".into(), optimize: true, ..Default::default() };
    let bytes = sovc_compiler::compile::compile(&m, &opts).expect("compiles").bytes;
    fuzz::artifact(&bytes);
    for m in fuzz::mutations(&bytes, 300) {
        fuzz::artifact(&m);
    }
}

#[test]
fn weight_readers_survive_mutations() {
    let t = sovc_ir::Tensor::from_vec(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).expect("len");
    let st = sovc_models::weights::safetensors_bytes(&std::collections::BTreeMap::from([("w".to_string(), &t)]))
        .expect("serializes");
    assert_eq!(sovc_models::weights::parse_safetensors(&st).expect("parses")["w"], t);
    let npy = sovc_runtime::npy_bytes(&t).expect("serializes");
    assert_eq!(sovc_runtime::parse_npy(&npy).expect("parses"), t);
    for seed in [st, npy] {
        for m in fuzz::mutations(&seed, 1000) {
            fuzz::weight_files(&m);
        }
    }
}
