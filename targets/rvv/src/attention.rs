//! Attention as RVV code, lanes over query rows (see [`attention`]).

use crate::asm::{Asm, Lmul, VfOp, A0, V, ZERO};
use crate::codegen::Gen;
use sovc_ir::kernel::Var;

/// Attention with the lanes over query rows: per slice and strip of rows, a pass over the keys for the
/// scores' maximum, then one for the exponentials, their sum and `Σ p·V` accumulated in O's rows (each
/// column a strided access), then the division by the sum. A score is `scale · q·k_j (+ mask)`, the
/// dot product accumulated over `d` in order with `vfmacc.vf` (K's element a scalar, Q's a strided load).
pub(crate) fn attention(asm: &mut Asm, at: &sovc_ir::kernel::Attention) -> Result<(), String> {
    let mut g = Gen::new(asm);
    const H: Var = Var::MAX;
    const J: Var = Var::MAX - 1;
    const C: Var = Var::MAX - 2;
    let (mx, l, sc, q, o) = (V(1), V(2), V(3), V(4), V(5));
    g.vfree.retain(|v| v.0 > 5);
    g.for_loop(H, at.heads, &mut |g| {
        g.strips(at.sq, Lmul::M1, &mut |g| {
            let h = g.vars[&H];
            let (t, rowq, rowo) = (g.x()?, g.x()?, g.x()?);
            // Addresses of the strip's first row of Q and O: 4·((h·sq + i)·d).
            for (r, width, buf) in [(rowq, at.d, at.q), (rowo, at.dv, at.o)] {
                g.asm.li(r, at.sq as i64)?;
                g.asm.mul(r, r, h);
                g.asm.add(r, r, g.i);
                g.asm.li(t, 4 * width as i64)?;
                g.asm.mul(r, r, t);
                g.asm.ld(t, A0, 8 * buf as i32);
                g.asm.add(r, r, t);
            }
            let (sq_stride, so_stride) = (g.x()?, g.x()?);
            g.asm.li(sq_stride, 4 * at.d as i64)?;
            g.asm.li(so_stride, 4 * at.dv as i64)?;
            // The score of key j into `sc`.
            let score = |g: &mut Gen| -> Result<(), String> {
                let j = g.vars[&J];
                let (pk, pq, t2) = (g.x()?, g.x()?, g.x()?);
                // K's row j of slice h.
                g.asm.li(pk, at.sk as i64)?;
                g.asm.mul(pk, pk, h);
                g.asm.add(pk, pk, j);
                g.asm.li(t2, 4 * at.d as i64)?;
                g.asm.mul(pk, pk, t2);
                g.asm.ld(t2, A0, 8 * at.k as i32);
                g.asm.add(pk, pk, t2);
                g.asm.mv(pq, rowq);
                let f = g.f()?;
                g.asm.fmv_w_x(f, ZERO);
                g.asm.vfmv_v_f(sc, f);
                g.for_loop(C, at.d, &mut |g| {
                    g.asm.vlse32(q, pq, sq_stride, false);
                    g.asm.flw(f, pk, 0);
                    g.asm.vf_vf(VfOp::Macc, sc, q, f, false);
                    g.asm.addi(pq, pq, 4);
                    g.asm.addi(pk, pk, 4);
                    Ok(())
                })?;
                g.asm.fconst(f, at.scale, t2)?;
                g.asm.vf_vf(VfOp::Mul, sc, sc, f, false);
                if let Some((mb, ss, rs, cs)) = at.mask {
                    // mask[h·ss + i·rs + j·cs]
                    let pm = g.x()?;
                    g.asm.li(pm, ss)?;
                    g.asm.mul(pm, pm, h);
                    g.asm.li(t2, rs)?;
                    g.asm.mul(t2, t2, g.i);
                    g.asm.add(pm, pm, t2);
                    g.asm.li(t2, cs)?;
                    g.asm.mul(t2, t2, j);
                    g.asm.add(pm, pm, t2);
                    g.asm.slli(pm, pm, 2);
                    g.asm.ld(t2, A0, 8 * mb as i32);
                    g.asm.add(pm, pm, t2);
                    if rs == 0 {
                        g.asm.flw(f, pm, 0);
                        g.asm.vf_vf(VfOp::Add, sc, sc, f, false);
                    } else {
                        g.asm.li(t2, 4 * rs)?;
                        g.asm.vlse32(q, pm, t2, false);
                        g.asm.vf_vv(VfOp::Add, sc, sc, q, false);
                    }
                    g.free_x(pm);
                }
                g.free_f(f);
                for r in [pk, pq, t2] {
                    g.free_x(r);
                }
                Ok(())
            };
            let f = g.f()?;
            g.asm.fconst(f, f32::NEG_INFINITY, t)?;
            g.asm.vfmv_v_f(mx, f);
            g.for_loop(J, at.sk, &mut |g| {
                score(g)?;
                g.asm.vf_vv(VfOp::Max, mx, mx, sc, false);
                Ok(())
            })?;
            // O's rows = 0, l = 0.
            g.asm.fmv_w_x(f, ZERO);
            g.asm.vfmv_v_f(l, f);
            g.asm.vfmv_v_f(o, f);
            let po = g.x()?;
            g.asm.mv(po, rowo);
            g.for_loop(C, at.dv, &mut |g| {
                g.asm.vsse32(o, po, so_stride, false);
                g.asm.addi(po, po, 4);
                Ok(())
            })?;
            g.for_loop(J, at.sk, &mut |g| {
                score(g)?;
                g.asm.vf_vv(VfOp::Sub, sc, sc, mx, false);
                let p = g.exp(sc)?;
                g.asm.vf_vv(VfOp::Add, l, l, p, false);
                // O[:, c] += p · V[j, c]
                let (pv, t2) = (g.x()?, g.x()?);
                g.asm.li(pv, at.sk as i64)?;
                g.asm.mul(pv, pv, h);
                g.asm.add(pv, pv, g.vars[&J]);
                g.asm.li(t2, 4 * at.dv as i64)?;
                g.asm.mul(pv, pv, t2);
                g.asm.ld(t2, A0, 8 * at.v as i32);
                g.asm.add(pv, pv, t2);
                g.asm.mv(po, rowo);
                let fv = g.f()?;
                g.for_loop(C, at.dv, &mut |g| {
                    g.asm.vlse32(o, po, so_stride, false);
                    g.asm.flw(fv, pv, 0);
                    g.asm.vf_vf(VfOp::Macc, o, p, fv, false);
                    g.asm.vsse32(o, po, so_stride, false);
                    g.asm.addi(po, po, 4);
                    g.asm.addi(pv, pv, 4);
                    Ok(())
                })?;
                g.free_f(fv);
                g.free_x(pv);
                g.free_x(t2);
                g.free_v(p);
                Ok(())
            })?;
            g.asm.mv(po, rowo);
            g.for_loop(C, at.dv, &mut |g| {
                g.asm.vlse32(o, po, so_stride, false);
                g.asm.vf_vv(VfOp::Div, o, o, l, false);
                g.asm.vsse32(o, po, so_stride, false);
                g.asm.addi(po, po, 4);
                Ok(())
            })?;
            g.free_f(f);
            for r in [t, rowq, rowo, sq_stride, so_stride, po] {
                g.free_x(r);
            }
            Ok(())
        })
    })?;
    g.ret();
    Ok(())
}
