//! Building one TT-Metalium program: its tensors, circular buffers (placed in L1 one after another from
//! the first free byte; a program that does not fit is an error that lists what uses the space), the
//! three kernels' op lists, and the split of its work units over the compute grid.

use sovc_runtime::tensix::program::*;

/// Circular-buffer indices by convention: inputs from 0, the output at 16, intermediates from 24.
pub const CB_OUT: u8 = 16;

pub struct ProgramBuilder<'d> {
    pub dev: &'d DeviceDesc,
    pub name: String,
    pub kernel: usize,
    pub template: &'static str,
    pub tensors: Vec<u32>,
    pub cbs: Vec<Cb>,
    pub reader: Vec<Op>,
    pub compute: Vec<Op>,
    pub writer: Vec<Op>,
    pub fidelity: MathFidelity,
    pub fp32_dest_acc: bool,
    pub notes: Vec<String>,
    pub semaphores: Vec<u32>,
    pub noc_args: Vec<(u8, Axis)>,
    next_addr: u64,
}

impl<'d> ProgramBuilder<'d> {
    pub fn new(dev: &'d DeviceDesc, name: &str, kernel: usize, template: &'static str, num: &NumericOptions) -> Self {
        ProgramBuilder {
            dev,
            name: name.to_string(),
            kernel,
            template,
            tensors: Vec::new(),
            cbs: Vec::new(),
            reader: Vec::new(),
            compute: Vec::new(),
            writer: Vec::new(),
            fidelity: num.fidelity.unwrap_or(MathFidelity::HiFi4),
            fp32_dest_acc: num.fp32_dest_acc,
            notes: Vec::new(),
            semaphores: Vec::new(),
            noc_args: Vec::new(),
            next_addr: dev.l1_unreserved_base,
        }
    }

    /// The program-local number of plan tensor `t`.
    pub fn tensor(&mut self, t: u32) -> u8 {
        match self.tensors.iter().position(|&x| x == t) {
            Some(i) => i as u8,
            None => {
                self.tensors.push(t);
                (self.tensors.len() - 1) as u8
            }
        }
    }

    /// Creates CB `index` of `pages` tiles; L1 addresses are 32-byte aligned.
    pub fn cb(&mut self, index: u8, format: DataFormat, pages: u32, role: &str) -> u8 {
        let address = self.next_addr.div_ceil(32) * 32;
        let c = Cb { index, format, pages, address, role: role.to_string() };
        self.next_addr = address + c.bytes();
        self.cbs.push(c);
        index
    }

    /// Dst tiles available per acquire: half of Dst (half-sync), halved again for FP32.
    pub fn dst_cap(&self) -> usize {
        (self.dev.dst_tiles / 2 / if self.fp32_dest_acc { 2 } else { 1 }) as usize
    }

    /// Finishes the program with `units` work units split evenly over the grid; each core's runtime
    /// arguments are its first unit and unit count.
    pub fn finish(self, units: u64) -> Result<Program, crate::lower::LowerError> {
        let cores = split(units, self.dev);
        self.finish_on(cores)
    }

    /// Creates semaphore `i` (the next one) with initial value `value`.
    pub fn semaphore(&mut self, value: u32) -> u8 {
        self.semaphores.push(value);
        (self.semaphores.len() - 1) as u8
    }

    /// Finishes the program on the given cores and runtime arguments.
    pub fn finish_on(self, cores: Vec<CoreWork>) -> Result<Program, crate::lower::LowerError> {
        if self.next_addr > self.dev.l1_bytes {
            let free = self.dev.l1_bytes - self.dev.l1_unreserved_base;
            let need = self.next_addr - self.dev.l1_unreserved_base;
            let uses: Vec<String> = self
                .cbs
                .iter()
                .map(|c| {
                    format!("CB {} ({}, {} x {} tiles) {} B", c.index, c.role, c.pages, c.format.name(), c.bytes())
                })
                .collect();
            return Err(crate::lower::LowerError::L1(format!(
                "program `{}` needs {need} B of L1 per core but {} has {free} B free ({} B over): {}",
                self.name,
                self.dev.arch,
                need - free,
                uses.join(", ")
            )));
        }
        // With FP32 accumulation, FP32 buffers that copy_tile reads go to Dst unchanged.
        let mut unpack_to_dest_fp32 = Vec::new();
        if self.fp32_dest_acc {
            fn copies(ops: &[Op], out: &mut Vec<u8>) {
                for op in ops {
                    match op {
                        Op::CopyTile { cb, .. } if !out.contains(cb) => out.push(*cb),
                        Op::Loop { body, .. } => copies(body, out),
                        Op::If { then, els, .. } => {
                            copies(then, out);
                            copies(els, out);
                        }
                        _ => {}
                    }
                }
            }
            copies(&self.compute, &mut unpack_to_dest_fp32);
            unpack_to_dest_fp32.retain(|cb| self.cbs.iter().any(|c| c.index == *cb && c.format == DataFormat::Float32));
            unpack_to_dest_fp32.sort_unstable();
        }
        Ok(Program {
            unpack_to_dest_fp32,
            name: self.name,
            kernel: self.kernel,
            template: self.template.to_string(),
            tensors: self.tensors,
            cbs: self.cbs,
            reader: self.reader,
            compute: self.compute,
            writer: self.writer,
            cores,
            fidelity: self.fidelity,
            fp32_dest_acc: self.fp32_dest_acc,
            notes: self.notes,
            semaphores: self.semaphores,
            noc_args: self.noc_args,
        })
    }
}

/// `units` split over the grid in row-major core order, as `split_work_to_cores` does.
pub fn split(units: u64, dev: &DeviceDesc) -> Vec<CoreWork> {
    let n = units.min(dev.cores() as u64).max(1);
    let mut start = 0u64;
    (0..n)
        .map(|i| {
            let count = units / n + u64::from(i < units % n);
            let w = CoreWork {
                x: (i % dev.grid_x as u64) as u32,
                y: (i / dev.grid_x as u64) as u32,
                args: vec![start as u32, count as u32],
            };
            start += count;
            w
        })
        .collect()
}

/// The unit a core's loop iteration works on: `arg0 + v0`.
pub fn unit() -> Ix {
    Ix::Arg(0).plus(Ix::Var(0))
}

/// `for v0 in 0..arg1 { body }`: the loop over a core's units.
pub fn units_loop(body: Vec<Op>) -> Op {
    Op::Loop { var: 0, count: Ix::Arg(1), body }
}

pub fn lp(var: u8, count: u64, body: Vec<Op>) -> Op {
    Op::Loop { var, count: Ix::Const(count as i64), body }
}

pub fn c(v: u64) -> Ix {
    Ix::Const(v as i64)
}

/// Valid rows (or columns) of tile `t` of a dimension of `n` elements: `min(32, n - 32 t)`.
pub fn valid(n: u64, t: Ix) -> Ix {
    Ix::Const(32).min(c(n).plus(t.times(-32)))
}
