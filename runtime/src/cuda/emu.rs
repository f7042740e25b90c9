//! A PTX emulator for the subset sovc writes (`--device ptx-emu`): it parses the module text, rejects
//! any instruction outside that subset with its line, and runs an entry over a 1-D grid with block and
//! thread semantics: `%ctaid.x`, `%ntid.x`, `%tid.x`, predicated branches, `bar.sync` (the threads of a
//! block run in phases between barriers), 64-bit integer and f32 arithmetic, global loads and stores
//! checked against the bounds of the buffer each pointer came from, and per-block shared memory in which
//! a race is an error: a thread reading or writing a word that another thread of its block wrote (or, for
//! a write, read) since the last barrier is a missing `bar.sync`. f32 operations round as PTX defines
//! them (`.rn`: IEEE round to nearest); `ex2.approx` is computed exactly (the hardware's is within 2 ulp),
//! `rcp.rn`, `sqrt.rn` and `div.rn` are IEEE.

use std::collections::BTreeMap;

/// A register: class and number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    P(u32),
    R(u32),
    Rd(u32),
    F(u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Src {
    Reg(Reg),
    Int(i64),
    F32(f32),
    CtaId,
    NTid,
    Tid,
    /// A shared array's address (bytes into the block's shared memory).
    Shared(u64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Mov,
    MulWideU32,
    CvtU64U32,
    Add,
    Sub,
    MulLo,
    MadLo,
    DivU,
    RemU,
    DivS,
    RemS,
    SetpGeU,
    SetpGeS,
    SetpLtS,
    OrPred,
    Cvta,
    LdParam(usize),
    LdGlobal,
    StGlobal,
    LdShared,
    StShared,
    FAdd,
    FSub,
    FMul,
    FDiv,
    FFma,
    FMax,
    FMin,
    FNeg,
    FAbs,
    FSqrt,
    FRcp,
    FEx2,
    FCopysign,
    Bra(usize),
    BarSync,
    Ret,
}

#[derive(Clone, Debug, PartialEq)]
struct Inst {
    op: Op,
    guard: Option<(u32, bool)>,
    dst: Option<Reg>,
    src: [Src; 3],
    line: usize,
}

/// One parsed `.entry`.
#[derive(Clone, Debug)]
pub struct EntryCode {
    pub name: String,
    pub params: usize,
    code: Vec<Inst>,
    regs: [u32; 4],
    /// Bytes of shared memory per block.
    shared: u64,
}

/// A parsed module: its entries by name.
#[derive(Clone, Debug, Default)]
pub struct PtxModule {
    pub entries: BTreeMap<String, EntryCode>,
}

fn reg(s: &str, line: usize) -> Result<Reg, String> {
    let bad = || format!("line {line}: `{s}` is not a register");
    let (cls, n) = if let Some(n) = s.strip_prefix("%rd") {
        ('d', n)
    } else if let Some(n) = s.strip_prefix("%r") {
        ('r', n)
    } else if let Some(n) = s.strip_prefix("%p") {
        ('p', n)
    } else if let Some(n) = s.strip_prefix("%f") {
        ('f', n)
    } else {
        return Err(bad());
    };
    let n: u32 = n.parse().map_err(|_| bad())?;
    Ok(match cls {
        'd' => Reg::Rd(n),
        'r' => Reg::R(n),
        'p' => Reg::P(n),
        _ => Reg::F(n),
    })
}

fn src(s: &str, line: usize) -> Result<Src, String> {
    Ok(match s {
        "%ctaid.x" => Src::CtaId,
        "%ntid.x" => Src::NTid,
        "%tid.x" => Src::Tid,
        _ if s.starts_with('%') => Src::Reg(reg(s, line)?),
        _ if s.starts_with("0f") && s.len() == 10 => Src::F32(f32::from_bits(
            u32::from_str_radix(&s[2..], 16).map_err(|_| format!("line {line}: bad constant `{s}`"))?,
        )),
        _ => Src::Int(s.parse().map_err(|_| format!("line {line}: bad operand `{s}`"))?),
    })
}

impl PtxModule {
    /// Parses the PTX sovc writes; anything else is an error naming the line.
    pub fn parse(text: &str) -> Result<PtxModule, String> {
        let mut m = PtxModule::default();
        let lines: Vec<&str> = text.lines().collect();
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i].trim();
            if let Some(rest) = l.strip_prefix(".visible .entry ") {
                let name = rest.trim_end_matches('(').to_string();
                let mut params = Vec::new();
                i += 1;
                while i < lines.len() && lines[i].trim() != ")" {
                    let p = lines[i].trim().trim_end_matches(',');
                    let p = p.strip_prefix(".param .u64 ").ok_or_else(|| format!("line {}: parameter `{p}`", i + 1))?;
                    params.push(p.to_string());
                    i += 1;
                }
                i += 2; // ")" and "{"
                let start = i;
                while i < lines.len() && lines[i].trim() != "}" {
                    i += 1;
                }
                let e = parse_body(&name, &params, &lines[start..i], start + 1)?;
                m.entries.insert(name, e);
            } else if !(l.is_empty()
                || l.starts_with("//")
                || l.starts_with(".version")
                || l.starts_with(".target")
                || l.starts_with(".address_size"))
            {
                return Err(format!("line {}: `{l}` is outside what ptx-emu reads", i + 1));
            }
            i += 1;
        }
        Ok(m)
    }
}

