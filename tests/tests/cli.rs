//! The `sovc` command line, driven in-process: import, run and inspect on real and built-in models, the
//! output naming contract, and errors for bad arguments.

use clap::Parser;
use sovc_compiler::cli::{file_safe, parse_shape_arg, run, Cli};
use std::path::PathBuf;

fn sovc(args: &[&str]) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(std::iter::once("sovc").chain(args.iter().copied()))?;
    run(cli)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sovc-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn shape_arguments_parse() {
    assert_eq!(parse_shape_arg("input_ids=1x128").expect("ok"), ("input_ids".to_string(), vec![1, 128]));
    assert_eq!(parse_shape_arg("a=b=2,3").expect("ok"), ("a=b".to_string(), vec![2, 3]));
    assert_eq!(parse_shape_arg("s=").expect("ok"), ("s".to_string(), vec![]));
    assert!(parse_shape_arg("x=1xq").expect_err("bad dim").to_string().contains("`q`"));
    assert!(parse_shape_arg("noequals").is_err());
}

#[test]
fn output_names_become_safe_file_names() {
    assert_eq!(file_safe("logits"), "logits");
    assert_eq!(file_safe("/bert/out:0"), "_bert_out_0");
    assert_eq!(file_safe(".."), "_..");
}

#[test]
fn import_writes_sov_and_safetensors_that_run_like_the_original() {
    let d = tmp("import");
    let sov = d.join("mlp.sov");
    sovc(&["import", "builtin:mlp", "-o", sov.to_str().expect("utf8")]).expect("import");
    assert!(d.join("mlp.safetensors").exists());
    let x = sovc_ir::Tensor::from_vec(&[2, 64], sovc_models::builtin::det_values(128, 3, 1.0)).expect("len");
    sovc_runtime::write_npy(&d.join("x.npy"), &x).expect("write");
    let xarg = format!("x={}", d.join("x.npy").display());
    sovc(&["run", sov.to_str().expect("utf8"), "--input", &xarg, "--output-dir", d.join("a").to_str().expect("utf8")])
        .expect("run .sov");
    sovc(&["run", "builtin:mlp", "--input", &xarg, "--output-dir", d.join("b").to_str().expect("utf8")])
        .expect("run builtin");
    let a = sovc_runtime::read_npy(&d.join("a/probs.npy")).expect("output");
    let b = sovc_runtime::read_npy(&d.join("b/probs.npy")).expect("output");
    assert_eq!(a, b);
    assert_eq!(a.shape(), &[2, 10]);
    sovc(&["import", "builtin:decoder_layer", "--decompose", "-o", d.join("dec.sov").to_str().expect("utf8")])
        .expect("decompose");
    let text = std::fs::read_to_string(d.join("dec.sov")).expect("written");
    assert!(!text.contains("= softmax(") && text.contains("= exp("), "decomposed IR has no softmax");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn run_on_a_real_onnx_model_writes_each_output() {
    let dir = sovc_tests::generated_models().join("gpt2_decoder");
    if !sovc_tests::require_generated(&dir) {
        return;
    }
    let out = tmp("gpt2");
    let ids = format!("input_ids={}", dir.join("input.input_ids.npy").display());
    let model = dir.join("model.onnx");
    sovc(&["run", model.to_str().expect("utf8"), "--input", &ids, "--output-dir", out.to_str().expect("utf8")])
        .expect("run");
    let got = sovc_runtime::read_npy(&out.join("last_hidden_state.npy")).expect("output written");
    let want = sovc_runtime::read_npy(&dir.join("output.last_hidden_state.npy")).expect("reference");
    assert!(sovc_tests::max_abs_diff(&got, &want) < 1e-4);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn inspect_summarises() {
    let m = sovc_models::builtin::encoder_layer(16, 64, 4);
    let s = sovc_compiler::cli::inspect(&m);
    assert!(s.contains("x: f32[1,16,64]") && s.contains("y: f32[1,16,64]"), "{s}");
    assert!(s.contains("layer_norm: 2") && s.contains("softmax: 1"), "{s}");
    assert!(s.contains(&format!("parameters: {}", m.graph.parameter_count())), "{s}");
}

#[test]
fn errors_say_what_is_wrong() {
    let d = tmp("errors");
    let out = d.to_str().expect("utf8");
    let e = sovc(&["run", "builtin:mlp", "--output-dir", out]).expect_err("no input").to_string();
    assert!(e.contains("missing --input for x"), "{e}");
    let e = sovc(&["inspect", "builtin:nope"]).expect_err("unknown builtin");
    assert!(format!("{e:#}").contains("unknown built-in model `nope`"), "{e:#}");
    let e = sovc(&["inspect", "/nonexistent/model.onnx"]).expect_err("missing file");
    assert!(format!("{e:#}").contains("/nonexistent/model.onnx"), "{e:#}");
    let e = sovc(&["inspect", "model.txt"]).expect_err("unknown format");
    assert!(format!("{e:#}").contains("unknown model format"), "{e:#}");
    let e = sovc(&["inspect", "builtin:mlp", "--shape", "y=2x64"]).expect_err("unknown input");
    assert!(format!("{e:#}").contains("not a graph input"), "{e:#}");
    std::fs::write(d.join("bad.npy"), b"not numpy").expect("write");
    let bad = format!("x={}", d.join("bad.npy").display());
    let e = sovc(&["run", "builtin:mlp", "--input", &bad, "--output-dir", out]).expect_err("bad npy");
    assert!(format!("{e:#}").contains("not a .npy file"), "{e:#}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn shape_fixes_builtin_symbols() {
    let d = tmp("shape");
    let sov = d.join("mlp8.sov");
    sovc(&["import", "builtin:mlp", "--shape", "x=8x64", "-o", sov.to_str().expect("utf8")]).expect("import");
    let text = std::fs::read_to_string(&sov).expect("written");
    assert!(text.contains("input %0 \"x\": f32[8,64]") && !text.contains("batch"), "{text}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn compile_then_run_and_inspect_an_artifact() {
    let d = tmp("compile");
    let art = d.join("dec.sovc");
    sovc(&["compile", "builtin:decoder_layer", "--target", "null", "-o", art.to_str().expect("utf8")])
        .expect("compile");
    let x = sovc_ir::Tensor::from_vec(&[1, 16, 64], sovc_models::builtin::det_values(1024, 11, 1.0)).expect("len");
    sovc_runtime::write_npy(&d.join("x.npy"), &x).expect("write");
    let xarg = format!("x={}", d.join("x.npy").display());
    sovc(&["run", art.to_str().expect("utf8"), "--input", &xarg, "--output-dir", d.join("a").to_str().expect("utf8")])
        .expect("run artifact");
    sovc(&["run", "builtin:decoder_layer", "--input", &xarg, "--output-dir", d.join("b").to_str().expect("utf8")])
        .expect("run model");
    let (a, b) = (
        sovc_runtime::read_npy(&d.join("a/y.npy")).expect("y"),
        sovc_runtime::read_npy(&d.join("b/y.npy")).expect("y"),
    );
    assert!(sovc_tests::max_abs_diff(&a, &b) < 1e-4);
    let artifact = sovc_runtime::Artifact::load(&art).expect("loads");
    let text = sovc_compiler::cli::inspect_artifact(&artifact);
    assert!(text.contains("root hash") && text.contains("x: f32[1,16,64]") && text.contains("weights"), "{text}");
    sovc(&["bench", art.to_str().expect("utf8"), "--input", &xarg, "--iters", "3"]).expect("bench");
    assert!(sovc(&["bench", art.to_str().expect("utf8"), "--input", &xarg, "--iters", "0"]).is_err());
    let emitted = d.join("emit");
    sovc(&["emit", art.to_str().expect("utf8"), "-o", emitted.to_str().expect("utf8")]).expect("emit");
    let plan = artifact.plan().expect("parses").expect("plan");
    for k in &plan.kernels {
        let text = std::fs::read_to_string(emitted.join(format!("kernel_{:04}.sov", k.id))).expect("kernel file");
        // The audit's hash is the hash of the kernel's IR lines, so a reader can check it.
        let ir: String = text.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        use sha2::Digest;
        let h: String = sha2::Sha256::digest(ir.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(h, k.ir_sha256, "kernel {}", k.id);
    }
    assert!(emitted.join("plan.json").exists());
    let e = sovc(&[
        "run",
        art.to_str().expect("utf8"),
        "--device",
        "cpu",
        "--input",
        &xarg,
        "--output-dir",
        d.to_str().expect("utf8"),
    ])
    .expect_err("a null artifact has no cpu code");
    assert!(format!("{e:#}").contains("cpu") && format!("{e:#}").contains("no target code"), "{e:#}");
    let e = sovc(&["compile", "builtin:mlp", "--target", "metal", "-o", d.join("x.sovc").to_str().expect("utf8")])
        .expect_err("a symbolic batch");
    assert!(format!("{e:#}").contains("--shape x=DIMS"), "{e:#}");
    std::fs::write(d.join("bad.sovc"), b"SOVCART\0garbage").expect("write");
    let e = sovc(&["inspect", d.join("bad.sovc").to_str().expect("utf8")]).expect_err("bad artifact");
    assert!(format!("{e:#}").contains("bad.sovc"), "{e:#}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn opt_writes_dumps_reports_and_explains() {
    let d = tmp("opt");
    let dump = d.join("dump");
    let out = d.join("enc.sov");
    sovc(&[
        "opt",
        "builtin:encoder_layer",
        "--target",
        "blackhole",
        "--stats",
        "--explain",
        "--dump-dir",
        dump.to_str().expect("utf8"),
        "-o",
        out.to_str().expect("utf8"),
    ])
    .expect("opt");
    for f in ["before.sov", "after.sov", "report.txt"] {
        assert!(dump.join(f).exists(), "{f} missing");
    }
    let report = std::fs::read_to_string(dump.join("report.txt")).expect("report");
    assert!(report.contains("stopped: saturated") && report.contains("estimated cost on blackhole"), "{report}");
    // The optimized model runs from its files like any other.
    let x = sovc_ir::Tensor::from_vec(&[1, 16, 64], sovc_models::builtin::det_values(1024, 9, 1.0)).expect("len");
    sovc_runtime::write_npy(&d.join("x.npy"), &x).expect("write");
    let xarg = format!("x={}", d.join("x.npy").display());
    sovc(&["run", out.to_str().expect("utf8"), "--input", &xarg, "--output-dir", d.join("o").to_str().expect("utf8")])
        .expect("run");
    assert!(d.join("o/y.npy").exists());
    let e = sovc(&["opt", "builtin:mlp", "--target", "tpu"]).expect_err("unknown target");
    assert!(e.to_string().contains("`tpu`"), "{e}");
    let e = sovc(&["opt", "builtin:mlp", "--time-limit=0"]).expect_err("bad limit");
    assert!(e.to_string().contains("--time-limit"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn cpu_artifacts_compile_run_bench_audit_and_emit() {
    let d = tmp("cpu");
    let art = d.join("mlp.sovc");
    let a = art.to_str().expect("utf8");
    let e = sovc(&["compile", "builtin:mlp", "--target", "cpu", "-o", a]).expect_err("symbolic batch");
    assert!(format!("{e:#}").contains("--shape x="), "{e:#}");
    sovc(&["compile", "builtin:mlp", "--shape", "x=4x64", "--target", "cpu", "-o", a]).expect("compile");
    let x = sovc_ir::Tensor::from_vec(&[4, 64], sovc_models::builtin::det_values(256, 5, 1.0)).expect("len");
    sovc_runtime::write_npy(&d.join("x.npy"), &x).expect("write");
    let xarg = format!("x={}", d.join("x.npy").display());
    for (device, dir) in [("cpu", "c"), ("reference", "r")] {
        let out = d.join(dir);
        let o = out.to_str().expect("utf8");
        sovc(&["run", a, "--device", device, "--input", &xarg, "--output-dir", o]).expect("run");
    }
    let (c, r) = (
        sovc_runtime::read_npy(&d.join("c/probs.npy")).expect("c"),
        sovc_runtime::read_npy(&d.join("r/probs.npy")).expect("r"),
    );
    assert!(sovc_tests::max_abs_diff(&c, &r) < 1e-5);
    sovc(&["bench", a, "--input", &xarg, "--threads", "1", "--iters", "2", "--profile"]).expect("bench");
    let e = sovc(&["bench", a, "--input", &xarg, "--device", "reference", "--threads", "2"]).expect_err("threads");
    assert!(format!("{e:#}").contains("--threads"), "{e:#}");
    let artifact = sovc_runtime::Artifact::load(&art).expect("loads");
    let plan = artifact.plan().expect("parses").expect("plan");
    let audit = sovc_compiler::cli::audit_text(&artifact, &plan);
    assert!(audit.contains("runs as gemm+epilogue") && audit.contains("B of code"), "{audit}");
    let emitted = d.join("emit");
    sovc(&["emit", a, "--target", "cpu", "-o", emitted.to_str().expect("utf8")]).expect("emit");
    for f in ["cpu/kernel_0000.kir", "cpu/kernel_0000.s", "cpu/code.bin", "cpu/program.json"] {
        assert!(emitted.join(f).exists(), "{f} missing");
    }
    let kir = std::fs::read_to_string(emitted.join("cpu/kernel_0000.kir")).expect("kir");
    assert!(kir.contains("gemm \"k0\"") && kir.contains("epilogue"), "{kir}");
    let e = sovc(&["emit", a, "--target", "cuda", "-o", emitted.to_str().expect("utf8")]).expect_err("no cuda code");
    assert!(format!("{e:#}").contains("cuda"), "{e:#}");
    std::fs::remove_dir_all(&d).ok();
}

/// The Tensix workflow from the command line: compile for blackhole, run on the simulator with
/// `--compare` and `--trace`, audit, emit the project, bench with `--profile`, and the errors of bad
/// options.
#[test]
fn tensix_commands_work_end_to_end() {
    let d = tmp("tensix");
    let s = |p: &std::path::Path| p.to_str().expect("utf8").to_string();
    let art = s(&d.join("enc.sovc"));
    sovc(&["compile", "builtin:encoder_layer", "--target", "blackhole", "-o", &art]).expect("compiles");
    let x = sovc_ir::Tensor::from_vec(&[1, 16, 64], sovc_models::builtin::det_values(1024, 3, 1.0)).expect("len");
    sovc_runtime::write_npy(&d.join("x.npy"), &x).expect("npy");
    let xarg = format!("x={}", s(&d.join("x.npy")));
    let out = s(&d.join("out"));
    let trace = s(&d.join("trace.json"));
    sovc(&["run", &art, "--input", &xarg, "--output-dir", &out, "--compare", "--trace", &trace]).expect("runs");
    assert!(d.join("out/y.npy").exists());
    let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace).expect("trace")).expect("json");
    assert!(t["traceEvents"].as_array().is_some_and(|e| e.len() > 10));
    sovc(&["audit", &art]).expect("audits");
    let a = sovc_runtime::Artifact::load(&d.join("enc.sovc")).expect("loads");
    let plan = a.plan().expect("plan").expect("a plan");
    let audit = sovc_compiler::cli::audit_text(&a, &plan);
    assert!(
        audit.contains("L1 per core") && audit.contains("predicted") && audit.contains("fidelity HiFi4"),
        "{audit}"
    );
    let emitted = s(&d.join("emit"));
    sovc(&["emit", &art, "--target", "blackhole", "-o", &emitted]).expect("emits");
    assert!(d.join("emit/blackhole/CMakeLists.txt").exists() && d.join("emit/blackhole/host/main.cpp").exists());
    sovc(&["bench", &art, "--input", &xarg, "--iters", "1", "--warmup", "0", "--profile"]).expect("benches");
    // Bad options say what is wrong.
    let e =
        sovc(&["compile", "builtin:mlp", "--target", "blackhole", "--precision", "fp16", "-o", &art]).expect_err("bad");
    assert!(format!("{e:#}").contains("unknown precision `fp16`"), "{e:#}");
    let e = sovc(&[
        "compile",
        "builtin:encoder_layer",
        "--target",
        "blackhole",
        "--precision",
        "fp32",
        "--bf16-acc",
        "-o",
        &art,
    ])
    .expect_err("conflict");
    assert!(format!("{e:#}").contains("cannot be combined"), "{e:#}");
    let e = sovc(&["run", &art, "--input", &xarg, "--output-dir", &out, "--device", "cpu"]).expect_err("no cpu code");
    assert!(format!("{e:#}").contains("cpu"), "{e:#}");
    std::fs::remove_dir_all(&d).ok();
}
