//! The Tensix plan of a `blackhole` / `wormhole_b0` artifact (its `tensix.plan` section, JSON): the device
//! it was compiled for, every tensor's place in device DRAM, and the steps that run the model. A device
//! step is one TT-Metalium program: circular buffers, and per core a reader, a compute and a writer kernel
//! written as [`Op`] lists. The compiler prints the C++ kernels from these lists one op to one call, and
//! the simulator ([`super::sim`]) executes the same lists, so what CI checks is what the C++ says.

use serde::{Deserialize, Serialize};

/// A TT-Metalium data format (`tt::DataFormat`), for tiles in DRAM and in circular buffers.
#[allow(non_camel_case_types)] // tt-metal's spelling
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DataFormat {
    Float32,
    Float16_b,
    Bfp8_b,
    Bfp4_b,
}

impl DataFormat {
    /// Bytes of one 32x32 tile (`tile_size` in tt-metal's `tt_backend_api_types.hpp`).
    pub fn tile_bytes(self) -> u32 {
        match self {
            DataFormat::Float32 => 4096,
            DataFormat::Float16_b => 2048,
            DataFormat::Bfp8_b => 1088,
            DataFormat::Bfp4_b => 576,
        }
    }

    /// The C++ spelling (`tt::DataFormat::...`).
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::Float32 => "Float32",
            DataFormat::Float16_b => "Float16_b",
            DataFormat::Bfp8_b => "Bfp8_b",
            DataFormat::Bfp4_b => "Bfp4_b",
        }
    }

    pub fn parse(s: &str) -> Option<DataFormat> {
        [DataFormat::Float32, DataFormat::Float16_b, DataFormat::Bfp8_b, DataFormat::Bfp4_b]
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s) || f.short().eq_ignore_ascii_case(s))
    }

    /// The short spelling used on the command line (`fp32`, `bf16`, `bfp8`, `bfp4`).
    pub fn short(self) -> &'static str {
        match self {
            DataFormat::Float32 => "fp32",
            DataFormat::Float16_b => "bf16",
            DataFormat::Bfp8_b => "bfp8",
            DataFormat::Bfp4_b => "bfp4",
        }
    }
}

/// Matrix-engine fidelity: how many passes over the operands' mantissa bits a multiply takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MathFidelity {
    LoFi,
    HiFi2,
    HiFi3,
    HiFi4,
}

impl MathFidelity {
    /// Passes (phases) per multiply: 1 to 4.
    pub fn phases(self) -> u32 {
        self as u32 + 1
    }

    pub fn name(self) -> &'static str {
        match self {
            MathFidelity::LoFi => "LoFi",
            MathFidelity::HiFi2 => "HiFi2",
            MathFidelity::HiFi3 => "HiFi3",
            MathFidelity::HiFi4 => "HiFi4",
        }
    }

    pub fn parse(s: &str) -> Option<MathFidelity> {
        [MathFidelity::LoFi, MathFidelity::HiFi2, MathFidelity::HiFi3, MathFidelity::HiFi4]
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }
}

