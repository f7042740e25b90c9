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
    let (src, bin) = (dir.join("matmul.c"), dir.join("matmul"));
    std::fs::write(&src, C_SOURCE).map_err(|e| e.to_string())?;
    clang(&src, &bin)?;
    let nm = Command::new("riscv64-linux-gnu-nm").arg("-S").arg(&bin).output().map_err(|e| e.to_string())?;
    let mut ranges = Vec::new();
    for l in String::from_utf8_lossy(&nm.stdout).lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 4 && (f[3] == "matmul" || f[3].contains("memset")) {
            let (a, s) = (u64::from_str_radix(f[0], 16).unwrap_or(0), u64::from_str_radix(f[1], 16).unwrap_or(0));
            ranges.push((a, a + s));
        }
    }
    let vector_at = disassembly(&bin)?;
    VLENS.iter().map(|&v| qemu_count(&bin, &[], v, &vector_at, Some(&ranges))).collect()
}

/// An f32 constant as C reads it back exactly.
fn c_f32(v: f32) -> String {
    if v.is_nan() {
        "NAN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "INFINITY".into()
        } else {
            "(-INFINITY)".into()
        }
    } else {
        format!("{v:?}f")
    }
}

fn c_index(ix: &sovc_ir::kernel::Index) -> String {
    let mut s = format!("({}L", ix.offset);
    for (v, c) in &ix.terms {
        s.push_str(&format!(" + {c}L * v{v}"));
    }
    s + ")"
}

fn c_expr(e: &sovc_ir::kernel::Expr) -> String {
    use sovc_ir::kernel::{Expr, Reduce};
    use sovc_ir::{BinaryOp, UnaryOp};
    match e {
        Expr::Const(c) => c_f32(*c),
        Expr::Load { buf, index } => format!("b{buf}[{}]", c_index(index)),
        Expr::Get(id) => format!("l{id}"),
        Expr::Unary(op, a) => {
            let a = c_expr(a);
            match op {
                UnaryOp::Neg => format!("(-{a})"),
                UnaryOp::Abs => format!("fabsf({a})"),
                UnaryOp::Identity => a,
                UnaryOp::Relu => format!("fmaxf({a}, 0.0f)"),
                UnaryOp::Sqrt => format!("sqrtf({a})"),
                UnaryOp::Rsqrt => format!("(1.0f / sqrtf({a}))"),
                UnaryOp::Reciprocal => format!("(1.0f / {a})"),
                UnaryOp::Exp => format!("expf({a})"),
                UnaryOp::Sigmoid => format!("(1.0f / (1.0f + expf(-{a})))"),
                UnaryOp::Tanh => format!("tanhf({a})"),
                UnaryOp::Erf => format!("erff({a})"),
                op => panic!("no C for {op:?}"),
            }
        }
        Expr::Binary(op, a, b) => {
            let (a, b) = (c_expr(a), c_expr(b));
            match op {
                BinaryOp::Add => format!("({a} + {b})"),
                BinaryOp::Sub => format!("({a} - {b})"),
                BinaryOp::Mul => format!("({a} * {b})"),
                BinaryOp::Div => format!("({a} / {b})"),
                BinaryOp::Max => format!("fmaxf({a}, {b})"),
                BinaryOp::Min => format!("fminf({a}, {b})"),
                op => panic!("no C for {op:?}"),
            }
        }
        Expr::Reduce { op, var, extent, body } => {
            let (init, comb) = match op {
                Reduce::Add => ("0.0f", format!("acc + {}", c_expr(body))),
                Reduce::Max => ("(-INFINITY)", format!("fmaxf(acc, {})", c_expr(body))),
            };
            format!("({{ float acc = {init}; for (long v{var} = 0; v{var} < {extent}; v{var}++) acc = {comb}; acc; }})")
        }
        Expr::Guard { conds, then, other } => {
            let c: Vec<String> = conds.iter().map(|(ix, b)| format!("({0} >= 0 && {0} < {b}L)", c_index(ix))).collect();
            format!("(({}) ? {} : {})", c.join(" && "), c_expr(then), c_f32(*other))
        }
    }
}

