//! The `metal` target: every real model compiles to compute shaders, written once as WGSL and
//! translated by naga to Metal Shading Language and SPIR-V; every SPIR-V module passes Khronos'
//! `spirv-val` for Vulkan 1.1 (Debian's spirv-tools, installed by `scripts/setup-test-deps.sh`), and
//! `sovc emit --target metal` writes the files; every real model runs on the `vulkan` device (Mesa's
//! lavapipe, installed by the setup script) within 1e-4 of the reference (matmuls and convolutions
//! tiled through threadgroup memory with barriers, long rows reduced by threadgroups, attention in key
//! tiles), and with `--precision f16` within the stated f16 tolerance. The MSL is only checked by
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

/// Options for the metal target in `precision`.
fn metal(precision: &str) -> CompileOptions {
    CompileOptions {
        target: "metal".into(),
        metal: sovc_compiler::compile::MetalOptions { precision: Some(precision.into()) },
        ..Default::default()
    }
}

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
    for ((name, m), precision) in models.iter().flat_map(|m| [(m, "fp32"), (m, "f16")]) {
        let a =
            Artifact::from_bytes(&compile(m, &metal(precision)).expect("compiles for metal").bytes).expect("artifact");
        let (plan, spirv) = a.metal_plan().expect("parses").expect("a metal plan");
        for m in &plan.modules {
            let words = &spirv[m.spirv_offset as usize..(m.spirv_offset + m.spirv_len) as usize];
            spirv_val(words, &m.name).unwrap_or_else(|e| panic!("{name}: `{}` fails spirv-val:\n{e}", m.name));
            assert!(m.msl.contains("kernel void main_(") && m.msl.contains("[[buffer("), "{name}: {}", m.msl);
            // One length per MSL `threadgroup` argument, for the Metal device to set by index.
            let args = m.msl.matches(", threadgroup ").count();
            assert_eq!(args, m.threadgroup_vars.len(), "{name}: `{}`", m.name);
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
            "{name} ({precision}): {} shaders pass spirv-val ({} words of SPIR-V); {} groups on the host",
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

/// How a model compiled for metal in `precision` and run on the `vulkan` device (lavapipe in CI) compares
/// with the reference: the largest error relative to the largest reference output, the smallest PCC
/// over the outputs, and the device's name.
fn on_vulkan(
    m: &sovc_ir::Model,
    feeds: &std::collections::BTreeMap<String, sovc_ir::Tensor>,
    precision: &str,
) -> (f64, f64, String) {
    let a = Artifact::from_bytes(&compile(m, &metal(precision)).expect("compiles").bytes).expect("artifact");
    assert_eq!(sovc_runtime::Device::default_for(&a), sovc_runtime::Device::Vulkan);
    let s = sovc_runtime::Session::new(&a, sovc_runtime::Device::Vulkan)
        .expect("a Vulkan device (scripts/setup-test-deps.sh installs lavapipe)");
    let name = s.vulkan_model().expect("model").device_name.clone();
    let got = s.run(feeds).expect("runs on vulkan");
    let want = sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference)
        .expect("session")
        .run(feeds)
        .expect("reference");
    let (mut worst, mut pcc) = (0f64, 1f64);
    for (k, w) in &want {
        let scale = w.to_f64_vec().iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
        worst = worst.max(sovc_tests::max_abs_diff(&got[k], w) / scale);
        pcc = pcc.min(sovc_compiler::tensix_report::pcc(&got[k].to_f64_vec(), &w.to_f64_vec()));
    }
    (worst, pcc, name)
}

/// The encoder layer's input.
fn encoder_input() -> std::collections::BTreeMap<String, sovc_ir::Tensor> {
    let x = sovc_ir::Tensor::from_vec(
        &[1, 16, 64],
        (0..1024).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect::<Vec<f32>>(),
    )
    .expect("len");
    [("x".to_string(), x)].into_iter().collect()
}

/// The stated f16 tolerance (README, "The metal target, measured"). `--precision f16` rounds every
/// contraction and attention operand to f16 (unit roundoff 2^-11 against f32's 2^-24: 2^13 times
/// larger), products and sums stay f32. So a model's f16 error is bounded by its f32 error scaled by
/// [`F16_OVER_F32`] (half that ratio; how much a model amplifies rounding is its own), or by
/// [`F16_MAX_ERROR`] of its largest output when that is larger, with a PCC of at least [`F16_MIN_PCC`].
const F16_OVER_F32: f64 = 4096.0;
const F16_MAX_ERROR: f64 = 5e-3;
const F16_MIN_PCC: f64 = 0.99;

/// Every real model (and the encoder layer) on lavapipe in fp32 (within 1e-4 of its largest output)
/// and in f16 (within the stated tolerance).
#[test]
fn every_real_model_runs_on_vulkan_in_fp32_and_f16_and_matches_the_reference() {
    let check = |name: &str, m: &sovc_ir::Model, feeds: &std::collections::BTreeMap<String, sovc_ir::Tensor>| {
        let t = std::time::Instant::now();
        let (err32, _, device) = on_vulkan(m, feeds, "fp32");
        let t32 = t.elapsed().as_secs_f64();
        let (err16, pcc16, _) = on_vulkan(m, feeds, "f16");
        eprintln!(
            "{name} on {device}: max error / largest output: fp32 {err32:.2e} ({t32:.1} s), f16 {err16:.2e} = {:.0} x fp32, PCC {pcc16:.6} ({:.1} s)",
            err16 / err32.max(1e-30),
            t.elapsed().as_secs_f64() - t32
        );
        assert!(err32 < 1e-4, "{name} fp32: {err32}");
        assert!(
            err16 <= F16_MAX_ERROR.max(F16_OVER_F32 * err32) && pcc16 >= F16_MIN_PCC,
            "{name} f16: {err16} (fp32 {err32}), PCC {pcc16}"
        );
    };
    check("encoder layer", &sovc_models::builtin::encoder_layer(16, 64, 4), &encoder_input());
    let root = sovc_tests::generated_models();
    if !sovc_tests::require_generated(&root) {
        return;
    }
    for name in REAL_MODELS {
        let dir = root.join(name);
        let m = sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports");
        let feeds = sovc_runtime::read_npy_dir(&dir, "input.").expect("inputs");
        check(name, &m, &feeds);
    }
}

#[test]
fn f16_matmuls_on_vulkan_equal_the_product_of_the_rounded_operands() {
    use sovc_runtime::cuda::emu::{f16_to_f32, f32_to_f16};
    // Ragged on every side of the 16x16 tile; some of A's elements are f16 subnormals (below 2^-14),
    // which a device that flushes them to zero would lose.
    let (m, k, n) = (70, 37, 90);
    let model = sovc_models::builtin::matmul(m, k, n);
    let a: Vec<f32> = (0..m * k)
        .map(|i| {
            if i % 11 == 0 {
                2.5e-5 * (1 + i % 3) as f32
            } else {
                ((i * 37 % 101) as f32 / 50.0) - 1.0 + 1e-3 * (i % 7) as f32
            }
        })
        .collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 / 40.0) - 1.2 + 1e-3 * (i % 5) as f32).collect();
    let feeds = [
        ("a".to_string(), sovc_ir::Tensor::from_vec(&[m, k], a.clone()).expect("a")),
        ("b".to_string(), sovc_ir::Tensor::from_vec(&[k, n], b.clone()).expect("b")),
    ]
    .into_iter()
    .collect();
    let art = Artifact::from_bytes(&compile(&model, &metal("f16")).expect("compiles").bytes).expect("artifact");
    let got = sovc_runtime::Session::new(&art, sovc_runtime::Device::Vulkan)
        .expect("a Vulkan device")
        .run(&feeds)
        .expect("runs")["c"]
        .to_f64_vec();
    let round = |x: f32| f16_to_f32(f32_to_f16(x)) as f64;
    let (mut exact_err, mut f32_err) = (0f64, 0f64);
    for i in 0..m {
        for j in 0..n {
            let rounded: f64 = (0..k).map(|p| round(a[i * k + p]) * round(b[p * n + j])).sum();
            let full: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
            exact_err = exact_err.max((got[i * n + j] - rounded).abs());
            f32_err = f32_err.max((got[i * n + j] - full).abs());
        }
    }
    eprintln!("f16 {m}x{k}x{n} on vulkan: vs the rounded operands' product {exact_err:.2e}, vs f32 {f32_err:.2e}");
    // f32 products and sums of 37 terms below 4 in magnitude: a few ulps of f32.
    assert!(exact_err < 5e-6, "{exact_err}");
    // Rounding the operands moves the result, by about 2^-11 of its terms.
    assert!(f32_err > 1e-5 && f32_err < 0.02, "{f32_err}");
}

