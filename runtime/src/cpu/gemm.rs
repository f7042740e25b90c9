//! Single-precision matrix multiply, `C = A·B (+ C)`, for the cpu device: operands packed into the
//! layout a register-blocked microkernel streams (BLIS-style: `KC`-deep blocks, `MR`-row panels of A,
//! `NR`-column panels of B), work split over row blocks of C across the thread pool, and an optional
//! epilogue called on each finished row block while it is still in cache (the fused bias/activation of
//! a kernel group). Microkernels are hand-written `std::arch` code chosen at run time: AVX-512 (12x32),
//! AVX2+FMA (6x16), or portable (4x8). Cranelift, which generates the rest of the cpu code, has no vectors
//! wider than 128 bits, which would cap matmul at half the machine's peak; see ARCHITECTURE.md.

use super::pool::Pool;

/// Depth of one packed block.
pub const KC: usize = 256;
/// Largest row block of C one task computes.
const MC_MAX: usize = 144;

/// A microkernel: `kc` steps of rank-1 updates of an `MR x NR` tile held in registers, from packed
/// panels `a` (`kc x MR`) and `b` (`kc x NR`), stored to `c` (row stride `ldc`), added to it when `acc`.
type Micro = unsafe fn(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool);

/// The microkernel this machine runs and its tile shape.
#[derive(Clone, Copy)]
pub struct Isa {
    pub name: &'static str,
    pub mr: usize,
    pub nr: usize,
    micro: Micro,
}

impl Isa {
    /// The best microkernel for this machine.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa { name: "avx512f 12x32", mr: 12, nr: 32, micro: x86::micro_avx512 };
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa { name: "avx2+fma 6x16", mr: 6, nr: 16, micro: x86::micro_avx2 };
            }
        }
        Isa::portable()
    }

    /// The portable microkernel (any machine).
    pub fn portable() -> Isa {
        Isa { name: "portable 4x8", mr: 4, nr: 8, micro: micro_portable }
    }
}

/// B (`k x n`) packed for an [`Isa`]: `KC`-deep blocks, each a row of `NR`-wide panels, zero-padded.
pub struct PackedB {
    pub k: usize,
    pub n: usize,
    nr: usize,
    data: Vec<f32>,
}

impl PackedB {
    fn npad(&self) -> usize {
        self.n.div_ceil(self.nr) * self.nr
    }

    /// The panel `panel` of the block starting at depth `p0` (depth `kc`).
    fn panel(&self, p0: usize, panel: usize, kc: usize) -> *const f32 {
        self.data[p0 * self.npad() + panel * kc * self.nr..].as_ptr()
    }
}

/// Packs B, element `(kk, j)` at `b[kk * rs + j * cs]`, for `isa`. Panels are packed in parallel on `pool`.
///
/// # Safety
/// `b` must be valid for every `(kk, j)` with `kk < k`, `j < n` at those strides.
pub unsafe fn pack_b(
    isa: &Isa,
    pool: Option<&Pool>,
    k: usize,
    n: usize,
    b: *const f32,
    rs: isize,
    cs: isize,
) -> PackedB {
    let nr = isa.nr;
    let panels = n.div_ceil(nr);
    let mut data = vec![0f32; k * panels * nr];
    let out = SendPtr(data.as_mut_ptr());
    let bp = SendPtr(b as *mut f32);
    let task = |panel: usize| {
        let (out, bp) = (out, bp);
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            let dst = out.0.wrapping_add(p0 * panels * nr + panel * kc * nr);
            if cs == 1 && (panel + 1) * nr <= n {
                // Full panel of a row-major B: each depth is one contiguous copy.
                for kk in 0..kc {
                    let src = bp.0.wrapping_offset((p0 + kk) as isize * rs + (panel * nr) as isize);
                    // SAFETY: in bounds by the caller's contract; `dst` as below. Fixed-size copies for the
                    // usual panel widths compile to a few vector moves instead of a memcpy call.
                    unsafe {
                        let d = dst.add(kk * nr);
                        match nr {
                            32 => (d as *mut [f32; 32]).write_unaligned((src as *const [f32; 32]).read_unaligned()),
                            16 => (d as *mut [f32; 16]).write_unaligned((src as *const [f32; 16]).read_unaligned()),
                            _ => std::ptr::copy_nonoverlapping(src, d, nr),
                        }
                    };
                }
                p0 += kc;
                continue;
            }
            for kk in 0..kc {
                for jj in 0..nr {
                    let j = panel * nr + jj;
                    let v = if j < n {
                        // SAFETY: in bounds by the caller's contract.
                        unsafe { *bp.0.offset((p0 + kk) as isize * rs + j as isize * cs) }
                    } else {
                        0.0
                    };
                    // SAFETY: `dst` lies inside `data`: each panel owns its own `kc * nr` range.
                    unsafe { *dst.add(kk * nr + jj) = v };
                }
            }
            p0 += kc;
        }
    };
    match pool {
        Some(p) => p.run(panels, &task),
        None => (0..panels).for_each(task),
    }
    PackedB { k, n, nr, data }
}

