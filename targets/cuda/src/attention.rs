//! Attention (`O = softmax(scale·Q·Kᵀ + mask)·V` per slice) as PTX.

use crate::ptx::{f32c, Entry, Func};
use sovc_ir::kernel::{Attention, Var};

/// Thread `t` computes query row `t % sq` of slice `t / sq`: the scores' maximum, then the exponentials,
/// their sum and `Σ p·V` accumulated in O's row, then the division by the sum.
pub(crate) fn attention(at: &Attention, name: &str) -> Result<Entry, String> {
    let (mut f, t) = Func::new(name, at.bufs.len());
    let (h, i) = (f.d(), f.d());
    f.line(&format!("div.u64 {h}, {t}, {};", at.sq));
    f.line(&format!("rem.u64 {i}, {t}, {};", at.sq));
    // Row starts of Q and O, and of K and V for this slice.
    let (q0, o0, k0, v0) = (f.d(), f.d(), f.d(), f.d());
    f.line(&format!("mul.lo.s64 {q0}, {t}, {};", at.d));
    f.line(&format!("mul.lo.s64 {o0}, {t}, {};", at.dv));
    f.line(&format!("mul.lo.s64 {k0}, {h}, {};", at.sk * at.d));
    f.line(&format!("mul.lo.s64 {v0}, {h}, {};", at.sk * at.dv));
    const J: Var = Var::MAX;
    const C: Var = Var::MAX - 1;
    // The score of key `j`: scale · q·k_j (+ mask).
    let score = |f: &mut Func| -> Result<String, String> {
        let j = f.var(J)?;
        let dot = f.fr();
        f.line(&format!("mov.f32 {dot}, {};", f32c(0.0)));
        let (kr, d) = (f.d(), at.d);
        f.line(&format!("mad.lo.s64 {kr}, {j}, {d}, {k0};"));
        f.for_loop(C, at.d, &mut |f| {
            let c = f.var(C)?;
            let (qi, ki) = (f.d(), f.d());
            f.line(&format!("add.s64 {qi}, {q0}, {c};"));
            f.line(&format!("add.s64 {ki}, {kr}, {c};"));
            let (qv, kv) = (f.load(at.q, &qi)?, f.load(at.k, &ki)?);
            f.line(&format!("fma.rn.f32 {dot}, {qv}, {kv}, {dot};"));
            Ok(())
        })?;
        let s = f.fr();
        f.line(&format!("mul.rn.f32 {s}, {dot}, {};", f32c(at.scale)));
        if let Some((mb, ss, rs, cs)) = at.mask {
            let mi = f.d();
            f.line(&format!("mul.lo.s64 {mi}, {h}, {ss};"));
            f.line(&format!("mad.lo.s64 {mi}, {i}, {rs}, {mi};"));
            f.line(&format!("mad.lo.s64 {mi}, {j}, {cs}, {mi};"));
            let mv = f.load(mb, &mi)?;
            let s2 = f.fr();
            f.line(&format!("add.rn.f32 {s2}, {s}, {mv};"));
            return Ok(s2);
        }
        Ok(s)
    };
    let mx = f.fr();
    f.line(&format!("mov.f32 {mx}, {};", f32c(f32::NEG_INFINITY)));
    f.for_loop(J, at.sk, &mut |f| {
        let s = score(f)?;
        f.line(&format!("max.f32 {mx}, {mx}, {s};"));
        Ok(())
    })?;
    let zero = f.fr();
    f.line(&format!("mov.f32 {zero}, {};", f32c(0.0)));
    f.for_loop(C, at.dv, &mut |f| {
        let c = f.var(C)?;
        let oi = f.d();
        f.line(&format!("add.s64 {oi}, {o0}, {c};"));
        f.store(at.o, &oi, &zero)
    })?;
    let sum = f.fr();
    f.line(&format!("mov.f32 {sum}, {};", f32c(0.0)));
    f.for_loop(J, at.sk, &mut |f| {
        let s = score(f)?;
        let d = f.fr();
        f.line(&format!("sub.rn.f32 {d}, {s}, {mx};"));
        let p = f.exp(&d);
        f.line(&format!("add.rn.f32 {sum}, {sum}, {p};"));
        let j = f.var(J)?;
        let vr = f.d();
        f.line(&format!("mad.lo.s64 {vr}, {j}, {}, {v0};", at.dv));
        f.for_loop(C, at.dv, &mut |f| {
            let c = f.var(C)?;
            let (vi, oi) = (f.d(), f.d());
            f.line(&format!("add.s64 {vi}, {vr}, {c};"));
            f.line(&format!("add.s64 {oi}, {o0}, {c};"));
            let (vv, ov) = (f.load(at.v, &vi)?, f.load(at.o, &oi)?);
            let n = f.fr();
            f.line(&format!("fma.rn.f32 {n}, {p}, {vv}, {ov};"));
            f.store(at.o, &oi, &n)
        })
    })?;
    f.for_loop(C, at.dv, &mut |f| {
        let c = f.var(C)?;
        let oi = f.d();
        f.line(&format!("add.s64 {oi}, {o0}, {c};"));
        let ov = f.load(at.o, &oi)?;
        let n = f.fr();
        f.line(&format!("div.rn.f32 {n}, {ov}, {sum};"));
        f.store(at.o, &oi, &n)
    })?;
    let threads = at.heads * at.sq;
    Ok(Entry { name: name.to_string(), text: f.finish(at.bufs.len()), threads, bufs: at.bufs.len() })
}
