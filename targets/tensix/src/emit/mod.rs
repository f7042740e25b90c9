//! C++ emission: a Tensix [`Program`] printed as the three TT-Metalium kernels it describes, and a whole
//! [`Plan`] as a CMake project with a host program on the Mesh API. Each [`Op`] prints as exactly one call of
//! the pinned tt-metal API (compute ops preceded by the init, data-format reconfiguration or `reduce_uninit`
//! the API asks for when the previous compute op configured the hardware differently), so the C++ says what
//! the simulator ran. FillTile, PadTile and BcastTile have no TT-Metalium call: they print as calls of the
//! helpers in `sovc_dm.h` ([`emit_dm_header`]).
//!
//! Argument convention of every emitted program (also written at the top of each kernel):
//! - runtime args `0..N` are the program's per-core args ([`CoreWork::args`], padded with zeros to the longest
//!   list `N`), so `Ix::Arg(i)` is `get_arg_val<uint32_t>(i)` in all three kernels;
//! - the reader and the writer get `N + j` = DRAM base address of the program's tensor `j` (`Program::tensors[j]`),
//!   for every tensor of the program;
//! - compile-time args of a data-movement kernel: one `TensorAccessorArgs` block per program tensor it reads or
//!   writes, in increasing `j`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use sovc_runtime::tensix::program::{
    Bcast, DataFormat, Fill, FpuBinary, Ix, MoveMap, MoveStep, Op, Plan, Program, Rect, ReduceDim, ReduceKind,
    SfpuBinary, SfpuUnary, Step,
};

/// The tt-metal release the emitted C++ is written against. v0.74.0 is the first release with the whole
/// kernel model sovc prints: `void kernel_main()` compute kernels (tt-metal PR #35282), kernel headers under
/// `api/dataflow/` and `api/compute/` (the device-header reorganisation of PR #34119), `TensorAccessor`, the
/// Mesh host API, and the "`compute_kernel_hw_startup` once, then `<op>_init` before each op" model for matmul
/// (`compute_kernel_hw_startup<SrcOrder::Reverse>` + `matmul_init`, PR #46346), while the older per-op init
/// names sovc uses elsewhere (`add_tiles_init`, `copy_tile_init`, the `*_init_short` broadcast inits) are still
/// the current ones, before the July 2026 renames (`add_init`, `copy_init`, `bcast_init`). It is also the tag
/// tt-lang, whose generated kernels follow the same model, publishes against (its `third-party/tt-metal-version`).
pub const TT_METAL_VERSION: &str = "v0.74.0";

/// The C++ source of a program's three kernels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSources {
    pub reader: String,
    pub compute: String,
    pub writer: String,
}

/// The three kernels of `p`, a program of `plan`.
pub fn emit_kernels(plan: &Plan, p: &Program) -> KernelSources {
    let ctx = Ctx::new(plan, p);
    KernelSources {
        reader: ctx.data_movement(Dm::Reader),
        compute: ctx.compute(),
        writer: ctx.data_movement(Dm::Writer),
    }
}

/// `sovc_dm.h`, the L1 tile helpers the data-movement kernels include as `"../sovc_dm.h"`.
pub fn emit_dm_header() -> String {
    include_str!("../../include/sovc_dm.h").to_string()
}

// ----------------------------------------------------------------------------------------------------------
// Shared printing

/// The C++ of an index expression (all `uint32_t`, composite terms parenthesised).
fn ix(e: &Ix) -> String {
    match e {
        Ix::Const(c) => int(*c),
        Ix::Var(v) => format!("v{v}"),
        Ix::Arg(a) => format!("get_arg_val<uint32_t>({a})"),
        Ix::Add(a, b) => format!("({} + {})", ix(a), ix(b)),
        Ix::Mul(a, c) => format!("({} * {})", ix(a), int(*c)),
        Ix::Div(a, c) => format!("({} / {})", ix(a), int(*c)),
        Ix::Mod(a, c) => format!("({} % {})", ix(a), int(*c)),
        Ix::Min(a, b) => {
            let (a, b) = (ix(a), ix(b));
            format!("({a} < {b} ? {a} : {b})")
        }
    }
}

fn int(c: i64) -> String {
    if (0..=u32::MAX as i64).contains(&c) {
        c.to_string()
    } else {
        format!("static_cast<uint32_t>({c}LL)")
    }
}

