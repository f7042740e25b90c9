//! The `metal` target's back half: every kernel group lowered to the kernel IR (as for the other
//! targets), each kernel written once as a WGSL compute shader by `sovc-target-metal` and translated
//! by naga into Metal Shading Language and SPIR-V, in a [`MetalPlan`] of launches. Groups the kernel IR
//! or the shader writer does not cover are reference steps, named with their reason in the audit.

use crate::lower::{lower_group, scalar_consts};
use sovc_ir::Graph;
use sovc_runtime::metal::{MetalModule, MetalPlan, MetalStep};

/// What the metal back end produced.
pub struct MetalBuild {
    pub plan: MetalPlan,
    /// `metal.spv`: every module's SPIR-V words, one after another.
    pub spirv: Vec<u32>,
    /// Per plan kernel: how it runs.
    pub lowering: Vec<String>,
}

/// Lowers every kernel group of `g` and writes its shaders, contractions and attention in `precision`.
pub fn build(g: &Graph, precision: sovc_target_metal::Precision) -> Result<MetalBuild, String> {
    crate::lower::require_static_shapes(g, "metal")?;
    let scalars = scalar_consts(g);
    let mut b = MetalBuild {
        plan: MetalPlan {
            workgroup: sovc_target_metal::WORKGROUP,
            precision: precision.name().into(),
            modules: Vec::new(),
            steps: Vec::new(),
        },
        spirv: Vec::new(),
        lowering: Vec::new(),
    };
    for (gi, grp) in crate::partition::partition(g).iter().enumerate() {
        let lowered = lower_group(g, grp, &format!("k{gi}"), &scalars).map_err(|e| e.to_string());
        let written = lowered.and_then(|ls| {
            let mut out = Vec::new();
            for (j, l) in ls.iter().enumerate() {
                let bufs: Vec<u32> = l.values.iter().map(|v| v.index() as u32).collect();
                for s in sovc_target_metal::shaders(&l.op, &format!("k{gi}_{j}"), precision)? {
                    let t = sovc_target_metal::translate(&s.name, &s.wgsl)?;
                    out.push((s, t, bufs.clone()));
                }
            }
            let forms: Vec<&str> = ls.iter().map(|l| crate::lower::form(&l.op)).collect();
            Ok((out, forms))
        });
        match written {
            Ok((shaders, forms)) => {
                for (s, t, bufs) in shaders {
                    let module = b.plan.modules.len();
                    b.plan.modules.push(MetalModule {
                        kernel: gi,
                        name: s.name,
                        msl: t.msl,
                        wgsl: s.wgsl,
                        spirv_offset: b.spirv.len() as u64,
                        spirv_len: t.spirv.len() as u64,
                        workgroup: s.workgroup,
                        threadgroup_vars: s.workgroup_vars,
                    });
                    b.spirv.extend_from_slice(&t.spirv);
                    b.plan.steps.push(MetalStep::Launch { kernel: gi, module, bufs, threads: s.threads });
                }
                b.lowering.push(format!("shader {}", forms.join(", ")));
            }
            Err(reason) => {
                b.lowering.push(format!("reference: {reason}"));
                b.plan.steps.push(MetalStep::Reference { kernel: gi, nodes: grp.nodes.clone(), reason });
            }
        }
    }
    Ok(b)
}

/// Per plan kernel, the audit lines of its shaders: threads, workgroups, threadgroup memory and the
/// size of the MSL (`sovc emit --target metal` writes the source).
pub fn audit_lines(plan: &MetalPlan) -> std::collections::BTreeMap<usize, Vec<String>> {
    let mut out: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for s in &plan.steps {
        if let MetalStep::Launch { kernel, module, threads, .. } = s {
            let m = &plan.modules[*module];
            let (x, y) = m.groups(*threads);
            out.entry(*kernel).or_default().push(format!(
                "shader `{}`: {threads} threads in {x}x{y} threadgroups of {}, {} bytes of threadgroup memory, {} bytes of MSL, {} words of SPIR-V",
                m.name,
                m.workgroup,
                m.workgroup_memory(),
                m.msl.len(),
                m.spirv_len
            ));
        }
    }
    out
}