/// A Tensix device as the compiler and the simulator see it. Built-in descriptions live in
/// `targets/tensix/devices/*.json` with the sources of their numbers; a system-description file of the
/// same form overrides them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceDesc {
    /// `blackhole` or `wormhole_b0`.
    pub arch: String,
    /// The board (`p150`, `n150`, ...).
    pub board: String,
    /// Compute grid (logical worker cores), columns by rows.
    pub grid_x: u32,
    pub grid_y: u32,
    /// L1 bytes per core, and the first byte a program may use (below it: firmware, kernel binaries).
    pub l1_bytes: u64,
    pub l1_unreserved_base: u64,
    pub dram_banks: u32,
    pub dram_bank_bytes: u64,
    /// AI clock.
    pub clock_mhz: u32,
    /// Peak DRAM bandwidth of the chip, GB/s.
    pub dram_gbps: f64,
    /// NoC bytes a core can move per cycle (one flit per cycle: 32 on Wormhole, 64 on Blackhole).
    pub noc_bytes_per_cycle: u32,
    /// Cycles from issuing a NoC read to the first byte back (latency of a DRAM read).
    pub dram_latency_cycles: u32,
    /// Dst register capacity in bf16 tiles (16; half of it per half-sync phase).
    pub dst_tiles: u32,
    /// Where each number comes from.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl DeviceDesc {
    pub fn cores(&self) -> u32 {
        self.grid_x * self.grid_y
    }

    /// Rejects descriptions no program could run on, and sizes the simulator would not allocate.
    pub fn check(&self) -> Result<(), String> {
        let d = self;
        if d.grid_x == 0 || d.grid_y == 0 || d.grid_x > 64 || d.grid_y > 64 {
            return Err(format!("compute grid {}x{} is out of range", d.grid_x, d.grid_y));
        }
        if d.l1_unreserved_base >= d.l1_bytes || d.l1_bytes > 1 << 24 {
            return Err(format!(
                "L1 of {} B with the first free byte at {} is not usable",
                d.l1_bytes, d.l1_unreserved_base
            ));
        }
        if d.dram_banks == 0 || d.dram_bank_bytes == 0 || d.dram_banks > 64 {
            return Err("needs at least one DRAM bank (and at most 64)".into());
        }
        if d.clock_mhz == 0 || !d.dram_gbps.is_finite() || d.dram_gbps <= 0.0 || d.noc_bytes_per_cycle == 0 {
            return Err("clock, DRAM bandwidth and NoC width must be positive".into());
        }
        if !(8..=16).contains(&d.dst_tiles) {
            return Err(format!("Dst of {} tiles: expected 8 to 16", d.dst_tiles));
        }
        Ok(())
    }
}

/// Options that set the numerics of the whole plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NumericOptions {
    /// Format of activations in DRAM and in circular buffers.
    pub activations: DataFormat,
    /// Format of matmul and convolution weights.
    pub weights: DataFormat,
    /// Accumulate in FP32 in Dst (`fp32_dest_acc_en`).
    pub fp32_dest_acc: bool,
    /// Fidelity forced on every op; `None` lets the compiler choose per op.
    pub fidelity: Option<MathFidelity>,
    /// Products of matmuls and convolutions in split precision: each FP32 operand as a bf16 high part
    /// and a bf16 low part, three products (hi*hi + hi*lo + lo*hi) accumulated in FP32, for about
    /// 16 bits of mantissa where the FPU alone gives TF32.
    #[serde(default)]
    pub split: bool,
}

/// The part of an FP32 value a Float16_b tensor holds: `hi = bf16(x)`, `lo = bf16(x - hi)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    Hi,
    Lo,
}

impl Part {
    pub fn of(self, x: f32) -> f32 {
        let hi = super::numerics::round_bf16(x);
        match self {
            Part::Hi => hi,
            Part::Lo if x.is_finite() => super::numerics::round_bf16(x - hi),
            Part::Lo => 0.0,
        }
    }
}

/// A tensor in device DRAM: tile layout (32x32 tiles of four 16x16 faces, the last two dims padded up to
/// a tile boundary, padding zero), interleaved over the DRAM banks one tile per page: page `p` lies in
/// bank `p % banks` at `address + (p / banks) * page_bytes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DramTensor {
    /// The graph value it holds.
    pub value: u32,
    /// Logical shape viewed as `[batch, rows, cols]`.
    pub batch: u64,
    pub rows: u64,
    pub cols: u64,
    pub format: DataFormat,
    /// Byte address in every bank.
    pub address: u64,
    /// The part of the value it holds, for constants stored split (see `NumericOptions::split`).
    #[serde(default)]
    pub part: Option<Part>,
}

impl DramTensor {
    pub fn row_tiles(&self) -> u64 {
        self.rows.div_ceil(32)
    }

    pub fn col_tiles(&self) -> u64 {
        self.cols.div_ceil(32)
    }

    pub fn tiles(&self) -> u64 {
        self.batch * self.row_tiles() * self.col_tiles()
    }

    pub fn page_bytes(&self) -> u64 {
        self.format.tile_bytes() as u64
    }
}

/// An index expression over loop variables and the core's runtime arguments (all `uint32_t` in the C++).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ix {
    Const(i64),
    /// Loop variable `vN`.
    Var(u8),
    /// Runtime argument `N` (`get_arg_val<uint32_t>(N)`).
    Arg(u8),
    Add(Box<Ix>, Box<Ix>),
    Mul(Box<Ix>, i64),
    /// Division and remainder by a positive constant.
    Div(Box<Ix>, i64),
    Mod(Box<Ix>, i64),
    Min(Box<Ix>, Box<Ix>),
}

