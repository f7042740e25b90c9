//! The `tensix-sim` device: runs a Tensix plan the way its host program would. Inputs and weights are
//! tilized into their data format and written to the simulated DRAM banks; each device step runs its
//! program on the simulator ([`super::sim`]); each host step reads its inputs back (untilized), runs its
//! nodes on the reference interpreter and writes the results; outputs are read back at the end. Values the
//! plan does not place in DRAM (integer tensors, values only host steps touch) stay on the host.

use super::numerics;
use super::program::{DataFormat, DramTensor, Plan, Step};
use super::sim::{self, Dram, ProgramReport};
use crate::RuntimeError;
use sovc_ir::{DType, Graph, Tensor};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Predicted device time of one run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub programs: Vec<ProgramReport>,
    pub host_steps: usize,
    pub clock_mhz: u32,
    /// Cores of the device's compute grid.
    pub grid_cores: u32,
}

impl RunReport {
    pub fn device_cycles(&self) -> u64 {
        self.programs.iter().map(|p| p.cycles).sum()
    }

    pub fn device_seconds(&self) -> f64 {
        self.device_cycles() as f64 / (self.clock_mhz as f64 * 1e6)
    }

    /// Ideal FPU cycles over the cycles all grid cores were available.
    pub fn fpu_utilization(&self) -> f64 {
        let ideal: u64 = self.programs.iter().map(|p| p.ideal_fpu_cycles).sum();
        ideal as f64 / (self.device_cycles().max(1) as f64 * self.grid_cores.max(1) as f64)
    }

    /// A Chrome / Perfetto trace: a process per core, a thread per kernel, one slice per program.
    pub fn trace_json(&self) -> String {
        let us = |c: u64| c as f64 / self.clock_mhz as f64;
        let mut events = Vec::new();
        let mut start = 0u64;
        for p in &self.programs {
            for c in &p.cores {
                for (k, kind) in ["reader", "compute", "writer"].iter().enumerate() {
                    events.push(format!(
                        "{{\"name\":\"{} {kind}\",\"cat\":\"{}\",\"ph\":\"X\",\"ts\":{:.3},\"dur\":{:.3},\"pid\":{},\"tid\":{},\"args\":{{\"kernel\":{}}}}}",
                        p.name,
                        p.template,
                        us(start),
                        us(c.kernels[k]),
                        c.y * 100 + c.x,
                        k,
                        p.kernel
                    ));
                }
            }
            start += p.cycles;
        }
        let mut names = BTreeMap::new();
        for p in &self.programs {
            for c in &p.cores {
                names.insert(c.y * 100 + c.x, (c.x, c.y));
            }
        }
        for (pid, (x, y)) in names {
            events.push(format!(
                "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{pid},\"args\":{{\"name\":\"core ({x},{y})\"}}}}"
            ));
            for (k, name) in ["reader", "compute", "writer"].iter().enumerate() {
                events.push(format!(
                    "{{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":{pid},\"tid\":{k},\"args\":{{\"name\":\"{name}\"}}}}"
                ));
            }
        }
        format!("{{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n{}\n]}}\n", events.join(",\n"))
    }
}

/// A loaded Tensix artifact on the simulator.
pub struct TensixModel {
    graph: Graph,
    plan: Plan,
    consts: BTreeMap<usize, Tensor>,
    tensor_of: BTreeMap<usize, usize>,
    /// Tensors holding a part of a constant (written from it at the start of a run).
    parts: Vec<usize>,
    last: Mutex<Option<RunReport>>,
}

fn bad(m: impl Into<String>) -> RuntimeError {
    RuntimeError::Malformed(format!("tensix.plan: {}", m.into()))
}

