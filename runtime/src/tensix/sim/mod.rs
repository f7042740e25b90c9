//! Executes one TT-Metalium [`Program`] the way the device would, core by core: per core a reader, a
//! compute and a writer kernel interpreted op by op, taking turns whenever one blocks on a circular
//! buffer, over that core's L1 (circular buffers at their addresses, tiles stored in their data format)
//! and the device's interleaved DRAM banks. It checks the circular-buffer protocol (reserve before
//! writing, push no more than reserved, wait before reading, pop no more than waited, pointers wrapping
//! exactly at the end of the buffer), the Dst protocol (acquire, math, commit, wait, pack, release) and
//! Dst capacity, and reports a deadlock with the core, kernel, op and buffer state when no kernel can
//! move. Cores that talk to each other (semaphores, multicasts into each other's circular buffers) run
//! concurrently, every kernel of every core taking turns; a multicast is checked to land only in pages
//! every receiver has reserved and not yet pushed, at the sender's own write pointer. Cores of a program
//! without such calls share nothing but DRAM and no core reads what another writes, so they run one after
//! another, which is exact and needs one L1 at a time. Time is predicted alongside (see
//! [`super::timing`]).

use super::numerics;
use super::program::*;
use super::timing;

mod check;
mod gather;
mod sched;

pub use check::{check_program, op_name};
pub use sched::{run_program, run_program_with};

/// Device DRAM: one byte vector per bank (empty when only addresses are checked).
pub struct Dram {
    pub banks: Vec<Vec<u8>>,
    /// Bytes per bank a tensor may use.
    pub limit: u64,
}

impl Dram {
    pub fn new(banks: u32, bytes_per_bank: u64) -> Dram {
        Dram { banks: (0..banks).map(|_| vec![0u8; bytes_per_bank as usize]).collect(), limit: bytes_per_bank }
    }

    /// Banks that hold no bytes: addresses are checked against `bytes_per_bank` only.
    pub fn unbacked(banks: u32, bytes_per_bank: u64) -> Dram {
        Dram { banks: vec![Vec::new(); banks as usize], limit: bytes_per_bank }
    }

    /// Bank and byte offset of page `p` of `t`, checked against the bank size.
    pub fn page(&self, t: &DramTensor, p: u64) -> Result<(usize, usize), String> {
        let nb = (self.banks.len() as u64).max(1);
        let off = (p / nb).checked_mul(t.page_bytes()).and_then(|o| o.checked_add(t.address));
        let bank = (p % nb) as usize;
        let Some(off) = off.filter(|o| o.checked_add(t.page_bytes()).is_some_and(|e| e <= self.limit)) else {
            return Err(format!("page {p} of value %{} lies outside DRAM bank {bank}", t.value));
        };
        Ok((bank, off as usize))
    }

    pub fn read_page(&self, t: &DramTensor, p: u64) -> Result<&[u8], String> {
        let (b, o) = self.page(t, p)?;
        Ok(&self.banks[b][o..o + t.page_bytes() as usize])
    }

    pub fn write_page(&mut self, t: &DramTensor, p: u64) -> Result<&mut [u8], String> {
        let (b, o) = self.page(t, p)?;
        Ok(&mut self.banks[b][o..o + t.page_bytes() as usize])
    }
}

/// Predicted time of one core's kernels in one program.
#[derive(Clone, Debug, Default)]
pub struct CoreTime {
    pub x: u32,
    pub y: u32,
    /// Cycles at which the reader, compute and writer kernels finished.
    pub kernels: [u64; 3],
}

/// What running a program did and how long the timing model says it took.
#[derive(Clone, Debug, Default)]
pub struct ProgramReport {
    pub name: String,
    pub kernel: usize,
    pub template: String,
    /// Predicted cycles, dispatch included.
    pub cycles: u64,
    /// Ideal FPU cycles of its tile products (summed over cores).
    pub ideal_fpu_cycles: u64,
    pub dram_bytes: u64,
    pub tiles_read: u64,
    pub tiles_written: u64,
    pub tile_products: u64,
    pub cores: Vec<CoreTime>,
    /// Bytes sent core to core by multicast (counted once per multicast, as the NoC replicates them).
    pub mcast_bytes: u64,
    /// Whether DRAM bandwidth, not the slowest core, set the time.
    pub dram_bound: bool,
}

const KINDS: [&str; 3] = ["reader", "compute", "writer"];

struct CbState {
    index: u8,
    format: DataFormat,
    pages: u32,
    page: usize,
    base: usize,
    received: u64,
    acked: u64,
    wr: u32,
    rd: u32,
    reserved: u32,
    waited: u32,
    push_t: Vec<u64>,
    pop_t: Vec<u64>,
}

