//! A PTX emulator for the subset sovc writes (`--device ptx-emu`): it parses the module text, rejects
//! any instruction outside that subset with its line, and runs an entry over a 1-D grid with block and
//! thread semantics: `%ctaid.x`, `%ntid.x`, `%tid.x`, predicated branches, `bar.sync` (the threads of a
//! block run in phases between barriers), 64-bit integer and f32 arithmetic, global loads and stores
//! checked against the bounds of the buffer each pointer came from, and per-block shared memory in which
//! a race is an error: a thread reading or writing a word that another thread of its block wrote (or, for
//! a write, read) since the last barrier is a missing `bar.sync`. f32 operations round as PTX defines
//! them (`.rn`: IEEE round to nearest); `ex2.approx` is computed exactly (the hardware's is within 2 ulp),
//! `rcp.rn`, `sqrt.rn` and `div.rn` are IEEE.
//!
//! Warps: the 32 threads `32w..32w+32` of a block form warp `w`. `mma.sync.aligned.m16n8k16.row.col`
//! (f32 accumulators, bf16 or f16 operands) is collective: each thread of the warp runs up to it, and
//! when all 32 wait at the same instruction the emulator assembles A (16x16), B (16x8) and C (16x8) from
//! the threads' registers by the fragment layouts of the PTX ISA (section "Matrix Fragments for
//! mma.m16n8k16 with floating point type"), computes every `D[r][c] = C[r][c] + Σ A[r][k]·B[k][c]` exactly
//! and rounds it once to f32 (the tensor core's own accumulation order and rounding are not specified;
//! products of bf16 or f16 values are exact in f32 on both). A warp whose threads are not all at the
//! same `mma.sync` (one exited, one waits at a barrier, one at another instruction) is an error, as the
//! `.aligned` qualifier requires.

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
    SetpEqF,
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
    /// `cvt.rn.{bf16x2,f16x2}.f32 d, a, b`: `a` rounded into the high half of `d`, `b` into the low.
    CvtPack(Half),
    /// A warp's `mma.sync` (operands in [`EntryCode::mma`]).
    Mma(Half, usize),
    Bra(usize),
    BarSync,
    Ret,
}

/// The 16-bit float formats of packed conversions and `mma` operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Half {
    Bf16,
    F16,
}

impl Half {
    /// `x` rounded to nearest even, as its 16 bits.
    fn round(self, x: f32) -> u16 {
        match self {
            Half::Bf16 => f32_to_bf16(x),
            Half::F16 => f32_to_f16(x),
        }
    }
    fn to_f32(self, h: u16) -> f32 {
        match self {
            Half::Bf16 => f32::from_bits((h as u32) << 16),
            Half::F16 => f16_to_f32(h),
        }
    }
}

/// bf16 bits of `x`, rounded to nearest even (NaN stays NaN), as `cvt.rn.bf16x2.f32` rounds.
pub fn f32_to_bf16(x: f32) -> u16 {
    half::bf16::from_f32(x).to_bits()
}

/// IEEE binary16 bits of `x`, rounded to nearest even, with subnormals, and infinity from 65520 up.
pub fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// f32 value of IEEE binary16 bits.
pub fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

