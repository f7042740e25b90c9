//! Unit tests of the Tensix numerics model.

use super::*;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn tile(&mut self, scale: f32) -> Vec<f32> {
        (0..TILE).map(|_| self.unit() * scale).collect()
    }
    fn bf16_tile(&mut self, scale: f32) -> Vec<f32> {
        self.tile(scale).into_iter().map(round_bf16).collect()
    }
}

fn is_bf16(x: f32) -> bool {
    x.to_bits() & 0xFFFF == 0
}

/// The f64 reference `a @ b` and `Σ |a||b|` per element.
fn reference(a: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut r = vec![0f64; TILE];
    let mut m = vec![0f64; TILE];
    for i in 0..DIM {
        for j in 0..DIM {
            for k in 0..DIM {
                let p = a[i * DIM + k] as f64 * b[k * DIM + j] as f64;
                r[i * DIM + j] += p;
                m[i * DIM + j] += p.abs();
            }
        }
    }
    (r, m)
}

fn mm(a: &[f32], b: &[f32], fid: MathFidelity, fp32_acc: bool, transpose_b: bool) -> Vec<f32> {
    let mut acc = vec![0f32; TILE];
    matmul_tile(a, b, &mut acc, fid, fp32_acc, transpose_b);
    acc
}

#[test]
fn face_pos_is_a_permutation_in_face_order() {
    let mut seen = [false; TILE];
    for r in 0..DIM {
        for c in 0..DIM {
            let p = face_pos(r, c);
            assert!(!seen[p], "position {p} twice");
            seen[p] = true;
        }
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(face_pos(0, 0), 0);
    assert_eq!(face_pos(0, 15), 15);
    assert_eq!(face_pos(1, 0), 16);
    assert_eq!(face_pos(0, 16), 256);
    assert_eq!(face_pos(16, 0), 512);
    assert_eq!(face_pos(31, 31), 1023);
}

#[test]
fn bf16_rounding_ties() {
    let ulp = 2f32.powi(-7);
    let half = 2f32.powi(-8);
    // 1 + 2^-8: halfway between 1 (even) and 1 + 2^-7 (odd).
    assert_eq!(round_bf16(1.0 + half), 1.0);
    assert_eq!(round_bf16_ties_away(1.0 + half), 1.0 + ulp);
    assert_eq!(round_bf16(-(1.0 + half)), -1.0);
    assert_eq!(round_bf16_ties_away(-(1.0 + half)), -(1.0 + ulp));
    // 1 + 3 * 2^-8: halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): both modes go up.
    assert_eq!(round_bf16(1.0 + 3.0 * half), 1.0 + 2.0 * ulp);
    assert_eq!(round_bf16_ties_away(1.0 + 3.0 * half), 1.0 + 2.0 * ulp);
    // Not a tie.
    assert_eq!(round_bf16(1.0 + half + 2f32.powi(-20)), 1.0 + ulp);
    assert_eq!(round_bf16_ties_away(1.0 + half - 2f32.powi(-20)), 1.0);
    // Specials.
    assert!(round_bf16(f32::NAN).is_nan());
    assert!(round_bf16(f32::from_bits(0x7F80_0001)).is_nan()); // NaN with only a low payload bit
    assert!(round_bf16_ties_away(f32::from_bits(0x7F80_0001)).is_nan());
    assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
    assert_eq!(round_bf16_ties_away(f32::NEG_INFINITY), f32::NEG_INFINITY);
    assert_eq!(round_bf16(f32::MAX), f32::INFINITY);
    assert_eq!(round_bf16(0.0), 0.0);
}

#[test]
fn tf32_truncation() {
    let x = 1.0 + 2f32.powi(-10) + 2f32.powi(-11) + 2f32.powi(-20);
    assert_eq!(tf32_trunc(x), 1.0 + 2f32.powi(-10));
    assert_eq!(tf32_trunc(-x), -(1.0 + 2f32.powi(-10)));
    assert_eq!(tf32_trunc(1.0 + 2f32.powi(-11)), 1.0); // toward zero, not to nearest
    assert_eq!(tf32_trunc(3.5), 3.5);
    assert_eq!(tf32_trunc(x).to_bits() & 0x1FFF, 0);
    assert!(tf32_trunc(f32::from_bits(0x7F80_0001)).is_nan());
    assert_eq!(tf32_trunc(f32::INFINITY), f32::INFINITY);
}

#[test]
fn dst_round_double_rounds_ties_away() {
    // Low 16 bits 0x7000: single rounding to BF16 goes down, but TF32 first rounds 0x1000 (a tie) up to
    // 0x8000, which is then a BF16 tie rounded away from zero: the #46101 bias.
    let x = f32::from_bits(0x3F80_7000);
    assert_eq!(round_bf16(x), 1.0);
    assert_eq!(dst_round(x, false), 1.0 + 2f32.powi(-7));
    assert_eq!(dst_round(-x, false), -(1.0 + 2f32.powi(-7)));
    assert_eq!(dst_round(x, true), x);
    let mut rng = Rng(7);
    for _ in 0..10_000 {
        let v = rng.unit() * 100.0;
        let r = dst_round(v, false);
        assert!(is_bf16(r), "{v} -> {r}");
        // Half a BF16 ulp plus half a TF32 ulp: the double rounding can exceed half a BF16 ulp.
        assert!((r - v).abs() <= v.abs() * (2f32.powi(-8) + 2f32.powi(-11)), "{v} -> {r}");
        assert_eq!(dst_round(v, true), v);
    }
    assert!(dst_round(f32::NAN, false).is_nan());
    assert_eq!(dst_round(f32::INFINITY, false), f32::INFINITY);
}

fn round_trip(format: DataFormat, vals: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let mut bytes = vec![0u8; format.tile_bytes() as usize];
    pack_tile(format, vals, &mut bytes);
    let mut back = vec![0f32; TILE];
    unpack_tile(format, &bytes, &mut back);
    (bytes, back)
}

#[test]
fn float32_round_trip_and_layout() {
    let mut rng = Rng(1);
    let mut vals = rng.tile(1e3);
    vals[5] = f32::INFINITY;
    vals[6] = -0.0;
    vals[7] = f32::from_bits(1); // subnormal
    let (bytes, back) = round_trip(DataFormat::Float32, &vals);
    for (a, b) in vals.iter().zip(&back) {
        assert_eq!(a.to_bits(), b.to_bits());
    }
    // Element (0, 16) is the first of face 1; (16, 0) the first of face 2.
    assert_eq!(&bytes[1024..1028], &vals[16].to_le_bytes());
    assert_eq!(&bytes[2048..2052], &vals[16 * 32].to_le_bytes());
    assert_eq!(&bytes[64..68], &vals[32].to_le_bytes()); // (1, 0) is face position 16
}

#[test]
fn float16_b_round_trip() {
    let mut rng = Rng(2);
    let vals = rng.bf16_tile(50.0);
    let (bytes, back) = round_trip(DataFormat::Float16_b, &vals);
    assert_eq!(back, vals);
    assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), (vals[0].to_bits() >> 16) as u16);
    assert_eq!(u16::from_le_bytes([bytes[512], bytes[513]]), (vals[16].to_bits() >> 16) as u16);
    // Non-BF16 values are rounded to nearest even.
    let mut v = vec![0f32; TILE];
    v[0] = 1.0 + 2f32.powi(-8);
    v[1] = 1.0 + 3.0 * 2f32.powi(-8);
    v[2] = f32::NAN;
    let (_, back) = round_trip(DataFormat::Float16_b, &v);
    assert_eq!(back[0], 1.0);
    assert_eq!(back[1], 1.0 + 2f32.powi(-6));
    assert!(back[2].is_nan());
}

