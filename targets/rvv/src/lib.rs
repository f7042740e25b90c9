//! sovc-target-rvv: the `riscv64-rvv` target. Kernels of the kernel IR ([`sovc_ir::kernel`]) as RISC-V
//! machine code with the vector extension (RVV 1.0), vector-length agnostic ([`codegen`]), encoded by
//! sovc's own assembler ([`asm`]), which also writes the GNU assembler text the tests check the bytes
//! against.

pub mod asm;
pub mod codegen;

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