#[derive(Clone, Debug, PartialEq)]
struct Inst {
    op: Op,
    guard: Option<(u32, bool)>,
    dst: Option<Reg>,
    src: [Src; 3],
    /// Bytes added to a load's or store's address.
    off: i64,
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
    /// Registers of each `mma.sync`: D (4 f32), A (4 packed pairs), B (2), C (4 f32).
    mma: Vec<[Reg; 14]>,
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
    let mut mma = Vec::new();
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
        let mut inst = Inst { op: Op::Ret, guard, dst: None, src: [Src::Int(0); 3], off: 0, line };
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
            "setp.eq.f32" => Op::SetpEqF,
            "or.pred" => Op::OrPred,
            "cvta.to.global.u64" => Op::Cvta,
            // Set with their operands below.
            "ld.global.f32" | "st.global.f32" | "ld.param.u64" | "ld.shared.f32" | "st.shared.f32"
            | "ld.shared.b32" | "st.shared.b32" => Op::Ret,
            "cvt.rn.bf16x2.f32" => Op::CvtPack(Half::Bf16),
            "cvt.rn.f16x2.f32" => Op::CvtPack(Half::F16),
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" => Op::Mma(Half::Bf16, 0),
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" => Op::Mma(Half::F16, 0),
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
            _ if matches!(op, Op::Mma(..)) => {
                // `{d0..d3}, {a0..a3}, {b0, b1}, {c0..c3}`.
                let all = l.split_once(' ').map(|(_, r)| r).unwrap_or_default();
                let regs: Vec<Reg> = all
                    .split(',')
                    .map(|a| reg(a.trim().trim_matches(['{', '}']).trim(), line))
                    .collect::<Result<_, _>>()?;
                let ok = regs.len() == 14
                    && regs
                        .iter()
                        .enumerate()
                        .all(|(k, r)| matches!((k, r), (0..4 | 10..14, Reg::F(_)) | (4..10, Reg::R(_))));
                let regs: [Reg; 14] = regs.try_into().ok().filter(|_| ok).ok_or_else(|| {
                    format!("line {line}: `mma.sync` takes {{4 f32}}, {{4 b32}}, {{2 b32}}, {{4 f32}}")
                })?;
                if let Op::Mma(h, _) = op {
                    inst.op = Op::Mma(h, mma.len());
                }
                mma.push(regs);
            }
            "ld.shared.f32" | "ld.shared.b32" | "st.shared.f32" | "st.shared.b32" | "ld.global.f32"
            | "st.global.f32" => {
                let load = opcode.starts_with("ld.");
                inst.op = match (load, opcode.contains(".shared.")) {
                    (true, true) => Op::LdShared,
                    (false, true) => Op::StShared,
                    (true, false) => Op::LdGlobal,
                    (false, false) => Op::StGlobal,
                };
                // `[%rdN]` or `[%rdN+BYTES]`.
                let (a, other) = if load { (args.get(1), args.first()) } else { (args.first(), args.get(1)) };
                let a = a.map(|a| a.trim_matches(['[', ']'])).unwrap_or_default();
                let (a, off) = match a.split_once('+') {
                    Some((r, o)) => {
                        (r, o.parse::<i64>().map_err(|_| format!("line {line}: bad address offset in `{a}`"))?)
                    }
                    None => (a, 0),
                };
                let other = other.copied().unwrap_or_default();
                if load {
                    set(true, &[other, a])?;
                } else {
                    set(false, &[a, other])?;
                }
                inst.off = off;
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
    Ok(EntryCode { name: name.to_string(), params: params.len(), code, regs, shared: shared_bytes, mma })
}

/// Global memory: buffer `i` lives at address `(i + 1) << 40`.
const BUF_SHIFT: u32 = 40;

/// A block's shared memory, with who last wrote and read each word and in which barrier phase.
struct Shared {
    /// The words' bits.
    data: Vec<u32>,
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
    wait: Wait,
}

/// Where a thread stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Runnable.
    No,
    /// At a `bar.sync` (the instruction after it is next).
    Barrier,
    /// At the `mma.sync` at this index, for the rest of its warp.
    Mma(usize),
    /// Returned.
    Done,
}