fn parse_body(name: &str, params: &[String], lines: &[&str], first: usize) -> Result<EntryCode, String> {
    let mut labels: BTreeMap<String, usize> = BTreeMap::new();
    let mut pending: Vec<(usize, String)> = Vec::new();
    let mut code = Vec::new();
    let mut regs = [0u32; 4];
    let mut shared: BTreeMap<String, u64> = BTreeMap::new();
    let mut shared_bytes = 0u64;
    for (k, raw) in lines.iter().enumerate() {
        let line = first + k;
        let l = raw.trim();
        if l.is_empty() || l.starts_with("//") {
            continue;
        }
        if let Some(d) = l.strip_prefix(".reg ") {
            // `.reg .b64 %rd<22>;`
            let n: u32 = d
                .split('<')
                .nth(1)
                .and_then(|x| x.trim_end_matches(">;").parse().ok())
                .ok_or_else(|| format!("line {line}: register declaration `{l}`"))?;
            let slot = if d.contains("%rd") {
                2
            } else if d.contains("%r") {
                1
            } else if d.contains("%p") {
                0
            } else {
                3
            };
            regs[slot] = n;
            continue;
        }
        if let Some(d) = l.strip_prefix(".shared .align 4 .b8 ") {
            // `.shared .align 4 .b8 name[bytes];`
            let (n, bytes) = d
                .trim_end_matches("];")
                .split_once('[')
                .and_then(|(n, b)| Some((n.to_string(), b.parse::<u64>().ok()?)))
                .ok_or_else(|| format!("line {line}: shared declaration `{l}`"))?;
            shared.insert(n, shared_bytes);
            shared_bytes += bytes.div_ceil(4) * 4;
            continue;
        }
        if let Some(label) = l.strip_suffix(':') {
            labels.insert(label.to_string(), code.len());
            continue;
        }
        let l = l.strip_suffix(';').ok_or_else(|| format!("line {line}: `{l}` does not end in `;`"))?;
        let (guard, l) = match l.strip_prefix('@') {
            Some(rest) => {
                let (p, rest) =
                    rest.split_once(' ').ok_or_else(|| format!("line {line}: guard without instruction"))?;
                let (neg, p) = match p.strip_prefix('!') {
                    Some(p) => (true, p),
                    None => (false, p),
                };
                let Reg::P(n) = reg(p, line)? else {
                    return Err(format!("line {line}: guard `{p}` is not a predicate"));
                };
                (Some((n, neg)), rest.trim())
            }
            None => (None, l),
        };
        let (opcode, args) = l.split_once(' ').unwrap_or((l, ""));
        let args: Vec<&str> = args.split(',').map(|a| a.trim()).filter(|a| !a.is_empty()).collect();
        let mut inst = Inst { op: Op::Ret, guard, dst: None, src: [Src::Int(0); 3], line };
        let mut set = |dst: bool, ops: &[&str]| -> Result<(), String> {
            let mut it = ops.iter();
            if dst {
                inst.dst = Some(reg(it.next().ok_or_else(|| format!("line {line}: missing operands"))?, line)?);
            }
            for (j, a) in it.enumerate() {
                *inst.src.get_mut(j).ok_or_else(|| format!("line {line}: too many operands"))? = src(a, line)?;
            }
            Ok(())
        };
        let op = match opcode {
            "mov.u32" | "mov.s64" | "mov.f32" | "mov.u64" => Op::Mov,
            "mul.wide.u32" => Op::MulWideU32,
            "cvt.u64.u32" => Op::CvtU64U32,
            "add.s64" => Op::Add,
            "sub.s64" => Op::Sub,
            "mul.lo.s64" => Op::MulLo,
            "mad.lo.s64" => Op::MadLo,
            "div.u64" => Op::DivU,
            "rem.u64" => Op::RemU,
            "div.s64" => Op::DivS,
            "rem.s64" => Op::RemS,
            "setp.ge.u64" => Op::SetpGeU,
            "setp.ge.s64" => Op::SetpGeS,
            "setp.lt.s64" => Op::SetpLtS,
            "or.pred" => Op::OrPred,
            "cvta.to.global.u64" => Op::Cvta,
            // Set with their operands below.
            "ld.global.f32" | "st.global.f32" | "ld.param.u64" | "ld.shared.f32" | "st.shared.f32" => Op::Ret,
            "add.rn.f32" => Op::FAdd,
            "sub.rn.f32" => Op::FSub,
            "mul.rn.f32" => Op::FMul,
            "div.rn.f32" => Op::FDiv,
            "fma.rn.f32" => Op::FFma,
            "max.f32" => Op::FMax,
            "min.f32" => Op::FMin,
            "neg.f32" => Op::FNeg,
            "abs.f32" => Op::FAbs,
            "sqrt.rn.f32" => Op::FSqrt,
            "rcp.rn.f32" => Op::FRcp,
            "ex2.approx.f32" => Op::FEx2,
            "copysign.f32" => Op::FCopysign,
            "bra" | "bra.uni" => {
                pending.push((code.len(), args.first().copied().unwrap_or_default().to_string()));
                Op::Bra(0)
            }
            "bar.sync" => Op::BarSync,
            "ret" => Op::Ret,
            other => return Err(format!("line {line}: ptx-emu does not run `{other}`")),
        };
        inst.op = op;
        match opcode {
            "ld.param.u64" => {
                // `ld.param.u64 %rdN, [name_x];`
                let p = args.get(1).map(|a| a.trim_matches(['[', ']'])).unwrap_or_default();
                let idx = params
                    .iter()
                    .position(|x| x == p)
                    .ok_or_else(|| format!("line {line}: unknown parameter `{p}`"))?;
                inst.op = Op::LdParam(idx);
                set(true, &args[..1])?;
            }
            "mov.u64" => {
                // The address of a shared array.
                let name = args.get(1).copied().unwrap_or_default();
                let off = *shared.get(name).ok_or_else(|| format!("line {line}: `{name}` is not a shared array"))?;
                inst.dst = Some(reg(args.first().copied().unwrap_or_default(), line)?);
                inst.src[0] = Src::Shared(off);
            }
            "ld.shared.f32" => {
                inst.op = Op::LdShared;
                let a = args.get(1).map(|a| a.trim_matches(['[', ']'])).unwrap_or_default();
                set(true, &[args[0], a])?;
            }
            "st.shared.f32" => {
                inst.op = Op::StShared;
                let a = args.first().map(|a| a.trim_matches(['[', ']'])).unwrap_or_default();
                set(false, &[a, args.get(1).copied().unwrap_or_default()])?;
            }
            "ld.global.f32" => {
                inst.op = Op::LdGlobal;
                let a = args.get(1).map(|a| a.trim_matches(['[', ']'])).unwrap_or_default();
                set(true, &[args[0], a])?;
            }
            "st.global.f32" => {
                inst.op = Op::StGlobal;
                let a = args.first().map(|a| a.trim_matches(['[', ']'])).unwrap_or_default();
                set(false, &[a, args.get(1).copied().unwrap_or_default()])?;
            }
            "bra" | "bra.uni" | "bar.sync" | "ret" => {}
            _ => set(true, &args)?,
        }
        code.push(inst);
    }
    for (at, label) in pending {
        let target = *labels.get(&label).ok_or_else(|| format!("entry `{name}`: branch to unknown label `{label}`"))?;
        code[at].op = Op::Bra(target);
    }
    Ok(EntryCode { name: name.to_string(), params: params.len(), code, regs, shared: shared_bytes })
}

