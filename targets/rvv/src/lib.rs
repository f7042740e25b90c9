//! sovc-target-rvv: the `riscv64-rvv` target. Kernels of the kernel IR ([`sovc_ir::kernel`]) as RISC-V
//! machine code with the vector extension (RVV 1.0), vector-length agnostic ([`codegen`]), encoded by
//! sovc's own assembler ([`asm`]), which also writes the GNU assembler text the tests check the bytes
//! against.

pub mod asm;
mod attention;
pub mod codegen;
mod gemm;

pub use codegen::{emit_op, Function};

/// Per kernel group: its code (position independent: branches are relative and stay inside it), its
/// functions (offsets into that code) and its assembler listing.
pub struct Module {
    pub code: Vec<u8>,
    pub functions: Vec<Function>,
    pub listing: String,
}

/// The module of one kernel group's kernels (`(name, op)` in launch order).
pub fn module(ops: &[(String, &sovc_ir::kernel::KernelOp)]) -> Result<Module, String> {
    let mut asm = asm::Asm::new();
    let mut functions = Vec::new();
    for (name, op) in ops {
        functions.extend(emit_op(&mut asm, op, name)?);
    }
    let code = asm.finish()?;
    Ok(Module { code, functions, listing: asm.listing })
}

/// The static instruction mix of RVV code (the audit's per-function summary).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mix {
    pub total: usize,
    pub vsetvli: usize,
    /// Vector loads: unit-stride, strided, indexed.
    pub loads: [usize; 3],
    /// Vector stores: unit-stride, strided, indexed.
    pub stores: [usize; 3],
    pub vfmacc: usize,
    /// Other vector arithmetic, moves, compares and reductions.
    pub vector_other: usize,
    pub scalar: usize,
    /// The LMULs the `vsetvli`s select (1, 2, 4, 8).
    pub lmuls: Vec<u32>,
}

impl Mix {
    /// Classifies each 32-bit instruction of `code`.
    pub fn of(code: &[u8]) -> Mix {
        let mut m = Mix::default();
        for w in code.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])) {
            m.total += 1;
            let (op, funct3, funct6) = (w & 0x7F, (w >> 12) & 7, w >> 26);
            let vector_width = matches!(funct3, 0 | 5 | 6 | 7);
            let mop = ((w >> 26) & 3) as usize;
            let kind = [0, 2, 1, 2][mop];
            match op {
                0x57 if funct3 == 7 => {
                    m.vsetvli += 1;
                    let l = 1 << ((w >> 20) & 3);
                    if !m.lmuls.contains(&l) {
                        m.lmuls.push(l);
                    }
                }
                0x57 if matches!(funct3, 1 | 5) && funct6 == 0b101100 => m.vfmacc += 1,
                0x57 => m.vector_other += 1,
                0x07 if vector_width => m.loads[kind] += 1,
                0x27 if vector_width => m.stores[kind] += 1,
                _ => m.scalar += 1,
            }
        }
        m.lmuls.sort();
        m
    }

    /// One line: `N instructions: …`.
    pub fn summary(&self) -> String {
        let lm: Vec<String> = self.lmuls.iter().map(|l| format!("m{l}")).collect();
        format!(
            "{} instructions: {} vsetvli (LMUL {}), {} vector loads ({} unit-stride, {} strided, {} indexed), {} vector stores ({} unit-stride, {} strided), {} vfmacc, {} other vector, {} scalar",
            self.total,
            self.vsetvli,
            if lm.is_empty() { "-".into() } else { lm.join(", ") },
            self.loads.iter().sum::<usize>(),
            self.loads[0],
            self.loads[1],
            self.loads[2],
            self.stores.iter().sum::<usize>(),
            self.stores[0],
            self.stores[1],
            self.vfmacc,
            self.vector_other,
            self.scalar
        )
    }
}
