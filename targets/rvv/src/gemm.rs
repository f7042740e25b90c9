//! Contractions as RVV code: per batch entry and group, rows of C in blocks of 4 (A's four elements
//! loaded as scalars), columns in strips of `vl`, `vfmacc.vf` over K in order. B's strip is a row of
//! the matrix (LMUL 4), or for a convolution (implicit im2col) gathered from the image with
//! `vluxei32.v`, lanes whose window lies in the padding masked off and zeroed (LMUL 2).

use crate::asm::{Asm, Lmul, VfOp, ViOp, A0, F, V, X, ZERO};
use crate::codegen::Gen;
use sovc_ir::kernel::{Gemm, Var};

/// Rows of C per block of the contraction.
const GEMM_ROWS: u64 = 4;

pub(crate) fn gemm(asm: &mut Asm, gm: &Gemm) -> Result<(), String> {
    let mut g = Gen::new(asm);
    const B: Var = Var::MAX;
    const G: Var = Var::MAX - 1;
    const IB: Var = Var::MAX - 2;
    g.for_loop(B, gm.batch, &mut |g| {
        g.for_loop(G, gm.groups, &mut |g| {
            let full = gm.m / GEMM_ROWS;
            if full > 0 {
                g.for_loop(IB, full, &mut |g| {
                    let ib = g.vars[&IB];
                    let row0 = g.x()?;
                    g.asm.slli(row0, ib, 2);
                    gemm_rows(g, gm, Some(row0), 0, GEMM_ROWS)?;
                    g.free_x(row0);
                    Ok(())
                })?;
            }
            if !gm.m.is_multiple_of(GEMM_ROWS) {
                gemm_rows(g, gm, None, (full * GEMM_ROWS) as i64, gm.m % GEMM_ROWS)?;
            }
            Ok(())
        })
    })?;
    g.ret();
    Ok(())
}

/// `base + 4·(offset + b·batch + g·group + (row0 + row)·rows)` of operand `o` (`row0` a register or 0).
fn operand_row(g: &mut Gen, o: &sovc_ir::kernel::Operand, row0: Option<X>, row: i64) -> Result<X, String> {
    let (bv, gv) = (g.vars[&Var::MAX], g.vars[&(Var::MAX - 1)]);
    let a = g.x()?;
    let t = g.x()?;
    g.asm.li(a, o.offset as i64 + row * o.rows)?;
    for (v, s) in [(Some(bv), o.batch), (Some(gv), o.group), (row0, o.rows)] {
        if let (Some(v), true) = (v, s != 0) {
            g.asm.li(t, s)?;
            g.asm.mul(t, t, v);
            g.asm.add(a, a, t);
        }
    }
    g.asm.slli(a, a, 2);
    g.asm.ld(t, A0, 8 * o.buf as i32);
    g.asm.add(a, a, t);
    g.free_x(t);
    Ok(a)
}

