//! Contractions (`C[b,g] = A[b,g]·B[b,g]`, B a matrix or an image read through the implicit im2col) as
//! PTX, in two forms:
//!
//! - [`tiled`], f32: blocks of 16x16 threads compute 16x16 tiles of C. Per K step every thread stages
//!   one element of A's tile and one of B's in shared memory (zero outside the matrices and in a
//!   convolution's padding), the block meets at a barrier, each thread accumulates the 16 products of
//!   its row and column (unrolled, at constant offsets in shared memory) in K order (the reference's order, so results match it to rounding), and the
//!   block meets again before the next step overwrites the tiles.
//! - [`mma`], bf16 or f16 operands on the tensor cores: blocks of 8 warps compute 64x64 tiles of C, each
//!   warp a 16x32 strip as four `mma.sync.aligned.m16n8k16` per K step of 16. The block stages A's 64x16
//!   and B's 16x64 tile in shared memory, rounding each f32 pair to the 16-bit type with one
//!   `cvt.rn.{bf16x2,f16x2}.f32` (B transposed, so each thread's fragment is two 32-bit words); rows are
//!   padded to 24 halves so the 32 threads of a warp load their fragments from distinct banks.
//!   Accumulation is f32 in the tensor core.

use crate::ptx::{f32c, Entry, Func, Precision, BLOCK};
use sovc_ir::kernel::{Gemm, Operand, Var};

/// Side of the square tiles of the f32 contraction (blocks of `TILE x TILE` = [`BLOCK`] threads).
pub const TILE: u64 = 16;

/// The tensor-core contraction's block tile: rows and columns of C, and the K step (`mma`'s k).
pub const MMA_BM: u64 = 64;
pub const MMA_BN: u64 = 64;
pub const MMA_BK: u64 = 16;
/// Halves per row of the staged tiles (16 used, 8 of padding against bank conflicts).
const MMA_STRIDE: u64 = 24;

/// `offset + b·batch + g·group + i·rows (+ j·cols)` of operand `o` (registers for b, g, i, j).
fn operand_index(f: &mut Func, o: &Operand, b: &str, g: &str, i: &str, j: Option<&str>) -> String {
    let r = f.d();
    f.line(&format!("mov.s64 {r}, {};", o.offset));
    for (v, s) in [(Some(b), o.batch), (Some(g), o.group), (Some(i), o.rows), (j, o.cols)] {
        if let (Some(v), true) = (v, s != 0) {
            f.line(&format!("mad.lo.s64 {r}, {v}, {s}, {r};"));
        }
    }
    r
}

/// `B[k, j]` of batch entry `b`, group `g` (k < K and j < N are the caller's to check): the matrix
/// element, or for a convolution the image element under row `k = (channel, kernel row, kernel column)`
/// and column `j = (output row, output column)`, zero in the padding.
fn b_element(f: &mut Func, gm: &Gemm, b: &str, g: &str, k: &str, j: &str) -> Result<String, String> {
    let Some(c) = &gm.b_im2col else {
        let idx = operand_index(f, &gm.b, b, g, k, Some(j));
        return f.load(gm.b.buf, &idx);
    };
    let (ch, ky, kx, y, x) = (f.d(), f.d(), f.d(), f.d(), f.d());
    f.line(&format!("div.s64 {ch}, {k}, {};", c.kh * c.kw));
    f.line(&format!("div.s64 {ky}, {k}, {};", c.kw));
    f.line(&format!("rem.s64 {ky}, {ky}, {};", c.kh));
    f.line(&format!("rem.s64 {kx}, {k}, {};", c.kw));
    f.line(&format!("div.s64 {y}, {j}, {};", c.ow));
    f.line(&format!("rem.s64 {x}, {j}, {};", c.ow));
    let (ih, iw) = (f.d(), f.d());
    f.line(&format!("mul.lo.s64 {ih}, {y}, {};", c.sh));
    f.line(&format!("mad.lo.s64 {ih}, {ky}, {}, {ih};", c.dh));
    f.line(&format!("sub.s64 {ih}, {ih}, {};", c.ph));
    f.line(&format!("mul.lo.s64 {iw}, {x}, {};", c.sw));
    f.line(&format!("mad.lo.s64 {iw}, {kx}, {}, {iw};", c.dw));
    f.line(&format!("sub.s64 {iw}, {iw}, {};", c.pw));
    let (h, w, buf, b_stride, g_stride, off) = (c.h, c.w, gm.b.buf, gm.b.batch, gm.b.group, gm.b.offset);
    f.guarded(&[(&ih, h), (&iw, w)], true, &mut |f| {
        // The image element: channel planes of h·w (the operand's `rows` stride is not used).
        let pix = f.d();
        f.line(&format!("mul.lo.s64 {pix}, {ch}, {};", h * w));
        f.line(&format!("mad.lo.s64 {pix}, {ih}, {w}, {pix};"));
        f.line(&format!("add.s64 {pix}, {pix}, {iw};"));
        f.line(&format!("add.s64 {pix}, {pix}, {off};"));
        for (v, s) in [(b, b_stride), (g, g_stride)] {
            if s != 0 {
                f.line(&format!("mad.lo.s64 {pix}, {v}, {s}, {pix};"));
            }
        }
        f.load(buf, &pix)
    })
}

