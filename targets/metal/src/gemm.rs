//! Contractions (matmuls and convolutions) as WGSL: workgroups of 16x16 threads compute 16x16 tiles of
//! C. Per K step every thread stages one element of A's tile and one of B's in threadgroup memory
//! (zero outside the matrices and in a convolution's padding, B read through the implicit im2col; as
//! f16 under `--precision f16`, rounded once), the workgroup meets at `workgroupBarrier()`, each thread
//! accumulates its 16 products in K order in f32 (the reference's order), and meets again before the
//! next step. A row epilogue (bias, activation, residual) that only touches its own element of C is
//! fused: the thread applies it to its accumulator before the one store; any other epilogue is a
//! second shader over C's rows.

use crate::wgsl::{f32c, lets_of, loop_kernel, same_index, Groups, Shader, W};
use crate::Precision;
use sovc_ir::kernel::{Expr, Gemm, Index, Kernel, Operand, Stmt};
use std::fmt::Write as _;

/// Side of the contraction's square tiles (workgroups of `TILE x TILE` threads).
pub const TILE: u64 = 16;

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

/// The epilogue's one loop (variable, statements) when it can run on each thread's own element of C:
/// C dense row-major, the epilogue one loop over C's columns whose statements store only C and read and
/// write it only at element (row, column).
fn fusable(gm: &Gemm, e: &Kernel) -> Option<(u32, Vec<Stmt>)> {
    let c = &gm.c;
    let (m, n) = (gm.m as i64, gm.n as i64);
    let dense = c.cols == 1
        && c.rows == n
        && (gm.groups == 1 || c.group == m * n)
        && (gm.batch == 1 || c.batch == gm.groups as i64 * m * n);
    if !dense {
        return None;
    }
    let [Stmt::For { var, extent, body }] = e.body.as_slice() else { return None };
    if *extent != gm.n {
        return None;
    }
    let own = Index::new(c.offset as i64, &[(0, n), (*var, 1)]);
    fn ok(s: &Stmt, cbuf: u32, own: &Index) -> bool {
        let expr_ok = |e: &Expr| {
            let mut good = true;
            e.visit(&mut |x| {
                if let Expr::Load { buf, index } = x {
                    good &= *buf != cbuf || same_index(index, own);
                }
            });
            good
        };
        match s {
            Stmt::For { .. } => false,
            Stmt::Let { value, .. } => expr_ok(value),
            Stmt::Store { buf, index, value } => *buf == cbuf && same_index(index, own) && expr_ok(value),
            Stmt::Barrier => false,
        }
    }
    body.iter().all(|s| ok(s, c.buf, &own)).then(|| (*var, body.clone()))
}

/// The shaders of a contraction: the tiled product, with its epilogue fused or as a second shader.
pub fn shaders(gm: &Gemm, name: &str, precision: Precision) -> Result<Vec<Shader>, String> {
    let fused = gm.epilogue.as_ref().and_then(|e| fusable(gm, e));
    let mut v = vec![gemm(gm, name, precision, fused.as_ref())?];
    if let (Some(e), None) = (&gm.epilogue, &fused) {
        v.push(loop_kernel(e, &format!("{name}_epilogue"))?);
    }
    Ok(v)
}

fn gemm(gm: &Gemm, name: &str, precision: Precision, epilogue: Option<&(u32, Vec<Stmt>)>) -> Result<Shader, String> {
    let (mt, nt, kt) = (gm.m.div_ceil(TILE), gm.n.div_ceil(TILE), gm.k.div_ceil(TILE));
    let blocks = gm.batch * gm.groups * mt * nt;
    let mut w = W::new(Vec::new());
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
    w.line(&format!("sa[ty * {TILE} + tx] = {};", precision.convert("a")));
    w.line(&format!("let kb = k0 * {TILE} + ty;"));
    w.line(&format!("var x: f32 = {};", f32c(0.0)));
    w.line(&format!("if (kb < {} && j < {}) {{", gm.k, gm.n));
    w.depth += 1;
    b_element(&mut w, gm);
    w.depth -= 1;
    w.line("}");
    w.line(&format!("sb[ty * {TILE} + tx] = {};", precision.convert("x")));
    w.line("workgroupBarrier();");
    w.line(&format!(
        "for (var kk: i32 = 0; kk < {TILE}; kk++) {{ acc = fma(f32(sa[ty * {TILE} + kk]), f32(sb[kk * {TILE} + tx]), acc); }}"
    ));
    w.line("workgroupBarrier();");
    w.depth -= 1;
    w.line("}");
    w.line(&format!("if (i < {} && j < {}) {{", gm.m, gm.n));
    w.depth += 1;
    let mut lets = Vec::new();
    if let Some((var, body)) = epilogue {
        lets_of(body, &mut lets);
        // The epilogue's row is C's flattened row, its column variable this thread's column.
        w.line(&format!("let v0 = (b * {} + g) * {} + i;", gm.groups, gm.m));
        w.line(&format!("let v{var} = j;"));
        w.vars = vec![0, *var];
        let own = Index::new(gm.c.offset as i64, &[(0, gm.n as i64), (*var, 1)]);
        w.subst = Some((gm.c.buf, own, "acc"));
        for s in body {
            match s {
                Stmt::Store { value, .. } => {
                    let v = w.expr(value)?;
                    w.line(&format!("acc = {v};"));
                }
                s => w.stmt(s)?,
            }
        }
    }
    w.line(&format!("b{}[{}] = acc;", gm.c.buf, operand(&gm.c, "i", Some("j"))));
    w.depth -= 1;
    w.line("}");
    let groups = Groups {
        workgroup: TILE * TILE,
        groups: blocks,
        index: "blk",
        shared: vec![("sa", precision, TILE * TILE), ("sb", precision, TILE * TILE)],
    };
    Ok(groups.shader(name, gm.bufs.len(), "", &lets, &w.body))
}
