//! Kernel IR loop kernels to Cranelift IR to machine code.

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, I32X4, I64};
use cranelift_codegen::ir::{
    AbiParam, Endianness, Function, InstBuilder, MemFlagsData, Signature, UserFuncName, Value,
};
use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use sovc_ir::kernel::{Expr, Index, Kernel, Reduce, Space, Stmt, Var, VectorLength};
use sovc_ir::{BinaryOp, UnaryOp};
use std::collections::BTreeMap;
use std::str::FromStr;

/// A code generator for one host architecture and feature level.
pub struct CpuTarget {
    isa: OwnedTargetIsa,
    /// `x86_64` or `aarch64`.
    pub arch: String,
    /// Host features the code needs (checked by the runtime before it runs anything).
    pub features: Vec<String>,
}

impl CpuTarget {
    /// Code for `arch` (`x86_64`: the x86-64-v3 level, SSE4.2 + AVX2 + FMA; `aarch64`: the base ISA with NEON).
    pub fn new(arch: &str) -> Result<CpuTarget, String> {
        let (triple, features): (&str, &[&str]) = match arch {
            "x86_64" => ("x86_64-unknown-linux-gnu", &["sse4.2", "popcnt", "avx", "avx2", "fma"]),
            "aarch64" => ("aarch64-unknown-linux-gnu", &["neon"]),
            _ => return Err(format!("the cpu target generates code for x86_64 and aarch64, not `{arch}`")),
        };
        let triple = target_lexicon::Triple::from_str(triple).map_err(|e| e.to_string())?;
        let mut flags = settings::builder();
        let set =
            |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| format!("cranelift flag {k}: {e}"));
        set(&mut flags, "opt_level", "speed")?;
        set(&mut flags, "is_pic", "true")?;
        let mut ib = isa::lookup(triple).map_err(|e| format!("no Cranelift backend for {arch}: {e}"))?;
        if arch == "x86_64" {
            for f in ["has_sse3", "has_ssse3", "has_sse41", "has_sse42", "has_popcnt", "has_avx", "has_avx2", "has_fma"]
            {
                ib.enable(f).map_err(|e| format!("cranelift flag {f}: {e}"))?;
            }
        }
        let isa = ib.finish(settings::Flags::new(flags)).map_err(|e| e.to_string())?;
        Ok(CpuTarget { isa, arch: arch.to_string(), features: features.iter().map(|s| s.to_string()).collect() })
    }

    /// Code for the machine sovc runs on.
    pub fn host() -> Result<CpuTarget, String> {
        CpuTarget::new(std::env::consts::ARCH)
    }
}

/// One compiled kernel inside [`CpuCode::code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeFunction {
    pub name: String,
    pub offset: u64,
    pub len: u64,
    /// The function's machine instructions as text (Cranelift's disassembly of what it emitted).
    pub asm: String,
}

/// Machine code of a set of kernels, concatenated (each function 64-byte aligned, no relocations).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuCode {
    pub code: Vec<u8>,
    pub functions: Vec<CodeFunction>,
}

/// Compiles loop kernels (verified beforehand) to one code blob.
pub fn compile(t: &CpuTarget, kernels: &[&Kernel]) -> Result<CpuCode, String> {
    let mut out = CpuCode { code: Vec::new(), functions: Vec::new() };
    let mut fctx = FunctionBuilderContext::new();
    for k in kernels {
        let (bytes, asm) = compile_kernel(t, k, &mut fctx)?;
        out.code.resize(out.code.len().div_ceil(64) * 64, 0);
        out.functions.push(CodeFunction {
            name: k.name.clone(),
            offset: out.code.len() as u64,
            len: bytes.len() as u64,
            asm,
        });
        out.code.extend_from_slice(&bytes);
    }
    Ok(out)
}

