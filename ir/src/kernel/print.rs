//! The kernel IR's text form (what `sovc emit` writes as `.kir` and the audit quotes).

use super::*;
use std::fmt::Write;

fn index(ix: &Index) -> String {
    let mut parts: Vec<String> =
        ix.terms.iter().map(|&(v, c)| if c == 1 { format!("i{v}") } else { format!("{c}*i{v}") }).collect();
    if ix.offset != 0 || parts.is_empty() {
        parts.push(ix.offset.to_string());
    }
    parts.join(" + ")
}

fn expr(e: &Expr, out: &mut String) {
    match e {
        Expr::Const(c) => {
            let _ = write!(out, "{c:?}");
        }
        Expr::Load { buf, index: ix } => {
            let _ = write!(out, "%{buf}[{}]", index(ix));
        }
        Expr::Get(id) => {
            let _ = write!(out, "${id}");
        }
        Expr::Unary(op, a) => {
            let _ = write!(out, "{}(", op.as_str());
            expr(a, out);
            out.push(')');
        }
        Expr::Binary(op, a, b) => {
            let _ = write!(out, "{}(", op.as_str());
            expr(a, out);
            out.push_str(", ");
            expr(b, out);
            out.push(')');
        }
        Expr::Reduce { op, var, extent, body } => {
            let name = match op {
                Reduce::Add => "sum",
                Reduce::Max => "max",
            };
            let _ = write!(out, "{name}(i{var} < {extent}: ");
            expr(body, out);
            out.push(')');
        }
        Expr::Guard { conds, then, other } => {
            out.push_str("guard(");
            for (ix, bound) in conds {
                let _ = write!(out, "{} < {bound}, ", index(ix));
            }
            expr(then, out);
            let _ = write!(out, " else {other:?})");
        }
    }
}

fn stmts(body: &[Stmt], depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    for s in body {
        match s {
            Stmt::For { var, extent, body } => {
                let _ = writeln!(out, "{pad}for i{var} < {extent} {{");
                stmts(body, depth + 1, out);
                let _ = writeln!(out, "{pad}}}");
            }
            Stmt::Let { id, value } => {
                let _ = write!(out, "{pad}let ${id} = ");
                expr(value, out);
                out.push('\n');
            }
            Stmt::Store { buf, index: ix, value } => {
                let _ = write!(out, "{pad}%{buf}[{}] = ", index(ix));
                expr(value, out);
                out.push('\n');
            }
            Stmt::Barrier => {
                let _ = writeln!(out, "{pad}barrier");
            }
        }
    }
}

fn bufs(bs: &[Buf], out: &mut String) {
    for (i, b) in bs.iter().enumerate() {
        let acc = match b.access {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read_write",
        };
        let space = match b.space {
            Space::Global => "",
            Space::Shared => " shared",
        };
        let _ = writeln!(out, "  buf %{i} f32[{}] {acc}{space} \"{}\"", b.len, b.name);
    }
}

/// A loop kernel as text.
pub fn print(k: &Kernel) -> String {
    let mut out = format!("kernel \"{}\" parallel i0 < {}", k.name, k.extent);
    let l = &k.launch;
    if l.threads_per_group != 1 {
        let _ = write!(out, " threads {}", l.threads_per_group);
    }
    match l.vector {
        VectorLength::Native => {}
        VectorLength::Fixed(bits) => {
            let _ = write!(out, " vector {bits}b");
        }
        VectorLength::Scalable => out.push_str(" vector scalable"),
    }
    if let Some((r, c)) = l.tile {
        let _ = write!(out, " tile {r}x{c}");
    }
    out.push_str(" {\n");
    bufs(&k.bufs, &mut out);
    stmts(&k.body, 1, &mut out);
    out.push_str("}\n");
    out
}

fn operand(o: &Operand) -> String {
    format!("%{}[{} + {}*b + {}*g + {}*i + {}*j]", o.buf, o.offset, o.batch, o.group, o.rows, o.cols)
}

/// Any kernel as text.
pub fn print_op(k: &KernelOp) -> String {
    match k {
        KernelOp::Loop(k) => print(k),
        KernelOp::Gemm(g) => {
            let mut out =
                format!("gemm \"{}\" batch {} groups {} m {} n {} k {} {{\n", g.name, g.batch, g.groups, g.m, g.n, g.k);
            bufs(&g.bufs, &mut out);
            let _ = writeln!(out, "  a = {}", operand(&g.a));
            let _ = writeln!(out, "  b = {}{}", operand(&g.b), if g.b_const { " const" } else { "" });
            if let Some(c) = &g.b_im2col {
                let _ = writeln!(
                    out,
                    "  b im2col channels {} image {}x{} kernel {}x{} stride {}x{} pad {}x{} dilation {}x{} out {}x{}",
                    c.channels, c.h, c.w, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw, c.oh, c.ow
                );
            }
            let _ = writeln!(out, "  c = {}", operand(&g.c));
            if let Some(e) = &g.epilogue {
                out.push_str("  epilogue ");
                for (i, line) in print(e).lines().enumerate() {
                    if i > 0 {
                        out.push_str("  ");
                    }
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out.push_str("}\n");
            out
        }
        KernelOp::Attention(a) => {
            let mut out = format!(
                "attention \"{}\" slices {} sq {} sk {} d {} dv {} scale {:?} {{\n",
                a.name, a.heads, a.sq, a.sk, a.d, a.dv, a.scale
            );
            bufs(&a.bufs, &mut out);
            let _ = writeln!(out, "  q = %{}  k = %{}  v = %{}  o = %{}", a.q, a.k, a.v, a.o);
            if let Some((m, s, r, c)) = a.mask {
                let _ = writeln!(out, "  mask = %{m}[{s}*h + {r}*i + {c}*j]");
            }
            out.push_str("}\n");
            out
        }
    }
}
