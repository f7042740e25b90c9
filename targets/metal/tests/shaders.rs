//! Snapshots of the WGSL and MSL of small kernels (a guarded row reduction per thread, a layer-norm
//! row computed by a threadgroup, a matmul with a fused epilogue, tiled attention in f16); every real
//! model's SPIR-V is validated with `spirv-val` and run on lavapipe in `tests/tests/metal.rs`.

use sovc_ir::kernel::{Access, Attention, Buf, Expr, Gemm, Index, Kernel, KernelOp, Operand, Reduce, Stmt};
use sovc_ir::{BinaryOp, UnaryOp};
use sovc_target_metal::Precision;

fn translated(op: &KernelOp) -> Vec<(String, sovc_target_metal::Translated)> {
    translated_in(op, Precision::F32)
}

fn translated_in(op: &KernelOp, precision: Precision) -> Vec<(String, sovc_target_metal::Translated)> {
    sovc_target_metal::shaders(op, "k0", precision)
        .expect("writes WGSL")
        .into_iter()
        .map(|s| {
            let t = sovc_target_metal::translate(&s.name, &s.wgsl).unwrap_or_else(|e| panic!("{e}\n{}", s.wgsl));
            (s.wgsl, t)
        })
        .collect()
}

fn row_kernel() -> KernelOp {
    // out[i] = erf(Σ_{j<5} exp(x[i, j] - 1)), x read through a guard for j < 4.
    let load = Expr::Guard {
        conds: vec![(Index::new(0, &[(1, 1)]), 4)],
        then: Box::new(Expr::Load { buf: 0, index: Index::new(0, &[(0, 4), (1, 1)]) }),
        other: 0.0,
    };
    let body = Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, load, Expr::Const(1.0)));
    let sum = Expr::Reduce { op: Reduce::Add, var: 1, extent: 5, body: Box::new(body) };
    KernelOp::Loop(Kernel::new(
        "softmax_den",
        vec![Buf::global("x", 12, Access::Read), Buf::global("out", 3, Access::Write)],
        3,
        vec![Stmt::Store { buf: 1, index: Index::new(0, &[(0, 1)]), value: Expr::unary(UnaryOp::Erf, sum) }],
    ))
}

#[test]
fn guarded_row_reduction() {
    let KernelOp::Loop(k) = row_kernel() else { unreachable!() };
    assert!(!sovc_target_metal::cooperative(&k), "five items per row: one thread per row");
    let t = translated(&row_kernel());
    insta::assert_snapshot!("row_reduction_wgsl", t[0].0);
    insta::assert_snapshot!("row_reduction_msl", t[0].1.msl);
    assert_eq!(t[0].1.spirv[0], 0x0723_0203, "the SPIR-V magic number");
}

/// A layer norm's core over 3 rows of 100: `out[i, j] = (x[i, j] - mean_i) * rsqrt(var_i + eps)`.
fn norm_kernel() -> Kernel {
    let x = |v| Expr::Load { buf: 0, index: Index::new(0, &[(0, 100), (v, 1)]) };
    let mean = Expr::binary(
        BinaryOp::Mul,
        Expr::Reduce { op: Reduce::Add, var: 2, extent: 100, body: Box::new(x(2)) },
        Expr::Const(0.01),
    );
    let dev = |v| Expr::binary(BinaryOp::Sub, x(v), Expr::Get(1));
    let var = Expr::Reduce {
        op: Reduce::Add,
        var: 2,
        extent: 100,
        body: Box::new(Expr::binary(BinaryOp::Mul, dev(2), dev(2))),
    };
    let inv = Expr::unary(
        UnaryOp::Rsqrt,
        Expr::binary(BinaryOp::Add, Expr::binary(BinaryOp::Mul, var, Expr::Const(0.01)), Expr::Const(1e-5)),
    );
    Kernel::new(
        "norm",
        vec![Buf::global("x", 300, Access::Read), Buf::global("out", 300, Access::Write)],
        3,
        vec![
            Stmt::Let { id: 1, value: mean },
            Stmt::Let { id: 0, value: inv },
            Stmt::For {
                var: 1,
                extent: 100,
                body: vec![Stmt::Store {
                    buf: 1,
                    index: Index::new(0, &[(0, 100), (1, 1)]),
                    value: Expr::binary(BinaryOp::Mul, dev(1), Expr::Get(0)),
                }],
            },
        ],
    )
}

