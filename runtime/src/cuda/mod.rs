//! The plan of a `cuda` artifact (its `cuda.plan` section, JSON): the architecture the PTX was written
//! for, every kernel group's PTX module, and the launches that run the model in order. A launch names
//! an `.entry` of a module, the graph values its buffer parameters point at (in parameter order), and
//! its thread count (1-D grid of `block`-thread blocks). Groups no PTX covers are reference steps that
//! the host runs on the interpreter. [`emu`] executes the PTX (`--device ptx-emu`); [`CudaModel`] runs
//! it on a GPU through the driver API found at run time (`--device cuda`).

use serde::{Deserialize, Serialize};

mod driver;
pub mod emu;
mod model;

pub use driver::CudaModel;
pub use model::{EmuReport, PtxModel};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CudaPlan {
    /// `sm_80` or `sm_90`.
    pub arch: String,
    /// Precision of contractions: `fp32`, or `bf16` / `f16` operands on the tensor cores.
    #[serde(default = "fp32")]
    pub precision: String,
    /// Threads per block of every launch.
    pub block: u64,
    /// One PTX module per kernel group that has one.
    pub modules: Vec<Module>,
    pub steps: Vec<CudaStep>,
}

fn fp32() -> String {
    "fp32".into()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// The plan kernel (group) it implements.
    pub kernel: usize,
    pub name: String,
    pub ptx: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CudaStep {
    Launch { kernel: usize, module: usize, entry: String, bufs: Vec<u32>, threads: u64 },
    Reference { kernel: usize, nodes: Vec<usize>, reason: String },
}