#[test]
fn the_audit_lists_every_shader_with_its_threadgroups() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    for (precision, tile_bytes, attention_bytes) in [("fp32", 2048, 2048), ("f16", 1024, 1024)] {
        let a = Artifact::from_bytes(&compile(&m, &metal(precision)).expect("compiles").bytes).expect("artifact");
        let text = sovc_compiler::cli::audit_text(&a, &a.plan().expect("plan").expect("a plan"));
        let (plan, _) = a.metal_plan().expect("parses").expect("plan");
        assert_eq!(plan.precision, precision);
        let lines = text.lines().filter(|l| l.contains("shader `") && l.contains("threadgroups of ")).count();
        assert_eq!(lines, plan.modules.len(), "{text}");
        // Matmuls tile through threadgroup memory (16x16 threads, two 16x16 tiles), their bias, GELU
        // and residual epilogues fused (no second shader).
        assert!(text.contains(&format!("threadgroups of 256, {tile_bytes} bytes of threadgroup memory")), "{text}");
        assert!(!text.contains("_epilogue"), "{text}");
        // Layer norms: a threadgroup of 64 per row, reducing through 64 floats of threadgroup memory.
        assert_eq!(text.matches("threadgroups of 64, 256 bytes of threadgroup memory").count(), 2, "{text}");
        // Attention: 32 query rows per threadgroup, a tile of 16 keys of K and V (d = dv = 16).
        assert!(text.contains(&format!("128 threads in 4x1 threadgroups of 32, {attention_bytes} bytes")), "{text}");
        assert!(text.contains("threadgroups of 64, 0 bytes of threadgroup memory"), "{text}");
    }
}
