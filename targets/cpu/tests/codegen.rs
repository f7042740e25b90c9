//! Generated machine code against the kernel IR interpreter: every unary and binary kernel op, on
//! vector paths (unit stride) and scalar paths (other strides and tails), reductions, lets, and
//! partial parallel ranges.

use sovc_ir::kernel::{eval, verify, Access, Buf, Expr, Index, Kernel, Reduce, Stmt};
use sovc_ir::{BinaryOp, UnaryOp};
use sovc_runtime::cpu::jit::ExecCode;
use sovc_target_cpu::{compile, CpuTarget};

fn run_native(k: &Kernel, bufs: &mut [Vec<f32>], lo: u64, hi: u64) {
    let t = CpuTarget::host().expect("host target");
    let code = compile(&t, &[k]).expect("compiles");
    let exec = ExecCode::new(&code.code).expect("maps");
    let f = unsafe { exec.func(code.functions[0].offset as usize) };
    let ptrs: Vec<*mut f32> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
    unsafe { f(ptrs.as_ptr(), lo as i64, hi as i64) };
}

fn check(k: &Kernel, inputs: &[Vec<f32>], tol: f32) {
    verify(k).expect("valid kernel");
    for (lo, hi) in [(0, k.extent), (1, k.extent.min(3))] {
        let mut want = inputs.to_vec();
        eval(k, &mut want, lo, hi);
        let mut got = inputs.to_vec();
        run_native(k, &mut got, lo, hi);
        for (b, (w, g)) in want.iter().zip(&got).enumerate() {
            for (i, (x, y)) in w.iter().zip(g).enumerate() {
                let ok =
                    x == y || (x.is_finite() && (x - y).abs() <= tol * (1.0 + x.abs())) || (x.is_nan() && y.is_nan());
                assert!(ok, "kernel {}: buffer {b}[{i}]: interpreter {x}, machine code {y}", k.name);
            }
        }
    }
}

fn data(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0 * scale).collect()
}

#[test]
fn every_unary_op_matches_the_interpreter() {
    use UnaryOp::*;
    for op in [Neg, Abs, Exp, Sqrt, Rsqrt, Reciprocal, Tanh, Sigmoid, Erf, Relu, Identity] {
        // 3 rows of 11: vector body of 8 plus a scalar tail of 3.
        let x = match op {
            Sqrt | Rsqrt => data(33, 4.0).iter().map(|v| v.abs() + 0.01).collect(),
            Exp => data(33, 100.0),
            _ => data(33, 6.0),
        };
        let k = Kernel {
            launch: Default::default(),
            name: op.as_str().into(),
            bufs: vec![Buf::global("x", 33, Access::Read), Buf::global("y", 33, Access::Write)],
            extent: 3,
            body: vec![Stmt::For {
                var: 1,
                extent: 11,
                body: vec![Stmt::Store {
                    buf: 1,
                    index: Index::new(0, &[(0, 11), (1, 1)]),
                    value: Expr::unary(op, Expr::Load { buf: 0, index: Index::new(0, &[(0, 11), (1, 1)]) }),
                }],
            }],
        };
        check(&k, &[x, vec![0.0; 33]], 2e-6);
    }
}

#[test]
fn binary_ops_broadcast_strides_and_reductions() {
    use BinaryOp::*;
    for op in [Add, Sub, Mul, Div, Max, Min] {
        // y[i, j] = op(x[j, i] (stride 4: scalar path), b[j] (unit stride)) over 4 x 9.
        let k = Kernel {
            launch: Default::default(),
            name: op.as_str().into(),
            bufs: vec![
                Buf::global("x", 36, Access::Read),
                Buf::global("b", 9, Access::Read),
                Buf::global("y", 36, Access::Write),
            ],
            extent: 4,
            body: vec![Stmt::For {
                var: 1,
                extent: 9,
                body: vec![Stmt::Store {
                    buf: 2,
                    index: Index::new(0, &[(0, 9), (1, 1)]),
                    value: Expr::binary(
                        op,
                        Expr::Load { buf: 0, index: Index::new(0, &[(0, 1), (1, 4)]) },
                        Expr::Load { buf: 1, index: Index::new(0, &[(1, 1)]) },
                    ),
                }],
            }],
        };
        check(&k, &[data(36, 3.0), data(9, 2.0).iter().map(|v| v + 3.0).collect(), vec![0.0; 36]], 1e-6);
    }
    // A softmax row: max and sum reductions (vector + tail), lets, then a normalized store.
    let x = Index::new(0, &[(0, 13), (2, 1)]);
    let k = Kernel {
        launch: Default::default(),
        name: "softmax".into(),
        bufs: vec![Buf::global("x", 5 * 13, Access::Read), Buf::global("y", 5 * 13, Access::Write)],
        extent: 5,
        body: vec![
            Stmt::Let {
                id: 0,
                value: Expr::Reduce {
                    op: Reduce::Max,
                    var: 2,
                    extent: 13,
                    body: Box::new(Expr::Load { buf: 0, index: x.clone() }),
                },
            },
            Stmt::Let {
                id: 1,
                value: Expr::Reduce {
                    op: Reduce::Add,
                    var: 2,
                    extent: 13,
                    body: Box::new(Expr::unary(
                        UnaryOp::Exp,
                        Expr::binary(BinaryOp::Sub, Expr::Load { buf: 0, index: x }, Expr::Get(0)),
                    )),
                },
            },
            Stmt::For {
                var: 1,
                extent: 13,
                body: vec![Stmt::Store {
                    buf: 1,
                    index: Index::new(0, &[(0, 13), (1, 1)]),
                    value: Expr::binary(
                        BinaryOp::Div,
                        Expr::unary(
                            UnaryOp::Exp,
                            Expr::binary(
                                BinaryOp::Sub,
                                Expr::Load { buf: 0, index: Index::new(0, &[(0, 13), (1, 1)]) },
                                Expr::Get(0),
                            ),
                        ),
                        Expr::Get(1),
                    ),
                }],
            },
        ],
    };
    check(&k, &[data(65, 5.0), vec![0.0; 65]], 2e-6);
}

#[test]
fn generated_code_is_deterministic_and_relocation_free() {
    let k = Kernel {
        launch: Default::default(),
        name: "copy".into(),
        bufs: vec![Buf::global("x", 8, Access::Read), Buf::global("y", 8, Access::Write)],
        extent: 8,
        body: vec![Stmt::Store {
            buf: 1,
            index: Index::new(0, &[(0, 1)]),
            value: Expr::unary(UnaryOp::Tanh, Expr::Load { buf: 0, index: Index::new(0, &[(0, 1)]) }),
        }],
    };
    let t = CpuTarget::host().unwrap();
    let a = compile(&t, &[&k]).unwrap();
    let b = compile(&t, &[&k]).unwrap();
    assert_eq!(a, b);
    assert!(!a.code.is_empty() && !a.functions[0].asm.is_empty());
    // The other supported architecture compiles too (its code is not run here).
    let other = if std::env::consts::ARCH == "x86_64" { "aarch64" } else { "x86_64" };
    let c = compile(&CpuTarget::new(other).unwrap(), &[&k]).unwrap();
    assert!(!c.code.is_empty());
    assert!(CpuTarget::new("mips").is_err());
}
