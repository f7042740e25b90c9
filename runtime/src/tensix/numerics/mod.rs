//! The numerics of a Tensix core as the simulator models them: the tile and face layout, the byte codecs of
//! the tile formats, the rounding that happens on the way into `SrcA`/`SrcB` and `Dst`, the fidelity phases
//! of the matrix unit (FPU), and the vector unit (SFPU) ops.
//!
//! Sources, by the keys of `shared/reference/tenstorrent.md`: **ISA-WH** = `tenstorrent/tt-isa-documentation`
//! `WormholeB0/TensixTile/TensixCoprocessor/…`; **TM** = `tenstorrent/tt-metal`. Every modelling choice below
//! names its source, or says that it is an assumption of ours.
//!
//! # Tile and face layout
//! A 32x32 tile is four 16x16 faces, face0 top-left, face1 top-right, face2 bottom-left, face3 bottom-right,
//! each row-major (TM `tech_reports/tensor_layouts/tensor_layouts.md`). [`face_pos`] gives an element's
//! position in that *face order*. The simulator holds tiles in row-major order (index `r * 32 + c`);
//! [`pack_tile`] and [`unpack_tile`] convert between that and the bytes of a tile in L1 or DRAM.
//!
//! # Byte layouts (`out.len() == format.tile_bytes()`)
//! - **Float32** (4096 bytes): 4 bytes per element, little-endian IEEE f32, elements in face order.
//! - **Float16_b** (2048 bytes): 2 bytes per element, little-endian, elements in face order; each is the top
//!   16 bits of the f32 rounded to nearest, ties to even ([`round_bf16`]). Assumption: the hardware packer's
//!   own FP32 -> BF16 rounding is ties *away* from zero (ISA-WH `Packers/FormatConversion.md`); we use ties
//!   to even everywhere, which differs from the packer only on exact ties of FP32 `Dst` data (BF16 `Dst` data
//!   packs exactly).
//! - **Bfp8_b** (1088 bytes): 64 exponent bytes, one per 16-element face row (face row index
//!   `face * 16 + row_in_face`), then 1024 bytes in face order. Each byte is a sign bit (0x80) and a 7-bit
//!   magnitude with no implicit leading one; value = ±mag / 2^6 * 2^(E - 127), where E is the row's shared
//!   8-bit exponent (ISA-WH `FloatBitPatterns.md`, `Packers/FormatConversion.md`; the order of the exponent
//!   and data streams is TM `tt_metal/impl/data_format/blockfloat_common.cpp`, `pack_fp32_vec_as_bfp_tiles`).
//! - **Bfp4_b** (576 bytes): 64 exponent bytes as above, then 512 bytes, two elements per byte: element `2i`
//!   of the face order in the **low** nibble of byte `i`, element `2i + 1` in the high nibble (TM
//!   `create_packed_bfp_packed_as_u32` puts element 0 in the low bits of each little-endian word). Each nibble
//!   is a sign bit (0x8) and a 3-bit magnitude; value = ±mag / 2^2 * 2^(E - 127).
//!
//! # Packing to block float (choices marked)
//! - Values first go through [`round_bf16`] (the packer converts from BF16-like `Dst` data; ISA-WH
//!   `Packers/FormatConversion.md` routes BFP8 through BF16).
//! - Shared exponent E = the largest biased exponent of the row's 16 values (TM `get_max_exp`).
//! - Each magnitude is the exact value scaled to the shared exponent, rounded to nearest with **ties to even**
//!   (TM `convert_u32_to_bfp`; our version keeps every shifted-out bit, where TM drops bits shifted past the
//!   32-bit word). Assumption: the hardware packer instead rounds ties *away* from zero, and makes BFP4 by
//!   *truncating* its BFP8 result (ISA-WH `Packers/FormatConversion.md`); we follow tt-metal's host codec,
//!   which produces weights, and round BFP4 directly.
//! - A magnitude that rounds past the maximum (127 or 7) **saturates** at the maximum; the exponent is not
//!   bumped (TM `convert_u32_to_bfp` clamps to `MANTISSA_BFP_MAX_VAL`). The packer's behaviour is not
//!   documented in ISA-WH.
//! - Zero, subnormals (flushed, as the packer's rounding conversions do per ISA-WH) and values that round to
//!   magnitude 0 encode as 0 with the sign bit clear (TM clears the sign of a zero magnitude).
//! - Non-finite values (our choice; the packer's early conversion would turn NaN into infinity, ISA-WH):
//!   a row holding inf or NaN gets E = 255; inf encodes as the magnitude `2^(bits-1)` (a leading one at
//!   E = 255, which is how a BF16 infinity looks when the unpacker re-normalises it) and NaN as all magnitude
//!   bits set; finite values of such a row saturate just below that. Decoding with E = 255 reads magnitude
//!   `2^(bits-1)` as ±inf and larger ones as NaN, so inf and NaN round-trip.
//!
//! # Source registers and fidelity (ISA-WH `SrcASrcB.md`, `MVMUL.md`, `ELWMUL.md`)
//! - `SrcA`/`SrcB` hold at most TF32 (1 sign, 8 exponent, 10 mantissa bits); FP32 enters them truncated
//!   ([`tf32_trunc`]). BF16 and block-float data enter exactly. Subnormal operands are flushed to zero
//!   ("Denormals will be flushed to zero", MVMUL.md). Assumption: the brief's model, FP32 operands as TF32.
//!   tt-metal unpacks FP32 to TF32 only when every input is FP32 and `fp32_dest_acc_en` is set, otherwise to
//!   BF16 (TM `jit_build/genfiles.cpp`, `unpack_conditional_dst_format`); a caller that wants that case
//!   rounds the operands to BF16 first.
//! - `matmul_tiles` puts in0 into `SrcB` and in1 into `SrcA` (`Dst += SrcB @ SrcA`; TM `compute/matmul.h`,
//!   `llk_unpack_AB_matmul_api.h`: "In0 -> srcB, In1 -> srcA"); `mul_tiles` puts in0 into `SrcA` and in1
//!   into `SrcB` (`ELWMUL`, `Dst += SrcA * SrcB`; TM `llk_unpack_AB_api.h`: "In0 -> unpA, In1 -> unpB").
//! - The multipliers take at most 5 bits of `SrcA` significand and 7 of `SrcB`. Exact split (ISA-WH
//!   `SrcAFidelityBits` / `SrcBFidelityBits`, for TF32, and for BF16 as TF32 with three zero low bits):
//!   `SrcA` hi = implicit one + top 4 mantissa bits, lo = the next 5 bits, and the last (10th) TF32 bit is
//!   consumed by no phase; `SrcB` hi = implicit one + top 6 bits, lo = the remaining 4. Phase `p` multiplies
//!   `SrcA` (`p & 1` ? lo : hi) by `SrcB` (`p & 2` ? lo : hi). LoFi runs phase 0, HiFi2 phases 0-1, HiFi3
//!   0-2, HiFi4 0-3, so HiFi4 is exact for BF16 (and for TF32 in `SrcB`), HiFi2 is exact when both
//!   operands are BFP8, and LoFi when both are BFP4 (the full-precision table of SrcASrcB.md).
//! - Every phase product is exact in f32 (at most 11 x 10 significant bits), so phases that share an operand
//!   part are merged into one product of the summed parts (HiFi2 = `SrcB` hi x `SrcA` hi+lo, HiFi4 = full x
//!   full): this is exact, not an approximation.
//! - Assumption (the brief's model): [`matmul_tile`] sums all products of one call in f32 (k ascending, the
//!   phases of one k adjacent), adds the sum to `Dst` once and applies [`dst_round`]. The hardware adds each
//!   `MVMUL`'s 16-deep partial product of each phase to `Dst` separately, rounding each time when `Dst` is
//!   BF16; that extra rounding is not modelled. Non-finite operands keep their value in `hi` (lo = 0), and
//!   products follow IEEE rules (ISA-WH says NaN/inf handling does not conform to IEEE; not modelled).
//!
//! # Dst
//! With `fp32_dest_acc_en`, `Dst` holds FP32 and values are stored unchanged. Without it, a stored value is
//! rounded first to TF32 and then to BF16, both ties away from zero (tt-metal issue #46101, as cited in the
//! reference §2): the double rounding biases long accumulations. Assumption: subnormals are not flushed and
//! NaN stays NaN in [`dst_round`].
//!
//! # SFPU
//! [`sfpu_unary`] / [`sfpu_binary`] return the mathematically exact result rounded to f32 (computed in f64,
//! erf from its Taylor series and continued fraction). Assumption: the hardware's SFPU approximations
//! (polynomials, LUTs, approximate mode, per-op truncations) are not modelled. The caller applies
//! [`dst_round`]. FPU add/sub (`ELWADD`/`ELWSUB`) are the f32 sum of the TF32-truncated operands, then
//! [`dst_round`].

