//! The `cuda` target: every real model compiles to PTX, and every module NVIDIA's `ptxas` (installed by
//! `scripts/setup-test-deps.sh` into `.deps/cuda`) assembles for sm_80 and sm_90, with its register and
//! spill counts; a planted PTX error is rejected; the PTX emulator (`--device ptx-emu`) runs models
//! and matches the reference interpreter, and catches out-of-bounds accesses and PTX it does not know.

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
    plan_in(m, arch, "fp32")
}

fn plan_in(m: &sovc_ir::Model, arch: &str, precision: &str) -> CudaPlan {
    let opts = CompileOptions {
        target: "cuda".into(),
        cuda: sovc_compiler::compile::CudaOptions { arch: Some(arch.into()), precision: Some(precision.into()) },
        ..Default::default()
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
        for (arch, precision) in sovc_target_cuda::ARCHS.iter().flat_map(|a| [(*a, "fp32"), (*a, "bf16")]) {
            let plan = plan_in(m, arch, precision);
            assert_eq!(plan.arch, arch);
            let mut regs = 0u32;
            let mut spills = 0usize;
            // In bf16 only the contractions differ from fp32: assemble those.
            for module in plan.modules.iter().filter(|m| precision == "fp32" || m.ptx.contains("mma.sync")) {
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
                "{name} {arch} {precision}: {} modules, {launches} launches pass ptxas (at most {regs} registers, {spills} entries spill); {} groups on the reference path",
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
        cuda: sovc_compiler::compile::CudaOptions { arch: Some("sm_70".into()), precision: None },
        ..Default::default()
    };
    let e = compile(&m, &opts).err().expect("refused").to_string();
    assert!(e.contains("unknown CUDA architecture `sm_70`"), "{e}");
}

/// Runs `m` compiled for cuda on the PTX emulator and on the reference; the largest error per output.
fn emu_vs_reference(m: &sovc_ir::Model, feeds: &std::collections::BTreeMap<String, sovc_ir::Tensor>) -> f64 {
    let opts = CompileOptions { target: "cuda".into(), tensix: Default::default(), ..Default::default() };
    let a = Artifact::from_bytes(&compile(m, &opts).expect("compiles").bytes).expect("artifact");
    assert_eq!(sovc_runtime::Device::default_for(&a), sovc_runtime::Device::PtxEmu);
    let s = sovc_runtime::Session::new(&a, sovc_runtime::Device::PtxEmu).expect("session");
    let (got, report) = s.ptx_model().expect("ptx model").run(feeds).expect("runs on ptx-emu");
    let want = sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference)
        .expect("session")
        .run(feeds)
        .expect("reference");
    let mut worst = 0.0f64;
    for (k, w) in &want {
        worst = worst.max(sovc_tests::max_abs_diff(&got[k], w));
    }
    eprintln!(
        "{} launches, {} PTX instructions emulated, {} reference steps; max abs error {worst:.3e}",
        report.launches.len(),
        report.instructions,
        report.reference_steps
    );
    assert!(report.launches.len() > 3 && report.instructions > 0);
    worst
}

#[test]
fn ptx_emu_runs_models_and_matches_the_reference() {
    let enc = sovc_models::builtin::encoder_layer(16, 64, 4);
    let x = sovc_ir::Tensor::from_vec(
        &[1, 16, 64],
        (0..1024).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect::<Vec<f32>>(),
    )
    .expect("len");
    let feeds = [("x".to_string(), x)].into_iter().collect();
    assert!(emu_vs_reference(&enc, &feeds) < 1e-4);
    let root = sovc_tests::generated_models();
    if !sovc_tests::require_generated(&root) {
        return;
    }
    // Real models small enough to emulate in a few seconds.
    for name in ["gpt2_decoder", "squeezenet1_1"] {
        let dir = root.join(name);
        let m = sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports");
        let feeds = sovc_runtime::read_npy_dir(&dir, "input.").expect("inputs");
        let err = emu_vs_reference(&m, &feeds);
        eprintln!("{name} on ptx-emu: max abs error {err:.3e}");
        assert!(err < 1e-4, "{name}: {err}");
    }
}

#[test]
fn ptx_emu_catches_out_of_bounds_accesses_and_unknown_ptx() {
    use sovc_runtime::cuda::emu::PtxModule;
    let plan = plan_for(&sovc_models::builtin::encoder_layer(16, 64, 4), "sm_80");
    let ptx = &plan.modules[0].ptx;
    let m = PtxModule::parse(ptx).expect("parses");
    let (name, e) = m.entries.iter().next().expect("an entry");
    // Buffers one element short: the last thread's access is out of bounds.
    let CudaStep::Launch { threads, bufs, .. } =
        plan.steps.iter().find(|s| matches!(s, CudaStep::Launch { entry, .. } if entry == name)).expect("launch")
    else {
        unreachable!()
    };
    let mut mem: Vec<Vec<f32>> = vec![vec![0.0; 1]; bufs.len()];
    let err = e.run(&mut mem, *threads, plan.block).expect_err("out of bounds");
    assert!(err.contains("outside every buffer") && err.contains(name), "{err}");
    // An instruction outside what sovc writes is refused with its line.
    let bad = ptx.replacen("ret;", "trap;\n    ret;", 1);
    let err = PtxModule::parse(&bad).expect_err("unknown instruction");
    assert!(err.contains("does not run `trap`") && err.contains("line "), "{err}");
}

#[test]
fn the_cuda_device_runs_on_a_gpu_or_says_what_is_missing() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let opts = CompileOptions { target: "cuda".into(), tensix: Default::default(), ..Default::default() };
    let a = Artifact::from_bytes(&compile(&m, &opts).expect("compiles").bytes).expect("artifact");
    match sovc_runtime::Session::new(&a, sovc_runtime::Device::Cuda) {
        // A machine with the NVIDIA driver: the PTX runs on the GPU and matches the reference.
        Ok(s) => {
            let x =
                sovc_ir::Tensor::from_vec(&[1, 16, 64], (0..1024).map(|i| (i % 7) as f32 / 7.0).collect::<Vec<f32>>())
                    .expect("len");
            let feeds = [("x".to_string(), x)].into_iter().collect();
            let got = s.run(&feeds).expect("runs on the GPU");
            let want = sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference)
                .expect("session")
                .run(&feeds)
                .expect("reference");
            let err = sovc_tests::max_abs_diff(&got["y"], &want["y"]);
            eprintln!("encoder layer on the GPU: max abs error {err:.3e}");
            assert!(err < 1e-4, "{err}");
        }
        // No driver (CI, this project's machines): a clear error, not a crash.
        Err(e) => {
            let e = e.to_string();
            eprintln!("{e}");
            assert!(e.contains("libcuda.so.1") && e.contains("ptx-emu"), "{e}");
        }
    }
}

