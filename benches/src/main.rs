//! Benchmarks sovc's compiled `cpu` target against peers measured in the same run and prints the ratios.
//!
//! Every sovc number here is machine code from `--target cpu` (compiled in-process, loaded from the
//! artifact's bytes, run on a [`sovc_runtime::Session`] of the `cpu` device), not the reference interpreter.
//! The rows:
//!
//! 1. fp32 matmul 1024x1024x1024 (`builtin:matmul`, both operands are inputs, so B is packed on every run as
//!    numpy does) at 1 and 2 threads, in GFLOP/s, against numpy (its BLAS, OpenBLAS in the project venv)
//!    and onnxruntime; `sovc/peer` above 1 means sovc is faster.
//! 2. The BERT-style encoder and 3. ResNet-18 (`tests/data/generated/models/*`) at 1 and 2 threads, median
//!    latency against onnxruntime; `sovc/ort` below 1 means sovc is faster. Outputs are also checked
//!    against the exported `output.*.npy`, so a fast wrong kernel does not pass as a result.
//! 4. Wall time of the in-process `--target cpu` compile of the encoder (median of 3), with the sizes.
//!
//! Each measurement is 3 warm-up runs, then ITERS timed runs (default 20); the tables show medians. Sessions
//! are created once per thread count (that spawns the thread pool and packs the weights) and dropped
//! before the peer runs, so the two never share the cores. The peers are `benches/matmul_peer.py` and
//! `benches/ort_peer.py` on the project venv's Python (`.venv/bin/python`), spawned with
//! `OPENBLAS_NUM_THREADS`, `OMP_NUM_THREADS` and `MKL_NUM_THREADS` set to the thread count.
//!
//! Run: `cargo run --release -p sovc-benches [-- ITERS]` after `scripts/setup-test-deps.sh` (which makes the
//! venv and exports the models).

use serde_json::Value;
use sovc_ir::{Model, Tensor};
use sovc_runtime::{Artifact, Device, Session};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const THREADS: [usize; 2] = [1, 2];
const WARMUP: usize = 3;
const MATMUL_N: usize = 1024;
const COMPILE_REPEATS: usize = 3;
/// A measurement whose median is this much above its minimum is listed as noisy at the end.
const NOISY: f64 = 1.15;