impl Ix {
    pub fn plus(self, o: Ix) -> Ix {
        match (self, o) {
            (Ix::Const(0), x) | (x, Ix::Const(0)) => x,
            (Ix::Const(a), Ix::Const(b)) => Ix::Const(a + b),
            (a, b) => Ix::Add(Box::new(a), Box::new(b)),
        }
    }

    pub fn times(self, c: i64) -> Ix {
        match (self, c) {
            (_, 0) => Ix::Const(0),
            (x, 1) => x,
            (Ix::Const(a), c) => Ix::Const(a * c),
            (x, c) => Ix::Mul(Box::new(x), c),
        }
    }

    pub fn over(self, c: i64) -> Ix {
        match (self, c) {
            (x, 1) => x,
            (Ix::Const(a), c) => Ix::Const(a / c),
            (x, c) => Ix::Div(Box::new(x), c),
        }
    }

    pub fn modulo(self, c: i64) -> Ix {
        match (self, c) {
            (_, 1) => Ix::Const(0),
            (Ix::Const(a), c) => Ix::Const(a % c),
            (x, c) => Ix::Mod(Box::new(x), c),
        }
    }

    pub fn min(self, o: Ix) -> Ix {
        match (self, o) {
            (Ix::Const(a), Ix::Const(b)) => Ix::Const(a.min(b)),
            (a, b) => Ix::Min(Box::new(a), Box::new(b)),
        }
    }

    /// Value under loop variables `vars` and runtime arguments `args`; `None` on a missing variable or
    /// argument, a non-positive divisor or overflow.
    pub fn eval(&self, vars: &[i64], args: &[u32]) -> Option<i64> {
        Some(match self {
            Ix::Const(c) => *c,
            Ix::Var(v) => *vars.get(*v as usize)?,
            Ix::Arg(a) => *args.get(*a as usize)? as i64,
            Ix::Add(a, b) => a.eval(vars, args)?.checked_add(b.eval(vars, args)?)?,
            Ix::Mul(a, c) => a.eval(vars, args)?.checked_mul(*c)?,
            Ix::Div(a, c) if *c > 0 => a.eval(vars, args)?.div_euclid(*c),
            Ix::Mod(a, c) if *c > 0 => a.eval(vars, args)?.rem_euclid(*c),
            Ix::Min(a, b) => a.eval(vars, args)?.min(b.eval(vars, args)?),
            Ix::Div(..) | Ix::Mod(..) => return None,
        })
    }
}

/// FPU binary ops on two tiles from circular buffers (`add_tiles`, `sub_tiles`, `mul_tiles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FpuBinary {
    Add,
    Sub,
    Mul,
}

/// Broadcast of the second operand of an FPU binary op (`bcast.h`): its row 0 to every row (`Rows`), its
/// column 0 to every column (`Cols`), or its element (0, 0) everywhere (`Scalar`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bcast {
    None,
    Rows,
    Cols,
    Scalar,
}

/// SFPU ops of two Dst tiles, in place on the first (`add_binary_tile`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SfpuBinary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

/// SFPU ops of one Dst tile, in place. `param` ops take a scalar (`add_unary_tile(dst, bits)`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum SfpuUnary {
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
    /// `x + c`, `x * c`, `c - x`, `max(x, c)`, `min(x, c)`, `x ^ c`, leaky relu with slope `c`.
    AddScalar(f32),
    MulScalar(f32),
    RsubScalar(f32),
    MaxScalar(f32),
    MinScalar(f32),
    PowScalar(f32),
    LeakyRelu(f32),
    /// `x < 0 ? alpha * (exp(x) - 1) : x`.
    Elu(f32),
    /// `typecast_tile<Float32, Float16_b>`: rounds to bf16 (nearest, ties to even) with integer ops,
    /// kept in Dst as FP32 with the low 16 bits zero (the high part of a split-precision value).
    RoundBf16,
}

/// Reduction of a tile along a dimension with the scaler tile's value (`reduce_tile`): `Row` reduces
/// along each row (result in column 0), `Col` along each column (result in row 0), `Scalar` both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceDim {
    Row,
    Col,
    Scalar,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceKind {
    Sum,
    Max,
}

