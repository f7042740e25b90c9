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

/// Lowers every kernel group of `g` and writes its PTX for `arch`, contractions in `precision`.
pub fn build(g: &Graph, arch: &str, precision: sovc_target_cuda::Precision) -> Result<CudaBuild, String> {
    if !sovc_target_cuda::ARCHS.contains(&arch) {
        return Err(format!("unknown CUDA architecture `{arch}` (sm_80, sm_90)"));
    }
    crate::lower::require_static_shapes(g, "cuda")?;
    let scalars = scalar_consts(g);
    let mut plan = CudaPlan {
        arch: arch.to_string(),
        precision: precision.name().to_string(),
        block: sovc_target_cuda::ptx::BLOCK,
        modules: Vec::new(),
        steps: Vec::new(),
    };
    let mut lowering = Vec::new();
    let mma = precision != sovc_target_cuda::Precision::Fp32;
    for (gi, grp) in crate::partition::partition(g).iter().enumerate() {
        let lowered = lower_group(g, grp, &format!("k{gi}"), &scalars).map_err(|e| e.to_string());
        let written = lowered.and_then(|ls| {
            let mut entries = Vec::new();
            let mut launches = Vec::new();
            let mut forms = Vec::new();
            for (j, Lowered { op, values }) in ls.into_iter().enumerate() {
                let form = crate::lower::form(&op);
                forms.push(if mma && matches!(op, KernelOp::Gemm(_)) {
                    format!("mma {form}")
                } else {
                    form.to_string()
                });
                let bufs: Vec<u32> = values.iter().map(|v| v.index() as u32).collect();
                for e in sovc_target_cuda::emit_op(&op, &format!("k{gi}_{j}"), precision)? {
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

/// NVIDIA's `ptxas`: `$SOVC_PTXAS`, the copy `scripts/setup-test-deps.sh` unpacks (`.deps/cuda` under the
/// current folder or a folder above the running binary), or `ptxas` on the `PATH`.
pub fn find_ptxas() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("SOVC_PTXAS") {
        return Some(p.into());
    }
    let rel = std::path::Path::new(".deps/cuda/nvidia/cuda_nvcc/bin/ptxas");
    let mut roots: Vec<std::path::PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(|p| p.to_path_buf()));
    }
    if let Some(p) = roots.iter().map(|r| r.join(rel)).find(|p| p.is_file()) {
        return Some(p);
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join("ptxas")).find(|p| p.is_file())
}

/// Per plan kernel, the audit lines of its launches: threads and blocks, and with `ptxas` the resources
/// of each entry (`ptxas -v`: registers, barriers, stack, spills, shared memory).
pub fn audit_lines(plan: &CudaPlan) -> std::collections::BTreeMap<usize, Vec<String>> {
    let mut out: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    let ptxas = find_ptxas();
    let mut resources: std::collections::BTreeMap<String, String> = Default::default();
    if let Some(ptxas) = &ptxas {
        let dir = std::env::temp_dir().join(format!("sovc-audit-ptx-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        for m in &plan.modules {
            let src = dir.join(format!("{}.ptx", m.name));
            if std::fs::write(&src, &m.ptx).is_err() {
                continue;
            }
            let Ok(o) = std::process::Command::new(ptxas)
                .args(["-v", &format!("-arch={}", plan.arch), "-o"])
                .arg(dir.join("out.cubin"))
                .arg(&src)
                .output()
            else {
                continue;
            };
            let text = String::from_utf8_lossy(&o.stderr).to_string();
            if !o.status.success() {
                out.entry(m.kernel).or_default().push(format!("ptxas rejects `{}`: {}", m.name, text.trim()));
                continue;
            }
            let mut entry = String::new();
            for l in text.lines() {
                if let Some(e) = l.split("Compiling entry function '").nth(1).and_then(|r| r.split('\'').next()) {
                    entry = e.to_string();
                } else if l.contains("bytes stack frame") || l.contains("Used ") {
                    let info = l.trim().trim_start_matches("ptxas info    : ");
                    let r = resources.entry(entry.clone()).or_default();
                    if !r.is_empty() {
                        r.push_str("; ");
                    }
                    r.push_str(info);
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    for s in &plan.steps {
        if let CudaStep::Launch { kernel, entry, threads, .. } = s {
            let blocks = threads.div_ceil(plan.block);
            let res = match (&ptxas, resources.get(entry)) {
                (_, Some(r)) => format!(": {r}"),
                (None, _) => {
                    " (ptxas not found: set SOVC_PTXAS or run scripts/setup-test-deps.sh for registers and spills)"
                        .into()
                }
                _ => String::new(),
            };
            out.entry(*kernel).or_default().push(format!(
                "ptx entry `{entry}` for {} ({}): {threads} threads in {blocks} blocks of {}{res}",
                plan.arch, plan.precision, plan.block
            ));
        }
    }
    out
}
