//! Running a `cpu` artifact: checks its program against the graph, the code and this machine, maps the
//! code executable, packs constant matmul operands once, then runs steps over one activation arena.

use super::gemm::{im2col_rows, pack_a, pack_b, pack_b_im2col, sgemm, Isa, Mat, PackedA, PackedB};
use super::jit::{AlignedBuf, ExecCode, KernelFn};
use super::pool::Pool;
use super::program::{Operand, Program, Slot, Step};
use crate::RuntimeError;
use sovc_ir::{DType, Graph, Tensor};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A `cpu` artifact ready to run.
pub struct CpuModel {
    graph: Graph,
    program: Program,
    _code: ExecCode,
    funcs: Vec<KernelFn>,
    weights: AlignedBuf,
    /// Per step: constant B operands packed at load time, one per batch entry and group.
    packed: Vec<Vec<PackedB>>,
    /// Per step: constant A operands (convolution weights) packed at load time, one per batch entry and group.
    packed_a: Vec<Vec<PackedA>>,
    /// Per step, for convolutions with tiny outputs run transposed: the weights packed as B of `Cᵀ = im2colᵀ·Wᵀ`.
    packed_at: Vec<Vec<PackedB>>,
    isa: Isa,
    pool: Pool,
    /// Element count of each graph value (static shapes).
    elems: Vec<u64>,
    arena: Mutex<Option<AlignedBuf>>,
    /// Seconds spent in each step since profiling was switched on.
    step_times: Mutex<Option<Vec<f64>>>,
}

fn bad(msg: String) -> RuntimeError {
    RuntimeError::Malformed(format!("cpu program: {msg}"))
}

/// The largest element count any product of a step's sizes may reach (2^36 f32: 256 GiB), so no size
/// arithmetic downstream can wrap.
const MAX_ELEMS: u64 = 1 << 36;

fn bounded(sizes: &[u64], what: &str) -> Result<(), RuntimeError> {
    match sizes.iter().try_fold(1u64, |a, &b| a.checked_mul(b.max(1))) {
        Some(p) if p <= MAX_ELEMS => Ok(()),
        _ => Err(bad(format!("{what}: sizes {sizes:?} are out of range"))),
    }
}

fn feature_present(f: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match f {
            "sse4.2" => std::arch::is_x86_feature_detected!("sse4.2"),
            "popcnt" => std::arch::is_x86_feature_detected!("popcnt"),
            "avx" => std::arch::is_x86_feature_detected!("avx"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            _ => false,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        f == "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = f;
        false
    }
}

/// The memory of one run: the arena, and graph inputs read in place from the caller's tensors.
struct Mem<'a> {
    arena: &'a mut AlignedBuf,
    inputs: BTreeMap<usize, &'a [u8]>,
    /// f32 graph outputs written straight into the vectors that become the output tensors (base pointer,
    /// element count); the vectors live in `run` for the whole run.
    outputs: BTreeMap<usize, (*mut f32, usize)>,
}

#[derive(Clone, Copy)]
struct Ptrs<'a>(&'a [*mut f32]);
// SAFETY: the pointers address disjoint or read-only parts of the arena and weights for the duration of a
// step; kernels write only their own output ranges.
unsafe impl Send for Ptrs<'_> {}
unsafe impl Sync for Ptrs<'_> {}

impl Ptrs<'_> {
    /// The table (a method, so closures capture the `Sync` wrapper rather than the slice).
    fn get(&self) -> *const *mut f32 {
        self.0.as_ptr()
    }

    fn slice(&self) -> &[*mut f32] {
        self.0
    }
}

