//! Dynamic instruction counts of RVV code under QEMU (wall time under an emulator says nothing about
//! hardware, instruction counts hold): sovc's matmul against the same loops in C compiled by clang-19
//! (`-O3 -march=rv64gcv`, LLVM's scalable auto-vectorizer) at VLEN 128, 256 and 512, in one run, with
//! the ratio; then sovc's counts per kernel of the encoder layer.
//!
//! `cargo run --release -p sovc-benches --bin rvv_counts` (needs what `scripts/setup-test-deps.sh`
//! installs, plus Debian's `clang-19` for the peer).

use sovc_compiler::compile::{compile, CompileOptions};
use sovc_runtime::rvv::{is_vector, QemuOptions};
use sovc_runtime::{Artifact, Device, Session};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const M: usize = 64;
const K: usize = 64;
const N: usize = 64;
const VLENS: [u32; 3] = [128, 256, 512];

fn sovc_session(m: &sovc_ir::Model) -> Session {
    let opts = CompileOptions { target: "riscv64-rvv".into(), ..Default::default() };
    let a = Artifact::from_bytes(&compile(m, &opts).expect("compiles").bytes).expect("artifact");
    Session::new(&a, Device::RvvQemu).expect("an rvv-qemu session (run scripts/setup-test-deps.sh)")
}

/// (scalar, vector) instructions sovc's code executed per function at `vlen`.
fn sovc_counts(s: &Session, feeds: &BTreeMap<String, sovc_ir::Tensor>, vlen: u32) -> BTreeMap<String, (u64, u64)> {
    let (_, r) =
        s.rvv_model().expect("model").run(feeds, QemuOptions { vlen, vector: true, count: true }).expect("runs");
    r.counts
}

const C_SOURCE: &str = r#"
#include <stdio.h>
__attribute__((noinline)) void matmul(const float *restrict a, const float *restrict b, float *restrict c) {
  for (int i = 0; i < M; i++) {
    for (int j = 0; j < N; j++) c[i * N + j] = 0.0f;
    for (int k = 0; k < K; k++) {
      float x = a[i * K + k];
      for (int j = 0; j < N; j++) c[i * N + j] += x * b[k * N + j];
    }
  }
}
static float a[M * K], b[K * N], c[M * N];
int main(void) {
  for (int i = 0; i < M * K; i++) a[i] = (i % 7) * 0.25f;
  for (int i = 0; i < K * N; i++) b[i] = (i % 5) * 0.5f;
  matmul(a, b, c);
  printf("%g\n", c[M * N - 1]);
  return 0;
}
"#;

/// The peer: the C matmul built by clang-19 and run under QEMU; per VLEN (scalar, vector) instructions
/// executed in `matmul` and the `memset` it calls.
fn clang_counts(dir: &Path) -> Result<Vec<(u64, u64)>, String> {
    let src = dir.join("matmul.c");
    let bin = dir.join("matmul");
    std::fs::write(&src, C_SOURCE).map_err(|e| e.to_string())?;
    let o = Command::new("clang-19")
        .args(["--target=riscv64-linux-gnu", "-march=rv64gcv", "-O3", "-static"])
        .args([format!("-DM={M}"), format!("-DN={N}"), format!("-DK={K}")])
        .arg(&src)
        .arg("-o")
        .arg(&bin)
        .output()
        .map_err(|e| format!("clang-19 is not installed ({e}): apt-get install clang-19"))?;
    if !o.status.success() {
        return Err(format!("clang-19 failed: {}", String::from_utf8_lossy(&o.stderr)));
    }
    // The functions' address ranges, and each instruction's kind from the disassembly.
    let nm = Command::new("riscv64-linux-gnu-nm").arg("-S").arg(&bin).output().map_err(|e| e.to_string())?;
    let mut ranges = Vec::new();
    for l in String::from_utf8_lossy(&nm.stdout).lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 4 && (f[3] == "matmul" || f[3].contains("memset")) {
            let (a, s) = (u64::from_str_radix(f[0], 16).unwrap_or(0), u64::from_str_radix(f[1], 16).unwrap_or(0));
            ranges.push((a, a + s));
        }
    }
    let dis = Command::new("riscv64-linux-gnu-objdump").arg("-d").arg(&bin).output().map_err(|e| e.to_string())?;
    let mut vector_at: BTreeMap<u64, bool> = BTreeMap::new();
    for l in String::from_utf8_lossy(&dis.stdout).lines() {
        let mut f = l.trim_start().split('\t');
        let (Some(addr), Some(word)) = (f.next(), f.next()) else { continue };
        let (Ok(addr), word) = (u64::from_str_radix(addr.trim_end_matches(':'), 16), word.trim()) else { continue };
        let w = if word.len() == 8 { u32::from_str_radix(word, 16).unwrap_or(0) } else { 0 };
        vector_at.insert(addr, is_vector(w));
    }
    let mut out = Vec::new();
    for vlen in VLENS {
        let log = dir.join(format!("trace{vlen}.log"));
        let o = Command::new("qemu-riscv64")
            .args(["-cpu", &format!("rv64,v=true,vlen={vlen}"), "-singlestep", "-d", "exec,nochain", "-D"])
            .arg(&log)
            .arg(&bin)
            .output()
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!("the clang binary failed under QEMU: {}", String::from_utf8_lossy(&o.stderr)));
        }
        let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
        let (mut s, mut v) = (0u64, 0u64);
        for line in text.lines() {
            let Some(pc) = line.split('[').nth(1).and_then(|r| r.split('/').nth(1)) else { continue };
            let Ok(pc) = u64::from_str_radix(pc, 16) else { continue };
            if ranges.iter().any(|&(a, b)| a <= pc && pc < b) {
                if vector_at.get(&pc).copied().unwrap_or(false) {
                    v += 1;
                } else {
                    s += 1;
                }
            }
        }
        out.push((s, v));
    }
    Ok(out)
}

