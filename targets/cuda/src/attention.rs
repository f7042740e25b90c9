//! Attention (`O = softmax(scale·Q·Kᵀ + mask)·V` per slice) as PTX.
//!
//! [`tiled`] (used when O's row fits in registers, `dv <= MAX_DV`): block `(h, r)` computes query rows
//! `256·r..` of slice `h`, one row per thread. Keys go by in tiles of `KT`: the block copies the tile's
//! rows of K and V (contiguous in the slice) into shared memory, meets at a barrier, and every thread
//! folds the tile's keys into its row with the online softmax (running maximum `m`, running sum `l`,
//! and O's row in registers, all rescaled by `e^(m_old - m_new)` when the maximum grows), then the block
//! meets again before the next tile overwrites the copy. Each K and V element is read from global memory
//! once per block instead of once per query row. Threads past the slice's last row help copy and wait
//! at the barriers. A score of -inf (a fully masked key) adds nothing.
//!
//! [`attention`] (larger `dv`): thread `t` computes query row `t % sq` of slice `t / sq` straight from
//! global memory: the scores' maximum, then the exponentials, their sum and `Σ p·V` accumulated in O's
//! row, then the division by the sum.

use crate::ptx::{f32c, Entry, Func, BLOCK};
use sovc_ir::kernel::{Attention, Var};

/// `scale · dot (+ mask[h·ss + i·rs + j·cs])`, the score of key `j` for row `i` of slice `h`.
fn scaled_score(f: &mut Func, at: &Attention, dot: &str, h: &str, i: &str, j: &str) -> Result<String, String> {
    let s = f.fr();
    f.line(&format!("mul.rn.f32 {s}, {dot}, {};", f32c(at.scale)));
    let Some((mb, ss, rs, cs)) = at.mask else { return Ok(s) };
    let mi = f.d();
    f.line(&format!("mul.lo.s64 {mi}, {h}, {ss};"));
    f.line(&format!("mad.lo.s64 {mi}, {i}, {rs}, {mi};"));
    f.line(&format!("mad.lo.s64 {mi}, {j}, {cs}, {mi};"));
    let mv = f.load(mb, &mi)?;
    let s2 = f.fr();
    f.line(&format!("add.rn.f32 {s2}, {s}, {mv};"));
    Ok(s2)
}

/// The largest O row the tiled form keeps in registers.
pub const MAX_DV: u64 = 128;

/// Floats of K and V one key tile may hold in shared memory (32 KiB).
const TILE_FLOATS: u64 = 8192;

/// The attention kernel of `at`: tiled when O's row fits in registers.
pub(crate) fn emit(at: &Attention, name: &str) -> Result<Entry, String> {
    if at.dv <= MAX_DV && at.d + at.dv <= TILE_FLOATS {
        tiled(at, name)
    } else {
        attention(at, name)
    }
}

/// Keys per tile: as many as fit in [`TILE_FLOATS`], at most 32 and at most `sk`.
pub fn key_tile(at: &Attention) -> u64 {
    (TILE_FLOATS / (at.d + at.dv)).clamp(1, 32).min(at.sk.max(1))
}

