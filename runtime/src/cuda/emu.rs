//! A PTX emulator for the subset sovc writes (`--device ptx-emu`): it parses the module text, rejects
//! any instruction outside that subset with its line, and runs an entry over a 1-D grid with block and
//! thread semantics: `%ctaid.x`, `%ntid.x`, `%tid.x`, predicated branches, `bar.sync` (the threads of a
//! block run in phases between barriers), 64-bit integer and f32 arithmetic, and global loads and stores
//! checked against the bounds of the buffer each pointer came from. f32 operations round as PTX defines
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
    for (k, raw) in lines.iter().enumerate() {
        let line = first + k;
        let l = raw.trim();
        if l.is_empty() {
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
            "mov.u32" | "mov.s64" | "mov.f32" => Op::Mov,
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
            "ld.global.f32" | "st.global.f32" | "ld.param.u64" => Op::Ret,
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
    Ok(EntryCode { name: name.to_string(), params: params.len(), code, regs: [regs[0], regs[1], regs[2], regs[3]] })
}

/// Global memory: buffer `i` lives at address `(i + 1) << 40`.
const BUF_SHIFT: u32 = 40;

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
        for b in 0..blocks {
            for th in ts.iter_mut() {
                *th = fresh();
            }
            // Phases between barriers: every thread runs to the next `bar.sync` (or its end).
            loop {
                let mut at_barrier = 0;
                for (t, th) in ts.iter_mut().enumerate() {
                    if th.done {
                        continue;
                    }
                    executed += self.step(th, bufs, &params, (b, block, t as u64))?;
                    if !th.done {
                        at_barrier += 1;
                    }
                }
                if at_barrier == 0 {
                    break;
                }
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
