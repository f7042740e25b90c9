//! The cpu target: every loop kernel of the kernel IR (including gemm epilogues) compiled to host
//! machine code with Cranelift. Each kernel becomes one position-independent function
//! `extern "C" fn(bufs: *const *mut f32, lo: i64, hi: i64)` that runs iterations `lo..hi` of its parallel
//! dimension; the runtime's thread pool splits that range across cores. Innermost loops and reductions
//! whose accesses are unit-stride or invariant in the loop variable run four lanes at a time (f32x4, the
//! widest vector Cranelift has), with a scalar tail; transcendental functions are polynomial
//! approximations written here in Cranelift IR (exp, erf, tanh, sigmoid). Contractions and attention run
//! on the runtime's hand-written microkernels (see `sovc_runtime::cpu::gemm` and ARCHITECTURE.md).

mod codegen;

pub use codegen::{compile, CodeFunction, CpuCode, CpuTarget};