/// Rows `row0 + row..row0 + row + rows` (at most [`GEMM_ROWS`]) of C, in column strips.
fn gemm_rows(g: &mut Gen, gm: &Gemm, row0: Option<X>, row: i64, rows: u64) -> Result<(), String> {
    if let Some(c) = &gm.b_im2col {
        return conv_rows(g, gm, c, row0, row, rows);
    }
    // LMUL 4: accumulators v4, v8, v12, v16 and B's strip in v20 (register groups of 4).
    let acc = [V(4), V(8), V(12), V(16)];
    let vb = V(20);
    g.strips(gm.n, Lmul::M4, &mut |g| {
        let f = g.f()?;
        g.asm.fmv_w_x(f, ZERO);
        for a in &acc[..rows as usize] {
            g.asm.vfmv_v_f(*a, f);
        }
        g.free_f(f);
        // B's strip starts at column i (the strip's first); rows step by b.rows.
        let pb = operand_row(g, &gm.b, None, 0)?;
        let t = g.x()?;
        g.asm.li(t, 4 * gm.b.cols)?;
        g.asm.mul(t, t, g.i);
        g.asm.add(pb, pb, t);
        let stride = g.x()?;
        let pa: Vec<X> = (0..rows).map(|r| operand_row(g, &gm.a, row0, row + r as i64)).collect::<Result<_, _>>()?;
        g.asm.li(stride, 4 * gm.b.cols)?;
        // The steps of A's column and B's row, and A's elements, held outside the K loop.
        let (astep, bstep) = (g.x()?, g.x()?);
        g.asm.li(astep, 4 * gm.a.cols)?;
        g.asm.li(bstep, 4 * gm.b.rows)?;
        let fa: Vec<F> = (0..rows).map(|_| g.f()).collect::<Result<_, _>>()?;
        g.for_loop(Var::MAX - 3, gm.k, &mut |g| {
            if gm.b.cols == 1 {
                g.asm.vle32(vb, pb, false);
            } else {
                g.asm.vlse32(vb, pb, stride, false);
            }
            for (r, a) in pa.iter().enumerate() {
                g.asm.flw(fa[r], *a, 0);
                g.asm.add(*a, *a, astep);
            }
            for (r, f) in fa.iter().enumerate() {
                g.asm.vf_vf(VfOp::Macc, acc[r], vb, *f, false);
            }
            g.asm.add(pb, pb, bstep);
            Ok(())
        })?;
        for f in fa {
            g.free_f(f);
        }
        g.free_x(astep);
        g.free_x(bstep);
        for a in pa {
            g.free_x(a);
        }
        g.free_x(pb);
        g.free_x(stride);
        g.free_x(t);
        store_c_rows(g, gm, &acc[..rows as usize], row0, row)
    })
}

/// Stores the accumulators `acc` as rows `row0 + row..` of C at the strip's columns.
fn store_c_rows(g: &mut Gen, gm: &Gemm, acc: &[V], row0: Option<X>, row: i64) -> Result<(), String> {
    let (stride, t) = (g.x()?, g.x()?);
    g.asm.li(stride, 4 * gm.c.cols)?;
    for (r, a) in acc.iter().enumerate() {
        let pc = operand_row(g, &gm.c, row0, row + r as i64)?;
        g.asm.li(t, 4 * gm.c.cols)?;
        g.asm.mul(t, t, g.i);
        g.asm.add(pc, pc, t);
        if gm.c.cols == 1 {
            g.asm.vse32(*a, pc, false);
        } else {
            g.asm.vsse32(*a, pc, stride, false);
        }
        g.free_x(pc);
    }
    g.free_x(stride);
    g.free_x(t);
    Ok(())
}

