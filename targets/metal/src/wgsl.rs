//! Kernels of the kernel IR as WGSL compute shaders: the one structured shader form sovc writes, which
//! `naga` parses, validates and translates to Metal Shading Language and to SPIR-V ([`crate::translate`]).
//!
//! Every buffer is a `read_write` storage array of f32 at `@group(0) @binding(i)`. Subexpressions
//! become `let`s, reductions and guards `var`s with loops and `if`s, so a guarded load is only executed
//! inside its bounds. `erf` (no WGSL builtin) is the Abramowitz and Stegun 7.1.26 polynomial, as on the
//! other GPU target. A loop kernel is written in one of two forms:
//!
//! - **one thread per iteration** of the parallel dimension (workgroups of [`WORKGROUP`]; thread `t`
//!   from the global invocation id, the dispatch folded into 2-D past 65,535 workgroups; threads past
//!   the count return at once): elementwise kernels whose iterations are a few operations each;
//! - **one threadgroup per iteration** ([`GROUP`] threads; [`cooperative`] says when): the threads
//!   split the iteration's top-level loops (a perfect nest flattened first, so a 16x16 transpose row
//!   is 256 items; a short nest of loops, like the boundary-peeled rows of a depthwise convolution,
//!   is run by all threads in step and the loops inside are split), and a reduction of at least half
//!   a group's elements at the top level (a layer norm's mean and variance, a softmax's maximum and
//!   sum) is computed together: each thread combines a strided share in order, the shares
//!   are combined in threadgroup memory by a tree of halving steps with a `workgroupBarrier()` after
//!   each, and every thread reads the result. Top-level lets are computed by every thread, top-level
//!   stores by thread 0.
//!
//! Contractions ([`crate::gemm`]) and attention ([`crate::attention`]) have their own forms.

use crate::Precision;
use sovc_ir::kernel::{Expr, Index, Kernel, KernelOp, Reduce, Stmt, Var};
use sovc_ir::{BinaryOp, UnaryOp};
use std::fmt::Write as _;

/// Threads per workgroup of the shaders with one thread per iteration.
pub const WORKGROUP: u64 = 64;

/// Threads per threadgroup of a cooperative loop kernel (a power of two: the reduction tree halves it).
pub const GROUP: u64 = 64;

/// One shader: WGSL source, the threads to launch (in workgroups of `workgroup`), its buffer count and
/// the bytes of each threadgroup (workgroup) memory variable it declares, in declaration order (the
/// order of naga's MSL `threadgroup` arguments: a Metal encoder sets each one's length by index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shader {
    pub name: String,
    pub wgsl: String,
    pub threads: u64,
    pub bufs: usize,
    pub workgroup: u64,
    pub workgroup_vars: Vec<u64>,
}

impl Shader {
    /// Bytes of threadgroup memory in all.
    pub fn workgroup_memory(&self) -> u64 {
        self.workgroup_vars.iter().sum()
    }
}

/// Workgroups of `workgroup` threads to dispatch for `threads`, as (x, y) (y > 1 past 65,535).
pub fn dispatch(threads: u64, workgroup: u64) -> (u64, u64) {
    let groups = threads.div_ceil(workgroup).max(1);
    let x = groups.min(65_535);
    (x, groups.div_ceil(x))
}

