//! The `metal` device (macOS only): a `metal` artifact's Metal Shading Language compiled by the Metal
//! framework at load time (`newLibraryWithSource`), one compute pipeline per shader, and per launch
//! shared-storage buffers, one dispatch of threadgroups of the plan's size (2-D past 65,535 of them),
//! the buffers' byte sizes at the slot after the last buffer (naga's `_mslBufferSizes`), a wait, and
//! the results copied back. Reference steps run on the interpreter. CI type-checks it with `cargo
//! check --target aarch64-apple-darwin`; it has not run on an Apple GPU.

use crate::metal::{MetalPlan, MetalStep};
use crate::RuntimeError;
use objc2::rc::Retained;
use objc2::runtime::ProtocolObject;
use objc2_foundation::NSString;
use objc2_metal::{
    MTLBuffer, MTLCommandBuffer, MTLCommandEncoder, MTLCommandQueue, MTLComputeCommandEncoder, MTLComputePipelineState,
    MTLCreateSystemDefaultDevice, MTLDevice, MTLLibrary, MTLResourceOptions, MTLSize,
};
use sovc_ir::{Graph, Tensor};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::ptr::NonNull;

fn merr(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Device(format!("metal: {what}: {e}"))
}

pub struct MetalModel {
    graph: Graph,
    plan: MetalPlan,
    consts: BTreeMap<usize, Tensor>,
    device: Retained<ProtocolObject<dyn MTLDevice>>,
    queue: Retained<ProtocolObject<dyn MTLCommandQueue>>,
    pipelines: Vec<Retained<ProtocolObject<dyn MTLComputePipelineState>>>,
}

impl MetalModel {
    pub fn new(graph: Graph, plan: MetalPlan, consts: BTreeMap<usize, Tensor>) -> Result<MetalModel, RuntimeError> {
        let device =
            MTLCreateSystemDefaultDevice().ok_or_else(|| RuntimeError::Device("metal: no Metal device".into()))?;
        let queue = device.newCommandQueue().ok_or_else(|| RuntimeError::Device("metal: no command queue".into()))?;
        let mut pipelines = Vec::new();
        for m in &plan.modules {
            let lib = device
                .newLibraryWithSource_options_error(&NSString::from_str(&m.msl), None)
                .map_err(|e| merr(&format!("compile `{}`", m.name), e))?;
            let f = lib
                .newFunctionWithName(&NSString::from_str("main_"))
                .ok_or_else(|| RuntimeError::Device(format!("metal: `{}` has no `main_`", m.name)))?;
            let p = device
                .newComputePipelineStateWithFunction_error(&f)
                .map_err(|e| merr(&format!("pipeline of `{}`", m.name), e))?;
            pipelines.push(p);
        }
        Ok(MetalModel { graph, plan, consts, device, queue, pipelines })
    }

    fn dispatch(&self, module: usize, data: &mut [Vec<f32>], threads: u64) -> Result<(), RuntimeError> {
        let dev = |m: &str| RuntimeError::Device(format!("metal: {m}"));
        let mut bufs = Vec::with_capacity(data.len());
        for d in data.iter() {
            let len = d.len().max(1) * 4;
            let ptr = NonNull::new(d.as_ptr() as *mut c_void).ok_or_else(|| dev("null buffer"))?;
            // SAFETY: `ptr` points at `d.len()` floats; graph values are never empty, so `len` bytes
            // are readable.
            let b = unsafe {
                self.device.newBufferWithBytes_length_options(ptr, len, MTLResourceOptions::StorageModeShared)
            }
            .ok_or_else(|| dev("cannot allocate a buffer"))?;
            bufs.push(b);
        }
        let sizes: Vec<u32> = data.iter().map(|d| (d.len() * 4) as u32).collect();
        let cb = self.queue.commandBuffer().ok_or_else(|| dev("no command buffer"))?;
        let enc = cb.computeCommandEncoder().ok_or_else(|| dev("no compute encoder"))?;
        enc.setComputePipelineState(&self.pipelines[module]);
        for (i, b) in bufs.iter().enumerate() {
            // SAFETY: `b` lives until the command buffer has completed below.
            unsafe { enc.setBuffer_offset_atIndex(Some(b), 0, i) };
        }
        let sp = NonNull::new(sizes.as_ptr() as *mut c_void).ok_or_else(|| dev("no sizes"))?;
        // SAFETY: `sizes` is copied by Metal when encoded.
        unsafe { enc.setBytes_length_atIndex(sp, sizes.len().max(1) * 4, bufs.len()) };
        let m = &self.plan.modules[module];
        for (i, &len) in m.threadgroup_vars.iter().enumerate() {
            // SAFETY: a length (rounded up to 16 bytes, as Metal requires) for the entry point's `i`-th
            // threadgroup argument.
            unsafe { enc.setThreadgroupMemoryLength_atIndex(len.next_multiple_of(16) as usize, i) };
        }
        let (x, y) = m.groups(threads);
        enc.dispatchThreadgroups_threadsPerThreadgroup(
            MTLSize { width: x as usize, height: y as usize, depth: 1 },
            MTLSize { width: m.workgroup.max(1) as usize, height: 1, depth: 1 },
        );
        enc.endEncoding();
        cb.commit();
        cb.waitUntilCompleted();
        for (d, b) in data.iter_mut().zip(&bufs) {
            let p = b.contents().as_ptr() as *const f32;
            // SAFETY: the buffer holds `d.len()` floats and the GPU is done with it.
            unsafe { std::ptr::copy_nonoverlapping(p, d.as_mut_ptr(), d.len()) };
        }
        Ok(())
    }

    /// Runs on named inputs; the named outputs.
    pub fn run(&self, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
        let g = &self.graph;
        let mut vals = crate::session::starting_values(g, &self.consts, inputs)?;
        for step in &self.plan.steps {
            match step {
                MetalStep::Launch { module, bufs, threads, .. } => {
                    let mut data: Vec<Vec<f32>> =
                        bufs.iter().map(|&b| crate::session::value_f32(g, &vals, b)).collect::<Result<_, _>>()?;
                    self.dispatch(*module, &mut data, *threads)?;
                    for (&b, d) in bufs.iter().zip(data) {
                        crate::session::store_f32(g, &mut vals, b, d)?;
                    }
                }
                MetalStep::Reference { nodes, .. } => crate::session::eval_nodes(g, nodes, &mut vals)?,
            }
        }
        crate::session::named_outputs(g, &vals)
    }
}