/// `v` rounded to bfloat16, nearest even (what a Float16_b tile stores).
fn bf16_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if v.is_nan() {
        return (b >> 16) | 0x40;
    }
    b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16
}

/// A float as the bit pattern a tile of `fmt` stores, with the value in a comment.
fn elem_bits(v: f32, fmt: DataFormat) -> String {
    match fmt {
        DataFormat::Float16_b => format!("0x{:04x}u /* {v:?} */", bf16_bits(v)),
        _ => format!("0x{:08x}u /* {v:?} */", v.to_bits()),
    }
}

/// A float as the IEEE-754 bits the SFPU scalar parameters take.
fn f32_bits(v: f32) -> String {
    format!("0x{:08x}u /* {v:?} */", v.to_bits())
}

fn line(out: &mut String, depth: usize, text: &str) {
    for _ in 0..depth + 1 {
        out.push_str("    ");
    }
    out.push_str(text);
    out.push('\n');
}

/// Every op of `ops` in program order, loop bodies included.
fn flatten<'o>(ops: &'o [Op], out: &mut Vec<&'o Op>) {
    for op in ops {
        out.push(op);
        match op {
            Op::Loop { body, .. } => flatten(body, out),
            Op::If { then, els, .. } => {
                flatten(then, out);
                flatten(els, out);
            }
            _ => {}
        }
    }
}

/// The variant name of `op`, for error messages in the C++.
fn op_name(op: &Op) -> String {
    let text = format!("{op:?}");
    text.split([' ', '{', '(']).next().unwrap_or_default().to_string()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dm {
    Reader,
    Writer,
}

struct Ctx<'a> {
    plan: &'a Plan,
    p: &'a Program,
    /// Runtime args of the program proper; tensor base addresses follow them.
    n_args: usize,
}

impl<'a> Ctx<'a> {
    fn new(plan: &'a Plan, p: &'a Program) -> Self {
        Ctx { plan, p, n_args: program_arg_count(p) }
    }

    fn cb_format(&self, cb: u8) -> Option<DataFormat> {
        self.p.cbs.iter().find(|c| c.index == cb).map(|c| c.format)
    }

    /// Page bytes of `cb` as C++: a literal when the program declares the CB.
    fn page(&self, cb: u8) -> String {
        match self.cb_format(cb) {
            Some(f) => f.tile_bytes().to_string(),
            None => format!("get_tile_size(cb_{cb})"),
        }
    }

    /// `get_write_ptr(cb) + slot * page` (or `get_read_ptr`), folded when the slot is a constant.
    fn slot_addr(&self, ptr: &str, cb: u8, slot: &Ix) -> String {
        let base = format!("{ptr}(cb_{cb})");
        match (slot, self.cb_format(cb)) {
            (Ix::Const(0), _) => base,
            (Ix::Const(k), Some(f)) if *k > 0 => format!("{base} + {}", k * f.tile_bytes() as i64),
            _ => format!("{base} + {} * {}", ix(slot), self.page(cb)),
        }
    }

    /// The `constexpr` names of the CBs a kernel touches, with what they hold.
    fn cb_decls(&self, used: &BTreeSet<u8>, out: &mut String) {
        for &i in used {
            match self.p.cbs.iter().find(|c| c.index == i) {
                Some(c) => line(
                    out,
                    0,
                    &format!(
                        "constexpr uint32_t cb_{i} = {i};  // {}: {} pages of {}",
                        c.role,
                        c.pages,
                        c.format.name()
                    ),
                ),
                None => line(out, 0, &format!("constexpr uint32_t cb_{i} = {i};  // not declared by the program")),
            }
        }
    }

    fn banner(&self, kind: &str, out: &mut String) {
        let p = self.p;
        let _ = writeln!(
            out,
            "// Generated by sovc for tt-metal {TT_METAL_VERSION}: the {kind} kernel of program `{}` (plan kernel {}, \
             template `{}`), {} {}.",
            p.name, p.kernel, p.template, self.plan.device.arch, self.plan.device.board
        );
        let _ = writeln!(
            out,
            "// Runtime args: 0..{n} are the program's per-core args (get_arg_val<uint32_t>(i)); the reader and the \
             writer\n// also get, at {n} + j, the DRAM base address of program tensor j, for j in 0..{}.",
            p.tensors.len(),
            n = self.n_args
        );
    }
}

