//! The `.sovc` artifact and the runtime: byte-identical rebuilds, compile-then-run equal to the
//! interpreter, every corruption ends in an error naming what is wrong, and the runtime's dependency tree
//! holds no compiler.

use sovc_compiler::compile::{compile, CompileOptions};
use sovc_ir::Tensor;
use sovc_runtime::{Artifact, ArtifactError, Device, Session};
use std::collections::BTreeMap;

fn null(optimize: bool) -> CompileOptions {
    CompileOptions { target: "null".into(), optimize, ..Default::default() }
}

fn decoder_feeds() -> BTreeMap<String, Tensor> {
    BTreeMap::from([(
        "x".to_string(),
        Tensor::from_vec(&[1, 16, 64], sovc_models::builtin::det_values(1024, 3, 1.0)).expect("len"),
    )])
}

#[test]
fn compiling_twice_gives_identical_bytes() {
    let m = sovc_models::builtin::decoder_layer(16, 64, 4);
    let a = compile(&m, &null(true)).expect("compiles").bytes;
    let b = compile(&sovc_models::builtin::decoder_layer(16, 64, 4), &null(true)).expect("compiles").bytes;
    assert_eq!(a, b);
    let c = std::thread::spawn(move || compile(&m, &null(true)).expect("compiles").bytes).join().expect("thread");
    assert_eq!(a, c);
}

#[test]
fn compiled_artifacts_run_like_the_interpreter() {
    for optimize in [false, true] {
        let m = sovc_models::builtin::decoder_layer(16, 64, 4);
        let bytes = compile(&m, &null(optimize)).expect("compiles").bytes;
        let a = Artifact::from_bytes(&bytes).expect("verifies");
        let s = Session::new(&a, Device::Reference).expect("loads");
        let feeds = decoder_feeds();
        let got = s.run(&feeds).expect("runs");
        let want = sovc_ir::interp::run(&m.graph, &m.weights, &feeds).expect("runs");
        assert!(sovc_tests::max_abs_diff(&got["y"], &want["y"]) < 1e-4);
    }
    let dir = sovc_tests::generated_models().join("gpt2_decoder");
    if !sovc_tests::require_generated(&dir) {
        return;
    }
    let m = sovc_models::onnx::import_file(&dir.join("model.onnx"), &Default::default()).expect("imports");
    let a = Artifact::from_bytes(&compile(&m, &null(true)).expect("compiles").bytes).expect("verifies");
    let ids = sovc_runtime::read_npy(&dir.join("input.input_ids.npy")).expect("npy");
    let got = Session::new(&a, Device::Reference)
        .expect("loads")
        .run(&BTreeMap::from([("input_ids".into(), ids)]))
        .expect("runs");
    let want = sovc_runtime::read_npy(&dir.join("output.last_hidden_state.npy")).expect("npy");
    assert!(sovc_tests::max_abs_diff(&got["last_hidden_state"], &want) < 1e-4);
}

#[test]
fn sections_and_weights_are_aligned_for_mmap() {
    let bytes = compile(&sovc_models::builtin::encoder_layer(16, 64, 4), &null(false)).expect("compiles").bytes;
    let a = Artifact::from_bytes(&bytes).expect("verifies");
    assert!(a.sections.iter().all(|s| s.offset.is_multiple_of(64)));
    let w = a.section(sovc_runtime::SectionKind::Weights).expect("weights");
    assert!(a.manifest.weights.iter().all(|e| e.offset.is_multiple_of(64) && (w.offset + e.offset).is_multiple_of(64)));
    assert_eq!(a.manifest.inputs[0].name, "x");
    assert_eq!(a.manifest.inputs[0].ty, "f32[1,16,64]");
}

#[test]
fn every_corruption_is_caught() {
    let bytes = compile(&sovc_models::builtin::mlp(), &null(true)).expect("compiles").bytes;
    let a = Artifact::from_bytes(&bytes).expect("verifies");
    // Truncation anywhere: an error, never a panic.
    for len in (0..bytes.len()).step_by(7) {
        assert!(Artifact::from_bytes(&bytes[..len]).is_err(), "truncated to {len} bytes was accepted");
    }
    // A flipped bit inside each section names that section.
    for s in &a.sections {
        let mut b = bytes.clone();
        b[s.offset as usize + s.data.len() / 2] ^= 0x10;
        assert_eq!(
            Artifact::from_bytes(&b).expect_err("corrupted"),
            ArtifactError::SectionHash { section: s.name.clone() }
        );
    }
    // The section table is covered by the root hash.
    let mut b = bytes.clone();
    b[48 + 4 + 4 + 8 + 8 + 31] ^= 1; // last byte of the first section's hash
    assert!(matches!(Artifact::from_bytes(&b), Err(ArtifactError::SectionHash { .. } | ArtifactError::RootHash)));
    let mut b = bytes.clone();
    b[20] ^= 1; // root hash itself
    assert_eq!(Artifact::from_bytes(&b).expect_err("root"), ArtifactError::RootHash);
    let mut b = bytes.clone();
    b[8] = 99;
    assert_eq!(Artifact::from_bytes(&b).expect_err("version"), ArtifactError::Version { found: 99 });
    assert_eq!(Artifact::from_bytes(b"PK\x03\x04 not an artifact").expect_err("magic"), ArtifactError::BadMagic);
    let e = a.require_target("blackhole").expect_err("no code");
    assert!(e.to_string().contains("no code for target `blackhole`"), "{e}");
    assert!(Device::parse("tpu").is_err());
    // A null artifact has no Tensix plan or PTX: the simulator and the emulator refuse it by name.
    let e = Session::new(&a, Device::parse("tensix-sim").expect("a device")).err().expect("no plan");
    assert!(e.to_string().contains("no Tensix code"), "{e}");
    let e = Session::new(&a, Device::parse("ptx-emu").expect("a device")).err().expect("no PTX");
    assert!(e.to_string().contains("no PTX; compile it with --target cuda"), "{e}");
    let e = Session::new(&a, Device::parse("rvv-qemu").expect("a device")).err().expect("no RVV code");
    assert!(e.to_string().contains("no RVV code; compile it with --target riscv64-rvv"), "{e}");
    let e = Session::new(&a, Device::parse("vulkan").expect("a device")).err().expect("no shaders");
    assert!(e.to_string().contains("no shaders; compile it with --target metal"), "{e}");
    // The Metal device exists on macOS only; elsewhere it says what to use instead.
    if cfg!(not(target_os = "macos")) {
        let e = Session::new(&a, Device::parse("metal").expect("a device")).err().expect("not on this OS");
        assert!(e.to_string().contains("needs macOS") && e.to_string().contains("--device vulkan"), "{e}");
    }
}

