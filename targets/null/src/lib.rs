//! The `null` target: reads the kernel IR, checks it, and emits no code. Its artifact runs on the
//! runtime's reference device. It is the skeleton a new target starts from:
//!
//! 1. take the model's kernels (`sovc_ir::kernel::KernelOp`, one per fused group; groups that did not
//!    lower stay on the reference path and never reach a target);
//! 2. check what the target can do (here: nothing beyond the verifier) and lower each kernel;
//! 3. return the code and a per-kernel description for the artifact and the audit.
//!
//! See ARCHITECTURE.md ("Adding a target") for where the code goes in the artifact and which runtime
//! device runs it.

use sovc_ir::kernel::{verify_op, KernelOp};

/// What a target gives back for each kernel: nothing, for `null`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NullCode {
    pub kernels: usize,
}

/// Verifies every kernel and emits nothing.
pub fn compile(kernels: &[KernelOp]) -> Result<NullCode, String> {
    for k in kernels {
        verify_op(k).map_err(|e| e.join("; "))?;
    }
    Ok(NullCode { kernels: kernels.len() })
}