/// The longest per-core argument list of `p` (shorter lists are padded with zeros by the host).
fn program_arg_count(p: &Program) -> usize {
    p.cores.iter().map(|c| c.args.len()).max().unwrap_or(0)
}

/// The program tensors (indices into `Program::tensors`) that `ops` read or write, in increasing order.
fn tensors_used(ops: &[Op]) -> BTreeSet<u8> {
    let mut all = Vec::new();
    flatten(ops, &mut all);
    all.iter()
        .filter_map(|op| match op {
            Op::ReadTile { tensor, .. }
            | Op::WriteTile { tensor, .. }
            | Op::Im2colTile { tensor, .. }
            | Op::TapTile { tensor, .. }
            | Op::ConcatPartTile { tensor, .. }
            | Op::GatherTile { tensor, .. } => Some(*tensor),
            _ => None,
        })
        .chain(all.iter().flat_map(|op| match op {
            Op::EmbedTile { table, ids, .. } => vec![*table, *ids],
            _ => Vec::new(),
        }))
        .collect()
}

fn cbs_used(ops: &[Op]) -> BTreeSet<u8> {
    let mut all = Vec::new();
    flatten(ops, &mut all);
    let mut set = BTreeSet::new();
    for op in all {
        match op {
            Op::Reserve { cb, .. }
            | Op::Push { cb, .. }
            | Op::Wait { cb, .. }
            | Op::Pop { cb, .. }
            | Op::ReadTile { cb, .. }
            | Op::WriteTile { cb, .. }
            | Op::FillTile { cb, .. }
            | Op::PadTile { cb, .. }
            | Op::BcastTile { cb, .. }
            | Op::McastTiles { cb, .. }
            | Op::CopyTile { cb, .. }
            | Op::Transpose { cb, .. }
            | Op::Pack { cb, .. } => {
                set.insert(*cb);
            }
            Op::Matmul { in0: a, in1: b, .. }
            | Op::Binary { a, b, .. }
            | Op::Reduce { cb: a, scaler_cb: b, .. }
            | Op::Im2colTile { cb: a, scratch: b, .. }
            | Op::TapTile { cb: a, scratch: b, .. }
            | Op::ColumnTile { cb: a, from: b, .. }
            | Op::ConcatPartTile { cb: a, scratch: b, .. }
            | Op::GatherTile { cb: a, scratch: b, .. } => {
                set.insert(*a);
                set.insert(*b);
            }
            Op::EmbedTile { cb, scratch, ids_scratch, .. } => {
                set.extend([*cb, *scratch, *ids_scratch]);
            }
            Op::SplitTile { from, hi, lo, .. } => {
                set.extend([*from, *hi, *lo]);
            }
            _ => {}
        }
    }
    set
}

// ----------------------------------------------------------------------------------------------------------
// Compute kernel

/// What the compute engine is configured for at a point of the kernel; `None` where paths disagree (after a
/// loop or around one whose body changes it), which makes the next op configure it again.
#[derive(Clone, Debug, PartialEq)]
struct Hw {
    /// The init call that ran last (its text, CB ids included).
    init: Option<String>,
    /// Unpacker source formats and packer output format.
    srca: Option<DataFormat>,
    srcb: Option<DataFormat>,
    pack: Option<DataFormat>,
    /// Whether a reduce left the packer edge mask set (`reduce_uninit` clears it).
    reduce_mask: Option<bool>,
}

impl Hw {
    fn join(&self, o: &Hw) -> Hw {
        fn j<T: Clone + PartialEq>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            if a == b {
                a.clone()
            } else {
                None
            }
        }
        Hw {
            init: j(&self.init, &o.init),
            srca: j(&self.srca, &o.srca),
            srcb: j(&self.srcb, &o.srcb),
            pack: j(&self.pack, &o.pack),
            reduce_mask: j(&self.reduce_mask, &o.reduce_mask),
        }
    }
}

/// A compute op that needs an init: its header, init, call and the CBs it unpacks into SrcA / SrcB.
struct Spec {
    header: &'static str,
    init: String,
    call: String,
    srca: Option<u8>,
    srcb: Option<u8>,
    reduce: bool,
}