use super::program::{DataFormat, MathFidelity, SfpuBinary, SfpuUnary};

/// Elements of a 32x32 tile.
const TILE: usize = 1024;
/// Rows (and columns) of a tile.
const DIM: usize = 32;

/// Position in face order (0..1024) of element (r, c) of a 32x32 tile: face (r/16)*2 + c/16, row-major within the 16x16 face.
pub fn face_pos(r: usize, c: usize) -> usize {
    debug_assert!(r < DIM && c < DIM);
    ((r / 16) * 2 + c / 16) * 256 + (r % 16) * 16 + c % 16
}

/// The quiet NaN that a NaN becomes when its low mantissa bits are dropped to `keep_mask`.
fn quiet_nan(x: f32, keep_mask: u32) -> f32 {
    f32::from_bits((x.to_bits() | 0x0040_0000) & keep_mask)
}

/// f32 -> bf16 value (as f32) rounding to nearest even; NaN stays NaN, inf stays inf.
pub fn round_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return quiet_nan(x, 0xFFFF_0000);
    }
    let bits = x.to_bits();
    let lsb = (bits >> 16) & 1;
    f32::from_bits(bits.wrapping_add(0x7FFF + lsb) & 0xFFFF_0000)
}

/// f32 -> bf16 value rounding ties away from zero.
pub fn round_bf16_ties_away(x: f32) -> f32 {
    if x.is_nan() {
        return quiet_nan(x, 0xFFFF_0000);
    }
    // Sign-magnitude: adding half an ulp to the magnitude bits and truncating rounds half away from zero.
    f32::from_bits(x.to_bits().wrapping_add(0x8000) & 0xFFFF_0000)
}

