fn main() {
    let mut s: Vec<f32> = (0..128 * 128).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let t = std::time::Instant::now();
    for _ in 0..100 {
        sovc_runtime::cpu::math::softmax_rows(&mut s, 128, 0.125, &|_, _| {});
    }
    println!("softmax 128x128: {:.1} us", t.elapsed().as_secs_f64() * 1e4);
    let t = std::time::Instant::now();
    for _ in 0..100 {
        for x in s.iter_mut() {
            *x = x.exp();
        }
    }
    println!("libm exp 128x128: {:.1} us", t.elapsed().as_secs_f64() * 1e4);
}
