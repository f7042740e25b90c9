//! The `sovc` command line. `anyhow` lives here, at the edge; the libraries below return typed errors.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sovc_ir::{Model, Tensor};
use sovc_models::onnx::ImportOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// sovc: an ahead-of-time compiler for machine-learning models, from model files to per-target code.
#[derive(Parser, Debug)]
#[command(name = "sovc", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Import a model and print its IR (the `.sov` text form), or write it with `-o`.
    ///
    /// With `-o OUT.sov`, the weights are written beside it as `OUT.safetensors`.
    Import {
        #[command(flatten)]
        model: ModelArgs,
        /// Write the IR here instead of printing it.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Expand composite ops (softmax, layer norm, GELU, ...) into primitives.
        #[arg(long)]
        decompose: bool,
    },
    /// Run a model on the reference interpreter and write one `.npy` per output.
    Run {
        #[command(flatten)]
        model: ModelArgs,
        /// An input as NAME=FILE.npy (repeat for each input).
        #[arg(long = "input", value_name = "NAME=FILE.npy")]
        inputs: Vec<String>,
        /// Folder for the outputs, written as `<output name>.npy`.
        #[arg(long, value_name = "DIR")]
        output_dir: PathBuf,
        /// Device for a `.sovc` artifact: `cpu` (the artifact's machine code; the default for a `cpu`
        /// artifact), `tensix-sim` (sovc's Tensix simulator; the default for a `blackhole` or
        /// `wormhole_b0` artifact), `ptx-emu` (sovc's PTX emulator; the default for a `cuda` artifact),
        /// `cuda` (an NVIDIA GPU through the driver, found at run time), `rvv-qemu` (a `riscv64-rvv`
        /// artifact's code under qemu-riscv64; its default), `vulkan` (a `metal` artifact's SPIR-V on a
        /// Vulkan device found at run time, such as Mesa's lavapipe; its default), `metal` (its MSL on an
        /// Apple GPU; macOS only) or `reference` (the interpreter on the artifact's graph; the default
        /// otherwise).
        #[arg(long)]
        device: Option<String>,
        /// Worker threads for the `cpu` device (default: every core this process may use).
        #[arg(long)]
        threads: Option<usize>,
        /// rvv-qemu: the emulated vector length in bits (a power of two from 128 to 1024; default 128).
        /// The code is vector-length agnostic: the same bytes run at every VLEN.
        #[arg(long, value_name = "BITS")]
        vlen: Option<u32>,
        /// Also run the reference interpreter and print, per output, the largest absolute difference and
        /// the Pearson correlation (PCC) of the device's result with it.
        #[arg(long)]
        compare: bool,
        /// tensix-sim: write a Chrome / Perfetto trace (a track per core and kernel) of the predicted
        /// device time to this file.
        #[arg(long, value_name = "FILE.json")]
        trace: Option<PathBuf>,
    },
    /// Optimize a model with equality saturation and print (or write) the optimized IR.
    ///
    /// Candidates are judged by the analytical cost model of `--target`; saturation is bounded by the
    /// node, iteration and time limits, and the report says which one stopped it.
    Opt {
        #[command(flatten)]
        model: ModelArgs,
        /// Write the optimized IR here (weights beside it as `.safetensors`) instead of printing it.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Cost model to optimize for: `cpu` or `blackhole`.
        #[arg(long, default_value = "cpu")]
        target: String,
        /// Print the report: e-nodes, iterations, stop reason, phase times, rules applied, cost and op
        /// counts before and after.
        #[arg(long)]
        stats: bool,
        /// Print, for every node the rules produced, the chain of rules that produced it.
        #[arg(long)]
        explain: bool,
        /// Write `before.sov` and `after.sov` into this folder.
        #[arg(long, value_name = "DIR")]
        dump_dir: Option<PathBuf>,
        /// Stop saturating past this many e-nodes.
        #[arg(long, default_value_t = 50_000)]
        node_limit: usize,
        /// Stop saturating after this many iterations.
        #[arg(long, default_value_t = 15)]
        iter_limit: usize,
        /// Stop saturating after this many seconds.
        #[arg(long, default_value_t = 10.0)]
        time_limit: f64,
    },
    /// Compile a model into a `.sovc` artifact.
    ///
    /// `--target cpu` generates machine code for this machine (x86-64 with AVX2+FMA, or aarch64): the
    /// artifact runs with `sovc run M.sovc --device cpu`. Shapes must be static: fix symbolic input
    /// dimensions with `--shape NAME=DIMS`. `--target blackhole` (Tenstorrent p150) and `--target
    /// wormhole_b0` (n150) build TT-Metalium programs: the artifact runs on the Tensix simulator with
    /// `sovc run M.sovc --device tensix-sim`, `sovc emit M.sovc --target blackhole -o DIR` writes the C++
    /// project, and `sovc audit` shows each program's cores, L1, circular buffers, formats and fidelity.
    /// The defaults favour accuracy (`--precision fp32`: FP32 activations and accumulation,
    /// split-precision products). `--target cuda [--arch sm_80|sm_90] [--precision fp32|bf16|f16]` writes
    /// PTX (bf16/f16: matmuls and convolutions on the tensor cores): the artifact runs on
    /// sovc's PTX emulator (`--device ptx-emu`) or an NVIDIA GPU (`--device cuda`), and `sovc emit
    /// --target cuda` writes the `.ptx` files. `--target riscv64-rvv` writes vector-length-agnostic RISC-V
    /// vector machine code: the artifact runs under qemu-riscv64 (`--device rvv-qemu [--vlen N]`) and
    /// `sovc emit --target riscv64-rvv` writes its assembler. `--target metal` writes each kernel as a
    /// compute shader in Metal Shading Language with a SPIR-V twin (`sovc emit --target metal` writes
    /// `.metal`, `.spv` and `.wgsl` files; `--precision f16` stages matmul and attention operands as f16); the SPIR-V runs on a Vulkan device (`--device vulkan`,
    /// lavapipe in CI); the MSL has not run on an Apple GPU. `--target null` optimizes and packs the graph and weights with no code; that
    /// artifact runs on the reference device.
    Compile {
        #[command(flatten)]
        model: ModelArgs,
        /// The target to compile for.
        #[arg(long, default_value = "null")]
        target: String,
        /// Where to write the artifact.
        #[arg(short, long)]
        output: PathBuf,
        /// Skip the e-graph optimizer.
        #[arg(long)]
        no_opt: bool,
        /// Tensix: a system-description JSON file (the form of targets/tensix/devices/*.json) replacing the
        /// built-in device description.
        #[arg(long, value_name = "FILE")]
        system_desc: Option<String>,
        /// Tensix: data format of activations in DRAM and circular buffers: bf16 (default) or fp32.
        #[arg(long, value_name = "FORMAT")]
        activations_format: Option<String>,
        /// Tensix: data format of matmul and convolution weights: bf16 (default), fp32, or bfp8 / bfp4
        /// (faster, less accurate).
        #[arg(long, value_name = "FORMAT")]
        weights_format: Option<String>,
        /// Tensix: math fidelity forced on every op (LoFi, HiFi2, HiFi3, HiFi4); default: per op, enough
        /// for the operands' precision.
        #[arg(long)]
        fidelity: Option<String>,
        /// Tensix: accumulate in BF16 in Dst instead of FP32 (twice the Dst tiles, less accurate).
        #[arg(long)]
        bf16_acc: bool,
        /// Tensix: `fp32` (the default) keeps activations in FP32 and computes matmul and convolution
        /// products in split precision (each operand as bf16 high and low parts, three products: about 16
        /// bits of mantissa instead of TF32's 10, at three times the FPU work and with the reader splitting
        /// tiles); `bf16` keeps activations in bf16 with one product per tile pair (faster, less accurate;
        /// implied by --bf16-acc, --fidelity and bf16 or block-float formats). CUDA: `fp32` (the default)
        /// computes everything in f32; `bf16` or `f16` rounds matmul and convolution operands to that type
        /// for the tensor cores (`mma.sync`, f32 accumulation); everything else stays f32. Metal: `fp32`
        /// (the default) or `f16`: matmuls, convolutions and tiled attention (rows of at most 128) stage
        /// their operands in threadgroup memory as f16, saturated at ±65504 (f32 products and sums);
        /// everything else stays f32.
        #[arg(long, value_name = "fp32|bf16|f16")]
        precision: Option<String>,
        /// CUDA: the GPU architecture the PTX is written for: sm_80 (default, Ampere and later) or sm_90.
        #[arg(long, value_name = "sm_80|sm_90")]
        arch: Option<String>,
        /// Tensix: every core reads its own matmul operands from DRAM, instead of one core per grid row
        /// (column) reading A's (B's) blocks and multicasting them to the others (for comparison).
        #[arg(long)]
        no_multicast: bool,
    },
    /// Audit an artifact: for every kernel, the graph nodes it came from and the optimizer rules that
    /// chose them, its FLOPs, the bytes it reads and writes, and a hash of its IR; then the weights,
    /// the planned activation memory and the root hash.
    Audit {
        /// The `.sovc` artifact.
        artifact: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Time an artifact: warm-up runs, then the median, minimum and maximum latency.
    Bench {
        /// The `.sovc` artifact.
        artifact: PathBuf,
        /// An input as NAME=FILE.npy (repeat for each input).
        #[arg(long = "input", value_name = "NAME=FILE.npy")]
        inputs: Vec<String>,
        /// Device to run on: `cpu` or `reference` (default: `cpu` for a `cpu` artifact).
        #[arg(long)]
        device: Option<String>,
        /// Worker threads for the `cpu` device (default: every core this process may use).
        #[arg(long)]
        threads: Option<usize>,
        /// Timed runs after the warm-up.
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Untimed warm-up runs.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Also print the time per kernel (cpu device), largest first.
        #[arg(long)]
        profile: bool,
    },
    /// Write every kernel of an artifact as files: its graph nodes (`kernel_<id>.sov`) and `plan.json`;
    /// for a `cpu` artifact also, under `cpu/`, each kernel's kernel IR (`kernel_<id>.kir`) and the
    /// disassembly of its machine code (`kernel_<id>.s`), the raw code (`code.bin`) and the execution
    /// program (`program.json`).
    Emit {
        /// The `.sovc` artifact.
        artifact: PathBuf,
        /// Only this target's code (default: every target the artifact carries).
        #[arg(long)]
        target: Option<String>,
        /// Folder to write into.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Summarise a model: inputs, outputs, op counts, parameters.
    Inspect {
        #[command(flatten)]
        model: ModelArgs,
    },
}

#[derive(Args, Debug)]
pub struct ModelArgs {
    /// The model: an `.onnx` file, a `.sov` file (with its weight files beside it) or `builtin:NAME`
    /// (`mlp`, `encoder_layer`, `decoder_layer`).
    pub model: PathBuf,
    /// Fix the shape of an input, binding the symbolic dimensions it uses: NAME=1x128 (`NAME=` for a
    /// scalar). Repeat for several inputs.
    #[arg(long = "shape", value_name = "NAME=DIMS")]
    pub shapes: Vec<String>,
}

/// Parses `NAME=1x3x224x224` (also `NAME=1,3,224,224`; `NAME=` is a scalar).
pub fn parse_shape_arg(s: &str) -> Result<(String, Vec<u64>)> {
    let (name, dims) =
        s.rsplit_once('=').ok_or_else(|| anyhow!("--shape `{s}`: expected NAME=DIMS, e.g. input_ids=1x128"))?;
    if name.is_empty() {
        bail!("--shape `{s}`: the input name is empty");
    }
    let dims = dims
        .split(['x', ','])
        .filter(|d| !d.is_empty())
        .map(|d| d.trim().parse::<u64>().map_err(|_| anyhow!("--shape `{s}`: `{d}` is not a dimension")))
        .collect::<Result<Vec<_>>>()?;
    Ok((name.to_string(), dims))
}

impl ModelArgs {
    fn load(&self) -> Result<Model> {
        let mut opts = ImportOptions::default();
        for s in &self.shapes {
            let (n, d) = parse_shape_arg(s)?;
            opts.shapes.insert(n, d);
        }
        let t = Instant::now();
        let m = sovc_models::load_model(&self.model, &opts)
            .with_context(|| format!("cannot load {}", self.model.display()))?;
        eprintln!(
            "loaded {}: {} nodes, {} parameters in {:.2} s",
            self.model.display(),
            m.graph.nodes.len(),
            m.graph.parameter_count(),
            t.elapsed().as_secs_f64()
        );
        Ok(m)
    }
}

pub use sovc_runtime::file_safe;

pub fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Import { model, output, decompose } => {
            let mut m = model.load()?;
            if decompose {
                m.graph = sovc_ir::decompose::decompose_all(&m.graph)?;
            }
            match output {
                None => print!("{}", sovc_ir::text::print(&m.graph)),
                Some(p) => {
                    let w = sovc_models::save_sov(&m, &p)?;
                    eprintln!(
                        "wrote {}{}",
                        p.display(),
                        w.map(|w| format!(" and {}", w.display())).unwrap_or_default()
                    );
                }
            }
        }
        Cmd::Run { model, inputs, output_dir, device, threads, vlen, compare, trace } => {
            let (outs, what) = if is_artifact(&model.model) {
                if !model.shapes.is_empty() {
                    bail!("--shape applies when importing; an artifact's shapes are fixed when it is compiled");
                }
                let a = sovc_runtime::Artifact::load(&model.model)?;
                let (mut s, device) = open_session(&a, device, threads)?;
                if trace.is_some() && s.tensix_model().is_none() {
                    bail!("--trace applies to the tensix-sim device");
                }
                if let Some(v) = vlen {
                    if s.rvv_model().is_none() {
                        bail!("--vlen applies to the rvv-qemu device");
                    }
                    if !(128..=1024).contains(&v) || !v.is_power_of_two() {
                        bail!("--vlen must be a power of two from 128 to 1024 (QEMU's range), not {v}");
                    }
                    s.rvv_options.vlen = v;
                }
                let feeds = read_inputs_for(s.graph(), &inputs)?;
                // With --compare, every graph value on the reference, once, before the timed run.
                let want = if compare {
                    Some(sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference)?.reference_values(&feeds)?)
                } else {
                    None
                };
                let t = Instant::now();
                let mut first: Option<(usize, usize, f64, f64)> = None;
                let outs = match (&want, s.tensix_model()) {
                    // On the simulator, --compare also finds the first kernel whose result diverges.
                    (Some(want), Some(m)) => m.run_watched(&feeds, &mut |step, v, t| {
                        if let Some(w) = want.get(&v) {
                            let (err, pcc) = crate::tensix_report::compare(t, w);
                            if first.is_none() && (pcc.is_nan() || pcc < 0.9999) {
                                first = Some((step, v, err, pcc));
                            }
                        }
                    })?,
                    _ => s.run(&feeds)?,
                };
                let what = format!("on device {device} in {:.3} s", t.elapsed().as_secs_f64());
                if let Some(r) = s.tensix_model().and_then(|m| m.last_report()) {
                    eprintln!("{}", crate::tensix_report::summary(&r));
                    if let Some(p) = &trace {
                        std::fs::write(p, r.trace_json()).with_context(|| format!("cannot write {}", p.display()))?;
                        eprintln!("wrote trace {}", p.display());
                    }
                }
                if let Some(want) = &want {
                    if let Some(m) = s.tensix_model() {
                        let plan = m.plan();
                        let mut low: Option<(f64, usize, usize)> = None;
                        for (step, v, t) in m.run_isolated(want)? {
                            let pcc = want.get(&v).map_or(f64::NAN, |w| crate::tensix_report::compare(&t, w).1);
                            if low.is_none_or(|l| pcc.is_nan() || pcc < l.0) {
                                low = Some((pcc, step, v));
                            }
                        }
                        if let Some((pcc, step, v)) = low {
                            let name = crate::tensix_report::step_name(plan, step);
                            eprintln!(
                                "each program alone on the reference's inputs: lowest PCC {pcc:.6} (%{v} of {name})"
                            );
                        }
                        if let Some((step, v, err, pcc)) = first {
                            let name = crate::tensix_report::step_name(plan, step);
                            eprintln!(
                                "first result below PCC 0.9999: %{v} written by {name} (step {step}): max abs error {err:.3e}, PCC {pcc:.6}"
                            );
                        }
                    }
                    for o in &s.graph().outputs {
                        if let (Some(t), Some(w)) = (outs.get(&o.name), want.get(&o.value.index())) {
                            let (err, pcc) = crate::tensix_report::compare(t, w);
                            eprintln!("{}: max abs error {err:.3e}, PCC {pcc:.6} against the reference", o.name);
                        }
                    }
                }
                (outs, what)
            } else {
                if compare || trace.is_some() {
                    bail!("--compare and --trace apply to compiled artifacts");
                }
                if threads.is_some() {
                    bail!("--threads applies to the cpu device; compile the model with --target cpu first");
                }
                let device = device.unwrap_or_else(|| "reference".into());
                if device != "reference" {
                    bail!("--device {device}: a model file runs on the reference interpreter; compile it first");
                }
                let m = model.load()?;
                let feeds = read_inputs(&m, &inputs)?;
                let t = Instant::now();
                (
                    sovc_ir::interp::run(&m.graph, &m.weights, &feeds)?,
                    format!("on the reference interpreter in {:.2} s", t.elapsed().as_secs_f64()),
                )
            };
            eprintln!("ran {what}");
            std::fs::create_dir_all(&output_dir).with_context(|| format!("cannot create {}", output_dir.display()))?;
            for (name, t) in &outs {
                let p = output_dir.join(format!("{}.npy", file_safe(name)));
                sovc_runtime::write_npy(&p, t)?;
                eprintln!("wrote {} ({} {:?})", p.display(), t.dtype(), t.shape());
            }
        }
        Cmd::Opt { model, output, target, stats, explain, dump_dir, node_limit, iter_limit, time_limit } => {
            let m = model.load()?;
            let desc = crate::opt::TargetDesc::by_name(&target)
                .ok_or_else(|| anyhow!("--target `{target}`: the cost model knows `cpu` and `blackhole`"))?;
            if !(time_limit > 0.0 && time_limit.is_finite()) {
                bail!("--time-limit must be a positive number of seconds");
            }
            let limits = crate::opt::Limits {
                nodes: node_limit,
                iterations: iter_limit,
                time: std::time::Duration::from_secs_f64(time_limit),
            };
            let opts = crate::opt::OptOptions { target: desc, limits, only_rules: None };
            let r = crate::opt::optimize(&m.graph, &m.weights, &opts)?;
            eprintln!(
                "optimized: {} -> {} nodes, {} iterations, {}",
                r.report.nodes_before, r.report.nodes_after, r.report.iterations, r.report.stop
            );
            if let Some(d) = &dump_dir {
                std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
                std::fs::write(d.join("before.sov"), sovc_ir::text::print(&m.graph))?;
                std::fs::write(d.join("after.sov"), sovc_ir::text::print(&r.graph))?;
                std::fs::write(d.join("report.txt"), r.report.render(&target))?;
            }
            if stats {
                eprint!("{}", r.report.render(&target));
            }
            if explain {
                for (i, rules) in r.explain.iter().enumerate() {
                    if !rules.is_empty() {
                        let n = &r.graph.nodes[i];
                        eprintln!("node {i} `{}` ({}): {}", n.name, n.op.name(), rules.join(" -> "));
                    }
                }
            }
            let mut weights = m.weights.clone();
            weights.map.extend(r.weights.map);
            let out = Model { graph: r.graph, weights };
            match output {
                None => print!("{}", sovc_ir::text::print(&out.graph)),
                Some(p) => {
                    sovc_models::save_sov(&out, &p)?;
                    eprintln!("wrote {}", p.display());
                }
            }
        }
        Cmd::Inspect { model } => {
            if is_artifact(&model.model) {
                let a = sovc_runtime::Artifact::load(&model.model)?;
                print!("{}", inspect_artifact(&a));
            } else {
                let m = model.load()?;
                print!("{}", inspect(&m));
            }
        }
        Cmd::Bench { artifact, inputs, device, threads, iters, warmup, profile } => {
            if iters == 0 {
                bail!("--iters must be at least 1");
            }
            let a = sovc_runtime::Artifact::load(&artifact)?;
            let (s, device) = open_session(&a, device, threads)?;
            let feeds = read_inputs_for(s.graph(), &inputs)?;
            for _ in 0..warmup {
                s.run(&feeds)?;
            }
            if profile && s.tensix_model().is_none() {
                s.cpu_model().ok_or_else(|| anyhow!("--profile needs the cpu or tensix-sim device"))?.start_profile();
            }
            let mut times = Vec::with_capacity(iters);
            for _ in 0..iters {
                let t = Instant::now();
                s.run(&feeds)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            let th = if device == "cpu" { format!(" ({} threads)", s.threads()) } else { String::new() };
            println!(
                "{}: device {device}{th}, {iters} runs after {warmup} warm-up: median {:.3} ms, min {:.3} ms, max {:.3} ms",
                artifact.display(),
                times[times.len() / 2],
                times[0],
                times[times.len() - 1]
            );
            // On the simulator the wall time is the simulator's; the device's time is the timing model's.
            if let Some(r) = s.tensix_model().and_then(|m| m.last_report()) {
                println!("(simulator wall time; the device itself is predicted below)");
                println!("{}", crate::tensix_report::summary(&r));
                if profile {
                    let total = r.device_cycles().max(1) as f64;
                    let mut by: Vec<_> = r.programs.iter().collect();
                    by.sort_by_key(|p| std::cmp::Reverse(p.cycles));
                    println!("{:>10} {:>6}  program (template, cores)", "device us", "share");
                    for p in by {
                        println!(
                            "{:>10.2} {:>5.1}%  {} ({}, {} cores{})",
                            p.cycles as f64 / r.clock_mhz as f64,
                            100.0 * p.cycles as f64 / total,
                            p.name,
                            p.template,
                            p.cores.len(),
                            if p.dram_bound { ", DRAM-bound" } else { "" }
                        );
                    }
                }
            }
            if let Some(m) = s.cpu_model().filter(|_| profile) {
                let mut p = m.profile();
                let total: f64 = p.iter().map(|x| x.2).sum();
                p.sort_by(|a, b| b.2.total_cmp(&a.2));
                let plan = a.plan()?.unwrap_or_default();
                println!("{:>8} {:>6} {:>7}  kernel", "ms/run", "share", "step");
                for (k, kind, t) in p {
                    let anchor = plan.kernels.get(k).map(|r| r.anchor.as_str()).unwrap_or("?");
                    println!(
                        "{:>8.3} {:>5.1}% {kind:>9}  {k} ({anchor})",
                        t * 1e3 / iters as f64,
                        100.0 * t / total.max(1e-12)
                    );
                }
            }
        }
        Cmd::Emit { artifact, output, target } => {
            let a = sovc_runtime::Artifact::load(&artifact)?;
            let plan = a.plan()?.ok_or_else(|| anyhow!("{}: the artifact has no kernel plan", artifact.display()))?;
            let s = sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference)?;
            std::fs::create_dir_all(&output).with_context(|| format!("cannot create {}", output.display()))?;
            let g = s.graph();
            for k in &plan.kernels {
                let mut text = format!("# kernel {} ({}), ir sha256 {}\n", k.id, k.anchor, k.ir_sha256);
                for r in &k.reads {
                    text.push_str(&format!("# reads {r}\n"));
                }
                for n in &k.nodes {
                    let node =
                        g.nodes.get(n.node).ok_or_else(|| anyhow!("plan names node {} the graph lacks", n.node))?;
                    text.push_str(&sovc_ir::text::print_node(g, node));
                    text.push('\n');
                }
                for w in &k.writes {
                    text.push_str(&format!("# writes {w}\n"));
                }
                std::fs::write(output.join(format!("kernel_{:04}.sov", k.id)), text)?;
            }
            std::fs::write(output.join("plan.json"), serde_json::to_string_pretty(&plan)?)?;
            eprintln!("wrote {} kernels to {}", plan.kernels.len(), output.display());
            if let Some(t) = &target {
                a.require_target(t)?;
            }
            if a.manifest.targets.iter().any(|t| t == "cpu") && target.as_deref().is_none_or(|t| t == "cpu") {
                let n = emit_cpu(&a, &output.join("cpu"))?;
                eprintln!("wrote the cpu code of {n} kernels to {}", output.join("cpu").display());
            }
            for arch in ["blackhole", "wormhole_b0"] {
                if a.manifest.targets.iter().any(|t| t == arch) && target.as_deref().is_none_or(|t| t == arch) {
                    let dir = output.join(arch);
                    let n = crate::tensix_report::emit_project(&a, &dir).map_err(|e| anyhow!(e))?;
                    eprintln!(
                        "wrote the TT-Metalium project ({n} files, tt-metal {}) to {}; build it with cmake against tt-metal",
                        sovc_target_tensix::emit::TT_METAL_VERSION,
                        dir.display()
                    );
                }
            }
            if a.manifest.targets.iter().any(|t| t == "cuda") && target.as_deref().is_none_or(|t| t == "cuda") {
                let dir = output.join("cuda");
                let plan = a.cuda_plan()?.ok_or_else(|| anyhow!("the artifact has no `cuda.plan` section"))?;
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                for m in &plan.modules {
                    let p = dir.join(format!("{}.ptx", m.name));
                    std::fs::write(&p, &m.ptx).with_context(|| format!("cannot write {}", p.display()))?;
                }
                let p = dir.join("plan.json");
                std::fs::write(&p, serde_json::to_vec_pretty(&plan)?)
                    .with_context(|| format!("cannot write {}", p.display()))?;
                eprintln!("wrote {} PTX modules for {} to {}", plan.modules.len(), plan.arch, dir.display());
            }
            if a.manifest.targets.iter().any(|t| t == "metal") && target.as_deref().is_none_or(|t| t == "metal") {
                let dir = output.join("metal");
                let (plan, spirv) =
                    a.metal_plan()?.ok_or_else(|| anyhow!("the artifact has no `metal.plan` section"))?;
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                // Each shader as Metal Shading Language, its SPIR-V twin and the WGSL both come from.
                for m in &plan.modules {
                    let words = spirv
                        .get(m.spirv_offset as usize..(m.spirv_offset + m.spirv_len) as usize)
                        .ok_or_else(|| anyhow!("module `{}` lies outside metal.spv", m.name))?;
                    let spv: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                    for (ext, data) in [("metal", m.msl.as_bytes()), ("spv", &spv[..]), ("wgsl", m.wgsl.as_bytes())] {
                        let p = dir.join(format!("{}.{ext}", m.name));
                        std::fs::write(&p, data).with_context(|| format!("cannot write {}", p.display()))?;
                    }
                }
                let p = dir.join("plan.json");
                std::fs::write(&p, serde_json::to_vec_pretty(&plan)?)
                    .with_context(|| format!("cannot write {}", p.display()))?;
                eprintln!("wrote {} shaders (.metal, .spv, .wgsl) to {}", plan.modules.len(), dir.display());
            }
            if a.manifest.targets.iter().any(|t| t == "riscv64-rvv")
                && target.as_deref().is_none_or(|t| t == "riscv64-rvv")
            {
                let dir = output.join("riscv64-rvv");
                let (plan, code) = a.rvv_plan()?.ok_or_else(|| anyhow!("the artifact has no `rvv.plan` section"))?;
                std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                let asm = String::from_utf8_lossy(named_section(&a, "rvv.asm")?).to_string();
                // One GNU assembler file per module (`riscv64-linux-gnu-as -march=rv64imafdv` assembles
                // it to the same bytes), the code and the plan.
                for (m, text) in plan.modules.iter().zip(asm.split("# kernel ").skip(1)) {
                    let p = dir.join(format!("k{}.s", m.kernel));
                    let body = text.split_once('\n').map(|x| x.1).unwrap_or_default();
                    std::fs::write(&p, format!("    .option norvc\n    .text\n{body}"))
                        .with_context(|| format!("cannot write {}", p.display()))?;
                }
                for (name, data) in [("code.bin", code.clone()), ("plan.json", serde_json::to_vec_pretty(&plan)?)] {
                    let p = dir.join(name);
                    std::fs::write(&p, data).with_context(|| format!("cannot write {}", p.display()))?;
                }
                eprintln!(
                    "wrote {} RVV modules ({} bytes of code) to {}",
                    plan.modules.len(),
                    code.len(),
                    dir.display()
                );
            }
        }
        Cmd::Audit { artifact, json } => {
            let a = sovc_runtime::Artifact::load(&artifact)?;
            let plan =
                a.plan()?.ok_or_else(|| anyhow!("{}: the artifact has no kernel plan to audit", artifact.display()))?;
            if json {
                let v = serde_json::json!({
                    "root_sha256": sovc_runtime::artifact::hex(&a.root_hash),
                    "producer": a.manifest.producer,
                    "targets": a.manifest.targets,
                    "weights_bytes": a.manifest.weights.iter().map(|w| w.size).sum::<u64>(),
                    "activation_bytes": a.manifest.activation_bytes,
                    "kernels": plan.kernels,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", audit_text(&a, &plan));
            }
        }
        Cmd::Compile {
            model,
            target,
            output,
            no_opt,
            system_desc,
            activations_format,
            weights_format,
            fidelity,
            bf16_acc,
            precision,
            no_multicast,
            arch,
        } => {
            let m = model.load()?;
            let t = Instant::now();
            let cuda = crate::compile::CudaOptions {
                arch,
                precision: if target == "cuda" { precision.clone() } else { None },
            };
            let metal =
                crate::compile::MetalOptions { precision: if target == "metal" { precision.clone() } else { None } };
            let tensix = crate::compile::TensixOptions {
                system_desc,
                activations: activations_format,
                weights: weights_format,
                fidelity,
                bf16_acc,
                precision: if target == "cuda" || target == "metal" { None } else { precision },
                no_multicast,
            };
            let c = crate::compile::compile(
                &m,
                &crate::compile::CompileOptions { target: target.clone(), optimize: !no_opt, tensix, cuda, metal },
            )?;
            std::fs::write(&output, &c.bytes).with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!(
                "compiled for {target} in {:.2} s: {} ({} bytes)",
                t.elapsed().as_secs_f64(),
                output.display(),
                c.bytes.len()
            );
        }
    }
    Ok(())
}