fn main() {
    let dir = std::env::temp_dir().join(format!("sovc-rvv-counts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = sovc_models::builtin::matmul(M, K, N);
    let a: Vec<f32> = (0..M * K).map(|i| (i % 7) as f32 * 0.25).collect();
    let b: Vec<f32> = (0..K * N).map(|i| (i % 5) as f32 * 0.5).collect();
    let feeds: BTreeMap<String, sovc_ir::Tensor> = [
        ("a".to_string(), sovc_ir::Tensor::from_vec(&[M, K], a).expect("a")),
        ("b".to_string(), sovc_ir::Tensor::from_vec(&[K, N], b).expect("b")),
    ]
    .into_iter()
    .collect();
    let s = sovc_session(&model);
    let peer = clang_counts(&dir);
    println!("matmul {M}x{K}x{N}, f32, dynamic instructions executed under qemu-riscv64 (scalar + vector = total)");
    println!("{:>5} | {:>28} | {:>28} | sovc / clang", "VLEN", "sovc", "clang-19 -O3 -march=rv64gcv");
    for (i, vlen) in VLENS.iter().enumerate() {
        let c = sovc_counts(&s, &feeds, *vlen);
        let (ss, sv) = c.values().fold((0, 0), |a, x| (a.0 + x.0, a.1 + x.1));
        let mine = format!("{ss} + {sv} = {}", ss + sv);
        match &peer {
            Ok(p) => {
                let (cs, cv) = p[i];
                println!(
                    "{vlen:>5} | {mine:>28} | {:>28} | {:.2}",
                    format!("{cs} + {cv} = {}", cs + cv),
                    (ss + sv) as f64 / (cs + cv) as f64
                );
            }
            Err(_) => println!("{vlen:>5} | {mine:>28} | {:>28} |", "-"),
        }
    }
    if let Err(e) = &peer {
        println!("no peer: {e}");
    }
    // The encoder layer, per kernel (sovc only: its C twin would be a port of every kernel).
    let (enc, x) =
        (sovc_models::builtin::encoder_layer(16, 64, 4), (0..1024).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0));
    let feeds: BTreeMap<String, sovc_ir::Tensor> =
        [("x".to_string(), sovc_ir::Tensor::from_vec(&[1, 16, 64], x.collect::<Vec<f32>>()).expect("x"))]
            .into_iter()
            .collect();
    let s = sovc_session(&enc);
    println!(
        "\nencoder layer (seq 16, hidden 64, 4 heads), sovc, per function at VLEN 128 / 256 / 512 (scalar + vector)"
    );
    let per: Vec<BTreeMap<String, (u64, u64)>> = VLENS.iter().map(|v| sovc_counts(&s, &feeds, *v)).collect();
    for name in per[0].keys() {
        let cols: Vec<String> =
            per.iter().map(|c| c.get(name).map_or("-".into(), |x| format!("{} + {}", x.0, x.1))).collect();
        println!("{name:>12}: {}", cols.join("  |  "));
    }
    std::fs::remove_dir_all(&dir).ok();
}