fn c_stmt(s: &sovc_ir::kernel::Stmt, out: &mut String) {
    use sovc_ir::kernel::Stmt;
    match s {
        Stmt::For { var, extent, body } => {
            out.push_str(&format!("for (long v{var} = 0; v{var} < {extent}; v{var}++) {{\n"));
            for s in body {
                c_stmt(s, out);
            }
            out.push_str("}\n");
        }
        Stmt::Let { id, value } => out.push_str(&format!("l{id} = {};\n", c_expr(value))),
        Stmt::Store { buf, index, value } => {
            out.push_str(&format!("b{buf}[{}] = {};\n", c_index(index), c_expr(value)))
        }
        Stmt::Barrier => {}
    }
}

/// A kernel of the kernel IR as a C function `void name(float **bufs)`: the same loops, in the same
/// order, that sovc's RVV code runs (a contraction as its i-k-j loop nest, attention as its three passes
/// per query row).
fn c_kernel(op: &sovc_ir::kernel::KernelOp, name: &str) -> String {
    use sovc_ir::kernel::KernelOp;
    let nbufs = op.bufs().len();
    let mut s = format!("__attribute__((noinline)) void {name}(float **bufs) {{\n");
    for i in 0..nbufs {
        s.push_str(&format!("float *restrict b{i} = bufs[{i}];\n"));
    }
    match op {
        KernelOp::Loop(k) => {
            let mut lets = std::collections::BTreeSet::new();
            fn collect(st: &[sovc_ir::kernel::Stmt], lets: &mut std::collections::BTreeSet<u32>) {
                for s in st {
                    match s {
                        sovc_ir::kernel::Stmt::Let { id, .. } => {
                            lets.insert(*id);
                        }
                        sovc_ir::kernel::Stmt::For { body, .. } => collect(body, lets),
                        _ => {}
                    }
                }
            }
            collect(&k.body, &mut lets);
            for id in lets {
                s.push_str(&format!("float l{id};\n"));
            }
            s.push_str(&format!("for (long v0 = 0; v0 < {}; v0++) {{\n", k.extent));
            for st in &k.body {
                c_stmt(st, &mut s);
            }
            s.push_str("}\n");
        }
        KernelOp::Gemm(g) => {
            assert!(g.b_im2col.is_none(), "convolutions are not printed as C here");
            let at = |o: &sovc_ir::kernel::Operand, r: &str, c: &str| {
                format!(
                    "b{}[{}L + {}L * bb + {}L * gg + {}L * {r} + {}L * {c}]",
                    o.buf, o.offset, o.batch, o.group, o.rows, o.cols
                )
            };
            s.push_str(&format!(
                "for (long bb = 0; bb < {}; bb++) for (long gg = 0; gg < {}; gg++) for (long i = 0; i < {}; i++) {{\n",
                g.batch, g.groups, g.m
            ));
            s.push_str(&format!("for (long j = 0; j < {}; j++) {} = 0.0f;\n", g.n, at(&g.c, "i", "j")));
            s.push_str(&format!(
                "for (long k = 0; k < {}; k++) {{ float x = {}; for (long j = 0; j < {}; j++) {} += x * {}; }}\n}}\n",
                g.k,
                at(&g.a, "i", "k"),
                g.n,
                at(&g.c, "i", "j"),
                at(&g.b, "k", "j")
            ));
        }
        KernelOp::Attention(a) => {
            let mask = match a.mask {
                Some((mb, ss, rs, cs)) => format!(" + b{mb}[{ss}L * h + {rs}L * i + {cs}L * j]"),
                None => String::new(),
            };
            let score = format!(
                "({{ float d = 0.0f; for (long c = 0; c < {d}; c++) d += b{q}[(h * {sq} + i) * {d} + c] * b{k}[(h * {sk} + j) * {d} + c]; d * {sc}{mask}; }})",
                d = a.d,
                q = a.q,
                k = a.k,
                sq = a.sq,
                sk = a.sk,
                sc = c_f32(a.scale)
            );
            s.push_str(&format!(
                "for (long h = 0; h < {heads}; h++) for (long i = 0; i < {sq}; i++) {{\n\
                 float *o = b{o} + (h * {sq} + i) * {dv};\n\
                 float m = -INFINITY; for (long j = 0; j < {sk}; j++) m = fmaxf(m, {score});\n\
                 for (long c = 0; c < {dv}; c++) o[c] = 0.0f;\n\
                 float l = 0.0f;\n\
                 for (long j = 0; j < {sk}; j++) {{ float p = expf({score} - m); l += p; for (long c = 0; c < {dv}; c++) o[c] += p * b{v}[(h * {sk} + j) * {dv} + c]; }}\n\
                 for (long c = 0; c < {dv}; c++) o[c] /= l;\n}}\n",
                heads = a.heads,
                sq = a.sq,
                sk = a.sk,
                dv = a.dv,
                o = a.o,
                v = a.v
            ));
        }
    }
    s + "}\n"
}

