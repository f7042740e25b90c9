//! Running an artifact on a device: `reference` runs the artifact's graph section on the reference
//! interpreter (any artifact); `cpu` runs the machine code of a `--target cpu` artifact (see [`crate::cpu`]).

use crate::artifact::{Artifact, SectionKind};
use crate::RuntimeError;
use sovc_ir::{DType, Graph, Tensor, WeightRef, Weights};
use std::collections::BTreeMap;

/// Where an artifact runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The reference interpreter on the artifact's graph: slow, exact, needs no target code.
    Reference,
    /// The host CPU running the artifact's `cpu` code.
    Cpu,
    /// sovc's Tensix simulator running the programs of a `blackhole` or `wormhole_b0` artifact.
    TensixSim,
    /// sovc's PTX emulator running the PTX of a `cuda` artifact.
    PtxEmu,
    /// An NVIDIA GPU running the PTX of a `cuda` artifact through the CUDA driver (found at run time).
    Cuda,
    /// The RVV code of a `riscv64-rvv` artifact under `qemu-riscv64` (see [`crate::rvv`]).
    RvvQemu,
    /// The SPIR-V shaders of a `metal` artifact on a Vulkan device found at run time (lavapipe in CI).
    Vulkan,
    /// The Metal Shading Language of a `metal` artifact on an Apple GPU (macOS only).
    Metal,
}

impl Device {
    /// The device an artifact runs on when none is named: `cpu` for a cpu artifact, `tensix-sim` for a
    /// Tensix one, else `reference`.
    pub fn default_for(a: &Artifact) -> Device {
        let has = |t: &str| a.manifest.targets.iter().any(|x| x == t);
        if has("cpu") {
            Device::Cpu
        } else if has("blackhole") || has("wormhole_b0") {
            Device::TensixSim
        } else if has("cuda") {
            Device::PtxEmu
        } else if has("riscv64-rvv") {
            Device::RvvQemu
        } else if has("metal") {
            Device::Vulkan
        } else {
            Device::Reference
        }
    }

    /// The name `parse` reads.
    pub fn name(self) -> &'static str {
        match self {
            Device::Reference => "reference",
            Device::Cpu => "cpu",
            Device::TensixSim => "tensix-sim",
            Device::PtxEmu => "ptx-emu",
            Device::Cuda => "cuda",
            Device::RvvQemu => "rvv-qemu",
            Device::Vulkan => "vulkan",
            Device::Metal => "metal",
        }
    }

    pub fn parse(s: &str) -> Result<Device, RuntimeError> {
        match s {
            "reference" => Ok(Device::Reference),
            "cpu" => Ok(Device::Cpu),
            "tensix-sim" => Ok(Device::TensixSim),
            "ptx-emu" => Ok(Device::PtxEmu),
            "cuda" => Ok(Device::Cuda),
            "rvv-qemu" => Ok(Device::RvvQemu),
            "vulkan" => Ok(Device::Vulkan),
            "metal" => Ok(Device::Metal),
            _ => Err(RuntimeError::Device(format!(
                "unknown device `{s}` (available: reference, cpu, tensix-sim, ptx-emu, cuda, rvv-qemu, vulkan, metal)"
            ))),
        }
    }
}

/// A loaded model ready to run.
pub struct Session {
    graph: Graph,
    weights: Weights,
    device: Device,
    cpu: Option<crate::cpu::CpuModel>,
    tensix: Option<crate::tensix::TensixModel>,
    ptx: Option<crate::cuda::PtxModel>,
    gpu: Option<crate::cuda::CudaModel>,
    rvv: Option<crate::rvv::RvvModel>,
    vulkan: Option<crate::vulkan::VulkanModel>,
    #[cfg(target_os = "macos")]
    metal: Option<crate::metal_device::MetalModel>,
    /// How `rvv-qemu` runs (VLEN, V extension on or off).
    pub rvv_options: crate::rvv::QemuOptions,
}