/// What a data-movement core writes into a tile of a circular buffer by itself (L1 stores, no NoC).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Fill {
    /// Every element `value`.
    Value(f32),
    /// The reduce scaler: `value` in row 0 of every face, zero elsewhere (what `reduce_tile` reads).
    Scaler(f32),
    /// `inside` in columns `0..cols`, `outside` in the rest (masks and padding biases of partial tiles).
    Cols { cols: u32, inside: f32, outside: f32 },
}

/// A 2-D convolution's input geometry, for gathering its im2col matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvGeom {
    /// Input channels, height, width.
    pub c: u64,
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

/// One op of a chain of data movements, from the source toward the result; each gives its result's dims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveStep {
    /// The same elements in row-major order under new dims.
    Reshape { dims: Vec<u64> },
    /// Result dim `i` is input dim `perm[i]`.
    Transpose { perm: Vec<u32>, dims: Vec<u64> },
    /// Result coordinate `i` is input coordinate `starts[i] + i * steps[i]`.
    Slice { starts: Vec<u64>, steps: Vec<u64>, dims: Vec<u64> },
    /// Zero padding: result coordinate `i` is input coordinate `i - begins[i]`; outside the input the
    /// element is zero.
    Pad { begins: Vec<u64>, dims: Vec<u64> },
}

impl MoveStep {
    pub fn dims(&self) -> &[u64] {
        match self {
            MoveStep::Reshape { dims }
            | MoveStep::Transpose { dims, .. }
            | MoveStep::Slice { dims, .. }
            | MoveStep::Pad { dims, .. } => dims,
        }
    }
}

/// Where each element of a moved tensor comes from: the source's dims and the chain of movements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveMap {
    pub src_dims: Vec<u64>,
    pub steps: Vec<MoveStep>,
}

impl MoveMap {
    /// The result's dims.
    pub fn dims(&self) -> &[u64] {
        self.steps.last().map_or(&self.src_dims, |s| s.dims())
    }

    /// The source's flat (row-major) index of the result's flat index `f`, walking the chain backwards:
    /// `Some(None)` for an element of padding, `None` if the map is inconsistent (a coordinate out of
    /// its dim).
    pub fn source(&self, f: u64) -> Option<Option<u64>> {
        let mut coords: Vec<u64> = unravel(f, self.dims())?;
        for (i, st) in self.steps.iter().enumerate().rev() {
            let in_dims: &[u64] = if i == 0 { &self.src_dims } else { self.steps[i - 1].dims() };
            coords = match st {
                MoveStep::Reshape { dims } => unravel(ravel(&coords, dims)?, in_dims)?,
                MoveStep::Transpose { perm, .. } => {
                    let mut c = vec![0; in_dims.len()];
                    for (o, &p) in perm.iter().enumerate() {
                        *c.get_mut(p as usize)? = *coords.get(o)?;
                    }
                    c
                }
                MoveStep::Slice { starts, steps, .. } => {
                    coords.iter().zip(starts).zip(steps).map(|((&x, &s), &k)| s + x * k).collect()
                }
                MoveStep::Pad { begins, .. } => {
                    let mut c = Vec::with_capacity(coords.len());
                    for ((&x, &b), &d) in coords.iter().zip(begins).zip(in_dims) {
                        match x.checked_sub(b) {
                            Some(y) if y < d => c.push(y),
                            _ => return Some(None),
                        }
                    }
                    c
                }
            };
        }
        ravel(&coords, &self.src_dims).map(Some)
    }
}

fn unravel(mut f: u64, dims: &[u64]) -> Option<Vec<u64>> {
    let mut c = vec![0; dims.len()];
    for i in (0..dims.len()).rev() {
        if dims[i] == 0 {
            return None;
        }
        c[i] = f % dims[i];
        f /= dims[i];
    }
    (f == 0).then_some(c)
}

fn ravel(c: &[u64], dims: &[u64]) -> Option<u64> {
    if c.len() != dims.len() {
        return None;
    }
    let mut f = 0u64;
    for (&x, &d) in c.iter().zip(dims) {
        if x >= d {
            return None;
        }
        f = f.checked_mul(d)?.checked_add(x)?;
    }
    Some(f)
}

