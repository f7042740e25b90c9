//! sovc-target-cuda: the `cuda` target. Kernels of the kernel IR ([`sovc_ir::kernel`]) printed as PTX
//! text, one `.entry` per kernel launch, for `sm_80` (the default) and `sm_90` ([`ptx`]; contractions in
//! [`gemm`], attention in [`attention`]). No CUDA toolkit is needed to compile: sovc writes the PTX
//! itself; NVIDIA's `ptxas` (installed by `scripts/setup-test-deps.sh` from PyPI) validates it in the
//! tests.

pub mod attention;
pub mod gemm;
pub mod ptx;

pub use ptx::{emit_op, module, Entry, Precision, ARCHS};