impl CpuModel {
    /// Checks `program` and prepares it. `code` and `weights` are the artifact's sections.
    pub fn new(
        graph: Graph,
        program: Program,
        code: &[u8],
        weights: &[u8],
        threads: usize,
    ) -> Result<CpuModel, RuntimeError> {
        let host = std::env::consts::ARCH;
        if program.arch != host {
            return Err(RuntimeError::Device(format!(
                "the artifact's cpu code is for {}, this machine is {host}; compile it here with --target cpu",
                program.arch
            )));
        }
        if let Some(f) = program.features.iter().find(|f| !feature_present(f)) {
            return Err(RuntimeError::Device(format!(
                "the artifact's cpu code needs the `{f}` feature, which this machine lacks"
            )));
        }
        if program.slots.len() != graph.values.len() {
            return Err(bad(format!("{} slots for {} graph values", program.slots.len(), graph.values.len())));
        }
        let mut elems = Vec::with_capacity(graph.values.len());
        for (i, slot) in program.slots.iter().enumerate() {
            let ty = &graph.values[i];
            let n = ty.shape.num_elements();
            if *slot == Slot::None {
                elems.push(n.unwrap_or(0));
                continue;
            }
            let n = n.ok_or_else(|| bad(format!("value %{i} has a symbolic shape; cpu code needs static shapes")))?;
            let bytes = n.checked_mul(ty.dtype.size() as u64).ok_or_else(|| bad(format!("value %{i} is too large")))?;
            let (off, limit, what) = match slot {
                Slot::Arena(o) => (*o, program.arena_bytes, "arena"),
                Slot::Weight(o) => (*o, weights.len() as u64, "weights section"),
                Slot::None => unreachable!(),
            };
            if off.checked_add(bytes).is_none_or(|e| e > limit) || off % 4 != 0 {
                return Err(bad(format!("value %{i} ({bytes} bytes at {off}) does not fit the {what}")));
            }
            elems.push(n);
        }
        for f in &program.functions {
            if f.offset.checked_add(f.len).is_none_or(|e| e > code.len() as u64) || f.len == 0 {
                return Err(bad(format!("function `{}` lies outside the code section", f.name)));
            }
        }
        for x in &graph.inputs {
            if !matches!(program.slots[x.value.index()], Slot::Arena(_)) {
                return Err(bad(format!("input `{}` has no arena slot", x.name)));
            }
        }
        for o in &graph.outputs {
            if program.slots[o.value.index()] == Slot::None {
                return Err(bad(format!("output `{}` has no slot", o.name)));
            }
        }
        let mut m = CpuModel {
            _code: ExecCode::new(code).map_err(RuntimeError::Device)?,
            funcs: Vec::new(),
            weights: AlignedBuf::from_bytes(weights),
            packed: Vec::new(),
            packed_a: Vec::new(),
            packed_at: Vec::new(),
            isa: Isa::detect(),
            pool: Pool::new(threads),
            elems,
            arena: Mutex::new(None),
            step_times: Mutex::new(None),
            graph,
            program,
        };
        m.check_steps()?;
        // SAFETY: offsets checked above; the code was generated for this architecture and feature set.
        m.funcs = m.program.functions.iter().map(|f| unsafe { m._code.func(f.offset as usize) }).collect();
        let mut packed = Vec::new();
        for step in &m.program.steps {
            let mut per = Vec::new();
            if let Step::Gemm { bufs, batch, groups, n, k, b, b_const: true, im2col: None, .. } = step {
                let base = m.ptr_const(bufs[b.buf as usize])?;
                for bi in 0..*batch {
                    for g in 0..*groups {
                        let off = b.offset as isize + bi as isize * b.batch as isize + g as isize * b.group as isize;
                        // SAFETY: the operand was bounds-checked against its buffer in `check_steps`.
                        per.push(unsafe {
                            pack_b(
                                &m.isa,
                                Some(&m.pool),
                                *k as usize,
                                *n as usize,
                                base.wrapping_offset(off),
                                b.rows as isize,
                                b.cols as isize,
                            )
                        });
                    }
                }
            }
            packed.push(per);
        }
        m.packed = packed;
        let mut packed_a = Vec::new();
        let mut packed_at = Vec::new();
        for step in &m.program.steps {
            let mut per = Vec::new();
            let mut per_t = Vec::new();
            if let Step::Gemm { bufs, batch, groups, m: rows, n, k, a, im2col, .. } = step {
                if let Ok(base) = m.ptr_const(bufs[a.buf as usize]) {
                    let transposed = im2col.is_some() && m.transposed(*rows, *n);
                    for bi in 0..*batch {
                        for g in 0..*groups {
                            let off =
                                a.offset as isize + bi as isize * a.batch as isize + g as isize * a.group as isize;
                            let w = base.wrapping_offset(off);
                            // SAFETY: the operand was bounds-checked against its buffer in `check_steps`.
                            unsafe {
                                if transposed {
                                    // Aᵀ as the B of Cᵀ = im2colᵀ·Aᵀ: element (kk, i) at i·rows + kk·cols.
                                    let (r, c) = (a.rows as isize, a.cols as isize);
                                    per_t.push(pack_b(&m.isa, None, *k as usize, *rows as usize, w, c, r));
                                } else {
                                    let am = Mat { ptr: w, rs: a.rows as isize, cs: a.cols as isize };
                                    per.push(pack_a(&m.isa, *rows as usize, *k as usize, am));
                                }
                            }
                        }
                    }
                }
            }
            packed_a.push(per);
            packed_at.push(per_t);
        }
        m.packed_a = packed_a;
        m.packed_at = packed_at;
        Ok(m)
    }

