//! A direct interpreter of the kernel IR on f32 vectors: the oracle for code generators (their output
//! is compared with it kernel by kernel) and a check of lowering against the graph interpreter.

use super::*;

/// One scalar op of a loop kernel, computed in f64 and rounded to f32.
pub fn unary(op: UnaryOp, x: f32) -> f32 {
    let x = x as f64;
    (match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Erf => crate::interp::elementwise::erf(x),
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Identity => x,
        _ => f64::NAN,
    }) as f32
}

pub fn binary(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
        _ => f32::NAN,
    }
}

struct Env<'a> {
    bufs: &'a mut [Vec<f32>],
    vars: Vec<i64>,
    lets: Vec<f32>,
}

impl Env<'_> {
    fn at(&self, ix: &Index) -> usize {
        let o = ix.offset + ix.terms.iter().map(|&(v, c)| c * self.vars[v as usize]).sum::<i64>();
        o as usize
    }

    fn expr(&mut self, e: &Expr) -> f32 {
        match e {
            Expr::Const(c) => *c,
            Expr::Load { buf, index } => {
                let at = self.at(index);
                self.bufs[*buf as usize][at]
            }
            Expr::Get(id) => self.lets[*id as usize],
            Expr::Unary(op, a) => {
                let a = self.expr(a);
                unary(*op, a)
            }
            Expr::Binary(op, a, b) => {
                let a = self.expr(a);
                let b = self.expr(b);
                binary(*op, a, b)
            }
            Expr::Reduce { op, var, extent, body } => {
                let mut acc = match op {
                    Reduce::Add => 0.0,
                    Reduce::Max => f32::NEG_INFINITY,
                };
                for i in 0..*extent {
                    self.vars[*var as usize] = i as i64;
                    let x = self.expr(body);
                    acc = match op {
                        Reduce::Add => acc + x,
                        Reduce::Max => acc.max(x),
                    };
                }
                acc
            }
            Expr::Guard { conds, then, other } => {
                let inside = conds.iter().all(|(ix, bound)| {
                    let i = ix.offset + ix.terms.iter().map(|&(v, c)| c * self.vars[v as usize]).sum::<i64>();
                    i >= 0 && (i as u64) < *bound
                });
                if inside {
                    self.expr(then)
                } else {
                    *other
                }
            }
        }
    }

    fn stmts(&mut self, body: &[Stmt]) {
        for s in body {
            match s {
                Stmt::For { var, extent, body } => {
                    for i in 0..*extent {
                        self.vars[*var as usize] = i as i64;
                        self.stmts(body);
                    }
                }
                Stmt::Let { id, value } => {
                    let v = self.expr(value);
                    self.lets[*id as usize] = v;
                }
                Stmt::Store { buf, index, value } => {
                    let v = self.expr(value);
                    let at = self.at(index);
                    self.bufs[*buf as usize][at] = v;
                }
                // One thread runs the whole group here, in order, so a barrier has nothing to wait for.
                Stmt::Barrier => {}
            }
        }
    }
}

fn expr_vars(e: &Expr, vars: &mut u32) {
    e.visit(&mut |x| {
        if let Expr::Reduce { var, .. } = x {
            *vars = (*vars).max(*var + 1);
        }
    })
}

fn max_ids(body: &[Stmt], vars: &mut u32, lets: &mut u32) {
    for s in body {
        match s {
            Stmt::For { var, body, .. } => {
                *vars = (*vars).max(*var + 1);
                max_ids(body, vars, lets);
            }
            Stmt::Let { id, value } => {
                expr_vars(value, vars);
                *lets = (*lets).max(*id + 1);
            }
            Stmt::Store { value, .. } => expr_vars(value, vars),
            Stmt::Barrier => {}
        }
    }
}

/// Runs iterations `lo..hi` of a verified loop kernel on `bufs` (one vector per buffer parameter).
pub fn eval(k: &Kernel, bufs: &mut [Vec<f32>], lo: u64, hi: u64) {
    let (mut nv, mut nl) = (1, 0);
    max_ids(&k.body, &mut nv, &mut nl);
    let mut env = Env { bufs, vars: vec![0; nv as usize], lets: vec![0.0; nl as usize] };
    for i in lo..hi {
        env.vars[0] = i as i64;
        env.stmts(&k.body);
    }
}

fn at(o: &Operand, b: u64, g: u64, i: u64, j: u64) -> usize {
    (o.offset as i64 + b as i64 * o.batch + g as i64 * o.group + i as i64 * o.rows + j as i64 * o.cols) as usize
}

fn b_elem(g: &Gemm, bufs: &[Vec<f32>], b: u64, grp: u64, p: u64, j: u64) -> f32 {
    let buf = &bufs[g.b.buf as usize];
    match &g.b_im2col {
        None => buf[at(&g.b, b, grp, p, j)],
        Some(im) => {
            let (c, rs) = (p / (im.kh * im.kw), p % (im.kh * im.kw));
            let (r, s) = (rs / im.kw, rs % im.kw);
            let (y, x) = (j / im.ow, j % im.ow);
            let iy = (y * im.sh + r * im.dh) as i64 - im.ph as i64;
            let ix = (x * im.sw + s * im.dw) as i64 - im.pw as i64;
            if iy < 0 || ix < 0 || iy >= im.h as i64 || ix >= im.w as i64 {
                return 0.0;
            }
            let base = at(&Operand { rows: 0, cols: 0, ..g.b.clone() }, b, grp, 0, 0);
            buf[base + ((c * im.h + iy as u64) * im.w + ix as u64) as usize]
        }
    }
}

/// Runs a whole verified kernel of any form.
pub fn eval_op(k: &KernelOp, bufs: &mut [Vec<f32>]) {
    match k {
        KernelOp::Loop(k) => eval(k, bufs, 0, k.extent),
        KernelOp::Gemm(g) => {
            for b in 0..g.batch {
                for grp in 0..g.groups {
                    for i in 0..g.m {
                        for j in 0..g.n {
                            let mut s = 0f32;
                            for p in 0..g.k {
                                s += bufs[g.a.buf as usize][at(&g.a, b, grp, i, p)] * b_elem(g, bufs, b, grp, p, j);
                            }
                            let c = at(&g.c, b, grp, i, j);
                            bufs[g.c.buf as usize][c] = s;
                        }
                    }
                }
            }
            if let Some(e) = &g.epilogue {
                eval(e, bufs, 0, e.extent);
            }
        }
        KernelOp::Attention(a) => {
            let (sq, sk, d, dv) = (a.sq as usize, a.sk as usize, a.d as usize, a.dv as usize);
            for h in 0..a.heads as usize {
                for i in 0..sq {
                    let mut s: Vec<f32> = (0..sk)
                        .map(|j| {
                            let dot: f32 = (0..d)
                                .map(|p| {
                                    bufs[a.q as usize][(h * sq + i) * d + p] * bufs[a.k as usize][(h * sk + j) * d + p]
                                })
                                .sum();
                            let m = a.mask.map_or(0.0, |(m, hs, rs, cs)| {
                                bufs[m as usize][(h as i64 * hs + i as i64 * rs + j as i64 * cs) as usize]
                            });
                            dot * a.scale + m
                        })
                        .collect();
                    let mx = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut tot = 0.0;
                    for x in &mut s {
                        *x = (*x - mx).exp();
                        tot += *x;
                    }
                    for c in 0..dv {
                        let o: f32 = (0..sk).map(|j| s[j] * bufs[a.v as usize][(h * sk + j) * dv + c]).sum();
                        bufs[a.o as usize][(h * sq + i) * dv + c] = o / tot;
                    }
                }
            }
        }
    }
}