#[test]
fn the_audit_shows_each_entry_with_its_ptxas_resources() {
    std::env::set_var("SOVC_PTXAS", ptxas());
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let opts = CompileOptions {
        target: "cuda".into(),
        cuda: sovc_compiler::compile::CudaOptions { arch: Some("sm_90".into()), precision: None },
        ..Default::default()
    };
    let a = Artifact::from_bytes(&compile(&m, &opts).expect("compiles").bytes).expect("artifact");
    let text = sovc_compiler::cli::audit_text(&a, &a.plan().expect("plan").expect("a plan"));
    let entries = text.lines().filter(|l| l.contains("ptx entry `")).count();
    let with_regs = text
        .lines()
        .filter(|l| l.contains("ptx entry `") && l.contains("registers") && l.contains("spill stores"))
        .count();
    assert!(entries > 5 && with_regs == entries, "{text}");
    assert!(text.contains("for sm_90 (fp32)"), "{text}");
}

/// The encoder layer compiled for cuda, with `edit` applied to the PTX of its first module that has a
/// barrier, run on ptx-emu: the error.
fn run_with_edited_barriers(precision: &str, edit: &dyn Fn(&str) -> String) -> String {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let a = Artifact::from_bytes(&compile(&m, &cuda_options(precision)).expect("compiles").bytes).expect("artifact");
    let mut plan = a.cuda_plan().expect("parses").expect("plan");
    let module = plan.modules.iter_mut().find(|m| m.ptx.contains("bar.sync")).expect("a tiled contraction");
    let edited = edit(&module.ptx);
    assert_ne!(edited, module.ptx, "the planted edit applies");
    module.ptx = edited;
    let mut b = sovc_runtime::ArtifactBuilder::new();
    for sec in &a.sections {
        let data = if sec.name == "cuda.plan" { serde_json::to_vec(&plan).expect("json") } else { sec.data.clone() };
        b.section(sec.kind, sec.name.clone(), data);
    }
    let a = Artifact::from_bytes(&b.build()).expect("artifact");
    let x = sovc_ir::Tensor::from_vec(&[1, 16, 64], (0..1024).map(|i| (i % 13) as f32 / 13.0).collect::<Vec<f32>>())
        .expect("len");
    let feeds = [("x".to_string(), x)].into_iter().collect();
    let s = sovc_runtime::Session::new(&a, sovc_runtime::Device::PtxEmu).expect("session");
    s.run(&feeds).expect_err("the race is caught").to_string()
}

