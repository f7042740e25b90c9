//! The C++ that `emit` prints, checked by the compiler: every kernel of a few hand-built plans must pass
//! `g++ -fsyntax-only` against the declared TT-Metalium kernel API (targets/tensix/include), a kernel with a
//! misspelled call must not, the smallest case is snapshotted, and the CMake project's host program must pass
//! against the declared host API. g++ is required: without it these tests fail rather than skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use sovc_runtime::tensix::program::{
    Bcast, Cb, CoreWork, DataFormat, DeviceDesc, DramTensor, Fill, FpuBinary, Ix, MathFidelity, NumericOptions, Op,
    Plan, Program, ReduceDim, ReduceKind, SfpuBinary, SfpuUnary, Step,
};
use sovc_target_tensix::emit::{emit_dm_header, emit_kernels, emit_project, KernelSources, TT_METAL_VERSION};

// ---------------------------------------------------------------------------------------------------------
// Building plans by hand

fn blackhole() -> DeviceDesc {
    DeviceDesc {
        arch: "blackhole".into(),
        board: "p150".into(),
        grid_x: 11,
        grid_y: 10,
        l1_bytes: 1572864,
        l1_unreserved_base: 98304,
        dram_banks: 8,
        dram_bank_bytes: 4278190080,
        clock_mhz: 1350,
        dram_gbps: 512.0,
        noc_bytes_per_cycle: 64,
        dram_latency_cycles: 400,
        dst_tiles: 16,
        sources: vec![],
    }
}

fn tensor(value: u32, rows: u64, cols: u64, format: DataFormat, address: u64) -> DramTensor {
    DramTensor { value, batch: 1, rows, cols, format, address, part: None }
}

fn cb(index: u8, format: DataFormat, pages: u32, role: &str) -> Cb {
    Cb { index, format, pages, address: 98304 + index as u64 * 16384, role: role.into() }
}

fn c(v: i64) -> Ix {
    Ix::Const(v)
}

fn v(n: u8) -> Ix {
    Ix::Var(n)
}

fn arg(n: u8) -> Ix {
    Ix::Arg(n)
}

fn lp(var: u8, count: Ix, body: Vec<Op>) -> Op {
    Op::Loop { var, count, body }
}

fn program(
    name: &str,
    template: &str,
    tensors: Vec<u32>,
    cbs: Vec<Cb>,
    ops: [Vec<Op>; 3],
    cores: Vec<CoreWork>,
) -> Program {
    let [reader, compute, writer] = ops;
    Program {
        name: name.into(),
        kernel: 0,
        template: template.into(),
        tensors,
        cbs,
        reader,
        compute,
        writer,
        cores,
        fidelity: MathFidelity::HiFi4,
        fp32_dest_acc: false,
        unpack_to_dest_fp32: vec![],
        notes: vec![],
        semaphores: vec![],
        noc_args: vec![],
    }
}

fn plan(tensors: Vec<DramTensor>, steps: Vec<Step>) -> Plan {
    Plan {
        device: blackhole(),
        numerics: NumericOptions {
            activations: DataFormat::Float16_b,
            weights: DataFormat::Float16_b,
            fp32_dest_acc: false,
            fidelity: None,
            split: false,
        },
        tensors,
        dram_bytes_per_bank: 1 << 20,
        steps,
    }
}