/// Packs B of a convolution straight from one image (`channels x h x w`, for one batch entry and group):
/// row `(c, r, s)`, column `(y, x)` of the output, zero in the padding.
///
/// # Safety
/// `x` must be valid for `g.channels * g.h * g.w` elements.
pub unsafe fn pack_b_im2col(isa: &Isa, pool: Option<&Pool>, g: &super::program::Im2col, x: *const f32) -> PackedB {
    let nr = isa.nr;
    let (k, n) = ((g.channels * g.kh * g.kw) as usize, (g.oh * g.ow) as usize);
    let panels = n.div_ceil(nr);
    let mut data = vec![0f32; k * panels * nr];
    let out = SendPtr(data.as_mut_ptr());
    let xp = SendPtr(x as *mut f32);
    let (h, w) = (g.h as i64, g.w as i64);
    let task = |panel: usize| {
        let (out, xp) = (out, xp);
        // Top-left input coordinate of each column of this panel (i64::MIN past the end).
        let mut y0 = [i64::MIN; 64];
        let mut x0 = [i64::MIN; 64];
        for jj in 0..nr {
            let j = panel * nr + jj;
            if j < n {
                y0[jj] = (j as u64 / g.ow * g.sh) as i64 - g.ph as i64;
                x0[jj] = (j as u64 % g.ow * g.sw) as i64 - g.pw as i64;
            }
        }
        let mut p0 = 0;
        while p0 < k {
            let kc = KC.min(k - p0);
            let dst = out.0.wrapping_add(p0 * panels * nr + panel * kc * nr);
            for kk in 0..kc {
                let p = (p0 + kk) as u64;
                let (c, rs) = (p / (g.kh * g.kw), p % (g.kh * g.kw));
                let (dy, dx) = ((rs / g.kw * g.dh) as i64, (rs % g.kw * g.dw) as i64);
                let plane = xp.0.wrapping_add((c * g.h * g.w) as usize);
                if g.sw == 1 && g.ow >= 16 {
                    // Unit stride along x: runs of columns on one output row read one contiguous image row.
                    let mut jj = 0;
                    while jj < nr {
                        // SAFETY: each panel owns its own range of `data`.
                        let d = unsafe { dst.add(kk * nr + jj) };
                        if y0[jj] == i64::MIN {
                            // SAFETY: as above, to the end of this panel row.
                            unsafe { std::ptr::write_bytes(d, 0, nr - jj) };
                            break;
                        }
                        let run = ((g.ow as i64 - (x0[jj] + g.pw as i64)) as usize).min(nr - jj);
                        let iy = y0[jj] + dy;
                        let ix0 = x0[jj] + dx;
                        if iy < 0 || iy >= h {
                            // SAFETY: as above.
                            unsafe { std::ptr::write_bytes(d, 0, run) };
                        } else {
                            // Columns ix0..ix0+run, of which lo..hi lie inside the row.
                            let lo = (-ix0).clamp(0, run as i64) as usize;
                            let hi = (w - ix0).clamp(lo as i64, run as i64) as usize;
                            // SAFETY: zero-fill and copy stay in this panel row; the source lies inside the image.
                            unsafe {
                                std::ptr::write_bytes(d, 0, lo);
                                std::ptr::copy_nonoverlapping(
                                    plane.offset((iy * w + ix0) as isize + lo as isize),
                                    d.add(lo),
                                    hi - lo,
                                );
                                std::ptr::write_bytes(d.add(hi), 0, run - hi);
                            }
                        }
                        jj += run;
                    }
                    continue;
                }
                for jj in 0..nr {
                    let (iy, ix) = (y0[jj].wrapping_add(dy), x0[jj].wrapping_add(dx));
                    let v = if y0[jj] != i64::MIN && iy >= 0 && iy < h && ix >= 0 && ix < w {
                        // SAFETY: inside the image by the checks above and the caller's contract.
                        unsafe { *plane.add((iy * w + ix) as usize) }
                    } else {
                        0.0
                    };
                    // SAFETY: each panel owns its own range of `data`.
                    unsafe { *dst.add(kk * nr + jj) = v };
                }
            }
            p0 += kc;
        }
    };
    match pool {
        Some(p) => p.run(panels, &task),
        None => (0..panels).for_each(task),
    }
    PackedB { k, n, nr, data }
}

