//! Kernels of the kernel IR as WGSL compute shaders: the one structured shader form sovc writes, which
//! `naga` parses, validates and translates to Metal Shading Language and to SPIR-V ([`crate::shader`]).
//!
//! Every buffer is a `read_write` storage array of f32 at `@group(0) @binding(i)`. Thread `t` (from
//! the global invocation id, the dispatch folded into 2-D when it has more than 65,535 workgroups) runs
//! one iteration of the kernel's parallel dimension; threads past the count return at once.
//! Subexpressions become `let`s, reductions and guards `var`s with loops and `if`s, so a guarded load
//! is only executed inside its bounds. `erf` (no WGSL builtin) is the Abramowitz and Stegun 7.1.26
//! polynomial, as on the other GPU target.
//!
//! A contraction is tiled through threadgroup memory: workgroups of 16x16 threads compute 16x16 tiles
//! of C; per K step every thread stages one element of A's tile and one of B's (zero outside the
//! matrices and in a convolution's padding, B read through the implicit im2col), the workgroup meets
//! at `workgroupBarrier()`, each thread accumulates its 16 products in K order (the reference's
//! order), and meets again before the next step. Its epilogue is a second shader; attention is one
//! thread per query row.

use sovc_ir::kernel::{Attention, Expr, Gemm, Index, Kernel, KernelOp, Operand, Reduce, Stmt, Var};
use sovc_ir::{BinaryOp, UnaryOp};
use std::fmt::Write as _;

/// Threads per workgroup of the untiled shaders.
pub const WORKGROUP: u64 = 64;

/// Side of the contraction's square tiles (workgroups of `TILE x TILE` threads).
pub const TILE: u64 = 16;

/// One shader: WGSL source, the threads to launch (in workgroups of `workgroup`), its buffer count and
/// the bytes of threadgroup (workgroup) memory it declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shader {
    pub name: String,
    pub wgsl: String,
    pub threads: u64,
    pub bufs: usize,
    pub workgroup: u64,
    pub workgroup_memory: u64,
}

/// Workgroups of `workgroup` threads to dispatch for `threads`, as (x, y) (y > 1 past 65,535).
pub fn dispatch(threads: u64, workgroup: u64) -> (u64, u64) {
    let groups = threads.div_ceil(workgroup).max(1);
    let x = groups.min(65_535);
    (x, groups.div_ceil(x))
}

fn f32c(v: f32) -> String {
    if v.is_nan() {
        "bitcast<f32>(0x7fc00000u)".into()
    } else if v == f32::INFINITY {
        "bitcast<f32>(0x7f800000u)".into()
    } else if v == f32::NEG_INFINITY {
        "bitcast<f32>(0xff800000u)".into()
    } else {
        // The exact bits: WGSL float literals round, bit casts do not.
        format!("bitcast<f32>({}u)", v.to_bits())
    }
}

/// A shader body being written.
struct W {
    body: String,
    depth: usize,
    tmp: u32,
    /// Variables in scope: loop variables by number.
    vars: Vec<Var>,
}

impl W {
    fn line(&mut self, s: &str) {
        for _ in 0..self.depth {
            self.body.push_str("    ");
        }
        self.body.push_str(s);
        self.body.push('\n');
    }
    fn fresh(&mut self) -> String {
        self.tmp += 1;
        format!("x{}", self.tmp)
    }

    fn index(&self, ix: &Index) -> Result<String, String> {
        let mut s = format!("({}", ix.offset);
        for &(v, c) in &ix.terms {
            if !self.vars.contains(&v) {
                return Err(format!("loop variable v{v} is not in scope"));
            }
            let _ = write!(s, " + {c} * v{v}");
        }
        Ok(s + ")")
    }

    fn for_loop(
        &mut self,
        var: Var,
        extent: u64,
        body: &mut dyn FnMut(&mut W) -> Result<(), String>,
    ) -> Result<(), String> {
        self.line(&format!("for (var v{var}: i32 = 0; v{var} < {extent}; v{var}++) {{"));
        self.depth += 1;
        self.vars.push(var);
        body(self)?;
        self.vars.pop();
        self.depth -= 1;
        self.line("}");
        Ok(())
    }

