//! The cpu device: a thread pool, the matmul microkernels, executable memory for the machine code a
//! `cpu` artifact carries, and the executor of its program.

pub mod exec;
pub mod gemm;
pub mod jit;
pub mod math;
pub mod pool;
pub mod program;

pub use exec::CpuModel;
