//! The `metal` target: every real model compiles to compute shaders, written once as WGSL and
//! translated by naga to Metal Shading Language and SPIR-V; every SPIR-V module passes Khronos'
//! `spirv-val` for Vulkan 1.1 (Debian's spirv-tools, installed by `scripts/setup-test-deps.sh`), and
//! `sovc emit --target metal` writes the files; every real model runs on the `vulkan` device (Mesa's
//! lavapipe, installed by the setup script) within 1e-4 of the reference, matmuls and convolutions
//! tiled through threadgroup memory with barriers. The MSL is only checked by
//! naga's validation and snapshots: no Metal compiler runs on Linux.

use sovc_compiler::compile::{compile, CompileOptions};
use sovc_runtime::metal::MetalStep;
use sovc_runtime::Artifact;
use std::process::Command;

/// The generated real models every test here covers.
const REAL_MODELS: [&str; 8] = [
    "gpt2_decoder",
    "bert_encoder",
    "squeezenet1_1",
    "resnet18",
    "mobilenet_v2",
    "efficientnet_b0",
    "resnet50",
    "inception_v3",
];

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
        for name in REAL_MODELS {
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

/// Generated model `name` (or the encoder layer) compiled for metal and run on the `vulkan` device
/// (lavapipe in CI) against the reference: the largest error relative to the largest reference output.
fn on_vulkan(m: &sovc_ir::Model, feeds: &std::collections::BTreeMap<String, sovc_ir::Tensor>) -> (f64, String) {
    let opts = CompileOptions { target: "metal".into(), ..Default::default() };
    let a = Artifact::from_bytes(&compile(m, &opts).expect("compiles").bytes).expect("artifact");
    assert_eq!(sovc_runtime::Device::default_for(&a), sovc_runtime::Device::Vulkan);
    let s = sovc_runtime::Session::new(&a, sovc_runtime::Device::Vulkan)
        .expect("a Vulkan device (scripts/setup-test-deps.sh installs lavapipe)");
    let name = s.vulkan_model().expect("model").device_name.clone();
    let got = s.run(feeds).expect("runs on vulkan");
    let want = sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference)
        .expect("session")
        .run(feeds)
        .expect("reference");
    let mut worst = 0f64;
    for (k, w) in &want {
        let scale = w.to_f64_vec().iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
        worst = worst.max(sovc_tests::max_abs_diff(&got[k], w) / scale);
    }
    (worst, name)
}

#[test]
fn every_real_model_runs_on_vulkan_and_matches_the_reference() {
    let enc = sovc_models::builtin::encoder_layer(16, 64, 4);
    let x = sovc_ir::Tensor::from_vec(
        &[1, 16, 64],
        (0..1024).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect::<Vec<f32>>(),
    )
    .expect("len");
    let (err, device) = on_vulkan(&enc, &[("x".to_string(), x)].into_iter().collect());
    eprintln!("encoder layer on {device}: max error {err:.2e} of the largest output");
    assert!(err < 1e-4, "{err}");
    let root = sovc_tests::generated_models();
    if !sovc_tests::require_generated(&root) {
        return;
    }
    for name in REAL_MODELS {
        let dir = root.join(name);
        let m = sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports");
        let feeds = sovc_runtime::read_npy_dir(&dir, "input.").expect("inputs");
        let t = std::time::Instant::now();
        let (err, device) = on_vulkan(&m, &feeds);
        eprintln!("{name} on {device}: max error {err:.2e} of the largest output ({:.1} s)", t.elapsed().as_secs_f64());
        assert!(err < 1e-4, "{name}: {err}");
    }
}

#[test]
fn the_audit_lists_every_shader_with_its_threadgroups() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let opts = CompileOptions { target: "metal".into(), ..Default::default() };
    let a = Artifact::from_bytes(&compile(&m, &opts).expect("compiles").bytes).expect("artifact");
    let text = sovc_compiler::cli::audit_text(&a, &a.plan().expect("plan").expect("a plan"));
    let (plan, _) = a.metal_plan().expect("parses").expect("plan");
    let lines = text.lines().filter(|l| l.contains("shader `") && l.contains("threadgroups of ")).count();
    assert_eq!(lines, plan.modules.len(), "{text}");
    // Matmuls tile through threadgroup memory (16x16 threads, two 16x16 f32 tiles); the rest do not.
    assert!(text.contains("threadgroups of 256, 2048 bytes of threadgroup memory"), "{text}");
    assert!(text.contains("threadgroups of 64, 0 bytes of threadgroup memory"), "{text}");
}
