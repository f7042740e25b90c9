//! Snapshots of the PTX of small kernels: a guarded elementwise kernel with a row reduction, and a
//! contraction with an epilogue in f32 (shared-memory tiles) and in bf16 (tensor-core `mma.sync`), and
//! attention in key tiles. (`ptxas` and the emulator check every real model's PTX in
//! `tests/tests/cuda.rs`.)

use sovc_ir::kernel::{Access, Buf, Expr, Gemm, Index, Kernel, KernelOp, Operand, Reduce, Stmt};
use sovc_ir::{BinaryOp, UnaryOp};
use sovc_target_cuda::{emit_op, module, Precision};

fn ptx(op: &KernelOp) -> String {
    ptx_in(op, Precision::Fp32)
}

fn ptx_in(op: &KernelOp, p: Precision) -> String {
    let entries = emit_op(op, "k0", p).expect("writes PTX");
    let refs: Vec<&sovc_target_cuda::Entry> = entries.iter().collect();
    module("sm_80", &refs)
}

#[test]
fn row_softmax_denominator_with_padding_guard() {
    // out[i] = exp(x[i, j] - 1) summed over j < 5, where x is read through a guard for j < 4.
    let load = Expr::Guard {
        conds: vec![(Index::new(0, &[(1, 1)]), 4)],
        then: Box::new(Expr::Load { buf: 0, index: Index::new(0, &[(0, 4), (1, 1)]) }),
        other: 0.0,
    };
    let body = Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, load, Expr::Const(1.0)));
    let sum = Expr::Reduce { op: Reduce::Add, var: 1, extent: 5, body: Box::new(body) };
    let k = Kernel::new(
        "softmax_den",
        vec![Buf::global("x", 12, Access::Read), Buf::global("out", 3, Access::Write)],
        3,
        vec![Stmt::Store { buf: 1, index: Index::new(0, &[(0, 1)]), value: sum }],
    );
    insta::assert_snapshot!("guarded_reduction", ptx(&KernelOp::Loop(k)));
}

#[test]
fn matmul_with_relu_epilogue() {
    let operand = |buf, rows, cols| Operand { buf, offset: 0, batch: 0, group: 0, rows, cols };
    let epilogue = Kernel::new(
        "relu",
        vec![
            Buf::global("a", 6, Access::Read),
            Buf::global("b", 6, Access::Read),
            Buf::global("c", 4, Access::ReadWrite),
        ],
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
        bufs: epilogue.bufs.clone(),
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
    let op = KernelOp::Gemm(Box::new(g));
    insta::assert_snapshot!("matmul_relu", ptx(&op));
    insta::assert_snapshot!("matmul_relu_bf16_mma", ptx_in(&op, Precision::Bf16));
    let f16 = ptx_in(&op, Precision::F16);
    assert!(f16.contains("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32") && f16.contains("cvt.rn.f16x2.f32"));
}

#[test]
fn attention_in_key_tiles_with_online_softmax() {
    use sovc_ir::kernel::Attention;
    let at = Attention {
        name: "attn".into(),
        bufs: vec![
            Buf::global("q", 4, Access::Read),
            Buf::global("k", 6, Access::Read),
            Buf::global("v", 6, Access::Read),
            Buf::global("o", 4, Access::Write),
        ],
        heads: 1,
        sq: 2,
        sk: 3,
        d: 2,
        dv: 2,
        scale: 0.5,
        q: 0,
        k: 1,
        v: 2,
        o: 3,
        mask: None,
    };
    insta::assert_snapshot!("attention_tiled", ptx(&KernelOp::Attention(at)));
}
