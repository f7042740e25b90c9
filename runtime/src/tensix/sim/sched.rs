//! The scheduler of the simulator: a program's cores (one at a time, or all together when they talk to
//! each other), each core's three kernels taking turns until they block, cross-core effects (multicast
//! tiles, semaphores) applied between turns, deadlocks reported with every blocked kernel.

use super::*;

/// Runs `p` on `dram`. Errors name the program, core, kernel and call.
pub fn run_program(plan: &Plan, p: &Program, dram: &mut Dram) -> Result<ProgramReport, String> {
    run_program_with(plan, p, dram, true)
}

/// Whether any kernel of `p` reaches another core (semaphores, multicasts).
fn talks(p: &Program) -> bool {
    fn any(ops: &[Op]) -> bool {
        ops.iter().any(|o| match o {
            Op::SemInc { .. } | Op::McastTiles { .. } | Op::McastSem { .. } => true,
            Op::Loop { body, .. } => any(body),
            Op::If { then, els, .. } => any(then) || any(els),
            _ => false,
        })
    }
    any(&p.reader) || any(&p.writer) || any(&p.compute)
}

/// As [`run_program`]; with `numerics` false no values are computed or moved (the protocol is checked
/// and time predicted all the same, since no kernel's control flow depends on data).
pub fn run_program_with(plan: &Plan, p: &Program, dram: &mut Dram, numerics: bool) -> Result<ProgramReport, String> {
    let fail = |m: String| format!("program `{}`: {m}", p.name);
    plan.device.check().map_err(|e| fail(format!("device: {e}")))?;
    check_program(plan, p).map_err(fail)?;
    let mut report =
        ProgramReport { name: p.name.clone(), kernel: p.kernel, template: p.template.clone(), ..Default::default() };
    // L1 up to the end of the last CB (indexed by address; the zero pages below are never touched).
    let l1_end = p.cbs.iter().map(|c| c.address + c.bytes()).max().unwrap_or(0) as usize;
    let dst_cap = (plan.device.dst_tiles / 2 / if p.fp32_dest_acc { 2 } else { 1 }) as usize;
    let mut times = Vec::new();
    {
        let mut core = Core {
            prog: p,
            plan,
            x: 0,
            y: 0,
            args: &[],
            l1: Vec::new(),
            sems: Vec::new(),
            remote: Vec::new(),
            dram,
            cbs: Vec::new(),
            dst: Vec::new(),
            dst_state: DstState::Idle,
            dst_cap,
            noc_free: [0; 4],
            a: vec![0.0; 1024],
            b: vec![0.0; 1024],
            report: &mut report,
            numerics,
            executed: 0,
        };
        let groups: Vec<Vec<&CoreWork>> =
            if talks(p) { vec![p.cores.iter().collect()] } else { p.cores.iter().map(|c| vec![c]).collect() };
        let mut spare: Option<Vec<u8>> = None;
        for group in groups {
            let mut saved: Vec<Saved> = group
                .iter()
                .map(|cw| Saved {
                    x: cw.x,
                    y: cw.y,
                    args: &cw.args,
                    l1: spare.take().unwrap_or_else(|| vec![0u8; l1_end]),
                    cbs: new_cbs(p),
                    dst: vec![vec![0.0; 1024]; dst_cap],
                    dst_state: DstState::Idle,
                    noc_free: [0; 4],
                    sems: p.semaphores.iter().map(|&value| Sem { value, t: 0 }).collect(),
                    executed: 0,
                    threads: new_threads(p),
                })
                .collect();
            run_group(&mut core, &mut saved).map_err(fail)?;
            for st in saved.iter_mut() {
                let th = &st.threads;
                times.push(CoreTime {
                    x: st.x,
                    y: st.y,
                    kernels: [th[0].clock.max(th[0].pending), th[1].clock, th[2].clock.max(th[2].pending)],
                });
                spare = Some(std::mem::take(&mut st.l1));
            }
        }
    }
    report.cores = times;
    let slowest = report.cores.iter().flat_map(|c| c.kernels).max().unwrap_or(0);
    let d = &plan.device;
    let dram_cycles = (report.dram_bytes as f64 / (d.dram_gbps * 1e9) * d.clock_mhz as f64 * 1e6).ceil() as u64;
    report.dram_bound = dram_cycles > slowest;
    report.cycles = slowest.max(dram_cycles) + timing::DISPATCH_CYCLES;
    Ok(report)
}

fn new_cbs(p: &Program) -> Vec<CbState> {
    p.cbs
        .iter()
        .map(|c| CbState {
            index: c.index,
            format: c.format,
            pages: c.pages,
            page: c.format.tile_bytes() as usize,
            base: c.address as usize,
            received: 0,
            acked: 0,
            wr: 0,
            rd: 0,
            reserved: 0,
            waited: 0,
            push_t: vec![0; c.pages as usize],
            pop_t: vec![0; c.pages as usize],
        })
        .collect()
}