/// Global memory: buffer `i` lives at address `(i + 1) << 40`.
const BUF_SHIFT: u32 = 40;

/// A block's shared memory, with who last wrote and read each word and in which barrier phase.
struct Shared {
    data: Vec<f32>,
    /// Per word: (phase, thread) of the last write and of the last read (`u64::MAX` thread: several).
    wrote: Vec<(u64, u64)>,
    read: Vec<(u64, u64)>,
    phase: u64,
}

struct Thread {
    p: Vec<bool>,
    r: Vec<u32>,
    rd: Vec<u64>,
    f: Vec<f32>,
    pc: usize,
    done: bool,
}

impl EntryCode {
    /// Runs the entry on `threads` threads in blocks of `block` over `bufs` (parameter `i` points at
    /// buffer `i`; the last parameter is the thread count). Returns the instructions executed.
    pub fn run(&self, bufs: &mut [Vec<f32>], threads: u64, block: u64) -> Result<u64, String> {
        if self.params != bufs.len() + 1 {
            return Err(format!(
                "entry `{}` takes {} parameters, given {} buffers",
                self.name,
                self.params,
                bufs.len()
            ));
        }
        let params: Vec<u64> = (0..bufs.len() as u64).map(|i| (i + 1) << BUF_SHIFT).chain([threads]).collect();
        let blocks = threads.div_ceil(block);
        let mut executed = 0u64;
        let fresh = || Thread {
            p: vec![false; self.regs[0] as usize],
            r: vec![0; self.regs[1] as usize],
            rd: vec![0; self.regs[2] as usize],
            f: vec![0.0; self.regs[3] as usize],
            pc: 0,
            done: false,
        };
        let mut ts: Vec<Thread> = (0..block).map(|_| fresh()).collect();
        let words = (self.shared / 4) as usize;
        let mut sh = Shared { data: Vec::new(), wrote: Vec::new(), read: Vec::new(), phase: 0 };
        for b in 0..blocks {
            for th in ts.iter_mut() {
                *th = fresh();
            }
            sh.data = vec![0.0; words];
            sh.wrote = vec![(u64::MAX, 0); words];
            sh.read = vec![(u64::MAX, 0); words];
            sh.phase += 1;
            // Phases between barriers: every thread runs to the next `bar.sync` (or its end).
            loop {
                let mut at_barrier = 0;
                for (t, th) in ts.iter_mut().enumerate() {
                    if th.done {
                        continue;
                    }
                    executed += self.step(th, bufs, &mut sh, &params, (b, block, t as u64))?;
                    if !th.done {
                        at_barrier += 1;
                    }
                }
                if at_barrier == 0 {
                    break;
                }
                sh.phase += 1;
                let live = ts.iter().filter(|t| !t.done).count();
                if live != at_barrier {
                    return Err(format!("entry `{}`: threads of block {b} disagree on a barrier", self.name));
                }
            }
        }
        Ok(executed)
    }

