//! The kernel IR: what every target lowers from. A [`KernelOp`] is one fused kernel group of the graph,
//! in one of three forms:
//!
//! - a **loop kernel** ([`Kernel`]): a parallel outer dimension (iterations `lo..hi` of `0..extent`, so a
//!   device can split it over threads, blocks or cores), nested `for` loops, `let` values, and `store`s of
//!   expressions over `load`s whose element offsets are affine in the loop variables. Elementwise chains,
//!   broadcasts, transposes, row reductions, softmax and normalizations are loop kernels.
//! - a **contraction** ([`Gemm`]): a (batched) matrix product over strided operands with an optional
//!   loop-kernel epilogue applied to finished rows of the result (bias, activation, residual add).
//! - **attention** ([`Attention`]): `softmax(scale * Q·Kᵀ + mask)·V` per batch and head, the online-softmax
//!   unit targets tile as they can.
//!
//! Buffers are numbered per kernel; each has an element count and an access mode, and every affine access
//! is checked against it by [`verify`]. [`print`] gives the text form (`sovc emit` writes it as `.kir`),
//! and [`eval`] runs a loop kernel on plain vectors: the oracle the code generators are tested against.
//! Elements are f32; other element types stay on the reference path for now.

mod eval;
mod print;
mod verify;

pub use eval::{eval, eval_op};
pub use print::{print, print_op};
pub use verify::{verify, verify_op};

use crate::{BinaryOp, UnaryOp};

/// A loop variable. Variable 0 is the kernel's parallel dimension.
pub type Var = u32;

/// An element offset `offset + Σ coeff·var`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Index {
    pub offset: i64,
    pub terms: Vec<(Var, i64)>,
}

impl Index {
    pub fn new(offset: i64, terms: &[(Var, i64)]) -> Index {
        let mut terms: Vec<(Var, i64)> = terms.iter().copied().filter(|t| t.1 != 0).collect();
        terms.sort();
        Index { offset, terms }
    }

    /// The coefficient of `v`.
    pub fn coeff(&self, v: Var) -> i64 {
        self.terms.iter().filter(|t| t.0 == v).map(|t| t.1).sum()
    }
}

/// How a kernel uses a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

/// Where a buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Space {
    /// Device memory visible to every thread (the arena, weights, inputs, outputs).
    #[default]
    Global,
    /// Scratch shared by the threads of one group and private to it: PTX shared memory, Metal
    /// threadgroup memory, Tensix L1 (circular buffers). Only in kernels with more than one thread per
    /// group; its contents do not outlive one group's run.
    Shared,
}

/// A buffer parameter of a kernel: f32 elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buf {
    pub name: String,
    pub len: u64,
    pub access: Access,
    pub space: Space,
}

impl Buf {
    /// A buffer in global memory.
    pub fn global(name: impl Into<String>, len: u64, access: Access) -> Buf {
        Buf { name: name.into(), len, access, space: Space::Global }
    }
}

/// How many elements one vector instruction covers, for targets whose vectors are not a fixed size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VectorLength {
    /// The target's natural width (cpu: 4 lanes of f32).
    #[default]
    Native,
    /// Exactly this many bits per vector register (RISC-V `vlen=128|256|512` builds).
    Fixed(u32),
    /// Whatever the machine has, read at run time (RISC-V `vsetvli`, vector-length agnostic code).
    Scalable,
}

/// How a kernel's parallel dimension maps onto the machine. The cpu target runs one thread per
/// iteration range and needs the defaults; the GPU and Tensix targets fill the rest in when they
/// schedule a kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Threads that cooperate on one iteration of the parallel dimension and may `barrier` and share
    /// `Space::Shared` buffers: a PTX block or Metal threadgroup; 1 on cpu and RISC-V.
    pub threads_per_group: u64,
    /// Vector length for vector code.
    pub vector: VectorLength,
    /// Tiles the kernel's buffers move in (Tensix: 32x32, in four 16x16 faces); `None` for element-wise
    /// addressing.
    pub tile: Option<(u64, u64)>,
}

impl Default for Launch {
    fn default() -> Launch {
        Launch { threads_per_group: 1, vector: VectorLength::Native, tile: None }
    }
}

/// Combining function of a reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    Add,
    Max,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Const(f32),
    Load {
        buf: u32,
        index: Index,
    },
    /// The value of a `let`.
    Get(u32),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `body` combined over `var` in `0..extent`.
    Reduce {
        op: Reduce,
        var: Var,
        extent: u64,
        body: Box<Expr>,
    },
    /// `then` where every condition `0 <= index < bound` holds, else `other` (padding: `then` is not
    /// evaluated where a condition fails, so its loads may lie outside the buffer there).
    Guard {
        conds: Vec<(Index, u64)>,
        then: Box<Expr>,
        other: f32,
    },
}

impl Expr {
    pub fn unary(op: UnaryOp, a: Expr) -> Expr {
        Expr::Unary(op, Box::new(a))
    }