impl CbState {
    fn describe(&self) -> String {
        format!(
            "CB {}: {} pages, {} filled, {} reserved by the producer, {} waited for by the consumer",
            self.index,
            self.pages,
            self.received - self.acked,
            self.reserved,
            self.waited
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DstState {
    Idle,
    Acquired,
    Committed,
    Waited,
}

struct Frame<'p> {
    ops: &'p [Op],
    pc: usize,
    lp: Option<(u8, i64)>,
}

struct Thread<'p> {
    kind: usize,
    frames: Vec<Frame<'p>>,
    vars: Vec<i64>,
    clock: u64,
    pending: u64,
    done: bool,
    blocked: Option<&'p Op>,
    /// CB pages with a NoC read (into) or write (out of) not yet past its barrier.
    reads: Vec<(u8, usize)>,
    writes: Vec<(u8, usize)>,
    /// A tile multicast issued and not yet flushed (`noc_async_writes_flushed`, or a write barrier).
    unflushed: bool,
    /// Set by a call that reaches another core: the thread ends its turn after it, so the cores it
    /// reached run before its next call (a flag sent before the data it guards is then caught).
    yield_now: bool,
}

/// A semaphore: its value and the cycle its last update arrived.
#[derive(Clone, Copy, Default)]
struct Sem {
    value: u32,
    t: u64,
}

/// An effect of a call on other cores, applied when the caller's turn ends (no other core runs before).
enum Remote {
    /// `n` pages of CB `cb` from page `page` (`bytes`, at L1 offset `off`) to the cores of a rectangle.
    Tiles {
        cb: u8,
        page: u32,
        n: u32,
        off: usize,
        bytes: Vec<u8>,
        rect: [i64; 4],
    },
    SemSet {
        sem: u8,
        value: u32,
        at: u64,
        rect: [i64; 4],
    },
    SemInc {
        sem: u8,
        at: u64,
        x: i64,
        y: i64,
    },
}

/// What a core keeps between turns: swapped into the [`Core`] context while its kernels run.
struct Saved<'p> {
    x: u32,
    y: u32,
    args: &'p [u32],
    l1: Vec<u8>,
    cbs: Vec<CbState>,
    dst: Vec<Vec<f32>>,
    dst_state: DstState,
    /// Cycle each NoC link of the core is free: per NoC (the reader's NoC 0, the writer's NoC 1), data
    /// into the core, then out of it.
    noc_free: [u64; 4],
    sems: Vec<Sem>,
    executed: u64,
    threads: Vec<Thread<'p>>,
}

struct Core<'a> {
    prog: &'a Program,
    plan: &'a Plan,
    x: u32,
    y: u32,
    args: &'a [u32],
    l1: Vec<u8>,
    sems: Vec<Sem>,
    remote: Vec<Remote>,
    dram: &'a mut Dram,
    cbs: Vec<CbState>,
    dst: Vec<Vec<f32>>,
    dst_state: DstState,
    dst_cap: usize,
    /// Cycle each NoC link of the core is free: per NoC (the reader's NoC 0, the writer's NoC 1), data
    /// into the core, then out of it.
    noc_free: [u64; 4],
    a: Vec<f32>,
    b: Vec<f32>,
    report: &'a mut ProgramReport,
    /// Compute values (false: protocol and timing only, for predictions on large programs).
    numerics: bool,
    /// Calls executed so far, against [`OP_BUDGET`].
    executed: u64,
}

/// The most calls one core may execute in one program before the simulator gives up (a crafted or
/// broken program must not hang the runtime): minutes of simulation, far above any compiled program.
const OP_BUDGET: u64 = 1 << 30;

enum Flow {
    Next,
    Blocked,
}

fn eval(ix: &Ix, vars: &[i64], args: &[u32]) -> Result<i64, String> {
    ix.eval(vars, args).ok_or_else(|| format!("index {ix:?} cannot be evaluated (missing argument or variable)"))
}

impl<'a> Core<'a> {
    fn cb(&mut self, cb: u8) -> Result<&mut CbState, String> {
        self.cbs
            .iter_mut()
            .find(|c| c.index == cb)
            .ok_or_else(|| format!("uses CB {cb}, which the program does not create"))
    }