impl TensixModel {
    /// Checks the plan against the graph: every DRAM tensor holds an f32 graph value of its shape, and
    /// every step names real nodes and programs that pass the static checks.
    pub fn new(graph: Graph, plan: Plan, consts: BTreeMap<usize, Tensor>) -> Result<TensixModel, RuntimeError> {
        plan.device.check().map_err(|e| bad(format!("device: {e}")))?;
        if plan.dram_bytes_per_bank > plan.device.dram_bank_bytes || plan.dram_bytes_per_bank > 1 << 34 {
            return Err(bad("the plan uses more DRAM than the device has"));
        }
        let mut tensor_of = BTreeMap::new();
        let mut parts = Vec::new();
        for (i, t) in plan.tensors.iter().enumerate() {
            let v = t.value as usize;
            let ty =
                graph.values.get(v).ok_or_else(|| bad(format!("tensor {i} holds value %{v}, not in the graph")))?;
            // Integer values (indices, masks) are stored as FP32, exact up to 2^24 (checked on upload).
            if ty.dtype != DType::F32 && !(ty.dtype.is_int() && t.format == DataFormat::Float32) {
                return Err(bad(format!(
                    "tensor {i} holds %{v} of type {ty} in {}; DRAM tensors are f32 values, or integers in Float32",
                    t.format.name()
                )));
            }
            let dims = ty.shape.as_consts().ok_or_else(|| bad(format!("%{v} has a symbolic shape")))?;
            let n = dims.len() as isize;
            if !(-1..n.max(0)).any(|k| view_at(&dims, k) == (t.batch, t.rows, t.cols)) {
                return Err(bad(format!("tensor {i} views %{v} ({ty}) as [{}, {}, {}]", t.batch, t.rows, t.cols)));
            }
            let pages_per_bank = t.tiles().div_ceil(plan.device.dram_banks as u64);
            let end = pages_per_bank.checked_mul(t.page_bytes()).and_then(|b| b.checked_add(t.address));
            if end.is_none_or(|e| e > plan.dram_bytes_per_bank) {
                return Err(bad(format!("tensor {i} (%{v}) lies outside the planned DRAM")));
            }
            if t.part.is_some() {
                if t.format != DataFormat::Float16_b {
                    return Err(bad(format!(
                        "tensor {i} holds a part of %{v} in {} (parts are Float16_b)",
                        t.format.name()
                    )));
                }
                // A constant's parts are written from it; an activation's by a device program.
                if consts.contains_key(&v) {
                    parts.push(i);
                }
            } else if tensor_of.insert(v, i).is_some() {
                return Err(bad(format!("%{v} has two DRAM tensors")));
            }
        }
        for s in &plan.steps {
            match s {
                Step::Device(p) => {
                    sim::check_program(&plan, p).map_err(|m| bad(format!("program `{}`: {m}", p.name)))?
                }
                Step::Host { nodes, .. } => {
                    if let Some(n) = nodes.iter().find(|&&n| n >= graph.nodes.len()) {
                        return Err(bad(format!("host step names node {n}, not in the graph")));
                    }
                }
            }
        }
        Ok(TensixModel { graph, plan, consts, tensor_of, parts, last: Mutex::new(None) })
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The report of the last run.
    pub fn last_report(&self) -> Option<RunReport> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs every device program alone on the reference's values of its inputs (`want`, every graph
    /// value by index, from `Session::reference_values`) and returns, per value a program writes, the
    /// step, the value and the program's result read back: each kernel's own error, without the error of
    /// the kernels before it (what matters on models whose outputs amplify any rounding).
    pub fn run_isolated(&self, want: &BTreeMap<usize, Tensor>) -> Result<Vec<(usize, usize, Tensor)>, RuntimeError> {
        let mut dram = Dram::new(self.plan.device.dram_banks, self.plan.dram_bytes_per_bank);
        let mut out = Vec::new();
        for (si, step) in self.plan.steps.iter().enumerate() {
            let Step::Device(p) = step else { continue };
            for &t in &p.tensors {
                let dt = &self.plan.tensors[t as usize];
                let v = dt.value as usize;
                if !self.writes(p, t) {
                    let x = want.get(&v).ok_or_else(|| RuntimeError::Device(format!("no reference value for %{v}")))?;
                    self.write_tensor(&mut dram, dt, x)?;
                }
            }
            sim::run_program(&self.plan, p, &mut dram).map_err(RuntimeError::Device)?;
            for &t in &p.tensors {
                let dt = &self.plan.tensors[t as usize];
                // Parts are compared through what reads them.
                if self.writes(p, t) && dt.part.is_none() {
                    let v = dt.value as usize;
                    out.push((si, v, self.read_tensor(&dram, dt, &self.shape(v))?));
                }
            }
        }
        Ok(out)
    }

    fn write_tensor(&self, dram: &mut Dram, t: &DramTensor, x: &Tensor) -> Result<(), RuntimeError> {
        if x.dtype().is_int() {
            if let Some(v) = x.to_i64_vec().into_iter().find(|v| v.unsigned_abs() > 1 << 24) {
                return Err(RuntimeError::Device(format!(
                    "%{} holds the integer {v}, beyond the 2^24 an FP32 DRAM tensor holds exactly",
                    t.value
                )));
            }
        }
        let bytes = tilize(t, x);
        for (page, b) in bytes.chunks(t.page_bytes() as usize).enumerate() {
            dram.write_page(t, page as u64).map_err(RuntimeError::Device)?.copy_from_slice(b);
        }
        Ok(())
    }

    fn read_tensor(&self, dram: &Dram, t: &DramTensor, shape: &[usize]) -> Result<Tensor, RuntimeError> {
        let mut vals = vec![0f32; (t.batch * t.rows * t.cols) as usize];
        let (rt, ct) = (t.row_tiles(), t.col_tiles());
        let mut tile = vec![0f32; 1024];
        for b in 0..t.batch {
            for tr in 0..rt {
                for tc in 0..ct {
                    let page = (b * rt + tr) * ct + tc;
                    numerics::unpack_tile(t.format, dram.read_page(t, page).map_err(RuntimeError::Device)?, &mut tile);
                    for r in 0..32u64 {
                        let row = tr * 32 + r;
                        if row >= t.rows {
                            break;
                        }
                        for c in 0..32u64 {
                            let col = tc * 32 + c;
                            if col >= t.cols {
                                break;
                            }
                            vals[((b * t.rows + row) * t.cols + col) as usize] = tile[(r * 32 + c) as usize];
                        }
                    }
                }
            }
        }
        Tensor::from_vec(shape, vals).ok_or_else(|| RuntimeError::Device("tensor size mismatch".into()))
    }

    /// Whether a graph input or constant holds value `v` (not written by any step).
    fn written_by_host(&self, v: usize) -> bool {
        self.graph.inputs.iter().any(|i| i.value.index() == v) || self.consts.contains_key(&v)
    }

    /// Whether program `p` writes plan tensor `t`.
    fn writes(&self, p: &super::program::Program, t: u32) -> bool {
        fn any(ops: &[super::program::Op], local: u8) -> bool {
            ops.iter().any(|o| match o {
                super::program::Op::WriteTile { tensor, .. } => *tensor == local,
                super::program::Op::Loop { body, .. } => any(body, local),
                super::program::Op::If { then, els, .. } => any(then, local) || any(els, local),
                _ => false,
            })
        }
        p.tensors.iter().position(|&x| x == t).is_some_and(|i| any(&p.writer, i as u8))
    }

    fn shape(&self, v: usize) -> Vec<usize> {
        self.graph.values[v].shape.as_consts().unwrap_or_default()
    }

    /// Runs on named inputs; returns the named outputs and keeps the timing report.
    pub fn run(&self, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
        self.run_watched(inputs, &mut |_, _, _| {})
    }

    /// As [`TensixModel::run`], calling `watch(step, value, tensor)` with every value a step writes to
    /// DRAM (read back as the host would see it), so a caller can find the first step that diverges.
    pub fn run_watched(
        &self,
        inputs: &BTreeMap<String, Tensor>,
        watch: &mut dyn FnMut(usize, usize, &Tensor),
    ) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
        let g = &self.graph;
        let mut dram = Dram::new(self.plan.device.dram_banks, self.plan.dram_bytes_per_bank);
        let mut host: BTreeMap<usize, Tensor> = BTreeMap::new();
        // Values in DRAM are written there; others, and integer values (which host steps read in their
        // own type), are kept on the host.
        let place = |dram: &mut Dram, host: &mut BTreeMap<usize, Tensor>, v: usize, t: Tensor| {
            if let Some(&i) = self.tensor_of.get(&v) {
                self.write_tensor(dram, &self.plan.tensors[i], &t)?;
                if t.dtype() == DType::F32 {
                    return Ok(());
                }
            }
            host.insert(v, t);
            Ok(())
        };
        for inp in &g.inputs {
            let t =
                inputs.get(&inp.name).ok_or_else(|| RuntimeError::Device(format!("missing input `{}`", inp.name)))?;
            let ty = g.ty(inp.value);
            if t.dtype() != ty.dtype || t.shape() != self.shape(inp.value.index()).as_slice() {
                return Err(RuntimeError::Device(format!(
                    "input `{}` is {:?} {:?}, the model takes {ty}",
                    inp.name,
                    t.dtype(),
                    t.shape()
                )));
            }
            place(&mut dram, &mut host, inp.value.index(), t.clone())?;
        }
        for (&v, t) in &self.consts {
            place(&mut dram, &mut host, v, t.clone())?;
        }
        for &i in &self.parts {
            let t = &self.plan.tensors[i];
            self.write_tensor(&mut dram, t, &self.consts[&(t.value as usize)])?;
        }
        let mut report = RunReport {
            clock_mhz: self.plan.device.clock_mhz,
            grid_cores: self.plan.device.cores(),
            ..Default::default()
        };
        for (si, step) in self.plan.steps.iter().enumerate() {
            match step {
                Step::Device(p) => {
                    report.programs.push(sim::run_program(&self.plan, p, &mut dram).map_err(RuntimeError::Device)?);
                    for &t in &p.tensors {
                        let dt = &self.plan.tensors[t as usize];
                        let v = dt.value as usize;
                        if !self.written_by_host(v) && self.writes(p, t) && dt.part.is_none() {
                            watch(si, v, &self.read_tensor(&dram, dt, &self.shape(v))?);
                        }
                    }
                }
                Step::Host { nodes, .. } => {
                    report.host_steps += 1;
                    let mut local: BTreeMap<usize, Tensor> = BTreeMap::new();
                    for &n in nodes {
                        let node = &g.nodes[n];
                        for &v in &node.inputs {
                            let i = v.index();
                            if local.contains_key(&i) {
                                continue;
                            }
                            let t = match (host.get(&i), self.tensor_of.get(&i)) {
                                (Some(t), _) => t.clone(),
                                (None, Some(&ti)) => self.read_tensor(&dram, &self.plan.tensors[ti], &self.shape(i))?,
                                (None, None) => {
                                    return Err(RuntimeError::Device(format!(
                                        "host step: node `{}` reads %{i}, which no earlier step produced",
                                        node.name
                                    )))
                                }
                            };
                            local.insert(i, t);
                        }
                        let ins: Vec<&Tensor> = node.inputs.iter().map(|v| &local[&v.index()]).collect();
                        let outs = crate::session::eval_node(node, &ins)?;
                        for (&v, t) in node.outputs.iter().zip(outs) {
                            watch(si, v.index(), &t);
                            local.insert(v.index(), t.clone());
                            place(&mut dram, &mut host, v.index(), t)?;
                        }
                    }
                }
            }
        }
        let mut out = BTreeMap::new();
        for o in &g.outputs {
            let i = o.value.index();
            let t = match (host.get(&i), self.tensor_of.get(&i)) {
                (Some(t), _) => t.clone(),
                (None, Some(&ti)) => self.read_tensor(&dram, &self.plan.tensors[ti], &self.shape(i))?,
                (None, None) => return Err(RuntimeError::Device(format!("output `{}` was never computed", o.name))),
            };
            out.insert(o.name.clone(), t);
        }
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(report);
        Ok(out)
    }
}