#[test]
fn layer_norm_rows_are_reduced_by_a_threadgroup() {
    let k = norm_kernel();
    assert!(sovc_target_metal::cooperative(&k));
    let s = &sovc_target_metal::shaders(&KernelOp::Loop(k.clone()), "k0", Precision::F32).expect("writes")[0];
    assert_eq!((s.workgroup, s.threads, s.workgroup_memory()), (64, 3 * 64, 256));
    // Two reductions, each a strided share and six halving steps, each step followed by a barrier.
    assert_eq!(s.wgsl.matches("workgroupBarrier()").count(), 2 * (1 + 6 + 1), "{}", s.wgsl);
    let t = translated(&KernelOp::Loop(k.clone()));
    insta::assert_snapshot!("layer_norm_wgsl", t[0].0);
    insta::assert_snapshot!("layer_norm_msl", t[0].1.msl);
    // A kernel that reads a buffer it writes stays one thread per row (threads would race).
    let mut rw = k;
    rw.bufs[0].access = Access::ReadWrite;
    if let Stmt::For { body, .. } = &mut rw.body[2] {
        body[0] = Stmt::Store { buf: 0, index: Index::new(0, &[(0, 100), (1, 1)]), value: Expr::Get(0) };
    }
    assert!(!sovc_target_metal::cooperative(&rw));
}

#[test]
fn matmul_with_relu_epilogue() {
    let operand = |buf, rows, cols| Operand { buf, offset: 0, batch: 0, group: 0, rows, cols };
    let bufs = vec![
        Buf::global("a", 6, Access::Read),
        Buf::global("b", 6, Access::Read),
        Buf::global("c", 4, Access::ReadWrite),
    ];
    let epilogue = Kernel::new(
        "relu",
        bufs.clone(),
        2,
        vec![Stmt::For {
            var: 1,
            extent: 2,
            body: vec![Stmt::Store {
                buf: 2,
                index: Index::new(0, &[(0, 2), (1, 1)]),
                value: Expr::unary(UnaryOp::Relu, Expr::Load { buf: 2, index: Index::new(0, &[(0, 2), (1, 1)]) }),
            }],
        }],
    );
    let g = Gemm {
        name: "mm".into(),
        bufs,
        batch: 1,
        m: 2,
        n: 2,
        k: 3,
        a: operand(0, 3, 1),
        b: operand(1, 2, 1),
        b_const: true,
        b_im2col: None,
        groups: 1,
        c: operand(2, 2, 1),
        epilogue: Some(epilogue),
    };
    let t = translated(&KernelOp::Gemm(Box::new(g.clone())));
    assert_eq!(t.len(), 1, "the relu is fused into the tiled product");
    assert!(t[0].0.contains("acc = x") && !t[0].0.contains("b2[(0 + 2 * v0"), "{}", t[0].0);
    insta::assert_snapshot!("matmul_msl", t[0].1.msl);
    // An epilogue that reads another element of C (here the row's mirror) needs every tile finished:
    // a second shader over C's rows.
    let mut mirrored = g;
    let e = mirrored.epilogue.as_mut().expect("epilogue");
    if let Stmt::For { body, .. } = &mut e.body[0] {
        if let Stmt::Store { value, .. } = &mut body[0] {
            *value = Expr::unary(UnaryOp::Relu, Expr::Load { buf: 2, index: Index::new(1, &[(0, 2), (1, -1)]) });
        }
    }
    let t = translated(&KernelOp::Gemm(Box::new(mirrored)));
    assert_eq!(t.len(), 2);
    insta::assert_snapshot!("matmul_epilogue_msl", t[1].1.msl);
}