/// Program counters of a QEMU `-d exec,nochain -singlestep` log (`Trace 0: 0xHOST [CS/PC/FLAGS/..]`).
fn trace_pcs(log: &str) -> impl Iterator<Item = u64> + '_ {
    log.lines().filter_map(|l| u64::from_str_radix(l.split('[').nth(1)?.split('/').nth(1)?, 16).ok())
}

/// Per instruction address of `bin`, whether it is a vector instruction (from objdump's words).
fn disassembly(bin: &Path) -> Result<BTreeMap<u64, bool>, String> {
    let dis = Command::new("riscv64-linux-gnu-objdump").arg("-d").arg(bin).output().map_err(|e| e.to_string())?;
    let mut vector_at = BTreeMap::new();
    for l in String::from_utf8_lossy(&dis.stdout).lines() {
        let mut f = l.trim_start().split('\t');
        let (Some(addr), Some(word)) = (f.next(), f.next()) else { continue };
        let (Ok(addr), word) = (u64::from_str_radix(addr.trim_end_matches(':'), 16), word.trim()) else { continue };
        let w = if word.len() == 8 { u32::from_str_radix(word, 16).unwrap_or(0) } else { 0 };
        vector_at.insert(addr, is_vector(w));
    }
    Ok(vector_at)
}

/// Runs `bin args` under QEMU at `vlen` with the execution log: (scalar, vector) instructions executed,
/// those in `only` (address ranges) when given.
fn qemu_count(
    bin: &Path,
    args: &[String],
    vlen: u32,
    vector_at: &BTreeMap<u64, bool>,
    only: Option<&[(u64, u64)]>,
) -> Result<(u64, u64), String> {
    let log = bin.with_extension(format!("{vlen}.log"));
    let o = Command::new("qemu-riscv64")
        .args(["-cpu", &format!("rv64,v=true,vlen={vlen}"), "-singlestep", "-d", "exec,nochain", "-D"])
        .arg(&log)
        .arg(bin)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!("{} failed under QEMU: {}", bin.display(), String::from_utf8_lossy(&o.stderr)));
    }
    let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
    std::fs::remove_file(&log).ok();
    let (mut s, mut v) = (0u64, 0u64);
    for pc in trace_pcs(&text) {
        if only.is_some_and(|r| !r.iter().any(|&(a, b)| a <= pc && pc < b)) {
            continue;
        }
        if vector_at.get(&pc).copied().unwrap_or(false) {
            v += 1;
        } else {
            s += 1;
        }
    }
    Ok((s, v))
}

fn clang(src: &Path, bin: &Path) -> Result<(), String> {
    let o = Command::new("clang-19")
        .args(["--target=riscv64-linux-gnu", "-march=rv64gcv", "-O3", "-static"])
        .args([format!("-DM={M}"), format!("-DN={N}"), format!("-DK={K}")])
        .arg(src)
        .arg("-o")
        .arg(bin)
        .arg("-lm")
        .output()
        .map_err(|e| format!("clang-19 is not installed ({e}): apt-get install clang-19"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!("clang-19 failed: {}", String::from_utf8_lossy(&o.stderr)))
    }
}

