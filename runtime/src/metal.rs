//! The plan of a `metal` artifact (its `metal.plan` section, JSON; the SPIR-V words in `metal.spv`).
//! A module is one compute shader: its Metal Shading Language (for Apple GPUs), its WGSL source (the
//! form sovc writes and naga translates) and its SPIR-V twin (words `spirv_offset..+spirv_len` of
//! `metal.spv`, little-endian); a launch dispatches a module over graph values (storage buffer `i` is
//! the `i`-th value) with `threads` threads in workgroups of `workgroup`. Groups no shader covers are
//! reference steps. `crate::vulkan` runs the SPIR-V (`--device vulkan`); `crate::metal_device` the MSL (macOS,
//! `--device metal`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetalPlan {
    /// Threads per workgroup of the untiled shaders (each module says its own).
    pub workgroup: u64,
    /// `fp32` (every shader in f32) or `f16` (contractions and attention stage their operands in
    /// threadgroup memory as f16: the shaders need the device's 16-bit float support).
    #[serde(default = "fp32")]
    pub precision: String,
    pub modules: Vec<MetalModule>,
    pub steps: Vec<MetalStep>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetalModule {
    /// The plan kernel (group) it belongs to.
    pub kernel: usize,
    pub name: String,
    pub msl: String,
    pub wgsl: String,
    /// Its SPIR-V: words `spirv_offset..spirv_offset + spirv_len` of `metal.spv`.
    pub spirv_offset: u64,
    pub spirv_len: u64,
    /// Threads per workgroup (threadgroup) of its dispatches.
    #[serde(default = "sixty_four")]
    pub workgroup: u64,
    /// Bytes of each threadgroup variable in the order of the MSL entry point's `threadgroup`
    /// arguments (a Metal encoder sets their lengths by index).
    #[serde(default)]
    pub threadgroup_vars: Vec<u64>,
}

fn fp32() -> String {
    "fp32".into()
}

impl MetalPlan {
    /// Whether any shader uses 16-bit floats (the device must enable `shaderFloat16` and 16-bit
    /// storage access): an f16 plan's contractions and tiled attention do.
    pub fn needs_f16(&self) -> bool {
        self.modules.iter().any(|m| m.wgsl.starts_with("enable f16;"))
    }
}

impl MetalModule {
    /// Bytes of threadgroup memory it declares.
    pub fn workgroup_memory(&self) -> u64 {
        self.threadgroup_vars.iter().sum()
    }

    /// Threadgroups to dispatch for `threads` threads, as (x, y): y > 1 past 65,535 of them (the shaders
    /// number their groups `x + y·65,535`).
    pub fn groups(&self, threads: u64) -> (u64, u64) {
        let groups = threads.div_ceil(self.workgroup.max(1)).max(1);
        let x = groups.min(65_535);
        (x, groups.div_ceil(x))
    }
}

fn sixty_four() -> u64 {
    64
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetalStep {
    Launch { kernel: usize, module: usize, bufs: Vec<u32>, threads: u64 },
    Reference { kernel: usize, nodes: Vec<usize>, reason: String },
}
