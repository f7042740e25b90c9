//! The `ptx-emu` device: a `cuda` artifact's plan run step by step, launches on the PTX emulator
//! ([`super::emu`]), reference steps on the interpreter. Every graph value is a host tensor; a launch
//! copies its buffers in and out (the emulator's global memory is one vector per buffer).

use super::emu::PtxModule;
use super::{CudaPlan, CudaStep};
use crate::RuntimeError;
use sovc_ir::{Graph, Tensor};
use std::collections::BTreeMap;

pub struct PtxModel {
    graph: Graph,
    plan: CudaPlan,
    modules: Vec<PtxModule>,
    consts: BTreeMap<usize, Tensor>,
}

/// What a run did: instructions the emulator executed, per launch and in all.
#[derive(Clone, Debug, Default)]
pub struct EmuReport {
    pub launches: Vec<(String, u64)>,
    pub instructions: u64,
    pub reference_steps: usize,
}

impl PtxModel {
    pub fn new(graph: Graph, plan: CudaPlan, consts: BTreeMap<usize, Tensor>) -> Result<PtxModel, RuntimeError> {
        let mut modules = Vec::new();
        for m in &plan.modules {
            modules.push(
                PtxModule::parse(&m.ptx)
                    .map_err(|e| RuntimeError::Malformed(format!("PTX module `{}`: {e}", m.name)))?,
            );
        }
        for s in &plan.steps {
            if let CudaStep::Launch { module, entry, bufs, .. } = s {
                let m = modules.get(*module).ok_or_else(|| {
                    RuntimeError::Malformed(format!("launch of module {module}, which does not exist"))
                })?;
                let e = m
                    .entries
                    .get(entry)
                    .ok_or_else(|| RuntimeError::Malformed(format!("launch of `{entry}`, not in its module")))?;
                if e.params != bufs.len() + 1 || bufs.iter().any(|&b| b as usize >= graph.values.len()) {
                    return Err(RuntimeError::Malformed(format!("launch of `{entry}` with {} buffers", bufs.len())));
                }
            }
        }
        Ok(PtxModel { graph, plan, modules, consts })
    }

    /// Runs on named inputs; the named outputs and what the emulator did.
    pub fn run(
        &self,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<(BTreeMap<String, Tensor>, EmuReport), RuntimeError> {
        let g = &self.graph;
        let mut vals = crate::session::starting_values(g, &self.consts, inputs)?;
        let mut report = EmuReport::default();
        let dev = |m: String| RuntimeError::Device(m);
        for step in &self.plan.steps {
            match step {
                CudaStep::Launch { module, entry, bufs, threads, .. } => {
                    let mut mem: Vec<Vec<f32>> =
                        bufs.iter().map(|&b| crate::session::value_f32(g, &vals, b)).collect::<Result<_, _>>()?;
                    let e = &self.modules[*module].entries[entry];
                    let n = e.run(&mut mem, *threads, self.plan.block).map_err(dev)?;
                    report.instructions += n;
                    report.launches.push((entry.clone(), n));
                    for (&b, data) in bufs.iter().zip(mem) {
                        crate::session::store_f32(g, &mut vals, b, data)?;
                    }
                }
                CudaStep::Reference { nodes, .. } => {
                    report.reference_steps += 1;
                    crate::session::eval_nodes(g, nodes, &mut vals)?;
                }
            }
        }
        let out = crate::session::named_outputs(g, &vals)?;
        Ok((out, report))
    }
}
