//! sovc-runtime: what a deployed model needs and nothing of the compiler. Today it reads and writes
//! tensors (`.npy`); the artifact format and devices arrive with the kernel IR and targets.
//!
//! Architecture Invariant: this crate never depends on `sovc-compiler`, `egg` or any code generator.

pub mod npy;

pub use npy::{npy_bytes, parse_npy, read_npy, write_npy, NpyError};