/// The graph's constants as tensors, by value index, with the weights they name.
fn graph_constants(graph: &Graph, weights: &Weights) -> Result<BTreeMap<usize, Tensor>, RuntimeError> {
    let mut consts = BTreeMap::new();
    for c in &graph.consts {
        let t = match &c.data {
            sovc_ir::ConstData::Inline(t) => t.clone(),
            sovc_ir::ConstData::Weight(r) => weights
                .get(r)
                .map(|t| (**t).clone())
                .ok_or_else(|| RuntimeError::Malformed(format!("constant `{}` names a missing weight", c.name)))?,
        };
        consts.insert(c.value.index(), t);
    }
    Ok(consts)
}

/// One node on the reference interpreter (host steps of the device runtimes), errors naming the node.
pub(crate) fn eval_node(node: &sovc_ir::Node, ins: &[&Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
    sovc_ir::interp::eval(&node.op, ins, &Default::default())
        .map_err(|msg| RuntimeError::Run(sovc_ir::IrError::Eval { node: node.name.clone(), op: node.op.name(), msg }))
}

/// Runs graph nodes `nodes` on the interpreter over `vals` (the host steps of the device runtimes):
/// each node's inputs must be there; its outputs are added.
pub(crate) fn eval_nodes(
    graph: &Graph,
    nodes: &[usize],
    vals: &mut BTreeMap<usize, Tensor>,
) -> Result<(), RuntimeError> {
    for &n in nodes {
        let node = &graph.nodes[n];
        let ins: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|v| {
                vals.get(&v.index()).ok_or_else(|| {
                    RuntimeError::Device(format!("node `{}` reads %{}, never computed", node.name, v.index()))
                })
            })
            .collect::<Result<_, _>>()?;
        let outs = eval_node(node, &ins)?;
        for (v, t) in node.outputs.iter().zip(outs) {
            vals.insert(v.index(), t);
        }
    }
    Ok(())
}

/// Inputs and constants by value index: the starting values of a device runtime's host-side run.
pub(crate) fn starting_values(
    graph: &Graph,
    consts: &BTreeMap<usize, Tensor>,
    inputs: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<usize, Tensor>, RuntimeError> {
    let mut vals = consts.clone();
    for i in &graph.inputs {
        let t = inputs.get(&i.name).ok_or_else(|| RuntimeError::Device(format!("missing input `{}`", i.name)))?;
        vals.insert(i.value.index(), t.clone());
    }
    Ok(vals)
}

/// Value `b` as the f32 elements a device buffer holds (zeros when not computed yet).
pub(crate) fn value_f32(graph: &Graph, vals: &BTreeMap<usize, Tensor>, b: u32) -> Result<Vec<f32>, RuntimeError> {
    let shape = graph.values[b as usize]
        .shape
        .as_consts()
        .ok_or_else(|| RuntimeError::Device(format!("%{b} has a symbolic shape")))?;
    Ok(match vals.get(&(b as usize)) {
        Some(t) => t.cast(DType::F32).to_f64_vec().into_iter().map(|v| v as f32).collect(),
        None => vec![0.0; shape.iter().product()],
    })
}

/// Stores a device buffer's elements back as value `b` (f32 values only: the others are inputs the
/// kernels read, never write).
pub(crate) fn store_f32(
    graph: &Graph,
    vals: &mut BTreeMap<usize, Tensor>,
    b: u32,
    data: Vec<f32>,
) -> Result<(), RuntimeError> {
    let ty = &graph.values[b as usize];
    if ty.dtype == DType::F32 {
        let shape = ty.shape.as_consts().unwrap_or_default();
        let t = Tensor::from_vec(&shape, data).ok_or_else(|| RuntimeError::Device(format!("%{b}: size mismatch")))?;
        vals.insert(b as usize, t);
    }
    Ok(())
}

/// The graph's outputs, by name, from `vals`.
pub(crate) fn named_outputs(
    graph: &Graph,
    vals: &BTreeMap<usize, Tensor>,
) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
    let mut out = BTreeMap::new();
    for o in &graph.outputs {
        let t = vals
            .get(&o.value.index())
            .ok_or_else(|| RuntimeError::Device(format!("output `{}` was never computed", o.name)))?;
        out.insert(o.name.clone(), t.clone());
    }
    Ok(out)
}