/// The encoder layer's kernels as C built by clang-19: per kernel, the (scalar, vector) instructions a
/// call executes at each VLEN (a run with the call minus a run without it, the same buffers set up in
/// both, so libm calls count and the set-up does not).
fn clang_kernel_counts(
    dir: &Path,
    kernels: &[(String, sovc_ir::kernel::KernelOp)],
) -> Result<BTreeMap<String, Vec<(u64, u64)>>, String> {
    let mut c = String::from("#include <math.h>\n#include <stdlib.h>\nvolatile float sink;\n");
    for (name, op) in kernels {
        c.push_str(&c_kernel(op, name));
    }
    c.push_str(
        "int main(int argc, char **argv) {\n  int which = atoi(argv[1]), call = argc < 3;\n  float *bufs[16];\n",
    );
    for (k, (name, op)) in kernels.iter().enumerate() {
        c.push_str(&format!("  if (which == {k}) {{\n"));
        for (i, b) in op.bufs().iter().enumerate() {
            c.push_str(&format!(
                "    bufs[{i}] = malloc({n} * sizeof(float)); for (long e = 0; e < {n}; e++) bufs[{i}][e] = (float)((e * 37 + {i}) % 101) / 50.0f - 1.0f;\n",
                n = b.len
            ));
        }
        c.push_str(&format!("    if (call) {name}(bufs);\n    sink = bufs[{}][0];\n  }}\n", op.bufs().len() - 1));
    }
    c.push_str("  return 0;\n}\n");
    let (src, bin) = (dir.join("kernels.c"), dir.join("kernels"));
    std::fs::write(&src, c).map_err(|e| e.to_string())?;
    clang(&src, &bin)?;
    let vector_at = disassembly(&bin)?;
    let mut out = BTreeMap::new();
    for (k, (name, _)) in kernels.iter().enumerate() {
        let mut per = Vec::new();
        for vlen in VLENS {
            let with = qemu_count(&bin, &[k.to_string()], vlen, &vector_at, None)?;
            let without = qemu_count(&bin, &[k.to_string(), "setup-only".into()], vlen, &vector_at, None)?;
            per.push((with.0.saturating_sub(without.0), with.1.saturating_sub(without.1)));
        }
        out.insert(name.clone(), per);
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
    // The encoder layer, per kernel: sovc's RVV code and clang-19 on the same loops.
    let enc = sovc_models::builtin::encoder_layer(16, 64, 4);
    let x = (0..1024).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect::<Vec<f32>>();
    let feeds: BTreeMap<String, sovc_ir::Tensor> =
        [("x".to_string(), sovc_ir::Tensor::from_vec(&[1, 16, 64], x).expect("x"))].into_iter().collect();
    let s = sovc_session(&enc);
    let mine: Vec<BTreeMap<String, (u64, u64)>> = VLENS.iter().map(|v| sovc_counts(&s, &feeds, *v)).collect();
    // The same kernels, from the artifact's optimized graph, lowered as the compiler lowers them.
    let g = s.graph();
    let scalars = sovc_compiler::lower::scalar_consts(g);
    let mut kernels = Vec::new();
    for (gi, grp) in sovc_compiler::partition::partition(g).iter().enumerate() {
        let Ok(ls) = sovc_compiler::lower::lower_group(g, grp, &format!("k{gi}"), &scalars) else { continue };
        for (j, l) in ls.into_iter().enumerate() {
            let name = format!("k{gi}_{j}");
            if let sovc_ir::kernel::KernelOp::Gemm(gm) = &l.op {
                if let Some(e) = &gm.epilogue {
                    kernels.push((format!("{name}_epilogue"), sovc_ir::kernel::KernelOp::Loop(e.clone())));
                }
            }
            kernels.push((name, l.op));
        }
    }
    let theirs = clang_kernel_counts(&dir, &kernels);
    println!(
        "\nencoder layer (seq 16, hidden 64, 4 heads): instructions per kernel call, sovc / clang-19 (scalar + vector)"
    );
    println!("{:>16} | {}", "kernel", VLENS.map(|v| format!("{:>34}", format!("VLEN {v}"))).join(" | "));
    let (mut tm, mut tt) = ([0u64; 3], [0u64; 3]);
    for (name, _) in &kernels {
        let cols: Vec<String> = (0..VLENS.len())
            .map(|i| {
                let m = mine[i].get(name).copied().unwrap_or_default();
                tm[i] += m.0 + m.1;
                match &theirs {
                    Ok(t) => {
                        let c = t[name][i];
                        tt[i] += c.0 + c.1;
                        format!(
                            "{:>34}",
                            format!(
                                "{}+{} / {}+{} = {:.2}",
                                m.0,
                                m.1,
                                c.0,
                                c.1,
                                (m.0 + m.1) as f64 / (c.0 + c.1).max(1) as f64
                            )
                        )
                    }
                    Err(_) => format!("{:>34}", format!("{}+{}", m.0, m.1)),
                }
            })
            .collect();
        println!("{name:>16} | {}", cols.join(" | "));
    }
    match &theirs {
        Ok(_) => println!(
            "{:>16} | {}",
            "all kernels",
            (0..VLENS.len())
                .map(|i| format!("{:>34}", format!("{} / {} = {:.2}", tm[i], tt[i], tm[i] as f64 / tt[i] as f64)))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        Err(e) => println!("no peer: {e}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}