/// One call of a kernel. Which ops a kernel may use depends on its kind (checked by `verify`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// `for (uint32_t vN = 0; vN < count; ++vN) { body }`.
    Loop {
        var: u8,
        count: Ix,
        body: Vec<Op>,
    },
    /// `if (cond != 0) { then } else { els }`: roles of cores that run the same kernel (a multicast
    /// sender and its receivers), chosen by runtime arguments.
    If {
        cond: Ix,
        then: Vec<Op>,
        els: Vec<Op>,
    },
    /// Circular-buffer protocol (any kernel): `cb_reserve_back`, `cb_push_back`, `cb_wait_front`, `cb_pop_front`.
    Reserve {
        cb: u8,
        n: u32,
    },
    Push {
        cb: u8,
        n: u32,
    },
    Wait {
        cb: u8,
        n: u32,
    },
    Pop {
        cb: u8,
        n: u32,
    },
    // --- data movement (reader and writer) ---
    /// `noc_async_read_tile(tile, tensor, get_write_ptr(cb) + slot * page)`.
    ReadTile {
        tensor: u8,
        tile: Ix,
        cb: u8,
        slot: Ix,
    },
    /// `noc_async_read_barrier()`.
    ReadBarrier,
    /// `noc_async_write_tile(tile, tensor, get_read_ptr(cb) + slot * page)`.
    WriteTile {
        tensor: u8,
        tile: Ix,
        cb: u8,
        slot: Ix,
    },
    /// `noc_async_write_barrier()`.
    WriteBarrier,
    /// `noc_async_writes_flushed()`: the writes issued so far have left the core. Needed between a
    /// tile multicast and the flag multicast after it: on Blackhole the two go through different
    /// command buffers and may leave out of order.
    WritesFlushed,
    /// `noc_semaphore_set(get_semaphore(sem), value)`: this core's semaphore `sem` (a word of its L1).
    SemSet {
        sem: u8,
        value: u32,
    },
    /// `noc_semaphore_wait(get_semaphore(sem), value)`: blocks until this core's semaphore equals `value`.
    SemWait {
        sem: u8,
        value: u32,
    },
    /// `noc_semaphore_inc(get_noc_addr(x, y, get_semaphore(sem)), 1)`: adds one to semaphore `sem` of the
    /// core at (`x`, `y`) (runtime arguments the host fills with NoC coordinates, see
    /// [`Program::noc_args`]; the plan holds logical coordinates).
    SemInc {
        sem: u8,
        x: Ix,
        y: Ix,
    },
    /// `noc_async_write_multicast(get_write_ptr(cb), get_noc_multicast_addr(x0, y0, x1, y1,
    /// get_write_ptr(cb)), n * page, dests)`: the `n` tiles reserved at the back of `cb` to the same
    /// pages of every core in the rectangle, which must not hold the sender and must have reserved them.
    McastTiles {
        cb: u8,
        n: u32,
        rect: Box<Rect>,
        dests: u32,
    },
    /// `noc_semaphore_set_multicast(get_semaphore(sem), get_noc_multicast_addr(x0, y0, x1, y1,
    /// get_semaphore(sem)), dests)`: this core's semaphore `sem` copied to the same semaphore of every
    /// core in the rectangle (ordered after the multicasts issued before it).
    McastSem {
        sem: u8,
        rect: Box<Rect>,
        dests: u32,
    },
    /// Fills the tile at the back of `cb` (`get_write_ptr(cb) + slot * page`).
    FillTile {
        cb: u8,
        slot: Ix,
        fill: Fill,
    },
    /// Sets every element of the tile outside the top-left `rows x cols` block to `value` (padding of a
    /// partial tile); on a reserved tile (reader) or a waited tile (writer).
    PadTile {
        cb: u8,
        slot: Ix,
        rows: Ix,
        cols: Ix,
        value: f32,
        front: bool,
    },
    /// Replicates row 0, column 0 or element (0, 0) of a reserved tile across the tile (L1 copies).
    BcastTile {
        cb: u8,
        slot: Ix,
        bcast: Bcast,
    },
    /// Gathers tile `tile` of a moved tensor (`map` applied to `tensor`, viewed `rows x cols` per batch
    /// entry) into a reserved tile: the source tiles it touches are read over the NoC through the
    /// `scratch` CB, then the RISC-V core copies the elements (`sovc::gather_tile`); padding is zero.
    GatherTile {
        tensor: u8,
        scratch: u8,
        tile: Ix,
        rows: u64,
        cols: u64,
        map: Box<MoveMap>,
        cb: u8,
        slot: Ix,
    },
    /// Gathers tile `tile` of an embedding lookup (result viewed `rows x cols` per batch entry) into a
    /// reserved tile: result element `f` (flat) is element `f % width` of row `ids[f / width]` of the
    /// `vocab x width` table `table` (a negative index counts from the end). The ids (integers stored
    /// as FP32) and the table rows are read through the scratch CBs (`sovc::embed_tile`).
    EmbedTile {
        table: u8,
        ids: u8,
        scratch: u8,
        ids_scratch: u8,
        tile: Ix,
        rows: u64,
        cols: u64,
        vocab: u64,
        width: u64,
        cb: u8,
        slot: Ix,
    },
    /// Gathers tile (`kt`, `nt`) of the im2col matrix of image `image` of `tensor` (rows: input channel,
    /// kernel row, kernel column; columns: output row, output column; zero outside the image) into a
    /// reserved tile: the source tiles it touches are read over the NoC, then the RISC-V core copies
    /// the elements (`sovc::im2col_tile` in the emitted `sovc_dm.h`), one source tile at a time through
    /// the `scratch` CB's L1. Waits for its own reads.
    Im2colTile {
        tensor: u8,
        scratch: u8,
        image: Ix,
        kt: Ix,
        nt: Ix,
        geom: Box<ConvGeom>,
        cb: u8,
        slot: Ix,
    },
    /// Gathers, for window tap `tap` (kernel row `tap / kw`, column `tap % kw`), the tile of channels
    /// `ct` (rows) by output positions `nt` (columns) of image `image`: the input element under that tap
    /// of each output position's window, `pad` outside the image (`sovc::tap_tile`). Depthwise
    /// convolutions and pooling multiply or combine these tiles tap by tap.
    TapTile {
        tensor: u8,
        scratch: u8,
        image: Ix,
        ct: Ix,
        nt: Ix,
        tap: u32,
        geom: Box<ConvGeom>,
        pad: f32,
        cb: u8,
        slot: Ix,
    },
    /// Writes, into a reserved tile of a concatenation along `axis` (result dims `dims`, viewed `rows x
    /// cols` per batch entry), the elements that come from `tensor`, whose slice of the axis starts at
    /// `start` and has `size` entries; other elements are left as they are (`sovc::concat_part_tile`).
    /// A concatenation's tile is a fill with zeros, then one of these per input.
    ConcatPartTile {
        tensor: u8,
        scratch: u8,
        tile: Ix,
        rows: u64,
        cols: u64,
        dims: Vec<u64>,
        axis: u32,
        start: u64,
        size: u64,
        cb: u8,
        slot: Ix,
    },
    /// Splits the FP32 tile reserved at the back of CB `from` into its bf16 high part (a reserved tile of
    /// `hi`) and low part (of `lo`), `x = hi + lo` to about 16 bits (`sovc::split_tile`: integer
    /// operations on the RISC-V core).
    SplitTile {
        from: u8,
        hi: u8,
        lo: u8,
        slot: Ix,
    },
    /// Fills a reserved tile with column `col` of the tile reserved at the back of CB `from`, copied to
    /// every column (`sovc::column_tile`): one weight per row, broadcast along the row.
    ColumnTile {
        from: u8,
        col: u32,
        cb: u8,
        slot: Ix,
    },
    // --- compute ---
    /// `tile_regs_acquire`, `tile_regs_commit`, `tile_regs_wait`, `tile_regs_release`.
    Acquire,
    Commit,
    WaitDst,
    Release,
    /// `copy_tile(cb, tile, dst)`: unpack a tile of the front of `cb` into Dst.
    CopyTile {
        cb: u8,
        tile: Ix,
        dst: u8,
    },
    /// `matmul_tiles(in0, in1, t0, t1, dst)`: Dst[dst] += in0[t0] @ in1[t1] (in1 transposed if asked).
    Matmul {
        in0: u8,
        in1: u8,
        t0: Ix,
        t1: Ix,
        dst: u8,
        transpose: bool,
    },
    /// `add_tiles` / `sub_tiles` / `mul_tiles` and their `_bcast_*` forms: Dst[dst] = a[ta] op b[tb].
    Binary {
        op: FpuBinary,
        bcast: Bcast,
        a: u8,
        b: u8,
        ta: Ix,
        tb: Ix,
        dst: u8,
    },
    /// SFPU op on Dst tiles: Dst[a] = Dst[a] op Dst[b].
    BinaryDst {
        op: SfpuBinary,
        a: u8,
        b: u8,
    },
    /// SFPU op in place on Dst[dst].
    Unary {
        op: SfpuUnary,
        dst: u8,
    },
    /// `copy_dest_values(to, from)`: Dst[to] = Dst[from].
    CopyDst {
        from: u8,
        to: u8,
    },
    /// `reduce_tile`: Dst[dst] (+)= reduce(cb[t]) scaled by scaler_cb[0]'s value.
    Reduce {
        kind: ReduceKind,
        dim: ReduceDim,
        cb: u8,
        t: Ix,
        scaler_cb: u8,
        dst: u8,
    },
    /// `transpose_wh_tile(cb, t, dst)`.
    Transpose {
        cb: u8,
        t: Ix,
        dst: u8,
    },
    /// `pack_tile<true>(dst, cb, slot)`: Dst[dst] to the tile `slot` past the back of `cb`.
    Pack {
        dst: u8,
        cb: u8,
        slot: Ix,
    },
}

