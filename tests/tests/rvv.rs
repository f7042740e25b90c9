//! The `riscv64-rvv` target: sovc's RISC-V encoder agrees with GNU `as` on every instruction it writes;
//! models compile to vector-length-agnostic RVV code that `qemu-riscv64` runs (through
//! `sovc-rvv-loader`, built by `scripts/setup-test-deps.sh`) at VLEN 128, 256 and 512 with the same
//! bytes, matching the reference interpreter; the same code on a CPU without the V extension traps.

use sovc_compiler::compile::{compile, CompileOptions};
use sovc_runtime::rvv::{QemuOptions, RvvStep};
use sovc_runtime::{Artifact, Device, Session};
use std::collections::BTreeMap;
use std::process::Command;

fn rvv_options() -> CompileOptions {
    CompileOptions { target: "riscv64-rvv".into(), ..Default::default() }
}

fn artifact(m: &sovc_ir::Model) -> Artifact {
    Artifact::from_bytes(&compile(m, &rvv_options()).expect("compiles for riscv64-rvv").bytes).expect("artifact")
}

/// The tools the tests need: QEMU, the loader, GNU as and objcopy for riscv64.
fn tools_present() -> bool {
    let loader = sovc_tests::root().join(".deps/rvv/sovc-rvv-loader");
    sovc_tests::require_generated(&loader)
}

fn encoder() -> (sovc_ir::Model, BTreeMap<String, sovc_ir::Tensor>) {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let x = sovc_ir::Tensor::from_vec(
        &[1, 16, 64],
        (0..1024).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect::<Vec<f32>>(),
    )
    .expect("len");
    (m, [("x".to_string(), x)].into_iter().collect())
}

/// `a` on rvv-qemu with `opts` against the reference: the largest error relative to the largest
/// reference magnitude, and the loader processes and launches it took.
fn rvv_vs_reference(a: &Artifact, feeds: &BTreeMap<String, sovc_ir::Tensor>, opts: QemuOptions) -> (f64, usize, usize) {
    std::env::set_var("SOVC_RVV_LOADER", sovc_tests::root().join(".deps/rvv/sovc-rvv-loader"));
    let s = Session::new(a, Device::RvvQemu).expect("session");
    let (got, report) = s.rvv_model().expect("rvv model").run(feeds, opts).expect("runs under qemu");
    let want = Session::new(a, Device::Reference).expect("session").run(feeds).expect("reference");
    let mut worst = 0f64;
    for (k, w) in &want {
        let scale = w.to_f64_vec().iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
        worst = worst.max(sovc_tests::max_abs_diff(&got[k], w) / scale);
    }
    (worst, report.processes, report.launches)
}

#[test]
fn the_encoder_layer_runs_unchanged_at_vlen_128_256_and_512() {
    if !tools_present() {
        return;
    }
    let (m, feeds) = encoder();
    let a = artifact(&m);
    assert_eq!(Device::default_for(&a), Device::RvvQemu);
    let (plan, code) = a.rvv_plan().expect("parses").expect("an rvv plan");
    assert_eq!(plan.vlen, "agnostic");
    assert!(!code.is_empty());
    for vlen in [128, 256, 512] {
        let (err, processes, launches) = rvv_vs_reference(&a, &feeds, QemuOptions { vlen, vector: true, count: false });
        eprintln!("encoder layer at VLEN {vlen}: {launches} launches in {processes} loader runs, max error {err:.2e} of the largest output");
        assert!(err < 1e-5, "VLEN {vlen}: {err}");
        assert!(launches >= 5);
    }
}

#[test]
fn without_the_v_extension_the_code_traps() {
    if !tools_present() {
        return;
    }
    let (m, feeds) = encoder();
    let a = artifact(&m);
    let s = Session::new(&a, Device::RvvQemu).expect("session");
    std::env::set_var("SOVC_RVV_LOADER", sovc_tests::root().join(".deps/rvv/sovc-rvv-loader"));
    let e = s
        .rvv_model()
        .expect("model")
        .run(&feeds, QemuOptions { vlen: 128, vector: false, count: false })
        .expect_err("traps");
    let e = e.to_string();
    eprintln!("{e}");
    assert!(e.contains("illegal instruction") && e.contains("v=false"), "{e}");
}

