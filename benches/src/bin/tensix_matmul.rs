//! Predicted FPU utilization of a bf16 matmul on a Tensix device, from sovc's timing model (no card
//! needed): `cargo run --release -p sovc-benches --bin tensix_matmul -- [SIZE] [blackhole|wormhole_b0]`.
//!
//! It compiles `C = A @ B` (SIZE x SIZE x SIZE, default 4096) for the device with several fidelity and
//! format choices, runs the plan through the timing model without computing values, and prints the
//! predicted time, TFLOP/s and FPU utilization = ideal cycles / (predicted cycles x cores), where a
//! 32x32x32 tile product ideally takes 16 / 32 / 48 / 64 cycles at LoFi / HiFi2 / HiFi3 / HiFi4 (the
//! definition of tt-metal's GEMM_FLOPS report, whose hand-tuned kernels reach about 96% on a p150), and
//! says whether DRAM bandwidth or the slowest core set the time, with and without operand multicast.

use sovc_compiler::compile::{compile, CompileOptions, TensixOptions};
use sovc_runtime::{Artifact, SectionKind};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let arch = args.get(2).cloned().unwrap_or_else(|| "blackhole".into());
    let m = sovc_models::builtin::matmul(n, n, n);
    let flop = 2.0 * (n as f64).powi(3);
    println!("bf16 matmul {n}x{n}x{n} on {arch}: sovc timing model (predicted, no device)");
    println!(
        "{:<38} {:>10} {:>9} {:>8} {:>7} {:>11} {:>6}  bound by",
        "options", "cycles", "time ms", "TFLOP/s", "FPU %", "DRAM MB", "cores"
    );
    let bf16 = |f: Option<&str>, bf16_acc: bool| TensixOptions {
        precision: Some("bf16".into()),
        fidelity: f.map(|f| f.to_string()),
        bf16_acc,
        ..Default::default()
    };
    let alone = |t: TensixOptions| TensixOptions { no_multicast: true, ..t };
    let configs: [(&str, TensixOptions); 8] = [
        ("fp32 split precision (default)", TensixOptions::default()),
        ("bf16, HiFi4, fp32 acc", bf16(None, false)),
        ("bf16, HiFi2, fp32 acc", TensixOptions { fidelity: Some("HiFi2".into()), ..Default::default() }),
        (
            "bf16, HiFi2, bf16 acc",
            TensixOptions { fidelity: Some("HiFi2".into()), bf16_acc: true, ..Default::default() },
        ),
        ("bf16, HiFi4, bf16 acc", TensixOptions { bf16_acc: true, ..Default::default() }),
        ("bf16, LoFi, bf16 acc", TensixOptions { fidelity: Some("LoFi".into()), bf16_acc: true, ..Default::default() }),
        ("bf16, HiFi4, fp32 acc, no multicast", alone(bf16(None, false))),
        ("bf16, HiFi4, bf16 acc, no multicast", alone(TensixOptions { bf16_acc: true, ..Default::default() })),
    ];
    for (what, tensix) in configs {
        let opts = CompileOptions { target: arch.clone(), tensix, ..Default::default() };
        let bytes = match compile(&m, &opts) {
            Ok(c) => c.bytes,
            Err(e) => {
                eprintln!("{what}: {e}");
                std::process::exit(1);
            }
        };
        let a = Artifact::from_bytes(&bytes).expect("sovc wrote a valid artifact");
        let s = a.sections.iter().find(|s| s.kind == SectionKind::Code && s.name == "tensix.plan").expect("plan");
        let plan: sovc_runtime::tensix::program::Plan = serde_json::from_slice(&s.data).expect("plan parses");
        let r = sovc_runtime::tensix::device::predict(&plan).expect("the plan runs on the timing model");
        let secs = r.device_seconds();
        let dram: u64 = r.programs.iter().map(|p| p.dram_bytes).sum();
        let dram_bound = r.programs.iter().any(|p| p.dram_bound);
        let cores = r.programs.iter().map(|p| p.cores.len()).max().unwrap_or(0);
        println!(
            "{what:<38} {:>10} {:>9.3} {:>8.1} {:>7.1} {:>11.1} {cores:>6}  {}",
            r.device_cycles(),
            secs * 1e3,
            flop / secs / 1e12,
            100.0 * r.fpu_utilization(),
            dram as f64 / 1e6,
            if dram_bound { "DRAM bandwidth" } else { "the slowest core" }
        );
    }
    println!(
        "Each core accumulates a block of output tiles that fits in Dst over K, in steps of up to 8 K tiles. With \
         multicast (the default) the cores form a grid whose sides divide the block rows and columns (8x8 of the \
         11x10 p150 cores for 4096^3): the first core of each row reads A's blocks from DRAM and multicasts them \
         along the row (reader, NoC 0), the first core of each column does the same with B (writer, NoC 1). \
         FPU % is over the whole grid, so the 8x8 grid caps it at 58%. Without multicast every core reads its \
         own A and B tiles. Hand-tuned kernels also keep larger output blocks in L1 (partials spilled in FP32), \
         which sovc does not yet do."
    );
}