/// `out = relu(x + bias_row) * 0.5` over a 64x128 bf16 tensor on two cores: the reader broadcasts the bias tile's
/// row 0 with BcastTile, the compute kernel adds on the SFPU and chains two more SFPU ops.
fn eltwise_bcast() -> (Plan, Program) {
    let tile = arg(0).plus(v(0));
    let reader = vec![lp(
        0,
        arg(1),
        vec![
            Op::Reserve { cb: 0, n: 1 },
            Op::ReadTile { tensor: 0, tile: tile.clone(), cb: 0, slot: c(0) },
            Op::Reserve { cb: 1, n: 1 },
            Op::ReadTile { tensor: 1, tile: tile.clone().modulo(4), cb: 1, slot: c(0) },
            Op::ReadBarrier,
            Op::BcastTile { cb: 1, slot: c(0), bcast: Bcast::Rows },
            Op::Push { cb: 0, n: 1 },
            Op::Push { cb: 1, n: 1 },
        ],
    )];
    let compute = vec![lp(
        0,
        arg(1),
        vec![
            Op::Wait { cb: 0, n: 1 },
            Op::Wait { cb: 1, n: 1 },
            Op::Acquire,
            Op::CopyTile { cb: 0, tile: c(0), dst: 0 },
            Op::CopyTile { cb: 1, tile: c(0), dst: 1 },
            Op::BinaryDst { op: SfpuBinary::Add, a: 0, b: 1 },
            Op::Unary { op: SfpuUnary::Relu, dst: 0 },
            Op::Unary { op: SfpuUnary::MulScalar(0.5), dst: 0 },
            Op::Commit,
            Op::WaitDst,
            Op::Reserve { cb: 16, n: 1 },
            Op::Pack { dst: 0, cb: 16, slot: c(0) },
            Op::Push { cb: 16, n: 1 },
            Op::Pop { cb: 0, n: 1 },
            Op::Pop { cb: 1, n: 1 },
            Op::Release,
        ],
    )];
    let writer = vec![lp(
        0,
        arg(1),
        vec![
            Op::Wait { cb: 16, n: 1 },
            Op::WriteTile { tensor: 2, tile, cb: 16, slot: c(0) },
            Op::WriteBarrier,
            Op::Pop { cb: 16, n: 1 },
        ],
    )];
    let p = program(
        "eltwise.add_bias_relu",
        "eltwise",
        vec![0, 1, 2],
        vec![
            cb(0, DataFormat::Float16_b, 2, "in0"),
            cb(1, DataFormat::Float16_b, 2, "bias"),
            cb(16, DataFormat::Float16_b, 2, "out"),
        ],
        [reader, compute, writer],
        vec![CoreWork { x: 0, y: 0, args: vec![0, 4] }, CoreWork { x: 1, y: 0, args: vec![4, 4] }],
    );
    let tensors = vec![
        tensor(1, 64, 128, DataFormat::Float16_b, 0),
        tensor(2, 1, 128, DataFormat::Float16_b, 8192),
        tensor(3, 64, 128, DataFormat::Float16_b, 12288),
    ];
    (plan(tensors, vec![Step::Device(Box::new(p.clone()))]), p)
}