fn is_artifact(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("sovc")
}

fn read_inputs(m: &Model, args: &[String]) -> Result<BTreeMap<String, Tensor>> {
    read_inputs_for(&m.graph, args)
}

/// The text of `sovc inspect` on an artifact: manifest, sections with sizes and hashes, root hash.
pub fn inspect_artifact(a: &sovc_runtime::Artifact) -> String {
    use sovc_runtime::artifact::hex;
    use std::fmt::Write;
    let m = &a.manifest;
    let mut s = String::new();
    let _ = writeln!(s, "artifact version {}, root hash {}", a.version, hex(&a.root_hash));
    let _ = writeln!(s, "producer: {}", m.producer);
    let targets =
        if m.targets.is_empty() { "none (runs on the reference device)".to_string() } else { m.targets.join(", ") };
    let _ = writeln!(s, "targets: {targets}");
    s.push_str("inputs:\n");
    for x in &m.inputs {
        let _ = writeln!(s, "  {}: {}", x.name, x.ty);
    }
    s.push_str("outputs:\n");
    for o in &m.outputs {
        let _ = writeln!(s, "  {}: {}", o.name, o.ty);
    }
    let wbytes: u64 = m.weights.iter().map(|w| w.size).sum();
    let _ = writeln!(s, "weights: {} tensors, {wbytes} bytes", m.weights.len());
    let _ = writeln!(s, "activation memory (planned): {} bytes", m.activation_bytes);
    s.push_str("sections:\n");
    for sec in &a.sections {
        let _ = writeln!(
            s,
            "  {:<10} {:>12} bytes at {:>10}  sha256 {}",
            sec.name,
            sec.data.len(),
            sec.offset,
            hex(&sec.sha256)
        );
    }
    s
}