/// Threads to use when the caller does not say: every core the process may use.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Session {
    /// Prepares `a` for `device`: parses the graph and maps every weight out of the weights section.
    pub fn new(a: &Artifact, device: Device) -> Result<Session, RuntimeError> {
        Session::with_threads(a, device, default_threads())
    }

    /// As [`Session::new`], with `threads` worker threads for devices that use them (`cpu`).
    pub fn with_threads(a: &Artifact, device: Device, threads: usize) -> Result<Session, RuntimeError> {
        let graph_text =
            a.section(SectionKind::Graph).ok_or_else(|| RuntimeError::Malformed("no graph section".into()))?;
        let text = std::str::from_utf8(&graph_text.data)
            .map_err(|_| RuntimeError::Malformed("graph section is not UTF-8".into()))?;
        let graph = sovc_ir::text::parse(text).map_err(|e| RuntimeError::Malformed(format!("graph section: {e}")))?;
        let mut weights = Weights::default();
        let ws = a.section(SectionKind::Weights).map(|s| s.data.as_slice()).unwrap_or(&[]);
        for w in &a.manifest.weights {
            let dtype = DType::from_name(&w.dtype).ok_or_else(|| {
                RuntimeError::Malformed(format!("weight `{}` has unknown dtype `{}`", w.key, w.dtype))
            })?;
            let end = w.offset.checked_add(w.size).filter(|&e| e <= ws.len() as u64).ok_or_else(|| {
                RuntimeError::Malformed(format!("weight `{}` lies outside the weights section", w.key))
            })?;
            let shape: Vec<usize> = w.shape.iter().map(|&d| d as usize).collect();
            let size_ok = shape
                .iter()
                .try_fold(dtype.size(), |a, &d| a.checked_mul(d))
                .is_some_and(|n| n as u64 == end - w.offset);
            if !size_ok {
                return Err(RuntimeError::Malformed(format!("weight `{}`: size does not match its shape", w.key)));
            }
            // Only the interpreter and the simulator need weights as tensors; the cpu device reads the
            // section's bytes.
            if device != Device::Cpu {
                let t =
                    Tensor::from_le_bytes(dtype, &shape, &ws[w.offset as usize..end as usize]).ok_or_else(|| {
                        RuntimeError::Malformed(format!("weight `{}`: size does not match its shape", w.key))
                    })?;
                weights.insert(WeightRef { file: "weights".into(), key: w.key.clone() }, t);
            }
        }
        sovc_ir::verify(&graph).map_err(|e| RuntimeError::Malformed(format!("graph section: {}", e[0])))?;
        let tensix = match device {
            Device::TensixSim => {
                let arch = ["blackhole", "wormhole_b0"].into_iter().find(|t| a.manifest.targets.iter().any(|x| x == t));
                let Some(arch) = arch else {
                    return Err(RuntimeError::Device(format!(
                        "the artifact has no Tensix code (targets: {}); compile it with --target blackhole or wormhole_b0",
                        if a.manifest.targets.is_empty() { "none".to_string() } else { a.manifest.targets.join(", ") }
                    )));
                };
                let s = a.sections.iter().find(|s| s.kind == SectionKind::Code && s.name == "tensix.plan").ok_or_else(
                    || RuntimeError::Malformed(format!("a `{arch}` artifact without its `tensix.plan` section")),
                )?;
                let plan: crate::tensix::program::Plan = serde_json::from_slice(&s.data)
                    .map_err(|e| RuntimeError::Malformed(format!("tensix.plan: {e}")))?;
                Some(crate::tensix::TensixModel::new(graph.clone(), plan, graph_constants(&graph, &weights)?)?)
            }
            _ => None,
        };
        let ptx_parts = || -> Result<(crate::cuda::CudaPlan, BTreeMap<usize, Tensor>), RuntimeError> {
            let plan = a
                .cuda_plan()
                .map_err(|e| RuntimeError::Malformed(e.to_string()))?
                .ok_or_else(|| RuntimeError::Device("the artifact has no PTX; compile it with --target cuda".into()))?;
            Ok((plan, graph_constants(&graph, &weights)?))
        };
        let gpu = match device {
            Device::Cuda => {
                let (plan, consts) = ptx_parts()?;
                Some(crate::cuda::CudaModel::new(graph.clone(), plan, consts)?)
            }
            _ => None,
        };
        let ptx = match device {
            Device::PtxEmu => {
                let (plan, consts) = ptx_parts()?;
                Some(crate::cuda::PtxModel::new(graph.clone(), plan, consts)?)
            }
            _ => None,
        };
        let rvv = match device {
            Device::RvvQemu => {
                let (plan, code) =
                    a.rvv_plan().map_err(|e| RuntimeError::Malformed(e.to_string()))?.ok_or_else(|| {
                        RuntimeError::Device(
                            "the artifact has no RVV code; compile it with --target riscv64-rvv".into(),
                        )
                    })?;
                Some(crate::rvv::RvvModel::new(graph.clone(), plan, code, graph_constants(&graph, &weights)?)?)
            }
            _ => None,
        };
        let vulkan = match device {
            Device::Vulkan => {
                let (plan, spirv) =
                    a.metal_plan().map_err(|e| RuntimeError::Malformed(e.to_string()))?.ok_or_else(|| {
                        RuntimeError::Device("the artifact has no shaders; compile it with --target metal".into())
                    })?;
                Some(crate::vulkan::VulkanModel::new(graph.clone(), plan, &spirv, graph_constants(&graph, &weights)?)?)
            }
            _ => None,
        };
        #[cfg(target_os = "macos")]
        let metal = match device {
            Device::Metal => {
                let (plan, _) =
                    a.metal_plan().map_err(|e| RuntimeError::Malformed(e.to_string()))?.ok_or_else(|| {
                        RuntimeError::Device("the artifact has no shaders; compile it with --target metal".into())
                    })?;
                Some(crate::metal_device::MetalModel::new(graph.clone(), plan, graph_constants(&graph, &weights)?)?)
            }
            _ => None,
        };
        #[cfg(not(target_os = "macos"))]
        if device == Device::Metal {
            return Err(RuntimeError::Device(
                "the metal device needs macOS; on Linux run the same artifact's SPIR-V with --device vulkan".into(),
            ));
        }
        let cpu = match device {
            Device::Reference
            | Device::TensixSim
            | Device::PtxEmu
            | Device::Cuda
            | Device::RvvQemu
            | Device::Vulkan
            | Device::Metal => None,
            Device::Cpu => {
                a.require_target("cpu").map_err(|e| RuntimeError::Device(e.to_string()))?;
                let named = |n: &str| {
                    a.sections
                        .iter()
                        .find(|s| s.kind == SectionKind::Code && s.name == n)
                        .ok_or_else(|| RuntimeError::Malformed(format!("no `{n}` section")))
                };
                let program: crate::cpu::program::Program = serde_json::from_slice(&named("cpu.program")?.data)
                    .map_err(|e| RuntimeError::Malformed(format!("cpu.program: {e}")))?;
                Some(crate::cpu::CpuModel::new(graph.clone(), program, &named("cpu.code")?.data, ws, threads.max(1))?)
            }
        };
        Ok(Session {
            graph,
            weights,
            device,
            cpu,
            tensix,
            ptx,
            gpu,
            rvv,
            vulkan,
            #[cfg(target_os = "macos")]
            metal,
            rvv_options: Default::default(),
        })
    }

    /// The cpu device's model, for profiling.
    pub fn cpu_model(&self) -> Option<&crate::cpu::CpuModel> {
        self.cpu.as_ref()
    }

    /// The PTX emulator's model.
    pub fn ptx_model(&self) -> Option<&crate::cuda::PtxModel> {
        self.ptx.as_ref()
    }

    /// The `vulkan` device's model.
    pub fn vulkan_model(&self) -> Option<&crate::vulkan::VulkanModel> {
        self.vulkan.as_ref()
    }

    /// The `rvv-qemu` device's model.
    pub fn rvv_model(&self) -> Option<&crate::rvv::RvvModel> {
        self.rvv.as_ref()
    }

    /// The Tensix simulator's model, for its timing report.
    pub fn tensix_model(&self) -> Option<&crate::tensix::TensixModel> {
        self.tensix.as_ref()
    }

    /// Worker threads of the device (1 for `reference`).
    pub fn threads(&self) -> usize {
        self.cpu.as_ref().map_or(1, |m| m.threads())
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Every value of the graph on the reference interpreter, by value index (for finding where a
    /// device's results first diverge). Needs a `reference` or `tensix-sim` session (weights as tensors).
    pub fn reference_values(&self, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<usize, Tensor>, RuntimeError> {
        let g = &self.graph;
        let mut vals = self.constants()?;
        for i in &g.inputs {
            let t = inputs.get(&i.name).ok_or_else(|| RuntimeError::Device(format!("missing input `{}`", i.name)))?;
            vals.insert(i.value.index(), t.clone());
        }
        for node in &g.nodes {
            let ins: Vec<&Tensor> = node.inputs.iter().map(|v| &vals[&v.index()]).collect();
            let outs = eval_node(node, &ins)?;
            for (v, t) in node.outputs.iter().zip(outs) {
                vals.insert(v.index(), t);
            }
        }
        Ok(vals)
    }

    /// The graph's constants as tensors, by value index (needs a `reference` or `tensix-sim` session).
    pub fn constants(&self) -> Result<BTreeMap<usize, Tensor>, RuntimeError> {
        if self.device == Device::Cpu {
            return Err(RuntimeError::Device("this session holds no weights as tensors".into()));
        }
        graph_constants(&self.graph, &self.weights)
    }

    /// Runs on named inputs; returns the named outputs.
    pub fn run(&self, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
        match self.device {
            Device::Reference => sovc_ir::interp::run(&self.graph, &self.weights, inputs).map_err(RuntimeError::Run),
            Device::Cpu => match &self.cpu {
                Some(m) => m.run(inputs),
                None => Err(RuntimeError::Device("the cpu device was not prepared".into())),
            },
            Device::TensixSim => match &self.tensix {
                Some(m) => m.run(inputs),
                None => Err(RuntimeError::Device("the tensix-sim device was not prepared".into())),
            },
            Device::PtxEmu => match &self.ptx {
                Some(m) => m.run(inputs).map(|r| r.0),
                None => Err(RuntimeError::Device("the ptx-emu device was not prepared".into())),
            },
            Device::Cuda => match &self.gpu {
                Some(m) => m.run(inputs),
                None => Err(RuntimeError::Device("the cuda device was not prepared".into())),
            },
            Device::RvvQemu => match &self.rvv {
                Some(m) => m.run(inputs, self.rvv_options).map(|r| r.0),
                None => Err(RuntimeError::Device("the rvv-qemu device was not prepared".into())),
            },
            Device::Vulkan => match &self.vulkan {
                Some(m) => m.run(inputs),
                None => Err(RuntimeError::Device("the vulkan device was not prepared".into())),
            },
            #[cfg(target_os = "macos")]
            Device::Metal => match &self.metal {
                Some(m) => m.run(inputs),
                None => Err(RuntimeError::Device("the metal device was not prepared".into())),
            },
            #[cfg(not(target_os = "macos"))]
            Device::Metal => Err(RuntimeError::Device("the metal device needs macOS".into())),
        }
    }
}