/// Splits the block index into (b, g, row tile, column tile) for tiles of `bm x bn`; also returns the
/// thread's index in the block.
fn block_coords(f: &mut Func, gm: &Gemm, bm: u64, bn: u64) -> [String; 5] {
    let (blk, tid) = f.block_and_thread();
    let (mt, nt) = (gm.m.div_ceil(bm), gm.n.div_ceil(bn));
    let jt = f.split(&blk, 1, nt);
    let it = f.split(&blk, nt, mt);
    let g = f.split(&blk, nt * mt, gm.groups);
    let b = f.split(&blk, nt * mt * gm.groups, gm.batch);
    [b, g, it, jt, tid]
}

/// The f32 contraction tiled through shared memory (see the module's doc).
pub(crate) fn tiled(gm: &Gemm, name: &str) -> Result<Entry, String> {
    debug_assert_eq!(TILE * TILE, BLOCK);
    let (mt, nt, kt) = (gm.m.div_ceil(TILE), gm.n.div_ceil(TILE), gm.k.div_ceil(TILE));
    let blocks = gm.batch * gm.groups * mt * nt;
    let (mut f, _) = Func::new(name, gm.bufs.len());
    let (sa, sb) = (format!("{name}_sa"), format!("{name}_sb"));
    f.shared.push((sa.clone(), TILE * TILE * 4));
    f.shared.push((sb.clone(), TILE * TILE * 4));
    let [b, g, it, jt, tid] = block_coords(&mut f, gm, TILE, TILE);
    let tx = f.split(&tid, 1, TILE);
    let ty = f.split(&tid, TILE, TILE);
    let (i, j) = (f.d(), f.d());
    f.line(&format!("mad.lo.s64 {i}, {it}, {TILE}, {ty};"));
    f.line(&format!("mad.lo.s64 {j}, {jt}, {TILE}, {tx};"));
    // This thread's slot in the tiles, and its row of A's tile and column of B's.
    let (abase, bbase) = (f.d(), f.d());
    f.line(&format!("mov.u64 {abase}, {sa};"));
    f.line(&format!("mov.u64 {bbase}, {sb};"));
    let slot = f.d();
    f.line(&format!("mad.lo.s64 {slot}, {ty}, {TILE}, {tx};"));
    let (my_a, my_b, arow, bcol) = (f.d(), f.d(), f.d(), f.d());
    f.line(&format!("mad.lo.s64 {my_a}, {slot}, 4, {abase};"));
    f.line(&format!("mad.lo.s64 {my_b}, {slot}, 4, {bbase};"));
    f.line(&format!("mad.lo.s64 {arow}, {ty}, {}, {abase};", TILE * 4));
    f.line(&format!("mad.lo.s64 {bcol}, {tx}, 4, {bbase};"));
    let arow_idx = operand_index(&mut f, &gm.a, &b, &g, &i, None);
    let acc = f.fr();
    f.line(&format!("mov.f32 {acc}, {};", f32c(0.0)));
    const K0: Var = Var::MAX;
    f.for_loop(K0, kt, &mut |f| {
        let k0 = f.var(K0)?;
        // A[i, k0·TILE + tx] and B[k0·TILE + ty, j] into this thread's slot, zero outside the matrices.
        let ka = f.d();
        f.line(&format!("mad.lo.s64 {ka}, {k0}, {TILE}, {tx};"));
        let (cols, abuf) = (gm.a.cols, gm.a.buf);
        let x = f.guarded(&[(&i, gm.m), (&ka, gm.k)], false, &mut |f| {
            let idx = f.d();
            f.line(&format!("mad.lo.s64 {idx}, {ka}, {cols}, {arow_idx};"));
            f.load(abuf, &idx)
        })?;
        f.line(&format!("st.shared.f32 [{my_a}], {x};"));
        let kb = f.d();
        f.line(&format!("mad.lo.s64 {kb}, {k0}, {TILE}, {ty};"));
        let y = f.guarded(&[(&kb, gm.k), (&j, gm.n)], false, &mut |f| b_element(f, gm, &b, &g, &kb, &j))?;
        f.line(&format!("st.shared.f32 [{my_b}], {y};"));
        f.line("bar.sync 0;");
        // The 16 products, unrolled: A's row and B's column at constant offsets from this thread's.
        for kk in 0..TILE {
            let (x, y) = (f.fr(), f.fr());
            f.line(&format!("ld.shared.f32 {x}, [{arow}+{}];", kk * 4));
            f.line(&format!("ld.shared.f32 {y}, [{bcol}+{}];", kk * TILE * 4));
            f.line(&format!("fma.rn.f32 {acc}, {x}, {y}, {acc};"));
        }
        f.line("bar.sync 0;");
        Ok(())
    })?;
    let skip = f.skip_unless(&[(&i, gm.m), (&j, gm.n)], false);
    let cidx = operand_index(&mut f, &gm.c, &b, &g, &i, Some(&j));
    f.store(gm.c.buf, &cidx, &acc)?;
    f.put_label(&skip);
    Ok(Entry { name: name.to_string(), text: f.finish(gm.bufs.len()), threads: blocks * BLOCK, bufs: gm.bufs.len() })
}