/// The tiles of `x` in `t`'s view and format, in page order (what a host writes to the buffer):
/// padding zero.
pub fn tilize(t: &DramTensor, x: &Tensor) -> Vec<u8> {
    let vals: Vec<f32> = x.to_f64_vec().into_iter().map(|v| t.part.map_or(v as f32, |p| p.of(v as f32))).collect();
    let (rt, ct) = (t.row_tiles(), t.col_tiles());
    let mut out = vec![0u8; (t.tiles() * t.page_bytes()) as usize];
    let mut tile = vec![0f32; 1024];
    for (page, chunk) in out.chunks_mut(t.page_bytes() as usize).enumerate() {
        let page = page as u64;
        let (b, tr, tc) = (page / (rt * ct), page / ct % rt, page % ct);
        tile.fill(0.0);
        for r in 0..32u64.min(t.rows.saturating_sub(tr * 32)) {
            let row = tr * 32 + r;
            for c in 0..32u64.min(t.cols.saturating_sub(tc * 32)) {
                let col = tc * 32 + c;
                tile[(r * 32 + c) as usize] = vals[((b * t.rows + row) * t.cols + col) as usize];
            }
        }
        numerics::pack_tile(t.format, &tile, chunk);
    }
    out
}

/// Predicted device time of every program of `plan` without computing any value (host steps skipped):
/// what the audit and the benchmarks report. DRAM is allocated only for addressing checks.
pub fn predict(plan: &Plan) -> Result<RunReport, RuntimeError> {
    plan.device.check().map_err(|e| bad(format!("device: {e}")))?;
    let mut dram = Dram::unbacked(plan.device.dram_banks, plan.dram_bytes_per_bank);
    let mut report =
        RunReport { clock_mhz: plan.device.clock_mhz, grid_cores: plan.device.cores(), ..Default::default() };
    for step in &plan.steps {
        match step {
            Step::Device(p) => {
                report.programs.push(sim::run_program_with(plan, p, &mut dram, false).map_err(RuntimeError::Device)?)
            }
            Step::Host { .. } => report.host_steps += 1,
        }
    }
    Ok(report)
}

/// The default `[batch, rows, cols]` view of a shape: the last two dims, everything before merged into
/// batch (`view_at(dims, rank - 2)`).
pub fn view(dims: &[usize]) -> (u64, u64, u64) {
    view_at(dims, dims.len() as isize - 2)
}

/// The view with dim `k` as the rows: the dims before it merged into batch, the dims after it into
/// columns (`k < 0`: one row of everything). Every view keeps the logical row-major order, so a
/// tensor's elements are the same in each; the choice only sets which elements share a tile
/// (`[N, C, H*W]`, `k = 1`, for convolution activations).
pub fn view_at(dims: &[usize], k: isize) -> (u64, u64, u64) {
    let p = |d: &[usize]| d.iter().product::<usize>() as u64;
    if k < 0 || k as usize >= dims.len() {
        return (1, 1, p(dims));
    }
    let k = k as usize;
    (p(&dims[..k]), dims[k] as u64, p(&dims[k + 1..]))
}
