//! Row softmax for the attention routine, written so the compiler vectorizes it (branch-free exp by
//! range reduction and a polynomial, the same formula the generated kernels use), compiled for AVX2+FMA
//! when the machine has it.

/// exp(x) for x <= 0 to about 2 ulp; 0 below -87 (flushed rather than denormal, which would make every
/// later multiply by it slow).
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    let tiny = x < -87.0;
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E;
    // Round to nearest with the 1.5·2^23 trick (no rounding instruction needed).
    let n = (t + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let p = p * r * r + r + 1.0;
    let bits = ((n as i32 + 127) << 23) as u32;
    if tiny {
        0.0
    } else {
        p * f32::from_bits(bits)
    }
}

#[inline(always)]
fn rows(s: &mut [f32], width: usize, scale: f32, mask: &dyn Fn(usize, &mut [f32])) {
    for (i, row) in s.chunks_exact_mut(width).enumerate() {
        for x in row.iter_mut() {
            *x *= scale;
        }
        mask(i, row);
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = row.chunks_exact(8);
        for c in &mut chunks {
            for l in 0..8 {
                lanes[l] = lanes[l].max(c[l]);
            }
        }
        let mx =
            chunks.remainder().iter().fold(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max), |a, &b| a.max(b));
        for x in row.iter_mut() {
            *x = exp_neg(*x - mx);
        }
        let mut sums = [0f32; 8];
        let mut chunks = row.chunks_exact(8);
        for c in &mut chunks {
            for l in 0..8 {
                sums[l] += c[l];
            }
        }
        let tot: f32 = sums.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>();
        let inv = 1.0 / tot;
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(s: &mut [f32], width: usize, scale: f32, mask: &dyn Fn(usize, &mut [f32])) {
    rows(s, width, scale, mask)
}

/// In place, for each row `i` of `s` (rows of `width`): `x = softmax(scale·x + mask)`, where
/// `mask(i, row)` adds the mask to the scaled row.
pub fn softmax_rows(s: &mut [f32], width: usize, scale: f32, mask: &dyn Fn(usize, &mut [f32])) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected.
        return unsafe { rows_avx2(s, width, scale, mask) };
    }
    rows(s, width, scale, mask)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_accurate_and_softmax_sums_to_one() {
        for i in 0..2000 {
            let x = -(i as f32) * 0.05;
            let want = (x as f64).exp();
            let got = super::exp_neg(x) as f64;
            assert!((got - want).abs() <= 4e-7 * want + 2e-38, "exp({x}) = {got}, want {want}");
        }
        let mut s: Vec<f32> = (0..3 * 13).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        super::softmax_rows(&mut s, 13, 0.5, &|_, _| {});
        for row in s.chunks(13) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}