#[test]
fn targets_refuse_symbolic_shapes_and_unknown_names() {
    let m = sovc_models::builtin::mlp();
    // The code generators need static shapes: the mlp's batch is symbolic.
    for t in ["riscv64-rvv", "metal", "cuda"] {
        let e = compile(&m, &CompileOptions { target: t.into(), optimize: true, ..Default::default() })
            .err()
            .expect("symbolic batch");
        assert!(e.to_string().contains("needs static shapes") && e.to_string().contains("--shape x="), "{t}: {e}");
    }
    let e = compile(&m, &CompileOptions { target: "tpu".into(), optimize: true, ..Default::default() })
        .err()
        .expect("unknown");
    assert!(e.to_string().contains("unknown target `tpu`"));
}

/// Architecture invariant: the runtime never depends on the compiler, egg or a code generator.
#[test]
fn runtime_depends_on_no_compiler() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", "sovc-runtime", "-e", "normal", "--prefix", "none", "--offline"])
        .current_dir(sovc_tests::root())
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.contains("sovc-runtime") && tree.contains("sovc-ir"), "{tree}");
    for forbidden in ["sovc-compiler", "sovc-models", "egg ", "cranelift", "inkwell", "melior", "clap "] {
        assert!(
            !tree
                .lines()
                .any(|l| l.starts_with(forbidden.trim()) && l.split_whitespace().next() == Some(forbidden.trim())),
            "runtime depends on {forbidden}:\n{tree}"
        );
    }
}

#[test]
fn padding_overlap_and_duplicates_are_caught() {
    let bytes = compile(&sovc_models::builtin::mlp(), &null(true)).expect("compiles").bytes;
    let a = Artifact::from_bytes(&bytes).expect("verifies");
    // A byte in the padding after the first section.
    let s0 = &a.sections[0];
    let pad = s0.offset as usize + s0.data.len();
    assert!(!pad.is_multiple_of(64), "the first section must leave padding for this test");
    let mut b = bytes.clone();
    b[pad] = 1;
    assert!(matches!(Artifact::from_bytes(&b), Err(ArtifactError::Malformed(m)) if m.contains("padding")));
    // Trailing garbage.
    let mut b = bytes.clone();
    b.extend_from_slice(&[0u8; 64]);
    assert!(Artifact::from_bytes(&b).is_err());
    // Two manifests.
    let m = a.section(sovc_runtime::SectionKind::Manifest).expect("manifest").data.clone();
    let mut builder = sovc_runtime::ArtifactBuilder::new();
    builder.section(sovc_runtime::SectionKind::Manifest, "manifest", m.clone());
    builder.section(sovc_runtime::SectionKind::Manifest, "manifest", m);
    assert!(matches!(Artifact::from_bytes(&builder.build()), Err(ArtifactError::Malformed(e)) if e.contains("twice")));
}

#[test]
fn the_plan_audits_every_kernel() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let m =
        sovc_ir::Model { graph: sovc_ir::decompose::decompose_all(&m.graph).expect("decomposes"), weights: m.weights };
    let a = Artifact::from_bytes(&compile(&m, &null(true)).expect("compiles").bytes).expect("verifies");
    let plan = a.plan().expect("parses").expect("has a plan");
    let s = Session::new(&a, Device::Reference).expect("loads");
    let mut covered: Vec<usize> = plan.kernels.iter().flat_map(|k| k.nodes.iter().map(|n| n.node)).collect();
    covered.sort();
    assert_eq!(covered, (0..s.graph().nodes.len()).collect::<Vec<_>>(), "every node in exactly one kernel");
    // The recognized composites carry the rules that chose them.
    let rules: Vec<&str> =
        plan.kernels.iter().flat_map(|k| k.nodes.iter().flat_map(|n| n.rules.iter().map(|r| r.as_str()))).collect();
    for r in ["layer-norm", "gelu-erf", "attention", "merge-matmuls"] {
        assert!(rules.contains(&r), "{r} missing from the audit: {rules:?}");
    }
    assert!(plan.kernels.iter().any(|k| k.anchor == "attention" && k.flops > 0));
    assert!(plan.kernels.iter().all(|k| k.ir_sha256.len() == 64));
    let total: u64 = plan.kernels.iter().map(|k| k.flops).sum();
    // Two 64x64 and one 64x256/256x64 pair of projections dominate: at least 2*16*64*64*(3+1) + 2*2*16*64*256.
    assert!(total >= 2 * 16 * 64 * 64 * 4 + 2 * 2 * 16 * 64 * 256, "{total}");
    let text = sovc_compiler::cli::audit_text(&a, &plan);
    assert!(text.contains("kernels,") && text.contains("root sha256") && text.contains("<- "), "{text}");
}