#[test]
fn bfp8_hand_computed_row() {
    let mut v = vec![0f32; TILE];
    // Face 0, row 0 (tile row 0, columns 0..16): largest exponent is that of 3.0 (biased 128).
    let row0 = [3.0, 1.0, -2.75, 0.0390625, 0.046875, 0.078125, 0.001, -0.0];
    v[..8].copy_from_slice(&row0);
    // Face 1, row 0 (tile row 0, column 16): 1.9921875 = 127.5 / 64 rounds past 127 and saturates.
    v[16] = 1.9921875;
    v[17] = 0.5;
    // Face 2, row 1 (tile row 17, column 0).
    v[17 * 32] = -0.25;
    let (bytes, back) = round_trip(DataFormat::Bfp8_b, &v);
    assert_eq!(bytes[0], 128); // exponent of face row 0
    assert_eq!(bytes[16], 127); // face 1, row 0
    assert_eq!(bytes[32 + 1], 125); // face 2, row 1
    assert_eq!(bytes[1], 0); // an all-zero row
    let d = &bytes[64..];
    assert_eq!(d[0], 96); // 3.0 = 96/64 * 2
    assert_eq!(d[1], 32); // 1.0
    assert_eq!(d[2], 0x80 | 88); // -2.75
    assert_eq!(d[3], 1); // 0.0390625 -> mag 1.25 -> 1
    assert_eq!(d[4], 2); // mag 1.5, a tie -> 2 (even)
    assert_eq!(d[5], 2); // mag 2.5, a tie -> 2 (even)
    assert_eq!(d[6], 0); // too small
    assert_eq!(d[7], 0); // -0 has no sign
    assert_eq!(d[256], 127); // saturated
    assert_eq!(d[257], 32);
    assert_eq!(d[512 + 16], 0x80 | 64); // -0.25 = -64/64 * 2^-2
    let want = [3.0, 1.0, -2.75, 0.03125, 0.0625, 0.0625, 0.0, 0.0];
    assert_eq!(&back[..8], &want);
    assert_eq!(back[16], 1.984375);
    assert_eq!(back[17], 0.5);
    assert_eq!(back[17 * 32], -0.25);
    assert!(back[8..16].iter().all(|&x| x == 0.0));
    // Values already representable (one exponent per row, 7 magnitude bits) round-trip exactly.
    let (_, again) = round_trip(DataFormat::Bfp8_b, &back);
    assert_eq!(again, back);
}