/// `gelu(A @ B + bias)` with A 64x128 (bf16), B 128x64 (Bfp8_b), K in blocks of two tiles, partial sums in a
/// Float32 CB, and the bias row broadcast by the FPU in the epilogue.
fn matmul_bias() -> (Plan, Program) {
    let (mt, kt, nt) = (2i64, 4i64, 2i64);
    let out_tile = arg(0).plus(v(0));
    let row = out_tile.clone().over(nt);
    let col = out_tile.clone().modulo(nt);
    let reader = vec![lp(
        0,
        arg(1),
        vec![
            lp(
                1,
                c(kt / 2),
                vec![
                    Op::Reserve { cb: 0, n: 2 },
                    Op::Reserve { cb: 1, n: 2 },
                    lp(
                        2,
                        c(2),
                        vec![
                            Op::ReadTile {
                                tensor: 0,
                                tile: row.clone().times(kt).plus(v(1).times(2)).plus(v(2)),
                                cb: 0,
                                slot: v(2),
                            },
                            Op::ReadTile {
                                tensor: 1,
                                tile: v(1).times(2).plus(v(2)).times(nt).plus(col.clone()),
                                cb: 1,
                                slot: v(2),
                            },
                        ],
                    ),
                    Op::ReadBarrier,
                    Op::Push { cb: 0, n: 2 },
                    Op::Push { cb: 1, n: 2 },
                ],
            ),
            Op::Reserve { cb: 2, n: 1 },
            Op::ReadTile { tensor: 2, tile: col, cb: 2, slot: c(0) },
            Op::ReadBarrier,
            Op::Push { cb: 2, n: 1 },
        ],
    )];
    let compute = vec![lp(
        0,
        arg(1),
        vec![
            Op::Acquire,
            lp(
                1,
                c(kt / 2),
                vec![
                    Op::Wait { cb: 0, n: 2 },
                    Op::Wait { cb: 1, n: 2 },
                    lp(2, c(2), vec![Op::Matmul { in0: 0, in1: 1, t0: v(2), t1: v(2), dst: 0, transpose: false }]),
                    Op::Pop { cb: 0, n: 2 },
                    Op::Pop { cb: 1, n: 2 },
                ],
            ),
            Op::Commit,
            Op::WaitDst,
            Op::Reserve { cb: 24, n: 1 },
            Op::Pack { dst: 0, cb: 24, slot: c(0) },
            Op::Push { cb: 24, n: 1 },
            Op::Release,
            Op::Wait { cb: 24, n: 1 },
            Op::Wait { cb: 2, n: 1 },
            Op::Acquire,
            Op::Binary { op: FpuBinary::Add, bcast: Bcast::Rows, a: 24, b: 2, ta: c(0), tb: c(0), dst: 0 },
            Op::Unary { op: SfpuUnary::Gelu, dst: 0 },
            Op::Commit,
            Op::WaitDst,
            Op::Reserve { cb: 16, n: 1 },
            Op::Pack { dst: 0, cb: 16, slot: c(0) },
            Op::Push { cb: 16, n: 1 },
            Op::Pop { cb: 24, n: 1 },
            Op::Pop { cb: 2, n: 1 },
            Op::Release,
        ],
    )];
    let writer = vec![lp(
        0,
        arg(1),
        vec![
            Op::Wait { cb: 16, n: 1 },
            Op::WriteTile { tensor: 3, tile: out_tile, cb: 16, slot: c(0) },
            Op::WriteBarrier,
            Op::Pop { cb: 16, n: 1 },
        ],
    )];
    let p = program(
        "matmul+bias/gelu",
        "matmul",
        vec![0, 1, 2, 3],
        vec![
            cb(0, DataFormat::Float16_b, 4, "in0"),
            cb(1, DataFormat::Bfp8_b, 4, "in1"),
            cb(2, DataFormat::Float16_b, 2, "bias"),
            cb(16, DataFormat::Float16_b, 2, "out"),
            cb(24, DataFormat::Float32, 1, "partials"),
        ],
        [reader, compute, writer],
        (0..4).map(|i| CoreWork { x: i, y: 0, args: vec![i, 1] }).collect(),
    );
    let tensors = vec![
        tensor(10, 64, 128, DataFormat::Float16_b, 0),
        tensor(11, 128, 64, DataFormat::Bfp8_b, 8192),
        tensor(12, 1, 64, DataFormat::Float16_b, 12288),
        tensor(13, 64, 64, DataFormat::Float16_b, 16384),
    ];
    assert_eq!(mt * nt, 4);
    (plan(tensors, vec![Step::Device(Box::new(p.clone()))]), p)
}