/// f32 -> TF32 value rounding ties away from zero (the first step of [`dst_round`]).
fn round_tf32_ties_away(x: f32) -> f32 {
    if x.is_nan() {
        return quiet_nan(x, 0xFFFF_E000);
    }
    f32::from_bits(x.to_bits().wrapping_add(0x1000) & 0xFFFF_E000)
}

/// Truncates to TF32 (10 explicit mantissa bits), what an FP32 value becomes in SrcA/SrcB.
pub fn tf32_trunc(x: f32) -> f32 {
    if x.is_nan() {
        return quiet_nan(x, 0xFFFF_E000);
    }
    f32::from_bits(x.to_bits() & 0xFFFF_E000)
}

/// What a value becomes when stored in Dst: unchanged with FP32 accumulation; otherwise rounded as the hardware
/// does (TF32 then BF16, ties away from zero, per tt-metal issue #46101 as cited in the reference).
pub fn dst_round(x: f32, fp32_acc: bool) -> f32 {
    if fp32_acc {
        x
    } else {
        round_bf16_ties_away(round_tf32_ties_away(x))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Tile codecs
// ---------------------------------------------------------------------------------------------------------

/// Magnitude bits of a block-float format (7 for Bfp8_b, 3 for Bfp4_b).
fn bfp_bits(format: DataFormat) -> Option<u32> {
    match format {
        DataFormat::Bfp8_b => Some(7),
        DataFormat::Bfp4_b => Some(3),
        DataFormat::Float32 | DataFormat::Float16_b => None,
    }
}

/// `sig / 2^shift` rounded to nearest, ties to even (`shift >= 1`).
fn shift_round_even(sig: u32, shift: u32) -> u32 {
    if shift >= 32 {
        return 0;
    }
    let q = sig >> shift;
    let rem = sig & ((1u32 << shift) - 1);
    let half = 1u32 << (shift - 1);
    if rem > half || (rem == half && q & 1 == 1) {
        q + 1
    } else {
        q
    }
}

/// Encodes one row of 16 BF16-rounded values with `bits` magnitude bits: returns the shared exponent and
/// writes the sign-magnitude codes.
fn bfp_encode_row(row: &[f32], bits: u32, codes: &mut [u8; 16]) -> u8 {
    let shared = row.iter().map(|v| (v.to_bits() >> 23) & 0xFF).max().unwrap_or(0);
    let lead = 1u32 << (bits - 1); // the magnitude of a leading one at the shared exponent
    let all = (1u32 << bits) - 1;
    let max_finite = if shared == 0xFF { lead - 1 } else { all };
    for (code, &v) in codes.iter_mut().zip(row) {
        let b = v.to_bits();
        let sign = (b >> 31) as u8;
        let e = (b >> 23) & 0xFF;
        let mag = if e == 0xFF {
            if b & 0x007F_FFFF == 0 {
                lead
            } else {
                all
            }
        } else if e == 0 {
            0 // zero or subnormal: flushed
        } else {
            let sig = (b & 0x007F_FFFF) | 0x0080_0000;
            // value = sig * 2^(e-150) = mag * 2^(shared-127-(bits-1))  =>  mag = sig >> (24 - bits + shared - e)
            shift_round_even(sig, 24 - bits + (shared - e)).min(max_finite)
        };
        *code = if mag == 0 { 0 } else { (sign << bits) | mag as u8 };
    }
    shared as u8
}

/// Decodes one sign-magnitude code with `bits` magnitude bits under the shared exponent.
fn bfp_decode(code: u8, shared: u8, bits: u32) -> f32 {
    let mag = (code as u32) & ((1 << bits) - 1);
    let neg = (code >> bits) & 1 == 1;
    let lead = 1u32 << (bits - 1);
    let v = if mag == 0 {
        0.0
    } else if shared == 0xFF && mag >= lead {
        if mag == lead {
            f32::INFINITY
        } else {
            f32::NAN
        }
    } else {
        // Exact: mag < 2^7 and the scale is a power of two within f32's range (subnormals included).
        (mag as f64 * 2f64.powi(shared as i32 - 127 - (bits as i32 - 1))) as f32
    };
    if neg {
        -v
    } else {
        v
    }
}

/// Packs 1024 values in row-major tile order (index r*32+c) into a tile of `format`; `out.len() == format.tile_bytes()`.
pub fn pack_tile(format: DataFormat, vals: &[f32], out: &mut [u8]) {
    assert_eq!(vals.len(), TILE, "pack_tile: a tile has 1024 values");
    assert_eq!(out.len(), format.tile_bytes() as usize, "pack_tile: wrong tile size for {}", format.name());
    // Values in face order.
    let mut f = [0f32; TILE];
    for r in 0..DIM {
        for c in 0..DIM {
            f[face_pos(r, c)] = vals[r * DIM + c];
        }
    }
    match format {
        DataFormat::Float32 => {
            for (dst, v) in out.chunks_exact_mut(4).zip(f) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
        }
        DataFormat::Float16_b => {
            for (dst, v) in out.chunks_exact_mut(2).zip(f) {
                dst.copy_from_slice(&((round_bf16(v).to_bits() >> 16) as u16).to_le_bytes());
            }
        }
        DataFormat::Bfp8_b | DataFormat::Bfp4_b => {
            let bits = bfp_bits(format).unwrap_or(7);
            let (exps, data) = out.split_at_mut(64);
            let mut codes = [0u8; 16];
            let mut row = [0f32; 16];
            for g in 0..64 {
                for (x, &v) in row.iter_mut().zip(&f[g * 16..g * 16 + 16]) {
                    *x = round_bf16(v);
                }
                exps[g] = bfp_encode_row(&row, bits, &mut codes);
                if bits == 7 {
                    data[g * 16..g * 16 + 16].copy_from_slice(&codes);
                } else {
                    for (i, pair) in codes.chunks_exact(2).enumerate() {
                        data[g * 8 + i] = (pair[0] & 0xF) | (pair[1] << 4);
                    }
                }
            }
        }
    }
}

/// The inverse: bytes of a tile to 1024 values in row-major tile order.
pub fn unpack_tile(format: DataFormat, bytes: &[u8], out: &mut [f32]) {
    assert_eq!(bytes.len(), format.tile_bytes() as usize, "unpack_tile: wrong tile size for {}", format.name());
    assert_eq!(out.len(), TILE, "unpack_tile: a tile has 1024 values");
    let mut f = [0f32; TILE];
    match format {
        DataFormat::Float32 => {
            for (v, src) in f.iter_mut().zip(bytes.chunks_exact(4)) {
                *v = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
            }
        }
        DataFormat::Float16_b => {
            for (v, src) in f.iter_mut().zip(bytes.chunks_exact(2)) {
                *v = f32::from_bits((u16::from_le_bytes([src[0], src[1]]) as u32) << 16);
            }
        }
        DataFormat::Bfp8_b | DataFormat::Bfp4_b => {
            let bits = bfp_bits(format).unwrap_or(7);
            let (exps, data) = bytes.split_at(64);
            for (i, v) in f.iter_mut().enumerate() {
                let code = if bits == 7 { data[i] } else { (data[i / 2] >> ((i % 2) * 4)) & 0xF };
                *v = bfp_decode(code, exps[i / 16], bits);
            }
        }
    }
    for r in 0..DIM {
        for c in 0..DIM {
            out[r * DIM + c] = f[face_pos(r, c)];
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// FPU
// ---------------------------------------------------------------------------------------------------------

/// An operand as the FPU sees it with a given fidelity: split into the parts that the fidelity phases multiply.
///
/// Build it with [`FpuOperand::src_a`] or [`FpuOperand::src_b`] (the two registers split differently, see the
/// module documentation); phase `p` multiplies `SrcA`'s (`p & 1` ? `lo` : `hi`) by `SrcB`'s (`p & 2` ? `lo` :
/// `hi`). `hi` and `lo` have the operand's sign, and `hi + lo` (exact) is the value the FPU uses at full
/// fidelity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FpuOperand {
    /// Sign, exponent, implicit one and the top 4 (`SrcA`) or 6 (`SrcB`) mantissa bits.
    pub hi: f32,
    /// The next 5 (`SrcA`) or 4 (`SrcB`) TF32 mantissa bits, as a value.
    pub lo: f32,
}

impl FpuOperand {
    /// Splits `x` with the masks of one register: `hi_mask` keeps the hi part, `full_mask` all bits used.
    #[inline]
    fn split(x: f32, hi_mask: u32, full_mask: u32) -> FpuOperand {
        let bits = x.to_bits();
        match bits & 0x7F80_0000 {
            0x7F80_0000 => FpuOperand { hi: x, lo: 0.0 },
            0 => FpuOperand { hi: f32::from_bits(bits & 0x8000_0000), lo: 0.0 }, // zero, or subnormal flushed
            _ => {
                let hi = f32::from_bits(bits & hi_mask);
                FpuOperand { hi, lo: f32::from_bits(bits & full_mask) - hi }
            }
        }
    }

    /// `x` in `SrcA`: truncated to TF32, its last TF32 mantissa bit ignored; hi = implicit one + 4 mantissa
    /// bits, lo = the next 5.
    #[inline]
    pub fn src_a(x: f32) -> FpuOperand {
        FpuOperand::split(x, 0xFFF8_0000, 0xFFFF_C000)
    }

    /// `x` in `SrcB`: truncated to TF32; hi = implicit one + 6 mantissa bits, lo = the remaining 4.
    #[inline]
    pub fn src_b(x: f32) -> FpuOperand {
        FpuOperand::split(x, 0xFFFE_0000, 0xFFFF_E000)
    }

    /// The value the FPU multiplies when every phase runs.
    pub fn value(self) -> f32 {
        self.hi + self.lo
    }

    /// The product that `ELWMUL` leaves after the phases of `fidelity` (phase products summed in phase order
    /// in f32; every partial sum is exact).
    pub fn product(src_a: FpuOperand, src_b: FpuOperand, fidelity: MathFidelity) -> f32 {
        let mut s = 0.0f32;
        for p in 0..fidelity.phases() {
            let a = if p & 1 == 0 { src_a.hi } else { src_a.lo };
            let b = if p & 2 == 0 { src_b.hi } else { src_b.lo };
            s += a * b;
        }
        s
    }
}

/// `sum[m][n] += Σ_k a[m][k] * b[k][n]` over 32x32 row-major tiles, k ascending (inner loop contiguous).
#[inline]
fn mac(sum: &mut [f32; TILE], a: &[f32; TILE], b: &[f32; TILE]) {
    for (srow, arow) in sum.chunks_exact_mut(DIM).zip(a.chunks_exact(DIM)) {
        for (&av, brow) in arow.iter().zip(b.chunks_exact(DIM)) {
            for (s, &bv) in srow.iter_mut().zip(brow) {
                *s += av * bv;
            }
        }
    }
}

/// Like [`mac`] with two products per k: `sum += a1 @ b1 + a2 @ b2`, the two terms of one k adjacent.
#[inline]
fn mac2(sum: &mut [f32; TILE], a1: &[f32; TILE], b1: &[f32; TILE], a2: &[f32; TILE], b2: &[f32; TILE]) {
    for ((srow, a1row), a2row) in sum.chunks_exact_mut(DIM).zip(a1.chunks_exact(DIM)).zip(a2.chunks_exact(DIM)) {
        for (((&x1, &x2), b1row), b2row) in a1row.iter().zip(a2row).zip(b1.chunks_exact(DIM)).zip(b2.chunks_exact(DIM))
        {
            for ((s, &y1), &y2) in srow.iter_mut().zip(b1row).zip(b2row) {
                *s += x1 * y1;
                *s += x2 * y2;
            }
        }
    }
}

/// acc (1024 values, row-major, the Dst tile) += a @ b, a = in0 tile (32x32 row-major, M x K), b = in1 tile
/// (K x N, or N x K when `transpose_b`: then b is transposed first, as `matmul_tiles(..., transpose=true)`
/// does). in0 sits in `SrcB` and in1 in `SrcA` (both truncated to TF32; BF16 inputs are exact), the phases of
/// `fidelity` multiply the parts described on [`FpuOperand`], the products of the call are summed in f32, and
/// the sum is added to `acc` and stored with [`dst_round`].
pub fn matmul_tile(a: &[f32], b: &[f32], acc: &mut [f32], fidelity: MathFidelity, fp32_acc: bool, transpose_b: bool) {
    assert_eq!(a.len(), TILE, "matmul_tile: in0 must be a 32x32 tile");
    assert_eq!(b.len(), TILE, "matmul_tile: in1 must be a 32x32 tile");
    assert_eq!(acc.len(), TILE, "matmul_tile: Dst must be a 32x32 tile");
    // in0 -> SrcB.
    let mut a_hi = [0f32; TILE];
    let mut a_lo = [0f32; TILE];
    for ((h, l), &x) in a_hi.iter_mut().zip(a_lo.iter_mut()).zip(a) {
        let o = FpuOperand::src_b(x);
        *h = o.hi;
        *l = o.lo;
    }
    // in1 -> SrcA, laid out K x N.
    let mut b_hi = [0f32; TILE];
    let mut b_lo = [0f32; TILE];
    for k in 0..DIM {
        for n in 0..DIM {
            let x = if transpose_b { b[n * DIM + k] } else { b[k * DIM + n] };
            let o = FpuOperand::src_a(x);
            b_hi[k * DIM + n] = o.hi;
            b_lo[k * DIM + n] = o.lo;
        }
    }
    let mut sum = [0f32; TILE];
    match fidelity {
        // Phase 0: SrcB hi x SrcA hi.
        MathFidelity::LoFi => mac(&mut sum, &a_hi, &b_hi),
        // Phases 0 + 1: SrcB hi x SrcA (hi + lo).
        MathFidelity::HiFi2 => {
            let mut b_full = b_lo;
            for (f, &h) in b_full.iter_mut().zip(&b_hi) {
                *f += h;
            }
            mac(&mut sum, &a_hi, &b_full)
        }
        // Phases 0 + 1 + 2: SrcB hi x SrcA (hi + lo), then SrcB lo x SrcA hi.
        MathFidelity::HiFi3 => {
            let mut b_full = b_lo;
            for (f, &h) in b_full.iter_mut().zip(&b_hi) {
                *f += h;
            }
            mac2(&mut sum, &a_hi, &b_full, &a_lo, &b_hi)
        }
        // All four phases: full x full.
        MathFidelity::HiFi4 => {
            for (h, &l) in a_hi.iter_mut().zip(&a_lo) {
                *h += l;
            }
            for (h, &l) in b_hi.iter_mut().zip(&b_lo) {
                *h += l;
            }
            mac(&mut sum, &a_hi, &b_hi)
        }
    }
    for (d, &s) in acc.iter_mut().zip(&sum) {
        *d = dst_round(*d + s, fp32_acc);
    }
}

/// FPU eltwise multiply (ELWMUL) with fidelity, and add/sub (exact in f32 then dst_round) — one element.
///
/// `a` (in0) sits in `SrcA` and `b` (in1) in `SrcB`. The result is the product before [`dst_round`], which the
/// caller applies. Add and sub need no function: `dst_round(tf32_trunc(a) ± tf32_trunc(b), fp32_acc)`.
pub fn fpu_mul(a: f32, b: f32, fidelity: MathFidelity) -> f32 {
    FpuOperand::product(FpuOperand::src_a(a), FpuOperand::src_b(b), fidelity)
}

// ---------------------------------------------------------------------------------------------------------
// SFPU
// ---------------------------------------------------------------------------------------------------------

const FRAC_2_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

/// erf by its Taylor series, for |x| < 2 (absolute error below 1e-15 there).
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    let mut term = x; // x^(2n+1) (-1)^n / n!
    let mut sum = 0.0;
    for n in 0..200 {
        let t = term / (2 * n + 1) as f64;
        sum += t;
        if t.abs() <= 1e-17 * sum.abs() {
            break;
        }
        term *= -x2 / (n + 1) as f64;
    }
    FRAC_2_SQRT_PI * sum
}

/// erfc for x >= 2 by its continued fraction, evaluated backward (relative error about 1e-16 at 60 terms).
fn erfc_cf(x: f64) -> f64 {
    let mut t = x;
    for n in (1..=60).rev() {
        t = x + (n as f64 * 0.5) / t;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / t
}

fn erf(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x.abs() < 2.0 {
        erf_series(x)
    } else {
        (1.0 - erfc_cf(x.abs())).copysign(x)
    }
}

fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        x
    } else if x.abs() < 2.0 {
        1.0 - erf_series(x)
    } else if x > 0.0 {
        erfc_cf(x)
    } else {
        2.0 - erfc_cf(-x)
    }
}

/// SFPU ops (computed in f32; the caller applies dst_round). Gelu = exact erf form 0.5*x*(1+erf(x/sqrt 2));
/// GeluTanh = tanh approximation; Silu = x*sigmoid(x); Recip of 0 = inf; Sqrt/Log of negatives = NaN;
/// Elu/LeakyRelu/..Scalar carry their parameter.
pub fn sfpu_unary(op: SfpuUnary, x: f32) -> f32 {
    let d = x as f64;
    match op {
        SfpuUnary::Exp => d.exp() as f32,
        SfpuUnary::Log => d.ln() as f32,
        SfpuUnary::Recip => 1.0 / x,
        SfpuUnary::Sqrt => x.sqrt(),
        SfpuUnary::Rsqrt => (1.0 / d.sqrt()) as f32,
        // 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2), without cancellation for negative x.
        SfpuUnary::Gelu => (0.5 * d * erfc(-d * std::f64::consts::FRAC_1_SQRT_2)) as f32,
        // 0.5 x (1 + tanh(y)) = x sigmoid(2y), y = sqrt(2/pi) (x + 0.044715 x^3).
        SfpuUnary::GeluTanh => {
            let y = (2.0 / std::f64::consts::PI).sqrt() * (d + 0.044715 * d * d * d);
            (d / (1.0 + (-2.0 * y).exp())) as f32
        }
        SfpuUnary::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        SfpuUnary::Sigmoid => (1.0 / (1.0 + (-d).exp())) as f32,
        SfpuUnary::Silu => (d / (1.0 + (-d).exp())) as f32,
        SfpuUnary::Tanh => d.tanh() as f32,
        SfpuUnary::Erf => erf(d) as f32,
        SfpuUnary::Abs => x.abs(),
        SfpuUnary::Neg => -x,
        SfpuUnary::Square => x * x,
        SfpuUnary::Sin => d.sin() as f32,
        SfpuUnary::Cos => d.cos() as f32,
        SfpuUnary::Floor => x.floor(),
        SfpuUnary::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else if x.is_nan() {
                x
            } else {
                0.0
            }
        }
        SfpuUnary::AddScalar(c) => x + c,
        SfpuUnary::MulScalar(c) => x * c,
        SfpuUnary::RsubScalar(c) => c - x,
        SfpuUnary::MaxScalar(c) => x.max(c),
        SfpuUnary::MinScalar(c) => x.min(c),
        SfpuUnary::PowScalar(c) => d.powf(c as f64) as f32,
        SfpuUnary::LeakyRelu(c) => {
            if x < 0.0 {
                x * c
            } else {
                x
            }
        }
        SfpuUnary::Elu(alpha) => {
            if x < 0.0 {
                (alpha as f64 * d.exp_m1()) as f32
            } else {
                x
            }
        }
        SfpuUnary::RoundBf16 => round_bf16(x),
    }
}

/// SFPU ops of two values (`a op b`), computed in f32 (IEEE: division by zero gives inf or NaN; `Max`/`Min`
/// ignore a NaN operand as `f32::max` does; `Pow` is `a^b`). The caller applies dst_round.
pub fn sfpu_binary(op: SfpuBinary, a: f32, b: f32) -> f32 {
    match op {
        SfpuBinary::Add => a + b,
        SfpuBinary::Sub => a - b,
        SfpuBinary::Mul => a * b,
        SfpuBinary::Div => a / b,
        SfpuBinary::Max => a.max(b),
        SfpuBinary::Min => a.min(b),
        SfpuBinary::Pow => (a as f64).powf(b as f64) as f32,
    }
}

#[cfg(test)]
mod tests;