/// The text of `sovc audit`.
pub fn audit_text(a: &sovc_runtime::Artifact, plan: &sovc_runtime::artifact::PlanRecord) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let tensix: BTreeMap<usize, Vec<String>> = a
        .sections
        .iter()
        .find(|x| x.name == "tensix.plan")
        .and_then(|x| serde_json::from_slice::<sovc_runtime::tensix::program::Plan>(&x.data).ok())
        .map(|p| crate::tensix_report::audit_lines(&p))
        .unwrap_or_default();
    let cuda = a.cuda_plan().ok().flatten().map(|p| crate::cuda::audit_lines(&p)).unwrap_or_default();
    let rvv = a.rvv_plan().ok().flatten().map(|(p, code)| crate::rvv::audit_lines(&p, &code)).unwrap_or_default();
    let metal = a.metal_plan().ok().flatten().map(|(p, _)| crate::metal::audit_lines(&p)).unwrap_or_default();
    for k in &plan.kernels {
        let _ = writeln!(
            s,
            "kernel {} ({}): {} FLOP, reads {} B, writes {} B, ir sha256 {}",
            k.id,
            k.anchor,
            k.flops,
            k.bytes_read,
            k.bytes_written,
            &k.ir_sha256[..16]
        );
        for n in &k.nodes {
            let rules = if n.rules.is_empty() { String::new() } else { format!("  <- {}", n.rules.join(" -> ")) };
            let _ = writeln!(s, "  node {} {} `{}`{rules}", n.node, n.op, n.name);
        }
        if !k.lowering.is_empty() {
            let code = if k.code_bytes > 0 {
                format!(", {} B of code, sha256 {}", k.code_bytes, &k.code_sha256[..16.min(k.code_sha256.len())])
            } else {
                String::new()
            };
            let _ = writeln!(s, "  runs as {}{code}", k.lowering);
        }
        for line in
            tensix.get(&k.id).into_iter().chain(cuda.get(&k.id)).chain(rvv.get(&k.id)).chain(metal.get(&k.id)).flatten()
        {
            let _ = writeln!(s, "    {line}");
        }
        let _ = writeln!(s, "  reads  {}", k.reads.join(", "));
        let _ = writeln!(s, "  writes {}", k.writes.join(", "));
    }
    let flops: u64 = plan.kernels.iter().map(|k| k.flops).sum();
    let wbytes: u64 = a.manifest.weights.iter().map(|w| w.size).sum();
    let _ = writeln!(s, "{} kernels, {flops} FLOP in all", plan.kernels.len());
    let _ = writeln!(s, "weights: {wbytes} bytes; activation memory (planned): {} bytes", a.manifest.activation_bytes);
    let _ = writeln!(s, "root sha256: {}", sovc_runtime::artifact::hex(&a.root_hash));
    s
}

