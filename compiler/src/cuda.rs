//! The `cuda` target's back half: every kernel group lowered to the kernel IR (as for `cpu`) and printed
//! as a PTX module by `sovc-target-cuda`, in a [`CudaPlan`] of launches. Groups the kernel IR or the PTX
//! writer does not cover are reference steps, named with their reason in the audit.

use crate::lower::{lower_group, scalar_consts, Lowered};
use sovc_ir::kernel::KernelOp;
use sovc_ir::Graph;
use sovc_runtime::cuda::{CudaPlan, CudaStep, Module};

/// What the cuda back end produced.
pub struct CudaBuild {
    pub plan: CudaPlan,
    /// Per plan kernel: how it runs.
    pub lowering: Vec<String>,
}

/// Lowers every kernel group of `g` and writes its PTX for `arch`.
pub fn build(g: &Graph, arch: &str) -> Result<CudaBuild, String> {
    if !sovc_target_cuda::ARCHS.contains(&arch) {
        return Err(format!("unknown CUDA architecture `{arch}` (sm_80, sm_90)"));
    }
    if let Some(x) = g.inputs.iter().find(|x| g.ty(x.value).shape.as_consts().is_none()) {
        return Err(format!(
            "the cuda target needs static shapes: input `{}` is {}; fix its dimensions with --shape {}=DIMS",
            x.name,
            g.ty(x.value),
            x.name
        ));
    }
    let scalars = scalar_consts(g);
    let mut plan = CudaPlan {
        arch: arch.to_string(),
        block: sovc_target_cuda::ptx::BLOCK,
        modules: Vec::new(),
        steps: Vec::new(),
    };
    let mut lowering = Vec::new();
    for (gi, grp) in crate::partition::partition(g).iter().enumerate() {
        let lowered = lower_group(g, grp, &format!("k{gi}"), &scalars).map_err(|e| e.to_string());
        let written = lowered.and_then(|ls| {
            let mut entries = Vec::new();
            let mut launches = Vec::new();
            let mut forms = Vec::new();
            for (j, Lowered { op, values }) in ls.into_iter().enumerate() {
                forms.push(match &op {
                    KernelOp::Loop(_) => "loop",
                    KernelOp::Gemm(gm) if gm.epilogue.is_some() => "gemm+epilogue",
                    KernelOp::Gemm(_) => "gemm",
                    KernelOp::Attention(_) => "attention",
                });
                let bufs: Vec<u32> = values.iter().map(|v| v.index() as u32).collect();
                for e in sovc_target_cuda::emit_op(&op, &format!("k{gi}_{j}"))? {
                    launches.push((e.name.clone(), bufs.clone(), e.threads));
                    entries.push(e);
                }
            }
            Ok((entries, launches, forms))
        });
        match written {
            Ok((entries, launches, forms)) => {
                let module = plan.modules.len();
                let refs: Vec<&sovc_target_cuda::Entry> = entries.iter().collect();
                plan.modules.push(Module {
                    kernel: gi,
                    name: format!("k{gi}"),
                    ptx: sovc_target_cuda::module(arch, &refs),
                });
                for (entry, bufs, threads) in launches {
                    plan.steps.push(CudaStep::Launch { kernel: gi, module, entry, bufs, threads });
                }
                lowering.push(format!("ptx {} ({} entries)", forms.join(", "), entries.len()));
            }
            Err(reason) => {
                lowering.push(format!("reference: {reason}"));
                plan.steps.push(CudaStep::Reference { kernel: gi, nodes: grp.nodes.clone(), reason });
            }
        }
    }
    Ok(CudaBuild { plan, lowering })
}