    fn exp(&mut self, x: &str) -> String {
        let r = self.fresh();
        self.line(&format!("let {r} = exp({x});"));
        r
    }

    fn unary(&mut self, op: UnaryOp, x: &str) -> Result<String, String> {
        let e = match op {
            UnaryOp::Neg => format!("-{x}"),
            UnaryOp::Abs => format!("abs({x})"),
            UnaryOp::Identity => x.to_string(),
            UnaryOp::Relu => format!("max({x}, 0.0)"),
            UnaryOp::Sqrt => format!("sqrt({x})"),
            UnaryOp::Rsqrt => format!("inverseSqrt({x})"),
            UnaryOp::Reciprocal => format!("1.0 / {x}"),
            UnaryOp::Exp => return Ok(self.exp(x)),
            UnaryOp::Sigmoid => {
                let e = self.exp(&format!("-{x}"));
                format!("1.0 / (1.0 + {e})")
            }
            UnaryOp::Tanh => format!("tanh({x})"),
            UnaryOp::Erf => {
                let (a, t) = (self.fresh(), self.fresh());
                self.line(&format!("let {a} = abs({x});"));
                self.line(&format!("let {t} = 1.0 / fma({a}, {}, 1.0);", f32c(0.327_591_1)));
                let coef = [1.061_405_4_f32, -1.453_152_1, 1.421_413_8, -0.284_496_73, 0.254_829_6];
                let mut p = f32c(coef[0]);
                for c in &coef[1..] {
                    let n = self.fresh();
                    self.line(&format!("let {n} = fma({p}, {t}, {});", f32c(*c)));
                    p = n;
                }
                let e = self.exp(&format!("-({a} * {a})"));
                format!("sign({x}) * (1.0 - {p} * {t} * {e})")
            }
            op => return Err(format!("the metal target has no shader code for `{op:?}`")),
        };
        let r = self.fresh();
        self.line(&format!("let {r} = {e};"));
        Ok(r)
    }

    fn expr(&mut self, e: &Expr) -> Result<String, String> {
        match e {
            Expr::Const(c) => Ok(f32c(*c)),
            Expr::Load { buf, index } => {
                let r = self.fresh();
                let i = self.index(index)?;
                self.line(&format!("let {r} = b{buf}[{i}];"));
                Ok(r)
            }
            Expr::Get(id) => Ok(format!("l{id}")),
            Expr::Unary(op, a) => {
                let a = self.expr(a)?;
                self.unary(*op, &a)
            }
            Expr::Binary(op, a, b) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                let e = match op {
                    BinaryOp::Add => format!("{a} + {b}"),
                    BinaryOp::Sub => format!("{a} - {b}"),
                    BinaryOp::Mul => format!("{a} * {b}"),
                    BinaryOp::Div => format!("{a} / {b}"),
                    BinaryOp::Max => format!("max({a}, {b})"),
                    BinaryOp::Min => format!("min({a}, {b})"),
                    op => return Err(format!("the metal target has no shader code for `{op:?}`")),
                };
                let r = self.fresh();
                self.line(&format!("let {r} = {e};"));
                Ok(r)
            }
            Expr::Reduce { op, var, extent, body } => {
                let acc = self.fresh();
                let init = if *op == Reduce::Add { f32c(0.0) } else { f32c(f32::NEG_INFINITY) };
                self.line(&format!("var {acc}: f32 = {init};"));
                let op = *op;
                self.for_loop(*var, *extent, &mut |w| {
                    let v = w.expr(body)?;
                    match op {
                        Reduce::Add => w.line(&format!("{acc} = {acc} + {v};")),
                        Reduce::Max => w.line(&format!("{acc} = max({acc}, {v});")),
                    }
                    Ok(())
                })?;
                Ok(acc)
            }
            Expr::Guard { conds, then, other } => {
                let r = self.fresh();
                self.line(&format!("var {r}: f32 = {};", f32c(*other)));
                let mut c = Vec::new();
                for (ix, bound) in conds {
                    let i = self.index(ix)?;
                    c.push(format!("{i} >= 0 && {i} < {bound}"));
                }
                self.line(&format!("if ({}) {{", c.join(" && ")));
                self.depth += 1;
                let v = self.expr(then)?;
                self.line(&format!("{r} = {v};"));
                self.depth -= 1;
                self.line("}");
                Ok(r)
            }
        }
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), String> {
        match s {
            Stmt::For { var, extent, body } => self.for_loop(*var, *extent, &mut |w| {
                for s in body {
                    w.stmt(s)?;
                }
                Ok(())
            }),
            Stmt::Let { id, value } => {
                let v = self.expr(value)?;
                self.line(&format!("l{id} = {v};"));
                Ok(())
            }
            Stmt::Store { buf, index, value } => {
                let v = self.expr(value)?;
                let i = self.index(index)?;
                self.line(&format!("b{buf}[{i}] = {v};"));
                Ok(())
            }
            Stmt::Barrier => Err("a kernel with a barrier (groups of threads) is not written for metal yet".into()),
        }
    }
}