fn compile_kernel(t: &CpuTarget, k: &Kernel, fctx: &mut FunctionBuilderContext) -> Result<(Vec<u8>, String), String> {
    if k.launch.threads_per_group != 1 || k.launch.tile.is_some() || k.launch.vector != VectorLength::Native {
        return Err(format!("kernel `{}`: the cpu target runs one thread per range with native vectors", k.name));
    }
    if k.bufs.iter().any(|b| b.space != Space::Global) {
        return Err(format!("kernel `{}`: the cpu target has no shared buffers", k.name));
    }
    let mut sig = Signature::new(t.isa.default_call_conv());
    for _ in 0..3 {
        sig.params.push(AbiParam::new(I64));
    }
    let mut func = Function::with_name_signature(UserFuncName::user(0, 0), sig);
    {
        let mut b = FunctionBuilder::new(&mut func, fctx);
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let params = b.block_params(entry).to_vec();
        let flags = Flags {
            trusted: MemFlagsData::trusted(),
            load: MemFlagsData::new().with_notrap().with_readonly(),
            store: MemFlagsData::new().with_notrap(),
            lanes: MemFlagsData::new().with_endianness(Endianness::Little),
        };
        let bases = (0..k.bufs.len()).map(|i| b.ins().load(I64, flags.trusted, params[0], (8 * i) as i32)).collect();
        let lens = k.bufs.iter().map(|b| b.len).collect();
        let read_only = k.bufs.iter().map(|b| b.access == sovc_ir::kernel::Access::Read).collect();
        let mut g =
            Gen { b, flags, bases, lens, read_only, vars: BTreeMap::new(), lets: BTreeMap::new(), vec_var: None };
        let v0 = g.var(0);
        g.b.def_var(v0, params[1]);
        g.loop_from_current(0, params[2], &k.body);
        g.b.ins().return_(&[]);
        g.b.seal_all_blocks();
        g.b.finalize(t.isa.frontend_config());
    }
    let mut ctx = Context::for_function(func);
    ctx.set_disasm(true);
    let code = ctx
        .compile(&*t.isa, &mut ControlPlane::default())
        .map_err(|e| format!("kernel `{}`: Cranelift: {:?}", k.name, e.inner))?;
    if !code.buffer.relocs().is_empty() {
        return Err(format!("kernel `{}`: generated code has relocations", k.name));
    }
    Ok((code.code_buffer().to_vec(), code.vcode.clone().unwrap_or_default()))
}

/// The memory flags of the generated accesses.
#[derive(Clone, Copy)]
struct Flags {
    trusted: MemFlagsData,
    load: MemFlagsData,
    store: MemFlagsData,
    /// Lane order for bitcasts between vector types.
    lanes: MemFlagsData,
}

struct Gen<'a> {
    b: FunctionBuilder<'a>,
    flags: Flags,
    bases: Vec<Value>,
    /// Element count of each buffer.
    lens: Vec<u64>,
    /// Whether each buffer is only read.
    read_only: Vec<bool>,
    vars: BTreeMap<Var, Variable>,
    lets: BTreeMap<u32, Value>,
    /// The variable whose four consecutive values the lanes hold, in vector code.
    vec_var: Option<Var>,
}

/// Whether every access in `e` has coefficient 0 or 1 for `v` (so lanes along `v` are a plain vector load).
fn expr_vectorizes(e: &Expr, v: Var) -> bool {
    let mut ok = true;
    e.visit(&mut |x| match x {
        Expr::Load { index, .. } => ok &= matches!(index.coeff(v), 0 | 1),
        // Lanes would need masks: guarded expressions run one element at a time.
        Expr::Guard { .. } => ok = false,
        _ => {}
    });
    ok
}

/// Whether a loop over `v` with this body can run four iterations at a time.
fn body_vectorizes(body: &[Stmt], v: Var) -> bool {
    body.iter().all(|s| match s {
        Stmt::For { .. } => false,
        Stmt::Let { value, .. } => expr_vectorizes(value, v),
        Stmt::Store { index, value, .. } => index.coeff(v) == 1 && expr_vectorizes(value, v),
        Stmt::Barrier => false,
    })
}