#[test]
fn ptx_emu_catches_a_planted_missing_barrier() {
    // In the f32 tiles and in the tensor-core form alike:
    for precision in ["fp32", "bf16"] {
        // Without the barrier after the tiles are stored, a thread reads slots before (or after) the
        // threads that own them store them in the same phase.
        let e = run_with_edited_barriers(precision, &|p| p.replacen("bar.sync 0;", "// (barrier removed)", 1));
        eprintln!("{precision}: {e}");
        assert!(e.contains("missing bar.sync") && e.contains("since the last barrier"), "{e}");
        // Without the barrier after the products, one thread's next K step overwrites its slot while
        // others still read the old tile.
        let e = run_with_edited_barriers(precision, &|p| {
            let first = p.find("bar.sync 0;").expect("a barrier") + 1;
            let second = first + p[first..].find("bar.sync 0;").expect("a second barrier");
            format!("{}// (barrier removed){}", &p[..second], &p[second + "bar.sync 0;".len()..])
        });
        eprintln!("{precision}: {e}");
        assert!(e.contains("missing bar.sync") && e.contains("since the last barrier"), "{e}");
    }
}

fn cuda_options(precision: &str) -> CompileOptions {
    CompileOptions {
        target: "cuda".into(),
        cuda: sovc_compiler::compile::CudaOptions { arch: None, precision: Some(precision.into()) },
        ..Default::default()
    }
}

/// `m` compiled for cuda in `precision`, run on ptx-emu: the outputs and the plan.
fn run_on_emu(
    m: &sovc_ir::Model,
    precision: &str,
    feeds: &std::collections::BTreeMap<String, sovc_ir::Tensor>,
) -> (std::collections::BTreeMap<String, sovc_ir::Tensor>, CudaPlan) {
    let a = Artifact::from_bytes(&compile(m, &cuda_options(precision)).expect("compiles").bytes).expect("artifact");
    let plan = a.cuda_plan().expect("parses").expect("plan");
    let s = sovc_runtime::Session::new(&a, sovc_runtime::Device::PtxEmu).expect("session");
    let (got, _) = s.ptx_model().expect("ptx model").run(feeds).expect("runs on ptx-emu");
    (got, plan)
}

