//! Malformed ONNX files end with an error that says what is wrong, never a panic or an out-of-memory:
//! truncation, wrong wire types, cycles, absurd dimensions, dangling references, escaping external data.

use prost::Message;
use sovc_models::onnx::proto::{
    tensor_proto::DataType, tensor_shape_proto, type_proto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use sovc_models::onnx::{import_bytes, ImportOptions};

fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let shape = TensorShapeProto {
        dim: dims
            .iter()
            .map(|&d| tensor_shape_proto::Dimension {
                value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                ..Default::default()
            })
            .collect(),
    };
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        name: Some(format!("{op}_node")),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        graph: Some(GraphProto {
            node: nodes,
            initializer: inits,
            input: inputs,
            output: outputs,
            name: Some("g".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn weight(name: &str, dims: &[i64], vals: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: vals,
        ..Default::default()
    }
}

fn good() -> ModelProto {
    model(
        vec![node("Add", &["x", "w"], &["y"]), node("Relu", &["y"], &["z"])],
        vec![weight("w", &[4], vec![1.0, -2.0, 3.0, -4.0])],
        vec![value_info("x", &[2, 4])],
        vec![value_info("z", &[2, 4])],
    )
}

fn import_err(m: &ModelProto) -> String {
    import_bytes(&m.encode_to_vec(), "test.onnx", &ImportOptions::default()).expect_err("must fail").to_string()
}

#[test]
fn the_good_model_imports() {
    let m = import_bytes(&good().encode_to_vec(), "test.onnx", &ImportOptions::default()).expect("imports");
    assert_eq!(m.graph.nodes.len(), 2);
}

#[test]
fn every_truncation_fails_cleanly() {
    let bytes = good().encode_to_vec();
    let mut errors = 0;
    for len in 0..bytes.len() {
        // Must return (Ok for the rare cut that leaves a valid prefix, Err otherwise), never panic.
        if import_bytes(&bytes[..len], "t.onnx", &ImportOptions::default()).is_err() {
            errors += 1;
        }
    }
    assert!(errors >= bytes.len() * 9 / 10, "only {errors} of {} truncations were rejected", bytes.len());
    let err = import_bytes(&bytes[..bytes.len() - 1], "t.onnx", &ImportOptions::default())
        .expect_err("cut inside the last field");
    assert!(err.to_string().contains("not a valid ONNX model"), "{err}");
}

#[test]
fn wrong_wire_type_is_a_decode_error() {
    // Field 7 (graph) written as a varint instead of a length-delimited message.
    let bytes = [0x08, 0x08, 0x38, 0x05];
    let err = import_bytes(&bytes, "t.onnx", &ImportOptions::default()).expect_err("bad wire type").to_string();
    assert!(err.contains("not a valid ONNX model"), "{err}");
    // Random bytes.
    let err = import_bytes(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "t.onnx", &ImportOptions::default())
        .expect_err("garbage");
    assert!(err.to_string().contains("not a valid ONNX model"), "{err}");
}

#[test]
fn a_cycle_names_the_node_and_value() {
    let m = model(
        vec![node("Add", &["x", "b"], &["a"]), node("Relu", &["a"], &["b"])],
        vec![],
        vec![value_info("x", &[4])],
        vec![value_info("b", &[4])],
    );
    let err = import_err(&m);
    assert!(err.contains("Add_node") && err.contains("`b`"), "{err}");
}

#[test]
fn a_missing_initializer_is_named() {
    let m = model(
        vec![node("Add", &["x", "nowhere"], &["y"])],
        vec![],
        vec![value_info("x", &[4])],
        vec![value_info("y", &[4])],
    );
    let err = import_err(&m);
    assert!(err.contains("nowhere") && err.contains("Add_node"), "{err}");
}

#[test]
fn terabyte_dimensions_are_refused_before_allocating() {
    let huge = TensorProto {
        name: Some("w".into()),
        dims: vec![1 << 20, 1 << 20, 1 << 20],
        data_type: Some(DataType::Float as i32),
        ..Default::default()
    };
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![huge],
        vec![value_info("x", &[4])],
        vec![value_info("y", &[4])],
    );
    let err = import_err(&m);
    assert!(err.contains("would need more than"), "{err}");
    let overflow = TensorProto {
        name: Some("w".into()),
        dims: vec![i64::MAX, i64::MAX],
        data_type: Some(DataType::Float as i32),
        ..Default::default()
    };
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![overflow],
        vec![value_info("x", &[4])],
        vec![value_info("y", &[4])],
    );
    assert!(import_err(&m).contains("overflow"));
    let negative = weight("w", &[-4], vec![]);
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![negative],
        vec![value_info("x", &[4])],
        vec![value_info("y", &[4])],
    );
    assert!(import_err(&m).contains("negative dimension"));
}

