//! The data-movement gathers of the simulator: elements read through a cache of unpacked source tiles
//! (`Im2colTile`, `GatherTile`, `TapTile`, `ConcatPartTile`), with the same element order as the
//! `sovc_dm.h` helpers the C++ calls.

use super::*;

impl Core<'_> {
    /// The scratch CB of a gather holds one source tile: same format, one the RISC-V can copy elements of.
    pub(super) fn scratch_format(&mut self, scratch: u8, t: &DramTensor, dest: u8) -> Result<(), String> {
        let df = self.cb(dest)?.format;
        if df != t.format {
            return Err(format!(
                "gathers a {} tensor into CB {dest} of format {} (the RISC-V copies elements, it does not convert)",
                t.format.name(),
                df.name()
            ));
        }
        let sf = self.cb(scratch)?.format;
        if sf != t.format || matches!(sf, DataFormat::Bfp8_b | DataFormat::Bfp4_b) {
            return Err(format!(
                "gathers from a {} tensor through a {} scratch CB {scratch} (the RISC-V copies Float16_b or Float32 elements of the source format)",
                t.format.name(),
                sf.name()
            ));
        }
        Ok(())
    }

    /// Time of a gather that read `pages` source tiles: the reads, their latency and barrier, then 4
    /// cycles per element copied by the RISC-V core.
    pub(super) fn gather_time(&mut self, th: &mut Thread<'_>, t: &DramTensor, pages: u64) {
        let dev = &self.plan.device;
        let bytes = pages * t.page_bytes();
        let xfer = bytes.div_ceil(dev.noc_bytes_per_cycle as u64);
        let link = noc_link(th, true);
        let start = (th.clock + timing::NOC_ISSUE * pages).max(self.noc_free[link]);
        self.noc_free[link] = start + xfer;
        th.clock = start + xfer + dev.dram_latency_cycles as u64 + timing::BARRIER + 4 * 1024;
        self.report.dram_bytes += bytes;
        self.report.tiles_read += pages;
    }

    /// Element `f` (flat, row-major) of `t`, through a cache of unpacked source pages.
    pub(super) fn element(&mut self, t: &DramTensor, f: u64, cache: &mut Vec<(u64, Vec<f32>)>) -> Result<f32, String> {
        let (col, row) = (f % t.cols, f / t.cols % t.rows);
        let b = f / (t.cols * t.rows);
        let page = (b * t.row_tiles() + row / 32) * t.col_tiles() + col / 32;
        let i = match cache.iter().position(|p| p.0 == page) {
            Some(i) => i,
            None => {
                let mut vals = vec![0f32; 1024];
                if self.numerics {
                    numerics::unpack_tile(t.format, self.dram.read_page(t, page)?, &mut vals);
                } else {
                    self.dram.page(t, page)?;
                }
                cache.push((page, vals));
                cache.len() - 1
            }
        };
        Ok(cache[i].1[(row % 32 * 32 + col % 32) as usize])
    }

    /// Gathers tile `tile` of the embedding of ids `ids` in the `vocab x width` table `t` (result viewed
    /// `rows x cols`) into `self.a`; returns the source pages read.
    pub(super) fn embed(
        &mut self,
        t: &DramTensor,
        ids: &DramTensor,
        tile: i64,
        (rows, cols): (u64, u64),
        (vocab, width): (u64, u64),
    ) -> Result<u64, String> {
        if vocab * width != t.batch * t.rows * t.cols || vocab == 0 || width == 0 || rows == 0 || cols == 0 {
            return Err(format!("an embedding table of {vocab}x{width} does not fit value %{}", t.value));
        }
        let n = ids.batch * ids.rows * ids.cols * width;
        if !n.is_multiple_of(rows * cols) {
            return Err(format!("an embedding of {n} elements viewed {rows}x{cols}"));
        }
        let mut cache: Vec<(u64, Vec<f32>)> = Vec::new();
        let mut id_cache: Vec<(u64, Vec<f32>)> = Vec::new();
        self.fill_tile(tile, (rows, cols), n, &mut |core, f| {
            let id = core.element(ids, f / width, &mut id_cache)? as i64;
            let i = if id < 0 { id + vocab as i64 } else { id };
            if !(0..vocab as i64).contains(&i) {
                return Err(format!("embedding index {id} is outside the table's {vocab} rows"));
            }
            core.element(t, i as u64 * width + f % width, &mut cache)
        })?;
        Ok((cache.len() + id_cache.len()) as u64)
    }

    /// Fills `self.a` with tile `tile` of a value of `total` elements viewed `rows x cols` per batch
    /// entry: element `f` (flat) from `elem`, zero in the padding.
    fn fill_tile(
        &mut self,
        tile: i64,
        (rows, cols): (u64, u64),
        total: u64,
        elem: &mut dyn FnMut(&mut Self, u64) -> Result<f32, String>,
    ) -> Result<(), String> {
        let (rt, ct) = (rows.div_ceil(32), cols.div_ceil(32));
        if tile < 0 || tile as u64 >= total / (rows * cols) * rt * ct {
            return Err(format!("gathers tile {tile}, past the {total} elements' tiles"));
        }
        let tile = tile as u64;
        let (b, tr, tc) = (tile / (rt * ct), tile / ct % rt, tile % ct);
        for r in 0..32u64 {
            for c in 0..32u64 {
                let (row, col) = (tr * 32 + r, tc * 32 + c);
                let v = if row < rows && col < cols { elem(self, (b * rows + row) * cols + col)? } else { 0.0 };
                self.a[(r * 32 + c) as usize] = v;
            }
        }
        Ok(())
    }

    /// Gathers tile `tile` of `map` applied to `t` (result viewed `rows x cols`) into `self.a`; returns
    /// the source pages read.
    pub(super) fn gather(
        &mut self,
        t: &DramTensor,
        tile: i64,
        rows: u64,
        cols: u64,
        map: &MoveMap,
    ) -> Result<u64, String> {
        if map.src_dims.len() > 8 || map.steps.len() > 16 || map.steps.iter().any(|s| s.dims().len() > 8) {
            return Err("a movement map beyond rank 8 or 16 steps (sovc::gather_tile's limits)".into());
        }
        if rows.checked_mul(cols).is_none_or(|n| n == 0) {
            return Err(format!("a moved tensor viewed {rows}x{cols}"));
        }
        let total: u64 = map.dims().iter().product();
        let src: u64 = map.src_dims.iter().product();
        if src != t.batch * t.rows * t.cols || rows == 0 || cols == 0 || !total.is_multiple_of(rows * cols) {
            return Err(format!("the movement map does not fit value %{} or its {rows}x{cols} view", t.value));
        }
        let mut cache: Vec<(u64, Vec<f32>)> = Vec::new();
        self.fill_tile(tile, (rows, cols), total, &mut |core, f| match map
            .source(f)
            .ok_or_else(|| format!("the movement map has no source for element {f}"))?
        {
            Some(s) => core.element(t, s, &mut cache),
            None => Ok(0.0),
        })?;
        Ok(cache.len() as u64)
    }

    /// Overwrites in `self.a` the elements of a concatenation tile that come from `t` (see
    /// `Op::ConcatPartTile`); returns the source pages read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn concat_part(
        &mut self,
        t: &DramTensor,
        tile: i64,
        rows: u64,
        cols: u64,
        dims: &[u64],
        axis: u32,
        start: u64,
        size: u64,
    ) -> Result<u64, String> {
        let a = axis as usize;
        let total: u64 = dims.iter().product();
        if a >= dims.len() || start + size > dims[a] || rows == 0 || cols == 0 || !total.is_multiple_of(rows * cols) {
            return Err("the concatenation's geometry is inconsistent".into());
        }
        let mut src_dims = dims.to_vec();
        src_dims[a] = size;
        if src_dims.iter().product::<u64>() != t.batch * t.rows * t.cols {
            return Err(format!("value %{} is not the size of its part of the concatenation", t.value));
        }
        let (rt, ct) = (rows.div_ceil(32), cols.div_ceil(32));
        if tile < 0 || tile as u64 >= total / (rows * cols) * rt * ct {
            return Err(format!("concatenation tile {tile} out of range"));
        }
        let tile = tile as u64;
        let (b, tr, tc) = (tile / (rt * ct), tile / ct % rt, tile % ct);
        let inner: u64 = dims[a + 1..].iter().product();
        let mut cache: Vec<(u64, Vec<f32>)> = Vec::new();
        for r in 0..32u64 {
            for c in 0..32u64 {
                let (row, col) = (tr * 32 + r, tc * 32 + c);
                if row >= rows || col >= cols {
                    continue;
                }
                let f = (b * rows + row) * cols + col;
                let (outer, x, i) = (f / (inner * dims[a]), f / inner % dims[a], f % inner);
                if x < start || x >= start + size {
                    continue;
                }
                let s = (outer * size + (x - start)) * inner + i;
                self.a[(r * 32 + c) as usize] = self.element(t, s, &mut cache)?;
            }
        }
        Ok(cache.len() as u64)
    }

    /// Gathers a tap tile (see `Op::TapTile`) into `self.a`; returns the source pages read.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tap(
        &mut self,
        t: &DramTensor,
        img: i64,
        ct: i64,
        nt: i64,
        tap: u32,
        g: &ConvGeom,
        pad: f32,
    ) -> Result<u64, String> {
        let images = t.batch * t.rows * t.cols / (g.c * g.h * g.w).max(1);
        let taps = g.kh * g.kw;
        if img < 0 || img as u64 >= images || ct < 0 || nt < 0 || tap as u64 >= taps {
            return Err(format!("tap tile ({ct}, {nt}) tap {tap} of image {img}: out of range"));
        }
        let (ky, kx) = (tap as u64 / g.kw, tap as u64 % g.kw);
        let mut cache: Vec<(u64, Vec<f32>)> = Vec::new();
        for r in 0..32u64 {
            let ch = ct as u64 * 32 + r;
            for c in 0..32u64 {
                let s = nt as u64 * 32 + c;
                let mut v = 0.0;
                if ch < g.c && s < g.oh * g.ow {
                    let (oh, ow) = (s / g.ow, s % g.ow);
                    let ih = (oh * g.sh + ky * g.dh) as i64 - g.ph as i64;
                    let iw = (ow * g.sw + kx * g.dw) as i64 - g.pw as i64;
                    v = pad;
                    if ih >= 0 && iw >= 0 && (ih as u64) < g.h && (iw as u64) < g.w {
                        let f = ((img as u64 * g.c + ch) * g.h + ih as u64) * g.w + iw as u64;
                        v = self.element(t, f, &mut cache)?;
                    }
                }
                self.a[(r * 32 + c) as usize] = v;
            }
        }
        Ok(cache.len() as u64)
    }

    /// Gathers an im2col tile into `self.a` (when computing values); returns the source pages it reads.
    pub(super) fn im2col(&mut self, t: &DramTensor, img: i64, kt: i64, nt: i64, g: &ConvGeom) -> Result<u64, String> {
        let k = g.c * g.kh * g.kw;
        let n = g.oh * g.ow;
        let images = t.batch * t.rows * t.cols / (g.c * g.h * g.w).max(1);
        if img < 0 || img as u64 >= images || kt < 0 || nt < 0 {
            return Err(format!("im2col tile ({kt}, {nt}) of image {img}: out of range"));
        }
        let mut cache: Vec<(u64, Vec<f32>)> = Vec::new();
        for r in 0..32u64 {
            let kidx = kt as u64 * 32 + r;
            for c in 0..32u64 {
                let sidx = nt as u64 * 32 + c;
                let mut v = 0.0;
                if kidx < k && sidx < n {
                    let (ci, ky, kx) = (kidx / (g.kh * g.kw), kidx / g.kw % g.kh, kidx % g.kw);
                    let (oh, ow) = (sidx / g.ow, sidx % g.ow);
                    let ih = (oh * g.sh + ky * g.dh) as i64 - g.ph as i64;
                    let iw = (ow * g.sw + kx * g.dw) as i64 - g.pw as i64;
                    if ih >= 0 && iw >= 0 && (ih as u64) < g.h && (iw as u64) < g.w {
                        let f = ((img as u64 * g.c + ci) * g.h + ih as u64) * g.w + iw as u64;
                        v = self.element(t, f, &mut cache)?;
                    }
                }
                self.a[(r * 32 + c) as usize] = v;
            }
        }
        Ok(cache.len() as u64)
    }
}