#[test]
fn mma_matmuls_on_ptx_emu_equal_the_product_of_the_rounded_operands() {
    use sovc_runtime::cuda::emu::{f16_to_f32, f32_to_bf16, f32_to_f16};
    // Ragged on every side of the 64x64 block tile and the K step of 16, so padding is exercised.
    let (m, k, n) = (70, 37, 90);
    let model = sovc_models::builtin::matmul(m, k, n);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0 + 1e-3 * (i % 7) as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 / 40.0) - 1.2 + 1e-3 * (i % 5) as f32).collect();
    let feeds = [
        ("a".to_string(), sovc_ir::Tensor::from_vec(&[m, k], a.clone()).expect("a")),
        ("b".to_string(), sovc_ir::Tensor::from_vec(&[k, n], b.clone()).expect("b")),
    ]
    .into_iter()
    .collect();
    type Rounding = fn(f32) -> f32;
    let round: [(&str, Rounding); 2] =
        [("bf16", |x| f32::from_bits((f32_to_bf16(x) as u32) << 16)), ("f16", |x| f16_to_f32(f32_to_f16(x)))];
    for (precision, round) in round {
        let (got, plan) = run_on_emu(&model, precision, &feeds);
        assert_eq!(plan.precision, precision);
        assert!(plan.modules.iter().all(|m| m.ptx.contains(&format!(".f32.{precision}.{precision}.f32"))));
        let c = got["c"].to_f64_vec();
        let (mut exact_err, mut f32_err) = (0f64, 0f64);
        for i in 0..m {
            for j in 0..n {
                let rounded: f64 = (0..k).map(|p| round(a[i * k + p]) as f64 * round(b[p * n + j]) as f64).sum();
                let full: f64 = (0..k).map(|p| a[i * k + p] as f64 * b[p * n + j] as f64).sum();
                exact_err = exact_err.max((c[i * n + j] - rounded).abs());
                f32_err = f32_err.max((c[i * n + j] - full).abs());
            }
        }
        eprintln!(
            "{precision} mma {m}x{k}x{n}: vs the rounded operands' product {exact_err:.2e}, vs f32 {f32_err:.2e}"
        );
        // The emulator rounds each 16-term dot product once; three K steps round three times.
        assert!(exact_err < 1e-5, "{precision}: {exact_err}");
        // Rounding the operands moves the result, by about 2^-8 (bf16) or 2^-11 (f16) of its terms.
        assert!(f32_err > 1e-5 && f32_err < if precision == "bf16" { 0.1 } else { 0.02 }, "{precision}: {f32_err}");
    }
}

/// The stated tolerance of `--precision bf16|f16` (matmul and convolution operands rounded for the
/// tensor cores, f32 elsewhere): per output, PCC with the f32 reference of at least 0.999 and a largest
/// error within this fraction of the reference's largest magnitude (README, "cuda").
const BF16_REL: f64 = 3e-2;
const F16_REL: f64 = 5e-3;

#[test]
fn ptx_emu_runs_models_with_tensor_core_contractions_within_the_stated_tolerance() {
    let mut models = vec![("encoder_layer".to_string(), sovc_models::builtin::encoder_layer(16, 64, 4), {
        let x = sovc_ir::Tensor::from_vec(
            &[1, 16, 64],
            (0..1024).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect::<Vec<f32>>(),
        )
        .expect("len");
        [("x".to_string(), x)].into_iter().collect()
    })];
    let root = sovc_tests::generated_models();
    if sovc_tests::require_generated(&root) {
        for name in ["gpt2_decoder", "squeezenet1_1"] {
            let dir = root.join(name);
            let m = sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports");
            models.push((name.into(), m, sovc_runtime::read_npy_dir(&dir, "input.").expect("inputs")));
        }
    }
    for (name, m, feeds) in &models {
        let a = Artifact::from_bytes(&compile(m, &cuda_options("fp32")).expect("compiles").bytes).expect("artifact");
        let want = sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference)
            .expect("session")
            .run(feeds)
            .expect("reference");
        for (precision, rel) in [("bf16", BF16_REL), ("f16", F16_REL)] {
            let (got, plan) = run_on_emu(m, precision, feeds);
            let mmas = plan.modules.iter().filter(|m| m.ptx.contains("mma.sync")).count();
            assert!(mmas > 0, "{name}: no contraction on the tensor cores");
            for (k, w) in &want {
                let (g, w) = (got[k].to_f64_vec(), w.to_f64_vec());
                let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
                let err = g.iter().zip(&w).fold(0f64, |m, (a, b)| m.max((a - b).abs()));
                let pcc = sovc_compiler::tensix_report::pcc(&g, &w);
                eprintln!(
                    "{name} {precision} ({mmas} modules with mma): output {k}: max abs error {err:.3e} ({:.2e} of max |ref| {scale:.3}), PCC {pcc:.6}",
                    err / scale
                );
                assert!(pcc >= 0.999 && err <= rel * scale, "{name} {precision} {k}: {err} of {scale}, PCC {pcc}");
            }
        }
    }
}

