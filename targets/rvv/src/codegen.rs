//! RVV machine code from the kernel IR, vector-length agnostic: every loop strip-mines with `vsetvli`
//! (SEW 32), so the same code runs at any VLEN and uses all of it.
//!
//! - A loop kernel is vectorized over its parallel dimension (variable 0): each strip of `vl`
//!   iterations runs the body once, lane `l` being iteration `i + l`. When that dimension is short (a
//!   transpose's 4 heads) and the body a perfect nest of loops around stores whose iterations are
//!   independent, the innermost loop is vectorized instead and the others are scalar loops. Inner loops are scalar loops;
//!   lets are vector registers; a load's element index is affine, so its lanes are one element
//!   (`flw` + broadcast), consecutive (`vle32.v`) or strided (`vlse32.v`) by the coefficient of
//!   variable 0; stores likewise. A guard whose bounds depend on variable 0 becomes a mask (loads under
//!   it are masked, so padding is never read) and a merge with the padding value; one that does not is
//!   a branch. Reductions over inner loops keep one accumulator per lane, summing in the reference's
//!   order. `exp` is `2^n · p(f)` (a degree-7 polynomial on `f` in [-1/2, 1/2]), and `erf`, `tanh`,
//!   `sigmoid` are built on it as the cuda target builds them.
//! - A contraction: per batch entry and group, rows of C in blocks of 4 (A's four elements loaded as
//!   scalars), columns in strips of `vl`, `vfmacc.vf` over K in order. B's strip is a row of the matrix
//!   (LMUL 4), or for a convolution (implicit im2col) gathered from the image with `vluxei32.v`, lanes
//!   whose window lies in the padding masked off and zeroed (LMUL 2) (`gemm.rs`).
//! - Attention: lanes over query rows, the scores' maximum, then exponentials, their sum and `Σ p·V`
//!   into O's rows, then the division (`attention.rs`).
//!
//! Calling convention: `void kernel(float **bufs)` (a0: the buffers' addresses in kernel order); leaf
//! functions that save the callee-saved registers they use on the stack (each function is generated
//! twice: the first pass finds which) and use no other memory of their own.

use crate::asm::{Asm, Label, Lmul, VfOp, ViOp, A0, F, V, X, ZERO};
use sovc_ir::kernel::{Expr, Index, Kernel, KernelOp, Reduce, Stmt, Var};
use sovc_ir::{BinaryOp, UnaryOp};
use std::collections::BTreeMap;

/// Integer registers for loop variables and temporaries (a0 holds the buffers): the caller-saved ones,
/// then s1..s11, which every function saves on entry ([`SAVED`]).
const XPOOL: [u8; 25] =
    [5, 6, 7, 28, 29, 30, 31, 11, 12, 13, 14, 15, 16, 17, 9, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27];
/// The callee-saved registers the pool may use: a function saves those it uses on entry.
const SAVED: [u8; 11] = [9, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27];
/// Caller-saved float registers.
const FPOOL: [u8; 20] = [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17, 28, 29, 30, 31];

/// One function of the code blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// Byte offset of its entry in the blob.
    pub offset: usize,
    pub len: usize,
}

pub(crate) struct Gen<'a> {
    pub(crate) asm: &'a mut Asm,
    pub(crate) xfree: Vec<X>,
    pub(crate) ffree: Vec<F>,
    pub(crate) vfree: Vec<V>,
    pub(crate) vars: BTreeMap<Var, X>,
    pub(crate) lets: BTreeMap<u32, V>,
    /// The strip's first iteration and its length (`vl`).
    pub(crate) i: X,
    pub(crate) vl: X,
    /// Whether v0 holds the mask of an enclosing vector guard.
    pub(crate) masked: bool,
    /// The variable the lanes run over (0, the parallel dimension, unless the kernel's innermost loop
    /// is vectorized instead).
    pub(crate) vec: Var,
    /// Accesses whose strip-invariant byte address is in a register ([`Gen::hoist`]).
    pub(crate) hoisted: Vec<((u32, Index), X)>,
}

/// Stack bytes to save `regs` (16-byte aligned).
fn frame(regs: &[u8]) -> i32 {
    (8 * regs.len() as i32 + 15) / 16 * 16
}

pub(crate) fn err<T>(m: impl Into<String>) -> Result<T, String> {
    Err(m.into())
}