#[test]
fn tiled_attention_in_f16() {
    let at = Attention {
        name: "att".into(),
        bufs: vec![
            Buf::global("q", 2 * 40 * 8, Access::Read),
            Buf::global("k", 2 * 40 * 8, Access::Read),
            Buf::global("v", 2 * 40 * 8, Access::Read),
            Buf::global("o", 2 * 40 * 8, Access::Write),
        ],
        heads: 2,
        sq: 40,
        sk: 40,
        d: 8,
        dv: 8,
        scale: 0.35,
        q: 0,
        k: 1,
        v: 2,
        o: 3,
        mask: None,
    };
    let s = &sovc_target_metal::shaders(&KernelOp::Attention(at.clone()), "k0", Precision::F16).expect("writes")[0];
    // Two threadgroups of 32 query rows per slice; key tiles of 32 keys of K and V as f16.
    assert_eq!((s.workgroup, s.threads, s.workgroup_vars.clone()), (32, 2 * 2 * 32, vec![32 * 8 * 2; 2]));
    let t = translated_in(&KernelOp::Attention(at), Precision::F16);
    insta::assert_snapshot!("attention_f16_wgsl", t[0].0);
    insta::assert_snapshot!("attention_f16_msl", t[0].1.msl);
    assert!(t[0].1.msl.contains("threadgroup type_") && t[0].1.msl.contains("half"), "{}", t[0].1.msl);
    // OpCapability Float16 (capability 9) in the SPIR-V twin.
    assert!(t[0].1.spirv.windows(2).any(|w| w == [(2 << 16) | 17, 9]), "no Float16 capability");
}

#[test]
fn a_threadgroup_never_stores_one_element_twice() {
    let x = |v| Expr::Load { buf: 0, index: Index::new(0, &[(v, 1)]) };
    let copy =
        |var, index: Index, value| Stmt::For { var, extent: 64, body: vec![Stmt::Store { buf: 1, index, value }] };
    let kernel =
        |body| Kernel::new("k", vec![Buf::global("x", 64, Access::Read), Buf::global("y", 64, Access::Write)], 1, body);
    // y[v] = x[v], then y[63 - v] = 2 x[v]: sequentially the second loop wins everywhere; split over
    // threads, thread k's first store and thread 63-k's second would race.
    let twice = kernel(vec![
        copy(1, Index::new(0, &[(1, 1)]), x(1)),
        copy(2, Index::new(63, &[(2, -1)]), Expr::binary(BinaryOp::Mul, x(2), Expr::Const(2.0))),
    ]);
    assert!(!sovc_target_metal::cooperative(&twice));
    // One loop storing one element 64 times (the last wins sequentially).
    let same = kernel(vec![copy(1, Index::new(0, &[]), x(1))]);
    assert!(!sovc_target_metal::cooperative(&same));
    // A row peeled at its borders: three stores, disjoint elements.
    let one = |var, off| Stmt::For {
        var,
        extent: 1,
        body: vec![Stmt::Store { buf: 1, index: Index::new(off, &[(var, 1)]), value: x(var) }],
    };
    let peeled = kernel(vec![
        one(1, 0),
        Stmt::For {
            var: 2,
            extent: 62,
            body: vec![Stmt::Store { buf: 1, index: Index::new(1, &[(2, 1)]), value: x(2) }],
        },
        one(3, 63),
    ]);
    assert!(sovc_target_metal::cooperative(&peeled));
    // A transpose row: one store, strides 16 and 1 over 16 x 16, injective.
    let transpose = kernel(vec![Stmt::For {
        var: 1,
        extent: 4,
        body: vec![Stmt::For {
            var: 2,
            extent: 16,
            body: vec![Stmt::Store { buf: 1, index: Index::new(0, &[(1, 16), (2, 1)]), value: x(2) }],
        }],
    }]);
    assert!(sovc_target_metal::cooperative(&transpose));
}