pub(crate) fn f32c(v: f32) -> String {
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
pub(crate) struct W {
    pub body: String,
    pub depth: usize,
    tmp: u32,
    /// Variables in scope: loop variables by number.
    pub vars: Vec<Var>,
    /// At the top level of a cooperative kernel: reductions here are computed by the whole threadgroup
    /// (uniform control flow, so the barriers are legal).
    coop: bool,
    /// Whether a cooperative reduction was written (the shader declares the threadgroup array).
    pub reduced: bool,
    /// A load of this buffer at this element reads the WGSL variable instead (a contraction's
    /// accumulator, for its fused epilogue).
    pub subst: Option<(u32, Index, &'static str)>,
}

impl W {
    pub fn new(vars: Vec<Var>) -> W {
        W { body: String::new(), depth: 1, tmp: 0, vars, coop: false, reduced: false, subst: None }
    }

    pub fn line(&mut self, s: &str) {
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

    pub fn index(&self, ix: &Index) -> Result<String, String> {
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

    pub fn expr(&mut self, e: &Expr) -> Result<String, String> {
        match e {
            Expr::Const(c) => Ok(f32c(*c)),
            Expr::Load { buf, index } => {
                if let Some((b, ix, name)) = &self.subst {
                    if b == buf && same_index(ix, index) {
                        return Ok(name.to_string());
                    }
                }
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
            Expr::Reduce { op, var, extent, body } if self.coop && *extent >= GROUP / 2 => {
                self.cooperative_reduce(*op, *var, *extent, body)
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
                let coop = std::mem::replace(&mut self.coop, false);
                let v = self.expr(then);
                self.coop = coop;
                self.line(&format!("{r} = {};", v?));
                self.depth -= 1;
                self.line("}");
                Ok(r)
            }
        }
    }

    pub fn stmt(&mut self, s: &Stmt) -> Result<(), String> {
        match s {
            Stmt::For { var, extent, body } if self.coop => self.cooperative_for(*var, *extent, body),
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
                // At the top level of a cooperative kernel every thread has the value; thread 0 stores it.
                if self.coop {
                    self.line(&format!("if (tl == 0) {{ b{buf}[{i}] = {v}; }}"));
                } else {
                    self.line(&format!("b{buf}[{i}] = {v};"));
                }
                Ok(())
            }
            Stmt::Barrier => Err("a kernel with a barrier (groups of threads) is not written for metal yet".into()),
        }
    }
}

impl W {
    /// A reduction the whole threadgroup computes: thread `tl` combines elements `tl, tl + GROUP, ...`
    /// in order, then the shares meet in `red` by halving steps; every thread reads the result.
    fn cooperative_reduce(&mut self, op: Reduce, var: Var, extent: u64, body: &Expr) -> Result<String, String> {
        self.reduced = true;
        let acc = self.fresh();
        let init = if op == Reduce::Add { f32c(0.0) } else { f32c(f32::NEG_INFINITY) };
        let combine = |a: &str, b: &str| match op {
            Reduce::Add => format!("{a} + {b}"),
            Reduce::Max => format!("max({a}, {b})"),
        };
        self.line(&format!("var {acc}: f32 = {init};"));
        self.line(&format!("for (var v{var}: i32 = tl; v{var} < {extent}; v{var} += {GROUP}) {{"));
        self.depth += 1;
        self.vars.push(var);
        self.coop = false;
        let v = self.expr(body);
        self.coop = true;
        self.vars.pop();
        let v = v?;
        self.line(&format!("{acc} = {};", combine(&acc, &v)));
        self.depth -= 1;
        self.line("}");
        self.line(&format!("red[tl] = {acc};"));
        self.line("workgroupBarrier();");
        let mut half = GROUP / 2;
        while half > 0 {
            self.line(&format!(
                "if (tl < {half}) {{ red[tl] = {}; }}",
                combine("red[tl]", &format!("red[tl + {half}]"))
            ));
            self.line("workgroupBarrier();");
            half /= 2;
        }
        let r = self.fresh();
        self.line(&format!("let {r} = red[0];"));
        // Nobody overwrites `red` for the next reduction before every thread has read this one.
        self.line("workgroupBarrier();");
        Ok(r)
    }

    /// A top-level loop of a cooperative kernel: the perfect nest under it becomes one loop over its
    /// items, split over the threads; a nest of fewer items than half a group whose body is loops again
    /// is run by every thread in step, and the loops inside are split instead.
    fn cooperative_for(&mut self, var: Var, extent: u64, body: &[Stmt]) -> Result<(), String> {
        let mut nest = vec![(var, extent)];
        let mut inner_body = body;
        while let [Stmt::For { var, extent, body }] = inner_body {
            nest.push((*var, *extent));
            inner_body = body;
        }
        let items: u64 = nest.iter().map(|n| n.1).product();
        if items < GROUP / 2 && inner_body.iter().all(|s| matches!(s, Stmt::For { .. })) {
            return self.for_loop(var, extent, &mut |w| body.iter().try_for_each(|s| w.stmt(s)));
        }
        let f = self.fresh();
        self.line(&format!("for (var {f}: i32 = tl; {f} < {items}; {f} += {GROUP}) {{"));
        self.depth += 1;
        let mut inner = 1;
        for &(var, extent) in nest.iter().rev() {
            self.line(&format!("let v{var} = ({f} / {inner}) % {extent};"));
            inner *= extent;
        }
        self.coop = false;
        self.vars.extend(nest.iter().map(|n| n.0));
        let r = inner_body.iter().try_for_each(|s| self.stmt(s));
        self.vars.truncate(self.vars.len() - nest.len());
        self.coop = true;
        r?;
        self.depth -= 1;
        self.line("}");
        Ok(())
    }
}

/// Whether two element offsets are the same affine function.
pub(crate) fn same_index(a: &Index, b: &Index) -> bool {
    Index::new(a.offset, &a.terms) == Index::new(b.offset, &b.terms)
}

/// Whether a loop kernel is written with one threadgroup per iteration: an iteration goes over at least
/// half a group's worth of elements (its loops and reductions), no buffer is both read and written
/// (threads of a group do not see each other's stores), no element is stored twice in an iteration
/// (two threads could write it in either order), and top-level statements only read top-level lets.
pub fn cooperative(k: &Kernel) -> bool {
    /// Elements an iteration's statement goes over (loops times their bodies, reductions' extents).
    fn work(s: &Stmt) -> u64 {
        match s {
            Stmt::For { extent, body, .. } => extent * body.iter().map(work).sum::<u64>().max(1),
            Stmt::Let { value: e, .. } | Stmt::Store { value: e, .. } => {
                let mut most = 1;
                e.visit(&mut |x| {
                    if let Expr::Reduce { extent, .. } = x {
                        most = most.max(*extent);
                    }
                });
                most
            }
            Stmt::Barrier => 0,
        }
    }
    fn accesses(s: &Stmt, loads: &mut Vec<u32>, stores: &mut Vec<u32>, gets: &mut Vec<u32>) {
        let expr = |e: &Expr, loads: &mut Vec<u32>, gets: &mut Vec<u32>| {
            e.visit(&mut |x| match x {
                Expr::Load { buf, .. } => loads.push(*buf),
                Expr::Get(id) => gets.push(*id),
                _ => {}
            })
        };
        match s {
            Stmt::For { body, .. } => body.iter().for_each(|s| accesses(s, loads, stores, &mut Vec::new())),
            Stmt::Let { value, .. } => expr(value, loads, gets),
            Stmt::Store { buf, value, .. } => {
                stores.push(*buf);
                expr(value, loads, gets)
            }
            Stmt::Barrier => {}
        }
    }
    if k.launch.threads_per_group != 1 || k.body.iter().map(work).sum::<u64>() < GROUP / 2 {
        return false;
    }
    let (mut loads, mut stores, mut gets) = (Vec::new(), Vec::new(), Vec::new());
    k.body.iter().for_each(|s| accesses(s, &mut loads, &mut stores, &mut gets));
    let top_lets: Vec<u32> = k
        .body
        .iter()
        .filter_map(|s| match s {
            Stmt::Let { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    !loads.iter().any(|b| stores.contains(b)) && gets.iter().all(|g| top_lets.contains(g)) && stores_once(&k.body)
}

/// Whether one iteration of `body` (variable 0 fixed) stores each element of each buffer at most once.
/// One store statement: its index must be injective over its loops (each stride, by magnitude, beyond
/// the span of the smaller ones). Several (a loop peeled at its borders): every element they store is
/// listed, up to 65,536 of them; more is taken as a possible overlap.
fn stores_once(body: &[Stmt]) -> bool {
    fn walk<'a>(body: &'a [Stmt], loops: &mut Vec<(Var, u64)>, out: &mut Vec<(Vec<(Var, u64)>, &'a Stmt)>) {
        for s in body {
            match s {
                Stmt::For { var, extent, body } => {
                    loops.push((*var, *extent));
                    walk(body, loops, out);
                    loops.pop();
                }
                Stmt::Store { .. } => out.push((loops.clone(), s)),
                _ => {}
            }
        }
    }
    let mut stores = Vec::new();
    walk(body, &mut Vec::new(), &mut stores);
    if let [(loops, Stmt::Store { index, .. })] = stores.as_slice() {
        let mut spans: Vec<(u64, u64)> = loops.iter().map(|&(v, e)| (index.coeff(v).unsigned_abs(), e)).collect();
        spans.sort();
        let mut reach = 0u64;
        for (c, e) in spans {
            if e > 1 && c <= reach {
                return false;
            }
            reach = reach.saturating_add(c.saturating_mul(e.saturating_sub(1)));
        }
        return true;
    }
    let mut seen = std::collections::HashSet::new();
    for (loops, s) in &stores {
        let Stmt::Store { buf, index, .. } = s else { continue };
        if loops.iter().any(|l| l.1 == 0) {
            continue;
        }
        let mut at = vec![0u64; loops.len()];
        'points: loop {
            let e = index.offset + loops.iter().zip(&at).map(|(&(v, _), &i)| index.coeff(v) * i as i64).sum::<i64>();
            if !seen.insert((*buf, e)) || seen.len() > 65_536 {
                return false;
            }
            // The next point of the loop nest, innermost loop fastest.
            let mut d = loops.len();
            loop {
                if d == 0 {
                    break 'points;
                }
                d -= 1;
                at[d] += 1;
                if at[d] < loops[d].1 {
                    break;
                }
                at[d] = 0;
            }
        }
    }
    true
}

/// The whole shader around `body`, for `threads` threads over `nbufs` buffers, with `lets` f32 variables.
pub(crate) fn shader(name: &str, nbufs: usize, threads: u64, lets: &[u32], body: &str) -> Shader {
    let mut s = buffers(nbufs);
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
    Shader { name: name.to_string(), wgsl: s, threads, bufs: nbufs, workgroup: WORKGROUP, workgroup_vars: Vec::new() }
}

pub(crate) fn lets_of(body: &[Stmt], out: &mut Vec<u32>) {
    for s in body {
        match s {
            Stmt::Let { id, .. } if !out.contains(id) => out.push(*id),
            Stmt::For { body, .. } => lets_of(body, out),
            _ => {}
        }
    }
}

pub(crate) fn loop_kernel(k: &Kernel, name: &str) -> Result<Shader, String> {
    if k.launch.threads_per_group != 1 {
        return Err(format!(
            "kernel `{}`: groups of {} threads are not written yet",
            k.name, k.launch.threads_per_group
        ));
    }
    let mut lets = Vec::new();
    lets_of(&k.body, &mut lets);
    if !cooperative(k) {
        let mut w = W::new(vec![0]);
        w.line("let v0 = t;");
        for s in &k.body {
            w.stmt(s).map_err(|e| format!("kernel `{}`: {e}", k.name))?;
        }
        return Ok(shader(name, k.bufs.len(), k.extent, &lets, &w.body));
    }
    let mut w = W::new(vec![0]);
    w.coop = true;
    for s in &k.body {
        w.stmt(s).map_err(|e| format!("kernel `{}`: {e}", k.name))?;
    }
    let groups = Groups {
        workgroup: GROUP,
        groups: k.extent,
        index: "v0",
        shared: if w.reduced { vec![("red", Precision::F32, GROUP)] } else { Vec::new() },
    };
    Ok(groups.shader(name, k.bufs.len(), "let tl = i32(lid);", &lets, &w.body))
}

/// How a shader whose threads work in groups is launched: `groups` threadgroups of `workgroup` threads
/// (2-D past 65,535 groups), the group's number known to the body as `index`, and its threadgroup
/// arrays (name, element type, length).
pub(crate) struct Groups<'a> {
    pub workgroup: u64,
    pub groups: u64,
    pub index: &'a str,
    pub shared: Vec<(&'a str, Precision, u64)>,
}

impl Groups<'_> {
    /// The whole shader: `enable f16;` when an array is f16, the buffers, the arrays, the entry point;
    /// groups past the last return together (so the body's barriers stay in uniform control flow),
    /// then `prologue`, the `lets` as f32 variables, and `body`.
    pub(crate) fn shader(&self, name: &str, bufs: usize, prologue: &str, lets: &[u32], body: &str) -> Shader {
        let f16 = self.shared.iter().any(|a| a.1 == Precision::F16);
        let mut s = if f16 { Precision::F16.enable() } else { String::new() };
        s += &buffers(bufs);
        for (array, ty, len) in &self.shared {
            let _ = writeln!(s, "var<workgroup> {array}: array<{}, {len}>;", ty.wgsl());
        }
        let (x, _) = dispatch(self.groups * self.workgroup, self.workgroup);
        let (wg, i, n) = (self.workgroup, self.index, self.groups);
        let _ = writeln!(
            s,
            "\n@compute @workgroup_size({wg})\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{\n    let {i} = i32(wid.x + wid.y * {x});\n    if ({i} >= {n}) {{\n        return;\n    }}"
        );
        if !prologue.is_empty() {
            let _ = writeln!(s, "    {prologue}");
        }
        for id in lets {
            let _ = writeln!(s, "    var l{id}: f32;");
        }
        s.push_str(body);
        s.push_str("}\n");
        Shader {
            name: name.to_string(),
            wgsl: s,
            threads: self.groups * self.workgroup,
            bufs,
            workgroup: self.workgroup,
            workgroup_vars: self.shared.iter().map(|(_, ty, len)| len * ty.bytes()).collect(),
        }
    }
}

/// The storage buffer declarations of a shader over `n` buffers.
pub(crate) fn buffers(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let _ = writeln!(s, "@group(0) @binding({i}) var<storage, read_write> b{i}: array<f32>;");
    }
    s
}

/// The shaders of one kernel (`name`, and `name_epilogue` for a contraction's epilogue when it cannot
/// be fused), contractions and attention in `precision`.
pub fn shaders(op: &KernelOp, name: &str, precision: Precision) -> Result<Vec<Shader>, String> {
    match op {
        KernelOp::Loop(k) => Ok(vec![loop_kernel(k, name)?]),
        KernelOp::Gemm(g) => crate::gemm::shaders(g, name, precision),
        KernelOp::Attention(a) => Ok(vec![crate::attention::shader(a, name, precision)?]),
    }
}