impl Gen<'_> {
    fn var(&mut self, v: Var) -> Variable {
        if let Some(&x) = self.vars.get(&v) {
            return x;
        }
        let x = self.b.declare_var(I64);
        self.vars.insert(v, x);
        x
    }

    fn splat(&mut self, c: f32) -> Value {
        let s = self.b.ins().f32const(c);
        self.b.ins().splat(F32X4, s)
    }

    /// Emits `while cond(i) { body; i += step }` for the variable of `v`, from its current value.
    fn counted(&mut self, v: Var, end: Value, step: i64, body: &mut dyn FnMut(&mut Self)) {
        let x = self.var(v);
        let header = self.b.create_block();
        let inner = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(x);
        let last = self.b.ins().iadd_imm_s(i, step - 1);
        let go = self.b.ins().icmp(IntCC::SignedLessThan, last, end);
        self.b.ins().brif(go, inner, &[], exit, &[]);
        self.b.switch_to_block(inner);
        body(self);
        let i = self.b.use_var(x);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.b.def_var(x, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
    }

    /// The loop over `v` (already holding its start) up to `end`: four lanes at a time when it can, then
    /// one at a time.
    fn loop_from_current(&mut self, v: Var, end: Value, body: &[Stmt]) {
        if self.vec_var.is_none() && body_vectorizes(body, v) {
            self.counted(v, end, 4, &mut |g| {
                g.vec_var = Some(v);
                g.stmts(body);
                g.vec_var = None;
            });
        }
        self.counted(v, end, 1, &mut |g| g.stmts(body));
    }

    fn stmts(&mut self, body: &[Stmt]) {
        let scope: Vec<u32> = self.lets.keys().copied().collect();
        for s in body {
            match s {
                Stmt::For { var, extent, body } => {
                    let x = self.var(*var);
                    let zero = self.b.ins().iconst(I64, 0);
                    self.b.def_var(x, zero);
                    let end = self.b.ins().iconst(I64, *extent as i64);
                    self.loop_from_current(*var, end, body);
                }
                Stmt::Let { id, value } => {
                    let v = self.expr(value);
                    self.lets.insert(*id, v);
                }
                Stmt::Store { buf, index, value } => {
                    let v = self.expr(value);
                    let addr = self.addr(*buf, index);
                    let flags = self.flags.store;
                    if self.vec_var.is_some_and(|x| index.coeff(x) == 1) {
                        self.b.ins().store(flags, v, addr, 0);
                    } else {
                        let s = self.b.ins().extractlane(v, 0);
                        self.b.ins().store(flags, s, addr, 0);
                    }
                }
                // One thread per range: nothing to wait for (the compile check refuses groups anyway).
                Stmt::Barrier => {}
            }
        }
        self.lets.retain(|k, _| scope.contains(k));
    }

    /// `ix` scaled by `scale` as an i64 value (scale 1: the element offset; 4: the byte offset).
    fn scaled(&mut self, ix: &Index, scale: i64) -> Value {
        let mut off = self.b.ins().iconst(I64, ix.offset * scale);
        for &(v, c) in &ix.terms {
            let x = self.var(v);
            let i = self.b.use_var(x);
            let t = self.b.ins().imul_imm_s(i, c * scale);
            off = self.b.ins().iadd(off, t);
        }
        off
    }

    fn index(&mut self, ix: &Index) -> Value {
        self.scaled(ix, 1)
    }

    fn addr(&mut self, buf: u32, ix: &Index) -> Value {
        let off = self.scaled(ix, 4);
        self.b.ins().iadd(self.bases[buf as usize], off)
    }

    /// `then` where all conditions hold, else `other`, with a branch, so `then`'s loads run only inside.
    /// Every load under the guard is also checked against its buffer's length: memory safety does not
    /// rest on the lowering's conditions being right.
    fn guard(&mut self, conds: &[(Index, u64)], then: &Expr, other: f32) -> Value {
        let mut all: Vec<(Index, u64)> = conds.to_vec();
        then.visit(&mut |e| {
            if let Expr::Load { buf, index } = e {
                all.push((index.clone(), self.lens[*buf as usize]));
            }
        });
        let mut ok: Option<Value> = None;
        for (ix, bound) in &all {
            let i = self.index(ix);
            let n = self.b.ins().iconst(I64, *bound as i64);
            let c = self.b.ins().icmp(IntCC::UnsignedLessThan, i, n);
            ok = Some(match ok {
                None => c,
                Some(o) => self.b.ins().band(o, c),
            });
        }
        let inside = self.b.create_block();
        let outside = self.b.create_block();
        let merge = self.b.create_block();
        self.b.append_block_param(merge, F32X4);
        match ok {
            Some(c) => {
                self.b.ins().brif(c, inside, &[], outside, &[]);
            }
            None => {
                self.b.ins().jump(inside, &[]);
            }
        }
        self.b.switch_to_block(inside);
        let v = self.expr(then);
        self.b.ins().jump(merge, &[v.into()]);
        self.b.switch_to_block(outside);
        let o = self.splat(other);
        self.b.ins().jump(merge, &[o.into()]);
        self.b.switch_to_block(merge);
        self.b.block_params(merge)[0]
    }

    fn expr(&mut self, e: &Expr) -> Value {
        match e {
            Expr::Const(c) => self.splat(*c),
            Expr::Load { buf, index } => {
                let addr = self.addr(*buf, index);
                // Read-only only for buffers the kernel never writes (in-place epilogues read C too).
                let flags = if self.read_only[*buf as usize] { self.flags.load } else { self.flags.store };
                if self.vec_var.is_some_and(|x| index.coeff(x) == 1) {
                    self.b.ins().load(F32X4, flags, addr, 0)
                } else {
                    let s = self.b.ins().load(F32, flags, addr, 0);
                    self.b.ins().splat(F32X4, s)
                }
            }
            Expr::Get(id) => self.lets[id],
            Expr::Unary(op, a) => {
                let a = self.expr(a);
                self.unary(*op, a)
            }
            Expr::Binary(op, a, b) => {
                let a = self.expr(a);
                let b = self.expr(b);
                let i = self.b.ins();
                match op {
                    BinaryOp::Add => i.fadd(a, b),
                    BinaryOp::Sub => i.fsub(a, b),
                    BinaryOp::Mul => i.fmul(a, b),
                    BinaryOp::Div => i.fdiv(a, b),
                    BinaryOp::Max => i.fmax(a, b),
                    BinaryOp::Min => i.fmin(a, b),
                    // The verifier admits only the ops above.
                    _ => unreachable!("binary `{}` in a verified kernel", op.as_str()),
                }
            }
            Expr::Reduce { op, var, extent, body } => self.reduce(*op, *var, *extent, body),
            Expr::Guard { conds, then, other } => self.guard(conds, then, *other),
        }
    }

    fn combine(&mut self, op: Reduce, a: Value, b: Value) -> Value {
        match op {
            Reduce::Add => self.b.ins().fadd(a, b),
            Reduce::Max => self.b.ins().fmax(a, b),
        }
    }

    fn reduce(&mut self, op: Reduce, v: Var, extent: u64, body: &Expr) -> Value {
        let init = match op {
            Reduce::Add => 0.0,
            Reduce::Max => f32::NEG_INFINITY,
        };
        let acc = self.b.declare_var(F32X4);
        let start = self.splat(init);
        self.b.def_var(acc, start);
        let x = self.var(v);
        let zero = self.b.ins().iconst(I64, 0);
        self.b.def_var(x, zero);
        let end = self.b.ins().iconst(I64, extent as i64);
        let mut step = |g: &mut Self| {
            let e = g.expr(body);
            let a = g.b.use_var(acc);
            let n = g.combine(op, a, e);
            g.b.def_var(acc, n);
        };
        if self.vec_var.is_none() && expr_vectorizes(body, v) {
            // Four partial results in the lanes, folded into one after the vector loop.
            self.counted(v, end, 4, &mut |g| {
                g.vec_var = Some(v);
                step(g);
                g.vec_var = None;
            });
            let a = self.b.use_var(acc);
            let mut s = self.b.ins().extractlane(a, 0);
            for lane in 1..4 {
                let l = self.b.ins().extractlane(a, lane);
                s = match op {
                    Reduce::Add => self.b.ins().fadd(s, l),
                    Reduce::Max => self.b.ins().fmax(s, l),
                };
            }
            let s = self.b.ins().splat(F32X4, s);
            self.b.def_var(acc, s);
        }
        self.counted(v, end, 1, &mut step);
        self.b.use_var(acc)
    }

    fn unary(&mut self, op: UnaryOp, x: Value) -> Value {
        match op {
            UnaryOp::Neg => self.b.ins().fneg(x),
            UnaryOp::Abs => self.b.ins().fabs(x),
            UnaryOp::Sqrt => self.b.ins().sqrt(x),
            UnaryOp::Rsqrt => {
                let s = self.b.ins().sqrt(x);
                let one = self.splat(1.0);
                self.b.ins().fdiv(one, s)
            }
            UnaryOp::Reciprocal => {
                let one = self.splat(1.0);
                self.b.ins().fdiv(one, x)
            }
            UnaryOp::Relu => {
                let z = self.splat(0.0);
                self.b.ins().fmax(x, z)
            }
            UnaryOp::Identity => x,
            UnaryOp::Exp => self.exp(x),
            UnaryOp::Sigmoid => {
                let n = self.b.ins().fneg(x);
                let e = self.exp(n);
                let one = self.splat(1.0);
                let d = self.b.ins().fadd(one, e);
                self.b.ins().fdiv(one, d)
            }
            UnaryOp::Tanh => {
                // 1 - 2 / (exp(2x) + 1), with x clamped where tanh is ±1 in f32.
                let lo = self.splat(-9.0);
                let hi = self.splat(9.0);
                let x = self.clamp(x, lo, hi);
                let x2 = self.b.ins().fadd(x, x);
                let e = self.exp(x2);
                let one = self.splat(1.0);
                let two = self.splat(2.0);
                let d = self.b.ins().fadd(e, one);
                let q = self.b.ins().fdiv(two, d);
                self.b.ins().fsub(one, q)
            }
            UnaryOp::Erf => self.erf(x),
            _ => unreachable!("unary `{}` in a verified kernel", op.as_str()),
        }
    }

    /// `min(max(x, lo), hi)` by compare and select (a NaN stays NaN: both compares are false).
    fn clamp(&mut self, x: Value, lo: Value, hi: Value) -> Value {
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        let below = self.b.ins().bitcast(F32X4, self.flags.lanes, below);
        let x = self.b.ins().bitselect(below, lo, x);
        let above = self.b.ins().fcmp(FloatCC::GreaterThan, x, hi);
        let above = self.b.ins().bitcast(F32X4, self.flags.lanes, above);
        self.b.ins().bitselect(above, hi, x)
    }

    fn poly(&mut self, x: Value, coeffs: &[f32]) -> Value {
        // Horner, highest degree first.
        let mut p = self.splat(coeffs[0]);
        for &c in &coeffs[1..] {
            let m = self.b.ins().fmul(p, x);
            let c = self.splat(c);
            p = self.b.ins().fadd(m, c);
        }
        p
    }

    /// exp by range reduction to `r` in [-ln2/2, ln2/2], a degree-7 polynomial, and scaling by 2^n built
    /// in the exponent bits. Relative error about 2 ulp; infinite above ln(f32::MAX), and 0 below -87
    /// (flushed, not denormal: denormals would slow every later multiply).
    fn exp(&mut self, x: Value) -> Value {
        let x0 = x;
        let lo = self.splat(-87.0);
        let hi = self.splat(88.3);
        let keep = self.b.ins().fcmp(FloatCC::GreaterThanOrEqual, x, lo);
        let x = self.clamp(x, lo, hi);
        let l2e = self.splat(std::f32::consts::LOG2_E);
        let t = self.b.ins().fmul(x, l2e);
        let n = self.b.ins().nearest(t);
        let c1 = self.splat(0.693_359_4);
        let c2 = self.splat(-2.121_944_4e-4);
        let a = self.b.ins().fmul(n, c1);
        let r = self.b.ins().fsub(x, a);
        let a = self.b.ins().fmul(n, c2);
        let r = self.b.ins().fsub(r, a);
        let p = self.poly(r, &[1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5]);
        let r2 = self.b.ins().fmul(r, r);
        let p = self.b.ins().fmul(p, r2);
        let p = self.b.ins().fadd(p, r);
        let one = self.splat(1.0);
        let p = self.b.ins().fadd(p, one);
        let ni = self.b.ins().fcvt_to_sint_sat(I32X4, n);
        let bias = self.b.ins().iconst(cranelift_codegen::ir::types::I32, 127);
        let bias = self.b.ins().splat(I32X4, bias);
        let e = self.b.ins().iadd(ni, bias);
        let e = self.b.ins().ishl_imm_s(e, 23);
        let scale = self.b.ins().bitcast(F32X4, self.flags.lanes, e);
        let y = self.b.ins().fmul(p, scale);
        let yi = self.b.ins().bitcast(I32X4, self.flags.lanes, y);
        let yi = self.b.ins().band(yi, keep);
        let y = self.b.ins().bitcast(F32X4, self.flags.lanes, yi);
        // Above ln(f32::MAX) the result is infinite.
        let top = self.splat(88.722_84);
        let big = self.b.ins().fcmp(FloatCC::GreaterThan, x0, top);
        let big = self.b.ins().bitcast(F32X4, self.flags.lanes, big);
        let inf = self.splat(f32::INFINITY);
        self.b.ins().bitselect(big, inf, y)
    }

    /// erf by Abramowitz and Stegun 7.1.28 (absolute error below 3e-7): `1 - 1/p(|x|)^16` with a degree-6
    /// polynomial `p`, no exp and one division; odd extension by the sign bit.
    fn erf(&mut self, x: Value) -> Value {
        let ax = self.b.ins().fabs(x);
        let p =
            self.poly(ax, &[4.306_38e-5, 2.765_672e-4, 1.520_143e-4, 9.270_527e-3, 4.228_201e-2, 7.052_307_8e-2, 1.0]);
        let mut q = p;
        for _ in 0..4 {
            q = self.b.ins().fmul(q, q);
        }
        let one = self.splat(1.0);
        let r = self.b.ins().fdiv(one, q);
        let y = self.b.ins().fsub(one, r);
        // Copy the sign of x onto y (y >= 0).
        let le = self.flags.lanes;
        let yi = self.b.ins().bitcast(I32X4, le, y);
        let xi = self.b.ins().bitcast(I32X4, le, x);
        let m = self.b.ins().iconst(cranelift_codegen::ir::types::I32, i32::MIN as i64);
        let m = self.b.ins().splat(I32X4, m);
        let s = self.b.ins().band(xi, m);
        let r = self.b.ins().bor(yi, s);
        self.b.ins().bitcast(F32X4, le, r)
    }
}
