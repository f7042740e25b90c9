//! The kernel IR on its own: the verifier's checks (ranges, scoping, ops, access modes, the launch
//! constructs GPU and Tensix targets use), the text form, and the interpreter.

use sovc_ir::kernel::*;
use sovc_ir::{BinaryOp, UnaryOp};

fn ld(buf: u32, offset: i64, terms: &[(Var, i64)]) -> Expr {
    Expr::Load { buf, index: Index::new(offset, terms) }
}

/// `y[i, j] = relu(x[i, j] + b[j])` over 4 x 8.
fn bias_relu() -> Kernel {
    Kernel::new(
        "bias_relu",
        vec![
            Buf::global("x", 32, Access::Read),
            Buf::global("b", 8, Access::Read),
            Buf::global("y", 32, Access::Write),
        ],
        4,
        vec![Stmt::For {
            var: 1,
            extent: 8,
            body: vec![Stmt::Store {
                buf: 2,
                index: Index::new(0, &[(0, 8), (1, 1)]),
                value: Expr::unary(
                    UnaryOp::Relu,
                    Expr::binary(BinaryOp::Add, ld(0, 0, &[(0, 8), (1, 1)]), ld(1, 0, &[(1, 1)])),
                ),
            }],
        }],
    )
}

#[test]
fn the_text_form_shows_every_part() {
    let text = print(&bias_relu());
    let want = "kernel \"bias_relu\" parallel i0 < 4 {\n  buf %0 f32[32] read \"x\"\n  buf %1 f32[8] read \"b\"\n  \
                buf %2 f32[32] write \"y\"\n  for i1 < 8 {\n    %2[8*i0 + i1] = relu(add(%0[8*i0 + i1], %1[i1]))\n  }\n}\n";
    assert_eq!(text, want);
}

#[test]
fn the_interpreter_runs_partial_ranges() {
    let k = bias_relu();
    verify(&k).expect("valid");
    let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
    let b: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let mut bufs = vec![x.clone(), b.clone(), vec![-1.0; 32]];
    eval(&k, &mut bufs, 1, 3);
    for i in 0..4 {
        for j in 0..8 {
            let want = if (1..3).contains(&i) { (x[i * 8 + j] + b[j]).max(0.0) } else { -1.0 };
            assert_eq!(bufs[2][i * 8 + j], want, "({i}, {j})");
        }
    }
}

#[test]
fn the_verifier_catches_what_codegen_would_get_wrong() {
    let bad = |edit: &dyn Fn(&mut Kernel), needle: &str| {
        let mut k = bias_relu();
        edit(&mut k);
        let e = verify(&k).expect_err("refused").join("; ");
        assert!(e.contains(needle), "expected `{needle}` in: {e}");
    };
    bad(&|k| k.extent = 5, "outside the buffer");
    bad(&|k| k.bufs[1].len = 7, "outside the buffer");
    bad(&|k| k.bufs[2].access = Access::Read, "read-only");
    bad(&|k| k.bufs[0].access = Access::Write, "write-only");
    bad(
        &|k| {
            let Stmt::For { body, .. } = &mut k.body[0] else { unreachable!() };
            body.push(Stmt::Store { buf: 2, index: Index::new(0, &[(7, 1)]), value: Expr::Const(0.0) });
        },
        "not in scope",
    );
    bad(&|k| k.body.push(Stmt::Let { id: 0, value: Expr::Get(3) }), "used before its let");
    bad(
        &|k| k.body.insert(0, Stmt::Let { id: 0, value: Expr::unary(UnaryOp::Sin, Expr::Const(1.0)) }),
        "not a kernel op",
    );
    bad(&|k| k.body.push(Stmt::Barrier), "one thread per group");
    bad(&|k| k.bufs.push(Buf { space: Space::Shared, ..Buf::global("s", 4, Access::ReadWrite) }), "shared buffer");
    bad(&|k| k.launch.tile = Some((32, 0)), "empty tile");
    bad(&|k| k.launch.vector = VectorLength::Fixed(48), "power of two");
    bad(&|k| k.launch.threads_per_group = 0, "no threads");
}