impl Gen<'_> {
    pub(crate) fn new(asm: &mut Asm) -> Gen<'_> {
        let saved = asm.saved.clone().unwrap_or_default();
        if !saved.is_empty() {
            asm.addi(crate::asm::SP, crate::asm::SP, -frame(&saved));
            for (k, &r) in saved.iter().enumerate() {
                asm.sd(X(r), crate::asm::SP, 8 * k as i32);
            }
        }
        let mut g = Gen {
            asm,
            xfree: XPOOL.iter().rev().map(|&r| X(r)).collect(),
            ffree: FPOOL.iter().rev().map(|&r| F(r)).collect(),
            vfree: (1..32).rev().map(V).collect(),
            vars: BTreeMap::new(),
            lets: BTreeMap::new(),
            i: X(0),
            vl: X(0),
            masked: false,
            vec: 0,
            hoisted: Vec::new(),
        };
        g.i = g.xfree.pop().expect("registers");
        g.vl = g.xfree.pop().expect("registers");
        g
    }
    /// Restores the saved registers and returns.
    pub(crate) fn ret(&mut self) {
        let saved = self.asm.saved.clone().unwrap_or_default();
        if !saved.is_empty() {
            for (k, &r) in saved.iter().enumerate() {
                self.asm.ld(X(r), crate::asm::SP, 8 * k as i32);
            }
            self.asm.addi(crate::asm::SP, crate::asm::SP, frame(&saved));
        }
        self.asm.ret();
    }

    pub(crate) fn x(&mut self) -> Result<X, String> {
        let r = self.xfree.pop().ok_or_else(|| "out of integer registers (loops nested too deep)".to_string())?;
        if SAVED.contains(&r.0) {
            self.asm.saved_used.insert(r.0);
        }
        Ok(r)
    }
    pub(crate) fn f(&mut self) -> Result<F, String> {
        self.ffree.pop().ok_or_else(|| "out of float registers".to_string())
    }
    pub(crate) fn v(&mut self) -> Result<V, String> {
        self.vfree.pop().ok_or_else(|| "out of vector registers (too many lets or too deep an expression)".to_string())
    }
    pub(crate) fn free_x(&mut self, r: X) {
        self.xfree.push(r);
    }
    pub(crate) fn free_f(&mut self, r: F) {
        self.ffree.push(r);
    }
    pub(crate) fn free_v(&mut self, r: V) {
        if !self.lets.values().any(|&l| l == r) {
            self.vfree.push(r);
        }
    }

    /// `rd += c·v` (an `add` for 1, a shift for powers of two, else `li` + `mul`).
    pub(crate) fn add_scaled(&mut self, rd: X, v: X, c: i64) -> Result<(), String> {
        match c {
            0 => {}
            1 => self.asm.add(rd, rd, v),
            c if c > 0 && (c as u64).is_power_of_two() => {
                let t = self.x()?;
                self.asm.slli(t, v, c.trailing_zeros());
                self.asm.add(rd, rd, t);
                self.free_x(t);
            }
            c => {
                let t = self.x()?;
                self.asm.li(t, c)?;
                self.asm.mul(t, t, v);
                self.asm.add(rd, rd, t);
                self.free_x(t);
            }
        }
        Ok(())
    }

    /// `rd = offset + Σ coeff·var` over the variables other than the vector one.
    pub(crate) fn scalar_index(&mut self, ix: &Index, rd: X) -> Result<(), String> {
        self.asm.li(rd, ix.offset)?;
        for &(v, c) in &ix.terms {
            if v == self.vec {
                continue;
            }
            let vr = *self.vars.get(&v).ok_or_else(|| format!("loop variable v{v} is not in scope"))?;
            self.add_scaled(rd, vr, c)?;
        }
        Ok(())
    }

    /// The address of the strip's first lane of `ix` in buffer `buf` (element `S + c0·i`), and `c0`.
    pub(crate) fn address(&mut self, buf: u32, ix: &Index) -> Result<(X, i64), String> {
        let c0 = ix.coeff(self.vec);
        let a = self.x()?;
        if let Some(&(_, pre)) = self.hoisted.iter().find(|h| h.0 .0 == buf && &h.0 .1 == ix) {
            // The part that does not change from strip to strip was computed before the strips.
            self.asm.mv(a, pre);
            self.add_scaled(a, self.i, 4 * c0)?;
            return Ok((a, c0));
        }
        self.scalar_index(ix, a)?;
        self.add_scaled(a, self.i, c0)?;
        let t = self.x()?;
        self.asm.slli(a, a, 2);
        self.asm.ld(t, A0, 8 * buf as i32);
        self.asm.add(a, a, t);
        self.free_x(t);
        Ok((a, c0))
    }

    /// Computes, into registers kept for the strips, the byte address of element `S` (every term but
    /// the vector variable's) of each access in `accesses` whose variables are all in scope, while
    /// registers last.
    pub(crate) fn hoist(&mut self, accesses: &[(u32, Index)]) -> Result<(), String> {
        for (buf, ix) in accesses {
            let ready = ix.terms.iter().all(|(v, _)| *v == self.vec || self.vars.contains_key(v));
            if !ready || self.hoisted.iter().any(|h| h.0 .0 == *buf && &h.0 .1 == ix) || self.xfree.len() < 10 {
                continue;
            }
            let a = self.x()?;
            self.scalar_index(ix, a)?;
            let t = self.x()?;
            self.asm.slli(a, a, 2);
            self.asm.ld(t, A0, 8 * *buf as i32);
            self.asm.add(a, a, t);
            self.free_x(t);
            self.hoisted.push(((*buf, ix.clone()), a));
        }
        Ok(())
    }

    pub(crate) fn unhoist(&mut self) {
        for (_, r) in std::mem::take(&mut self.hoisted) {
            self.free_x(r);
        }
    }

    pub(crate) fn load(&mut self, buf: u32, ix: &Index) -> Result<V, String> {
        let (a, c0) = self.address(buf, ix)?;
        let vd = self.v()?;
        match c0 {
            0 => {
                let f = self.f()?;
                // A scalar: every lane the same element (read once even under a mask: the guard that
                // masks it does not depend on variable 0 then, or the element is inside for some lane).
                self.asm.flw(f, a, 0);
                self.asm.vfmv_v_f(vd, f);
                self.free_f(f);
            }
            1 => self.asm.vle32(vd, a, self.masked),
            c => {
                let s = self.x()?;
                self.asm.li(s, 4 * c)?;
                self.asm.vlse32(vd, a, s, self.masked);
                self.free_x(s);
            }
        }
        self.free_x(a);
        Ok(vd)
    }

    pub(crate) fn store(&mut self, buf: u32, ix: &Index, v: V) -> Result<(), String> {
        let (a, c0) = self.address(buf, ix)?;
        match c0 {
            0 => return err("a store that does not depend on the parallel dimension"),
            1 => self.asm.vse32(v, a, false),
            c => {
                let s = self.x()?;
                self.asm.li(s, 4 * c)?;
                self.asm.vsse32(v, a, s, false);
                self.free_x(s);
            }
        }
        self.free_x(a);
        Ok(())
    }

    pub(crate) fn splat(&mut self, vd: V, c: f32) -> Result<(), String> {
        let (f, t) = (self.f()?, self.x()?);
        self.asm.fconst(f, c, t)?;
        self.asm.vfmv_v_f(vd, f);
        self.free_f(f);
        self.free_x(t);
        Ok(())
    }

    /// `op.vf vd, vs, c`.
    pub(crate) fn vf_const(&mut self, op: VfOp, vd: V, vs: V, c: f32) -> Result<(), String> {
        let (f, t) = (self.f()?, self.x()?);
        self.asm.fconst(f, c, t)?;
        self.asm.vf_vf(op, vd, vs, f, false);
        self.free_f(f);
        self.free_x(t);
        Ok(())
    }

    /// `e^x` into a fresh register (`x` kept).
    pub(crate) fn exp(&mut self, x: V) -> Result<V, String> {
        let t = self.v()?;
        self.vf_const(VfOp::Mul, t, x, std::f32::consts::LOG2_E)?;
        self.vf_const(VfOp::Max, t, t, -126.0)?;
        self.vf_const(VfOp::Min, t, t, 127.0)?;
        let (n, fr) = (self.v()?, self.v()?);
        self.asm.vfcvt_x_f(n, t);
        self.asm.vfcvt_f_x(fr, n);
        self.asm.vf_vv(VfOp::Sub, fr, t, fr, false);
        // 2^f = e^(f ln 2) = Σ (ln 2)^k / k! · f^k, Horner from k = 7.
        let ln2 = std::f64::consts::LN_2;
        let coef: Vec<f32> = (0..8).map(|k| (ln2.powi(k) / (1..=k).product::<i32>().max(1) as f64) as f32).collect();
        self.splat(t, coef[7])?;
        for &c in coef[..7].iter().rev() {
            self.asm.vf_vv(VfOp::Mul, t, t, fr, false);
            self.vf_const(VfOp::Add, t, t, c)?;
        }
        // 2^n from its exponent bits.
        let k = self.x()?;
        self.asm.li(k, 127)?;
        self.asm.vi_vx(ViOp::Add, n, n, k);
        self.free_x(k);
        self.asm.vi_vi(ViOp::Sll, n, n, 23);
        self.asm.vf_vv(VfOp::Mul, t, t, n, false);
        self.free_v(n);
        self.free_v(fr);
        Ok(t)
    }

    pub(crate) fn unary(&mut self, op: UnaryOp, x: V) -> Result<V, String> {
        let r = self.v()?;
        match op {
            UnaryOp::Neg => self.asm.vf_vv(VfOp::Sgnjn, r, x, x, false),
            UnaryOp::Abs => self.asm.vf_vv(VfOp::Sgnjx, r, x, x, false),
            UnaryOp::Identity => self.asm.vmv_v_v(r, x),
            UnaryOp::Relu => self.vf_const(VfOp::Max, r, x, 0.0)?,
            UnaryOp::Sqrt => self.asm.vfsqrt(r, x),
            UnaryOp::Rsqrt => {
                self.asm.vfsqrt(r, x);
                self.vf_const(VfOp::Rdiv, r, r, 1.0)?;
            }
            UnaryOp::Reciprocal => self.vf_const(VfOp::Rdiv, r, x, 1.0)?,
            UnaryOp::Exp => {
                self.free_v(r);
                return self.exp(x);
            }
            UnaryOp::Sigmoid => {
                // 1 / (1 + e^-x)
                self.asm.vf_vv(VfOp::Sgnjn, r, x, x, false);
                let e = self.exp(r)?;
                self.vf_const(VfOp::Add, e, e, 1.0)?;
                self.vf_const(VfOp::Rdiv, r, e, 1.0)?;
                self.free_v(e);
            }
            UnaryOp::Tanh => {
                // sign(x) (1 - 2 / (e^{2|x|} + 1))
                self.asm.vf_vv(VfOp::Sgnjx, r, x, x, false);
                self.asm.vf_vv(VfOp::Add, r, r, r, false);
                let e = self.exp(r)?;
                self.vf_const(VfOp::Add, e, e, 1.0)?;
                self.vf_const(VfOp::Rdiv, e, e, 2.0)?;
                self.vf_const(VfOp::Rsub, e, e, 1.0)?;
                self.asm.vf_vv(VfOp::Sgnj, r, e, x, false);
                self.free_v(e);
            }
            UnaryOp::Erf => {
                // Abramowitz and Stegun 7.1.26: 1 - (a1 t + ... + a5 t^5) e^{-x^2}, t = 1 / (1 + p |x|).
                let (a, t) = (self.v()?, self.v()?);
                self.asm.vf_vv(VfOp::Sgnjx, a, x, x, false);
                self.vf_const(VfOp::Mul, t, a, 0.327_591_1)?;
                self.vf_const(VfOp::Add, t, t, 1.0)?;
                self.vf_const(VfOp::Rdiv, t, t, 1.0)?;
                let coef = [1.061_405_4_f32, -1.453_152_1, 1.421_413_8, -0.284_496_73, 0.254_829_6];
                self.splat(r, coef[0])?;
                for &c in &coef[1..] {
                    self.asm.vf_vv(VfOp::Mul, r, r, t, false);
                    self.vf_const(VfOp::Add, r, r, c)?;
                }
                self.asm.vf_vv(VfOp::Mul, r, r, t, false);
                self.asm.vf_vv(VfOp::Mul, a, a, a, false);
                self.asm.vf_vv(VfOp::Sgnjn, a, a, a, false);
                let e = self.exp(a)?;
                self.asm.vf_vv(VfOp::Mul, r, r, e, false);
                self.vf_const(VfOp::Rsub, r, r, 1.0)?;
                self.asm.vf_vv(VfOp::Sgnj, r, r, x, false);
                for v in [a, t, e] {
                    self.free_v(v);
                }
            }
            op => return err(format!("the riscv64-rvv target has no code for `{op:?}`")),
        }
        Ok(r)
    }

    pub(crate) fn expr(&mut self, e: &Expr) -> Result<V, String> {
        match e {
            Expr::Const(c) => {
                let r = self.v()?;
                self.splat(r, *c)?;
                Ok(r)
            }
            Expr::Load { buf, index } => self.load(*buf, index),
            Expr::Get(id) => {
                let l = *self.lets.get(id).ok_or_else(|| format!("let {id} is read before it is set"))?;
                let r = self.v()?;
                self.asm.vmv_v_v(r, l);
                Ok(r)
            }
            Expr::Unary(op, a) => {
                let a = self.expr(a)?;
                let r = self.unary(*op, a)?;
                self.free_v(a);
                Ok(r)
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                let op = match op {
                    BinaryOp::Add => VfOp::Add,
                    BinaryOp::Sub => VfOp::Sub,
                    BinaryOp::Mul => VfOp::Mul,
                    BinaryOp::Div => VfOp::Div,
                    BinaryOp::Max => VfOp::Max,
                    BinaryOp::Min => VfOp::Min,
                    op => return err(format!("the riscv64-rvv target has no code for `{op:?}`")),
                };
                self.asm.vf_vv(op, a, a, b, false);
                self.free_v(b);
                Ok(a)
            }
            Expr::Reduce { op, var, extent, body } => {
                let acc = self.v()?;
                self.splat(acc, if *op == Reduce::Add { 0.0 } else { f32::NEG_INFINITY })?;
                let op = *op;
                self.for_loop(*var, *extent, &mut |g| {
                    let v = g.expr(body)?;
                    g.asm.vf_vv(if op == Reduce::Add { VfOp::Add } else { VfOp::Max }, acc, acc, v, false);
                    g.free_v(v);
                    Ok(())
                })?;
                Ok(acc)
            }
            Expr::Guard { conds, then, other } => self.guard(conds, then, *other),
        }
    }

    /// `then` where every index is in `0..bound`, `other` elsewhere.
    pub(crate) fn guard(&mut self, conds: &[(Index, u64)], then: &Expr, other: f32) -> Result<V, String> {
        let r = self.v()?;
        let (outside, end) = (self.asm.label(), self.asm.label());
        // Bounds that do not depend on variable 0: one branch for the whole strip.
        let vec = self.vec;
        for (ix, bound) in conds.iter().filter(|(ix, _)| ix.coeff(vec) == 0) {
            let s = self.x()?;
            self.scalar_index(ix, s)?;
            self.branch_unless_inside(s, *bound, outside)?;
            self.free_x(s);
        }
        let lane: Vec<&(Index, u64)> = conds.iter().filter(|(ix, _)| ix.coeff(vec) != 0).collect();
        if lane.is_empty() {
            let v = self.expr(then)?;
            self.asm.vmv_v_v(r, v);
            self.free_v(v);
        } else {
            // The mask of lanes inside every bound (and the enclosing guard's), in v0.
            let m = self.v()?;
            let saved = if self.masked {
                let s = self.v()?;
                self.asm.vmv_v_v(s, V(0));
                self.asm.vmv_v_v(m, V(0));
                Some(s)
            } else {
                None
            };
            for (k, (ix, bound)) in lane.iter().enumerate() {
                let (idx, t, inside) = (self.v()?, self.x()?, self.v()?);
                self.asm.vid(idx);
                self.asm.vi_vx(ViOp::Add, idx, idx, self.i);
                self.asm.li(t, ix.coeff(self.vec))?;
                self.asm.vi_vx(ViOp::Mul, idx, idx, t);
                self.scalar_index(ix, t)?;
                self.asm.vi_vx(ViOp::Add, idx, idx, t);
                // inside = !(idx < 0) & (idx < bound)
                self.asm.vi_vx(ViOp::Mslt, inside, idx, ZERO);
                self.asm.vmnand(inside, inside, inside);
                self.asm.li(t, *bound as i64)?;
                self.asm.vi_vx(ViOp::Mslt, idx, idx, t);
                self.asm.vmand(inside, inside, idx);
                if k == 0 && saved.is_none() {
                    self.asm.vmv_v_v(m, inside);
                } else {
                    self.asm.vmand(m, m, inside);
                }
                self.free_v(idx);
                self.free_v(inside);
                self.free_x(t);
            }
            self.asm.vmv_v_v(V(0), m);
            let was = self.masked;
            self.masked = true;
            let v = self.expr(then)?;
            self.masked = was;
            // r = m ? v : other (vfmerge takes the scalar where v0 is set: set it where m is not).
            self.asm.vmnand(V(0), m, m);
            let (f, t) = (self.f()?, self.x()?);
            self.asm.fconst(f, other, t)?;
            self.asm.vfmerge_vfm(r, v, f);
            self.free_f(f);
            self.free_x(t);
            self.free_v(v);
            self.free_v(m);
            if let Some(s) = saved {
                self.asm.vmv_v_v(V(0), s);
                self.free_v(s);
            }
        }
        self.asm.j(end);
        self.asm.bind(outside);
        self.splat(r, other)?;
        self.asm.bind(end);
        Ok(r)
    }

    /// Jumps to `to` unless `0 <= s < bound`.
    pub(crate) fn branch_unless_inside(&mut self, s: X, bound: u64, to: Label) -> Result<(), String> {
        let (t, ok1, ok2) = (self.x()?, self.asm.label(), self.asm.label());
        self.asm.bge(s, ZERO, ok1);
        self.asm.j(to);
        self.asm.bind(ok1);
        self.asm.li(t, bound as i64)?;
        self.asm.blt(s, t, ok2);
        self.asm.j(to);
        self.asm.bind(ok2);
        self.free_x(t);
        Ok(())
    }

    /// `for var in 0..extent { body }` (a scalar loop; far branches so bodies may be long).
    pub(crate) fn for_loop(
        &mut self,
        var: Var,
        extent: u64,
        body: &mut dyn FnMut(&mut Gen) -> Result<(), String>,
    ) -> Result<(), String> {
        if extent == 0 {
            return Ok(());
        }
        // Tested at the bottom: extents are at least 1.
        let r = self.x()?;
        let outer = self.vars.insert(var, r);
        let head = self.asm.label();
        self.asm.mv(r, ZERO);
        self.asm.bind(head);
        body(self)?;
        self.asm.addi(r, r, 1);
        let n = self.x()?;
        self.asm.li(n, extent as i64)?;
        self.asm.blt_back(r, n, head);
        self.free_x(n);
        match outer {
            Some(o) => self.vars.insert(var, o),
            None => self.vars.remove(&var),
        };
        self.free_x(r);
        Ok(())
    }

    pub(crate) fn stmt(&mut self, s: &Stmt) -> Result<(), String> {
        match s {
            Stmt::For { var, extent, body } => self.for_loop(*var, *extent, &mut |g| {
                for s in body {
                    g.stmt(s)?;
                }
                Ok(())
            }),
            Stmt::Let { id, value } => {
                let v = self.expr(value)?;
                match self.lets.get(id) {
                    Some(&l) => {
                        self.asm.vmv_v_v(l, v);
                        self.free_v(v);
                    }
                    None => {
                        self.lets.insert(*id, v);
                    }
                }
                Ok(())
            }
            Stmt::Store { buf, index, value } => {
                let v = self.expr(value)?;
                self.store(*buf, index, v)?;
                self.free_v(v);
                Ok(())
            }
            Stmt::Barrier => Ok(()),
        }
    }

    /// `for i in 0..extent step vl { body }` with `vl` from `vsetvli` at `lmul`.
    pub(crate) fn strips(
        &mut self,
        extent: u64,
        lmul: Lmul,
        body: &mut dyn FnMut(&mut Gen) -> Result<(), String>,
    ) -> Result<(), String> {
        if extent == 0 {
            return Ok(());
        }
        let (n, rest) = (self.x()?, self.x()?);
        let head = self.asm.label();
        let (i, vl) = (self.i, self.vl);
        self.asm.mv(i, ZERO);
        self.asm.li(n, extent as i64)?;
        self.asm.bind(head);
        self.asm.sub(rest, n, i);
        self.asm.vsetvli(vl, rest, lmul);
        body(self)?;
        self.asm.add(i, i, vl);
        self.asm.blt_back(i, n, head);
        self.free_x(n);
        self.free_x(rest);
        Ok(())
    }
}