#[test]
fn bfp4_hand_computed_row() {
    let mut v = vec![0f32; TILE];
    let row0 = [3.0, 1.0, 0.75, 0.25, -1.25, 0.375, 3.5, -0.0];
    v[..8].copy_from_slice(&row0);
    let (bytes, back) = round_trip(DataFormat::Bfp4_b, &v);
    assert_eq!(bytes[0], 128);
    assert_eq!(bytes.len(), 576);
    // Magnitudes (value / 2 * 4): 6, 2, 1.5 -> 2, 0.5 -> 0, 2.5 -> 2 (sign), 0.75 -> 1, 7, 0.
    let d = &bytes[64..];
    assert_eq!(d[0], 6 | (2 << 4)); // element 0 in the low nibble
    assert_eq!(d[1], 2);
    assert_eq!(d[2], (0x8 | 2) | (1 << 4));
    assert_eq!(d[3], 7);
    let want = [3.0, 1.0, 1.0, 0.0, -1.0, 0.5, 3.5, 0.0];
    assert_eq!(&back[..8], &want);
    // Saturation: 1.9375 (E = 127) is magnitude 7.75, rounds to 8 and saturates at 7 = 1.75.
    let mut w = vec![0f32; TILE];
    w[0] = 1.9375;
    w[1] = 0.5;
    let (_, back) = round_trip(DataFormat::Bfp4_b, &w);
    assert_eq!(back[0], 1.75);
    assert_eq!(back[1], 0.5);
    let (_, again) = round_trip(DataFormat::Bfp4_b, &back);
    assert_eq!(again, back);
}