#[test]
fn ptx_emu_refuses_an_mma_sync_that_part_of_a_warp_skips() {
    use sovc_runtime::cuda::emu::PtxModule;
    // Threads from `LIVE` on branch around the `mma.sync`: with LIVE = 32 the whole warp executes it,
    // with 20 the warp's other 12 threads have returned, which `.aligned` forbids.
    let ptx = |live: u32| {
        format!(
            ".version 7.8\n.target sm_80\n.address_size 64\n\n.visible .entry t(\n    .param .u64 t_b0,\n    .param .u64 t_n\n)\n{{\n    .reg .pred %p<2>;\n    .reg .b32 %r<8>;\n    .reg .b64 %rd<2>;\n    .reg .f32 %f<5>;\n\n    mov.u32 %r1, %tid.x;\n    cvt.u64.u32 %rd1, %r1;\n    setp.ge.u64 %p1, %rd1, {live};\n    @%p1 bra $L_done;\n    mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {{%f1, %f2, %f3, %f4}}, {{%r2, %r3, %r4, %r5}}, {{%r6, %r7}}, {{%f1, %f2, %f3, %f4}};\n$L_done:\n    ret;\n}}\n"
        )
    };
    let run = |live| {
        let m = PtxModule::parse(&ptx(live)).expect("parses");
        m.entries["t"].run(&mut [vec![0.0; 1]], 64, 64)
    };
    assert!(run(64).is_ok());
    let e = run(20).expect_err("a partial warp");
    eprintln!("{e}");
    assert!(e.contains("is not at this mma.sync") && e.contains("returned") && e.contains("line 19"), "{e}");
    // An mma.sync with the wrong operands is refused when parsed.
    let bad = ptx(64).replace("{%r6, %r7}", "{%r6}");
    let e = PtxModule::parse(&bad).expect_err("three B registers short");
    assert!(e.contains("mma.sync") && e.contains("line 19"), "{e}");
}