/// What a GPU-style kernel looks like: a group of 64 threads reduces a row through a shared buffer.
#[test]
fn group_kernels_with_shared_memory_and_barriers_verify_and_print() {
    let mut k = Kernel::new(
        "row_sum",
        vec![
            Buf::global("x", 4 * 64, Access::Read),
            Buf { space: Space::Shared, ..Buf::global("partial", 64, Access::ReadWrite) },
            Buf::global("y", 4, Access::Write),
        ],
        4,
        vec![
            Stmt::For {
                var: 1,
                extent: 64,
                body: vec![Stmt::Store {
                    buf: 1,
                    index: Index::new(0, &[(1, 1)]),
                    value: ld(0, 0, &[(0, 64), (1, 1)]),
                }],
            },
            Stmt::Barrier,
            Stmt::Store {
                buf: 2,
                index: Index::new(0, &[(0, 1)]),
                value: Expr::Reduce { op: Reduce::Add, var: 2, extent: 64, body: Box::new(ld(1, 0, &[(2, 1)])) },
            },
        ],
    );
    k.launch = Launch { threads_per_group: 64, vector: VectorLength::Scalable, tile: Some((32, 32)) };
    verify(&k).expect("valid group kernel");
    let text = print(&k);
    assert!(text.starts_with("kernel \"row_sum\" parallel i0 < 4 threads 64 vector scalable tile 32x32 {"), "{text}");
    assert!(text.contains("read_write shared \"partial\"") && text.contains("\n  barrier\n"), "{text}");
    let x: Vec<f32> = (0..256).map(|i| (i % 7) as f32).collect();
    let mut bufs = vec![x.clone(), vec![0.0; 64], vec![0.0; 4]];
    eval(&k, &mut bufs, 0, 4);
    for i in 0..4 {
        assert_eq!(bufs[2][i], x[i * 64..(i + 1) * 64].iter().sum::<f32>());
    }
    // The cpu target runs one thread per range and says so.
    let t = sovc_target_cpu::CpuTarget::host().expect("host");
    let e = sovc_target_cpu::compile(&t, &[&k]).expect_err("not for cpu");
    assert!(e.contains("one thread per range"), "{e}");
}

#[test]
fn gemm_and_attention_operands_are_checked() {
    let gemm = Gemm {
        name: "g".into(),
        bufs: vec![
            Buf::global("a", 6, Access::Read),
            Buf::global("b", 6, Access::Read),
            Buf::global("c", 4, Access::Write),
        ],
        batch: 1,
        m: 2,
        n: 2,
        k: 3,
        a: Operand { buf: 0, offset: 0, batch: 0, group: 0, rows: 3, cols: 1 },
        b: Operand { buf: 1, offset: 0, batch: 0, group: 0, rows: 2, cols: 1 },
        b_const: false,
        b_im2col: None,
        groups: 1,
        c: Operand { buf: 2, offset: 0, batch: 4, group: 4, rows: 2, cols: 1 },
        epilogue: None,
    };
    verify_op(&KernelOp::Gemm(Box::new(gemm.clone()))).expect("valid gemm");
    let mut bufs = vec![vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], vec![0.0; 4]];
    eval_op(&KernelOp::Gemm(Box::new(gemm.clone())), &mut bufs);
    assert_eq!(bufs[2], vec![4.0, 5.0, 10.0, 11.0]);
    let mut big = gemm.clone();
    big.k = 4;
    assert!(verify_op(&KernelOp::Gemm(Box::new(big))).is_err());
    let mut strided = gemm;
    strided.c.rows = 3;
    let e = verify_op(&KernelOp::Gemm(Box::new(strided))).expect_err("refused").join("; ");
    assert!(e.contains("dense") || e.contains("outside"), "{e}");
}
