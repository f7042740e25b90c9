//! The plan of a `cuda` artifact (its `cuda.plan` section, JSON): the architecture the PTX was written
//! for, every kernel group's PTX module, and the launches that run the model in order. A launch names
//! an `.entry` of a module, the graph values its buffer parameters point at (in parameter order), and
//! its thread count (1-D grid of `block`-thread blocks). Groups no PTX covers are reference steps that
//! the host runs on the interpreter. Only the plan lives here for now: the devices that execute it (a
//! PTX emulator for CI, the CUDA driver on a GPU) are the next step of the target.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CudaPlan {
    /// `sm_80` or `sm_90`.
    pub arch: String,
    /// Threads per block of every launch.
    pub block: u64,
    /// One PTX module per kernel group that has one.
    pub modules: Vec<Module>,
    pub steps: Vec<CudaStep>,
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
