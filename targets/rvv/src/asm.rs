//! A RISC-V assembler for the instructions sovc's RVV code uses: RV64I, M, F (single precision) and the
//! vector extension V 1.0 (SEW 32). Every instruction is encoded here (no external assembler) and also
//! written as GNU assembler text into a listing, so the tests can assemble the listing with
//! `riscv64-linux-gnu-as` and compare the bytes, and the audit can show the code. No compressed
//! instructions: every instruction is 4 bytes.

use std::fmt::Write as _;

/// An integer register `x0..x31`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X(pub u8);
/// A single-precision register `f0..f31`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct F(pub u8);
/// A vector register `v0..v31`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V(pub u8);

pub const ZERO: X = X(0);
pub const RA: X = X(1);
pub const SP: X = X(2);
/// The first argument: the array of buffer pointers.
pub const A0: X = X(10);

const XNAMES: [&str; 32] = [
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "s2",
    "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6",
];

impl std::fmt::Display for X {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(XNAMES[self.0 as usize])
    }
}
impl std::fmt::Display for F {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "f{}", self.0)
    }
}
impl std::fmt::Display for V {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A branch target, placed with [`Asm::bind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Vector register group multiplier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lmul {
    M1,
    M2,
    M4,
    M8,
}

impl Lmul {
    fn bits(self) -> u32 {
        match self {
            Lmul::M1 => 0,
            Lmul::M2 => 1,
            Lmul::M4 => 2,
            Lmul::M8 => 3,
        }
    }
    fn name(self) -> &'static str {
        ["m1", "m2", "m4", "m8"][self.bits() as usize]
    }
}

/// Vector floating-point operations with a `.vv` and a `.vf` form: (funct6, mnemonic stem).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfOp {
    Add,
    Sub,
    Min,
    Max,
    Sgnj,
    Sgnjn,
    Sgnjx,
    Div,
    Mul,
    /// `vd = vs1·vs2 + vd` (`.vf`: `f[rs1]·vs2 + vd`).
    Macc,
    /// `.vf` only: `f[rs1] / vs2`.
    Rdiv,
    /// `.vf` only: `f[rs1] - vs2`.
    Rsub,
}

impl VfOp {
    fn funct6(self) -> u32 {
        match self {
            VfOp::Add => 0b000000,
            VfOp::Sub => 0b000010,
            VfOp::Min => 0b000100,
            VfOp::Max => 0b000110,
            VfOp::Sgnj => 0b001000,
            VfOp::Sgnjn => 0b001001,
            VfOp::Sgnjx => 0b001010,
            VfOp::Div => 0b100000,
            VfOp::Rdiv => 0b100001,
            VfOp::Mul => 0b100100,
            VfOp::Rsub => 0b100111,
            VfOp::Macc => 0b101100,
        }
    }
    fn name(self) -> &'static str {
        match self {
            VfOp::Add => "vfadd",
            VfOp::Sub => "vfsub",
            VfOp::Min => "vfmin",
            VfOp::Max => "vfmax",
            VfOp::Sgnj => "vfsgnj",
            VfOp::Sgnjn => "vfsgnjn",
            VfOp::Sgnjx => "vfsgnjx",
            VfOp::Div => "vfdiv",
            VfOp::Rdiv => "vfrdiv",
            VfOp::Mul => "vfmul",
            VfOp::Rsub => "vfrsub",
            VfOp::Macc => "vfmacc",
        }
    }
}

/// Vector integer operations with `.vv`, `.vx` (and for some `.vi`) forms, on 32-bit elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViOp {
    Add,
    /// Signed `<` into a mask.
    Mslt,
    Sll,
    /// Signed division (OPM).
    Div,
    /// Signed remainder (OPM).
    Rem,
    /// Multiply, low half (OPM).
    Mul,
}

impl ViOp {
    fn funct6(self) -> u32 {
        match self {
            ViOp::Add => 0b000000,
            ViOp::Mslt => 0b011011,
            ViOp::Sll => 0b100101,
            ViOp::Div => 0b100001,
            ViOp::Rem => 0b100011,
            ViOp::Mul => 0b100101,
        }
    }
    /// Whether it is in the OPM (multiply/divide) space.
    fn opm(self) -> bool {
        matches!(self, ViOp::Div | ViOp::Rem | ViOp::Mul)
    }
    fn name(self) -> &'static str {
        match self {
            ViOp::Add => "vadd",
            ViOp::Mslt => "vmslt",
            ViOp::Sll => "vsll",
            ViOp::Div => "vdiv",
            ViOp::Rem => "vrem",
            ViOp::Mul => "vmul",
        }
    }
}

/// Machine code being written: 32-bit words, their assembler text, labels and branch fixups.
#[derive(Default)]
pub struct Asm {
    pub words: Vec<u32>,
    /// GNU assembler text, one instruction or label per line.
    pub listing: String,
    labels: Vec<Option<usize>>,
    /// (word index, label, is a jal).
    fixups: Vec<(usize, Label, bool)>,
    /// The callee-saved registers the next function saves in its prologue (none: a first pass that
    /// only finds out which it uses, into `saved_used`).
    pub saved: Option<Vec<u8>>,
    pub saved_used: std::collections::BTreeSet<u8>,
}

const OP_V: u32 = 0x57;

fn r(funct7: u32, rs2: u32, rs1: u32, funct3: u32, rd: u32, op: u32) -> u32 {
    (funct7 << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | op
}

fn i(imm: i32, rs1: u32, funct3: u32, rd: u32, op: u32) -> u32 {
    (((imm as u32) & 0xFFF) << 20) | (rs1 << 15) | (funct3 << 12) | (rd << 7) | op
}

fn s(imm: i32, rs2: u32, rs1: u32, funct3: u32, op: u32) -> u32 {
    let imm = imm as u32;
    (((imm >> 5) & 0x7F) << 25) | (rs2 << 20) | (rs1 << 15) | (funct3 << 12) | ((imm & 0x1F) << 7) | op
}

fn fits12(v: i64) -> bool {
    (-2048..2048).contains(&v)
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.words.len() * 4
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    fn emit(&mut self, w: u32, text: std::fmt::Arguments) {
        self.words.push(w);
        let _ = writeln!(self.listing, "    {text}");
    }

    /// A directive or comment line in the listing (no code).
    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.listing, "    # {text}");
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.words.len());
        let _ = writeln!(self.listing, ".L{}:", l.0);
    }

    /// Resolves every branch; the code as little-endian bytes.
    pub fn finish(&mut self) -> Result<Vec<u8>, String> {
        for &(at, l, jal) in &self.fixups {
            let to = self.labels[l.0].ok_or_else(|| format!("label .L{} is never placed", l.0))?;
            let off = (to as i64 - at as i64) * 4;
            let w = &mut self.words[at];
            if jal {
                if !(-(1 << 20)..(1 << 20)).contains(&off) {
                    return Err("a jump is out of range".into());
                }
                let o = off as u32;
                *w |= (((o >> 20) & 1) << 31)
                    | (((o >> 1) & 0x3FF) << 21)
                    | (((o >> 11) & 1) << 20)
                    | (((o >> 12) & 0xFF) << 12);
            } else {
                if !(-4096..4096).contains(&off) {
                    return Err("a branch is out of range (a kernel's loop body over 4 KiB)".into());
                }
                let o = off as u32;
                *w |= (((o >> 12) & 1) << 31)
                    | (((o >> 5) & 0x3F) << 25)
                    | (((o >> 1) & 0xF) << 8)
                    | (((o >> 11) & 1) << 7);
            }
        }
        Ok(self.words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    // ---- RV64I / M ----

    pub fn addi(&mut self, rd: X, rs1: X, imm: i32) {
        debug_assert!(fits12(imm as i64));
        self.emit(i(imm, rs1.0 as u32, 0, rd.0 as u32, 0x13), format_args!("addi {rd}, {rs1}, {imm}"));
    }

    pub fn mv(&mut self, rd: X, rs: X) {
        self.addi(rd, rs, 0);
    }

    /// `rd = v` for any `v` that fits in 32 signed bits (`lui` + `addiw`, or one `addi`).
    pub fn li(&mut self, rd: X, v: i64) -> Result<(), String> {
        if fits12(v) {
            self.addi(rd, ZERO, v as i32);
            return Ok(());
        }
        if v < i32::MIN as i64 || v > i32::MAX as i64 {
            return Err(format!("the constant {v} does not fit in 32 bits"));
        }
        let lo = ((v as i32) << 20) >> 20;
        let hi = ((v as i32).wrapping_sub(lo) as u32) >> 12;
        self.emit((hi << 12) | ((rd.0 as u32) << 7) | 0x37, format_args!("lui {rd}, {hi}"));
        self.emit(i(lo, rd.0 as u32, 0, rd.0 as u32, 0x1B), format_args!("addiw {rd}, {rd}, {lo}"));
        Ok(())
    }

    fn rop(&mut self, funct7: u32, funct3: u32, name: &str, rd: X, a: X, b: X) {
        self.emit(r(funct7, b.0 as u32, a.0 as u32, funct3, rd.0 as u32, 0x33), format_args!("{name} {rd}, {a}, {b}"));
    }
    pub fn add(&mut self, rd: X, a: X, b: X) {
        self.rop(0, 0, "add", rd, a, b);
    }
    pub fn sub(&mut self, rd: X, a: X, b: X) {
        self.rop(0x20, 0, "sub", rd, a, b);
    }
    pub fn mul(&mut self, rd: X, a: X, b: X) {
        self.rop(1, 0, "mul", rd, a, b);
    }
    pub fn slli(&mut self, rd: X, rs1: X, sh: u32) {
        self.emit(i(sh as i32 & 0x3F, rs1.0 as u32, 1, rd.0 as u32, 0x13), format_args!("slli {rd}, {rs1}, {sh}"));
    }
    pub fn ld(&mut self, rd: X, base: X, off: i32) {
        self.emit(i(off, base.0 as u32, 3, rd.0 as u32, 0x03), format_args!("ld {rd}, {off}({base})"));
    }
    pub fn sd(&mut self, rs: X, base: X, off: i32) {
        self.emit(s(off, rs.0 as u32, base.0 as u32, 3, 0x23), format_args!("sd {rs}, {off}({base})"));
    }

    fn branch(&mut self, funct3: u32, name: &str, a: X, b: X, to: Label) {
        self.fixups.push((self.words.len(), to, false));
        self.emit(r(0, b.0 as u32, a.0 as u32, funct3, 0, 0x63), format_args!("{name} {a}, {b}, .L{}", to.0));
    }
    pub fn blt(&mut self, a: X, b: X, to: Label) {
        self.branch(4, "blt", a, b, to);
    }
    pub fn bge(&mut self, a: X, b: X, to: Label) {
        self.branch(5, "bge", a, b, to);
    }
    /// `if a < b goto to` for a label already placed: one `blt` when it is in range, else a `bge` over a
    /// `jal`.
    pub fn blt_back(&mut self, a: X, b: X, to: Label) {
        let at = self.labels[to.0].expect("a placed label");
        if (self.words.len() - at) * 4 < 4000 {
            self.blt(a, b, to);
        } else {
            let skip = self.label();
            self.bge(a, b, skip);
            self.j(to);
            self.bind(skip);
        }
    }

    pub fn j(&mut self, to: Label) {
        self.fixups.push((self.words.len(), to, true));
        self.emit(0x6F, format_args!("jal zero, .L{}", to.0));
    }
    pub fn ret(&mut self) {
        self.emit(i(0, RA.0 as u32, 0, 0, 0x67), format_args!("jalr zero, 0(ra)"));
    }

    // ---- F ----

    pub fn flw(&mut self, fd: F, base: X, off: i32) {
        self.emit(i(off, base.0 as u32, 2, fd.0 as u32, 0x07), format_args!("flw {fd}, {off}({base})"));
    }
    pub fn fsw(&mut self, fs: F, base: X, off: i32) {
        self.emit(s(off, fs.0 as u32, base.0 as u32, 2, 0x27), format_args!("fsw {fs}, {off}({base})"));
    }
    /// `fd = bits of rs`.
    pub fn fmv_w_x(&mut self, fd: F, rs: X) {
        self.emit(r(0x78, 0, rs.0 as u32, 0, fd.0 as u32, 0x53), format_args!("fmv.w.x {fd}, {rs}"));
    }
    /// `fd = c` through `tmp`.
    pub fn fconst(&mut self, fd: F, c: f32, tmp: X) -> Result<(), String> {
        self.li(tmp, c.to_bits() as i32 as i64)?;
        self.fmv_w_x(fd, tmp);
        Ok(())
    }

    // ---- V ----

    /// `vsetvli rd, avl, e32, lmul, ta, ma`.
    pub fn vsetvli(&mut self, rd: X, avl: X, lmul: Lmul) {
        let vtype = (1 << 7) | (1 << 6) | (0b010 << 3) | lmul.bits();
        self.emit(
            (vtype << 20) | ((avl.0 as u32) << 15) | (0b111 << 12) | ((rd.0 as u32) << 7) | OP_V,
            format_args!("vsetvli {rd}, {avl}, e32, {}, ta, ma", lmul.name()),
        );
    }

    fn mask(masked: bool) -> (u32, &'static str) {
        if masked {
            (0, ", v0.t")
        } else {
            (1, "")
        }
    }

    /// `vle32.v vd, (base)` (lanes off in v0 not loaded when `masked`).
    pub fn vle32(&mut self, vd: V, base: X, masked: bool) {
        let (vm, m) = Self::mask(masked);
        self.emit(
            (vm << 25) | ((base.0 as u32) << 15) | (0b110 << 12) | ((vd.0 as u32) << 7) | 0x07,
            format_args!("vle32.v {vd}, ({base}){m}"),
        );
    }
    /// `vlse32.v vd, (base), stride` (bytes).
    pub fn vlse32(&mut self, vd: V, base: X, stride: X, masked: bool) {
        let (vm, m) = Self::mask(masked);
        self.emit(
            (0b10 << 26)
                | (vm << 25)
                | ((stride.0 as u32) << 20)
                | ((base.0 as u32) << 15)
                | (0b110 << 12)
                | ((vd.0 as u32) << 7)
                | 0x07,
            format_args!("vlse32.v {vd}, ({base}), {stride}{m}"),
        );
    }
    /// `vluxei32.v vd, (base), offsets` (byte offsets in `offsets`).
    pub fn vluxei32(&mut self, vd: V, base: X, offsets: V, masked: bool) {
        let (vm, m) = Self::mask(masked);
        self.emit(
            (0b01 << 26)
                | (vm << 25)
                | ((offsets.0 as u32) << 20)
                | ((base.0 as u32) << 15)
                | (0b110 << 12)
                | ((vd.0 as u32) << 7)
                | 0x07,
            format_args!("vluxei32.v {vd}, ({base}), {offsets}{m}"),
        );
    }
    pub fn vse32(&mut self, vs: V, base: X, masked: bool) {
        let (vm, m) = Self::mask(masked);
        self.emit(
            (vm << 25) | ((base.0 as u32) << 15) | (0b110 << 12) | ((vs.0 as u32) << 7) | 0x27,
            format_args!("vse32.v {vs}, ({base}){m}"),
        );
    }
    pub fn vsse32(&mut self, vs: V, base: X, stride: X, masked: bool) {
        let (vm, m) = Self::mask(masked);
        self.emit(
            (0b10 << 26)
                | (vm << 25)
                | ((stride.0 as u32) << 20)
                | ((base.0 as u32) << 15)
                | (0b110 << 12)
                | ((vs.0 as u32) << 7)
                | 0x27,
            format_args!("vsse32.v {vs}, ({base}), {stride}{m}"),
        );
    }

    fn opv(&mut self, funct6: u32, vm: u32, vs2: u32, vs1: u32, funct3: u32, vd: u32, text: std::fmt::Arguments) {
        self.emit((funct6 << 26) | (vm << 25) | (vs2 << 20) | (vs1 << 15) | (funct3 << 12) | (vd << 7) | OP_V, text);
    }

    /// `op.vv vd, vs2, vs1` (for `Macc`: `vfmacc.vv vd, vs1, vs2`).
    pub fn vf_vv(&mut self, op: VfOp, vd: V, vs2: V, vs1: V, masked: bool) {
        let (vm, m) = Self::mask(masked);
        let text = if op == VfOp::Macc {
            format!("{}.vv {vd}, {vs1}, {vs2}{m}", op.name())
        } else {
            format!("{}.vv {vd}, {vs2}, {vs1}{m}", op.name())
        };
        self.opv(op.funct6(), vm, vs2.0 as u32, vs1.0 as u32, 0b001, vd.0 as u32, format_args!("{text}"));
    }
    /// `op.vf vd, vs2, rs1` (for `Macc`: `vfmacc.vf vd, rs1, vs2`).
    pub fn vf_vf(&mut self, op: VfOp, vd: V, vs2: V, rs1: F, masked: bool) {
        let (vm, m) = Self::mask(masked);
        let text = if op == VfOp::Macc {
            format!("{}.vf {vd}, {rs1}, {vs2}{m}", op.name())
        } else {
            format!("{}.vf {vd}, {vs2}, {rs1}{m}", op.name())
        };
        self.opv(op.funct6(), vm, vs2.0 as u32, rs1.0 as u32, 0b101, vd.0 as u32, format_args!("{text}"));
    }
    pub fn vfsqrt(&mut self, vd: V, vs2: V) {
        self.opv(0b010011, 1, vs2.0 as u32, 0, 0b001, vd.0 as u32, format_args!("vfsqrt.v {vd}, {vs2}"));
    }
    /// Float to signed integer, rounding as `frm` says (round to nearest even by default).
    pub fn vfcvt_x_f(&mut self, vd: V, vs2: V) {
        self.opv(0b010010, 1, vs2.0 as u32, 0b00001, 0b001, vd.0 as u32, format_args!("vfcvt.x.f.v {vd}, {vs2}"));
    }
    pub fn vfcvt_f_x(&mut self, vd: V, vs2: V) {
        self.opv(0b010010, 1, vs2.0 as u32, 0b00011, 0b001, vd.0 as u32, format_args!("vfcvt.f.x.v {vd}, {vs2}"));
    }
    /// Every lane of `vd` = `f[rs1]`.
    pub fn vfmv_v_f(&mut self, vd: V, rs1: F) {
        self.opv(0b010111, 1, 0, rs1.0 as u32, 0b101, vd.0 as u32, format_args!("vfmv.v.f {vd}, {rs1}"));
    }
    /// `vd = v0 ? f[rs1] : vs2`.
    pub fn vfmerge_vfm(&mut self, vd: V, vs2: V, rs1: F) {
        self.opv(
            0b010111,
            0,
            vs2.0 as u32,
            rs1.0 as u32,
            0b101,
            vd.0 as u32,
            format_args!("vfmerge.vfm {vd}, {vs2}, {rs1}, v0"),
        );
    }
    /// `vd = vs1` (whole value).
    pub fn vmv_v_v(&mut self, vd: V, vs1: V) {
        self.opv(0b010111, 1, 0, vs1.0 as u32, 0b000, vd.0 as u32, format_args!("vmv.v.v {vd}, {vs1}"));
    }
    /// Lane indices `0, 1, ...`.
    pub fn vid(&mut self, vd: V) {
        self.opv(0b010100, 1, 0, 0b10001, 0b010, vd.0 as u32, format_args!("vid.v {vd}"));
    }
    pub fn vi_vv(&mut self, op: ViOp, vd: V, vs2: V, vs1: V) {
        let f3 = if op.opm() { 0b010 } else { 0b000 };
        self.opv(
            op.funct6(),
            1,
            vs2.0 as u32,
            vs1.0 as u32,
            f3,
            vd.0 as u32,
            format_args!("{}.vv {vd}, {vs2}, {vs1}", op.name()),
        );
    }
    pub fn vi_vx(&mut self, op: ViOp, vd: V, vs2: V, rs1: X) {
        let f3 = if op.opm() { 0b110 } else { 0b100 };
        self.opv(
            op.funct6(),
            1,
            vs2.0 as u32,
            rs1.0 as u32,
            f3,
            vd.0 as u32,
            format_args!("{}.vx {vd}, {vs2}, {rs1}", op.name()),
        );
    }
    /// `op.vi vd, vs2, imm` (`imm` in -16..16, or 0..32 for shifts).
    pub fn vi_vi(&mut self, op: ViOp, vd: V, vs2: V, imm: i32) {
        debug_assert!(!op.opm() && if op == ViOp::Sll { (0..32).contains(&imm) } else { (-16..16).contains(&imm) });
        self.opv(
            op.funct6(),
            1,
            vs2.0 as u32,
            (imm as u32) & 0x1F,
            0b011,
            vd.0 as u32,
            format_args!("{}.vi {vd}, {vs2}, {imm}", op.name()),
        );
    }
    /// Mask `vd = a & b`.
    pub fn vmand(&mut self, vd: V, a: V, b: V) {
        self.opv(0b011001, 1, a.0 as u32, b.0 as u32, 0b010, vd.0 as u32, format_args!("vmand.mm {vd}, {a}, {b}"));
    }
    /// Mask `vd = !(a & b)` (`vmnand.mm vd, a, a` is `!a`).
    pub fn vmnand(&mut self, vd: V, a: V, b: V) {
        self.opv(0b011101, 1, a.0 as u32, b.0 as u32, 0b010, vd.0 as u32, format_args!("vmnand.mm {vd}, {a}, {b}"));
    }
}