/// Assembles `listing` with GNU as (no compressed instructions) and returns the bytes of `.text`.
fn gnu_as(listing: &str, tag: &str) -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("sovc-rvv-as-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (src, obj, bin) = (dir.join("k.s"), dir.join("k.o"), dir.join("k.bin"));
    std::fs::write(&src, format!("    .option norvc\n    .text\n{listing}")).expect("write");
    let o = Command::new("riscv64-linux-gnu-as")
        .args(["-march=rv64imafdv", "-o"])
        .arg(&obj)
        .arg(&src)
        .output()
        .expect("riscv64-linux-gnu-as runs");
    assert!(o.status.success(), "as rejects the listing:\n{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new("riscv64-linux-gnu-objcopy")
        .args(["-O", "binary", "-j", ".text"])
        .arg(&obj)
        .arg(&bin)
        .output()
        .expect("objcopy runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b = std::fs::read(&bin).expect("bin");
    std::fs::remove_dir_all(&dir).ok();
    b
}

/// Per module of `a`: its listing (from `rvv.asm`) and its code.
fn modules(a: &Artifact) -> Vec<(String, Vec<u8>)> {
    let (plan, code) = a.rvv_plan().expect("parses").expect("plan");
    let asm = a.sections.iter().find(|s| s.name == "rvv.asm").expect("rvv.asm");
    let text = String::from_utf8(asm.data.clone()).expect("utf8");
    let listings: Vec<&str> = text.split("# kernel ").skip(1).collect();
    assert_eq!(listings.len(), plan.modules.len());
    plan.modules
        .iter()
        .zip(listings)
        .map(|(m, l)| {
            let body = l.split_once('\n').map(|x| x.1).unwrap_or_default().to_string();
            (body, code[m.offset as usize..(m.offset + m.len) as usize].to_vec())
        })
        .collect()
}

#[test]
fn every_encoded_instruction_matches_gnu_as() {
    if !tools_present() {
        return;
    }
    let (m, _) = encoder();
    let mut checked = 0;
    let root = sovc_tests::generated_models();
    let mut models =
        vec![("encoder_layer".to_string(), m), ("matmul".into(), sovc_models::builtin::matmul(37, 19, 23))];
    for name in ["gpt2_decoder", "bert_encoder", "squeezenet1_1"] {
        models.push((
            name.into(),
            sovc_models::load_model(&root.join(name).join("model.onnx"), &Default::default()).expect("imports"),
        ));
    }
    for (name, m) in &models {
        for (k, (listing, code)) in modules(&artifact(m)).into_iter().enumerate() {
            let theirs = gnu_as(&listing, &format!("{name}-{k}"));
            assert_eq!(theirs.len(), code.len(), "{name} module {k}: lengths differ");
            if let Some(w) = (0..code.len() / 4).find(|w| code[4 * w..4 * w + 4] != theirs[4 * w..4 * w + 4]) {
                let line = listing.lines().filter(|l| !l.ends_with(':') && !l.trim_start().starts_with('#')).nth(w);
                panic!(
                    "{name} module {k}: instruction {w} `{}`: sovc {:02x?}, GNU as {:02x?}",
                    line.unwrap_or("?").trim(),
                    &code[4 * w..4 * w + 4],
                    &theirs[4 * w..4 * w + 4]
                );
            }
            checked += code.len() / 4;
        }
    }
    eprintln!("{checked} instructions encoded identically by sovc and GNU as");
    assert!(checked > 1000);
}

/// Generated model `name` compiled for riscv64-rvv and run under QEMU at VLEN 128, 256 and 512 (the
/// same code): within 1e-4 of the reference's largest magnitude at each.
fn real_model_at_three_vlens(name: &str) {
    if !tools_present() {
        return;
    }
    let dir = sovc_tests::generated_models().join(name);
    let m = sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports");
    let a = artifact(&m);
    let (plan, code) = a.rvv_plan().expect("parses").expect("plan");
    let launches = plan.steps.iter().filter(|s| matches!(s, RvvStep::Launch { .. })).count();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for s in &plan.steps {
        if let RvvStep::Reference { reason, .. } = s {
            *reasons.entry(reason.clone()).or_default() += 1;
        }
    }
    let feeds = sovc_runtime::read_npy_dir(&dir, "input.").expect("inputs");
    std::env::set_var("SOVC_RVV_LOADER", sovc_tests::root().join(".deps/rvv/sovc-rvv-loader"));
    let s = Session::new(&a, Device::RvvQemu).expect("session");
    let want = Session::new(&a, Device::Reference).expect("session").run(&feeds).expect("reference");
    for vlen in [128, 256, 512] {
        let (got, report) = s
            .rvv_model()
            .expect("model")
            .run(&feeds, QemuOptions { vlen, vector: true, count: false })
            .expect("runs under qemu");
        let mut err = 0f64;
        for (k, w) in &want {
            let scale = w.to_f64_vec().iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
            err = err.max(sovc_tests::max_abs_diff(&got[k], w) / scale);
        }
        eprintln!(
            "{name} at VLEN {vlen}: {} modules ({} bytes of code), {launches} launches in {} loader runs, max error {err:.2e} of the largest output; on the host: {reasons:?}",
            plan.modules.len(),
            code.len(),
            report.processes
        );
        assert!(err < 1e-4, "{name} at VLEN {vlen}: {err}");
    }
    assert!(launches > 0, "{name}: no kernel on RVV");
}

#[test]
fn gpt2_bert_squeezenet_and_mobilenet_run_under_qemu_at_three_vlens() {
    for name in ["gpt2_decoder", "bert_encoder", "squeezenet1_1", "mobilenet_v2"] {
        real_model_at_three_vlens(name);
    }
}

#[test]
fn resnets_run_under_qemu_at_three_vlens() {
    for name in ["resnet18", "resnet50"] {
        real_model_at_three_vlens(name);
    }
}

#[test]
fn inception_and_efficientnet_run_under_qemu_at_three_vlens() {
    for name in ["inception_v3", "efficientnet_b0"] {
        real_model_at_three_vlens(name);
    }
}

#[test]
fn the_audit_gives_each_function_its_instruction_mix() {
    let (m, _) = encoder();
    let a = artifact(&m);
    let text = sovc_compiler::cli::audit_text(&a, &a.plan().expect("plan").expect("a plan"));
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("rvv function `")).collect();
    let (plan, _) = a.rvv_plan().expect("parses").expect("plan");
    let functions: usize = plan.modules.iter().map(|m| m.functions.len()).sum();
    assert_eq!(lines.len(), functions, "{text}");
    assert!(lines.iter().all(|l| l.contains("agnostic vector length") && l.contains("vsetvli (LMUL m")), "{text}");
    // The projections are matmuls: vfmacc at LMUL 4; attention gathers Q's columns with strided loads.
    assert!(lines.iter().any(|l| l.contains("(LMUL m4)") && !l.contains(" 0 vfmacc")), "{text}");
    assert!(lines.iter().any(|l| !l.contains(" 0 strided,")), "{text}");
}

#[test]
fn dynamic_instruction_counts_show_the_code_uses_the_whole_vector() {
    if !tools_present() {
        return;
    }
    // 16x64 · 64x128: with LMUL 4 a strip is 16 lanes at VLEN 128 and 64 at VLEN 512.
    let m = sovc_models::builtin::matmul(16, 64, 128);
    let a = artifact(&m);
    let feeds: BTreeMap<String, sovc_ir::Tensor> = [
        ("a".to_string(), sovc_ir::Tensor::from_vec(&[16, 64], vec![0.5f32; 16 * 64]).expect("a")),
        ("b".to_string(), sovc_ir::Tensor::from_vec(&[64, 128], vec![0.25f32; 64 * 128]).expect("b")),
    ]
    .into_iter()
    .collect();
    std::env::set_var("SOVC_RVV_LOADER", sovc_tests::root().join(".deps/rvv/sovc-rvv-loader"));
    let s = Session::new(&a, Device::RvvQemu).expect("session");
    let mut per_vlen = Vec::new();
    for vlen in [128, 512] {
        let (out, r) =
            s.rvv_model().expect("model").run(&feeds, QemuOptions { vlen, vector: true, count: true }).expect("runs");
        assert!(out["c"].to_f64_vec().iter().all(|&v| (v - 8.0).abs() < 1e-6), "0.5 · 0.25 · 64 everywhere");
        let (scalar, vector) = r.counts.values().fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
        eprintln!("matmul 16x64x128 at VLEN {vlen}: {scalar} scalar and {vector} vector instructions executed");
        // Per (row block, strip, k): one vector load and 4 vfmacc at least.
        assert!(vector >= 4 * (128 / (vlen as u64 / 8)) * 64 * 5, "{vector}");
        per_vlen.push((scalar, vector));
    }
    // Four times the vector length: a quarter of the strips, so about a quarter of the instructions.
    assert!(per_vlen[1].1 * 3 < per_vlen[0].1 && per_vlen[1].0 * 3 < per_vlen[0].0, "{per_vlen:?}");
}