/// Threads per warp.
const WARP: usize = 32;

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
            wait: Wait::No,
        };
        let mut ts: Vec<Thread> = (0..block).map(|_| fresh()).collect();
        let words = (self.shared / 4) as usize;
        let mut sh = Shared { data: Vec::new(), wrote: Vec::new(), read: Vec::new(), phase: 0 };
        for b in 0..blocks {
            for th in ts.iter_mut() {
                *th = fresh();
            }
            sh.data = vec![0; words];
            sh.wrote = vec![(u64::MAX, 0); words];
            sh.read = vec![(u64::MAX, 0); words];
            sh.phase += 1;
            // Phases between barriers: every warp runs to the next `bar.sync` (or its end), its threads
            // meeting at each `mma.sync` on the way.
            loop {
                for (w, warp) in ts.chunks_mut(WARP).enumerate() {
                    loop {
                        for (l, th) in warp.iter_mut().enumerate() {
                            if th.wait == Wait::No {
                                executed += self.step(th, bufs, &mut sh, &params, (b, block, (w * WARP + l) as u64))?;
                            }
                        }
                        let Some(at) = warp.iter().find_map(|t| match t.wait {
                            Wait::Mma(at) => Some(at),
                            _ => None,
                        }) else {
                            break;
                        };
                        if let Some((l, t)) = warp.iter().enumerate().find(|(_, t)| t.wait != Wait::Mma(at)) {
                            let line = self.code[at].line;
                            return Err(format!(
                                "entry `{}` line {line}: block {b} warp {w}: thread {} is not at this mma.sync ({}); every thread of a warp must execute it together",
                                self.name,
                                w * WARP + l,
                                match t.wait {
                                    Wait::Done => "it has returned".to_string(),
                                    Wait::Barrier => "it waits at a barrier".to_string(),
                                    Wait::Mma(o) => format!("it waits at the one on line {}", self.code[o].line),
                                    Wait::No => "it is running".to_string(),
                                }
                            ));
                        }
                        self.mma(warp, at);
                        executed += 1;
                        for t in warp.iter_mut() {
                            t.wait = Wait::No;
                        }
                    }
                }
                let at_barrier = ts.iter().filter(|t| t.wait == Wait::Barrier).count();
                if at_barrier == 0 {
                    break;
                }
                sh.phase += 1;
                let live = ts.iter().filter(|t| t.wait != Wait::Done).count();
                if live != at_barrier {
                    return Err(format!("entry `{}`: threads of block {b} disagree on a barrier", self.name));
                }
                for t in ts.iter_mut().filter(|t| t.wait == Wait::Barrier) {
                    t.wait = Wait::No;
                }
            }
        }
        Ok(executed)
    }

    /// The `mma.sync` at `at`, for the 32 threads of `warp` (all waiting at it): `D = A·B + C`.
    fn mma(&self, warp: &mut [Thread], at: usize) {
        let Op::Mma(half, k) = self.code[at].op else { return };
        let regs = &self.mma[k];
        let f = |th: &Thread, r: Reg| match r {
            Reg::F(i) => th.f[i as usize],
            _ => f32::NAN,
        };
        let pair = |th: &Thread, r: Reg, hi: bool| match r {
            Reg::R(i) => half.to_f32((th.r[i as usize] >> if hi { 16 } else { 0 }) as u16),
            _ => f32::NAN,
        };
        let (mut a, mut bm, mut c) = ([[0f64; 16]; 16], [[0f64; 8]; 16], [[0f64; 8]; 16]);
        for (lane, th) in warp.iter().enumerate() {
            let (g, t) = (lane / 4, lane % 4);
            for i in 0..8 {
                // a_i: register i / 2, half i % 2; rows g (i = 0, 1, 4, 5) or g + 8; columns 2t + (i & 1),
                // plus 8 from a_4 on.
                let row = if i < 2 || (4..6).contains(&i) { g } else { g + 8 };
                let col = 2 * t + (i & 1) + if i >= 4 { 8 } else { 0 };
                a[row][col] = pair(th, regs[4 + i / 2], i % 2 == 1) as f64;
            }
            for i in 0..4 {
                // b_i: rows 2t + (i & 1), plus 8 from b_2 on; column g.
                let row = 2 * t + (i & 1) + if i >= 2 { 8 } else { 0 };
                bm[row][g] = pair(th, regs[8 + i / 2], i % 2 == 1) as f64;
                // c_i: rows g (c_0, c_1) or g + 8; columns 2t + (i & 1).
                c[g + if i >= 2 { 8 } else { 0 }][2 * t + (i & 1)] = f(th, regs[10 + i]) as f64;
            }
        }
        for (lane, th) in warp.iter_mut().enumerate() {
            let (g, t) = (lane / 4, lane % 4);
            for i in 0..4 {
                let (row, col) = (g + if i >= 2 { 8 } else { 0 }, 2 * t + (i & 1));
                let d = c[row][col] + (0..16).map(|k| a[row][k] * bm[k][col]).sum::<f64>();
                if let Reg::F(r) = regs[i] {
                    th.f[r as usize] = d as f32;
                }
            }
        }
    }

    /// Runs thread `th` until `ret`, past a `bar.sync` or to an `mma.sync` (which its warp runs
    /// together); the instructions executed.
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
                Op::SetpEqF => seti(th, (fl(a, th) == fl(b2, th)) as u64),
                Op::OrPred => seti(th, (int(a, th) | int(b2, th)) & 1),
                Op::LdParam(i) => seti(th, params[i]),
                Op::LdGlobal => {
                    let (bi, e) = addr(int(a, th).wrapping_add(inst.off as u64), bufs)?;
                    setf(th, bufs[bi][e]);
                }
                Op::StGlobal => {
                    let (bi, e) = addr(int(a, th).wrapping_add(inst.off as u64), bufs)?;
                    bufs[bi][e] = fl(b2, th);
                }
                Op::LdShared | Op::StShared => {
                    let off = int(a, th).wrapping_add(inst.off as u64);
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
                    let is_f32 = matches!(inst.dst, Some(Reg::F(_))) || matches!(b2, Src::Reg(Reg::F(_)) | Src::F32(_));
                    if wp == ph && wt != me {
                        return Err(err(&format!(
                            "block {b}: thread {me} {} shared byte {off}, which thread {wt} wrote since the last barrier (missing bar.sync)",
                            if load { "reads" } else { "writes" }
                        )));
                    }
                    let (rp, rt) = sh.read[w];
                    if load {
                        sh.read[w] = (ph, if rp == ph && rt != me { u64::MAX } else { me });
                        if is_f32 {
                            setf(th, f32::from_bits(sh.data[w]));
                        } else {
                            seti(th, sh.data[w] as u64);
                        }
                    } else {
                        if rp == ph && rt != me {
                            let who = if rt == u64::MAX { "other threads".to_string() } else { format!("thread {rt}") };
                            return Err(err(&format!(
                                "block {b}: thread {me} writes shared byte {off}, which {who} read since the last barrier (missing bar.sync)"
                            )));
                        }
                        sh.wrote[w] = (ph, me);
                        sh.data[w] = if is_f32 { fl(b2, th).to_bits() } else { int(b2, th) as u32 };
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
                Op::CvtPack(h) => {
                    let v = ((h.round(fl(a, th)) as u64) << 16) | h.round(fl(b2, th)) as u64;
                    seti(th, v)
                }
                Op::Mma(..) => {
                    // The warp runs it once all its threads are here; the count is the warp's one.
                    n -= 1;
                    th.wait = Wait::Mma(th.pc - 1);
                    return Ok(n);
                }
                Op::BarSync => {
                    th.wait = Wait::Barrier;
                    return Ok(n);
                }
                Op::Ret => {
                    th.wait = Wait::Done;
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversions_round_to_nearest_even() {
        for (x, want) in [
            (1.0f32, 0x3C00u16),
            (-2.0, 0xC000),
            (65504.0, 0x7BFF),
            (65519.0, 0x7BFF),
            (65520.0, 0x7C00),
            (f32::INFINITY, 0x7C00),
            ((2.0f32).powi(-14), 0x0400),
            ((2.0f32).powi(-24), 0x0001),
            ((2.0f32).powi(-25), 0x0000),
            (1.5 * (2.0f32).powi(-25), 0x0001),
            (1.0 + (2.0f32).powi(-11), 0x3C00),
            (1.0 + 3.0 * (2.0f32).powi(-11), 0x3C02),
            (0.1, 0x2E66),
        ] {
            assert_eq!(f32_to_f16(x), want, "{x:e}");
        }
        assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
        for h in (0..0x7C00u16).step_by(7) {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#x} round-trips");
        }
        assert_eq!(f32_to_bf16(1.0 + (2.0f32).powi(-8)), 0x3F80, "a tie goes to even");
        assert_eq!(f32_to_bf16(1.0 + 3.0 * (2.0f32).powi(-8)), 0x3F82);
        assert_eq!(f32_to_bf16(-0.0), 0x8000);
        assert!(f32::from_bits((f32_to_bf16(f32::NAN) as u32) << 16).is_nan());
    }
}
