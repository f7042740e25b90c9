//! The `riscv64-rvv` target's back half: every kernel group lowered to the kernel IR (as for `cpu` and
//! `cuda`) and written as vector-length-agnostic RVV machine code by `sovc-target-rvv`, one
//! position-independent module per group, in an [`RvvPlan`] of launches. Groups the kernel IR or the
//! RVV writer does not cover are reference steps, named with their reason in the audit.

use crate::lower::{lower_group, scalar_consts, Lowered};
use sovc_ir::kernel::KernelOp;
use sovc_ir::Graph;
use sovc_runtime::rvv::{RvvModule, RvvPlan, RvvStep};

/// What the rvv back end produced.
pub struct RvvBuild {
    pub plan: RvvPlan,
    /// `rvv.code`: every module's code, one after another.
    pub code: Vec<u8>,
    /// `rvv.asm`: every module's assembler listing.
    pub listing: String,
    /// Per plan kernel: how it runs.
    pub lowering: Vec<String>,
}

/// Lowers every kernel group of `g` and writes its RVV code.
pub fn build(g: &Graph) -> Result<RvvBuild, String> {
    crate::lower::require_static_shapes(g, "riscv64-rvv")?;
    let scalars = scalar_consts(g);
    let mut b = RvvBuild {
        plan: RvvPlan { vlen: "agnostic".into(), modules: Vec::new(), steps: Vec::new() },
        code: Vec::new(),
        listing: String::new(),
        lowering: Vec::new(),
    };
    for (gi, grp) in crate::partition::partition(g).iter().enumerate() {
        let lowered = lower_group(g, grp, &format!("k{gi}"), &scalars).map_err(|e| e.to_string());
        let written = lowered.and_then(|ls| {
            let named: Vec<(String, &KernelOp)> =
                ls.iter().enumerate().map(|(j, l)| (format!("k{gi}_{j}"), &l.op)).collect();
            let m = sovc_target_rvv::module(&named)?;
            let forms: Vec<&str> = ls.iter().map(|l| crate::lower::form(&l.op)).collect();
            Ok((ls, m, forms))
        });
        match written {
            Ok((ls, m, forms)) => {
                let module = b.plan.modules.len();
                b.plan.modules.push(RvvModule {
                    kernel: gi,
                    offset: b.code.len() as u64,
                    len: m.code.len() as u64,
                    functions: m.functions.iter().map(|f| (f.name.clone(), f.offset as u64, f.len as u64)).collect(),
                });
                for (j, Lowered { op, values }) in ls.iter().enumerate() {
                    let bufs: Vec<u32> = values.iter().map(|v| v.index() as u32).collect();
                    b.plan.steps.push(RvvStep::Launch {
                        kernel: gi,
                        module,
                        function: format!("k{gi}_{j}"),
                        bufs: bufs.clone(),
                    });
                    if let KernelOp::Gemm(gm) = op {
                        if gm.epilogue.is_some() {
                            b.plan.steps.push(RvvStep::Launch {
                                kernel: gi,
                                module,
                                function: format!("k{gi}_{j}_epilogue"),
                                bufs,
                            });
                        }
                    }
                }
                b.lowering.push(format!("rvv {} ({} bytes)", forms.join(", "), m.code.len()));
                b.listing.push_str(&format!("# kernel {gi}\n{}", m.listing));
                b.code.extend_from_slice(&m.code);
            }
            Err(reason) => {
                b.lowering.push(format!("reference: {reason}"));
                b.plan.steps.push(RvvStep::Reference { kernel: gi, nodes: grp.nodes.clone(), reason });
            }
        }
    }
    Ok(b)
}

/// Per plan kernel, the audit lines of its RVV functions: each function's static instruction mix.
pub fn audit_lines(plan: &RvvPlan, code: &[u8]) -> std::collections::BTreeMap<usize, Vec<String>> {
    let mut out: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for m in &plan.modules {
        for (name, off, len) in &m.functions {
            let start = (m.offset + off) as usize;
            let Some(bytes) = code.get(start..start + *len as usize) else { continue };
            out.entry(m.kernel).or_default().push(format!(
                "rvv function `{name}` ({} vector length): {}",
                plan.vlen,
                sovc_target_rvv::Mix::of(bytes).summary()
            ));
        }
    }
    out
}