#[test]
fn tiled_attention_on_ptx_emu_matches_a_direct_softmax_over_several_key_and_row_tiles() {
    use sovc_ir::kernel::{Access, Attention, Buf, KernelOp};
    use sovc_runtime::cuda::emu::PtxModule;
    // 300 query rows (two row tiles of 256), 70 keys (three key tiles, the last partial), a mask
    // broadcast over slices with a fully masked key (-inf) and a large negative one.
    let (heads, sq, sk, d, dv) = (2u64, 300u64, 70u64, 24u64, 20u64);
    let at = Attention {
        name: "attn".into(),
        bufs: vec![
            Buf::global("q", heads * sq * d, Access::Read),
            Buf::global("k", heads * sk * d, Access::Read),
            Buf::global("v", heads * sk * dv, Access::Read),
            Buf::global("mask", sq * sk, Access::Read),
            Buf::global("o", heads * sq * dv, Access::Write),
        ],
        heads,
        sq,
        sk,
        d,
        dv,
        scale: 0.2,
        q: 0,
        k: 1,
        v: 2,
        o: 4,
        mask: Some((3, 0, sk as i64, 1)),
    };
    let val = |n: u64, seed: u64| -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 500.0) - 1.0).collect()
    };
    let mask: Vec<f32> = (0..sq * sk)
        .map(|x| match x % sk {
            3 => f32::NEG_INFINITY,
            5 if x / sk % 2 == 0 => -1e9,
            j => (j as f32) * 0.01,
        })
        .collect();
    let mut mem = vec![
        val(heads * sq * d, 1),
        val(heads * sk * d, 2),
        val(heads * sk * dv, 3),
        mask.clone(),
        vec![0.0; (heads * sq * dv) as usize],
    ];
    let entries = sovc_target_cuda::emit_op(&KernelOp::Attention(at.clone()), "k0", sovc_target_cuda::Precision::Fp32)
        .expect("writes PTX");
    assert!(entries[0].text.contains("bar.sync") && entries[0].text.contains("k0_sk"), "the tiled form");
    let ptx = sovc_target_cuda::module("sm_80", &[&entries[0]]);
    assemble(&ptx, "sm_80", "attn").expect("ptxas accepts it");
    let m = PtxModule::parse(&ptx).expect("parses");
    m.entries["k0"].run(&mut mem, entries[0].threads, sovc_target_cuda::ptx::BLOCK).expect("runs");
    let (q, k, v) = (&mem[0], &mem[1], &mem[2]);
    let mut worst = 0f64;
    for h in 0..heads as usize {
        for i in 0..sq as usize {
            let (sq, sk, d, dv) = (sq as usize, sk as usize, d as usize, dv as usize);
            let s: Vec<f64> = (0..sk)
                .map(|j| {
                    let dot: f64 =
                        (0..d).map(|c| q[(h * sq + i) * d + c] as f64 * k[(h * sk + j) * d + c] as f64).sum();
                    dot * 0.2f32 as f64 + mask[i * sk + j] as f64
                })
                .collect();
            let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
            let sum: f64 = e.iter().sum();
            for c in 0..dv {
                let want: f64 = (0..sk).map(|j| e[j] * v[(h * sk + j) * dv + c] as f64).sum::<f64>() / sum;
                worst = worst.max((mem[4][(h * sq + i) * dv + c] as f64 - want).abs());
            }
        }
    }
    eprintln!("tiled attention {heads}x{sq}x{sk} (d {d}, dv {dv}): max abs error {worst:.2e}");
    assert!(worst < 1e-5, "{worst}");
}

/// Generated model `name` on ptx-emu against the reference interpreter, in f32: the largest error
/// relative to the reference's largest magnitude (the cpu target's measure) is below 1e-4.
fn emu_real_model(name: &str) {
    let root = sovc_tests::generated_models();
    if !sovc_tests::require_generated(&root) {
        return;
    }
    let dir = root.join(name);
    let m = sovc_models::load_model(&dir.join("model.onnx"), &Default::default()).expect("imports");
    let feeds = sovc_runtime::read_npy_dir(&dir, "input.").expect("inputs");
    let a = Artifact::from_bytes(&compile(&m, &cuda_options("fp32")).expect("compiles").bytes).expect("artifact");
    let s = sovc_runtime::Session::new(&a, sovc_runtime::Device::PtxEmu).expect("session");
    let (got, report) = s.ptx_model().expect("ptx model").run(&feeds).expect("runs on ptx-emu");
    let want = sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference)
        .expect("session")
        .run(&feeds)
        .expect("reference");
    for (k, w) in &want {
        let scale = w.to_f64_vec().iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-30);
        let err = sovc_tests::max_abs_diff(&got[k], w);
        eprintln!(
            "{name} on ptx-emu: {k}: max abs error {err:.3e} ({:.1e} of max |ref| {scale:.3}); {} launches, {} M PTX instructions, {} reference steps",
            err / scale,
            report.launches.len(),
            report.instructions / 1_000_000,
            report.reference_steps
        );
        assert!(err / scale < 1e-4, "{name} {k}: {err:e} of {scale}");
    }
}

// Every other real model, in tests of about equal length so the two cores share them.
#[test]
fn ptx_emu_runs_bert() {
    emu_real_model("bert_encoder");
}

#[test]
fn ptx_emu_runs_resnet50_resnet18_and_mobilenet_v2() {
    for m in ["resnet50", "resnet18", "mobilenet_v2"] {
        emu_real_model(m);
    }
}

#[test]
fn ptx_emu_runs_inception_v3_and_efficientnet_b0() {
    for m in ["inception_v3", "efficientnet_b0"] {
        emu_real_model(m);
    }
}