fn loop_kernel(asm: &mut Asm, k: &Kernel) -> Result<(), String> {
    if k.launch.threads_per_group != 1 {
        return err(format!("groups of {} threads", k.launch.threads_per_group));
    }
    let mut g = Gen::new(asm);
    match inner_nest(k) {
        // A short parallel dimension over a perfect nest: lanes over the innermost loop instead.
        Some((nest, stores)) => {
            let inner = nest[nest.len() - 1];
            g.vec = inner.0;
            let outer: Vec<(Var, u64)> =
                [(0, k.extent)].into_iter().chain(nest[..nest.len() - 1].iter().copied()).collect();
            // Every access of the stores, to hoist what does not change from strip to strip.
            let mut accesses = Vec::new();
            for s in stores {
                if let Stmt::Store { buf, index, value } = s {
                    accesses.push((*buf, index.clone()));
                    value.visit(&mut |e| {
                        if let Expr::Load { buf, index } = e {
                            accesses.push((*buf, index.clone()));
                        }
                    });
                }
            }
            nested(&mut g, &outer, &mut |g| {
                g.hoist(&accesses)?;
                g.strips(inner.1, Lmul::M1, &mut |g| {
                    for s in stores {
                        g.stmt(s)?;
                    }
                    Ok(())
                })?;
                g.unhoist();
                Ok(())
            })?;
        }
        None => g.strips(k.extent, Lmul::M1, &mut |g| {
            for s in &k.body {
                g.stmt(s)?;
            }
            Ok(())
        })?,
    }
    g.ret();
    Ok(())
}