    /// Whether a convolution product of `rows` x `cols` runs transposed (`Cᵀ = im2colᵀ·Wᵀ`): when its
    /// output has too few pixels to fill the microkernel's columns but many channels to fill its rows.
    fn transposed(&self, rows: u64, cols: u64) -> bool {
        cols < (self.isa.nr / 2) as u64 && rows >= (2 * self.isa.mr) as u64
    }

    fn ptr_const(&self, v: u32) -> Result<*const f32, RuntimeError> {
        match self.program.slots[v as usize] {
            Slot::Weight(o) => Ok(self.weights.as_ptr().wrapping_add(o as usize) as *const f32),
            _ => Err(bad(format!("constant operand %{v} is not in the weights section"))),
        }
    }

    /// A buffer a step writes: in the arena, not a graph input (those are read in place from the caller's
    /// tensors), not a constant.
    fn check_written(&self, v: u32, what: &str) -> Result<(), RuntimeError> {
        self.check_buf(v, what)?;
        let is_input = self.graph.inputs.iter().any(|x| x.value.index() == v as usize);
        if is_input || !matches!(self.program.slots[v as usize], Slot::Arena(_)) {
            return Err(bad(format!("{what}: writes value %{v}, which is not an activation")));
        }
        Ok(())
    }

    /// A generated function run over `extent` iterations with `bufs` as its buffers: the code was generated
    /// for exactly that extent, buffers at least as long as it touches, and writes only activations.
    fn check_function(&self, func: usize, bufs: &[u32], extent: u64, what: &str) -> Result<(), RuntimeError> {
        let f = self.program.functions.get(func).ok_or_else(|| bad(format!("{what}: no function {func}")))?;
        if f.extent != extent || f.bufs.len() != bufs.len() {
            return Err(bad(format!("{what}: function `{}` was generated for other buffers or another range", f.name)));
        }
        for (&v, &(len, writes)) in bufs.iter().zip(&f.bufs) {
            if self.check_buf(v, what)? < len {
                return Err(bad(format!("{what}: value %{v} is shorter than function `{}` reads", f.name)));
            }
            if writes {
                self.check_written(v, what)?;
            }
        }
        Ok(())
    }

    fn check_buf(&self, v: u32, what: &str) -> Result<u64, RuntimeError> {
        let i = v as usize;
        if i >= self.program.slots.len() || self.program.slots[i] == Slot::None {
            return Err(bad(format!("{what}: value %{v} has no slot")));
        }
        if self.graph.values[i].dtype != DType::F32 {
            return Err(bad(format!("{what}: value %{v} is not f32")));
        }
        Ok(self.elems[i])
    }

    fn check_operand(&self, bufs: &[u32], o: &Operand, dims: [u64; 4], what: &str) -> Result<(), RuntimeError> {
        let v = *bufs.get(o.buf as usize).ok_or_else(|| bad(format!("{what}: no buffer {}", o.buf)))?;
        let len = self.check_buf(v, what)? as i128;
        let (mut lo, mut hi) = (o.offset as i128, o.offset as i128);
        for (s, d) in [(o.batch, dims[0]), (o.group, dims[1]), (o.rows, dims[2]), (o.cols, dims[3])] {
            let span = s as i128 * (d as i128 - 1).max(0);
            if span < 0 {
                lo += span
            } else {
                hi += span
            }
        }
        if lo < 0 || hi >= len {
            return Err(bad(format!("{what}: operand reaches outside its buffer of {len} elements")));
        }
        Ok(())
    }