fn unary(op: SfpuUnary, d: u8) -> (&'static str, String, String) {
    const EXP: &str = "api/compute/eltwise_unary/exp.h";
    const API: &str = "api/compute/compute_kernel_api.h";
    const SCALAR: &str = "api/compute/eltwise_unary/binop_with_scalar.h";
    let plain = |h: &'static str, name: &str| (h, format!("{name}_tile_init();"), format!("{name}_tile({d});"));
    let param = |h: &'static str, init: &str, name: &str, v: f32| {
        (h, format!("{init}();"), format!("{name}({d}, {});", f32_bits(v)))
    };
    match op {
        SfpuUnary::Exp => plain(EXP, "exp"),
        SfpuUnary::Log => plain(API, "log"),
        SfpuUnary::Recip => plain("api/compute/eltwise_unary/recip.h", "recip"),
        SfpuUnary::Sqrt => plain("api/compute/eltwise_unary/sqrt.h", "sqrt"),
        SfpuUnary::Rsqrt => plain("api/compute/eltwise_unary/rsqrt.h", "rsqrt"),
        // The accurate GELU (erf form); `fast_and_approx` selects tt-metal's approximation, used for the tanh form.
        SfpuUnary::Gelu => {
            ("api/compute/eltwise_unary/gelu.h", "gelu_tile_init<false>();".into(), format!("gelu_tile<false>({d});"))
        }
        SfpuUnary::GeluTanh => {
            ("api/compute/eltwise_unary/gelu.h", "gelu_tile_init<true>();".into(), format!("gelu_tile<true>({d});"))
        }
        SfpuUnary::Relu => plain("api/compute/eltwise_unary/relu.h", "relu"),
        SfpuUnary::Sigmoid => plain(API, "sigmoid"),
        SfpuUnary::Silu => plain(API, "silu"),
        SfpuUnary::Tanh => plain(API, "tanh"),
        SfpuUnary::Erf => plain("api/compute/eltwise_unary/erf_erfc.h", "erf"),
        SfpuUnary::Abs => plain(API, "abs"),
        SfpuUnary::Neg => plain("api/compute/eltwise_unary/negative.h", "negative"),
        SfpuUnary::Square => plain(API, "square"),
        SfpuUnary::Sin => plain("api/compute/eltwise_unary/trigonometry.h", "sin"),
        SfpuUnary::Cos => plain("api/compute/eltwise_unary/trigonometry.h", "cos"),
        SfpuUnary::Floor => {
            ("api/compute/eltwise_unary/rounding.h", "rounding_op_tile_init();".into(), format!("floor_tile({d});"))
        }
        SfpuUnary::Sign => plain(API, "sign"),
        SfpuUnary::AddScalar(v) => param(SCALAR, "binop_with_scalar_tile_init", "add_unary_tile", v),
        SfpuUnary::MulScalar(v) => param(SCALAR, "binop_with_scalar_tile_init", "mul_unary_tile", v),
        SfpuUnary::RsubScalar(v) => param(SCALAR, "binop_with_scalar_tile_init", "rsub_unary_tile", v),
        SfpuUnary::MaxScalar(v) => param(API, "unary_max_tile_init", "unary_max_tile", v),
        SfpuUnary::MinScalar(v) => param(API, "unary_min_tile_init", "unary_min_tile", v),
        SfpuUnary::PowScalar(v) => param(API, "power_tile_init", "power_tile", v),
        SfpuUnary::LeakyRelu(v) => {
            param("api/compute/eltwise_unary/relu.h", "leaky_relu_tile_init", "leaky_relu_tile", v)
        }
        SfpuUnary::Elu(v) => param("api/compute/eltwise_unary/elu.h", "elu_tile_init", "elu_tile", v),
        SfpuUnary::RoundBf16 => {
            let t = "(uint32_t)DataFormat::Float32, (uint32_t)DataFormat::Float16_b";
            (
                "api/compute/eltwise_unary/typecast.h",
                format!("typecast_tile_init<{t}>();"),
                format!("typecast_tile<{t}>({d});"),
            )
        }
    }
}

