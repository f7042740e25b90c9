//! The `cpu` target's back half: lowered kernels to a [`Program`] (steps, value slots, the activation
//! arena planned by liveness) and machine code from `sovc-target-cpu`.

use crate::lower::{inner_work, lower_group, scalar_consts, Lowered};
use crate::memplan;
use sovc_ir::kernel::KernelOp;
use sovc_ir::{Graph, ValueId};
use sovc_runtime::cpu::program::{Function, Im2col, Operand, Program, Slot, Step};
use sovc_target_cpu::CpuTarget;
use std::collections::BTreeMap;

/// What the cpu back end produced.
pub struct CpuBuild {
    pub program: Program,
    pub code: Vec<u8>,
    /// Kernel IR of every lowered kernel, as text.
    pub kir: String,
    /// Cranelift's disassembly of every function.
    pub asm: String,
    /// Per plan kernel: how it runs, its code size and the SHA-256 of its code.
    pub lowering: Vec<(String, u64, String)>,
}

fn operand(o: &sovc_ir::kernel::Operand) -> Operand {
    Operand { buf: o.buf, offset: o.offset, batch: o.batch, group: o.group, rows: o.rows, cols: o.cols }
}

/// Lowers and compiles every kernel group of `g`; `const_offsets` gives each constant's place in the
/// weights section.
pub fn build(g: &Graph, const_offsets: &BTreeMap<ValueId, u64>, target: &CpuTarget) -> Result<CpuBuild, String> {
    use sha2::{Digest, Sha256};
    if let Some(x) = g.inputs.iter().find(|x| g.ty(x.value).shape.as_consts().is_none()) {
        return Err(format!(
            "the cpu target needs static shapes: input `{}` is {}; fix its dimensions with --shape {}=DIMS",
            x.name,
            g.ty(x.value),
            x.name
        ));
    }
    let groups = crate::partition::partition(g);
    let scalars = scalar_consts(g);
    let mut steps: Vec<Step> = Vec::new();
    let mut kernels: Vec<sovc_ir::kernel::Kernel> = Vec::new();
    let mut kir = String::new();
    let mut how: Vec<String> = Vec::new();
    let mut kernel_funcs: Vec<Vec<usize>> = Vec::new();
    for (gi, grp) in groups.iter().enumerate() {
        let name = format!("k{gi}");
        match lower_group(g, grp, &name, &scalars) {
            Ok(lowered) => {
                let mut forms = Vec::new();
                let mut funcs = Vec::new();
                for Lowered { op, values } in lowered {
                    kir.push_str(&format!("# kernel {gi}\n{}\n", sovc_ir::kernel::print_op(&op)));
                    let bufs: Vec<u32> = values.iter().map(|v| v.index() as u32).collect();
                    match op {
                        KernelOp::Loop(k) => {
                            forms.push("loop");
                            let work = inner_work(&k.body).max(1);
                            steps.push(Step::Loop {
                                kernel: gi,
                                func: kernels.len(),
                                bufs,
                                extent: k.extent,
                                grain: (16384 / work).max(1),
                            });
                            funcs.push(kernels.len());
                            kernels.push(k);
                        }
                        KernelOp::Gemm(gm) => {
                            forms.push(if gm.epilogue.is_some() { "gemm+epilogue" } else { "gemm" });
                            let epilogue = gm.epilogue.map(|e| {
                                funcs.push(kernels.len());
                                kernels.push(e);
                                kernels.len() - 1
                            });
                            steps.push(Step::Gemm {
                                kernel: gi,
                                bufs,
                                batch: gm.batch,
                                m: gm.m,
                                n: gm.n,
                                k: gm.k,
                                a: operand(&gm.a),
                                b: operand(&gm.b),
                                b_const: gm.b_const,
                                im2col: gm.b_im2col.map(|i| {
                                    Box::new(Im2col {
                                        channels: i.channels,
                                        h: i.h,
                                        w: i.w,
                                        kh: i.kh,
                                        kw: i.kw,
                                        sh: i.sh,
                                        sw: i.sw,
                                        ph: i.ph,
                                        pw: i.pw,
                                        dh: i.dh,
                                        dw: i.dw,
                                        oh: i.oh,
                                        ow: i.ow,
                                    })
                                }),
                                groups: gm.groups,
                                c: operand(&gm.c),
                                epilogue,
                            });
                        }
                        KernelOp::Attention(a) => {
                            forms.push("attention");
                            steps.push(Step::Attention {
                                kernel: gi,
                                bufs,
                                heads: a.heads,
                                sq: a.sq,
                                sk: a.sk,
                                d: a.d,
                                dv: a.dv,
                                scale: a.scale,
                                q: a.q,
                                k: a.k,
                                v: a.v,
                                o: a.o,
                                mask: a.mask,
                            });
                        }
                    }
                }
                how.push(forms.join(", "));
                kernel_funcs.push(funcs);
            }
            Err(why) => {
                how.push(format!("reference: {why}"));
                kernel_funcs.push(Vec::new());
                steps.push(Step::Reference { kernel: gi, nodes: grp.nodes.clone() });
            }
        }
    }
    let refs: Vec<&sovc_ir::kernel::Kernel> = kernels.iter().collect();
    let code = sovc_target_cpu::compile(target, &refs)?;
    let mut asm = String::new();
    for f in &code.functions {
        asm.push_str(&format!("; function {} at {:#x}, {} bytes\n{}\n", f.name, f.offset, f.len, f.asm));
    }
    let lowering = how
        .into_iter()
        .zip(&kernel_funcs)
        .map(|(h, funcs)| {
            let mut hasher = Sha256::new();
            let mut bytes = 0;
            for &f in funcs {
                let cf = &code.functions[f];
                hasher.update(&code.code[cf.offset as usize..(cf.offset + cf.len) as usize]);
                bytes += cf.len;
            }
            let sha = if funcs.is_empty() { String::new() } else { sovc_runtime::artifact::hex(&hasher.finalize()) };
            (h, bytes, sha)
        })
        .collect();
    // Where values live: constants in the weights section, everything a step touches in the arena.
    let n = g.values.len();
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    fn touch(first: &mut [usize], last: &mut [usize], v: usize, s: usize) {
        first[v] = first[v].min(s);
        last[v] = last[v].max(s);
    }
    let defs = g.defs();
    for (si, step) in steps.iter().enumerate() {
        match step {
            Step::Loop { bufs, .. } | Step::Gemm { bufs, .. } | Step::Attention { bufs, .. } => {
                bufs.iter().for_each(|&b| touch(&mut first, &mut last, b as usize, si))
            }
            Step::Reference { nodes, .. } => {
                let inside: std::collections::BTreeSet<usize> = nodes.iter().copied().collect();
                for &nd in nodes {
                    for v in &g.nodes[nd].inputs {
                        let produced_inside = matches!(defs[v.index()], Some(sovc_ir::ValueDef::Node { node, .. }) if inside.contains(&node));
                        if !produced_inside {
                            touch(&mut first, &mut last, v.index(), si);
                        }
                    }
                }
            }
        }
    }
    // Values a reference step produces that something later needs.
    let end = steps.len();
    for o in &g.outputs {
        touch(&mut first, &mut last, o.value.index(), end);
    }
    for x in &g.inputs {
        touch(&mut first, &mut last, x.value.index(), 0);
    }
    for (si, step) in steps.iter().enumerate() {
        if let Step::Reference { nodes, .. } = step {
            for &nd in nodes {
                for v in &g.nodes[nd].outputs {
                    if first[v.index()] != usize::MAX {
                        touch(&mut first, &mut last, v.index(), si);
                    }
                }
            }
        }
    }
    let mut slots = vec![Slot::None; n];
    let mut planned: Vec<(usize, memplan::Buffer)> = Vec::new();
    for v in 0..n {
        if first[v] == usize::MAX {
            continue;
        }
        let id = ValueId(v as u32);
        if let Some(&off) = const_offsets.get(&id) {
            slots[v] = Slot::Weight(off);
            continue;
        }
        let ty = g.ty(id);
        let elems = ty.shape.num_elements().ok_or_else(|| format!("value {id} has a symbolic shape {}", ty.shape))?;
        let size = elems * ty.dtype.size() as u64;
        planned.push((v, memplan::Buffer { size: size.max(1), first: first[v], last: last[v] }));
    }
    let bufs: Vec<memplan::Buffer> = planned.iter().map(|p| p.1).collect();
    let plan = memplan::plan(&bufs);
    for ((v, _), off) in planned.iter().zip(&plan.offsets) {
        slots[*v] = Slot::Arena(*off);
    }
    let functions = code
        .functions
        .iter()
        .zip(&kernels)
        .map(|(f, k)| Function {
            name: f.name.clone(),
            offset: f.offset,
            len: f.len,
            extent: k.extent,
            bufs: k.bufs.iter().map(|b| (b.len, b.access != sovc_ir::kernel::Access::Read)).collect(),
        })
        .collect();
    let program = Program {
        arch: target.arch.clone(),
        features: target.features.clone(),
        arena_bytes: plan.arena_bytes,
        slots,
        functions,
        steps,
    };
    Ok(CpuBuild { program, code: code.code, kir, asm, lowering })
}