/// Row softmax of a 32x100 tensor (four column tiles, the last one partial): the reader pads the partial tile
/// with -inf and fills the reduce scaler; max and sum are row reductions; exp(x - max) and the final scale use
/// column broadcasts.
fn softmax() -> (Plan, Program) {
    let wt = 4i64;
    let row_tile = |w: Ix| arg(0).plus(v(0)).times(wt).plus(w);
    let reader = vec![
        Op::Reserve { cb: 2, n: 1 },
        Op::FillTile { cb: 2, slot: c(0), fill: Fill::Scaler(1.0) },
        Op::Push { cb: 2, n: 1 },
        lp(
            0,
            arg(1),
            vec![lp(
                1,
                c(wt),
                vec![
                    Op::Reserve { cb: 0, n: 1 },
                    Op::ReadTile { tensor: 0, tile: row_tile(v(1)), cb: 0, slot: c(0) },
                    Op::ReadBarrier,
                    Op::PadTile {
                        cb: 0,
                        slot: c(0),
                        rows: c(32),
                        cols: arg(2).plus(v(1).times(-32)),
                        value: f32::NEG_INFINITY,
                        front: false,
                    },
                    Op::Push { cb: 0, n: 1 },
                ],
            )],
        ),
    ];
    let pack_to = |cb: u8| {
        vec![
            Op::Commit,
            Op::WaitDst,
            Op::Reserve { cb, n: 1 },
            Op::Pack { dst: 0, cb, slot: c(0) },
            Op::Push { cb, n: 1 },
            Op::Release,
        ]
    };
    let mut row = vec![Op::Wait { cb: 0, n: wt as u32 }, Op::Acquire];
    row.push(lp(
        1,
        c(wt),
        vec![Op::Reduce { kind: ReduceKind::Max, dim: ReduceDim::Row, cb: 0, t: v(1), scaler_cb: 2, dst: 0 }],
    ));
    row.extend(pack_to(3));
    row.push(Op::Wait { cb: 3, n: 1 });
    let mut exp_body = vec![
        Op::Acquire,
        Op::Binary { op: FpuBinary::Sub, bcast: Bcast::Cols, a: 0, b: 3, ta: v(1), tb: c(0), dst: 0 },
        Op::Unary { op: SfpuUnary::Exp, dst: 0 },
    ];
    exp_body.extend(pack_to(4));
    row.push(lp(1, c(wt), exp_body));
    row.extend([
        Op::Pop { cb: 0, n: wt as u32 },
        Op::Pop { cb: 3, n: 1 },
        Op::Wait { cb: 4, n: wt as u32 },
        Op::Acquire,
    ]);
    row.push(lp(
        1,
        c(wt),
        vec![Op::Reduce { kind: ReduceKind::Sum, dim: ReduceDim::Row, cb: 4, t: v(1), scaler_cb: 2, dst: 0 }],
    ));
    row.push(Op::Unary { op: SfpuUnary::Recip, dst: 0 });
    row.extend(pack_to(5));
    row.push(Op::Wait { cb: 5, n: 1 });
    let mut scale_body = vec![
        Op::Acquire,
        Op::Binary { op: FpuBinary::Mul, bcast: Bcast::Cols, a: 4, b: 5, ta: v(1), tb: c(0), dst: 0 },
    ];
    scale_body.extend(pack_to(16));
    row.push(lp(1, c(wt), scale_body));
    row.extend([Op::Pop { cb: 4, n: wt as u32 }, Op::Pop { cb: 5, n: 1 }]);
    let compute = vec![Op::Wait { cb: 2, n: 1 }, lp(0, arg(1), row)];
    let writer = vec![lp(
        0,
        arg(1),
        vec![lp(
            1,
            c(wt),
            vec![
                Op::Wait { cb: 16, n: 1 },
                Op::WriteTile { tensor: 1, tile: row_tile(v(1)), cb: 16, slot: c(0) },
                Op::WriteBarrier,
                Op::Pop { cb: 16, n: 1 },
            ],
        )],
    )];
    let p = program(
        "softmax",
        "softmax",
        vec![0, 1],
        vec![
            cb(0, DataFormat::Float16_b, 4, "in"),
            cb(2, DataFormat::Float16_b, 1, "scaler"),
            cb(3, DataFormat::Float16_b, 1, "max"),
            cb(4, DataFormat::Float16_b, 4, "exp"),
            cb(5, DataFormat::Float16_b, 1, "recip_sum"),
            cb(16, DataFormat::Float16_b, 2, "out"),
        ],
        [reader, compute, writer],
        vec![CoreWork { x: 0, y: 0, args: vec![0, 1, 100] }],
    );
    let tensors = vec![tensor(20, 32, 100, DataFormat::Float16_b, 0), tensor(21, 32, 100, DataFormat::Float16_b, 8192)];
    (plan(tensors, vec![Step::Device(Box::new(p.clone()))]), p)
}