fn new_threads(p: &Program) -> Vec<Thread<'_>> {
    [&p.reader, &p.compute, &p.writer]
        .iter()
        .enumerate()
        .map(|(kind, ops)| Thread {
            kind,
            frames: vec![Frame { ops: ops.as_slice(), pc: 0, lp: None }],
            vars: vec![0; 16],
            clock: 0,
            pending: 0,
            done: false,
            blocked: None,
            reads: Vec::new(),
            writes: Vec::new(),
            unflushed: false,
            yield_now: false,
        })
        .collect()
}

/// Swaps core `st`'s state into (or back out of) the context.
fn swap<'p>(core: &mut Core<'p>, st: &mut Saved<'p>) {
    std::mem::swap(&mut core.x, &mut st.x);
    std::mem::swap(&mut core.y, &mut st.y);
    std::mem::swap(&mut core.args, &mut st.args);
    std::mem::swap(&mut core.l1, &mut st.l1);
    std::mem::swap(&mut core.cbs, &mut st.cbs);
    std::mem::swap(&mut core.dst, &mut st.dst);
    std::mem::swap(&mut core.dst_state, &mut st.dst_state);
    std::mem::swap(&mut core.noc_free, &mut st.noc_free);
    std::mem::swap(&mut core.sems, &mut st.sems);
    std::mem::swap(&mut core.executed, &mut st.executed);
}

/// Runs the cores of `group` together, each core's kernels taking turns, until all end; a deadlock when
/// a whole round moves nothing.
fn run_group<'p>(core: &mut Core<'p>, group: &mut [Saved<'p>]) -> Result<(), String> {
    loop {
        let mut progressed = false;
        for i in 0..group.len() {
            if group[i].threads.iter().all(|t| t.done) {
                continue;
            }
            let mut threads = std::mem::take(&mut group[i].threads);
            swap(core, &mut group[i]);
            let mut res = Ok(());
            for th in threads.iter_mut().filter(|t| !t.done) {
                match run_thread(core, th) {
                    Ok(p) => progressed |= p,
                    Err(m) => {
                        res = Err(format!("{} kernel: {m}", KINDS[th.kind]));
                        break;
                    }
                }
            }
            swap(core, &mut group[i]);
            group[i].threads = threads;
            let (x, y) = (group[i].x, group[i].y);
            let at = |m: String| format!("core ({x},{y}) {m}");
            res.map_err(at)?;
            for r in std::mem::take(&mut core.remote) {
                apply(group, r).map_err(at)?;
            }
        }
        if group.iter().all(|c| c.threads.iter().all(|t| t.done)) {
            break;
        }
        if !progressed {
            return Err(deadlock(group));
        }
    }
    for st in group.iter() {
        let at = format!("core ({},{})", st.x, st.y);
        if st.dst_state != DstState::Idle {
            return Err(format!("{at} compute kernel ended with Dst {:?} (missing tile_regs_release)", st.dst_state));
        }
        for c in &st.cbs {
            if c.received != c.acked {
                return Err(format!(
                    "{at} kernels ended with {} pages left in CB {} (pushed but never popped)",
                    c.received - c.acked,
                    c.index
                ));
            }
        }
    }
    Ok(())
}

