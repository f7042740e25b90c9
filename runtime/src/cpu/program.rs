//! The execution plan of a `cpu` artifact (its `cpu.program` section, JSON): where every graph value
//! lives, the functions in the `cpu.code` section, and the steps that run the model. The compiler writes
//! it; the runtime checks it against the graph and the code before running anything.

use serde::{Deserialize, Serialize};

/// Where a graph value's bytes live while the model runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Slot {
    /// Not materialized (internal to a fused kernel, or unused).
    None,
    /// At this byte offset of the activation arena.
    Arena(u64),
    /// At this byte offset of the weights section.
    Weight(u64),
}

/// A function of the code section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub name: String,
    pub offset: u64,
    pub len: u64,
    /// Iterations of the kernel's parallel dimension that the code was generated for.
    pub extent: u64,
    /// Per buffer parameter: the elements the code may touch, and whether it writes the buffer.
    pub bufs: Vec<(u64, bool)>,
}

/// A strided matrix operand (see `sovc_ir::kernel::Operand`); `buf` indexes the step's buffers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operand {
    pub buf: u32,
    pub offset: u64,
    pub batch: i64,
    pub group: i64,
    pub rows: i64,
    pub cols: i64,
}

/// B read from an image (see `sovc_ir::kernel::Im2col`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// One step. `kernel` is the kernel's number in the plan section; `bufs` are graph value ids in the
/// order of the kernel's buffer parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// A generated loop kernel over `0..extent`, split into pieces of at least `grain` iterations.
    Loop { kernel: usize, func: usize, bufs: Vec<u32>, extent: u64, grain: u64 },
    /// Matrix product (per batch entry and group) on the runtime's microkernels, then the generated
    /// epilogue (if any) on finished rows.
    Gemm {
        kernel: usize,
        bufs: Vec<u32>,
        batch: u64,
        m: u64,
        n: u64,
        k: u64,
        a: Operand,
        b: Operand,
        b_const: bool,
        im2col: Option<Box<Im2col>>,
        groups: u64,
        c: Operand,
        epilogue: Option<usize>,
    },
    /// Attention per (batch, head) slice on the runtime's microkernels.
    Attention {
        kernel: usize,
        bufs: Vec<u32>,
        heads: u64,
        sq: u64,
        sk: u64,
        d: u64,
        dv: u64,
        scale: f32,
        q: u32,
        k: u32,
        v: u32,
        o: u32,
        mask: Option<(u32, i64, i64, i64)>,
    },
    /// Graph nodes no cpu kernel covers yet, run by the reference interpreter on the arena's values.
    Reference { kernel: usize, nodes: Vec<usize> },
}

/// The whole plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// `x86_64` or `aarch64`.
    pub arch: String,
    /// Host features the code needs.
    pub features: Vec<String>,
    pub arena_bytes: u64,
    /// One per graph value.
    pub slots: Vec<Slot>,
    pub functions: Vec<Function>,
    pub steps: Vec<Step>,
}