    fn check_steps(&self) -> Result<(), RuntimeError> {
        let nf = self.program.functions.len();
        for (si, step) in self.program.steps.iter().enumerate() {
            let what = format!("step {si}");
            match step {
                Step::Loop { func, bufs, grain, extent, .. } => {
                    if *func >= nf || *grain == 0 {
                        return Err(bad(format!("{what}: bad function or grain")));
                    }
                    self.check_function(*func, bufs, *extent, &what)?;
                }
                Step::Gemm { bufs, batch, groups, m, n, k, a, b, im2col, c, epilogue, .. } => {
                    for &x in bufs {
                        self.check_buf(x, &what)?;
                    }
                    // Every size product below must fit comfortably (no wrapping in packing buffers).
                    let sizes = [*batch, *groups, *m, *n, *k];
                    bounded(&sizes, &what)?;
                    bounded(&[*batch, *groups, *m, *n], &what)?;
                    bounded(&[*m, *k], &what)?;
                    bounded(&[*n, *k], &what)?;
                    let cv = *bufs.get(c.buf as usize).ok_or_else(|| bad(format!("{what}: no buffer {}", c.buf)))?;
                    self.check_written(cv, &what)?;
                    for o in [a, b] {
                        if bufs.get(o.buf as usize) == Some(&cv) {
                            return Err(bad(format!("{what}: C is also an operand")));
                        }
                    }
                    let gd = |r: u64, cl: u64| [*batch, *groups, r, cl];
                    self.check_operand(bufs, a, gd(*m, *k), &what)?;
                    match im2col {
                        None => self.check_operand(bufs, b, gd(*k, *n), &what)?,
                        Some(im) => {
                            bounded(&[im.channels, im.kh, im.kw], &what)?;
                            bounded(&[im.channels, im.h, im.w], &what)?;
                            bounded(&[im.oh, im.ow], &what)?;
                            bounded(&[im.oh, im.sh], &what)?;
                            bounded(&[im.ow, im.sw], &what)?;
                            bounded(&[im.kh, im.dh], &what)?;
                            bounded(&[im.kw, im.dw], &what)?;
                            bounded(&[im.ph, im.pw], &what)?;
                            let ok = im.kh * im.kw * im.channels == *k
                                && im.oh * im.ow == *n
                                && [im.sh, im.sw, im.dh, im.dw].iter().all(|&x| x >= 1);
                            if !ok {
                                return Err(bad(format!("{what}: the im2col geometry does not match k and n")));
                            }
                            let img = Operand { rows: 0, cols: 1, ..b.clone() };
                            self.check_operand(bufs, &img, gd(1, im.channels * im.h * im.w), &what)?;
                        }
                    }
                    self.check_operand(bufs, c, gd(*m, *n), &what)?;
                    let mn = (*m * *n) as i64;
                    if c.cols != 1
                        || c.rows != *n as i64
                        || c.group != mn
                        || c.batch != *groups as i64 * mn
                        || *groups == 0
                    {
                        return Err(bad(format!("{what}: C must be dense row-major")));
                    }
                    if let Some(f) = epilogue {
                        self.check_function(*f, bufs, batch * groups * m, &what)?;
                    }
                }
                Step::Attention { bufs, heads, sq, sk, d, dv, q, k, v, o, mask, .. } => {
                    for &x in bufs {
                        self.check_buf(x, &what)?;
                    }
                    bounded(&[*heads, *sq, *sk, *d], &what)?;
                    bounded(&[*heads, *sq, *sk, *dv], &what)?;
                    if [*sq, *sk, *d, *dv].contains(&0) {
                        return Err(bad(format!("{what}: an empty attention")));
                    }
                    let ov = *bufs.get(*o as usize).ok_or_else(|| bad(format!("{what}: no buffer {o}")))?;
                    self.check_written(ov, &what)?;
                    for x in [q, k, v] {
                        if bufs.get(*x as usize) == Some(&ov) {
                            return Err(bad(format!("{what}: the output is also an operand")));
                        }
                    }
                    let dense = |buf: u32, r: u64, c: u64| Operand {
                        buf,
                        offset: 0,
                        batch: (r * c) as i64,
                        group: 0,
                        rows: c as i64,
                        cols: 1,
                    };
                    self.check_operand(bufs, &dense(*q, *sq, *d), [*heads, 1, *sq, *d], &what)?;
                    self.check_operand(bufs, &dense(*k, *sk, *d), [*heads, 1, *sk, *d], &what)?;
                    self.check_operand(bufs, &dense(*v, *sk, *dv), [*heads, 1, *sk, *dv], &what)?;
                    self.check_operand(bufs, &dense(*o, *sq, *dv), [*heads, 1, *sq, *dv], &what)?;
                    if let Some((mb, hs, rs, cs)) = mask {
                        let op = Operand { buf: *mb, offset: 0, batch: *hs, group: 0, rows: *rs, cols: *cs };
                        self.check_operand(bufs, &op, [*heads, 1, *sq, *sk], &what)?;
                    }
                }
                Step::Reference { nodes, .. } => {
                    for &n in nodes {
                        if n >= self.graph.nodes.len() {
                            return Err(bad(format!("{what}: no node {n}")));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Starts (or restarts) timing each step of every run.
    pub fn start_profile(&self) {
        *self.step_times.lock().unwrap_or_else(|e| e.into_inner()) = Some(vec![0.0; self.program.steps.len()]);
    }

    /// Time per step since [`CpuModel::start_profile`]: (plan kernel, step kind, seconds).
    pub fn profile(&self) -> Vec<(usize, &'static str, f64)> {
        let times = self.step_times.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default();
        self.program
            .steps
            .iter()
            .zip(times)
            .map(|(s, t)| match s {
                Step::Loop { kernel, .. } => (*kernel, "loop", t),
                Step::Gemm { kernel, .. } => (*kernel, "gemm", t),
                Step::Attention { kernel, .. } => (*kernel, "attention", t),
                Step::Reference { kernel, .. } => (*kernel, "reference", t),
            })
            .collect()
    }

    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    pub fn isa_name(&self) -> &'static str {
        self.isa.name
    }

    fn ptr(&self, mem: &Mem, v: u32) -> *mut f32 {
        if let Some(b) = mem.inputs.get(&(v as usize)) {
            return b.as_ptr() as *mut f32;
        }
        if let Some(&(p, _)) = mem.outputs.get(&(v as usize)) {
            return p;
        }
        let arena = &*mem.arena;
        match self.program.slots[v as usize] {
            Slot::Arena(o) => arena.as_ptr().wrapping_add(o as usize) as *mut f32,
            Slot::Weight(o) => self.weights.as_ptr().wrapping_add(o as usize) as *mut f32,
            Slot::None => std::ptr::null_mut(),
        }
    }

    fn bytes_of<'a>(&'a self, mem: &'a Mem, v: usize) -> &'a [u8] {
        if let Some(b) = mem.inputs.get(&v) {
            return b;
        }
        if let Some(&(p, n)) = mem.outputs.get(&v) {
            // SAFETY: a live vector of `n` f32 owned by `run`; no kernel writes it while this slice lives.
            return unsafe { std::slice::from_raw_parts(p as *const u8, n * 4) };
        }
        let arena = &*mem.arena;
        let n = self.elems[v] as usize * self.graph.values[v].dtype.size();
        match self.program.slots[v] {
            Slot::Arena(o) => &arena.as_slice()[o as usize..o as usize + n],
            Slot::Weight(o) => &self.weights.as_slice()[o as usize..o as usize + n],
            Slot::None => &[],
        }
    }

    /// Runs on named inputs; returns the named outputs.
    pub fn run(&self, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
        let g = &self.graph;
        if let Some(extra) = inputs.keys().find(|k| !g.inputs.iter().any(|x| &x.name == *k)) {
            let known: Vec<&str> = g.inputs.iter().map(|x| x.name.as_str()).collect();
            return Err(RuntimeError::Device(format!("unknown input `{extra}` (the model's inputs are {known:?})")));
        }
        let mut arena = match self.arena.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(a) if a.len() as u64 >= self.program.arena_bytes => a,
            _ => AlignedBuf::zeroed(self.program.arena_bytes as usize),
        };
        let mut bound: BTreeMap<usize, &[u8]> = BTreeMap::new();
        for x in &g.inputs {
            let t = inputs.get(&x.name).ok_or_else(|| RuntimeError::Device(format!("missing input `{}`", x.name)))?;
            let ty = g.ty(x.value);
            let want: Vec<usize> = ty.shape.as_consts().unwrap_or_default();
            if t.dtype() != ty.dtype || t.shape() != want.as_slice() {
                return Err(RuntimeError::Device(format!(
                    "input `{}` is {} {:?}; the compiled model takes {ty}",
                    x.name,
                    t.dtype().name(),
                    t.shape()
                )));
            }
            let Slot::Arena(o) = self.program.slots[x.value.index()] else { unreachable!("checked at load") };
            let dst = &mut arena.as_mut_slice()[o as usize..];
            match t {
                Tensor::F32(arr) if arr.as_slice().is_some() && cfg!(target_endian = "little") => {
                    // Read in place: kernels never write graph inputs.
                    let src = arr.as_slice().unwrap_or_default();
                    // SAFETY: plain f32 data viewed as bytes, on a little-endian host.
                    let bytes = unsafe { std::slice::from_raw_parts(src.as_ptr() as *const u8, src.len() * 4) };
                    bound.insert(x.value.index(), bytes);
                }
                _ => {
                    let b = t.to_le_bytes();
                    dst[..b.len()].copy_from_slice(&b);
                }
            }
        }
        // f32 outputs go straight into their tensors' vectors (unless an output is also an input).
        let mut out_vecs: BTreeMap<usize, Vec<f32>> = BTreeMap::new();
        for o in &g.outputs {
            let v = o.value.index();
            let is_input = g.inputs.iter().any(|x| x.value == o.value);
            let in_arena = matches!(self.program.slots[v], Slot::Arena(_));
            if g.ty(o.value).dtype == DType::F32 && in_arena && !is_input && cfg!(target_endian = "little") {
                out_vecs.entry(v).or_insert_with(|| vec![0f32; self.elems[v] as usize]);
            }
        }
        let outputs = out_vecs.iter_mut().map(|(&v, vec)| (v, (vec.as_mut_ptr(), vec.len()))).collect();
        let mut mem = Mem { arena: &mut arena, inputs: bound, outputs };
        let mut times = self.step_times.lock().unwrap_or_else(|e| e.into_inner()).take();
        for (si, step) in self.program.steps.iter().enumerate() {
            let t = std::time::Instant::now();
            self.step(si, step, &mut mem)?;
            if let Some(ts) = times.as_mut() {
                ts[si] += t.elapsed().as_secs_f64();
            }
        }
        if times.is_some() {
            *self.step_times.lock().unwrap_or_else(|e| e.into_inner()) = times;
        }
        let mut out = BTreeMap::new();
        let mut first: BTreeMap<usize, String> = BTreeMap::new();
        for o in &g.outputs {
            let v = o.value.index();
            let ty = g.ty(o.value);
            let shape: Vec<usize> = ty.shape.as_consts().unwrap_or_default();
            if let Some(vals) = out_vecs.remove(&v) {
                let t = Tensor::from_vec(&shape, vals);
                out.insert(o.name.clone(), t.ok_or_else(|| bad(format!("output `{}` has the wrong size", o.name)))?);
                first.insert(v, o.name.clone());
                continue;
            }
            if let Some(t) = first.get(&v).and_then(|n| out.get(n)).cloned() {
                // The same value under a second output name.
                out.insert(o.name.clone(), t);
                continue;
            }
            let bytes = self.bytes_of(&mem, v);
            let t = if ty.dtype == DType::F32 && cfg!(target_endian = "little") {
                let mut vals = vec![0f32; bytes.len() / 4];
                // SAFETY: copying whole f32 values out of the arena, on a little-endian host.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), vals.as_mut_ptr() as *mut u8, vals.len() * 4) };
                Tensor::from_vec(&shape, vals)
            } else {
                Tensor::from_le_bytes(ty.dtype, &shape, bytes)
            };
            let t = t.ok_or_else(|| bad(format!("output `{}` has the wrong size", o.name)))?;
            out.insert(o.name.clone(), t);
        }
        *self.arena.lock().unwrap_or_else(|e| e.into_inner()) = Some(arena);
        Ok(out)
    }

    fn step(&self, si: usize, step: &Step, arena: &mut Mem) -> Result<(), RuntimeError> {
        match step {
            Step::Loop { func, bufs, extent, grain, .. } => {
                let ptrs: Vec<*mut f32> = bufs.iter().map(|&b| self.ptr(arena, b)).collect();
                let f = self.funcs[*func];
                let tasks = extent.div_ceil(*grain).clamp(1, 4 * self.pool.threads() as u64);
                let chunk = extent.div_ceil(tasks);
                let p = Ptrs(&ptrs);
                self.pool.run(tasks as usize, &|t| {
                    let lo = t as u64 * chunk;
                    let hi = (lo + chunk).min(*extent);
                    if lo < hi {
                        // SAFETY: the program was checked at load; tasks cover disjoint iterations.
                        unsafe { f(p.get(), lo as i64, hi as i64) };
                    }
                });
            }
            Step::Gemm { bufs, batch, groups, m, n, k, a, b, b_const, im2col, c, epilogue, .. } => {
                let ptrs: Vec<*mut f32> = bufs.iter().map(|&x| self.ptr(arena, x)).collect();
                let p = Ptrs(&ptrs);
                let at = |o: &Operand, bi: u64, g: u64| {
                    p.slice()[o.buf as usize].wrapping_offset(
                        o.offset as isize + bi as isize * o.batch as isize + g as isize * o.group as isize,
                    )
                };
                // One product per (batch entry, group). Many small ones (grouped and depthwise convolutions)
                // run one per task across the pool; big ones use the pool inside the product.
                let units = (*batch * *groups) as usize;
                let small = units >= 2 * self.pool.threads() && m * n * k < (1 << 21);
                let one = |u: usize, pool: Option<&Pool>| {
                    let (bi, g) = (u as u64 / groups, u as u64 % groups);
                    let row0 = u as u64 * m;
                    if let (Some(im), Some(wt)) = (im2col, self.packed_at[si].get(u)) {
                        // Cᵀ = im2colᵀ·Wᵀ, then C = (Cᵀ)ᵀ, then the epilogue on every row.
                        let (mm, nn, kk) = (*m as usize, *n as usize, *k as usize);
                        // SAFETY: the image was bounds-checked at load.
                        let cols = unsafe { im2col_rows(im, at(b, bi, g)) };
                        let mut ct = vec![0f32; nn * mm];
                        let am = Mat { ptr: cols.as_ptr(), rs: kk as isize, cs: 1 };
                        // SAFETY: `cols` is nn x kk, `ct` nn x mm.
                        unsafe { sgemm(&self.isa, pool, nn, am, None, wt, ct.as_mut_ptr(), mm, false, None) };
                        let cptr = at(c, bi, g);
                        for i in 0..mm {
                            for j in 0..nn {
                                // SAFETY: C's block for this unit is mm x nn, checked at load.
                                unsafe { *cptr.add(i * nn + j) = ct[j * mm + i] };
                            }
                        }
                        if let Some(f) = epilogue.map(|f| self.funcs[f]) {
                            // SAFETY: rows row0..row0+m of C are final.
                            unsafe { f(p.get(), row0 as i64, (row0 + m) as i64) };
                        }
                        return;
                    }
                    let fresh;
                    let pb = if *b_const && im2col.is_none() {
                        &self.packed[si][u]
                    } else {
                        // SAFETY: bounds checked at load.
                        fresh = unsafe {
                            match im2col {
                                Some(im) => pack_b_im2col(&self.isa, pool, im, at(b, bi, g)),
                                None => pack_b(
                                    &self.isa,
                                    pool,
                                    *k as usize,
                                    *n as usize,
                                    at(b, bi, g),
                                    b.rows as isize,
                                    b.cols as isize,
                                ),
                            }
                        };
                        &fresh
                    };
                    let amat = Mat { ptr: at(a, bi, g), rs: a.rows as isize, cs: a.cols as isize };
                    let pa = self.packed_a[si].get(u);
                    let epi = epilogue.map(|f| self.funcs[f]);
                    let run_epi = |lo: usize, hi: usize| {
                        if let Some(f) = epi {
                            // SAFETY: the epilogue touches only rows lo..hi of this block, which are final.
                            unsafe { f(p.get(), (row0 + lo as u64) as i64, (row0 + hi as u64) as i64) };
                        }
                    };
                    // SAFETY: operands checked at load; each unit writes only its own block of C.
                    unsafe {
                        sgemm(
                            &self.isa,
                            pool,
                            *m as usize,
                            amat,
                            pa,
                            pb,
                            at(c, bi, g),
                            *n as usize,
                            false,
                            Some(&run_epi),
                        )
                    };
                };
                if small {
                    self.pool.run(units, &|u| one(u, None));
                } else {
                    (0..units).for_each(|u| one(u, Some(&self.pool)));
                }
            }
            Step::Attention { bufs, heads, sq, sk, d, dv, scale, q, k, v, o, mask, .. } => {
                let ptrs: Vec<*mut f32> = bufs.iter().map(|&x| self.ptr(arena, x)).collect();
                let p = Ptrs(&ptrs);
                let (sq, sk, d, dv) = (*sq as usize, *sk as usize, *d as usize, *dv as usize);
                self.pool.run(*heads as usize, &|h| {
                    // SAFETY: slice h of every operand was bounds-checked at load; each task writes only its own slice of O.
                    unsafe { self.attention_slice(p.slice(), h, sq, sk, d, dv, *scale, [*q, *k, *v, *o], *mask) };
                });
            }
            Step::Reference { nodes, .. } => self.reference(nodes, arena)?,
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn attention_slice(
        &self,
        ptrs: &[*mut f32],
        h: usize,
        sq: usize,
        sk: usize,
        d: usize,
        dv: usize,
        scale: f32,
        qkvo: [u32; 4],
        mask: Option<(u32, i64, i64, i64)>,
    ) {
        let q = ptrs[qkvo[0] as usize].wrapping_add(h * sq * d);
        let k = ptrs[qkvo[1] as usize].wrapping_add(h * sk * d);
        let v = ptrs[qkvo[2] as usize].wrapping_add(h * sk * dv);
        let o = ptrs[qkvo[3] as usize].wrapping_add(h * sq * dv);
        let mut s = vec![0f32; sq * sk];
        // S = Q·Kᵀ: B(kk, j) = K[j, kk].
        let kt = unsafe { pack_b(&self.isa, None, d, sk, k, 1, d as isize) };
        unsafe {
            sgemm(
                &self.isa,
                None,
                sq,
                Mat { ptr: q, rs: d as isize, cs: 1 },
                None,
                &kt,
                s.as_mut_ptr(),
                sk,
                false,
                None,
            )
        };
        let add_mask = |i: usize, row: &mut [f32]| {
            if let Some((mb, hs, rs, cs)) = mask {
                let base = ptrs[mb as usize].wrapping_offset(h as isize * hs as isize + i as isize * rs as isize);
                for (j, x) in row.iter_mut().enumerate() {
                    // SAFETY: the mask operand was bounds-checked at load.
                    *x += unsafe { *base.offset(j as isize * cs as isize) };
                }
            }
        };
        super::math::softmax_rows(&mut s, sk, scale, &add_mask);
        let vp = unsafe { pack_b(&self.isa, None, sk, dv, v, dv as isize, 1) };
        unsafe {
            sgemm(&self.isa, None, sq, Mat { ptr: s.as_ptr(), rs: sk as isize, cs: 1 }, None, &vp, o, dv, false, None)
        };
    }

    fn reference(&self, nodes: &[usize], arena: &mut Mem) -> Result<(), RuntimeError> {
        let g = &self.graph;
        let mut local: BTreeMap<usize, Tensor> = BTreeMap::new();
        let bindings = Default::default();
        for &n in nodes {
            let node = &g.nodes[n];
            let mut ins = Vec::new();
            for &v in &node.inputs {
                let i = v.index();
                if let std::collections::btree_map::Entry::Vacant(e) = local.entry(i) {
                    let ty = g.ty(v);
                    let shape: Vec<usize> = ty.shape.as_consts().unwrap_or_default();
                    let t = Tensor::from_le_bytes(ty.dtype, &shape, self.bytes_of(arena, i))
                        .ok_or_else(|| bad(format!("node `{}` reads value %{i}, which has no slot", node.name)))?;
                    e.insert(t);
                }
            }
            for &v in &node.inputs {
                ins.push(&local[&v.index()]);
            }
            let outs = sovc_ir::interp::eval(&node.op, &ins, &bindings).map_err(|msg| {
                RuntimeError::Run(sovc_ir::IrError::Eval { node: node.name.clone(), op: node.op.name(), msg })
            })?;
            for (&v, t) in node.outputs.iter().zip(outs) {
                let i = v.index();
                if let Slot::Arena(o) = self.program.slots[i] {
                    let b = t.to_le_bytes();
                    let n = self.elems[i] as usize * g.values[i].dtype.size();
                    if b.len() != n {
                        return Err(bad(format!(
                            "node `{}` gave {} bytes for value %{i}, planned {n}",
                            node.name,
                            b.len()
                        )));
                    }
                    match arena.outputs.get(&i) {
                        // SAFETY: the output's vector holds `n` bytes (checked above via `elems`).
                        Some(&(p, _)) => unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), p as *mut u8, n) },
                        None => arena.arena.as_mut_slice()[o as usize..o as usize + n].copy_from_slice(&b),
                    }
                }
                local.insert(i, t);
            }
        }
        Ok(())
    }
}