/// The tiled form (see the module's doc).
pub(crate) fn tiled(at: &Attention, name: &str) -> Result<Entry, String> {
    let kt = key_tile(at);
    let tiles = at.sk.div_ceil(kt);
    let row_tiles = at.sq.div_ceil(BLOCK);
    let blocks = at.heads * row_tiles;
    let (mut f, _) = Func::new(name, at.bufs.len());
    let (sk_name, sv_name) = (format!("{name}_sk"), format!("{name}_sv"));
    f.shared.push((sk_name.clone(), kt * at.d * 4));
    f.shared.push((sv_name.clone(), kt * at.dv * 4));
    let (blk, tid) = f.block_and_thread();
    let r = f.split(&blk, 1, row_tiles);
    let h = f.split(&blk, row_tiles, at.heads);
    let i = f.d();
    f.line(&format!("mad.lo.s64 {i}, {r}, {BLOCK}, {tid};"));
    // This thread's row of Q and O, and the slice's K and V.
    let (row, q0, o0, k0, v0) = (f.d(), f.d(), f.d(), f.d(), f.d());
    f.line(&format!("mad.lo.s64 {row}, {h}, {}, {i};", at.sq));
    f.line(&format!("mul.lo.s64 {q0}, {row}, {};", at.d));
    f.line(&format!("mul.lo.s64 {o0}, {row}, {};", at.dv));
    f.line(&format!("mul.lo.s64 {k0}, {h}, {};", at.sk * at.d));
    f.line(&format!("mul.lo.s64 {v0}, {h}, {};", at.sk * at.dv));
    let (ks, vs) = (f.d(), f.d());
    f.line(&format!("mov.u64 {ks}, {sk_name};"));
    f.line(&format!("mov.u64 {vs}, {sv_name};"));
    // The copy: element `tid + 256·e` of the tile's K rows (then V rows), each thread's shared address
    // fixed across tiles.
    let mut copies = Vec::new();
    for (base, width, shared, buf) in [(&k0, at.d, &ks, at.k), (&v0, at.dv, &vs, at.v)] {
        for e in 0..(kt * width).div_ceil(BLOCK) {
            let x = f.d();
            f.line(&format!("add.s64 {x}, {tid}, {};", e * BLOCK));
            let dst = f.d();
            f.line(&format!("mad.lo.s64 {dst}, {x}, 4, {shared};"));
            copies.push((x, dst, base.clone(), width, buf));
        }
    }
    let (m, l) = (f.fr(), f.fr());
    f.line(&format!("mov.f32 {m}, {};", f32c(f32::NEG_INFINITY)));
    f.line(&format!("mov.f32 {l}, {};", f32c(0.0)));
    let acc: Vec<String> = (0..at.dv).map(|_| f.fr()).collect();
    for a in &acc {
        f.line(&format!("mov.f32 {a}, {};", f32c(0.0)));
    }
    const T: Var = Var::MAX;
    const J: Var = Var::MAX - 1;
    const C: Var = Var::MAX - 2;
    f.for_loop(T, tiles, &mut |f| {
        let t = f.var(T)?;
        for (x, dst, base, width, buf) in &copies {
            // Element x of the tile is element `t·kt·width + x` of the slice; zero past its end.
            let (w, buf) = (*width, *buf);
            let el = f.d();
            f.line(&format!("mad.lo.s64 {el}, {t}, {}, {x};", kt * w));
            let skip = f.skip_unless(&[(x, kt * w)], false);
            let v = f.guarded(&[(&el, at.sk * w)], false, &mut |f| {
                let idx = f.d();
                f.line(&format!("add.s64 {idx}, {base}, {el};"));
                f.load(buf, &idx)
            })?;
            f.line(&format!("st.shared.f32 [{dst}], {v};"));
            f.put_label(&skip);
        }
        f.line("bar.sync 0;");
        let rest = f.skip_unless(&[(&i, at.sq)], false);
        f.for_loop(J, kt, &mut |f| {
            let jj = f.var(J)?;
            let j = f.d();
            f.line(&format!("mad.lo.s64 {j}, {t}, {kt}, {jj};"));
            let next = f.skip_unless(&[(&j, at.sk)], false);
            // The score: scale · q·k_j (+ mask).
            let dot = f.fr();
            f.line(&format!("mov.f32 {dot}, {};", f32c(0.0)));
            let krow = f.d();
            f.line(&format!("mul.lo.s64 {krow}, {jj}, {};", at.d * 4));
            f.line(&format!("add.s64 {krow}, {krow}, {ks};"));
            f.for_loop(C, at.d, &mut |f| {
                let c = f.var(C)?;
                let (qi, ka) = (f.d(), f.d());
                f.line(&format!("add.s64 {qi}, {q0}, {c};"));
                f.line(&format!("mad.lo.s64 {ka}, {c}, 4, {krow};"));
                let qv = f.load(at.q, &qi)?;
                let kv = f.fr();
                f.line(&format!("ld.shared.f32 {kv}, [{ka}];"));
                f.line(&format!("fma.rn.f32 {dot}, {qv}, {kv}, {dot};"));
                Ok(())
            })?;
            let s = scaled_score(f, at, &dot, &h, &i, &j)?;
            // A fully masked key adds nothing (and would make e^(m - m_new) NaN while m is -inf).
            let p = f.p();
            f.line(&format!("setp.eq.f32 {p}, {s}, {};", f32c(f32::NEG_INFINITY)));
            f.line(&format!("@{p} bra {next};"));
            let mn = f.fr();
            f.line(&format!("max.f32 {mn}, {m}, {s};"));
            let (dm, ds) = (f.fr(), f.fr());
            f.line(&format!("sub.rn.f32 {dm}, {m}, {mn};"));
            f.line(&format!("sub.rn.f32 {ds}, {s}, {mn};"));
            let corr = f.exp(&dm);
            let pj = f.exp(&ds);
            f.line(&format!("fma.rn.f32 {l}, {l}, {corr}, {pj};"));
            let vrow = f.d();
            f.line(&format!("mul.lo.s64 {vrow}, {jj}, {};", at.dv * 4));
            f.line(&format!("add.s64 {vrow}, {vrow}, {vs};"));
            for (c, a) in acc.iter().enumerate() {
                let vv = f.fr();
                f.line(&format!("ld.shared.f32 {vv}, [{vrow}+{}];", c * 4));
                f.line(&format!("mul.rn.f32 {a}, {a}, {corr};"));
                f.line(&format!("fma.rn.f32 {a}, {pj}, {vv}, {a};"));
            }
            f.line(&format!("mov.f32 {m}, {mn};"));
            f.put_label(&next);
            Ok(())
        })?;
        f.put_label(&rest);
        f.line("bar.sync 0;");
        Ok(())
    })?;
    let skip = f.skip_unless(&[(&i, at.sq)], false);
    for (c, a) in acc.iter().enumerate() {
        let (oi, n) = (f.d(), f.fr());
        f.line(&format!("add.s64 {oi}, {o0}, {c};"));
        f.line(&format!("div.rn.f32 {n}, {a}, {l};"));
        f.store(at.o, &oi, &n)?;
    }
    f.put_label(&skip);
    Ok(Entry { name: name.to_string(), text: f.finish(at.bufs.len()), threads: blocks * BLOCK, bufs: at.bufs.len() })
}

/// The untiled form (see the module's doc).
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
        scaled_score(f, at, &dot, &h, &i, &j)
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