/// The contraction on the tensor cores with operands rounded to `precision` (see the module's doc).
pub(crate) fn mma(gm: &Gemm, name: &str, precision: Precision) -> Result<Entry, String> {
    let ty = match precision {
        Precision::Bf16 => "bf16",
        Precision::F16 => "f16",
        Precision::Fp32 => return Err("an f32 contraction has no mma form here".into()),
    };
    debug_assert_eq!(BLOCK, 256, "8 warps of 4x2 strips");
    let (mt, nt, kt) = (gm.m.div_ceil(MMA_BM), gm.n.div_ceil(MMA_BN), gm.k.div_ceil(MMA_BK));
    let blocks = gm.batch * gm.groups * mt * nt;
    let (mut f, _) = Func::new(name, gm.bufs.len());
    let (sa, sb) = (format!("{name}_sa"), format!("{name}_sb"));
    f.shared.push((sa.clone(), MMA_BM * MMA_STRIDE * 2));
    f.shared.push((sb.clone(), MMA_BN * MMA_STRIDE * 2));
    let [b, g, it, jt, tid] = block_coords(&mut f, gm, MMA_BM, MMA_BN);
    let (abase, bbase) = (f.d(), f.d());
    f.line(&format!("mov.u64 {abase}, {sa};"));
    f.line(&format!("mov.u64 {bbase}, {sb};"));
    // Staging: each thread moves two pairs of A (row p / 8, k 2·(p % 8)) and two of B (column p % 64,
    // k 2·(p / 64)), p = tid + 256·e, each into one 32-bit word of the tiles.
    struct Slot {
        i: String,
        arow: String,
        ka: String,
        adst: String,
        j: String,
        kb: String,
        bdst: String,
    }
    let mut slots = Vec::new();
    for e in 0..2u64 {
        let p = f.d();
        f.line(&format!("add.s64 {p}, {tid}, {};", e * BLOCK));
        let (ra, ka) = (f.d(), f.d());
        f.line(&format!("div.u64 {ra}, {p}, 8;"));
        f.line(&format!("rem.u64 {ka}, {p}, 8;"));
        f.line(&format!("mul.lo.s64 {ka}, {ka}, 2;"));
        let i = f.d();
        f.line(&format!("mad.lo.s64 {i}, {it}, {MMA_BM}, {ra};"));
        let arow = operand_index(&mut f, &gm.a, &b, &g, &i, None);
        let adst = f.d();
        f.line(&format!("mad.lo.s64 {adst}, {ra}, {MMA_STRIDE}, {ka};"));
        f.line(&format!("mad.lo.s64 {adst}, {adst}, 2, {abase};"));
        let (nb, kb) = (f.d(), f.d());
        f.line(&format!("rem.u64 {nb}, {p}, {MMA_BN};"));
        f.line(&format!("div.u64 {kb}, {p}, {MMA_BN};"));
        f.line(&format!("mul.lo.s64 {kb}, {kb}, 2;"));
        let j = f.d();
        f.line(&format!("mad.lo.s64 {j}, {jt}, {MMA_BN}, {nb};"));
        let bdst = f.d();
        f.line(&format!("mad.lo.s64 {bdst}, {nb}, {MMA_STRIDE}, {kb};"));
        f.line(&format!("mad.lo.s64 {bdst}, {bdst}, 2, {bbase};"));
        slots.push(Slot { i, arow, ka, adst, j, kb, bdst });
    }
    // The warp's strip: warp w covers rows 16·(w / 2).., columns 32·(w % 2)..; lane l = 4·group + t
    // reads the fragment words of rows `group` and `group + 8`, k `2t` and `2t + 8`.
    let (warp, lane) = (f.d(), f.d());
    f.line(&format!("div.u64 {warp}, {tid}, 32;"));
    f.line(&format!("rem.u64 {lane}, {tid}, 32;"));
    let (grp, tig, wm, wn) = (f.d(), f.d(), f.d(), f.d());
    f.line(&format!("div.u64 {grp}, {lane}, 4;"));
    f.line(&format!("rem.u64 {tig}, {lane}, 4;"));
    f.line(&format!("div.u64 {wm}, {warp}, 2;"));
    f.line(&format!("rem.u64 {wn}, {warp}, 2;"));
    let row = |f: &mut Func, strip: &str, scale: u64, plus: u64, base: &str| {
        // base + 2·((strip·scale + plus + grp)·STRIDE + 2·tig)
        let r = f.d();
        f.line(&format!("mad.lo.s64 {r}, {strip}, {scale}, {grp};"));
        f.line(&format!("add.s64 {r}, {r}, {plus};"));
        f.line(&format!("mul.lo.s64 {r}, {r}, {MMA_STRIDE};"));
        f.line(&format!("mad.lo.s64 {r}, {tig}, 2, {r};"));
        f.line(&format!("mad.lo.s64 {r}, {r}, 2, {base};"));
        r
    };
    let afrag = row(&mut f, &wm, 16, 0, &abase);
    let bfrag: Vec<String> = (0..4).map(|n8| row(&mut f, &wn, 32, n8 * 8, &bbase)).collect();
    // A's words: (group, 2t), (group + 8, 2t), (group, 2t + 8), (group + 8, 2t + 8).
    let aaddr: Vec<String> = [0, 8 * MMA_STRIDE * 2, 16, 8 * MMA_STRIDE * 2 + 16]
        .iter()
        .map(|off| {
            let r = f.d();
            f.line(&format!("add.s64 {r}, {afrag}, {off};"));
            r
        })
        .collect();
    let acc: Vec<String> = (0..16).map(|_| f.fr()).collect();
    for a in &acc {
        f.line(&format!("mov.f32 {a}, {};", f32c(0.0)));
    }
    const K0: Var = Var::MAX;
    f.for_loop(K0, kt, &mut |f| {
        let k0 = f.var(K0)?;
        for s in &slots {
            for is_a in [true, false] {
                let mut pair = Vec::new();
                for d in 0..2 {
                    let kk = f.d();
                    f.line(&format!("mad.lo.s64 {kk}, {k0}, {MMA_BK}, {};", if is_a { &s.ka } else { &s.kb }));
                    if d == 1 {
                        f.line(&format!("add.s64 {kk}, {kk}, 1;"));
                    }
                    let v = if is_a {
                        let (cols, abuf, arow) = (gm.a.cols, gm.a.buf, &s.arow);
                        f.guarded(&[(&s.i, gm.m), (&kk, gm.k)], false, &mut |f| {
                            let idx = f.d();
                            f.line(&format!("mad.lo.s64 {idx}, {kk}, {cols}, {arow};"));
                            f.load(abuf, &idx)
                        })?
                    } else {
                        f.guarded(&[(&kk, gm.k), (&s.j, gm.n)], false, &mut |f| b_element(f, gm, &b, &g, &kk, &s.j))?
                    };
                    pair.push(v);
                }
                // The element at the lower k goes in the low half.
                let w = f.r();
                f.line(&format!("cvt.rn.{ty}x2.f32 {w}, {}, {};", pair[1], pair[0]));
                f.line(&format!("st.shared.b32 [{}], {w};", if is_a { &s.adst } else { &s.bdst }));
            }
        }
        f.line("bar.sync 0;");
        let a: Vec<String> = aaddr
            .iter()
            .map(|addr| {
                let r = f.r();
                f.line(&format!("ld.shared.b32 {r}, [{addr}];"));
                r
            })
            .collect();
        for (n8, bf) in bfrag.iter().enumerate() {
            let (b0, b1, hi) = (f.r(), f.r(), f.d());
            f.line(&format!("ld.shared.b32 {b0}, [{bf}];"));
            f.line(&format!("add.s64 {hi}, {bf}, 16;"));
            f.line(&format!("ld.shared.b32 {b1}, [{hi}];"));
            let c = acc[4 * n8..4 * n8 + 4].join(", ");
            f.line(&format!(
                "mma.sync.aligned.m16n8k16.row.col.f32.{ty}.{ty}.f32 {{{c}}}, {{{}}}, {{{b0}, {b1}}}, {{{c}}};",
                a.join(", ")
            ));
        }
        f.line("bar.sync 0;");
        Ok(())
    })?;
    // Accumulator i of sub-tile n8: row group (+ 8 for i >= 2), column 8·n8 + 2t + (i & 1).
    let r0 = f.d();
    f.line(&format!("mad.lo.s64 {r0}, {it}, {MMA_BM}, {grp};"));
    f.line(&format!("mad.lo.s64 {r0}, {wm}, 16, {r0};"));
    let r1 = f.d();
    f.line(&format!("add.s64 {r1}, {r0}, 8;"));
    for n8 in 0..4u64 {
        let c0 = f.d();
        f.line(&format!("mad.lo.s64 {c0}, {jt}, {MMA_BN}, {};", n8 * 8));
        f.line(&format!("mad.lo.s64 {c0}, {wn}, 32, {c0};"));
        f.line(&format!("mad.lo.s64 {c0}, {tig}, 2, {c0};"));
        let c1 = f.d();
        f.line(&format!("add.s64 {c1}, {c0}, 1;"));
        for (i, (r, c)) in [(&r0, &c0), (&r0, &c1), (&r1, &c0), (&r1, &c1)].into_iter().enumerate() {
            let skip = f.skip_unless(&[(r, gm.m), (c, gm.n)], false);
            let idx = operand_index(&mut f, &gm.c, &b, &g, r, Some(c));
            f.store(gm.c.buf, &idx, &acc[4 * n8 as usize + i])?;
            f.put_label(&skip);
        }
    }
    Ok(Entry { name: name.to_string(), text: f.finish(gm.bufs.len()), threads: blocks * BLOCK, bufs: gm.bufs.len() })
}