/// The whole shader around `body`, for `threads` threads over `nbufs` buffers, with `lets` f32 variables.
fn shader(name: &str, nbufs: usize, threads: u64, lets: &[u32], body: &str) -> Shader {
    let mut s = String::new();
    for i in 0..nbufs {
        let _ = writeln!(s, "@group(0) @binding({i}) var<storage, read_write> b{i}: array<f32>;");
    }
    let (x, _) = dispatch(threads, WORKGROUP);
    let _ = writeln!(
        s,
        "\n@compute @workgroup_size({WORKGROUP})\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {{\n    let t = i32(gid.x + gid.y * {});\n    if (t >= {threads}) {{\n        return;\n    }}",
        x * WORKGROUP
    );
    for id in lets {
        let _ = writeln!(s, "    var l{id}: f32;");
    }
    s.push_str(body);
    s.push_str("}\n");
    Shader { name: name.to_string(), wgsl: s, threads, bufs: nbufs, workgroup: WORKGROUP, workgroup_memory: 0 }
}

fn lets_of(body: &[Stmt], out: &mut Vec<u32>) {
    for s in body {
        match s {
            Stmt::Let { id, .. } if !out.contains(id) => out.push(*id),
            Stmt::For { body, .. } => lets_of(body, out),
            _ => {}
        }
    }
}

fn loop_kernel(k: &Kernel, name: &str) -> Result<Shader, String> {
    if k.launch.threads_per_group != 1 {
        return Err(format!(
            "kernel `{}`: groups of {} threads are not written yet",
            k.name, k.launch.threads_per_group
        ));
    }
    let mut w = W { body: String::new(), depth: 1, tmp: 0, vars: vec![0] };
    w.line("let v0 = t;");
    for s in &k.body {
        w.stmt(s).map_err(|e| format!("kernel `{}`: {e}", k.name))?;
    }
    let mut lets = Vec::new();
    lets_of(&k.body, &mut lets);
    Ok(shader(name, k.bufs.len(), k.extent, &lets, &w.body))
}

/// `offset + b·batch + g·group + i·rows (+ j·cols)` of `o` as WGSL.
fn operand(o: &Operand, i: &str, j: Option<&str>) -> String {
    let mut s = format!("({} + {} * b + {} * g + {} * {i}", o.offset, o.batch, o.group, o.rows);
    if let Some(j) = j {
        let _ = write!(s, " + {} * {j}", o.cols);
    }
    s + ")"
}