/// As [`gemm_rows`] for a convolution: B's strip is gathered from the image (`vluxei32.v`) for each
/// (channel, kernel row, kernel column) in K order, lanes in the padding masked off and zeroed, at LMUL 2.
fn conv_rows(
    g: &mut Gen,
    gm: &Gemm,
    c: &sovc_ir::kernel::Im2col,
    row0: Option<X>,
    row: i64,
    rows: u64,
) -> Result<(), String> {
    let acc = [V(8), V(10), V(12), V(14)];
    let (vb, iy0, ix0, iy, off) = (V(16), V(18), V(20), V(22), V(24));
    let (in_y, inside, tmp) = (V(1), V(2), V(3));
    const CH: Var = Var::MAX - 4;
    const KY: Var = Var::MAX - 5;
    const KX: Var = Var::MAX - 6;
    g.strips(gm.n, Lmul::M2, &mut |g| {
        let fzero = g.f()?;
        g.asm.fmv_w_x(fzero, ZERO);
        for a in &acc[..rows as usize] {
            g.asm.vfmv_v_f(*a, fzero);
        }
        // Each lane's output pixel (y, x), and the image row and column its kernel window starts at.
        let t = g.x()?;
        g.asm.vid(off);
        g.asm.vi_vx(ViOp::Add, off, off, g.i);
        g.asm.li(t, c.ow as i64)?;
        g.asm.vi_vx(ViOp::Div, iy0, off, t);
        g.asm.vi_vx(ViOp::Rem, ix0, off, t);
        for (v, stride, pad) in [(iy0, c.sh, c.ph), (ix0, c.sw, c.pw)] {
            g.asm.li(t, stride as i64)?;
            g.asm.vi_vx(ViOp::Mul, v, v, t);
            g.asm.li(t, -(pad as i64))?;
            g.asm.vi_vx(ViOp::Add, v, v, t);
        }
        // The image of this batch entry and group (B's `rows` stride is not used: channels are planes).
        let pimg = operand_row(g, &gm.b, None, 0)?;
        let pa: Vec<X> = (0..rows).map(|r| operand_row(g, &gm.a, row0, row + r as i64)).collect::<Result<_, _>>()?;
        let (hw, h, w) = (c.h * c.w, c.h, c.w);
        g.for_loop(CH, c.channels, &mut |g| {
            let pch = g.x()?;
            g.asm.li(pch, (4 * hw) as i64)?;
            g.asm.mul(pch, pch, g.vars[&CH]);
            g.asm.add(pch, pch, pimg);
            g.for_loop(KY, c.kh, &mut |g| {
                // iy = iy0 + ky·dh; in_y = 0 <= iy < h
                g.asm.li(t, c.dh as i64)?;
                g.asm.mul(t, t, g.vars[&KY]);
                g.asm.vi_vx(ViOp::Add, iy, iy0, t);
                g.asm.vi_vx(ViOp::Mslt, in_y, iy, ZERO);
                g.asm.vmnand(in_y, in_y, in_y);
                g.asm.li(t, h as i64)?;
                g.asm.vi_vx(ViOp::Mslt, tmp, iy, t);
                g.asm.vmand(in_y, in_y, tmp);
                g.for_loop(KX, c.kw, &mut |g| {
                    // ix = ix0 + kx·dw; inside = in_y & 0 <= ix < w; off = 4·(iy·w + ix)
                    g.asm.li(t, c.dw as i64)?;
                    g.asm.mul(t, t, g.vars[&KX]);
                    g.asm.vi_vx(ViOp::Add, off, ix0, t);
                    g.asm.vi_vx(ViOp::Mslt, inside, off, ZERO);
                    g.asm.vmnand(inside, inside, inside);
                    g.asm.vmand(inside, inside, in_y);
                    g.asm.li(t, w as i64)?;
                    g.asm.vi_vx(ViOp::Mslt, tmp, off, t);
                    g.asm.vmand(V(0), inside, tmp);
                    g.asm.vi_vx(ViOp::Mul, vb, iy, t);
                    g.asm.vi_vv(ViOp::Add, off, off, vb);
                    g.asm.vi_vi(ViOp::Sll, off, off, 2);
                    g.asm.vluxei32(vb, pch, off, true);
                    // Zero where the window is in the padding.
                    g.asm.vmnand(V(0), V(0), V(0));
                    g.asm.vfmerge_vfm(vb, vb, fzero);
                    for (r, a) in pa.iter().enumerate() {
                        let f = g.f()?;
                        g.asm.flw(f, *a, 0);
                        g.asm.vf_vf(VfOp::Macc, acc[r], vb, f, false);
                        g.free_f(f);
                        g.asm.li(t, 4 * gm.a.cols)?;
                        g.asm.add(*a, *a, t);
                    }
                    Ok(())
                })
            })?;
            g.free_x(pch);
            Ok(())
        })?;
        for a in pa {
            g.free_x(a);
        }
        g.free_x(pimg);
        g.free_f(fzero);
        g.free_x(t);
        store_c_rows(g, gm, &acc[..rows as usize], row0, row)
    })
}