/// A (`m x k`) packed for an [`Isa`]: `MR`-row panels, each all `k` deep (`KC` blocks back to back),
/// zero-padded. Constant A operands (convolution weights) are packed once at load time.
pub struct PackedA {
    pub m: usize,
    pub k: usize,
    mr: usize,
    data: Vec<f32>,
}

impl PackedA {
    /// Panel `rp` from depth `p0` (a `KC` boundary).
    fn panel(&self, rp: usize, p0: usize) -> *const f32 {
        self.data[rp * self.k * self.mr + p0 * self.mr..].as_ptr()
    }
}

/// Packs A, element `(i, kk)` at `a[i * rs + kk * cs]`.
///
/// # Safety
/// `a` must be valid for `m x k` elements at its strides.
pub unsafe fn pack_a(isa: &Isa, m: usize, k: usize, a: Mat) -> PackedA {
    let mr = isa.mr;
    let panels = m.div_ceil(mr);
    let mut data = vec![0f32; panels * mr * k];
    for rp in 0..panels {
        for ii in 0..mr.min(m - rp * mr) {
            let i = rp * mr + ii;
            for kk in 0..k {
                // SAFETY: in bounds by the caller's contract.
                data[rp * k * mr + kk * mr + ii] = unsafe { *a.ptr.offset(i as isize * a.rs + kk as isize * a.cs) };
            }
        }
    }
    PackedA { m, k, mr, data }
}

