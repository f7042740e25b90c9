//! sovc-runtime: what a deployed model needs and nothing of the compiler: the `.sovc` artifact format
//! (it owns the schema; the compiler writes through [`artifact::ArtifactBuilder`]), loading and verifying
//! artifacts, sessions that run them on a device, and `.npy` tensor I/O.
//!
//! Architecture Invariant: this crate never depends on `sovc-compiler`, `egg` or any code generator
//! (tested by `tests/tests/artifact.rs`).

pub mod artifact;
pub mod cpu;
pub mod cuda;
pub mod metal;
#[cfg(target_os = "macos")]
pub mod metal_device;
pub mod npy;
pub mod rvv;
pub mod session;
pub mod tensix;
pub mod vulkan;

pub use artifact::{Artifact, ArtifactBuilder, ArtifactError, Manifest, SectionKind};
pub use npy::{file_safe, npy_bytes, parse_npy, read_npy, read_npy_dir, write_npy, NpyError};
pub use session::{Device, Session};

/// Errors of loading and running artifacts.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{path}: {source}")]
    Artifact { path: String, source: ArtifactError },
    #[error("artifact: {0}")]
    Malformed(String),
    #[error("{0}")]
    Device(String),
    #[error(transparent)]
    Run(sovc_ir::IrError),
}