#[test]
fn bfp_round_trips_are_within_half_a_step() {
    let mut rng = Rng(3);
    let v = rng.tile(10.0);
    for (format, bits) in [(DataFormat::Bfp8_b, 7), (DataFormat::Bfp4_b, 3)] {
        let (bytes, back) = round_trip(format, &v);
        for r in 0..DIM {
            for c in 0..DIM {
                let p = face_pos(r, c);
                let e = bytes[p / 16] as i32;
                let step = 2f32.powi(e - 127 - (bits - 1));
                let x = round_bf16(v[r * DIM + c]);
                let y = back[r * DIM + c];
                let max = ((1 << bits) - 1) as f32 * step;
                if x.abs() > max {
                    assert_eq!(y, max.copysign(x), "{format:?} {x} must saturate");
                } else {
                    assert!((x - y).abs() <= step * 0.5, "{format:?} {x} -> {y} (step {step})");
                }
            }
        }
        let (_, again) = round_trip(format, &back);
        assert_eq!(again, back, "{format:?}: decoded values must be representable");
    }
}

#[test]
fn bfp_non_finite_values() {
    for format in [DataFormat::Bfp8_b, DataFormat::Bfp4_b] {
        let mut v = vec![0f32; TILE];
        v[0] = f32::INFINITY;
        v[1] = f32::NEG_INFINITY;
        v[2] = f32::NAN;
        v[3] = 1.0;
        v[4] = 3e38;
        let (bytes, back) = round_trip(format, &v);
        assert_eq!(bytes[0], 255);
        assert_eq!(back[0], f32::INFINITY, "{format:?}");
        assert_eq!(back[1], f32::NEG_INFINITY);
        assert!(back[2].is_nan());
        assert_eq!(back[3], 0.0);
        assert!(back[4].is_finite() && back[4] > 1e38, "{format:?}: {}", back[4]);
    }
}

#[test]
fn fidelity_phases_hand_computed() {
    // in0 (SrcB) = 1 + 2^-7: hi keeps 6 mantissa bits (1), lo = 2^-7.
    // in1 (SrcA) = 1 + 2^-5: hi keeps 4 mantissa bits (1), lo = 2^-5.
    let (x, y) = (1.0 + 2f32.powi(-7), 1.0 + 2f32.powi(-5));
    let mut a = vec![0f32; TILE];
    let mut b = vec![0f32; TILE];
    a[0] = x;
    b[0] = y;
    let got = |f| mm(&a, &b, f, true, false)[0];
    assert_eq!(got(MathFidelity::LoFi), 1.0);
    assert_eq!(got(MathFidelity::HiFi2), 1.0 + 2f32.powi(-5));
    assert_eq!(got(MathFidelity::HiFi3), 1.0 + 2f32.powi(-5) + 2f32.powi(-7));
    assert_eq!(got(MathFidelity::HiFi4), x * y);
    // ELWMUL: in0 in SrcA, in1 in SrcB, so the roles swap.
    assert_eq!(fpu_mul(y, x, MathFidelity::LoFi), 1.0);
    assert_eq!(fpu_mul(y, x, MathFidelity::HiFi2), 1.0 + 2f32.powi(-5));
    assert_eq!(fpu_mul(y, x, MathFidelity::HiFi3), 1.0 + 2f32.powi(-5) + 2f32.powi(-7));
    assert_eq!(fpu_mul(y, x, MathFidelity::HiFi4), x * y);
    assert_eq!(fpu_mul(-y, x, MathFidelity::HiFi2), -(1.0 + 2f32.powi(-5)));
    // TF32 operands: SrcB keeps all 10 mantissa bits, SrcA drops its last one.
    let t = 1.0 + 2f32.powi(-10);
    assert_eq!(fpu_mul(2.0, t, MathFidelity::HiFi4), 2.0 * t);
    assert_eq!(fpu_mul(t, 2.0, MathFidelity::HiFi4), 2.0);
    assert_eq!(fpu_mul(1.0 + 2f32.powi(-12), 1.0, MathFidelity::HiFi4), 1.0); // below TF32
    assert_eq!(FpuOperand::src_a(t).value(), 1.0);
    assert_eq!(FpuOperand::src_b(t).value(), t);
    // Subnormals are flushed.
    assert_eq!(fpu_mul(f32::from_bits(5), 1e30, MathFidelity::HiFi4), 0.0);
}