    /// Runs thread `th` until `ret` or past a `bar.sync`; the instructions executed.
    fn step(
        &self,
        th: &mut Thread,
        bufs: &mut [Vec<f32>],
        sh: &mut Shared,
        params: &[u64],
        (b, nb, t): (u64, u64, u64),
    ) -> Result<u64, String> {
        let mut n = 0u64;
        loop {
            let inst = self.code.get(th.pc).ok_or_else(|| format!("entry `{}` runs past its end", self.name))?;
            n += 1;
            if n > 1 << 32 {
                return Err(format!("entry `{}`: a thread ran more than 2^32 instructions", self.name));
            }
            th.pc += 1;
            if let Some((p, neg)) = inst.guard {
                if th.p[p as usize] == neg {
                    continue;
                }
            }
            let err = |m: &str| format!("entry `{}` line {}: {m}", self.name, inst.line);
            let int = |s: Src, th: &Thread| -> u64 {
                match s {
                    Src::Reg(Reg::Rd(i)) => th.rd[i as usize],
                    Src::Reg(Reg::R(i)) => th.r[i as usize] as u64,
                    Src::Reg(Reg::P(i)) => th.p[i as usize] as u64,
                    Src::Reg(Reg::F(i)) => th.f[i as usize].to_bits() as u64,
                    Src::Int(v) => v as u64,
                    Src::F32(v) => v.to_bits() as u64,
                    Src::CtaId => b,
                    Src::NTid => nb,
                    Src::Tid => t,
                    Src::Shared(off) => off,
                }
            };
            let fl = |s: Src, th: &Thread| -> f32 {
                match s {
                    Src::Reg(Reg::F(i)) => th.f[i as usize],
                    Src::F32(v) => v,
                    _ => f32::NAN,
                }
            };
            let [a, b2, c] = inst.src;
            let setf = |th: &mut Thread, v: f32| {
                if let Some(Reg::F(i)) = inst.dst {
                    th.f[i as usize] = v;
                }
            };
            let seti = |th: &mut Thread, v: u64| match inst.dst {
                Some(Reg::Rd(i)) => th.rd[i as usize] = v,
                Some(Reg::R(i)) => th.r[i as usize] = v as u32,
                Some(Reg::P(i)) => th.p[i as usize] = v != 0,
                Some(Reg::F(i)) => th.f[i as usize] = f32::from_bits(v as u32),
                None => {}
            };
            let addr = |v: u64, bufs: &[Vec<f32>]| -> Result<(usize, usize), String> {
                let buf = (v >> BUF_SHIFT) as usize;
                let off = v & ((1 << BUF_SHIFT) - 1);
                if buf == 0 || buf > bufs.len() || !off.is_multiple_of(4) || (off / 4) as usize >= bufs[buf - 1].len() {
                    return Err(err(&format!("global access at {v:#x} is outside every buffer")));
                }
                Ok((buf - 1, (off / 4) as usize))
            };
            match inst.op {
                Op::Mov => match inst.dst {
                    Some(Reg::F(_)) => setf(th, fl(a, th)),
                    _ => seti(th, int(a, th)),
                },
                Op::MulWideU32 => seti(th, (int(a, th) as u32 as u64) * (int(b2, th) as u32 as u64)),
                Op::CvtU64U32 => seti(th, int(a, th) as u32 as u64),
                Op::Add | Op::Cvta => {
                    let v = if inst.op == Op::Cvta { int(a, th) } else { int(a, th).wrapping_add(int(b2, th)) };
                    seti(th, v)
                }
                Op::Sub => seti(th, int(a, th).wrapping_sub(int(b2, th))),
                Op::MulLo => seti(th, int(a, th).wrapping_mul(int(b2, th))),
                Op::MadLo => seti(th, int(a, th).wrapping_mul(int(b2, th)).wrapping_add(int(c, th))),
                Op::DivU | Op::RemU | Op::DivS | Op::RemS => {
                    let (x, y) = (int(a, th), int(b2, th));
                    if y == 0 {
                        return Err(err("division by zero"));
                    }
                    seti(
                        th,
                        match inst.op {
                            Op::DivU => x / y,
                            Op::RemU => x % y,
                            Op::DivS => (x as i64).wrapping_div(y as i64) as u64,
                            _ => (x as i64).wrapping_rem(y as i64) as u64,
                        },
                    )
                }
                Op::SetpGeU => seti(th, (int(a, th) >= int(b2, th)) as u64),
                Op::SetpGeS => seti(th, ((int(a, th) as i64) >= (int(b2, th) as i64)) as u64),
                Op::SetpLtS => seti(th, ((int(a, th) as i64) < (int(b2, th) as i64)) as u64),
                Op::OrPred => seti(th, (int(a, th) | int(b2, th)) & 1),
                Op::LdParam(i) => seti(th, params[i]),
                Op::LdGlobal => {
                    let (bi, e) = addr(int(a, th), bufs)?;
                    setf(th, bufs[bi][e]);
                }
                Op::StGlobal => {
                    let (bi, e) = addr(int(a, th), bufs)?;
                    bufs[bi][e] = fl(b2, th);
                }
                Op::LdShared | Op::StShared => {
                    let off = int(a, th);
                    let w = (off / 4) as usize;
                    if !off.is_multiple_of(4) || w >= sh.data.len() {
                        return Err(err(&format!(
                            "shared access at byte {off} is outside the block's {} bytes",
                            self.shared
                        )));
                    }
                    let (ph, me) = (sh.phase, t);
                    let (wp, wt) = sh.wrote[w];
                    let load = inst.op == Op::LdShared;
                    if wp == ph && wt != me {
                        return Err(err(&format!(
                            "block {b}: thread {me} {} shared byte {off}, which thread {wt} wrote since the last barrier (missing bar.sync)",
                            if load { "reads" } else { "writes" }
                        )));
                    }
                    let (rp, rt) = sh.read[w];
                    if load {
                        sh.read[w] = (ph, if rp == ph && rt != me { u64::MAX } else { me });
                        setf(th, sh.data[w]);
                    } else {
                        if rp == ph && rt != me {
                            let who = if rt == u64::MAX { "other threads".to_string() } else { format!("thread {rt}") };
                            return Err(err(&format!(
                                "block {b}: thread {me} writes shared byte {off}, which {who} read since the last barrier (missing bar.sync)"
                            )));
                        }
                        sh.wrote[w] = (ph, me);
                        sh.data[w] = fl(b2, th);
                    }
                }
                Op::FAdd => setf(th, fl(a, th) + fl(b2, th)),
                Op::FSub => setf(th, fl(a, th) - fl(b2, th)),
                Op::FMul => setf(th, fl(a, th) * fl(b2, th)),
                Op::FDiv => setf(th, fl(a, th) / fl(b2, th)),
                Op::FFma => setf(th, fl(a, th).mul_add(fl(b2, th), fl(c, th))),
                Op::FMax => setf(th, fl(a, th).max(fl(b2, th))),
                Op::FMin => setf(th, fl(a, th).min(fl(b2, th))),
                Op::FNeg => setf(th, -fl(a, th)),
                Op::FAbs => setf(th, fl(a, th).abs()),
                Op::FSqrt => setf(th, fl(a, th).sqrt()),
                Op::FRcp => setf(th, 1.0 / fl(a, th)),
                Op::FEx2 => setf(th, fl(a, th).exp2()),
                Op::FCopysign => setf(th, fl(b2, th).copysign(fl(a, th))),
                Op::Bra(to) => th.pc = to,
                Op::BarSync => return Ok(n),
                Op::Ret => {
                    th.done = true;
                    return Ok(n);
                }
            }
        }
    }
}
