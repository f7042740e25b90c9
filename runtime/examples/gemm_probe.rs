use sovc_runtime::cpu::{gemm::*, pool::Pool};
fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    let (m, k, n, threads) = (args[0], args[1], args[2], args[3]);
    let pool = Pool::new(threads);
    let isa = Isa::detect();
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32).collect();
    let pb = unsafe { pack_b(&isa, Some(&pool), k, n, b.as_ptr(), n as isize, 1) };
    let mut c = vec![0f32; m * n];
    let mut best = f64::MAX;
    for _ in 0..200 {
        let t = std::time::Instant::now();
        unsafe {
            sgemm(
                &isa,
                Some(&pool),
                m,
                Mat { ptr: a.as_ptr(), rs: k as isize, cs: 1 },
                &pb,
                c.as_mut_ptr(),
                n,
                false,
                None,
            )
        };
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{m}x{k}x{n} threads {threads}: {:.3} ms {:.1} GFLOP/s",
        best * 1e3,
        2.0 * (m * n * k) as f64 / best / 1e9
    );
}