/// `B[k, j]` of batch entry `b`, group `g` into the f32 `var` named `x` (declared by the caller, zero):
/// the matrix element, or the image element under (k, j) for a convolution, left zero in the padding.
fn b_element(w: &mut W, gm: &Gemm) {
    match &gm.b_im2col {
        None => w.line(&format!("x = b{}[{}];", gm.b.buf, operand(&gm.b, "kb", Some("j")))),
        Some(c) => {
            // Row kb = (channel, kernel row, kernel column), column j = (output row, output column).
            w.line(&format!("let ch = kb / {};", c.kh * c.kw));
            w.line(&format!(
                "let ih = (j / {}) * {} + ((kb / {}) % {}) * {} - {};",
                c.ow, c.sh, c.kw, c.kh, c.dh, c.ph
            ));
            w.line(&format!("let iw = (j % {}) * {} + (kb % {}) * {} - {};", c.ow, c.sw, c.kw, c.dw, c.pw));
            w.line(&format!("if (ih >= 0 && ih < {} && iw >= 0 && iw < {}) {{", c.h, c.w));
            w.line(&format!(
                "    x = b{}[{} + {} * b + {} * g + ch * {} + ih * {} + iw];",
                gm.b.buf,
                gm.b.offset,
                gm.b.batch,
                gm.b.group,
                c.h * c.w,
                c.w
            ));
            w.line("}");
        }
    }
}

fn gemm(gm: &Gemm, name: &str) -> Result<Shader, String> {
    let (mt, nt, kt) = (gm.m.div_ceil(TILE), gm.n.div_ceil(TILE), gm.k.div_ceil(TILE));
    let blocks = gm.batch * gm.groups * mt * nt;
    let wg = TILE * TILE;
    let (x, _) = dispatch(blocks * wg, wg);
    let mut w = W { body: String::new(), depth: 1, tmp: 0, vars: Vec::new() };
    // Whole workgroups past the last tile return together (uniform control flow for the barriers).
    w.line(&format!("let blk = i32(wid.x + wid.y * {x});"));
    w.line(&format!("if (blk >= {blocks}) {{"));
    w.line("    return;");
    w.line("}");
    w.line(&format!("let jt = blk % {nt};"));
    w.line(&format!("let it = (blk / {nt}) % {mt};"));
    w.line(&format!("let g = (blk / {}) % {};", nt * mt, gm.groups));
    w.line(&format!("let b = blk / {};", nt * mt * gm.groups));
    w.line(&format!("let tx = i32(lid) % {TILE};"));
    w.line(&format!("let ty = i32(lid) / {TILE};"));
    w.line(&format!("let i = it * {TILE} + ty;"));
    w.line(&format!("let j = jt * {TILE} + tx;"));
    w.line(&format!("var acc: f32 = {};", f32c(0.0)));
    w.line(&format!("for (var k0: i32 = 0; k0 < {kt}; k0++) {{"));
    w.depth += 1;
    w.line(&format!("let ka = k0 * {TILE} + tx;"));
    w.line(&format!("var a: f32 = {};", f32c(0.0)));
    w.line(&format!("if (i < {} && ka < {}) {{", gm.m, gm.k));
    w.line(&format!("    a = b{}[{} + {} * ka];", gm.a.buf, operand(&gm.a, "i", None), gm.a.cols));
    w.line("}");
    w.line(&format!("sa[ty * {TILE} + tx] = a;"));
    w.line(&format!("let kb = k0 * {TILE} + ty;"));
    w.line(&format!("var x: f32 = {};", f32c(0.0)));
    w.line(&format!("if (kb < {} && j < {}) {{", gm.k, gm.n));
    w.depth += 1;
    b_element(&mut w, gm);
    w.depth -= 1;
    w.line("}");
    w.line(&format!("sb[ty * {TILE} + tx] = x;"));
    w.line("workgroupBarrier();");
    w.line(&format!(
        "for (var kk: i32 = 0; kk < {TILE}; kk++) {{ acc = fma(sa[ty * {TILE} + kk], sb[kk * {TILE} + tx], acc); }}"
    ));
    w.line("workgroupBarrier();");
    w.depth -= 1;
    w.line("}");
    w.line(&format!("if (i < {} && j < {}) {{", gm.m, gm.n));
    w.line(&format!("    b{}[{}] = acc;", gm.c.buf, operand(&gm.c, "i", Some("j"))));
    w.line("}");
    let mut s = String::new();
    for i in 0..gm.bufs.len() {
        let _ = writeln!(s, "@group(0) @binding({i}) var<storage, read_write> b{i}: array<f32>;");
    }
    let _ = writeln!(
        s,
        "var<workgroup> sa: array<f32, {n}>;\nvar<workgroup> sb: array<f32, {n}>;\n\n@compute @workgroup_size({wg})\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{",
        n = TILE * TILE
    );
    s.push_str(&w.body);
    s.push_str("}\n");
    Ok(Shader {
        name: name.to_string(),
        wgsl: s,
        threads: blocks * wg,
        bufs: gm.bufs.len(),
        workgroup: wg,
        workgroup_memory: 2 * TILE * TILE * 4,
    })
}

