//! Attention as WGSL: `O = softmax(scale·Q·Kᵀ + mask)·V` per slice.
//!
//! The tiled form (when Q's and O's rows fit in registers, `d, dv <= MAX_ROW`): a threadgroup of
//! [`ROWS`] threads computes query rows `ROWS·r..` of slice `h`, one row per thread, Q's row and O's in
//! private arrays. Keys go by in tiles of `kt` ([`key_tile`]): the threadgroup copies the tile's K and
//! V rows into threadgroup memory together (each element read from device memory once per threadgroup
//! instead of once per thread; f16 under `--precision f16`, with Q's row rounded alike), meets at
//! `workgroupBarrier()`, and each thread scores the tile's keys, takes their maximum and folds them into
//! its row with the online softmax (running maximum `m` and sum `l`, O's row rescaled by `exp(m_old -
//! m_new)` once per tile; a tile whose keys are all masked to `-inf` so far changes nothing), then the
//! group meets again before the next copy. Scores, exponentials and sums are f32.
//!
//! Otherwise one thread per query row reads K and V from device memory, two passes over the keys.

use crate::wgsl::{f32c, Groups, Shader, W};
use crate::Precision;
use sovc_ir::kernel::Attention;

/// Query rows per threadgroup of the tiled form.
pub const ROWS: u64 = 32;

/// The largest Q or O row the tiled form keeps in private arrays.
pub const MAX_ROW: u64 = 128;

/// Elements of K and V one key tile may hold in threadgroup memory (16 KiB of f32: Vulkan's minimum).
const TILE_ELEMS: u64 = 4096;

/// Keys per tile: as many as fit in `TILE_ELEMS`, at most 32 and at most `sk`.
pub fn key_tile(at: &Attention) -> u64 {
    (TILE_ELEMS / (at.d + at.dv).max(1)).clamp(1, 32).min(at.sk.max(1))
}

/// The attention shader of `at`: tiled when its rows fit.
pub fn shader(at: &Attention, name: &str, precision: Precision) -> Result<Shader, String> {
    if at.d <= MAX_ROW && at.dv <= MAX_ROW {
        Ok(tiled(at, name, precision))
    } else {
        untiled(at, name)
    }
}

fn mask(at: &Attention) -> String {
    match at.mask {
        Some((mb, ss, rs, cs)) => format!(" + b{mb}[{ss} * h + {rs} * i + {cs} * j]"),
        None => String::new(),
    }
}

fn tiled(at: &Attention, name: &str, precision: Precision) -> Shader {
    let (d, dv, sk, sq) = (at.d, at.dv, at.sk, at.sq);
    let kt = key_tile(at);
    let row_tiles = sq.div_ceil(ROWS);
    let blocks = at.heads * row_tiles;
    let ninf = f32c(f32::NEG_INFINITY);
    let mut w = W::new(Vec::new());
    w.line(&format!("let h = blk / {row_tiles};"));
    w.line(&format!("let i = (blk % {row_tiles}) * {ROWS} + i32(lid);"));
    w.line(&format!("let live = i < {sq};"));
    w.line(&format!("let t = h * {sq} + i;"));
    w.line(&format!("var q: array<f32, {d}>;"));
    w.line(&format!("var o: array<f32, {dv}>;"));
    w.line(&format!("var s: array<f32, {kt}>;"));
    w.line("if (live) {");
    let q = precision.convert(&format!("b{}[t * {d} + c]", at.q));
    w.line(&format!("    for (var c: i32 = 0; c < {d}; c++) {{ q[c] = f32({q}); }}"));
    w.line("}");
    w.line(&format!("var m: f32 = {ninf};"));
    w.line(&format!("var l: f32 = {};", f32c(0.0)));
    w.line(&format!("for (var j0: i32 = 0; j0 < {sk}; j0 += {kt}) {{"));
    w.depth += 1;
    for (tile, buf, width) in [("sk", at.k, d), ("sv", at.v, dv)] {
        // Element x of the tile is element `j0·width + x` of the slice's rows; zero past its end.
        w.line(&format!("for (var x: i32 = i32(lid); x < {}; x += {ROWS}) {{", kt * width));
        w.line(&format!("    var y: f32 = {};", f32c(0.0)));
        w.line(&format!("    if (j0 + x / {width} < {sk}) {{ y = b{buf}[(h * {sk} + j0) * {width} + x]; }}"));
        w.line(&format!("    {tile}[x] = {};", precision.convert("y")));
        w.line("}");
    }
    w.line("workgroupBarrier();");
    w.line("if (live) {");
    w.depth += 1;
    w.line(&format!("let n = min({kt}, {sk} - j0);"));
    w.line(&format!("var tm: f32 = {ninf};"));
    w.line("for (var jj: i32 = 0; jj < n; jj++) {");
    w.line("    let j = j0 + jj;");
    w.line(&format!("    var dot: f32 = {};", f32c(0.0)));
    w.line(&format!("    for (var c: i32 = 0; c < {d}; c++) {{ dot = fma(q[c], f32(sk[jj * {d} + c]), dot); }}"));
    w.line(&format!("    s[jj] = dot * {}{};", f32c(at.scale), mask(at)));
    w.line("    tm = max(tm, s[jj]);");
    w.line("}");
    w.line("let mn = max(m, tm);");
    w.line(&format!("if (mn > {ninf}) {{"));
    w.depth += 1;
    w.line("let corr = exp(m - mn);");
    w.line("l = l * corr;");
    w.line(&format!("for (var c: i32 = 0; c < {dv}; c++) {{ o[c] = o[c] * corr; }}"));
    w.line("for (var jj: i32 = 0; jj < n; jj++) {");
    w.line("    let p = exp(s[jj] - mn);");
    w.line("    l = l + p;");
    w.line(&format!("    for (var c: i32 = 0; c < {dv}; c++) {{ o[c] = fma(p, f32(sv[jj * {dv} + c]), o[c]); }}"));
    w.line("}");
    w.line("m = mn;");
    w.depth -= 1;
    w.line("}");
    w.depth -= 1;
    w.line("}");
    w.line("workgroupBarrier();");
    w.depth -= 1;
    w.line("}");
    w.line("if (live) {");
    w.line(&format!("    for (var c: i32 = 0; c < {dv}; c++) {{ b{}[t * {dv} + c] = o[c] / l; }}", at.o));
    w.line("}");
    let groups = Groups {
        workgroup: ROWS,
        groups: blocks,
        index: "blk",
        shared: vec![("sk", precision, kt * d), ("sv", precision, kt * dv)],
    };
    groups.shader(name, at.bufs.len(), "", &[], &w.body)
}

/// One thread per query row, K and V from device memory (rows too long for private arrays).
fn untiled(at: &Attention, name: &str) -> Result<Shader, String> {
    let mut w = W::new(Vec::new());
    let (d, dv, sk) = (at.d, at.dv, at.sk);
    w.line(&format!("let h = t / {};", at.sq));
    w.line(&format!("let i = t % {};", at.sq));
    let mask = mask(at);
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
    Ok(crate::wgsl::shader(name, at.bufs.len(), at.heads * at.sq, &[], &w.body))
}
