//! `sovc compile`: a model to a `.sovc` artifact. Phases: optimize (e-graph, the target's cost model),
//! fold constants, partition into kernel groups, lower them to kernel IR and generate code for the
//! target (`cpu`: see `crate::cpu`; `null`: no code, the artifact runs on the reference device), then
//! pack the graph, its weights (each 64-byte aligned, stored once), the manifest, the kernel plan and the
//! target's sections (`cpu.program`, `cpu.code`, `cpu.kir`, `cpu.asm`).

use crate::opt::{optimize, OptOptions, TargetDesc};
use sovc_ir::{ConstData, Model, WeightRef};
use sovc_runtime::artifact::{ArtifactBuilder, IoEntry, Manifest, SectionKind, WeightEntry, ALIGN};
use std::collections::BTreeMap;

/// Every target name `--target` accepts, and whether sovc can compile for it yet.
pub const TARGETS: [(&str, bool); 7] = [
    ("null", true),
    ("cpu", true),
    ("blackhole", true),
    ("wormhole_b0", true),
    ("riscv64-rvv", true),
    ("cuda", true),
    ("metal", true),
];

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("unknown target `{0}` (targets: null, cpu, blackhole, wormhole_b0, riscv64-rvv, cuda, metal)")]
    UnknownTarget(String),
    #[error("target `{0}` is not implemented yet; `null` compiles an artifact that the reference device runs")]
    NotImplemented(String),
    #[error(transparent)]
    Opt(#[from] crate::opt::OptError),
    #[error("{0}")]
    Weights(String),
    #[error("{0}")]
    Target(String),
}

/// Options of `sovc compile`.
#[derive(Clone, Debug)]
pub struct CompileOptions {
    pub target: String,
    pub optimize: bool,
    /// Options of the Tensix targets (`blackhole`, `wormhole_b0`).
    pub tensix: TensixOptions,
    /// Options of the `cuda` target.
    pub cuda: CudaOptions,
    /// Options of the `metal` target.
    pub metal: MetalOptions,
}

/// Metal options: the precision contractions and attention stage their operands in (`fp32`, the
/// default, or `f16`).
#[derive(Clone, Debug, Default)]
pub struct MetalOptions {
    pub precision: Option<String>,
}

/// CUDA options: the architecture (`sm_80`, the default, or `sm_90`) and the precision of matmul and
/// convolution operands (`fp32`, the default; `bf16` or `f16` on the tensor cores).
#[derive(Clone, Debug, Default)]
pub struct CudaOptions {
    pub arch: Option<String>,
    pub precision: Option<String>,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            target: "null".into(),
            optimize: true,
            tensix: TensixOptions::default(),
            cuda: CudaOptions::default(),
            metal: MetalOptions::default(),
        }
    }
}

/// Tensix options: a system-description file instead of the built-in device, the activations' data format
/// (`fp32`, `bf16`), the weights' (`fp32`, `bf16`, `bfp8`, `bfp4`), a fidelity forced on every op, and
/// BF16 instead of FP32 accumulation.
#[derive(Clone, Debug, Default)]
pub struct TensixOptions {
    pub system_desc: Option<String>,
    pub activations: Option<String>,
    pub weights: Option<String>,
    pub fidelity: Option<String>,
    pub bf16_acc: bool,
    /// `fp32` (the default unless a speed option is given): FP32 activations and split-precision
    /// matmul and convolution products; `bf16`: bf16 activations, one product per tile pair.
    pub precision: Option<String>,
    /// Every core reads its own matmul operands from DRAM (no multicast across the grid).
    pub no_multicast: bool,
}