fn attention(at: &Attention, name: &str) -> Result<Shader, String> {
    let mut w = W { body: String::new(), depth: 1, tmp: 0, vars: Vec::new() };
    let (d, dv, sk) = (at.d, at.dv, at.sk);
    w.line(&format!("let h = t / {};", at.sq));
    w.line(&format!("let i = t % {};", at.sq));
    let mask = match at.mask {
        Some((mb, ss, rs, cs)) => format!(" + b{mb}[{ss} * h + {rs} * i + {cs} * j]"),
        None => String::new(),
    };
    let score = |w: &mut W| {
        w.line(&format!("var dot: f32 = {};", f32c(0.0)));
        w.line(&format!(
            "for (var c: i32 = 0; c < {d}; c++) {{ dot = fma(b{}[t * {d} + c], b{}[(h * {sk} + j) * {d} + c], dot); }}",
            at.q, at.k
        ));
        w.line(&format!("let s = dot * {}{mask};", f32c(at.scale)));
    };
    w.line(&format!("var m: f32 = {};", f32c(f32::NEG_INFINITY)));
    w.line(&format!("for (var j: i32 = 0; j < {sk}; j++) {{"));
    w.depth += 1;
    score(&mut w);
    w.line("m = max(m, s);");
    w.depth -= 1;
    w.line("}");
    w.line(&format!("for (var c: i32 = 0; c < {dv}; c++) {{ b{}[t * {dv} + c] = 0.0; }}", at.o));
    w.line(&format!("var l: f32 = {};", f32c(0.0)));
    w.line(&format!("for (var j: i32 = 0; j < {sk}; j++) {{"));
    w.depth += 1;
    score(&mut w);
    w.line("let p = exp(s - m);");
    w.line("l = l + p;");
    w.line(&format!(
        "for (var c: i32 = 0; c < {dv}; c++) {{ b{o}[t * {dv} + c] = fma(p, b{v}[(h * {sk} + j) * {dv} + c], b{o}[t * {dv} + c]); }}",
        o = at.o,
        v = at.v
    ));
    w.depth -= 1;
    w.line("}");
    w.line(&format!(
        "for (var c: i32 = 0; c < {dv}; c++) {{ b{o}[t * {dv} + c] = b{o}[t * {dv} + c] / l; }}",
        o = at.o
    ));
    Ok(shader(name, at.bufs.len(), at.heads * at.sq, &[], &w.body))
}

/// The shaders of one kernel (`name`, and `name_epilogue` for a contraction's epilogue).
pub fn shaders(op: &KernelOp, name: &str) -> Result<Vec<Shader>, String> {
    match op {
        KernelOp::Loop(k) => Ok(vec![loop_kernel(k, name)?]),
        KernelOp::Gemm(g) => {
            let mut v = vec![gemm(g, name)?];
            if let Some(e) = &g.epilogue {
                v.push(loop_kernel(e, &format!("{name}_epilogue"))?);
            }
            Ok(v)
        }
        KernelOp::Attention(a) => Ok(vec![attention(a, name)?]),
    }
}