/// Every compute op and every variant (all SFPU unary and binary ops, all FPU op and broadcast pairs, transpose,
/// Dst copies, transposed matmul) and every L1 helper on both supported formats, so that each mapping is compiled
/// at least once. Not a meaningful computation.
fn every_op() -> (Plan, Program) {
    use SfpuUnary::*;
    let unaries = [
        Exp,
        Log,
        Recip,
        Sqrt,
        Rsqrt,
        Gelu,
        GeluTanh,
        Relu,
        Sigmoid,
        Silu,
        Tanh,
        Erf,
        Abs,
        Neg,
        Square,
        Sin,
        Cos,
        Floor,
        Sign,
        AddScalar(1.5),
        MulScalar(-2.0),
        RsubScalar(1.0),
        MaxScalar(0.0),
        MinScalar(6.0),
        PowScalar(2.0),
        LeakyRelu(0.01),
        Elu(1.0),
    ];
    let mut compute = vec![Op::Wait { cb: 0, n: 2 }, Op::Wait { cb: 1, n: 2 }, Op::Acquire];
    compute.push(Op::Matmul { in0: 0, in1: 1, t0: c(0), t1: c(1), dst: 0, transpose: true });
    for op in [FpuBinary::Add, FpuBinary::Sub, FpuBinary::Mul] {
        for bcast in [Bcast::None, Bcast::Rows, Bcast::Cols, Bcast::Scalar] {
            compute.push(Op::Binary { op, bcast, a: 0, b: 1, ta: c(1), tb: c(0), dst: 1 });
        }
    }
    for op in [
        SfpuBinary::Add,
        SfpuBinary::Sub,
        SfpuBinary::Mul,
        SfpuBinary::Div,
        SfpuBinary::Max,
        SfpuBinary::Min,
        SfpuBinary::Pow,
    ] {
        compute.push(Op::BinaryDst { op, a: 0, b: 1 });
    }
    compute.extend(unaries.iter().map(|&op| Op::Unary { op, dst: 2 }));
    compute.push(Op::CopyDst { from: 2, to: 3 });
    compute.push(Op::Transpose { cb: 0, t: c(0), dst: 3 });
    compute.push(Op::Reduce { kind: ReduceKind::Sum, dim: ReduceDim::Col, cb: 0, t: c(1), scaler_cb: 2, dst: 4 });
    compute.push(Op::Reduce { kind: ReduceKind::Max, dim: ReduceDim::Scalar, cb: 0, t: c(1), scaler_cb: 2, dst: 5 });
    compute.push(Op::CopyTile { cb: 1, tile: Ix::Min(Box::new(arg(0)), Box::new(c(1))), dst: 6 });
    compute.extend([
        Op::Commit,
        Op::WaitDst,
        Op::Reserve { cb: 16, n: 2 },
        Op::Pack { dst: 0, cb: 16, slot: c(0) },
        Op::Pack { dst: 1, cb: 16, slot: c(1) },
        Op::Push { cb: 16, n: 2 },
        Op::Pop { cb: 0, n: 2 },
        Op::Pop { cb: 1, n: 2 },
        Op::Release,
    ]);
    let mut reader = vec![Op::Reserve { cb: 0, n: 2 }, Op::Reserve { cb: 1, n: 2 }, Op::Reserve { cb: 2, n: 1 }];
    for (cb, slot) in [(0u8, 0i64), (1, 1)] {
        reader.push(Op::FillTile { cb, slot: c(slot), fill: Fill::Value(-0.75) });
        reader.push(Op::FillTile { cb, slot: c(slot), fill: Fill::Cols { cols: 17, inside: 1.0, outside: 0.0 } });
        for bcast in [Bcast::None, Bcast::Rows, Bcast::Cols, Bcast::Scalar] {
            reader.push(Op::BcastTile { cb, slot: c(slot), bcast });
        }
        reader.push(Op::PadTile { cb, slot: v(0).plus(c(slot)), rows: arg(0), cols: c(7), value: 0.0, front: false });
    }
    reader.push(Op::FillTile { cb: 2, slot: c(0), fill: Fill::Scaler(0.03125) });
    reader.extend([Op::Push { cb: 0, n: 2 }, Op::Push { cb: 1, n: 2 }, Op::Push { cb: 2, n: 1 }]);
    let reader = vec![lp(0, c(1), reader)];
    let writer = vec![
        Op::Wait { cb: 16, n: 2 },
        Op::PadTile { cb: 16, slot: c(1), rows: c(5), cols: c(32), value: 0.0, front: true },
        Op::WriteTile { tensor: 0, tile: c(0), cb: 16, slot: c(0) },
        Op::WriteTile { tensor: 0, tile: c(1), cb: 16, slot: c(1) },
        Op::WriteBarrier,
        Op::Pop { cb: 16, n: 2 },
    ];
    let p = program(
        "every op",
        "test",
        vec![0],
        vec![
            cb(0, DataFormat::Float16_b, 2, "a"),
            cb(1, DataFormat::Float32, 2, "b"),
            cb(2, DataFormat::Float16_b, 1, "scaler"),
            cb(16, DataFormat::Float32, 2, "out"),
        ],
        [reader, compute, writer],
        vec![CoreWork { x: 0, y: 0, args: vec![3] }],
    );
    let tensors = vec![tensor(30, 32, 64, DataFormat::Float32, 0)];
    (plan(tensors, vec![Step::Device(Box::new(p.clone()))]), p)
}