/// Loops as (variable, extent), outermost first.
type Nest = Vec<(Var, u64)>;

/// Scalar loops over `loops` (outermost first) around `body`.
pub(crate) fn nested(
    g: &mut Gen,
    loops: &[(Var, u64)],
    body: &mut dyn FnMut(&mut Gen) -> Result<(), String>,
) -> Result<(), String> {
    match loops.split_first() {
        None => body(g),
        Some((&(v, e), rest)) => g.for_loop(v, e, &mut |g| nested(g, rest, body)),
    }
}

/// When the parallel dimension is shorter than the innermost loop of a perfect nest whose body is
/// stores only, and every load of a stored buffer in that body reads the element being stored (so
/// the innermost loop's iterations are independent): the nest's loops (variable, extent) and the
/// stores.
fn inner_nest(k: &Kernel) -> Option<(Nest, &[Stmt])> {
    let mut nest = Vec::new();
    let mut body: &[Stmt] = &k.body;
    while let [Stmt::For { var, extent, body: b }] = body {
        nest.push((*var, *extent));
        body = b;
    }
    let &(_, inner) = nest.last()?;
    if inner <= k.extent || !body.iter().all(|s| matches!(s, Stmt::Store { .. })) {
        return None;
    }
    let mut ok = true;
    for s in body {
        let Stmt::Store { buf, index, .. } = s else { return None };
        for t in body {
            let Stmt::Store { value, .. } = t else { return None };
            value.visit(&mut |e| {
                if let Expr::Load { buf: b, index: i } = e {
                    ok &= b != buf || i == index;
                }
            });
        }
    }
    ok.then_some((nest, body))
}