#[test]
fn hifi4_bf16_matches_f64_reference() {
    let mut rng = Rng(4);
    let a = rng.bf16_tile(2.0);
    let b = rng.bf16_tile(2.0);
    let (r, m) = reference(&a, &b);
    let got = mm(&a, &b, MathFidelity::HiFi4, true, false);
    let eps = 2f64.powi(-24);
    for i in 0..TILE {
        // Products are exact; 32 f32 additions plus the one into Dst.
        let bound = 33.0 * eps * m[i];
        assert!((got[i] as f64 - r[i]).abs() <= bound, "{i}: {} vs {}", got[i], r[i]);
    }
    // With BF16 Dst the result is the sum rounded to TF32 then BF16: within half a BF16 ulp plus half a
    // TF32 ulp, (2^-8 + 2^-11) relative.
    let got16 = mm(&a, &b, MathFidelity::HiFi4, false, false);
    for i in 0..TILE {
        assert!(is_bf16(got16[i]));
        let bound = 33.0 * eps * m[i] + (r[i].abs() + 33.0 * eps * m[i]) * (2f64.powi(-8) + 2f64.powi(-11));
        assert!((got16[i] as f64 - r[i]).abs() <= bound, "{i}: {} vs {}", got16[i], r[i]);
    }
    // Accumulates into acc.
    let mut acc = got.clone();
    matmul_tile(&a, &b, &mut acc, MathFidelity::HiFi4, true, false);
    for i in 0..TILE {
        assert!((acc[i] as f64 - 2.0 * r[i]).abs() <= 2.0 * 34.0 * eps * m[i] + 1e-30);
    }
}

#[test]
fn lower_fidelity_error_is_measurable_and_bounded() {
    let mut rng = Rng(5);
    let a = rng.bf16_tile(1.0);
    let b = rng.bf16_tile(1.0);
    let (r, m) = reference(&a, &b);
    let eps = 2f64.powi(-24);
    // Per product (BF16 in: SrcA's hi + lo holds all of it): SrcB hi loses < 2^-6 relative and SrcA hi < 2^-4,
    // so LoFi errs by < (2^-6 + 2^-4 + 2^-10)|ab|, HiFi2 (SrcB hi x all of SrcA) by < 2^-6 |ab|, and HiFi3
    // (missing SrcB lo x SrcA lo) by < 2^-6 * 2^-4 |ab|.
    let rel = [2f64.powi(-6) + 2f64.powi(-4) + 2f64.powi(-10), 2f64.powi(-6), 2f64.powi(-10)];
    let mut max_err = [0f64; 3];
    for (f, fid) in [MathFidelity::LoFi, MathFidelity::HiFi2, MathFidelity::HiFi3].into_iter().enumerate() {
        let got = mm(&a, &b, fid, true, false);
        for i in 0..TILE {
            let err = (got[i] as f64 - r[i]).abs();
            assert!(err <= rel[f] * m[i] + 33.0 * eps * m[i] * 1.1, "{fid:?} {i}: err {err}, Σ|ab| {}", m[i]);
            max_err[f] = max_err[f].max(err);
        }
    }
    // LoFi differs measurably (typical Σ|ab| is about 8 here), and each phase helps.
    assert!(max_err[0] > 1e-2, "LoFi max error {}", max_err[0]);
    assert!(max_err[0] > max_err[1] && max_err[1] > max_err[2], "{max_err:?}");
    let hifi4 = mm(&a, &b, MathFidelity::HiFi4, true, false);
    assert_ne!(mm(&a, &b, MathFidelity::LoFi, true, false), hifi4);
}

#[test]
fn block_float_inputs_need_fewer_phases() {
    let mut rng = Rng(6);
    let pack = |f: DataFormat, v: &[f32]| round_trip(f, v).1;
    let (a8, b8) = (pack(DataFormat::Bfp8_b, &rng.tile(3.0)), pack(DataFormat::Bfp8_b, &rng.tile(3.0)));
    assert_eq!(mm(&a8, &b8, MathFidelity::HiFi2, true, false), mm(&a8, &b8, MathFidelity::HiFi4, true, false));
    let (a4, b4) = (pack(DataFormat::Bfp4_b, &rng.tile(3.0)), pack(DataFormat::Bfp4_b, &rng.tile(3.0)));
    assert_eq!(mm(&a4, &b4, MathFidelity::LoFi, true, false), mm(&a4, &b4, MathFidelity::HiFi4, true, false));
}