fn binary(op: FpuBinary, bcast: Bcast, a: u8, b: u8, ta: &Ix, tb: &Ix, dst: u8) -> Spec {
    let name = match op {
        FpuBinary::Add => "add",
        FpuBinary::Sub => "sub",
        FpuBinary::Mul => "mul",
    };
    let (header, init, call) = match bcast {
        Bcast::None => ("api/compute/eltwise_binary.h", format!("{name}_tiles_init"), format!("{name}_tiles")),
        Bcast::Rows => {
            ("api/compute/bcast.h", format!("{name}_bcast_rows_init_short"), format!("{name}_tiles_bcast_rows"))
        }
        Bcast::Cols => {
            ("api/compute/bcast.h", format!("{name}_bcast_cols_init_short"), format!("{name}_tiles_bcast_cols"))
        }
        // tt-metal spells the scalar inits of sub and mul with `_tiles`, the add one without.
        Bcast::Scalar => {
            let init = if op == FpuBinary::Add {
                "add_bcast_scalar_init_short".to_string()
            } else {
                format!("{name}_tiles_bcast_scalar_init_short")
            };
            ("api/compute/bcast.h", init, format!("{name}_tiles_bcast_scalar"))
        }
    };
    Spec {
        header,
        init: format!("{init}(cb_{a}, cb_{b});"),
        call: format!("{call}(cb_{a}, cb_{b}, {}, {}, {dst});", ix(ta), ix(tb)),
        srca: Some(a),
        srcb: Some(b),
        reduce: false,
    }
}

fn sfpu_binary(op: SfpuBinary, a: u8, b: u8) -> Spec {
    let (header, name) = match op {
        SfpuBinary::Add => ("api/compute/eltwise_binary_sfpu.h", "add_binary_tile"),
        SfpuBinary::Sub => ("api/compute/eltwise_binary_sfpu.h", "sub_binary_tile"),
        SfpuBinary::Mul => ("api/compute/eltwise_binary_sfpu.h", "mul_binary_tile"),
        SfpuBinary::Div => ("api/compute/eltwise_binary_sfpu.h", "div_binary_tile"),
        SfpuBinary::Pow => ("api/compute/eltwise_binary_sfpu.h", "power_binary_tile"),
        SfpuBinary::Max => ("api/compute/binary_max_min.h", "binary_max_tile"),
        SfpuBinary::Min => ("api/compute/binary_max_min.h", "binary_min_tile"),
    };
    Spec {
        header,
        init: format!("{name}_init();"),
        call: format!("{name}({a}, {b}, {a});"),
        srca: None,
        srcb: None,
        reduce: false,
    }
}

fn reduce_names(kind: ReduceKind, dim: ReduceDim) -> String {
    let k = match kind {
        ReduceKind::Sum => "PoolType::SUM",
        ReduceKind::Max => "PoolType::MAX",
    };
    let d = match dim {
        ReduceDim::Row => "ReduceDim::REDUCE_ROW",
        ReduceDim::Col => "ReduceDim::REDUCE_COL",
        ReduceDim::Scalar => "ReduceDim::REDUCE_SCALAR",
    };
    format!("{k}, {d}")
}

struct Compute<'c, 'a> {
    ctx: &'c Ctx<'a>,
    /// The compute ops in program order, to find the pack that follows a reduce.
    order: Vec<&'a Op>,
    /// The output CB of `compute_kernel_hw_startup`.
    startup_out: Option<u8>,
    headers: BTreeSet<&'static str>,
}

impl<'a> Ctx<'a> {
    fn compute(&self) -> String {
        let mut order = Vec::new();
        flatten(&self.p.compute, &mut order);
        let first_pack = order.iter().find_map(|op| match op {
            Op::Pack { cb, .. } => Some(*cb),
            _ => None,
        });
        let mut c = Compute { ctx: self, order, startup_out: first_pack, headers: BTreeSet::new() };
        c.headers.insert("api/compute/common.h");
        let (startup, mut hw) = c.startup();
        let mut body = String::new();
        if self.p.compute.is_empty() {
            line(&mut body, 0, "// This program only moves data: the compute engine has nothing to do.");
        } else if let Some(s) = &startup {
            c.headers.insert("api/compute/compute_kernel_hw_startup.h");
            line(&mut body, 0, s);
        }
        for op in &self.p.compute {
            c.op(op, 0, &mut hw, &mut body);
        }

        let mut out = String::new();
        self.banner("compute", &mut out);
        let _ = writeln!(
            out,
            "// Math fidelity {} and fp32_dest_acc_en = {} are set by the host (ComputeConfig).",
            self.p.fidelity.name(),
            self.p.fp32_dest_acc
        );
        out.push_str("\n#include <cstdint>\n\n");
        for h in &c.headers {
            let _ = writeln!(out, "#include \"{h}\"");
        }
        out.push_str("\nvoid kernel_main() {\n");
        self.cb_decls(&cbs_used(&self.p.compute), &mut out);
        out.push_str(&body);
        out.push_str("}\n");
        out
    }
}