/// Median and minimum of a series of timed runs, in milliseconds.
#[derive(Clone, Copy)]
struct Stats {
    median_ms: f64,
    min_ms: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `f` [`WARMUP`] times, then times `iters` runs.
fn time_runs(iters: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<Stats, String> {
    for _ in 0..WARMUP {
        f()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let min_ms = times.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(Stats { median_ms: median(times), min_ms })
}

fn compile_cpu(m: &Model) -> Result<Vec<u8>, String> {
    let opts = sovc_compiler::compile::CompileOptions { target: "cpu".into(), optimize: true, ..Default::default() };
    sovc_compiler::compile::compile(m, &opts).map(|c| c.bytes).map_err(|e| format!("compile --target cpu: {e}"))
}

fn open(artifact: &Artifact, threads: usize) -> Result<Session, String> {
    Session::with_threads(artifact, Device::Cpu, threads).map_err(|e| format!("session ({threads} threads): {e}"))
}

/// Times `session` on `feeds`; every run's result is dropped inside the timed region, as the peers' are.
fn time_sovc(session: &Session, feeds: &BTreeMap<String, Tensor>, iters: usize) -> Result<Stats, String> {
    time_runs(iters, || session.run(feeds).map(drop).map_err(|e| format!("run: {e}")))
}

/// The harness: where the peers live, how many timed runs, and the noisy measurements seen so far.
struct Bench {
    root: PathBuf,
    iters: usize,
    noisy: Vec<String>,
}

impl Bench {
    /// Runs `benches/<script> ARGS...` on the venv's Python with the BLAS/OpenMP thread count in its
    /// environment (numpy reads it at import), and parses the last line of its output as JSON.
    fn peer(&self, script: &str, args: &[String], threads: usize) -> Result<Value, String> {
        let python = self.root.join(".venv/bin/python");
        let t = threads.to_string();
        let out = Command::new(&python)
            .arg(self.root.join("benches").join(script))
            .args(args)
            .env("OPENBLAS_NUM_THREADS", &t)
            .env("OMP_NUM_THREADS", &t)
            .env("MKL_NUM_THREADS", &t)
            .output()
            .map_err(|e| {
                format!("cannot start {} for {script}: {e} (run scripts/setup-test-deps.sh)", python.display())
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!("{script} failed ({}): {}", out.status, stderr.trim()));
        }
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).ok_or_else(|| format!("{script}: no output"))?;
        serde_json::from_str(line).map_err(|e| format!("{script}: output is not JSON ({e}): {line}"))
    }

    /// `{prefix}median_ms` and `{prefix}min_ms` of a peer's JSON.
    fn peer_stats(v: &Value, prefix: &str) -> Result<Stats, String> {
        let get = |k: String| v.get(&k).and_then(Value::as_f64).ok_or_else(|| format!("peer output lacks `{k}`: {v}"));
        Ok(Stats { median_ms: get(format!("{prefix}median_ms"))?, min_ms: get(format!("{prefix}min_ms"))? })
    }

    /// Remembers `s` as noisy when its median is well above its minimum.
    fn note(&mut self, what: &str, threads: usize, s: Stats) -> Stats {
        if s.median_ms > NOISY * s.min_ms {
            self.noisy.push(format!(
                "{what} at {threads} thread(s): median {:.2} ms, min {:.2} ms (+{:.0}%)",
                s.median_ms,
                s.min_ms,
                (s.median_ms / s.min_ms - 1.0) * 100.0
            ));
        }
        s
    }

    fn matmul(&mut self) {
        let n = MATMUL_N;
        let gflops = |s: Stats| 2.0 * (n as f64).powi(3) / (s.median_ms * 1e-3) / 1e9;
        println!(
            "{:<20} {:>7} {:>13} {:>14} {:>12} {:>11} {:>9}",
            format!("matmul {n}^3 fp32"),
            "threads",
            "sovc GFLOP/s",
            "numpy GFLOP/s",
            "ort GFLOP/s",
            "sovc/numpy",
            "sovc/ort"
        );
        let artifact = match compile_cpu(&sovc_models::builtin::matmul(n, n, n))
            .and_then(|b| Artifact::from_bytes(&b).map_err(|e| format!("artifact: {e}")))
        {
            Ok(a) => a,
            Err(e) => return eprintln!("matmul: {e}"),
        };
        let a = fill(n * n, 1);
        let b = fill(n * n, 2);
        let mut feeds = BTreeMap::new();
        feeds.insert("a".to_string(), Tensor::from_vec(&[n, n], a.clone()).expect("a has n*n elements"));
        feeds.insert("b".to_string(), Tensor::from_vec(&[n, n], b.clone()).expect("b has n*n elements"));
        for threads in THREADS {
            let sovc = open(&artifact, threads).and_then(|s| {
                let c = s.run(&feeds).map_err(|e| format!("run: {e}"))?;
                check_matmul(&a, &b, c.get("c").ok_or("no output `c`")?, n)?;
                time_sovc(&s, &feeds, self.iters)
            });
            let peer =
                self.peer("matmul_peer.py", &[n.to_string(), self.iters.to_string(), threads.to_string()], threads);
            let row = sovc.and_then(|s| {
                let p = peer?;
                Ok((s, Self::peer_stats(&p, "numpy_")?, Self::peer_stats(&p, "ort_")?))
            });
            match row {
                Ok((s, np, ort)) => {
                    let (s, np, ort) = (
                        self.note("sovc matmul", threads, s),
                        self.note("numpy matmul", threads, np),
                        self.note("ort matmul", threads, ort),
                    );
                    println!(
                        "{:<20} {threads:>7} {:>13.1} {:>14.1} {:>12.1} {:>10.2}x {:>8.2}x",
                        "",
                        gflops(s),
                        gflops(np),
                        gflops(ort),
                        gflops(s) / gflops(np),
                        gflops(s) / gflops(ort)
                    );
                }
                Err(e) => eprintln!("matmul ({threads} threads): {e}"),
            }
        }
        println!("  (GFLOP/s = 2*{n}^3 / median time; sovc/peer above 1 means sovc is faster)");
    }

    fn models(&mut self, names: &[&str]) {
        println!(
            "{:<20} {:>7} {:>10} {:>10} {:>9} {:>13}",
            "model", "threads", "sovc ms", "ort ms", "sovc/ort", "max |err|"
        );
        for name in names {
            if let Err(e) = self.model(name) {
                eprintln!("{name}: {e}");
            }
        }
        println!("  (median latency; sovc/ort below 1 means sovc is faster; max |err|: sovc's outputs against the");
        println!("   exported output.*.npy, relative to the largest expected value)");
    }

    /// The exported model folder, or `None` (after saying so) when it has not been generated.
    fn model_dir(&self, name: &str) -> Option<std::path::PathBuf> {
        let dir = self.root.join("tests/data/generated/models").join(name);
        if dir.join("model.onnx").exists() {
            return Some(dir);
        }
        println!("{name:<20} missing ({} has no model.onnx; make it with scripts/setup-test-deps.sh)", dir.display());
        None
    }

    fn model(&mut self, name: &str) -> Result<(), String> {
        let Some(dir) = self.model_dir(name) else { return Ok(()) };
        let model = load(&dir)?;
        let artifact = Artifact::from_bytes(&compile_cpu(&model)?).map_err(|e| format!("artifact: {e}"))?;
        drop(model);
        let feeds = sovc_runtime::read_npy_dir(&dir, "input.").map_err(|e| format!("inputs: {e}"))?;
        let want = sovc_runtime::read_npy_dir(&dir, "output.").map_err(|e| format!("expected outputs: {e}"))?;
        for threads in THREADS {
            let sovc = open(&artifact, threads).and_then(|s| {
                let got = s.run(&feeds).map_err(|e| format!("run: {e}"))?;
                let err = rel_err(&got, &want)?;
                Ok((time_sovc(&s, &feeds, self.iters)?, err))
            });
            let peer = self.peer(
                "ort_peer.py",
                &[dir.display().to_string(), self.iters.to_string(), threads.to_string()],
                threads,
            );
            let (s, err) = sovc.map_err(|e| format!("sovc ({threads} threads): {e}"))?;
            let o = Self::peer_stats(&peer.map_err(|e| format!("onnxruntime ({threads} threads): {e}"))?, "")?;
            let s = self.note(&format!("sovc {name}"), threads, s);
            let o = self.note(&format!("ort {name}"), threads, o);
            let err = err.map_or("-".to_string(), |e| format!("{e:.1e}"));
            println!(
                "{name:<20} {threads:>7} {:>10.2} {:>10.2} {:>8.2}x {err:>13}",
                s.median_ms,
                o.median_ms,
                s.median_ms / o.median_ms
            );
        }
        Ok(())
    }

    fn compile_time(&self, name: &str) -> Result<(), String> {
        println!(
            "{:<20} {:>9} {:>19} {:>14} {:>12}",
            "compile --target cpu", "import s", "compile s (med. 3)", "model.onnx MB", "artifact MB"
        );
        let Some(dir) = self.model_dir(name) else { return Ok(()) };
        let t = Instant::now();
        let model = load(&dir)?;
        let import_s = t.elapsed().as_secs_f64();
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..COMPILE_REPEATS {
            let t = Instant::now();
            let bytes = compile_cpu(&model)?;
            times.push(t.elapsed().as_secs_f64());
            size = bytes.len();
        }
        let onnx = std::fs::metadata(dir.join("model.onnx")).map_err(|e| format!("model.onnx: {e}"))?.len();
        let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!("{name:<20} {import_s:>9.2} {:>19.2} {:>14.1} {:>12.1}", median(times), mb(onnx), mb(size as u64));
        println!("  (import: ONNX file to IR, once; compile: IR to artifact bytes, optimizer included)");
        Ok(())
    }
}

fn load(dir: &Path) -> Result<Model, String> {
    sovc_models::load_model(&dir.join("model.onnx"), &sovc_models::onnx::ImportOptions::default())
        .map_err(|e| format!("import: {e}"))
}

/// `len` deterministic values in [-1, 1) (a 64-bit LCG, its high bits).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Checks a spread of entries of `c = a @ b` against f64 dot products.
fn check_matmul(a: &[f32], b: &[f32], c: &Tensor, n: usize) -> Result<(), String> {
    if c.shape() != [n, n] {
        return Err(format!("output `c` has shape {:?}, expected [{n}, {n}]", c.shape()));
    }
    let c = c.to_f64_vec();
    for k in 0..64 {
        let (i, j) = ((k * 977 + 13) % n, (k * 613 + 401) % n);
        let (mut dot, mut mag) = (0.0f64, 0.0f64);
        for l in 0..n {
            let p = a[i * n + l] as f64 * b[l * n + j] as f64;
            dot += p;
            mag += p.abs();
        }
        if (c[i * n + j] - dot).abs() > 1e-5 * mag + 1e-6 {
            return Err(format!("wrong result: c[{i}][{j}] = {}, expected {dot}", c[i * n + j]));
        }
    }
    Ok(())
}

/// Largest `|got - want|` over all expected outputs, relative to the largest expected magnitude (at least
/// 1); `None` when there are no expected outputs. Errors when it is above 1e-3.
fn rel_err(got: &BTreeMap<String, Tensor>, want: &BTreeMap<String, Tensor>) -> Result<Option<f64>, String> {
    let mut worst: Option<f64> = None;
    for (name, w) in want {
        let g = got.get(name).ok_or_else(|| format!("output `{name}` missing"))?;
        if g.shape() != w.shape() {
            return Err(format!("output `{name}` has shape {:?}, expected {:?}", g.shape(), w.shape()));
        }
        let (g, w) = (g.to_f64_vec(), w.to_f64_vec());
        let scale = w.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let d = g.iter().zip(&w).fold(0.0f64, |m, (a, b)| m.max((a - b).abs())) / scale;
        if d.is_nan() || d > 1e-3 {
            return Err(format!("wrong result: output `{name}` is {d:.2e} off (relative to its largest value)"));
        }
        worst = Some(worst.map_or(d, |x| x.max(d)));
    }
    Ok(worst)
}

fn main() {
    let iters = match std::env::args().nth(1) {
        None => 20,
        Some(a) => match a.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("usage: cargo run --release -p sovc-benches [-- ITERS]   (ITERS: timed runs, at least 1)");
                std::process::exit(2);
            }
        },
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("sovc --target cpu against peers in the same run: {WARMUP} warm-up + {iters} timed runs each, medians;");
    println!("{cores} core(s) available to this process, shared with whatever else runs on the machine");
    println!();
    let mut bench = Bench { root, iters, noisy: Vec::new() };
    bench.matmul();
    println!();
    bench.models(&["bert_encoder", "resnet18"]);
    println!();
    if let Err(e) = bench.compile_time("bert_encoder") {
        eprintln!("bert_encoder (compile time): {e}");
    }
    if !bench.noisy.is_empty() {
        println!();
        println!("noisy (median more than {:.0}% above min; other load on the machine?):", (NOISY - 1.0) * 100.0);
        for n in &bench.noisy {
            println!("  {n}");
        }
    }
}