#[test]
fn transpose_b_matches_a_hand_transpose() {
    let mut rng = Rng(8);
    let a = rng.bf16_tile(1.0);
    let b = rng.tile(1.0); // full f32, so the TF32 truncation is exercised too
    let mut bt = vec![0f32; TILE];
    for k in 0..DIM {
        for n in 0..DIM {
            bt[n * DIM + k] = b[k * DIM + n];
        }
    }
    for fid in [MathFidelity::LoFi, MathFidelity::HiFi2, MathFidelity::HiFi3, MathFidelity::HiFi4] {
        for fp32 in [false, true] {
            assert_eq!(mm(&a, &bt, fid, fp32, true), mm(&a, &b, fid, fp32, false), "{fid:?}");
        }
    }
    // And the orientation is right: element (i, j) uses row i of a and column j of b.
    let mut e = vec![0f32; TILE];
    let mut f = vec![0f32; TILE];
    e[3 * DIM + 5] = 2.0; // a[3][5]
    f[5 * DIM + 7] = 3.0; // b[5][7]
    let got = mm(&e, &f, MathFidelity::HiFi4, true, false);
    assert_eq!(got[3 * DIM + 7], 6.0);
    assert_eq!(got.iter().filter(|&&x| x != 0.0).count(), 1);
}

#[test]
fn sfpu_unary_points() {
    let close = |got: f32, want: f64| {
        let tol = want.abs() * 2e-7 + 1e-30;
        assert!((got as f64 - want).abs() <= tol, "{got} vs {want}");
    };
    close(sfpu_unary(SfpuUnary::Exp, 1.0), std::f64::consts::E);
    close(sfpu_unary(SfpuUnary::Log, 2.0), std::f64::consts::LN_2);
    close(sfpu_unary(SfpuUnary::Sqrt, 2.0), std::f64::consts::SQRT_2);
    close(sfpu_unary(SfpuUnary::Rsqrt, 4.0), 0.5);
    close(sfpu_unary(SfpuUnary::Recip, 4.0), 0.25);
    assert_eq!(sfpu_unary(SfpuUnary::Recip, 0.0), f32::INFINITY);
    assert!(sfpu_unary(SfpuUnary::Sqrt, -1.0).is_nan());
    assert!(sfpu_unary(SfpuUnary::Log, -1.0).is_nan());
    assert_eq!(sfpu_unary(SfpuUnary::Log, 0.0), f32::NEG_INFINITY);
    // erf and the GELUs against published values.
    close(sfpu_unary(SfpuUnary::Erf, 0.5), 0.5204998778130465);
    close(sfpu_unary(SfpuUnary::Erf, 1.0), 0.8427007929497149);
    close(sfpu_unary(SfpuUnary::Erf, -2.0), -0.9953222650189527);
    close(sfpu_unary(SfpuUnary::Erf, 3.0), 1.0 - 2.2090496998585438e-05);
    close(sfpu_unary(SfpuUnary::Gelu, 1.0), 0.8413447460685429);
    close(sfpu_unary(SfpuUnary::Gelu, -3.0), -0.004049694094890287);
    close(sfpu_unary(SfpuUnary::Gelu, -10.0), -7.619853024160527e-23);
    close(sfpu_unary(SfpuUnary::GeluTanh, 1.0), 0.8411919906082768);
    close(sfpu_unary(SfpuUnary::Silu, 1.0), 0.7310585786300049);
    close(sfpu_unary(SfpuUnary::Sigmoid, 0.0), 0.5);
    close(sfpu_unary(SfpuUnary::Tanh, 0.5), 0.5f64.tanh());
    close(sfpu_unary(SfpuUnary::Sin, 1.0), 1f64.sin());
    close(sfpu_unary(SfpuUnary::Cos, 1.0), 1f64.cos());
    close(sfpu_unary(SfpuUnary::Elu(1.0), -1.0), -0.6321205588285577);
    assert_eq!(sfpu_unary(SfpuUnary::Elu(1.0), 2.0), 2.0);
    close(sfpu_unary(SfpuUnary::LeakyRelu(0.1), -2.0), -0.2);
    assert_eq!(sfpu_unary(SfpuUnary::Relu, -2.0), 0.0);
    assert_eq!(sfpu_unary(SfpuUnary::Relu, 2.0), 2.0);
    assert_eq!(sfpu_unary(SfpuUnary::RsubScalar(3.0), 1.0), 2.0);
    assert_eq!(sfpu_unary(SfpuUnary::AddScalar(0.5), 1.0), 1.5);
    assert_eq!(sfpu_unary(SfpuUnary::MulScalar(3.0), 1.5), 4.5);
    assert_eq!(sfpu_unary(SfpuUnary::MaxScalar(0.5), 0.25), 0.5);
    assert_eq!(sfpu_unary(SfpuUnary::MinScalar(0.5), 0.25), 0.25);
    assert_eq!(sfpu_unary(SfpuUnary::PowScalar(3.0), 2.0), 8.0);
    assert_eq!(sfpu_unary(SfpuUnary::Square, -3.0), 9.0);
    assert_eq!(sfpu_unary(SfpuUnary::Abs, -3.0), 3.0);
    assert_eq!(sfpu_unary(SfpuUnary::Neg, 3.0), -3.0);
    assert_eq!(sfpu_unary(SfpuUnary::Floor, -1.5), -2.0);
    assert_eq!(sfpu_unary(SfpuUnary::Sign, -0.1), -1.0);
    assert_eq!(sfpu_unary(SfpuUnary::Sign, 0.0), 0.0);
    assert_eq!(sfpu_unary(SfpuUnary::Sign, 7.0), 1.0);
    // erf is odd, monotone and agrees with erfc across the branch point at 2.
    for i in -400..=400 {
        let x = i as f64 / 100.0;
        assert!((erf(x) + erf(-x)).abs() < 1e-15);
        assert!((erf(x) + erfc(x) - 1.0).abs() < 1e-15, "{x}");
        assert!(erf(x + 0.01) >= erf(x));
    }
    assert!((erf(1.999999) - erf(2.0)).abs() < 1e-6);
}