#[test]
fn a_huge_constant_of_shape_is_not_folded_or_allocated() {
    let shape = TensorProto {
        name: Some("s".into()),
        dims: vec![3],
        data_type: Some(DataType::Int64 as i32),
        int64_data: vec![1 << 20, 1 << 20, 1 << 20],
        ..Default::default()
    };
    let m = model(
        vec![node("ConstantOfShape", &["s"], &["y"])],
        vec![shape],
        vec![],
        vec![value_info("y", &[1 << 20, 1 << 20, 1 << 20])],
    );
    let imported =
        import_bytes(&m.encode_to_vec(), "t.onnx", &ImportOptions::default()).expect("imports without allocating");
    let err =
        sovc_ir::interp::run(&imported.graph, &imported.weights, &Default::default()).expect_err("too large to run");
    assert!(err.to_string().contains("would need more than"), "{err}");
}

#[test]
fn data_length_mismatches_are_named() {
    let short = weight("w", &[4], vec![1.0, 2.0]);
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![short],
        vec![value_info("x", &[4])],
        vec![value_info("y", &[4])],
    );
    let err = import_err(&m);
    assert!(err.contains("tensor `w`") && err.contains("holds 2 elements"), "{err}");
    let raw = TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(DataType::Float as i32),
        raw_data: Some(vec![0; 15]),
        ..Default::default()
    };
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![raw],
        vec![value_info("x", &[4])],
        vec![value_info("y", &[4])],
    );
    assert!(import_err(&m).contains("raw data has 15 bytes"));
}

#[test]
fn external_data_cannot_escape_or_overrun() {
    let dir = std::env::temp_dir().join(format!("sovc-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("w.bin"), [0u8; 8]).expect("write");
    let ext = |loc: &str, offset: &str| TensorProto {
        name: Some("w".into()),
        dims: vec![4],
        data_type: Some(DataType::Float as i32),
        data_location: Some(1),
        external_data: vec![
            StringStringEntryProto { key: Some("location".into()), value: Some(loc.into()) },
            StringStringEntryProto { key: Some("offset".into()), value: Some(offset.into()) },
        ],
        ..Default::default()
    };
    let opts = ImportOptions { base_dir: Some(dir.clone()), ..Default::default() };
    for (loc, off, want) in [
        ("../../etc/passwd", "0", "inside the model's folder"),
        ("w.bin", "0", "past the end"),
        ("w.bin", "x", "bad offset"),
        ("absent.bin", "0", "absent.bin"),
    ] {
        let m = model(
            vec![node("Add", &["x", "w"], &["y"])],
            vec![ext(loc, off)],
            vec![value_info("x", &[4])],
            vec![value_info("y", &[4])],
        );
        let err = import_bytes(&m.encode_to_vec(), "t.onnx", &opts).expect_err("bad external data").to_string();
        assert!(err.contains(want), "{loc}: {err}");
    }
    std::fs::write(dir.join("w.bin"), 1.5f32.to_le_bytes().repeat(4)).expect("write");
    let m = model(
        vec![node("Add", &["x", "w"], &["y"])],
        vec![ext("w.bin", "0")],
        vec![value_info("x", &[4])],
        vec![value_info("y", &[4])],
    );
    let ok = import_bytes(&m.encode_to_vec(), "t.onnx", &opts).expect("valid external data");
    assert_eq!(ok.weights.map.values().next().expect("one weight").to_f64_vec(), vec![1.5; 4]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unsupported_ops_name_op_node_and_opset() {
    let m = model(
        vec![node("NonMaxSuppression", &["x"], &["y"])],
        vec![],
        vec![value_info("x", &[4])],
        vec![value_info("y", &[4])],
    );
    let err = import_err(&m);
    assert!(
        err.contains("NonMaxSuppression") && err.contains("NonMaxSuppression_node") && err.contains("opset 17"),
        "{err}"
    );
    let mut custom = node("Foo", &["x"], &["y"]);
    custom.domain = Some("com.example".into());
    let m = model(vec![custom], vec![], vec![value_info("x", &[4])], vec![value_info("y", &[4])]);
    assert!(import_err(&m).contains("com.example"));
}

#[test]
fn bad_types_and_shapes_are_named() {
    let m = model(
        vec![node("MatMul", &["x", "x"], &["y"])],
        vec![],
        vec![value_info("x", &[2, 3])],
        vec![value_info("y", &[2, 3])],
    );
    let err = import_err(&m);
    assert!(err.contains("MatMul_node") && err.contains("contracted dims"), "{err}");
    let m = model(
        vec![node("Relu", &["x"], &["y"])],
        vec![],
        vec![value_info("x", &[4])],
        vec![value_info("missing", &[4])],
    );
    assert!(import_err(&m).contains("`missing`"));
    let mut no_opset = good();
    no_opset.opset_import.clear();
    assert!(import_err(&no_opset).contains("opset"));
    let mut future = good();
    future.opset_import[0].version = Some(99);
    assert!(import_err(&future).contains("opset 99"));
}