impl<'a> Compute<'_, 'a> {
    fn fmt(&self, cb: u8) -> Option<DataFormat> {
        self.ctx.cb_format(cb)
    }

    /// `compute_kernel_hw_startup`, set up for the first op that unpacks and the first pack, and the state it
    /// leaves.
    fn startup(&self) -> (Option<String>, Hw) {
        let first = self.order.iter().find_map(|op| match op {
            Op::Matmul { in0, in1, .. } => Some((*in0, *in1, true)),
            Op::Binary { a, b, .. } => Some((*a, *b, false)),
            Op::Reduce { cb, scaler_cb, .. } => Some((*cb, *scaler_cb, false)),
            Op::CopyTile { cb, .. } | Op::Transpose { cb, .. } => Some((*cb, *cb, false)),
            _ => None,
        });
        let out = self.startup_out.or(first.map(|f| f.0)).or(self.ctx.p.cbs.first().map(|c| c.index));
        let mut hw = Hw { init: None, srca: None, srcb: None, pack: None, reduce_mask: Some(false) };
        let Some(ocb) = out else { return (None, hw) };
        hw.pack = self.fmt(ocb);
        let text = match first {
            Some((in0, in1, true)) => {
                // Matmul feeds in0 to SrcB and in1 to SrcA.
                hw.srca = self.fmt(in1);
                hw.srcb = self.fmt(in0);
                format!("compute_kernel_hw_startup<SrcOrder::Reverse>(cb_{in0}, cb_{in1}, cb_{ocb});")
            }
            Some((a, b, false)) => {
                hw.srca = self.fmt(a);
                hw.srcb = self.fmt(b);
                if a == b {
                    format!("compute_kernel_hw_startup(cb_{a}, cb_{ocb});")
                } else {
                    format!("compute_kernel_hw_startup(cb_{a}, cb_{b}, cb_{ocb});")
                }
            }
            None => format!("compute_kernel_hw_startup(cb_{ocb}, cb_{ocb});"),
        };
        (Some(text), hw)
    }

    /// The output CB a reduce's packer mask is set for: the next pack in program order (around loops).
    fn pack_after(&self, op: &Op) -> Option<u8> {
        let at = self.order.iter().position(|o| std::ptr::eq(*o, op))?;
        let after = self.order[at..].iter().chain(self.order[..at].iter());
        after
            .filter_map(|o| match o {
                Op::Pack { cb, .. } => Some(*cb),
                _ => None,
            })
            .next()
            .or(self.startup_out)
    }

    fn spec(&self, op: &Op) -> Option<Spec> {
        let fp32 = self.ctx.p.fp32_dest_acc;
        Some(match op {
            Op::CopyTile { cb, tile, dst } => Spec {
                header: "api/compute/tile_move_copy.h",
                init: format!("copy_tile_init(cb_{cb});"),
                call: format!("copy_tile(cb_{cb}, {}, {dst});", ix(tile)),
                srca: Some(*cb),
                srcb: None,
                reduce: false,
            },
            Op::Matmul { in0, in1, t0, t1, dst, transpose } => Spec {
                header: "api/compute/matmul.h",
                init: if *transpose {
                    format!("matmul_init(cb_{in0}, cb_{in1}, 1);")
                } else {
                    format!("matmul_init(cb_{in0}, cb_{in1});")
                },
                call: format!("matmul_tiles(cb_{in0}, cb_{in1}, {}, {}, {dst});", ix(t0), ix(t1)),
                srca: Some(*in1),
                srcb: Some(*in0),
                reduce: false,
            },
            Op::Binary { op, bcast, a, b, ta, tb, dst } => binary(*op, *bcast, *a, *b, ta, tb, *dst),
            Op::BinaryDst { op, a, b } => sfpu_binary(*op, *a, *b),
            Op::Unary { op, dst } => {
                let (header, init, call) = unary(*op, *dst);
                Spec { header, init, call, srca: None, srcb: None, reduce: false }
            }
            Op::CopyDst { from, to } => Spec {
                header: "api/compute/copy_dest_values.h",
                init: "copy_dest_values_init();".into(),
                call: format!(
                    "copy_dest_values<DataFormat::{}>({from}, {to});",
                    if fp32 { "Float32" } else { "Float16_b" }
                ),
                srca: None,
                srcb: None,
                reduce: false,
            },
            Op::Reduce { kind, dim, cb, t, scaler_cb, dst } => {
                let names = reduce_names(*kind, *dim);
                let out = self.pack_after(op).unwrap_or(*cb);
                Spec {
                    header: "api/compute/reduce.h",
                    init: format!("reduce_init<{names}>(cb_{cb}, cb_{scaler_cb}, cb_{out});"),
                    call: format!("reduce_tile<{names}>(cb_{cb}, cb_{scaler_cb}, {}, 0, {dst});", ix(t)),
                    srca: Some(*cb),
                    srcb: Some(*scaler_cb),
                    reduce: true,
                }
            }
            Op::Transpose { cb, t, dst } => Spec {
                header: "api/compute/transpose_wh.h",
                init: format!("transpose_wh_init_short(cb_{cb});"),
                call: format!("transpose_wh_tile(cb_{cb}, {}, {dst});", ix(t)),
                srca: Some(*cb),
                srcb: None,
                reduce: false,
            },
            _ => return None,
        })
    }

    fn op(&mut self, op: &Op, depth: usize, hw: &mut Hw, out: &mut String) {
        if let Some(s) = self.spec(op) {
            self.keyed(s, depth, hw, out);
            return;
        }
        let text = match op {
            Op::Loop { var, count, body } => {
                let mut entry = self.fixpoint(body, hw, depth);
                // When the body's first configuring op would init on every iteration only because the state
                // before the loop differs, init once before the loop instead (as tt-metal's own kernels do),
                // unless a pack comes first (a reduce's packer mask must survive until that pack).
                let first = first_keyed(body, self);
                if let Some((s, false)) = &first {
                    // Likewise the reduce_uninit a body without reduces would repeat.
                    if !s.reduce && entry.reduce_mask != Some(false) && !has_reduce(body) {
                        line(out, depth, "reduce_uninit();");
                        hw.reduce_mask = Some(false);
                        entry = self.fixpoint(body, hw, depth);
                    }
                }
                if let Some((first, packs_before)) = first {
                    if !packs_before && self.needs_init(&first, &entry) {
                        let (mut before, mut text) = (hw.clone(), String::new());
                        self.prepare(&first, depth, &mut before, &mut text);
                        let hoisted = self.fixpoint(body, &before, depth);
                        if !self.needs_init(&first, &hoisted) {
                            out.push_str(&text);
                            *hw = before;
                            entry = hoisted;
                        }
                    }
                }
                line(out, depth, &format!("for (uint32_t v{var} = 0; v{var} < {}; ++v{var}) {{", ix(count)));
                let mut exit = entry;
                for b in body {
                    self.op(b, depth + 1, &mut exit, out);
                }
                line(out, depth, "}");
                // The body may run no times.
                *hw = hw.join(&exit);
                return;
            }
            Op::If { cond, then, els } => {
                line(out, depth, &format!("if ({} != 0) {{", ix(cond)));
                let mut a = hw.clone();
                for b in then {
                    self.op(b, depth + 1, &mut a, out);
                }
                let mut b_hw = hw.clone();
                if !els.is_empty() {
                    line(out, depth, "} else {");
                    for b in els {
                        self.op(b, depth + 1, &mut b_hw, out);
                    }
                }
                line(out, depth, "}");
                *hw = a.join(&b_hw);
                return;
            }
            Op::Reserve { cb, n } => self.cb_call("cb_reserve_back", *cb, *n),
            Op::Push { cb, n } => self.cb_call("cb_push_back", *cb, *n),
            Op::Wait { cb, n } => self.cb_call("cb_wait_front", *cb, *n),
            Op::Pop { cb, n } => self.cb_call("cb_pop_front", *cb, *n),
            Op::Acquire => self.reg("tile_regs_acquire();"),
            Op::Commit => self.reg("tile_regs_commit();"),
            Op::WaitDst => self.reg("tile_regs_wait();"),
            Op::Release => self.reg("tile_regs_release();"),
            Op::Pack { dst, cb, slot } => {
                self.headers.insert("api/compute/pack.h");
                let f = self.fmt(*cb);
                if f.is_some() && hw.pack != f {
                    line(out, depth, &format!("pack_reconfig_data_format(cb_{cb});"));
                    hw.pack = f;
                }
                format!("pack_tile<true>({dst}, cb_{cb}, {});", ix(slot))
            }
            other => {
                format!("#error \"sovc: {} is a data-movement op; a compute kernel cannot run it\"", op_name(other))
            }
        };
        line(out, depth, &text);
    }

    fn cb_call(&mut self, f: &str, cb: u8, n: u32) -> String {
        self.headers.insert("api/compute/cb_api.h");
        format!("{f}(cb_{cb}, {n});")
    }

    fn reg(&mut self, call: &str) -> String {
        self.headers.insert("api/compute/reg_api.h");
        call.to_string()
    }

    /// The state at the top of a loop body entered with `pre`: what every iteration agrees on.
    fn fixpoint(&mut self, body: &[Op], pre: &Hw, depth: usize) -> Hw {
        let mut entry = pre.clone();
        loop {
            let mut exit = entry.clone();
            for b in body {
                self.op(b, depth + 1, &mut exit, &mut String::new());
            }
            let joined = entry.join(&exit);
            if joined == entry {
                return entry;
            }
            entry = joined;
        }
    }

    /// (CB, format) pairs the op needs in SrcA / SrcB that the hardware is not set up for.
    fn reconfigs(&self, s: &Spec, hw: &Hw) -> [Option<(u8, DataFormat)>; 2] {
        let need = |cb: Option<u8>, have: Option<DataFormat>| {
            let cb = cb?;
            let f = self.fmt(cb)?;
            (have != Some(f)).then_some((cb, f))
        };
        [need(s.srca, hw.srca), need(s.srcb, hw.srcb)]
    }

    fn needs_init(&self, s: &Spec, hw: &Hw) -> bool {
        self.reconfigs(s, hw).iter().any(Option::is_some) || hw.init.as_deref() != Some(s.init.as_str())
    }

    /// What must run before the op when the hardware is not set up for it: `reduce_uninit` after a reduce,
    /// unpacker format reconfiguration, then the op's init.
    fn prepare(&mut self, s: &Spec, depth: usize, hw: &mut Hw, out: &mut String) {
        self.headers.insert(s.header);
        if !self.needs_init(s, hw) {
            return;
        }
        let [need_a, need_b] = self.reconfigs(s, hw);
        if !s.reduce && hw.reduce_mask != Some(false) {
            line(out, depth, "reduce_uninit();");
            hw.reduce_mask = Some(false);
        }
        for (which, needed, state) in [("srca", need_a, &mut hw.srca), ("srcb", need_b, &mut hw.srcb)] {
            if let Some((cb, f)) = needed {
                self.headers.insert("api/compute/reconfig_data_format.h");
                line(out, depth, &format!("reconfig_data_format_{which}(cb_{cb});"));
                *state = Some(f);
            }
        }
        line(out, depth, &s.init);
        hw.init = Some(s.init.clone());
    }

    /// An op with an init: the init (and what must precede it) when needed, then the call.
    fn keyed(&mut self, s: Spec, depth: usize, hw: &mut Hw, out: &mut String) {
        self.prepare(&s, depth, hw, out);
        if s.reduce {
            hw.reduce_mask = Some(true);
        }
        line(out, depth, &s.call);
    }
}

fn has_reduce(body: &[Op]) -> bool {
    let mut all = Vec::new();
    flatten(body, &mut all);
    all.iter().any(|op| matches!(op, Op::Reduce { .. }))
}

/// The first op of `body` (loops included) that needs an init, and whether a pack comes before it.
fn first_keyed(body: &[Op], c: &Compute<'_, '_>) -> Option<(Spec, bool)> {
    let mut all = Vec::new();
    flatten(body, &mut all);
    let mut packs = false;
    for op in all {
        if let Some(s) = c.spec(op) {
            return Some((s, packs));
        }
        packs |= matches!(op, Op::Pack { .. });
    }
    None
}

mod dataflow;
mod dm;
use dm::{dm_format, move_map_words};
mod project;
pub use project::{data_name, emit_project};