    fn tensor(&self, t: u8) -> Result<&'a DramTensor, String> {
        let plan: &'a Plan = self.plan;
        let i = *self.prog.tensors.get(t as usize).ok_or_else(|| format!("names tensor {t}, not in the program"))?;
        plan.tensors.get(i as usize).ok_or_else(|| format!("names plan tensor {i}, which does not exist"))
    }

    /// L1 offset of tile `slot` past the back (`back`) or front of `cb`, checking it was reserved or waited for.
    fn slot(&mut self, cb: u8, slot: i64, back: bool) -> Result<(usize, DataFormat), String> {
        let c = self.cb(cb)?;
        let limit = if back { c.reserved } else { c.waited };
        if slot < 0 || slot >= limit as i64 {
            return Err(if back {
                format!("writes tile {slot} of CB {cb} but reserved only {limit} (cb_reserve_back first)")
            } else {
                format!("reads tile {slot} of CB {cb} but waited for only {limit} (cb_wait_front first)")
            });
        }
        let start = if back { c.wr } else { c.rd };
        // `get_write_ptr(cb) + slot * page` is linear: a slot past the end of the buffer is past its L1.
        if start as i64 + slot >= c.pages as i64 {
            return Err(format!(
                "{} tile {slot} of CB {cb} from page {start} runs past its {} pages (the buffer does not wrap mid-access)",
                if back { "writes" } else { "reads" },
                c.pages
            ));
        }
        let page = (start as i64 + slot) as u32;
        Ok((c.base + page as usize * c.page, c.format))
    }

    fn unpack(&mut self, cb: u8, t: i64, into_b: bool) -> Result<(), String> {
        let (off, fmt) = self.slot(cb, t, false)?;
        if !self.numerics {
            return Ok(());
        }
        let bytes = &self.l1[off..off + fmt.tile_bytes() as usize];
        numerics::unpack_tile(fmt, bytes, if into_b { &mut self.b } else { &mut self.a });
        Ok(())
    }

    fn pack(&mut self, vals_from_a: bool, cb: u8, slot: i64, back: bool) -> Result<(), String> {
        let (off, fmt) = self.slot(cb, slot, back)?;
        if !self.numerics {
            return Ok(());
        }
        let src = if vals_from_a { &self.a } else { &self.b };
        numerics::pack_tile(fmt, src, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
        Ok(())
    }

    fn dst_index(&self, d: u8) -> Result<usize, String> {
        if (d as usize) < self.dst_cap {
            Ok(d as usize)
        } else {
            Err(format!(
                "uses Dst tile {d}, but only {} fit ({} accumulation, half-sync)",
                self.dst_cap,
                if self.prog.fp32_dest_acc { "FP32" } else { "BF16" }
            ))
        }
    }

    fn math(&self, what: &Op) -> Result<(), String> {
        if self.dst_state != DstState::Acquired {
            return Err(format!(
                "{} outside tile_regs_acquire .. tile_regs_commit (Dst is {:?})",
                op_name(what),
                self.dst_state
            ));
        }
        Ok(())
    }

    fn fp32(&self) -> bool {
        self.prog.fp32_dest_acc
    }

    fn sem(&mut self, sem: u8) -> Result<&mut Sem, String> {
        self.sems
            .get_mut(sem as usize)
            .ok_or_else(|| format!("uses semaphore {sem}, which the program does not create"))
    }

    /// A rectangle of cores, checked: inside the grid, corners ordered, `dests` cores, sender outside.
    fn rect(&self, r: &Rect, dests: u32, vars: &[i64]) -> Result<[i64; 4], String> {
        let a = self.args;
        let q = [eval(&r.x0, vars, a)?, eval(&r.y0, vars, a)?, eval(&r.x1, vars, a)?, eval(&r.y1, vars, a)?];
        let d = &self.plan.device;
        if q[0] < 0 || q[1] < 0 || q[0] > q[2] || q[1] > q[3] || q[2] >= d.grid_x as i64 || q[3] >= d.grid_y as i64 {
            return Err(format!(
                "multicast rectangle ({},{})..({},{}) is not a rectangle of the grid",
                q[0], q[1], q[2], q[3]
            ));
        }
        let n = (q[2] - q[0] + 1) * (q[3] - q[1] + 1);
        if n != dests as i64 {
            return Err(format!(
                "multicasts to {dests} destinations but the rectangle ({},{})..({},{}) holds {n} cores",
                q[0], q[1], q[2], q[3]
            ));
        }
        let (x, y) = (self.x as i64, self.y as i64);
        if (q[0]..=q[2]).contains(&x) && (q[1]..=q[3]).contains(&y) {
            return Err(format!(
                "multicasts to a rectangle that holds the sender ({x},{y}) (that needs the loopback variant)"
            ));
        }
        Ok(q)
    }

    /// Arrival cycle of `bytes` sent core to core by thread `th` over this core's NoC port.
    fn core_send(&mut self, th: &mut Thread<'_>, bytes: u64) -> u64 {
        let dev = &self.plan.device;
        th.clock += timing::NOC_ISSUE;
        let link = noc_link(th, false);
        let start = th.clock.max(self.noc_free[link]);
        let xfer = bytes.div_ceil(dev.noc_bytes_per_cycle as u64);
        self.noc_free[link] = start + xfer;
        let at = start + xfer + timing::CORE_TO_CORE;
        th.pending = th.pending.max(at);
        at
    }

    /// Runs one op of thread `th`.
    fn exec(&mut self, th: &mut Thread<'_>, op: &Op) -> Result<Flow, String> {
        let compute = th.kind == 1;
        let dm_only = matches!(
            op,
            Op::ReadTile { .. }
                | Op::ReadBarrier
                | Op::WriteTile { .. }
                | Op::WriteBarrier
                | Op::WritesFlushed
                | Op::FillTile { .. }
                | Op::PadTile { .. }
                | Op::BcastTile { .. }
                | Op::Im2colTile { .. }
                | Op::GatherTile { .. }
                | Op::EmbedTile { .. }
                | Op::TapTile { .. }
                | Op::ColumnTile { .. }
                | Op::ConcatPartTile { .. }
                | Op::SplitTile { .. }
                | Op::SemSet { .. }
                | Op::SemWait { .. }
                | Op::SemInc { .. }
                | Op::McastTiles { .. }
                | Op::McastSem { .. }
        );
        let compute_only = !dm_only
            && !matches!(
                op,
                Op::Loop { .. }
                    | Op::If { .. }
                    | Op::Reserve { .. }
                    | Op::Push { .. }
                    | Op::Wait { .. }
                    | Op::Pop { .. }
            );
        if compute && dm_only {
            return Err(format!("{} is a data-movement call; a compute kernel cannot make it", op_name(op)));
        }
        if !compute && compute_only {
            return Err(format!("{} is a compute call; a data-movement kernel cannot make it", op_name(op)));
        }
        let vars = &th.vars;
        let args = self.args;
        let fid = self.prog.fidelity;
        match op {
            Op::Loop { .. } | Op::If { .. } => unreachable!("loops and branches are handled by the scheduler"),
            Op::SemSet { sem, value } => {
                let t = th.clock;
                *self.sem(*sem)? = Sem { value: *value, t };
                th.clock += timing::CB_OP;
            }
            Op::SemWait { sem, value } => {
                let s = *self.sem(*sem)?;
                if s.value != *value {
                    return Ok(Flow::Blocked);
                }
                th.clock = th.clock.max(s.t) + timing::CB_OP;
            }
            Op::SemInc { sem, x, y } => {
                self.sem(*sem)?;
                let (x, y) = (eval(x, vars, args)?, eval(y, vars, args)?);
                let at = self.core_send(th, 4);
                self.remote.push(Remote::SemInc { sem: *sem, at, x, y });
                th.yield_now = true;
            }
            Op::McastTiles { cb, n, rect, dests } => {
                let rect = self.rect(rect, *dests, vars)?;
                if *n == 0 {
                    return Err("multicasts no tiles".into());
                }
                let (off, _) = self.slot(*cb, 0, true)?;
                self.slot(*cb, *n as i64 - 1, true)?;
                let c = self.cb(*cb)?;
                let (page, bytes, pb) = (c.wr, *n as usize * c.page, c.page);
                let pages: Vec<(u8, usize)> = (0..*n as usize).map(|i| (*cb, off + i * pb)).collect();
                for &(_, o) in &pages {
                    in_flight(th, *cb, o)?;
                }
                let data = if self.numerics { self.l1[off..off + bytes].to_vec() } else { Vec::new() };
                self.core_send(th, bytes as u64);
                th.writes.extend(pages);
                th.unflushed = true;
                th.yield_now = true;
                self.report.mcast_bytes += bytes as u64;
                self.remote.push(Remote::Tiles { cb: *cb, page, n: *n, off, bytes: data, rect });
            }
            Op::McastSem { sem, rect, dests } => {
                let rect = self.rect(rect, *dests, vars)?;
                if th.unflushed {
                    return Err(
                        "multicasts a flag right after tiles it guards: on Blackhole the two may leave out of \
                                order (noc_async_writes_flushed first)"
                            .into(),
                    );
                }
                th.yield_now = true;
                let value = self.sem(*sem)?.value;
                // Multicasts leave in order: the semaphore lands after the data issued before it.
                let at = self.core_send(th, 4).max(th.pending);
                self.remote.push(Remote::SemSet { sem: *sem, value, at, rect });
            }
            Op::Reserve { cb, n } => {
                let c = self.cb(*cb)?;
                if *n > c.pages {
                    return Err(format!("reserves {n} pages of CB {cb}, which has {}: this never completes", c.pages));
                }
                if c.pages as u64 - (c.received - c.acked) < *n as u64 {
                    return Ok(Flow::Blocked);
                }
                let mut t = th.clock;
                for i in 0..*n {
                    t = t.max(c.pop_t[((c.wr + i) % c.pages) as usize]);
                }
                c.reserved = *n;
                th.clock = t + timing::CB_OP;
            }
            Op::Push { cb, n } => {
                if th.reads.iter().any(|r| r.0 == *cb) {
                    return Err(format!(
                        "pushes CB {cb} while a NoC read into it is in flight (noc_async_read_barrier first)"
                    ));
                }
                let c = self.cb(*cb)?;
                if *n > c.reserved {
                    return Err(format!("pushes {n} pages to CB {cb} but reserved {}", c.reserved));
                }
                for i in 0..*n {
                    c.push_t[((c.wr + i) % c.pages) as usize] = th.clock;
                }
                c.reserved -= n;
                c.received += *n as u64;
                c.wr += n;
                if c.wr > c.pages {
                    return Err(format!("pushes to CB {cb} do not add up to its {} pages before it wraps", c.pages));
                }
                if c.wr == c.pages {
                    c.wr = 0;
                }
                th.clock += timing::CB_OP;
            }
            Op::Wait { cb, n } => {
                let c = self.cb(*cb)?;
                if *n > c.pages {
                    return Err(format!("waits for {n} pages of CB {cb}, which has {}: this never completes", c.pages));
                }
                if c.received - c.acked < *n as u64 {
                    return Ok(Flow::Blocked);
                }
                if *n > 0 {
                    th.clock = th.clock.max(c.push_t[((c.rd + n - 1) % c.pages) as usize]);
                }
                c.waited = c.waited.max(*n);
                th.clock += timing::CB_OP;
            }
            Op::Pop { cb, n } => {
                if th.writes.iter().any(|r| r.0 == *cb) {
                    return Err(format!(
                        "pops CB {cb} while a NoC write out of it is in flight (noc_async_write_barrier first)"
                    ));
                }
                let c = self.cb(*cb)?;
                if *n > c.waited {
                    return Err(format!("pops {n} pages of CB {cb} but waited for {}", c.waited));
                }
                for i in 0..*n {
                    c.pop_t[((c.rd + i) % c.pages) as usize] = th.clock;
                }
                c.waited -= n;
                c.acked += *n as u64;
                c.rd += n;
                if c.rd > c.pages {
                    return Err(format!("pops from CB {cb} do not add up to its {} pages before it wraps", c.pages));
                }
                if c.rd == c.pages {
                    c.rd = 0;
                }
                th.clock += timing::CB_OP;
            }
            Op::ReadTile { tensor, tile, cb, slot } | Op::WriteTile { tensor, tile, cb, slot } => {
                let read = matches!(op, Op::ReadTile { .. });
                let t = self.tensor(*tensor)?;
                let p = eval(tile, vars, args)?;
                if p < 0 || p as u64 >= t.tiles() {
                    return Err(format!("tile {p} of value %{}, which has {} tiles", t.value, t.tiles()));
                }
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, read)?;
                if read {
                    // Not into a page a multicast is still sending from.
                    in_flight(th, *cb, off)?;
                }
                if fmt != t.format {
                    return Err(format!(
                        "moves a {} tile of value %{} through CB {cb} of format {} (a NoC transfer does not convert)",
                        t.format.name(),
                        t.value,
                        fmt.name()
                    ));
                }
                let n = t.page_bytes() as usize;
                if read { &mut th.reads } else { &mut th.writes }.push((*cb, off));
                let dram = &mut *self.dram;
                if !self.numerics {
                    dram.page(t, p as u64)?;
                } else if read {
                    self.l1[off..off + n].copy_from_slice(dram.read_page(t, p as u64)?);
                } else {
                    dram.write_page(t, p as u64)?.copy_from_slice(&self.l1[off..off + n]);
                }
                let dev = &self.plan.device;
                let xfer = (n as u64).div_ceil(dev.noc_bytes_per_cycle as u64);
                th.clock += timing::NOC_ISSUE;
                let link = noc_link(th, read);
                let start = th.clock.max(self.noc_free[link]);
                self.noc_free[link] = start + xfer;
                th.pending = th.pending.max(start + xfer + dev.dram_latency_cycles as u64);
                self.report.dram_bytes += n as u64;
                if read {
                    self.report.tiles_read += 1;
                } else {
                    self.report.tiles_written += 1;
                }
            }
            Op::ReadBarrier | Op::WriteBarrier => {
                if matches!(op, Op::ReadBarrier) {
                    th.reads.clear();
                } else {
                    th.writes.clear();
                    th.unflushed = false;
                }
                th.clock = th.clock.max(th.pending) + timing::BARRIER;
            }
            Op::WritesFlushed => {
                th.unflushed = false;
                th.clock += timing::BARRIER;
            }
            Op::FillTile { cb, slot, fill } => {
                let slot = eval(slot, vars, args)?;
                let (_, fmt) = self.slot(*cb, slot, true)?;
                match fill {
                    Fill::Value(v) => self.a.fill(*v),
                    Fill::Scaler(v) => {
                        for r in 0..32 {
                            for c in 0..32 {
                                self.a[r * 32 + c] = if r % 16 == 0 { *v } else { 0.0 };
                            }
                        }
                    }
                    Fill::Cols { cols, inside, outside } => {
                        for r in 0..32 {
                            for c in 0..32 {
                                self.a[r * 32 + c] = if c < *cols as usize { *inside } else { *outside };
                            }
                        }
                    }
                }
                self.pack(true, *cb, slot, true)?;
                th.clock += timing::l1_fill_cycles(fmt);
            }
            Op::PadTile { cb, slot, rows, cols, value, front } => {
                let (rv, cv) = (eval(rows, vars, args)?, eval(cols, vars, args)?);
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, !front)?;
                in_flight(th, *cb, off)?;
                if matches!(fmt, DataFormat::Bfp8_b | DataFormat::Bfp4_b) {
                    return Err(format!(
                        "pads a {} tile in CB {cb}; the RISC-V helpers handle only Float16_b and Float32",
                        fmt.name()
                    ));
                }
                numerics::unpack_tile(fmt, &self.l1[off..off + fmt.tile_bytes() as usize], &mut self.a);
                for r in 0..32 {
                    for c in 0..32 {
                        if r as i64 >= rv || c as i64 >= cv {
                            self.a[r * 32 + c] = *value;
                        }
                    }
                }
                numerics::pack_tile(fmt, &self.a, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
                th.clock += timing::l1_fill_cycles(fmt);
            }
            Op::BcastTile { cb, slot, bcast } => {
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, true)?;
                in_flight(th, *cb, off)?;
                if matches!(fmt, DataFormat::Bfp8_b | DataFormat::Bfp4_b) {
                    return Err(format!(
                        "broadcasts a {} tile in CB {cb}; the RISC-V helpers handle only Float16_b and Float32",
                        fmt.name()
                    ));
                }
                numerics::unpack_tile(fmt, &self.l1[off..off + fmt.tile_bytes() as usize], &mut self.a);
                broadcast(&mut self.a, *bcast);
                numerics::pack_tile(fmt, &self.a, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
                th.clock += timing::l1_fill_cycles(fmt);
            }
            Op::EmbedTile { table, ids, scratch, ids_scratch, tile, rows, cols, vocab, width, cb, slot } => {
                let (tt, it) = (self.tensor(*table)?, self.tensor(*ids)?);
                self.scratch_format(*scratch, tt, *cb)?;
                if self.cb(*ids_scratch)?.format != it.format || it.format != DataFormat::Float32 {
                    return Err(format!(
                        "reads the ids of an embedding, %{} (FP32), through CB {ids_scratch} of another format",
                        it.value
                    ));
                }
                let tile = eval(tile, vars, args)?;
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, true)?;
                in_flight(th, *cb, off)?;
                let pages = self.embed(tt, it, tile, (*rows, *cols), (*vocab, *width))?;
                if self.numerics {
                    numerics::pack_tile(fmt, &self.a, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
                }
                self.gather_time(th, tt, pages);
            }
            Op::GatherTile { tensor, scratch, tile, rows, cols, map, cb, slot } => {
                let t = self.tensor(*tensor)?;
                self.scratch_format(*scratch, t, *cb)?;
                let tile = eval(tile, vars, args)?;
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, true)?;
                in_flight(th, *cb, off)?;
                let pages = self.gather(t, tile, *rows, *cols, map)?;
                if self.numerics {
                    numerics::pack_tile(fmt, &self.a, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
                }
                self.gather_time(th, t, pages);
            }
            Op::TapTile { tensor, scratch, image, ct, nt, tap, geom, pad, cb, slot } => {
                let t = self.tensor(*tensor)?;
                self.scratch_format(*scratch, t, *cb)?;
                let (img, ct, nt) = (eval(image, vars, args)?, eval(ct, vars, args)?, eval(nt, vars, args)?);
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, true)?;
                in_flight(th, *cb, off)?;
                let pages = self.tap(t, img, ct, nt, *tap, geom, *pad)?;
                if self.numerics {
                    numerics::pack_tile(fmt, &self.a, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
                }
                self.gather_time(th, t, pages);
            }
            Op::ConcatPartTile { tensor, scratch, tile, rows, cols, dims, axis, start, size, cb, slot } => {
                let t = self.tensor(*tensor)?;
                self.scratch_format(*scratch, t, *cb)?;
                let tile = eval(tile, vars, args)?;
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, true)?;
                in_flight(th, *cb, off)?;
                if matches!(fmt, DataFormat::Bfp8_b | DataFormat::Bfp4_b) {
                    return Err(format!("concatenates into a {} tile", fmt.name()));
                }
                if self.numerics {
                    numerics::unpack_tile(fmt, &self.l1[off..off + fmt.tile_bytes() as usize], &mut self.a);
                }
                let pages = self.concat_part(t, tile, *rows, *cols, dims, *axis, *start, *size)?;
                if self.numerics {
                    numerics::pack_tile(fmt, &self.a, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
                }
                self.gather_time(th, t, pages);
            }
            Op::SplitTile { from, hi, lo, slot } => {
                let s = eval(slot, vars, args)?;
                let (src, sf) = self.slot(*from, 0, true)?;
                let (ho, hf) = self.slot(*hi, s, true)?;
                let (lo_off, lf) = self.slot(*lo, s, true)?;
                for (cb, off) in [(*from, src), (*hi, ho), (*lo, lo_off)] {
                    in_flight(th, cb, off)?;
                }
                if sf != DataFormat::Float32 || hf != DataFormat::Float16_b || lf != DataFormat::Float16_b {
                    return Err(format!(
                        "splits a {} tile into {} and {} tiles (Float32 into two Float16_b)",
                        sf.name(),
                        hf.name(),
                        lf.name()
                    ));
                }
                if self.numerics {
                    numerics::unpack_tile(sf, &self.l1[src..src + 4096], &mut self.b);
                    for (o, &x) in self.a.iter_mut().zip(&self.b) {
                        *o = Part::Hi.of(x);
                    }
                    numerics::pack_tile(hf, &self.a, &mut self.l1[ho..ho + 2048]);
                    for (o, &x) in self.a.iter_mut().zip(&self.b) {
                        *o = Part::Lo.of(x);
                    }
                    numerics::pack_tile(lf, &self.a, &mut self.l1[lo_off..lo_off + 2048]);
                }
                // Integer rounding and renormalisation on the RISC-V core: about 32 cycles per element.
                th.clock += 32 * 1024;
            }
            Op::ColumnTile { from, col, cb, slot } => {
                let (src, sf) = self.slot(*from, 0, true)?;
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, true)?;
                in_flight(th, *from, src)?;
                in_flight(th, *cb, off)?;
                if *col >= 32 || sf != fmt || matches!(fmt, DataFormat::Bfp8_b | DataFormat::Bfp4_b) {
                    return Err(format!("column {col} of a {} tile into a {} tile", sf.name(), fmt.name()));
                }
                numerics::unpack_tile(sf, &self.l1[src..src + sf.tile_bytes() as usize], &mut self.b);
                for r in 0..32 {
                    let v = self.b[r * 32 + *col as usize];
                    self.a[r * 32..r * 32 + 32].fill(v);
                }
                numerics::pack_tile(fmt, &self.a, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
                th.clock += timing::l1_fill_cycles(fmt);
            }
            Op::Im2colTile { tensor, scratch, image, kt, nt, geom, cb, slot } => {
                let t = self.tensor(*tensor)?;
                self.scratch_format(*scratch, t, *cb)?;
                let (img, kt, nt) = (eval(image, vars, args)?, eval(kt, vars, args)?, eval(nt, vars, args)?);
                let (off, fmt) = self.slot(*cb, eval(slot, vars, args)?, true)?;
                in_flight(th, *cb, off)?;
                let pages = self.im2col(t, img, kt, nt, geom)?;
                if self.numerics {
                    numerics::pack_tile(fmt, &self.a, &mut self.l1[off..off + fmt.tile_bytes() as usize]);
                }
                self.gather_time(th, t, pages);
            }
            Op::Acquire => {
                if self.dst_state != DstState::Idle {
                    return Err(format!("tile_regs_acquire while Dst is {:?} (release it first)", self.dst_state));
                }
                self.dst_state = DstState::Acquired;
            }
            Op::Commit => {
                self.math(op)?;
                self.dst_state = DstState::Committed;
            }
            Op::WaitDst => {
                if self.dst_state != DstState::Committed {
                    return Err(format!("tile_regs_wait while Dst is {:?} (commit first)", self.dst_state));
                }
                self.dst_state = DstState::Waited;
            }
            Op::Release => {
                if self.dst_state != DstState::Waited {
                    return Err(format!("tile_regs_release while Dst is {:?} (wait first)", self.dst_state));
                }
                // Releasing clears the half just packed (ZEROACC): the next acquire sees zeros.
                for d in &mut self.dst {
                    d.fill(0.0);
                }
                self.dst_state = DstState::Idle;
            }
            Op::CopyTile { cb, tile, dst } => {
                self.math(op)?;
                let d = self.dst_index(*dst)?;
                self.unpack(*cb, eval(tile, vars, args)?, false)?;
                let fp32 = self.fp32();
                // copy_tile unpacks through SrcA, which holds FP32 as TF32, unless the buffer is
                // configured to unpack to Dst in FP32.
                let direct = self.prog.unpack_to_dest_fp32.contains(cb) && fp32;
                for (o, &v) in self.dst[d].iter_mut().zip(&self.a) {
                    *o = numerics::dst_round(if direct { v } else { numerics::tf32_trunc(v) }, fp32);
                }
            }
            Op::Matmul { in0, in1, t0, t1, dst, transpose } => {
                self.math(op)?;
                let d = self.dst_index(*dst)?;
                self.unpack(*in0, eval(t0, vars, args)?, false)?;
                self.unpack(*in1, eval(t1, vars, args)?, true)?;
                if self.numerics {
                    numerics::matmul_tile(&self.a, &self.b, &mut self.dst[d], fid, self.prog.fp32_dest_acc, *transpose);
                }
                self.report.tile_products += 1;
                self.report.ideal_fpu_cycles += timing::matmul_cycles(fid);
            }
            Op::Binary { op: bop, bcast, a, b, ta, tb, dst } => {
                self.math(op)?;
                let d = self.dst_index(*dst)?;
                self.unpack(*a, eval(ta, vars, args)?, false)?;
                self.unpack(*b, eval(tb, vars, args)?, true)?;
                broadcast(&mut self.b, *bcast);
                let fp32 = self.fp32();
                // FPU operands enter SrcA / SrcB as TF32 at most.
                for ((o, &x), &y) in self.dst[d].iter_mut().zip(&self.a).zip(&self.b) {
                    let (x, y) = (numerics::tf32_trunc(x), numerics::tf32_trunc(y));
                    let r = match bop {
                        FpuBinary::Add => x + y,
                        FpuBinary::Sub => x - y,
                        FpuBinary::Mul => numerics::fpu_mul(x, y, fid),
                    };
                    *o = numerics::dst_round(r, fp32);
                }
            }
            Op::BinaryDst { op: bop, a, b } => {
                self.math(op)?;
                let (da, db) = (self.dst_index(*a)?, self.dst_index(*b)?);
                let fp32 = self.fp32();
                for i in 0..1024 {
                    let r = numerics::sfpu_binary(*bop, self.dst[da][i], self.dst[db][i]);
                    self.dst[da][i] = numerics::dst_round(r, fp32);
                }
            }
            Op::Unary { op: uop, dst } => {
                self.math(op)?;
                let d = self.dst_index(*dst)?;
                let fp32 = self.fp32();
                for v in self.dst[d].iter_mut() {
                    *v = numerics::dst_round(numerics::sfpu_unary(*uop, *v), fp32);
                }
            }
            Op::CopyDst { from, to } => {
                self.math(op)?;
                let (f, t) = (self.dst_index(*from)?, self.dst_index(*to)?);
                let v = self.dst[f].clone();
                self.dst[t].copy_from_slice(&v);
            }
            Op::Reduce { kind, dim, cb, t, scaler_cb, dst } => {
                self.math(op)?;
                let d = self.dst_index(*dst)?;
                self.unpack(*scaler_cb, 0, true)?;
                let s = self.b[0];
                self.unpack(*cb, eval(t, vars, args)?, false)?;
                for v in self.a.iter_mut() {
                    *v = numerics::tf32_trunc(*v);
                }
                let fp32 = self.fp32();
                let x = &self.a;
                let out = &mut self.dst[d];
                let combine = |acc: f32, v: f32| match kind {
                    ReduceKind::Sum => acc + v,
                    ReduceKind::Max => acc.max(v),
                };
                let fold = |it: &mut dyn Iterator<Item = f32>| match kind {
                    ReduceKind::Sum => it.map(|v| numerics::fpu_mul(v, s, fid)).sum::<f32>(),
                    ReduceKind::Max => it.fold(f32::NEG_INFINITY, f32::max) * s,
                };
                match dim {
                    ReduceDim::Row => {
                        for r in 0..32 {
                            let v = fold(&mut x[r * 32..r * 32 + 32].iter().copied());
                            out[r * 32] = numerics::dst_round(combine(out[r * 32], v), fp32);
                        }
                    }
                    ReduceDim::Col => {
                        for c in 0..32 {
                            let v = fold(&mut (0..32).map(|r| x[r * 32 + c]));
                            out[c] = numerics::dst_round(combine(out[c], v), fp32);
                        }
                    }
                    ReduceDim::Scalar => {
                        let v = fold(&mut x.iter().copied());
                        out[0] = numerics::dst_round(combine(out[0], v), fp32);
                    }
                }
            }
            Op::Transpose { cb, t, dst } => {
                self.math(op)?;
                let d = self.dst_index(*dst)?;
                self.unpack(*cb, eval(t, vars, args)?, false)?;
                let fp32 = self.fp32();
                for r in 0..32 {
                    for c in 0..32 {
                        self.dst[d][c * 32 + r] = numerics::dst_round(self.a[r * 32 + c], fp32);
                    }
                }
            }
            Op::Pack { dst, cb, slot } => {
                if self.dst_state != DstState::Waited {
                    return Err(format!(
                        "pack_tile while Dst is {:?} (tile_regs_commit and tile_regs_wait first)",
                        self.dst_state
                    ));
                }
                let d = self.dst_index(*dst)?;
                self.a.copy_from_slice(&self.dst[d]);
                self.pack(true, *cb, eval(slot, vars, args)?, true)?;
            }
        }
        if compute {
            th.clock += timing::compute_cycles(op, fid);
        }
        Ok(Flow::Next)
    }
}

/// The link of the core's NoC interface a transfer of thread `th` uses: the reader issues on NoC 0, the
/// writer on NoC 1 (as the emitted host program configures them); data coming in (`inbound`) and going
/// out use different links.
fn noc_link(th: &Thread<'_>, inbound: bool) -> usize {
    2 * usize::from(th.kind == 2) + usize::from(!inbound)
}

/// L1 stores of a data-movement core must not touch a page a NoC transfer is still filling or reading.
fn in_flight(th: &Thread<'_>, cb: u8, off: usize) -> Result<(), String> {
    if th.reads.contains(&(cb, off)) || th.writes.contains(&(cb, off)) {
        return Err(format!("touches a tile of CB {cb} with a NoC transfer in flight (barrier first)"));
    }
    Ok(())
}

fn broadcast(t: &mut [f32], b: Bcast) {
    match b {
        Bcast::None => {}
        Bcast::Rows => {
            for r in 1..32 {
                t.copy_within(0..32, r * 32);
            }
        }
        Bcast::Cols => {
            for r in 0..32 {
                let v = t[r * 32];
                t[r * 32..r * 32 + 32].fill(v);
            }
        }
        Bcast::Scalar => {
            let v = t[0];
            t.fill(v);
        }
    }
}
