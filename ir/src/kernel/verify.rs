//! Checks of the kernel IR: variables bound once and in scope, `let`s defined before use, ops that
//! every code generator implements, access modes respected, and every affine access inside its buffer
//! for every value of the loop variables.

use super::*;

struct Ctx<'a> {
    bufs: &'a [Buf],
    /// Extent of each variable in scope.
    vars: Vec<(Var, u64)>,
    lets: Vec<u32>,
    errors: Vec<String>,
    /// Inside a guard: loads are checked for scope and mode, not range (the guard keeps them in bounds).
    guarded: bool,
    /// The kernel runs several threads per group (barriers and shared buffers allowed).
    group: bool,
}

impl Ctx<'_> {
    fn access(&mut self, buf: u32, ix: &Index, write: bool, what: &str) {
        let Some(b) = self.bufs.get(buf as usize) else {
            self.errors.push(format!("{what}: no buffer %{buf}"));
            return;
        };
        match (write, b.access) {
            (true, Access::Read) => self.errors.push(format!("{what}: stores to read-only buffer %{buf}")),
            (false, Access::Write) => self.errors.push(format!("{what}: loads from write-only buffer %{buf}")),
            _ => {}
        }
        let (mut lo, mut hi) = (ix.offset as i128, ix.offset as i128);
        for &(v, c) in &ix.terms {
            let Some(&(_, ext)) = self.vars.iter().find(|x| x.0 == v) else {
                self.errors.push(format!("{what}: variable i{v} is not in scope"));
                return;
            };
            let span = c as i128 * (ext as i128 - 1).max(0);
            if span < 0 {
                lo += span;
            } else {
                hi += span;
            }
        }
        if !self.guarded && (lo < 0 || hi >= b.len as i128) {
            self.errors.push(format!("{what}: %{buf}[{lo}..={hi}] is outside the buffer's {} elements", b.len));
        }
    }

    fn bind(&mut self, v: Var, extent: u64, what: &str) {
        if self.vars.iter().any(|x| x.0 == v) {
            self.errors.push(format!("{what}: variable i{v} is bound twice"));
        }
        if extent == 0 {
            self.errors.push(format!("{what}: loop over i{v} has no iterations"));
        }
        self.vars.push((v, extent));
    }

    fn expr(&mut self, e: &Expr, what: &str) {
        match e {
            Expr::Const(_) => {}
            Expr::Load { buf, index } => self.access(*buf, index, false, what),
            Expr::Get(id) => {
                if !self.lets.contains(id) {
                    self.errors.push(format!("{what}: ${id} is used before its let"));
                }
            }
            Expr::Unary(op, a) => {
                if !unary_supported(*op) {
                    self.errors.push(format!("{what}: unary `{}` is not a kernel op", op.as_str()));
                }
                self.expr(a, what);
            }
            Expr::Binary(op, a, b) => {
                if !binary_supported(*op) {
                    self.errors.push(format!("{what}: binary `{}` is not a kernel op", op.as_str()));
                }
                self.expr(a, what);
                self.expr(b, what);
            }
            Expr::Reduce { var, extent, body, .. } => {
                self.bind(*var, *extent, what);
                self.expr(body, what);
                self.vars.pop();
            }
            Expr::Guard { conds, then, .. } => {
                let mut binds = false;
                then.visit(&mut |e| binds |= matches!(e, Expr::Reduce { .. }));
                if binds {
                    // Loads under a guard are bounds-checked where the guard is evaluated, which needs every
                    // variable they use bound outside it.
                    self.errors.push(format!("{what}: a reduction inside a guard"));
                }
                for (ix, _) in conds {
                    if let Some(&(v, _)) = ix.terms.iter().find(|t| !self.vars.iter().any(|x| x.0 == t.0)) {
                        self.errors.push(format!("{what}: guard names variable i{v}, which is not in scope"));
                    }
                }
                let outer = self.guarded;
                self.guarded = true;
                self.expr(then, what);
                self.guarded = outer;
            }
        }
    }

    fn stmts(&mut self, body: &[Stmt], what: &str) {
        let lets = self.lets.len();
        for s in body {
            match s {
                Stmt::For { var, extent, body } => {
                    self.bind(*var, *extent, what);
                    self.stmts(body, what);
                    self.vars.pop();
                }
                Stmt::Let { id, value } => {
                    self.expr(value, what);
                    if self.lets.contains(id) {
                        self.errors.push(format!("{what}: ${id} is defined twice"));
                    }
                    self.lets.push(*id);
                }
                Stmt::Store { buf, index, value } => {
                    self.expr(value, what);
                    self.access(*buf, index, true, what);
                }
                Stmt::Barrier => {
                    if !self.group {
                        self.errors.push(format!("{what}: a barrier in a kernel with one thread per group"));
                    }
                }
            }
        }
        self.lets.truncate(lets);
    }
}