fn read_inputs_for(g: &sovc_ir::Graph, args: &[String]) -> Result<BTreeMap<String, Tensor>> {
    let mut feeds = BTreeMap::new();
    for a in args {
        let (name, file) = a.split_once('=').ok_or_else(|| anyhow!("--input `{a}`: expected NAME=FILE.npy"))?;
        let t = sovc_runtime::read_npy(Path::new(file))?;
        feeds.insert(name.to_string(), t);
    }
    let missing: Vec<String> = g
        .inputs
        .iter()
        .filter(|x| !feeds.contains_key(&x.name))
        .map(|x| format!("{} ({})", x.name, g.ty(x.value)))
        .collect();
    if !missing.is_empty() {
        bail!("missing --input for {}", missing.join(", "));
    }
    Ok(feeds)
}

/// The text of `sovc inspect`.
pub fn inspect(m: &Model) -> String {
    let g = &m.graph;
    let mut s = String::from("inputs:\n");
    for x in &g.inputs {
        s.push_str(&format!("  {}: {}\n", x.name, g.ty(x.value)));
    }
    s.push_str("outputs:\n");
    for o in &g.outputs {
        s.push_str(&format!("  {}: {}\n", o.name, g.ty(o.value)));
    }
    let bytes: u64 = g
        .consts
        .iter()
        .filter(|c| matches!(c.data, sovc_ir::ConstData::Weight(_)))
        .map(|c| {
            let t = g.ty(c.value);
            t.shape.num_elements().unwrap_or(0) * t.dtype.size() as u64
        })
        .sum();
    s.push_str(&format!("parameters: {} ({:.2} MB)\n", g.parameter_count(), bytes as f64 / 1e6));
    let kernels = crate::partition::partition(g).len();
    s.push_str(&format!("kernel groups (partitioned): {kernels}\n"));
    let plan = crate::memplan::plan_graph(g).0;
    s.push_str(&format!(
        "activation memory (planned): {:.2} MB, {:.2} MB without reuse\n",
        plan.arena_bytes as f64 / 1e6,
        plan.naive_bytes as f64 / 1e6
    ));
    s.push_str(&format!("nodes: {}\n", g.nodes.len()));
    for (op, n) in g.op_counts() {
        s.push_str(&format!("  {op}: {n}\n"));
    }
    s
}