    pub fn binary(op: BinaryOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    /// Calls `f` on this expression and every sub-expression.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Unary(_, a) => a.visit(f),
            Expr::Binary(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Reduce { body, .. } => body.visit(f),
            Expr::Guard { then, .. } => then.visit(f),
            Expr::Const(_) | Expr::Load { .. } | Expr::Get(_) => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    For {
        var: Var,
        extent: u64,
        body: Vec<Stmt>,
    },
    Let {
        id: u32,
        value: Expr,
    },
    Store {
        buf: u32,
        index: Index,
        value: Expr,
    },
    /// Every thread of the group reaches this point before any continues, and their stores to shared
    /// buffers before it are visible after it (`bar.sync`, `threadgroup_barrier`). Only in kernels with
    /// more than one thread per group.
    Barrier,
}

/// A loop kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub bufs: Vec<Buf>,
    /// Iterations of the parallel dimension (variable 0).
    pub extent: u64,
    pub body: Vec<Stmt>,
    pub launch: Launch,
}

impl Kernel {
    /// A kernel with the default launch (one thread per iteration range, native vectors).
    pub fn new(name: impl Into<String>, bufs: Vec<Buf>, extent: u64, body: Vec<Stmt>) -> Kernel {
        Kernel { name: name.into(), bufs, extent, body, launch: Launch::default() }
    }
}

/// A strided matrix operand: element `(batch b, group g, row i, column j)` at
/// `offset + b·batch + g·group + i·rows + j·cols` of buffer `buf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operand {
    pub buf: u32,
    pub offset: u64,
    pub batch: i64,
    pub group: i64,
    pub rows: i64,
    pub cols: i64,
}

/// B of a convolution read straight from the image (implicit im2col): row `(c, r, s)` (channel-major),
/// column `(y, x)` of the output, element `image[c, y·sh - ph + r·dh, x·sw - pw + s·dw]` or 0 in the
/// padding. `channels` is per group; the operand's `batch` and `group` strides step between images and
/// channel groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Im2col {
    pub channels: u64,
    pub h: u64,
    pub w: u64,
    pub kh: u64,
    pub kw: u64,
    pub sh: u64,
    pub sw: u64,
    pub ph: u64,
    pub pw: u64,
    pub dh: u64,
    pub dw: u64,
    pub oh: u64,
    pub ow: u64,
}

/// `C[b,g] = A[b,g]·B[b,g]` for `b < batch`, `g < groups`, `A: m x k`, `B: k x n`; C is dense row-major,
/// the groups of a batch entry stacked by rows (a grouped convolution's output channels). When B is a
/// constant (`b_const`) a device may pack it once at load time; `b_im2col` reads B from an image.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub name: String,
    pub bufs: Vec<Buf>,
    pub batch: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    pub a: Operand,
    pub b: Operand,
    pub b_const: bool,
    pub b_im2col: Option<Im2col>,
    pub groups: u64,
    pub c: Operand,
    /// Applied in place to rows of C (all batches and groups flattened: `batch·groups·m` rows of `n`)
    /// once they are final;
    /// its parallel variable is the row, its buffers are the gemm's.
    pub epilogue: Option<Kernel>,
}

/// `O = softmax(scale·Q·Kᵀ + mask)·V` for `heads` independent (batch·head) slices: Q `[sq, d]`, K `[sk, d]`,
/// V `[sk, dv]`, O `[sq, dv]`, dense per slice; the mask (if any) `[sq, sk]` with its own slice stride
/// (0 when broadcast over slices).
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub name: String,
    pub bufs: Vec<Buf>,
    pub heads: u64,
    pub sq: u64,
    pub sk: u64,
    pub d: u64,
    pub dv: u64,
    pub scale: f32,
    /// Buffers of Q, K, V and O.
    pub q: u32,
    pub k: u32,
    pub v: u32,
    pub o: u32,
    /// Mask buffer and its stride between slices, its row stride and its column stride.
    pub mask: Option<(u32, i64, i64, i64)>,
}

/// One kernel of a compiled model.
#[derive(Clone, Debug, PartialEq)]
pub enum KernelOp {
    Loop(Kernel),
    Gemm(Box<Gemm>),
    Attention(Attention),
}

impl KernelOp {
    pub fn name(&self) -> &str {
        match self {
            KernelOp::Loop(k) => &k.name,
            KernelOp::Gemm(g) => &g.name,
            KernelOp::Attention(a) => &a.name,
        }
    }

    pub fn bufs(&self) -> &[Buf] {
        match self {
            KernelOp::Loop(k) => &k.bufs,
            KernelOp::Gemm(g) => &g.bufs,
            KernelOp::Attention(a) => &a.bufs,
        }
    }
}

/// Whether loop kernels may use this unary op (what every code generator implements).
pub fn unary_supported(op: UnaryOp) -> bool {
    use UnaryOp::*;
    matches!(op, Neg | Abs | Exp | Sqrt | Rsqrt | Reciprocal | Tanh | Sigmoid | Erf | Relu | Identity)
}

/// Whether loop kernels may use this binary op.
pub fn binary_supported(op: BinaryOp) -> bool {
    use BinaryOp::*;
    matches!(op, Add | Sub | Mul | Div | Max | Min)
}