/// The report of a group in which no kernel can move: every blocked kernel and what it waits for.
fn deadlock(group: &[Saved<'_>]) -> String {
    let mut why = Vec::new();
    for st in group {
        for th in &st.threads {
            let Some(op) = th.blocked else { continue };
            let state = match op {
                Op::Reserve { cb, .. } | Op::Wait { cb, .. } => {
                    st.cbs.iter().find(|c| c.index == *cb).map(|c| c.describe()).unwrap_or_default()
                }
                Op::SemWait { sem, .. } => {
                    st.sems.get(*sem as usize).map(|s| format!("semaphore {sem} is {}", s.value)).unwrap_or_default()
                }
                _ => String::new(),
            };
            let who = if group.len() > 1 { format!("core ({},{}) ", st.x, st.y) } else { String::new() };
            why.push(format!("{who}{} kernel blocked in {} ({op:?}); {state}", KINDS[th.kind], op_name(op)));
        }
    }
    let more = why.len().saturating_sub(6);
    why.truncate(6);
    if more > 0 {
        why.push(format!("and {more} more blocked kernels"));
    }
    let whose = if group.len() == 1 { format!("core ({},{}) ", group[0].x, group[0].y) } else { String::new() };
    format!("{whose}deadlock: {}", why.join("; "))
}

/// Applies an effect of a core's turn to the cores it reaches.
fn apply(group: &mut [Saved<'_>], r: Remote) -> Result<(), String> {
    let find = |g: &[Saved<'_>], x: i64, y: i64| -> Result<usize, String> {
        g.iter()
            .position(|c| c.x as i64 == x && c.y as i64 == y)
            .ok_or_else(|| format!("reaches core ({x},{y}), which runs no kernel of this program"))
    };
    let cells = |q: [i64; 4]| (q[1]..=q[3]).flat_map(move |y| (q[0]..=q[2]).map(move |x| (x, y)));
    match r {
        Remote::Tiles { cb, page, n, off, bytes, rect } => {
            for (x, y) in cells(rect) {
                let st = &mut group[find(group, x, y)?];
                let Some(c) = st.cbs.iter().find(|c| c.index == cb) else {
                    return Err(format!("multicasts into CB {cb}, which core ({x},{y}) does not have"));
                };
                if c.reserved < n {
                    return Err(format!(
                        "noc_async_write_multicast: {n} tiles land in CB {cb} of core ({x},{y}), which has reserved {} \
                         (the sender must wait until every receiver has reserved the pages: noc_semaphore_wait)",
                        c.reserved
                    ));
                }
                if c.wr != page {
                    return Err(format!(
                        "noc_async_write_multicast: tiles for page {page} of CB {cb} land on core ({x},{y}), whose \
                         write pointer is at page {} (the cores' CB sequences differ)",
                        c.wr
                    ));
                }
                if !bytes.is_empty() {
                    st.l1[off..off + bytes.len()].copy_from_slice(&bytes);
                }
            }
        }
        Remote::SemSet { sem, value, at, rect } => {
            for (x, y) in cells(rect) {
                let j = find(group, x, y)?;
                let s = group[j].sems.get_mut(sem as usize).ok_or("semaphore missing")?;
                *s = Sem { value, t: s.t.max(at) };
            }
        }
        Remote::SemInc { sem, at, x, y } => {
            let j = find(group, x, y).map_err(|e| format!("noc_semaphore_inc: {e}"))?;
            let s = group[j].sems.get_mut(sem as usize).ok_or("semaphore missing")?;
            s.value = s.value.checked_add(1).ok_or_else(|| format!("semaphore {sem} of core ({x},{y}) overflows"))?;
            s.t = s.t.max(at);
        }
    }
    Ok(())
}

/// Runs thread `th` until it blocks or ends; whether it executed anything.
fn run_thread<'p>(core: &mut Core<'_>, th: &mut Thread<'p>) -> Result<bool, String> {
    let mut progressed = false;
    loop {
        let Some(f) = th.frames.last_mut() else {
            th.done = true;
            return Ok(progressed);
        };
        if f.pc == f.ops.len() {
            match f.lp {
                Some((var, count)) => {
                    let v = &mut th.vars[var as usize];
                    *v += 1;
                    if *v < count {
                        f.pc = 0;
                    } else {
                        th.frames.pop();
                    }
                }
                None => {
                    th.frames.pop();
                }
            }
            continue;
        }
        let ops: &'p [Op] = f.ops;
        let op = &ops[f.pc];
        if let Op::If { cond, then, els } = op {
            let c = eval(cond, &th.vars, core.args)?;
            f.pc += 1;
            let ops: &'p [Op] = if c != 0 { then } else { els };
            if !ops.is_empty() {
                th.frames.push(Frame { ops, pc: 0, lp: None });
            }
            progressed = true;
            continue;
        }
        if let Op::Loop { var, count, body } = op {
            let n = eval(count, &th.vars, core.args)?;
            if n > u32::MAX as i64 {
                return Err(format!("a loop of {n} iterations (the kernels count in uint32_t)"));
            }
            f.pc += 1;
            if *var as usize >= th.vars.len() {
                th.vars.resize(*var as usize + 1, 0);
            }
            if n > 0 && !body.is_empty() {
                th.vars[*var as usize] = 0;
                th.frames.push(Frame { ops: body, pc: 0, lp: Some((*var, n)) });
            }
            progressed = true;
            continue;
        }
        core.executed += 1;
        if core.executed > OP_BUDGET {
            return Err(format!("the core ran more than {OP_BUDGET} calls (the simulator's budget per core)"));
        }
        match core.exec(th, op).map_err(|m| format!("{}: {m}", op_name(op)))? {
            Flow::Next => {
                th.blocked = None;
                progressed = true;
                if let Some(f) = th.frames.last_mut() {
                    f.pc += 1;
                }
                if std::mem::take(&mut th.yield_now) {
                    return Ok(true);
                }
            }
            Flow::Blocked => {
                th.blocked = Some(op);
                return Ok(progressed);
            }
        }
    }
}