/// Opens a session on `device`, or on the artifact's own device when none is named.
fn open_session(
    a: &sovc_runtime::Artifact,
    device: Option<String>,
    threads: Option<usize>,
) -> Result<(sovc_runtime::Session, String)> {
    let device = device.unwrap_or_else(|| sovc_runtime::Device::default_for(a).name().to_string());
    let d = sovc_runtime::Device::parse(&device)?;
    if threads.is_some() && d != sovc_runtime::Device::Cpu {
        bail!("--threads applies to the cpu device");
    }
    if threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    let s = sovc_runtime::Session::with_threads(a, d, threads.unwrap_or_else(sovc_runtime::session::default_threads))?;
    Ok((s, device))
}

fn named_section<'a>(a: &'a sovc_runtime::Artifact, name: &str) -> Result<&'a [u8]> {
    a.sections
        .iter()
        .find(|s| s.name == name)
        .map(|s| s.data.as_slice())
        .ok_or_else(|| anyhow!("the artifact has no `{name}` section"))
}

/// Splits `text` at lines starting with `marker` followed by a kernel number; returns number -> text.
fn split_by_kernel(text: &str, marker: &str) -> BTreeMap<usize, String> {
    let mut out: BTreeMap<usize, String> = BTreeMap::new();
    let mut cur = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(marker) {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            cur = digits.parse().ok();
        }
        if let Some(k) = cur {
            let e = out.entry(k).or_default();
            e.push_str(line);
            e.push('\n');
        }
    }
    out
}

/// Writes a `cpu` artifact's code: per kernel its kernel IR and disassembly, the raw code, the program.
fn emit_cpu(a: &sovc_runtime::Artifact, dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let kir = String::from_utf8_lossy(named_section(a, "cpu.kir")?).into_owned();
    let asm = String::from_utf8_lossy(named_section(a, "cpu.asm")?).into_owned();
    let kirs = split_by_kernel(&kir, "# kernel ");
    let asms = split_by_kernel(&asm, "; function k");
    for (k, text) in &kirs {
        std::fs::write(dir.join(format!("kernel_{k:04}.kir")), text)?;
    }
    for (k, text) in &asms {
        std::fs::write(dir.join(format!("kernel_{k:04}.s")), text)?;
    }
    std::fs::write(dir.join("code.bin"), named_section(a, "cpu.code")?)?;
    let program: serde_json::Value = serde_json::from_slice(named_section(a, "cpu.program")?)?;
    std::fs::write(dir.join("program.json"), serde_json::to_string_pretty(&program)?)?;
    Ok(kirs.len())
}
