//! The plan of a `riscv64-rvv` artifact (its `rvv.plan` section, JSON; the code in `rvv.code`) and the
//! `rvv-qemu` device. A module is one kernel group's position-independent code, at an offset in
//! `rvv.code`; a launch calls a function of a module (`void f(float **bufs)`) on graph values; groups no
//! RVV code covers are reference steps the host runs on the interpreter.
//!
//! `rvv-qemu` runs each stretch of consecutive launches in one process of `sovc-rvv-loader` (a static
//! riscv64 program, `runtime/rvv-loader/loader.c`) under `qemu-riscv64 -cpu rv64,v=true,vlen=N`: the
//! host writes the code, the buffers the stretch touches and its calls to a file, the loader maps the
//! code, runs the calls and writes the buffers back. With `vector: false` QEMU runs a CPU without the V
//! extension, where the code must trap (the tests' proof that it is vector code).

use crate::RuntimeError;
use serde::{Deserialize, Serialize};
use sovc_ir::{Graph, Tensor};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RvvPlan {
    /// `agnostic`: the code reads the vector length with `vsetvli` and runs at any VLEN.
    pub vlen: String,
    pub modules: Vec<RvvModule>,
    pub steps: Vec<RvvStep>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RvvModule {
    /// The plan kernel (group) it implements.
    pub kernel: usize,
    /// Its code: bytes `offset..offset + len` of `rvv.code`.
    pub offset: u64,
    pub len: u64,
    /// Its functions: name, offset from the module's start, length.
    pub functions: Vec<(String, u64, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RvvStep {
    Launch { kernel: usize, module: usize, function: String, bufs: Vec<u32> },
    Reference { kernel: usize, nodes: Vec<usize>, reason: String },
}

/// How `rvv-qemu` runs: the emulated vector length in bits, whether the CPU has the V extension, and
/// whether to count the instructions each function executes (QEMU single-stepping with its execution
/// log: slow, for measurements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QemuOptions {
    pub vlen: u32,
    pub vector: bool,
    pub count: bool,
}

impl Default for QemuOptions {
    fn default() -> Self {
        QemuOptions { vlen: 128, vector: true, count: false }
    }
}

/// Instructions a function executed: (scalar, vector), summed over its launches.
pub type Counts = BTreeMap<String, (u64, u64)>;

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RvvReport {
    /// Loader processes started (one per stretch of launches).
    pub processes: usize,
    pub launches: usize,
    pub reference_steps: usize,
    /// With `QemuOptions::count`: per function, the instructions it executed.
    pub counts: Counts,
}

/// Whether the 32-bit instruction `w` belongs to the vector extension (OP-V, or a vector load/store).
pub fn is_vector(w: u32) -> bool {
    let (op, width) = (w & 0x7F, (w >> 12) & 7);
    op == 0x57 || (matches!(op, 0x07 | 0x27) && matches!(width, 0 | 5 | 6 | 7))
}

/// Attributes the program counters of a QEMU `-d exec,nochain -singlestep` log to the functions of
/// `code` mapped at `base`: per function, (scalar, vector) instructions executed.
pub fn count_trace(log: &str, base: u64, code: &[u8], functions: &[(String, u64, u64)], counts: &mut Counts) {
    for line in log.lines() {
        // `Trace 0: 0xHOST [CS_BASE/PC/FLAGS/...] symbol`
        let Some(pc) = line.split('[').nth(1).and_then(|r| r.split('/').nth(1)) else { continue };
        let Ok(pc) = u64::from_str_radix(pc, 16) else { continue };
        let Some(off) = pc.checked_sub(base).filter(|&o| o + 4 <= code.len() as u64) else { continue };
        let Some(f) = functions.iter().find(|f| f.1 <= off && off < f.1 + f.2) else { continue };
        let o = off as usize;
        let w = u32::from_le_bytes([code[o], code[o + 1], code[o + 2], code[o + 3]]);
        let e = counts.entry(f.0.clone()).or_default();
        if is_vector(w) {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
    }
}

/// A tool: `$VAR`, then `rel` (if any) under the current folder or a folder above the running binary,
/// then `name` on the `PATH`.
fn find_tool(var: &str, rel: Option<&str>, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(p.into());
    }
    if let Some(rel) = rel {
        let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
        if let Ok(exe) = std::env::current_exe() {
            roots.extend(exe.ancestors().skip(1).take(4).map(|p| p.to_path_buf()));
        }
        if let Some(p) = roots.iter().map(|r| r.join(rel)).find(|p| p.is_file()) {
            return Some(p);
        }
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| std::path::Path::new(d).join(name)).find(|p| p.is_file())
}

/// `qemu-riscv64`: `$SOVC_QEMU_RISCV64` or the `PATH`.
pub fn find_qemu() -> Option<PathBuf> {
    find_tool("SOVC_QEMU_RISCV64", None, "qemu-riscv64")
}

/// The loader: `$SOVC_RVV_LOADER`, `.deps/rvv/sovc-rvv-loader` (built by `scripts/setup-test-deps.sh`),
/// or the `PATH`.
pub fn find_loader() -> Option<PathBuf> {
    find_tool("SOVC_RVV_LOADER", Some(".deps/rvv/sovc-rvv-loader"), "sovc-rvv-loader")
}

pub struct RvvModel {
    graph: Graph,
    plan: RvvPlan,
    code: Vec<u8>,
    consts: BTreeMap<usize, Tensor>,
    qemu: PathBuf,
    loader: PathBuf,
}

impl RvvModel {
    pub fn new(
        graph: Graph,
        plan: RvvPlan,
        code: Vec<u8>,
        consts: BTreeMap<usize, Tensor>,
    ) -> Result<RvvModel, RuntimeError> {
        for m in &plan.modules {
            let end = m.offset.checked_add(m.len).filter(|&e| e <= code.len() as u64);
            if end.is_none() || m.functions.iter().any(|f| f.1.checked_add(f.2).is_none_or(|e| e > m.len)) {
                return Err(RuntimeError::Malformed(format!(
                    "rvv module of kernel {} lies outside its code",
                    m.kernel
                )));
            }
        }
        for s in &plan.steps {
            if let RvvStep::Launch { module, function, bufs, .. } = s {
                let m = plan.modules.get(*module).ok_or_else(|| {
                    RuntimeError::Malformed(format!("launch of module {module}, which does not exist"))
                })?;
                if !m.functions.iter().any(|f| &f.0 == function)
                    || bufs.iter().any(|&b| b as usize >= graph.values.len())
                {
                    return Err(RuntimeError::Malformed(format!("launch of `{function}`: no such function or value")));
                }
            }
        }
        let qemu = find_qemu().ok_or_else(|| {
            RuntimeError::Device(
                "qemu-riscv64 was not found (install Debian's qemu-user, or set SOVC_QEMU_RISCV64)".into(),
            )
        })?;
        let loader = find_loader().ok_or_else(|| {
            RuntimeError::Device(
                "sovc-rvv-loader was not found: build it with scripts/setup-test-deps.sh (it needs Debian's gcc-riscv64-linux-gnu), or set SOVC_RVV_LOADER".into(),
            )
        })?;
        Ok(RvvModel { graph, plan, code, consts, qemu, loader })
    }

    pub fn plan(&self) -> &RvvPlan {
        &self.plan
    }

    /// Runs on named inputs under QEMU with `opts`.
    pub fn run(
        &self,
        inputs: &BTreeMap<String, Tensor>,
        opts: QemuOptions,
    ) -> Result<(BTreeMap<String, Tensor>, RvvReport), RuntimeError> {
        let g = &self.graph;
        let mut vals = crate::session::starting_values(g, &self.consts, inputs)?;
        let mut report = RvvReport::default();
        let steps = &self.plan.steps;
        let mut s = 0;
        while s < steps.len() {
            match &steps[s] {
                RvvStep::Reference { nodes, .. } => {
                    report.reference_steps += 1;
                    crate::session::eval_nodes(g, nodes, &mut vals)?;
                    s += 1;
                }
                RvvStep::Launch { .. } => {
                    let end =
                        (s..steps.len()).find(|&k| !matches!(steps[k], RvvStep::Launch { .. })).unwrap_or(steps.len());
                    self.run_stretch(&steps[s..end], &mut vals, opts, &mut report.counts)?;
                    report.processes += 1;
                    report.launches += end - s;
                    s = end;
                }
            }
        }
        let out = crate::session::named_outputs(g, &vals)?;
        Ok((out, report))
    }

    /// One loader process for consecutive launches.
    fn run_stretch(
        &self,
        steps: &[RvvStep],
        vals: &mut BTreeMap<usize, Tensor>,
        opts: QemuOptions,
        counts: &mut Counts,
    ) -> Result<(), RuntimeError> {
        let g = &self.graph;
        let dev = |m: String| RuntimeError::Device(m);
        // The values the stretch touches, in first-use order, and each call.
        let mut used: Vec<u32> = Vec::new();
        let mut calls: Vec<(u64, Vec<u64>)> = Vec::new();
        for st in steps {
            let RvvStep::Launch { module, function, bufs, .. } = st else { continue };
            let m = &self.plan.modules[*module];
            let f = m.functions.iter().find(|f| &f.0 == function).expect("checked when loaded");
            let args = bufs
                .iter()
                .map(|b| {
                    if !used.contains(b) {
                        used.push(*b);
                    }
                    used.iter().position(|u| u == b).unwrap_or_default() as u64
                })
                .collect();
            calls.push((m.offset + f.1, args));
        }
        let mut input = b"SOVCRVV1".to_vec();
        let put = |v: &mut Vec<u8>, x: u64| v.extend_from_slice(&x.to_le_bytes());
        put(&mut input, self.code.len() as u64);
        input.extend_from_slice(&self.code);
        put(&mut input, used.len() as u64);
        for &b in &used {
            let data = crate::session::value_f32(g, vals, b)?;
            put(&mut input, data.len() as u64);
            input.extend(data.iter().flat_map(|x| x.to_le_bytes()));
        }
        put(&mut input, calls.len() as u64);
        for (off, args) in &calls {
            put(&mut input, *off);
            put(&mut input, args.len() as u64);
            for &a in args {
                put(&mut input, a);
            }
        }
        let dir = std::env::temp_dir().join(format!(
            "sovc-rvv-{}-{}",
            std::process::id(),
            STRETCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| dev(format!("cannot create {}: {e}", dir.display())))?;
        let (fin, fout) = (dir.join("in.bin"), dir.join("out.bin"));
        std::fs::write(&fin, &input).map_err(|e| dev(format!("cannot write {}: {e}", fin.display())))?;
        let cpu = if opts.vector { format!("rv64,v=true,vlen={}", opts.vlen) } else { "rv64,v=false".to_string() };
        let trace = dir.join("trace.log");
        let mut cmd = std::process::Command::new(&self.qemu);
        cmd.args(["-cpu", &cpu]);
        if opts.count {
            cmd.args(["-singlestep", "-d", "exec,nochain", "-D"]).arg(&trace);
        }
        cmd.arg(&self.loader).arg(&fin).arg(&fout);
        if opts.count {
            cmd.arg("--report-code");
        }
        let out = cmd.output().map_err(|e| dev(format!("cannot start {}: {e}", self.qemu.display())));
        if let (true, Ok(o)) = (opts.count, &out) {
            let err = String::from_utf8_lossy(&o.stderr);
            let base = err
                .lines()
                .find_map(|l| l.strip_prefix("code at 0x"))
                .and_then(|h| u64::from_str_radix(h.trim(), 16).ok());
            if let (Some(base), Ok(log)) = (base, std::fs::read_to_string(&trace)) {
                let mut functions = Vec::new();
                for m in &self.plan.modules {
                    functions.extend(m.functions.iter().map(|f| (f.0.clone(), m.offset + f.1, f.2)));
                }
                count_trace(&log, base, &self.code, &functions, counts);
            }
        }
        let result = out.and_then(|o| {
            if o.status.success() {
                std::fs::read(&fout).map_err(|e| dev(format!("cannot read {}: {e}", fout.display())))
            } else {
                use std::os::unix::process::ExitStatusExt;
                let how = match o.status.signal() {
                    Some(4) => "an illegal instruction (SIGILL)".to_string(),
                    Some(11) => "a segmentation fault (SIGSEGV)".to_string(),
                    Some(sig) => format!("signal {sig}"),
                    None => format!("exit code {}", o.status.code().unwrap_or(-1)),
                };
                let first = match &steps[0] {
                    RvvStep::Launch { function, .. } => function.clone(),
                    _ => String::new(),
                };
                Err(dev(format!(
                    "the RVV code (launches from `{first}`) stopped with {how} under qemu-riscv64 -cpu {cpu}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
        });
        let _ = std::fs::remove_dir_all(&dir);
        let back = result?;
        let mut at = 0usize;
        for &b in &used {
            let n: usize = g.values[b as usize].shape.as_consts().unwrap_or_default().iter().product();
            let bytes = back.get(at..at + 4 * n).ok_or_else(|| dev("the loader wrote too little".into()))?;
            at += 4 * n;
            let data = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            crate::session::store_f32(g, vals, b, data)?;
        }
        Ok(())
    }
}

static STRETCH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