// ---------------------------------------------------------------------------------------------------------
// Compiling with g++

fn include_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("include")
}

/// A fresh folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sovc-emit-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `g++ -fsyntax-only -Wall -Wextra -Werror` of `file` plus `extra` flags; `Err` holds g++'s diagnostics.
/// Panics when g++ cannot be run.
fn gxx(std: &str, includes: &[&Path], extra: &[&str], file: &Path) -> Result<(), String> {
    let mut cmd = Command::new("g++");
    cmd.arg(format!("-std={std}")).args(["-fsyntax-only", "-Wall", "-Wextra", "-Werror"]);
    for i in includes {
        cmd.arg("-I").arg(i);
    }
    cmd.args(extra);
    let out = cmd
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run g++ ({e}): these tests need a C++17 g++ on the PATH"));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// Writes the kernels as an emitted project lays them out (kernels/<name>/*.cpp beside kernels/sovc_dm.h) and
/// syntax-checks each one against the declared kernel API.
fn check_kernels(tag: &str, k: &KernelSources) {
    let dir = TempDir::new(tag);
    dir.write("kernels/sovc_dm.h", &emit_dm_header());
    let mut failures = Vec::new();
    for (name, text) in [("reader", &k.reader), ("compute", &k.compute), ("writer", &k.writer)] {
        let path = dir.write(&format!("kernels/{tag}/{name}.cpp"), text);
        if let Err(e) = gxx("c++17", &[&include_dir()], &[], &path) {
            failures.push(format!("--- {tag}/{name}.cpp ---\n{text}\n--- g++ ---\n{e}"));
        }
    }
    assert!(failures.is_empty(), "emitted kernels do not compile:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------------------
// (a) every emitted kernel compiles

#[test]
fn eltwise_bcast_kernels_compile() {
    let (plan, p) = eltwise_bcast();
    check_kernels("eltwise", &emit_kernels(&plan, &p));
}

#[test]
fn matmul_bias_kernels_compile() {
    let (plan, p) = matmul_bias();
    let k = emit_kernels(&plan, &p);
    check_kernels("matmul", &k);
    // Matmul feeds in0 to SrcB: startup says so, and the Float32 partials / Bfp8 weights force reconfigs.
    assert!(k.compute.contains("compute_kernel_hw_startup<SrcOrder::Reverse>(cb_0, cb_1, cb_24);"), "{}", k.compute);
    assert!(k.compute.contains("reconfig_data_format_srca(cb_24);"), "{}", k.compute);
    assert!(k.compute.contains("pack_reconfig_data_format(cb_16);"), "{}", k.compute);
    assert!(k.compute.contains("add_bcast_rows_init_short(cb_24, cb_2);"), "{}", k.compute);
}

#[test]
fn softmax_kernels_compile() {
    let (plan, p) = softmax();
    let k = emit_kernels(&plan, &p);
    check_kernels("softmax", &k);
    assert!(k.reader.contains("sovc::fill_scaler<sovc::Fmt::Float16_b>(get_write_ptr(cb_2), 0x3f80u"), "{}", k.reader);
    assert!(k.reader.contains("sovc::pad_tile<sovc::Fmt::Float16_b>(get_write_ptr(cb_0), 32, (get_arg_val<uint32_t>(2) + (v1 * static_cast<uint32_t>(-32LL))), 0xff80u"), "{}", k.reader);
    assert!(
        k.compute.contains("reduce_init<PoolType::MAX, ReduceDim::REDUCE_ROW>(cb_0, cb_2, cb_3);"),
        "{}",
        k.compute
    );
    assert!(k.compute.contains("sub_tiles_bcast_cols(cb_0, cb_3, v1, 0, 0);"), "{}", k.compute);
    // The recip after the sum reduce must clear the packer's reduce mask first.
    let sum = k.compute.find("reduce_tile<PoolType::SUM").unwrap();
    let uninit = k.compute[sum..].find("reduce_uninit();").map(|i| i + sum).unwrap();
    let recip = k.compute.find("recip_tile_init();").unwrap();
    assert!(sum < uninit && uninit < recip, "{}", k.compute);
}

#[test]
fn every_op_kernels_compile() {
    let (plan, p) = every_op();
    let k = emit_kernels(&plan, &p);
    check_kernels("every_op", &k);
    for name in
        ["mul_tiles_bcast_scalar_init_short", "sub_tiles_bcast_scalar_init_short", "add_bcast_scalar_init_short"]
    {
        assert!(k.compute.contains(name), "{name} missing:\n{}", k.compute);
    }
    assert!(k.compute.contains("matmul_init(cb_0, cb_1, 1);"), "{}", k.compute);
    assert!(k.compute.contains("(get_arg_val<uint32_t>(0) < 1 ? get_arg_val<uint32_t>(0) : 1)"), "{}", k.compute);
}

// ---------------------------------------------------------------------------------------------------------
// (b) the declared API rejects what tt-metal would reject

#[test]
fn misspelled_calls_are_rejected() {
    let (plan, p) = eltwise_bcast();
    let k = emit_kernels(&plan, &p);
    let cases = [
        ("compute", k.compute.replace("copy_tile(cb_0", "copy_tiles(cb_0")),
        ("reader", k.reader.replace("noc_async_read_tile(", "noc_async_read_tiles(")),
        // A compute call without its header: the FPU add is declared by eltwise_binary.h only.
        ("compute", k.compute.replace("add_binary_tile(0, 1, 0);", "add_tiles(cb_0, cb_1, 0, 0, 0);")),
        // A data-movement call in a compute kernel.
        ("compute", k.compute.replace("tile_regs_acquire();", "noc_async_read_barrier();")),
    ];
    let dir = TempDir::new("planted");
    dir.write("kernels/sovc_dm.h", &emit_dm_header());
    for (i, (kind, text)) in cases.iter().enumerate() {
        let path = dir.write(&format!("kernels/case{i}/{kind}.cpp"), text);
        assert!(gxx("c++17", &[&include_dir()], &[], &path).is_err(), "case {i} compiled but should not:\n{text}");
    }
}

#[test]
fn l1_helpers_refuse_block_float_tiles() {
    let (plan, mut p) = eltwise_bcast();
    p.cbs[1].format = DataFormat::Bfp8_b;
    let k = emit_kernels(&plan, &p);
    assert!(k.reader.contains("sovc::bcast_tile<sovc::Fmt::Bfp8_b, sovc::Bcast::Rows>"), "{}", k.reader);
    let dir = TempDir::new("bfp");
    dir.write("kernels/sovc_dm.h", &emit_dm_header());
    let path = dir.write("kernels/bfp/reader.cpp", &k.reader);
    let err = gxx("c++17", &[&include_dir()], &[], &path).expect_err("a Bfp8_b BcastTile must not compile");
    assert!(err.contains("Float16_b and Float32 tiles only"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// (c) snapshots of the smallest case

#[test]
fn eltwise_bcast_snapshots() {
    let (plan, p) = eltwise_bcast();
    let k = emit_kernels(&plan, &p);
    insta::assert_snapshot!("eltwise_bcast_reader", k.reader);
    insta::assert_snapshot!("eltwise_bcast_compute", k.compute);
    insta::assert_snapshot!("eltwise_bcast_writer", k.writer);
}

// ---------------------------------------------------------------------------------------------------------
// (d) the CMake project

#[test]
fn project_has_every_file_and_compiles() {
    let (_, elt) = eltwise_bcast();
    let (_, mm) = matmul_bias();
    let (_, sm) = softmax();
    let (eplan, _) = eltwise_bcast();
    let (mplan, _) = matmul_bias();
    let (splan, _) = softmax();
    // One plan holding all three programs (tensors renumbered), a host step and a name clash.
    let mut tensors = eplan.tensors.clone();
    let shift = |p: &Program, by: u32| Program { tensors: p.tensors.iter().map(|t| t + by).collect(), ..p.clone() };
    let mm = shift(&mm, tensors.len() as u32);
    tensors.extend(mplan.tensors.clone());
    let sm = shift(&sm, tensors.len() as u32);
    tensors.extend(splan.tensors.clone());
    let clash = Program { name: "softmax".into(), ..sm.clone() };
    let steps = vec![
        Step::Device(Box::new(elt)),
        Step::Device(Box::new(mm)),
        Step::Host { kernel: 7, nodes: vec![12, 13], reason: "no \"top-k\" template yet".into() },
        Step::Device(Box::new(sm)),
        Step::Device(Box::new(clash)),
    ];
    let plan = plan(tensors, steps);
    let files = emit_project(&plan, &[("x".into(), 1), ("bias".into(), 2)], &[("y/out".into(), 21), ("mm".into(), 13)]);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected: Vec<String> =
        ["CMakeLists.txt", "host/main.cpp", "host/host_ops.hpp", "host/host_ops.cpp", "kernels/sovc_dm.h"]
            .map(String::from)
            .to_vec();
    for d in ["eltwise_add_bias_relu", "matmul_bias_gelu", "softmax", "softmax_step4"] {
        for k in ["reader", "compute", "writer"] {
            expected.push(format!("kernels/{d}/{k}.cpp"));
        }
    }
    assert_eq!(names, expected);

    let get = |n: &str| &files.iter().find(|(f, _)| f == n).unwrap().1;
    assert!(get("CMakeLists.txt").contains("find_package(TT-Metalium REQUIRED)"));
    assert!(get("CMakeLists.txt").contains(TT_METAL_VERSION));
    let main = get("host/main.cpp");
    for needle in [
        "distributed::MeshDevice::create_unit_mesh(0)",
        "distributed::MeshBuffer::create(whole, local, mesh.get())",
        "CircularBufferConfig(4352, {{1, tt::DataFormat::Bfp8_b}}).set_page_size(1, 1088)",
        "DataMovementProcessor::RISCV_0, .noc = NOC::RISCV_0_default",
        "DataMovementProcessor::RISCV_1, .noc = NOC::RISCV_1_default",
        "ComputeConfig compute_config{.math_fidelity = MathFidelity::HiFi4, .fp32_dest_acc_en = false}",
        "sovc_host::run_host_step(cq, t, 7, {12, 13}, \"no \\\"top-k\\\" template yet\")",
        "root + \"/data/1.bin\"",
        "root + \"/out/y_out.bin\"",
        "SOVC_KERNEL_DIR \"softmax_step4/compute.cpp\"",
    ] {
        assert!(main.contains(needle), "host/main.cpp lacks `{needle}`:\n{main}");
    }

    let dir = TempDir::new("project");
    for (name, text) in &files {
        dir.write(name, text);
    }
    let mut failures = Vec::new();
    for (name, _) in files.iter().filter(|(n, _)| n.starts_with("kernels/") && n.ends_with(".cpp")) {
        if let Err(e) = gxx("c++17", &[&include_dir()], &[], &dir.0.join(name)) {
            failures.push(format!("{name}:\n{e}"));
        }
    }
    let host_inc = include_dir().join("host");
    for name in ["host/main.cpp", "host/host_ops.cpp"] {
        if let Err(e) = gxx(
            "c++20",
            &[&host_inc], // Designated initialisers that leave members to their defaults are how tt-metal's own examples
            // configure kernels, so -Wextra's missing-field-initializers does not apply to the host.
            &["-Wno-missing-field-initializers", "-DSOVC_KERNEL_DIR=\"/kernels/\""],
            &dir.0.join(name),
        ) {
            failures.push(format!("{name}:\n{e}"));
        }
    }
    assert!(failures.is_empty(), "project files do not compile:\n{}", failures.join("\n"));
}