/// A rectangle of cores, corners inclusive (`x0 <= x1`, `y0 <= y1`), as runtime arguments holding
/// coordinates: logical in the plan, NoC coordinates in the C++ (see [`Program::noc_args`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub x0: Ix,
    pub y0: Ix,
    pub x1: Ix,
    pub y1: Ix,
}

/// A circular buffer: `pages` tiles of `format` in every core's L1 at `address`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cb {
    pub index: u8,
    pub format: DataFormat,
    pub pages: u32,
    pub address: u64,
    /// What it holds, for the audit (`in0`, `partials`, `scaler`, ...).
    pub role: String,
}

impl Cb {
    pub fn bytes(&self) -> u64 {
        self.pages as u64 * self.format.tile_bytes() as u64
    }
}

/// A core and its runtime arguments (the same for its three kernels).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreWork {
    pub x: u32,
    pub y: u32,
    pub args: Vec<u32>,
}

/// One TT-Metalium program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    /// The kernel (plan section) it implements.
    pub kernel: usize,
    /// Template that built it (`matmul`, `eltwise`, `softmax`, ...).
    pub template: String,
    /// Plan tensors the kernels address (`tensor: N` in an op is `tensors[N]`).
    pub tensors: Vec<u32>,
    pub cbs: Vec<Cb>,
    pub reader: Vec<Op>,
    pub compute: Vec<Op>,
    pub writer: Vec<Op>,
    pub cores: Vec<CoreWork>,
    pub fidelity: MathFidelity,
    pub fp32_dest_acc: bool,
    /// FP32 circular buffers `copy_tile` moves into Dst unchanged (`UnpackToDestMode::UnpackToDestFp32`
    /// in the compute config); from any other FP32 buffer it passes SrcA, which keeps TF32.
    #[serde(default)]
    pub unpack_to_dest_fp32: Vec<u8>,
    /// Why this fidelity and these formats, for the audit.
    pub notes: Vec<String>,
    /// Initial values of the program's semaphores (`CreateSemaphore` on every core of the program;
    /// semaphore `i` is `get_semaphore(i)`).
    #[serde(default)]
    pub semaphores: Vec<u32>,
    /// Runtime arguments that hold core coordinates, with their axis: logical coordinates in the plan
    /// (what the simulator uses), translated by the host program to NoC coordinates
    /// (`worker_core_from_logical_core`) before they reach the kernels.
    #[serde(default)]
    pub noc_args: Vec<(u8, Axis)>,
}

/// The axis of a core coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Axis {
    X,
    Y,
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    Device(Box<Program>),
    /// Graph nodes no Tensix program covers yet: the host reads their inputs back, runs them and writes
    /// the results (as TT-NN falls back to the host). `reason` says why.
    Host {
        kernel: usize,
        nodes: Vec<usize>,
        reason: String,
    },
}

/// The whole plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub device: DeviceDesc,
    pub numerics: NumericOptions,
    /// Every graph value that lives in device DRAM (inputs, weights, values crossing steps, outputs).
    pub tensors: Vec<DramTensor>,
    /// DRAM bytes used per bank.
    pub dram_bytes_per_bank: u64,
    pub steps: Vec<Step>,
}