/// Checks a loop kernel; returns every problem found.
pub fn verify(k: &Kernel) -> Result<(), Vec<String>> {
    let what = format!("kernel `{}`", k.name);
    let group = k.launch.threads_per_group > 1;
    let mut c = Ctx { bufs: &k.bufs, vars: Vec::new(), lets: Vec::new(), errors: Vec::new(), guarded: false, group };
    if k.launch.threads_per_group == 0 {
        c.errors.push(format!("{what}: no threads per group"));
    }
    if let Some(b) = k.bufs.iter().find(|b| b.space == Space::Shared && !group) {
        c.errors.push(format!("{what}: shared buffer `{}` in a kernel with one thread per group", b.name));
    }
    if k.launch.tile.is_some_and(|(r, col)| r == 0 || col == 0) {
        c.errors.push(format!("{what}: empty tile"));
    }
    if let VectorLength::Fixed(bits) = k.launch.vector {
        if bits < 32 || !bits.is_power_of_two() {
            c.errors.push(format!("{what}: vector length {bits} bits is not a power of two of at least 32"));
        }
    }
    c.bind(0, k.extent, &what);
    c.stmts(&k.body, &what);
    if c.errors.is_empty() {
        Ok(())
    } else {
        Err(c.errors)
    }
}

fn operand(c: &mut Ctx, o: &Operand, dims: [u64; 4], write: bool, what: &str) {
    c.vars = vec![(1, dims[0]), (2, dims[1]), (3, dims[2]), (4, dims[3])];
    let ix = Index::new(o.offset as i64, &[(1, o.batch), (2, o.group), (3, o.rows), (4, o.cols)]);
    c.access(o.buf, &ix, write, what);
    c.vars.clear();
}

/// Checks any kernel.
pub fn verify_op(k: &KernelOp) -> Result<(), Vec<String>> {
    match k {
        KernelOp::Loop(k) => verify(k),
        KernelOp::Gemm(g) => {
            let what = format!("gemm `{}`", g.name);
            let mut c = Ctx {
                bufs: &g.bufs,
                vars: Vec::new(),
                lets: Vec::new(),
                errors: Vec::new(),
                guarded: false,
                group: false,
            };
            let gd = |rows, cols| [g.batch, g.groups, rows, cols];
            operand(&mut c, &g.a, gd(g.m, g.k), false, &what);
            match &g.b_im2col {
                None => operand(&mut c, &g.b, gd(g.k, g.n), false, &what),
                Some(im) => {
                    let ok = im.kh * im.kw * im.channels == g.k
                        && im.oh * im.ow == g.n
                        && [im.sh, im.sw, im.dh, im.dw].iter().all(|&x| x >= 1);
                    if !ok {
                        c.errors.push(format!("{what}: the im2col geometry does not match k and n"));
                    }
                    // The image of each (batch, group): `channels x h x w` elements from its start.
                    let img = Operand { cols: 1, rows: 0, ..g.b.clone() };
                    operand(&mut c, &img, gd(1, im.channels * im.h * im.w), false, &what);
                }
            }
            operand(&mut c, &g.c, gd(g.m, g.n), true, &what);
            let mn = (g.m * g.n) as i64;
            if g.c.cols != 1 || g.c.rows != g.n as i64 || g.c.group != mn || g.c.batch != g.groups as i64 * mn {
                c.errors.push(format!("{what}: C must be dense row-major"));
            }
            if g.groups == 0 {
                c.errors.push(format!("{what}: no groups"));
            }
            if let Some(e) = &g.epilogue {
                if e.extent != g.batch * g.groups * g.m || e.bufs != g.bufs {
                    c.errors.push(format!("{what}: the epilogue must run over the rows of C with the gemm's buffers"));
                }
                if let Err(es) = verify(e) {
                    c.errors.extend(es);
                }
            }
            if c.errors.is_empty() {
                Ok(())
            } else {
                Err(c.errors)
            }
        }
        KernelOp::Attention(a) => {
            let what = format!("attention `{}`", a.name);
            let mut c = Ctx {
                bufs: &a.bufs,
                vars: Vec::new(),
                lets: Vec::new(),
                errors: Vec::new(),
                guarded: false,
                group: false,
            };
            let dense = |buf, r: u64, cols: u64| Operand {
                buf,
                offset: 0,
                batch: (r * cols) as i64,
                group: 0,
                rows: cols as i64,
                cols: 1,
            };
            operand(&mut c, &dense(a.q, a.sq, a.d), [a.heads, 1, a.sq, a.d], false, &what);
            operand(&mut c, &dense(a.k, a.sk, a.d), [a.heads, 1, a.sk, a.d], false, &what);
            operand(&mut c, &dense(a.v, a.sk, a.dv), [a.heads, 1, a.sk, a.dv], false, &what);
            operand(&mut c, &dense(a.o, a.sq, a.dv), [a.heads, 1, a.sq, a.dv], true, &what);
            if let Some((m, s, r, col)) = a.mask {
                let o = Operand { buf: m, offset: 0, batch: s, group: 0, rows: r, cols: col };
                operand(&mut c, &o, [a.heads, 1, a.sq, a.sk], false, &what);
            }
            if c.errors.is_empty() {
                Ok(())
            } else {
                Err(c.errors)
            }
        }
    }
}
