//! What the command line prints about a run on the Tensix simulator: the predicted device time, FPU
//! utilization and slowest programs, and how a result compares with the reference (largest absolute
//! difference and Pearson correlation, the metric Tenstorrent users quote).

use sovc_ir::Tensor;
use sovc_runtime::tensix::RunReport;

/// A few lines on the predicted device time of a run.
pub fn summary(r: &RunReport) -> String {
    let mut s = format!(
        "tensix-sim: predicted device time {:.3} ms ({} programs, {} cycles at {} MHz), FPU utilization {:.1}% of {} cores, {} host steps",
        r.device_seconds() * 1e3,
        r.programs.len(),
        r.device_cycles(),
        r.clock_mhz,
        100.0 * r.fpu_utilization(),
        r.grid_cores,
        r.host_steps
    );
    let mut by: Vec<_> = r.programs.iter().collect();
    by.sort_by_key(|p| std::cmp::Reverse(p.cycles));
    for p in by.iter().take(5) {
        s.push_str(&format!(
            "\n  {:<28} {:>10} cycles on {:>3} cores{}",
            p.name,
            p.cycles,
            p.cores.len(),
            if p.dram_bound { " (DRAM-bound)" } else { "" }
        ));
    }
    s
}

/// Largest absolute difference and Pearson correlation of `got` against `want` (1 when both are
/// constant and equal).
pub fn compare(got: &Tensor, want: &Tensor) -> (f64, f64) {
    let (a, b) = (got.to_f64_vec(), want.to_f64_vec());
    if a.len() != b.len() {
        return (f64::INFINITY, 0.0);
    }
    let err = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    (err, pcc(&a, &b))
}

/// Pearson correlation coefficient.
pub fn pcc(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().max(1) as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return if a == b { 1.0 } else { 0.0 };
    }
    sab / (saa * sbb).sqrt()
}