/// Appends the functions of `op` to `asm` (named `name`, and `name_epilogue` for a contraction's
/// epilogue).
pub fn emit_op(asm: &mut Asm, op: &KernelOp, name: &str) -> Result<Vec<Function>, String> {
    let mut out = Vec::new();
    let mut func = |asm: &mut Asm, name: String, f: &dyn Fn(&mut Asm) -> Result<(), String>| {
        // First pass: which callee-saved registers the function uses; second: the function.
        let mut scratch = Asm::new();
        f(&mut scratch)?;
        let start = asm.len();
        asm.note(&name);
        asm.saved = Some(scratch.saved_used.into_iter().collect());
        let r = f(asm);
        asm.saved = None;
        r?;
        out.push(Function { name, offset: start, len: asm.len() - start });
        Ok::<(), String>(())
    };
    match op {
        KernelOp::Loop(k) => func(asm, name.to_string(), &|a| loop_kernel(a, k))?,
        KernelOp::Gemm(gm) => {
            func(asm, name.to_string(), &|a| crate::gemm::gemm(a, gm))?;
            if let Some(e) = &gm.epilogue {
                func(asm, format!("{name}_epilogue"), &|a| loop_kernel(a, e))?;
            }
        }
        KernelOp::Attention(at) => func(asm, name.to_string(), &|a| crate::attention::attention(a, at))?,
    }
    Ok(out)
}