/// The transposed im2col matrix of one image: `oh·ow` rows (output pixels) of `channels·kh·kw` columns,
/// zero in the padding.
///
/// # Safety
/// `x` must be valid for `g.channels * g.h * g.w` elements.
pub unsafe fn im2col_rows(g: &super::program::Im2col, x: *const f32) -> Vec<f32> {
    let (k, n) = ((g.channels * g.kh * g.kw) as usize, (g.oh * g.ow) as usize);
    let mut out = vec![0f32; n * k];
    for j in 0..n {
        let (y0, x0) = ((j as u64 / g.ow * g.sh) as i64 - g.ph as i64, (j as u64 % g.ow * g.sw) as i64 - g.pw as i64);
        let row = &mut out[j * k..(j + 1) * k];
        for c in 0..g.channels {
            for r in 0..g.kh {
                let iy = y0 + (r * g.dh) as i64;
                for s in 0..g.kw {
                    let ix = x0 + (s * g.dw) as i64;
                    if iy >= 0 && iy < g.h as i64 && ix >= 0 && ix < g.w as i64 {
                        // SAFETY: inside the image by the checks above and the caller's contract.
                        row[((c * g.kh + r) * g.kw + s) as usize] =
                            unsafe { *x.add(((c * g.h + iy as u64) * g.w + ix as u64) as usize) };
                    }
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint ranges of one buffer to the pool's tasks.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// A matrix operand: base pointer and element strides (row, column).
#[derive(Clone, Copy)]
pub struct Mat {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

/// `C[m x n] (+)= A[m x k] · B` with B packed, C row-major with row stride `ldc`. Row blocks of C are
/// spread over `pool` (or computed here when `pool` is `None`); `epilogue(lo, hi)` runs on rows `lo..hi`
/// once they are final.
///
/// # Safety
/// `a` must be valid for `m x k` elements at its strides and `c` for `m` rows of `n` at stride `ldc`.
pub unsafe fn sgemm(
    isa: &Isa,
    pool: Option<&Pool>,
    m: usize,
    a: Mat,
    packed_a: Option<&PackedA>,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    epilogue: Option<&(dyn Fn(usize, usize) + Sync)>,
) {
    assert_eq!(b.nr, isa.nr, "B was packed for another microkernel");
    if let Some(pa) = packed_a {
        assert!(pa.mr == isa.mr && pa.m == m && pa.k == b.k, "A was packed for another product");
    }
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return;
    }
    let threads = pool.map_or(1, |p| p.threads());
    let cp = SendPtr(c);
    let ap = SendPtr(a.ptr as *mut f32);
    let (ars, acs) = (a.rs, a.cs);
    let panels = n.div_ceil(isa.nr);
    if threads > 1 && panels >= threads && (n > 4 * m || m < 2 * threads * isa.mr) {
        // Few rows: split the columns, so each thread streams only its part of B; the epilogue (which
        // works on whole rows) runs once every column is done.
        let per = panels.div_ceil(threads);
        let task = |t: usize| {
            let (cp, ap) = (cp, ap);
            let (p0, p1) = (t * per, ((t + 1) * per).min(panels));
            if p0 < p1 {
                let a = Mat { ptr: ap.0, rs: ars, cs: acs };
                // SAFETY: each task writes only its own columns of C.
                unsafe { block(isa, 0, m, a, packed_a, b, cp.0, ldc, accumulate, 0, k, n, p0, p1) };
            }
        };
        match pool {
            Some(p) => p.run(threads, &task),
            None => (0..threads).for_each(task),
        }
        if let Some(e) = epilogue {
            let rows = m.div_ceil(threads);
            let epi = |t: usize| {
                let lo = t * rows;
                if lo < m {
                    e(lo, (lo + rows).min(m));
                }
            };
            match pool {
                Some(p) => p.run(threads, &epi),
                None => (0..threads).for_each(epi),
            }
        }
        return;
    }
    // Row blocks of at most MC_MAX rows, as many as a multiple of the thread count so threads get
    // equal shares.
    let blocks = m.div_ceil(MC_MAX).div_ceil(threads) * threads;
    let mc = m.div_ceil(blocks).div_ceil(isa.mr) * isa.mr;
    let blocks = m.div_ceil(mc);
    // Depth blocks outermost when B is large: every thread sweeps one `KC` slice of B (shared, hot in
    // cache) over its rows before the next slice, instead of streaming all of B once per row block.
    let kblocks: Vec<(usize, usize)> = if threads > 1 && k * n > (1 << 18) {
        (0..k.div_ceil(KC)).map(|i| (i * KC, ((i + 1) * KC).min(k))).collect()
    } else {
        vec![(0, k)]
    };
    let last = kblocks.len() - 1;
    for (bi, &(k0, k1)) in kblocks.iter().enumerate() {
        let task = |blk: usize| {
            let (cp, ap) = (cp, ap);
            let i0 = blk * mc;
            let rows = mc.min(m - i0);
            let a = Mat { ptr: ap.0, rs: ars, cs: acs };
            let acc = accumulate || bi > 0;
            // SAFETY: each task writes only its own rows of C.
            unsafe { block(isa, i0, rows, a, packed_a, b, cp.0, ldc, acc, k0, k1, n, 0, panels) };
            if bi == last {
                if let Some(e) = epilogue {
                    e(i0, i0 + rows);
                }
            }
        };
        match pool {
            Some(p) if blocks > 1 => p.run(blocks, &task),
            _ => (0..blocks).for_each(task),
        }
    }
}

thread_local! {
    static PACK_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Rows `i0..i0+rows` of C, column panels `pc0..pc1`, depths `k0..k` (`k0` on a `KC` boundary): C is
/// overwritten by the first depth block unless `accumulate`.
unsafe fn block(
    isa: &Isa,
    i0: usize,
    rows: usize,
    a: Mat,
    packed_a: Option<&PackedA>,
    b: &PackedB,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    k0: usize,
    k: usize,
    n: usize,
    pc0: usize,
    pc1: usize,
) {
    let (mr, nr) = (isa.mr, isa.nr);
    let rpanels = rows.div_ceil(mr);
    let cpanels = pc0..pc1;
    PACK_A.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.resize(rpanels * mr * KC.min(k.max(1)), 0.0);
        let mut tile = [0f32; 12 * 32];
        let mut p0 = k0;
        if k == k0 {
            if !accumulate {
                let (j0, j1) = (pc0 * nr, (pc1 * nr).min(n));
                for i in 0..rows {
                    // SAFETY: the part of C owned by this task.
                    unsafe { std::ptr::write_bytes(c.add((i0 + i) * ldc + j0), 0, j1 - j0) };
                }
            }
            return;
        }
        while p0 < k {
            let kc = KC.min(k - p0);
            // Pack A rows i0.., depth p0.. into MR-row panels (unless packed at load time).
            for rp in 0..rpanels {
                if packed_a.is_some() {
                    break;
                }
                let dst = &mut buf[rp * kc * mr..(rp + 1) * kc * mr];
                for ii in 0..mr {
                    let i = rp * mr + ii;
                    if i >= rows {
                        for kk in 0..kc {
                            dst[kk * mr + ii] = 0.0;
                        }
                        continue;
                    }
                    let src = a.ptr.wrapping_offset((i0 + i) as isize * a.rs + p0 as isize * a.cs);
                    if a.cs == 1 {
                        // SAFETY: row i, depths p0..p0+kc, in bounds by `sgemm`'s contract.
                        let row = unsafe { std::slice::from_raw_parts(src, kc) };
                        for (kk, &v) in row.iter().enumerate() {
                            dst[kk * mr + ii] = v;
                        }
                    } else {
                        for kk in 0..kc {
                            // SAFETY: as above, at column stride `cs`.
                            dst[kk * mr + ii] = unsafe { *src.offset(kk as isize * a.cs) };
                        }
                    }
                }
            }
            let acc = accumulate || p0 > k0;
            for cpn in cpanels.clone() {
                let bp = b.panel(p0, cpn, kc);
                let j0 = cpn * nr;
                let cols = nr.min(n - j0);
                for rp in 0..rpanels {
                    let ap = match packed_a {
                        Some(pa) => pa.panel(i0 / mr + rp, p0),
                        None => buf[rp * kc * mr..].as_ptr(),
                    };
                    let r0 = i0 + rp * mr;
                    let rs = mr.min(rows - rp * mr);
                    let cdst = unsafe { c.add(r0 * ldc + j0) };
                    if rs == mr && cols == nr {
                        unsafe { (isa.micro)(kc, ap, bp, cdst, ldc, acc) };
                    } else {
                        // Edge tile: compute into a scratch tile, then move the valid part.
                        unsafe { (isa.micro)(kc, ap, bp, tile.as_mut_ptr(), nr, false) };
                        for i in 0..rs {
                            for j in 0..cols {
                                let d = unsafe { &mut *cdst.add(i * ldc + j) };
                                let v = tile[i * nr + j];
                                *d = if acc { *d + v } else { v };
                            }
                        }
                    }
                }
            }
            p0 += kc;
        }
    });
}

unsafe fn micro_portable(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
    const MR: usize = 4;
    const NR: usize = 8;
    let mut t = [[0f32; NR]; MR];
    for kk in 0..kc {
        for i in 0..MR {
            let av = unsafe { *a.add(kk * MR + i) };
            for j in 0..NR {
                t[i][j] += av * unsafe { *b.add(kk * NR + j) };
            }
        }
    }
    for i in 0..MR {
        for j in 0..NR {
            let d = unsafe { &mut *c.add(i * ldc + j) };
            *d = if acc { *d + t[i][j] } else { t[i][j] };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn micro_avx512(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
        const MR: usize = 12;
        // Fetch the C tile while the products run (it is read back at the end when accumulating).
        for i in 0..MR {
            let p = c.wrapping_add(i * ldc) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
        }
        let mut t = [[_mm512_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let b0 = unsafe { _mm512_loadu_ps(b) };
            let b1 = unsafe { _mm512_loadu_ps(b.add(16)) };
            for i in 0..MR {
                let av = _mm512_set1_ps(unsafe { *a.add(i) });
                t[i][0] = _mm512_fmadd_ps(av, b0, t[i][0]);
                t[i][1] = _mm512_fmadd_ps(av, b1, t[i][1]);
            }
            a = unsafe { a.add(MR) };
            b = unsafe { b.add(32) };
        }
        for i in 0..MR {
            let p = unsafe { c.add(i * ldc) };
            for h in 0..2 {
                let q = unsafe { p.add(16 * h) };
                let v = if acc { _mm512_add_ps(t[i][h], unsafe { _mm512_loadu_ps(q) }) } else { t[i][h] };
                unsafe { _mm512_storeu_ps(q, v) };
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn micro_avx2(kc: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, acc: bool) {
        const MR: usize = 6;
        let mut t = [[_mm256_setzero_ps(); 2]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let b0 = unsafe { _mm256_loadu_ps(b) };
            let b1 = unsafe { _mm256_loadu_ps(b.add(8)) };
            for i in 0..MR {
                let av = _mm256_set1_ps(unsafe { *a.add(i) });
                t[i][0] = _mm256_fmadd_ps(av, b0, t[i][0]);
                t[i][1] = _mm256_fmadd_ps(av, b1, t[i][1]);
            }
            a = unsafe { a.add(MR) };
            b = unsafe { b.add(16) };
        }
        for i in 0..MR {
            let p = unsafe { c.add(i * ldc) };
            for h in 0..2 {
                let q = unsafe { p.add(8 * h) };
                let v = if acc { _mm256_add_ps(t[i][h], unsafe { _mm256_loadu_ps(q) }) } else { t[i][h] };
                unsafe { _mm256_storeu_ps(q, v) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_on_every_isa_and_edge() {
        let pool = Pool::new(2);
        for isa in [Isa::detect(), Isa::portable()] {
            for &(m, n, k) in &[(1, 1, 1), (13, 33, 7), (30, 70, 300), (145, 17, 513), (5, 40, 0)] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 5.0).collect();
                let want = naive(m, n, k, &a, &b);
                let am = Mat { ptr: a.as_ptr(), rs: k as isize, cs: 1 };
                let pa = unsafe { pack_a(&isa, m, k, am) };
                for (p, packed) in [(None, None), (Some(&pool), None), (Some(&pool), Some(&pa)), (None, Some(&pa))] {
                    let pb = unsafe { pack_b(&isa, p, k, n, b.as_ptr(), n as isize, 1) };
                    let mut c = vec![7f32; m * n];
                    unsafe { sgemm(&isa, p, m, am, packed, &pb, c.as_mut_ptr(), n, false, None) };
                    let err = c.iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                    assert!(err < 1e-4, "{} {m}x{n}x{k}: {err}", isa.name);
                }
            }
        }
    }

    #[test]
    fn transposed_operands_accumulation_and_epilogue() {
        let isa = Isa::detect();
        let (m, n, k) = (20, 24, 9);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32).collect(); // stored k x m (A transposed)
        let b: Vec<f32> = (0..k * n).map(|i| (i % 3) as f32).collect(); // stored n x k (B transposed)
        let pb = unsafe { pack_b(&isa, None, k, n, b.as_ptr(), 1, k as isize) };
        let mut c = vec![1f32; m * n];
        let rows = std::sync::Mutex::new(Vec::new());
        let epi = |lo: usize, hi: usize| rows.lock().unwrap().push((lo, hi));
        unsafe {
            sgemm(
                &isa,
                None,
                m,
                Mat { ptr: a.as_ptr(), rs: 1, cs: m as isize },
                None,
                &pb,
                c.as_mut_ptr(),
                n,
                true,
                Some(&epi),
            )
        };
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[p * m + i] * b[j * k + p]).sum::<f32>();
                assert_eq!(c[i * n + j], want);
            }
        }
        let mut covered: Vec<(usize, usize)> = rows.into_inner().unwrap();
        covered.sort();
        assert_eq!(covered.first().map(|r| r.0), Some(0));
        assert_eq!(covered.last().map(|r| r.1), Some(m));
        assert!(covered.windows(2).all(|w| w[0].1 == w[1].0));
    }
}
