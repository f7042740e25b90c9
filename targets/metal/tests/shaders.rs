//! Snapshots of the MSL of small kernels (a guarded row reduction and a matmul with an epilogue), and
//! their SPIR-V twins through `spirv-val` when it is installed (`scripts/setup-test-deps.sh` installs
//! Debian's spirv-tools; every real model's modules are validated in `tests/tests/metal.rs`).

use sovc_ir::kernel::{Access, Buf, Expr, Gemm, Index, Kernel, KernelOp, Operand, Reduce, Stmt};
use sovc_ir::{BinaryOp, UnaryOp};

fn translated(op: &KernelOp) -> Vec<(String, sovc_target_metal::Translated)> {
    sovc_target_metal::shaders(op, "k0")
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
    let t = translated(&row_kernel());
    insta::assert_snapshot!("row_reduction_wgsl", t[0].0);
    insta::assert_snapshot!("row_reduction_msl", t[0].1.msl);
    assert_eq!(t[0].1.spirv[0], 0x0723_0203, "the SPIR-V magic number");
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
    let t = translated(&KernelOp::Gemm(Box::new(g)));
    assert_eq!(t.len(), 2);
    insta::assert_snapshot!("matmul_msl", t[0].1.msl);
    insta::assert_snapshot!("matmul_epilogue_msl", t[1].1.msl);
}
