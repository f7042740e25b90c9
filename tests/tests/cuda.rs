//! The `cuda` target: every real model compiles to PTX, and every module NVIDIA's `ptxas` (installed by
//! `scripts/setup-test-deps.sh` into `.deps/cuda`) assembles for sm_80 and sm_90, with its register and
//! spill counts; a planted PTX error is rejected. Executing the PTX (the emulator device) is not written
//! yet.

use sovc_compiler::compile::{compile, CompileOptions};
use sovc_runtime::cuda::{CudaPlan, CudaStep};
use sovc_runtime::Artifact;
use std::path::PathBuf;
use std::process::Command;

fn ptxas() -> PathBuf {
    let p = sovc_tests::root().join(".deps/cuda/nvidia/cuda_nvcc/bin/ptxas");
    assert!(sovc_tests::require_generated(&p), "ptxas is missing");
    p
}

fn plan_for(m: &sovc_ir::Model, arch: &str) -> CudaPlan {
    let opts = CompileOptions {
        target: "cuda".into(),
        optimize: true,
        tensix: Default::default(),
        cuda_arch: Some(arch.into()),
    };
    let bytes = compile(m, &opts).unwrap_or_else(|e| panic!("compile for {arch}: {e}")).bytes;
    Artifact::from_bytes(&bytes).expect("artifact").cuda_plan().expect("plan parses").expect("a cuda plan")
}

/// Assembles `ptx` for `arch`; the `ptxas -v` report or its error.
fn assemble(ptx: &str, arch: &str, tag: &str) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("sovc-ptx-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let src = dir.join("k.ptx");
    std::fs::write(&src, ptx).expect("write");
    let out = Command::new(ptxas())
        .args(["-v", &format!("-arch={arch}"), "-o"])
        .arg(dir.join("k.cubin"))
        .arg(&src)
        .output()
        .expect("ptxas runs");
    std::fs::remove_dir_all(&dir).ok();
    let text = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn every_real_model_compiles_to_ptx_that_ptxas_assembles_for_sm_80_and_sm_90() {
    let root = sovc_tests::generated_models();
    if !sovc_tests::require_generated(&root) {
        return;
    }
    let mut models: Vec<(String, sovc_ir::Model)> =
        vec![("encoder_layer".into(), sovc_models::builtin::encoder_layer(16, 64, 4))];
    for name in [
        "resnet18",
        "squeezenet1_1",
        "efficientnet_b0",
        "mobilenet_v2",
        "bert_encoder",
        "gpt2_decoder",
        "resnet50",
        "inception_v3",
    ] {
        let dir = root.join(name);
        assert!(sovc_tests::require_generated(&dir));
        models.push((
            name.into(),
            sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports"),
        ));
    }
    for (name, m) in &models {
        for arch in sovc_target_cuda::ARCHS {
            let plan = plan_for(m, arch);
            assert_eq!(plan.arch, arch);
            let mut regs = 0u32;
            let mut spills = 0usize;
            for module in &plan.modules {
                assert!(module.ptx.contains(&format!(".target {arch}")));
                let report = assemble(&module.ptx, arch, &module.name)
                    .unwrap_or_else(|e| panic!("{name} {arch}: ptxas rejects module {}:\n{e}", module.name));
                for line in report.lines() {
                    if let Some(r) = line.split("Used ").nth(1).and_then(|r| r.split(' ').next()) {
                        regs = regs.max(r.parse().unwrap_or(0));
                    }
                    if line.contains("bytes spill stores") && !line.contains(" 0 bytes spill stores") {
                        spills += 1;
                    }
                }
            }
            let launches = plan.steps.iter().filter(|s| matches!(s, CudaStep::Launch { .. })).count();
            let reference: Vec<&str> = plan
                .steps
                .iter()
                .filter_map(|s| match s {
                    CudaStep::Reference { reason, .. } => Some(reason.as_str()),
                    _ => None,
                })
                .collect();
            eprintln!(
                "{name} {arch}: {} modules, {launches} launches pass ptxas (at most {regs} registers, {spills} entries spill); {} groups on the reference path",
                plan.modules.len(),
                reference.len()
            );
            // Every group the kernel IR covers is written as PTX: no PTX writer gaps.
            assert!(
                reference.iter().all(|r| !r.contains("cuda target")),
                "{name} {arch}: the PTX writer refused a lowered kernel: {reference:?}"
            );
            assert!(!plan.modules.is_empty());
        }
    }
}

#[test]
fn a_planted_ptx_error_is_rejected_by_ptxas() {
    let plan = plan_for(&sovc_models::builtin::encoder_layer(16, 64, 4), "sm_80");
    let ptx = &plan.modules[0].ptx;
    assert!(assemble(ptx, "sm_80", "good").is_ok());
    // A register the entry never declares.
    let bad = ptx.replacen("add.s64 %rd1, %rd1, %rd2;", "add.s64 %rd1, %rd1, %rd99999;", 1);
    assert_ne!(&bad, ptx, "the planted edit applies");
    let e = assemble(&bad, "sm_80", "bad").expect_err("ptxas rejects it");
    assert!(e.contains("%rd99999"), "{e}");
    // An instruction sm_80 does not have.
    let bad = ptx.replacen("ret;", "setmaxnreg.inc.sync.aligned.u32 64;\n    ret;", 1);
    assert!(assemble(&bad, "sm_80", "arch").is_err());
}

#[test]
fn cuda_targets_refuse_unknown_architectures_and_symbolic_shapes() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let opts = CompileOptions {
        target: "cuda".into(),
        optimize: true,
        tensix: Default::default(),
        cuda_arch: Some("sm_70".into()),
    };
    let e = compile(&m, &opts).err().expect("refused").to_string();
    assert!(e.contains("unknown CUDA architecture `sm_70`"), "{e}");
}