fn tensix_options(arch: &str, o: &TensixOptions) -> Result<sovc_target_tensix::lower::Options, CompileError> {
    use sovc_runtime::tensix::program::{DataFormat, MathFidelity};
    let desc = match &o.system_desc {
        Some(p) => sovc_target_tensix::devices::from_file(p, arch).map_err(CompileError::Target)?,
        None => sovc_target_tensix::devices::builtin(arch)
            .ok_or_else(|| CompileError::Target(format!("no built-in description of `{arch}`")))?,
    };
    let mut t = sovc_target_tensix::lower::Options::new(desc);
    if let Some(w) = &o.weights {
        t.numerics.weights = DataFormat::parse(w)
            .ok_or_else(|| CompileError::Target(format!("unknown weights format `{w}` (fp32, bf16, bfp8, bfp4)")))?;
    }
    if let Some(a) = &o.activations {
        t.numerics.activations = DataFormat::parse(a)
            .filter(|f| matches!(f, DataFormat::Float32 | DataFormat::Float16_b))
            .ok_or_else(|| CompileError::Target(format!("unknown activations format `{a}` (fp32, bf16)")))?;
    }
    if let Some(f) = &o.fidelity {
        t.numerics.fidelity = Some(
            MathFidelity::parse(f)
                .ok_or_else(|| CompileError::Target(format!("unknown fidelity `{f}` (LoFi, HiFi2, HiFi3, HiFi4)")))?,
        );
    }
    t.numerics.fp32_dest_acc = !o.bf16_acc;
    t.multicast = !o.no_multicast;
    // The default favours accuracy: FP32 precision, unless an option that trades accuracy for speed
    // asks for less (then bf16).
    let speed = o.bf16_acc
        || o.fidelity.is_some()
        || o.weights.as_deref().is_some_and(|w| w != "fp32")
        || o.activations.as_deref().is_some_and(|a| a != "fp32");
    match o.precision.as_deref().unwrap_or(if speed { "bf16" } else { "fp32" }) {
        "bf16" => {}
        "fp32" => {
            if speed {
                return Err(CompileError::Target(
                    "--precision fp32 keeps FP32 activations, FP32 accumulation and split-precision products; \
                     it cannot be combined with --bf16-acc, --fidelity or bf16/block-float formats"
                        .into(),
                ));
            }
            t.numerics.split = true;
            t.numerics.activations = DataFormat::Float32;
        }
        p => return Err(CompileError::Target(format!("unknown precision `{p}` (bf16, fp32)"))),
    }
    Ok(t)
}

/// What was built.
pub struct Compiled {
    pub bytes: Vec<u8>,
    pub report: Option<crate::opt::Report>,
}