#[test]
fn sfpu_binary_points() {
    assert_eq!(sfpu_binary(SfpuBinary::Add, 1.5, 2.25), 3.75);
    assert_eq!(sfpu_binary(SfpuBinary::Sub, 1.5, 2.25), -0.75);
    assert_eq!(sfpu_binary(SfpuBinary::Mul, 1.5, 2.0), 3.0);
    assert_eq!(sfpu_binary(SfpuBinary::Div, 1.0, 4.0), 0.25);
    assert_eq!(sfpu_binary(SfpuBinary::Div, 1.0, 0.0), f32::INFINITY);
    assert_eq!(sfpu_binary(SfpuBinary::Max, -1.0, 2.0), 2.0);
    assert_eq!(sfpu_binary(SfpuBinary::Min, -1.0, 2.0), -1.0);
    assert_eq!(sfpu_binary(SfpuBinary::Pow, 2.0, 10.0), 1024.0);
    let p = sfpu_binary(SfpuBinary::Pow, 2.0, 0.5) as f64;
    assert!((p - std::f64::consts::SQRT_2).abs() < 2e-7);
}

/// Timing of matmul_tile: `cargo test --release -p sovc-runtime --lib tensix::numerics -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_matmul_tile() {
    let mut rng = Rng(9);
    let a = rng.bf16_tile(1.0);
    let b = rng.bf16_tile(1.0);
    let mut acc = vec![0f32; TILE];
    for fid in [MathFidelity::LoFi, MathFidelity::HiFi2, MathFidelity::HiFi3, MathFidelity::HiFi4] {
        for transpose in [false, true] {
            let n = 20_000;
            let t = std::time::Instant::now();
            for _ in 0..n {
                matmul_tile(std::hint::black_box(&a), std::hint::black_box(&b), &mut acc, fid, false, transpose);
            }
            let us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            println!("matmul_tile {fid:?} transpose_b={transpose}: {us:.2} us/call");
        }
    }
    std::hint::black_box(&acc);
}
