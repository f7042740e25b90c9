//! The `metal` target: every real model compiles to compute shaders, written once as WGSL and
//! translated by naga to Metal Shading Language and SPIR-V; every SPIR-V module passes Khronos'
//! `spirv-val` for Vulkan 1.1 (Debian's spirv-tools, installed by `scripts/setup-test-deps.sh`), and
//! `sovc emit --target metal` writes the files. No device runs them yet (the Vulkan device on lavapipe
//! is the next step), so nothing here checks the shaders' results.

use sovc_compiler::compile::{compile, CompileOptions};
use sovc_runtime::metal::MetalStep;
use sovc_runtime::Artifact;
use std::process::Command;

fn spirv_val_present() -> bool {
    Command::new("spirv-val").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `spirv-val` on `words`: its complaint, if any.
fn spirv_val(words: &[u32], tag: &str) -> Result<(), String> {
    let p = std::env::temp_dir().join(format!("sovc-spv-{}-{tag}.spv", std::process::id()));
    std::fs::write(&p, words.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>()).expect("write");
    let o = Command::new("spirv-val").args(["--target-env", "vulkan1.1"]).arg(&p).output().expect("spirv-val runs");
    std::fs::remove_file(&p).ok();
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
    }
}

#[test]
fn every_real_model_compiles_to_shaders_whose_spirv_validates() {
    assert!(spirv_val_present(), "spirv-val is missing: run scripts/setup-test-deps.sh");
    let root = sovc_tests::generated_models();
    let mut models: Vec<(String, sovc_ir::Model)> =
        vec![("encoder_layer".into(), sovc_models::builtin::encoder_layer(16, 64, 4))];
    if sovc_tests::require_generated(&root) {
        for name in [
            "gpt2_decoder",
            "bert_encoder",
            "squeezenet1_1",
            "resnet18",
            "mobilenet_v2",
            "efficientnet_b0",
            "resnet50",
            "inception_v3",
        ] {
            models.push((
                name.into(),
                sovc_models::load_model(&root.join(name).join("model.onnx"), &Default::default()).expect("imports"),
            ));
        }
    }
    for (name, m) in &models {
        let opts = CompileOptions { target: "metal".into(), ..Default::default() };
        let a = Artifact::from_bytes(&compile(m, &opts).expect("compiles for metal").bytes).expect("artifact");
        let (plan, spirv) = a.metal_plan().expect("parses").expect("a metal plan");
        for m in &plan.modules {
            let words = &spirv[m.spirv_offset as usize..(m.spirv_offset + m.spirv_len) as usize];
            spirv_val(words, &m.name).unwrap_or_else(|e| panic!("{name}: `{}` fails spirv-val:\n{e}", m.name));
            assert!(m.msl.contains("kernel void main_(") && m.msl.contains("[[buffer("), "{name}: {}", m.msl);
        }
        let host: Vec<&str> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                MetalStep::Reference { reason, .. } => Some(reason.as_str()),
                _ => None,
            })
            .collect();
        eprintln!(
            "{name}: {} shaders pass spirv-val ({} words of SPIR-V); {} groups on the host",
            plan.modules.len(),
            spirv.len(),
            host.len()
        );
        assert!(!plan.modules.is_empty());
        assert!(
            host.iter().all(|r| !r.contains("metal target")),
            "{name}: the shader writer refused a kernel: {host:?}"
        );
    }
}

#[test]
fn a_planted_spirv_error_is_caught_by_spirv_val() {
    assert!(spirv_val_present(), "spirv-val is missing: run scripts/setup-test-deps.sh");
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let opts = CompileOptions { target: "metal".into(), ..Default::default() };
    let a = Artifact::from_bytes(&compile(&m, &opts).expect("compiles").bytes).expect("artifact");
    let (plan, spirv) = a.metal_plan().expect("parses").expect("plan");
    let m0 = &plan.modules[0];
    let mut words = spirv[m0.spirv_offset as usize..(m0.spirv_offset + m0.spirv_len) as usize].to_vec();
    assert!(spirv_val(&words, "good").is_ok());
    // The header's id bound (word 3) below the ids the module uses.
    words[3] = 2;
    let e = spirv_val(&words, "bad").expect_err("an invalid id bound");
    assert!(!e.is_empty());
}

#[test]
fn emit_writes_msl_spirv_and_wgsl_files() {
    let d = std::env::temp_dir().join(format!("sovc-metal-emit-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("dir");
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let opts = CompileOptions { target: "metal".into(), ..Default::default() };
    let path = d.join("enc.sovc");
    std::fs::write(&path, compile(&m, &opts).expect("compiles").bytes).expect("write");
    use clap::Parser;
    let out = d.join("out");
    let cli = sovc_compiler::cli::Cli::try_parse_from([
        "sovc",
        "emit",
        path.to_str().expect("utf8"),
        "--target",
        "metal",
        "-o",
        out.to_str().expect("utf8"),
    ])
    .expect("arguments");
    sovc_compiler::cli::run(cli).expect("emit");
    let files: Vec<String> = std::fs::read_dir(d.join("out/metal"))
        .expect("metal folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    for ext in [".metal", ".spv", ".wgsl"] {
        assert!(files.iter().any(|f| f.ends_with(ext)), "{files:?}");
    }
    assert!(files.contains(&"plan.json".to_string()));
    std::fs::remove_dir_all(&d).ok();
}