/// The kernel plan of a (canonical) graph: its partition into fused kernels, each with its nodes, the
/// rules behind them, FLOPs, bytes read and written, and a hash of its IR.
pub fn plan_record(g: &sovc_ir::Graph, explain: &[Vec<&'static str>]) -> sovc_runtime::artifact::PlanRecord {
    use crate::opt::cost::{op_flops, type_bytes};
    use sha2::{Digest, Sha256};
    let kernels = crate::partition::partition(g)
        .iter()
        .enumerate()
        .map(|(id, k)| {
            let mut text = String::new();
            let mut flops = 0.0;
            let nodes = k
                .nodes
                .iter()
                .map(|&n| {
                    let node = &g.nodes[n];
                    text.push_str(&sovc_ir::text::print_node(g, node));
                    text.push('\n');
                    let ins: Vec<&sovc_ir::TensorType> = node.inputs.iter().map(|&v| g.ty(v)).collect();
                    let outs: Vec<sovc_ir::TensorType> = node.outputs.iter().map(|&v| g.ty(v).clone()).collect();
                    flops += op_flops(&node.op, &ins, &outs);
                    sovc_runtime::artifact::NodeRecord {
                        node: n,
                        op: node.op.name().to_string(),
                        name: node.name.clone(),
                        rules: explain.get(n).map(|r| r.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
                    }
                })
                .collect();
            let describe = |v: &sovc_ir::ValueId| format!("{v}: {}", g.ty(*v));
            sovc_runtime::artifact::KernelRecord {
                id,
                anchor: k.anchor(g).name().to_string(),
                nodes,
                reads: k.inputs.iter().map(describe).collect(),
                writes: k.outputs.iter().map(describe).collect(),
                flops: flops as u64,
                bytes_read: k.inputs.iter().map(|&v| type_bytes(g.ty(v))).sum::<f64>() as u64,
                bytes_written: k.outputs.iter().map(|&v| type_bytes(g.ty(v))).sum::<f64>() as u64,
                ir_sha256: Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
                lowering: String::new(),
                code_bytes: 0,
                code_sha256: String::new(),
            }
        })
        .collect();
    sovc_runtime::artifact::PlanRecord { kernels }
}

/// Compiles `m` into artifact bytes (deterministic: the same model gives the same bytes).
pub fn compile(m: &Model, opts: &CompileOptions) -> Result<Compiled, CompileError> {
    match TARGETS.iter().find(|t| t.0 == opts.target) {
        None => return Err(CompileError::UnknownTarget(opts.target.clone())),
        Some((_, false)) => return Err(CompileError::NotImplemented(opts.target.clone())),
        Some(_) => {}
    }
    let (mut graph, mut weights, report, mut explain) = if opts.optimize {
        let desc = TargetDesc::by_name(&opts.target).unwrap_or_else(TargetDesc::cpu);
        let r = optimize(&m.graph, &m.weights, &OptOptions { target: desc, ..OptOptions::default() })?;
        let mut w = m.weights.clone();
        w.map.extend(r.weights.map);
        (r.graph, w, Some(r.report), r.explain)
    } else {
        let n = m.graph.nodes.len();
        (m.graph.clone(), m.weights.clone(), None, vec![Vec::new(); n])
    };
    let kept =
        sovc_ir::fold::fold_constants(&mut graph, &mut weights).map_err(|e| CompileError::Weights(e.to_string()))?;
    let mut k = kept.iter();
    explain.retain(|_| *k.next().unwrap_or(&true));
    let cpu = opts.target == "cpu";
    if cpu {
        // Machine code reads every constant from the weights section, small ones included.
        for c in &mut graph.consts {
            if let ConstData::Inline(t) = &c.data {
                let r = WeightRef { file: "inline".into(), key: format!("inline.{}", c.name) };
                weights.insert(r.clone(), t.clone());
                c.data = ConstData::Weight(r);
            }
        }
    }
    let graph_before = graph;
    let mut graph = graph_before.canonical();
    let mut const_offsets: BTreeMap<sovc_ir::ValueId, u64> = BTreeMap::new();
    // Weights, stored once each, in the order the graph's constants name them.
    let mut blob: Vec<u8> = Vec::new();
    let mut index: Vec<WeightEntry> = Vec::new();
    let mut placed: BTreeMap<WeightRef, String> = BTreeMap::new();
    for c in &mut graph.consts {
        let ConstData::Weight(r) = &c.data else { continue };
        let key = match placed.get(r) {
            Some(k) => k.clone(),
            None => {
                let t = weights.get(r).ok_or_else(|| {
                    CompileError::Weights(format!("weight `{}` of `{}` is not loaded", r.key, r.file))
                })?;
                let mut key = r.key.clone();
                let mut n = 1;
                while index.iter().any(|w| w.key == key) {
                    key = format!("{}#{n}", r.key);
                    n += 1;
                }
                let bytes = t.to_le_bytes();
                blob.resize(blob.len().div_ceil(ALIGN) * ALIGN, 0);
                index.push(WeightEntry {
                    key: key.clone(),
                    dtype: t.dtype().name().to_string(),
                    shape: t.shape().iter().map(|&d| d as u64).collect(),
                    offset: blob.len() as u64,
                    size: bytes.len() as u64,
                });
                blob.extend_from_slice(&bytes);
                placed.insert(r.clone(), key.clone());
                key
            }
        };
        if let Some(w) = index.iter().find(|w| w.key == key) {
            const_offsets.insert(c.value, w.offset);
        }
        c.data = ConstData::Weight(WeightRef { file: "weights".into(), key });
    }
    let tensix_build = if sovc_target_tensix::devices::ARCHS.contains(&opts.target.as_str()) {
        let topts = tensix_options(&opts.target, &opts.tensix)?;
        let groups: Vec<sovc_target_tensix::lower::Group> = crate::partition::partition(&graph)
            .into_iter()
            .map(|k| sovc_target_tensix::lower::Group { nodes: k.nodes, inputs: k.inputs, outputs: k.outputs })
            .collect();
        Some(sovc_target_tensix::lower::lower(&graph, &weights, &groups, &topts).map_err(CompileError::Target)?)
    } else {
        None
    };
    let cuda_build = if opts.target == "cuda" {
        let arch = opts.cuda.arch.as_deref().unwrap_or("sm_80");
        let p = opts.cuda.precision.as_deref().unwrap_or("fp32");
        let precision = sovc_target_cuda::Precision::parse(p)
            .ok_or_else(|| CompileError::Target(format!("unknown precision `{p}` for cuda (fp32, bf16, f16)")))?;
        Some(crate::cuda::build(&graph, arch, precision).map_err(CompileError::Target)?)
    } else {
        None
    };
    let metal_build = if opts.target == "metal" {
        let p = opts.metal.precision.as_deref().unwrap_or("fp32");
        let precision = sovc_target_metal::Precision::parse(p)
            .ok_or_else(|| CompileError::Target(format!("unknown precision `{p}` for metal (fp32, f16)")))?;
        Some(crate::metal::build(&graph, precision).map_err(CompileError::Target)?)
    } else {
        None
    };
    let rvv_build = if opts.target == "riscv64-rvv" {
        Some(crate::rvv::build(&graph).map_err(CompileError::Target)?)
    } else {
        None
    };
    let cpu_build = if cpu {
        let t = sovc_target_cpu::CpuTarget::host().map_err(CompileError::Target)?;
        Some(crate::cpu::build(&graph, &const_offsets, &t).map_err(CompileError::Target)?)
    } else {
        None
    };
    let io = |name: &str, v: sovc_ir::ValueId| IoEntry { name: name.to_string(), ty: graph.ty(v).to_string() };
    let manifest = Manifest {
        producer: format!("sovc {}", env!("CARGO_PKG_VERSION")),
        targets: if cpu
            || tensix_build.is_some()
            || cuda_build.is_some()
            || rvv_build.is_some()
            || metal_build.is_some()
        {
            vec![opts.target.clone()]
        } else {
            Vec::new()
        },
        inputs: graph.inputs.iter().map(|x| io(&x.name, x.value)).collect(),
        outputs: graph.outputs.iter().map(|o| io(&o.name, o.value)).collect(),
        weights: index,
        activation_bytes: match &cpu_build {
            Some(c) => c.program.arena_bytes,
            None => crate::memplan::plan_graph(&graph).0.arena_bytes,
        },
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| CompileError::Weights(e.to_string()))?;
    let mut record = plan_record(&graph, &explain);
    if let Some(c) = &cpu_build {
        for (k, (how, bytes, sha)) in record.kernels.iter_mut().zip(&c.lowering) {
            k.lowering = how.clone();
            k.code_bytes = *bytes;
            k.code_sha256 = sha.clone();
        }
    }
    if let Some(c) = &metal_build {
        use sha2::{Digest, Sha256};
        for (k, how) in record.kernels.iter_mut().zip(&c.lowering) {
            k.lowering = how.clone();
        }
        let mut per: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
        for m in &c.plan.modules {
            per.entry(m.kernel).or_default().extend_from_slice(m.msl.as_bytes());
        }
        for (kernel, msl) in per {
            if let Some(k) = record.kernels.get_mut(kernel) {
                k.code_bytes = msl.len() as u64;
                k.code_sha256 = Sha256::digest(&msl).iter().map(|b| format!("{b:02x}")).collect();
            }
        }
    }
    if let Some(c) = &rvv_build {
        use sha2::{Digest, Sha256};
        for (k, how) in record.kernels.iter_mut().zip(&c.lowering) {
            k.lowering = how.clone();
        }
        for m in &c.plan.modules {
            if let Some(k) = record.kernels.get_mut(m.kernel) {
                let code = &c.code[m.offset as usize..(m.offset + m.len) as usize];
                k.code_bytes = m.len;
                k.code_sha256 = Sha256::digest(code).iter().map(|b| format!("{b:02x}")).collect();
            }
        }
    }
    if let Some(c) = &cuda_build {
        use sha2::{Digest, Sha256};
        for (k, how) in record.kernels.iter_mut().zip(&c.lowering) {
            k.lowering = how.clone();
        }
        for m in &c.plan.modules {
            if let Some(k) = record.kernels.get_mut(m.kernel) {
                k.code_bytes = m.ptx.len() as u64;
                k.code_sha256 = Sha256::digest(m.ptx.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
            }
        }
    }
    let tensix_files = tensix_build.as_ref().map(|t| {
        let io = |v: &[(String, sovc_ir::ValueId)]| v.iter().map(|(n, v)| (n.clone(), v.0)).collect::<Vec<_>>();
        let ins = io(&graph.inputs.iter().map(|x| (x.name.clone(), x.value)).collect::<Vec<_>>());
        let outs = io(&graph.outputs.iter().map(|x| (x.name.clone(), x.value)).collect::<Vec<_>>());
        sovc_target_tensix::emit::emit_project(&t.plan, &ins, &outs)
    });
    if let Some(t) = &tensix_build {
        use sha2::{Digest, Sha256};
        for (k, how) in record.kernels.iter_mut().zip(&t.how) {
            k.lowering = how.clone();
        }
        for s in &t.plan.steps {
            if let sovc_runtime::tensix::program::Step::Device(p) = s {
                let src = sovc_target_tensix::emit::emit_kernels(&t.plan, p);
                let text = format!("{}{}{}", src.reader, src.compute, src.writer);
                if let Some(k) = record.kernels.get_mut(p.kernel) {
                    k.code_bytes = text.len() as u64;
                    k.code_sha256 = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
                }
            }
        }
    }
    let plan = serde_json::to_vec_pretty(&record).map_err(|e| CompileError::Weights(e.to_string()))?;
    let mut b = ArtifactBuilder::new();
    b.section(SectionKind::Manifest, "manifest", manifest_json);
    b.section(SectionKind::Graph, "graph", sovc_ir::text::print(&graph).into_bytes());
    b.section(SectionKind::Plan, "plan", plan);
    b.section(SectionKind::Weights, "weights", blob);
    if let Some(c) = cpu_build {
        let program = serde_json::to_vec(&c.program).map_err(|e| CompileError::Weights(e.to_string()))?;
        b.section(SectionKind::Code, "cpu.program", program);
        b.section(SectionKind::Code, "cpu.code", c.code);
        b.section(SectionKind::Code, "cpu.kir", c.kir.into_bytes());
        b.section(SectionKind::Code, "cpu.asm", c.asm.into_bytes());
    }
    if let Some(c) = cuda_build {
        let plan = serde_json::to_vec(&c.plan).map_err(|e| CompileError::Weights(e.to_string()))?;
        b.section(SectionKind::Code, "cuda.plan", plan);
    }
    if let Some(c) = metal_build {
        let plan = serde_json::to_vec(&c.plan).map_err(|e| CompileError::Weights(e.to_string()))?;
        b.section(SectionKind::Code, "metal.plan", plan);
        b.section(SectionKind::Code, "metal.spv", c.spirv.iter().flat_map(|w| w.to_le_bytes()).collect());
    }
    if let Some(c) = rvv_build {
        let plan = serde_json::to_vec(&c.plan).map_err(|e| CompileError::Weights(e.to_string()))?;
        b.section(SectionKind::Code, "rvv.plan", plan);
        b.section(SectionKind::Code, "rvv.code", c.code);
        b.section(SectionKind::Code, "rvv.asm", c.listing.into_bytes());
    }
    if let Some(t) = tensix_build {
        let plan = serde_json::to_vec(&t.plan).map_err(|e| CompileError::Weights(e.to_string()))?;
        b.section(SectionKind::Code, "tensix.plan", plan);
        let files =
            serde_json::to_vec(&tensix_files.unwrap_or_default()).map_err(|e| CompileError::Weights(e.to_string()))?;
        b.section(SectionKind::Code, "tensix.project", files);
    }
    Ok(Compiled { bytes: b.build(), report })
}
