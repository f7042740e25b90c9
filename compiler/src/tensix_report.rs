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

/// What step `step` of a plan is, for messages: its program, or the host step of its kernel.
pub fn step_name(plan: &sovc_runtime::tensix::program::Plan, step: usize) -> String {
    match plan.steps.get(step) {
        Some(sovc_runtime::tensix::program::Step::Device(p)) => format!("program `{}`", p.name),
        Some(sovc_runtime::tensix::program::Step::Host { kernel, .. }) => format!("the host step of kernel {kernel}"),
        None => format!("step {step}"),
    }
}

/// Largest absolute difference and Pearson correlation of `got` against `want` (1 when both are
/// constant and equal).
pub fn compare(got: &Tensor, want: &Tensor) -> (f64, f64) {
    let (a, b) = (got.to_f64_vec(), want.to_f64_vec());
    if a.len() != b.len() {
        return (f64::INFINITY, 0.0);
    }
    // A NaN on either side counts as an infinite error.
    let err = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .map(|d| if d.is_nan() { f64::INFINITY } else { d })
        .fold(0.0, f64::max);
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

/// Audit lines per plan kernel for a Tensix plan: the program's cores, L1 per core by use, circular
/// buffers, tile counts, formats, fidelity and predicted cycles (from the timing model, no values
/// computed).
pub fn audit_lines(plan: &sovc_runtime::tensix::program::Plan) -> std::collections::BTreeMap<usize, Vec<String>> {
    use sovc_runtime::tensix::program::Step;
    let predicted = sovc_runtime::tensix::device::predict(plan);
    let mut out: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    let d = &plan.device;
    let mut pi = 0;
    for s in &plan.steps {
        let Step::Device(p) = s else { continue };
        let r = predicted.as_ref().ok().and_then(|r| r.programs.get(pi));
        pi += 1;
        let mut l = Vec::new();
        let last = p.cores.last().map_or((0, 0), |c| (c.x, c.y));
        l.push(format!(
            "tensix program `{}` ({}) on {} of {}x{} cores (logical (0,0)..({},{}))",
            p.name,
            p.template,
            p.cores.len(),
            d.grid_x,
            d.grid_y,
            last.0,
            last.1
        ));
        let l1: u64 = p.cbs.iter().map(|c| c.bytes()).sum();
        let cbs: Vec<String> = p
            .cbs
            .iter()
            .map(|c| {
                format!("c_{} {} {}x{} {} B @{:#x}", c.index, c.role, c.pages, c.format.name(), c.bytes(), c.address)
            })
            .collect();
        l.push(format!("L1 per core: {l1} B of {} B free: {}", d.l1_bytes - d.l1_unreserved_base, cbs.join(", ")));
        let formats: Vec<String> = p
            .tensors
            .iter()
            .filter_map(|&t| plan.tensors.get(t as usize))
            .map(|t| match t.part {
                None => format!("%{} {}", t.value, t.format.name()),
                Some(p) => format!("%{} {} ({:?} part)", t.value, t.format.name(), p),
            })
            .collect();
        l.push(format!(
            "formats: {}; fidelity {}; {} accumulation{}",
            formats.join(", "),
            p.fidelity.name(),
            if p.fp32_dest_acc { "FP32" } else { "BF16" },
            if p.notes.is_empty() { String::new() } else { format!("; {}", p.notes.join("; ")) }
        ));
        match r {
            Some(r) => l.push(format!(
                "tiles: {} read, {} written, {} products; predicted {} cycles ({:.2} us){}, FPU utilization {:.1}%",
                r.tiles_read,
                r.tiles_written,
                r.tile_products,
                r.cycles,
                r.cycles as f64 / d.clock_mhz as f64,
                if r.dram_bound { ", DRAM-bound" } else { "" },
                100.0 * r.ideal_fpu_cycles as f64 / (r.cycles.max(1) as f64 * d.cores() as f64)
            )),
            None => l.push(format!(
                "predicted: not available ({})",
                predicted.as_ref().err().map(|e| e.to_string()).unwrap_or_default()
            )),
        }
        out.entry(p.kernel).or_default().extend(l);
    }
    out
}

/// Writes the artifact's TT-Metalium project (its `tensix.project` section) under `dir`, and the tilized
/// bytes of every weight the device reads as `data/<value>.bin` (the host program loads them).
pub fn emit_project(a: &sovc_runtime::Artifact, dir: &std::path::Path) -> Result<usize, String> {
    let section = |n: &str| {
        a.sections.iter().find(|s| s.name == n).map(|s| s.data.as_slice()).ok_or_else(|| format!("no `{n}` section"))
    };
    let files: Vec<(String, String)> =
        serde_json::from_slice(section("tensix.project")?).map_err(|e| format!("tensix.project: {e}"))?;
    let plan: sovc_runtime::tensix::program::Plan =
        serde_json::from_slice(section("tensix.plan")?).map_err(|e| format!("tensix.plan: {e}"))?;
    let write = |p: &std::path::Path, bytes: &[u8]| {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    let mut n = 0;
    for (path, text) in &files {
        if path.split('/').any(|c| c == ".." || c.is_empty()) || path.starts_with('/') {
            return Err(format!("the project names an unsafe path `{path}`"));
        }
        write(&dir.join(path), text.as_bytes())?;
        n += 1;
    }
    let s = sovc_runtime::Session::new(a, sovc_runtime::Device::Reference).map_err(|e| e.to_string())?;
    let consts = s.constants().map_err(|e| e.to_string())?;
    for t in &plan.tensors {
        if let Some(x) = consts.get(&(t.value as usize)) {
            let name = sovc_target_tensix::emit::data_name(t);
            write(&dir.join(format!("data/{name}.bin")), &sovc_runtime::tensix::device::tilize(t, x))?;
            n += 1;
        }
    }
    Ok(n)
}
