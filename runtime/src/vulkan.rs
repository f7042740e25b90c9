//! The `vulkan` device: a `metal` artifact's SPIR-V compute shaders on a Vulkan implementation found at
//! run time (`libvulkan.so.1` loaded by `ash`, no build-time Vulkan dependency): Mesa's lavapipe (a
//! software GPU, what CI uses) or any Linux GPU driver. Every graph value is a host tensor; a launch
//! copies its buffers into host-visible storage buffers, dispatches the shader once (workgroups of the
//! plan's size, 2-D past 65,535 of them), waits and copies them back. Reference steps run on the
//! interpreter. One compute pipeline per module is built when the model is loaded.

use crate::metal::{MetalPlan, MetalStep};
use crate::RuntimeError;
use ash::vk;
use sovc_ir::{Graph, Tensor};
use std::collections::BTreeMap;

fn verr(what: &str) -> impl Fn(vk::Result) -> RuntimeError + '_ {
    move |e| RuntimeError::Device(format!("vulkan: {what}: {e}"))
}

struct Pipeline {
    layout: vk::PipelineLayout,
    set_layout: vk::DescriptorSetLayout,
    pipeline: vk::Pipeline,
    bindings: u32,
}

pub struct VulkanModel {
    graph: Graph,
    plan: MetalPlan,
    consts: BTreeMap<usize, Tensor>,
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    queue: vk::Queue,
    queue_family: u32,
    memory: vk::PhysicalDeviceMemoryProperties,
    pipelines: Vec<Pipeline>,
    /// The physical device's name (`llvmpipe (...)` for lavapipe).
    pub device_name: String,
}

struct Buffer {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    len: usize,
}

impl VulkanModel {
    pub fn new(
        graph: Graph,
        plan: MetalPlan,
        spirv: &[u32],
        consts: BTreeMap<usize, Tensor>,
    ) -> Result<VulkanModel, RuntimeError> {
        // SAFETY: loading the Vulkan loader runs its initialization; it is the system's libvulkan.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| {
            RuntimeError::Device(format!(
                "vulkan: cannot load libvulkan.so.1 ({e}); install a Vulkan driver (CI: Debian's libvulkan1 and mesa-vulkan-drivers for lavapipe)"
            ))
        })?;
        let app = vk::ApplicationInfo::default().api_version(vk::make_api_version(0, 1, 1, 0));
        // SAFETY: valid create infos; every handle is destroyed in Drop.
        let instance =
            unsafe { entry.create_instance(&vk::InstanceCreateInfo::default().application_info(&app), None) }
                .map_err(verr("create instance"))?;
        let devices = unsafe { instance.enumerate_physical_devices() }.map_err(verr("enumerate devices"))?;
        let pick = devices.iter().find_map(|&pd| {
            let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
            families.iter().position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE)).map(|f| (pd, f as u32))
        });
        let Some((pd, queue_family)) = pick else {
            unsafe { instance.destroy_instance(None) };
            return Err(RuntimeError::Device("vulkan: no device with a compute queue".into()));
        };
        let props = unsafe { instance.get_physical_device_properties(pd) };
        let device_name = props.device_name_as_c_str().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let priorities = [1.0f32];
        let queues =
            [vk::DeviceQueueCreateInfo::default().queue_family_index(queue_family).queue_priorities(&priorities)];
        let device =
            unsafe { instance.create_device(pd, &vk::DeviceCreateInfo::default().queue_create_infos(&queues), None) }
                .map_err(verr("create device"))?;
        let queue = unsafe { device.get_device_queue(queue_family, 0) };
        let memory = unsafe { instance.get_physical_device_memory_properties(pd) };
        let mut m = VulkanModel {
            graph,
            plan,
            consts,
            _entry: entry,
            instance,
            device,
            queue,
            queue_family,
            memory,
            pipelines: Vec::new(),
            device_name,
        };
        for (k, module) in m.plan.modules.clone().iter().enumerate() {
            let words = spirv
                .get(module.spirv_offset as usize..(module.spirv_offset + module.spirv_len) as usize)
                .ok_or_else(|| RuntimeError::Malformed(format!("shader `{}` lies outside metal.spv", module.name)))?;
            let bindings = m
                .plan
                .steps
                .iter()
                .find_map(|s| match s {
                    MetalStep::Launch { module, bufs, .. } if *module == k => Some(bufs.len() as u32),
                    _ => None,
                })
                .unwrap_or(0);
            let p = m.pipeline(words, bindings)?;
            m.pipelines.push(p);
        }
        Ok(m)
    }

    fn pipeline(&self, words: &[u32], bindings: u32) -> Result<Pipeline, RuntimeError> {
        let d = &self.device;
        // SAFETY: valid create infos on a live device; the objects are destroyed in Drop.
        unsafe {
            let module = d
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(words), None)
                .map_err(verr("create shader module"))?;
            let b: Vec<vk::DescriptorSetLayoutBinding> = (0..bindings)
                .map(|i| {
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(i)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE)
                })
                .collect();
            let set_layout = d
                .create_descriptor_set_layout(&vk::DescriptorSetLayoutCreateInfo::default().bindings(&b), None)
                .map_err(verr("create descriptor set layout"))?;
            let layouts = [set_layout];
            let layout = d
                .create_pipeline_layout(&vk::PipelineLayoutCreateInfo::default().set_layouts(&layouts), None)
                .map_err(verr("create pipeline layout"))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main");
            let info = [vk::ComputePipelineCreateInfo::default().stage(stage).layout(layout)];
            let pipeline = d
                .create_compute_pipelines(vk::PipelineCache::null(), &info, None)
                .map_err(|(_, e)| verr("create compute pipeline")(e))?[0];
            d.destroy_shader_module(module, None);
            Ok(Pipeline { layout, set_layout, pipeline, bindings })
        }
    }

    fn buffer(&self, data: &[f32]) -> Result<Buffer, RuntimeError> {
        let d = &self.device;
        let bytes = (data.len().max(1) * 4) as u64;
        // SAFETY: a host-visible, coherent buffer on a live device, mapped only while copying.
        unsafe {
            let buffer = d
                .create_buffer(
                    &vk::BufferCreateInfo::default()
                        .size(bytes)
                        .usage(vk::BufferUsageFlags::STORAGE_BUFFER)
                        .sharing_mode(vk::SharingMode::EXCLUSIVE),
                    None,
                )
                .map_err(verr("create buffer"))?;
            let req = d.get_buffer_memory_requirements(buffer);
            let want = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
            let ty = (0..self.memory.memory_type_count)
                .find(|&i| {
                    req.memory_type_bits & (1 << i) != 0
                        && self.memory.memory_types[i as usize].property_flags.contains(want)
                })
                .ok_or_else(|| RuntimeError::Device("vulkan: no host-visible coherent memory".into()))?;
            let memory = d
                .allocate_memory(
                    &vk::MemoryAllocateInfo::default().allocation_size(req.size).memory_type_index(ty),
                    None,
                )
                .map_err(verr("allocate memory"))?;
            d.bind_buffer_memory(buffer, memory, 0).map_err(verr("bind memory"))?;
            let p =
                d.map_memory(memory, 0, bytes, vk::MemoryMapFlags::empty()).map_err(verr("map memory"))? as *mut f32;
            std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len());
            d.unmap_memory(memory);
            Ok(Buffer { buffer, memory, len: data.len() })
        }
    }

    fn read(&self, b: &Buffer) -> Result<Vec<f32>, RuntimeError> {
        let mut out = vec![0f32; b.len];
        // SAFETY: the buffer's memory is host visible and `len` floats long; the queue is idle.
        unsafe {
            let p = self
                .device
                .map_memory(b.memory, 0, (b.len.max(1) * 4) as u64, vk::MemoryMapFlags::empty())
                .map_err(verr("map memory"))? as *const f32;
            std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), b.len);
            self.device.unmap_memory(b.memory);
        }
        Ok(out)
    }

    fn free(&self, b: Buffer) {
        // SAFETY: the buffer is no longer used by any command (the queue waited).
        unsafe {
            self.device.destroy_buffer(b.buffer, None);
            self.device.free_memory(b.memory, None);
        }
    }

    /// One dispatch of `module` over `bufs` for `threads` threads; waits for it.
    fn dispatch(&self, module: usize, bufs: &[Buffer], threads: u64) -> Result<(), RuntimeError> {
        let p = &self.pipelines[module];
        if p.bindings as usize != bufs.len() {
            return Err(RuntimeError::Malformed(format!(
                "shader {module} takes {} buffers, given {}",
                p.bindings,
                bufs.len()
            )));
        }
        let d = &self.device;
        let wg = self.plan.modules[module].workgroup.max(1);
        let groups = threads.div_ceil(wg).max(1);
        let x = groups.min(65_535);
        let y = groups.div_ceil(x);
        // SAFETY: every object is created, used once and destroyed here after the fence signals.
        unsafe {
            let sizes = [vk::DescriptorPoolSize {
                ty: vk::DescriptorType::STORAGE_BUFFER,
                descriptor_count: p.bindings.max(1),
            }];
            let pool = d
                .create_descriptor_pool(&vk::DescriptorPoolCreateInfo::default().max_sets(1).pool_sizes(&sizes), None)
                .map_err(verr("create descriptor pool"))?;
            let layouts = [p.set_layout];
            let set = d
                .allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default().descriptor_pool(pool).set_layouts(&layouts),
                )
                .map_err(verr("allocate descriptor set"))?[0];
            let infos: Vec<[vk::DescriptorBufferInfo; 1]> = bufs
                .iter()
                .map(|b| [vk::DescriptorBufferInfo::default().buffer(b.buffer).offset(0).range(vk::WHOLE_SIZE)])
                .collect();
            let writes: Vec<vk::WriteDescriptorSet> = infos
                .iter()
                .enumerate()
                .map(|(i, info)| {
                    vk::WriteDescriptorSet::default()
                        .dst_set(set)
                        .dst_binding(i as u32)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .buffer_info(info)
                })
                .collect();
            d.update_descriptor_sets(&writes, &[]);
            let cpool = d
                .create_command_pool(&vk::CommandPoolCreateInfo::default().queue_family_index(self.queue_family), None)
                .map_err(verr("create command pool"))?;
            let cb = d
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(cpool)
                        .level(vk::CommandBufferLevel::PRIMARY)
                        .command_buffer_count(1),
                )
                .map_err(verr("allocate command buffer"))?[0];
            d.begin_command_buffer(
                cb,
                &vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .map_err(verr("begin command buffer"))?;
            d.cmd_bind_pipeline(cb, vk::PipelineBindPoint::COMPUTE, p.pipeline);
            d.cmd_bind_descriptor_sets(cb, vk::PipelineBindPoint::COMPUTE, p.layout, 0, &[set], &[]);
            d.cmd_dispatch(cb, x as u32, y as u32, 1);
            d.end_command_buffer(cb).map_err(verr("end command buffer"))?;
            let fence = d.create_fence(&vk::FenceCreateInfo::default(), None).map_err(verr("create fence"))?;
            let cbs = [cb];
            let r = d
                .queue_submit(self.queue, &[vk::SubmitInfo::default().command_buffers(&cbs)], fence)
                .and_then(|_| d.wait_for_fences(&[fence], true, u64::MAX));
            d.destroy_fence(fence, None);
            d.destroy_command_pool(cpool, None);
            d.destroy_descriptor_pool(pool, None);
            r.map_err(verr("run the shader"))?;
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
                    let mut made = Vec::with_capacity(bufs.len());
                    for &b in bufs {
                        let data = crate::session::value_f32(g, &vals, b)?;
                        match self.buffer(&data) {
                            Ok(x) => made.push(x),
                            Err(e) => {
                                made.into_iter().for_each(|x| self.free(x));
                                return Err(e);
                            }
                        }
                    }
                    let r = self.dispatch(*module, &made, *threads);
                    let mut back = Vec::new();
                    if r.is_ok() {
                        for x in &made {
                            back.push(self.read(x)?);
                        }
                    }
                    made.into_iter().for_each(|x| self.free(x));
                    r?;
                    for (&b, data) in bufs.iter().zip(back) {
                        crate::session::store_f32(g, &mut vals, b, data)?;
                    }
                }
                MetalStep::Reference { nodes, .. } => {
                    crate::session::eval_nodes(g, nodes, &mut vals)?;
                }
            }
        }
        crate::session::named_outputs(g, &vals)
    }
}

impl Drop for VulkanModel {
    fn drop(&mut self) {
        // SAFETY: nothing is in flight (every dispatch waits); children before parents.
        unsafe {
            let _ = self.device.device_wait_idle();
            for p in &self.pipelines {
                self.device.destroy_pipeline(p.pipeline, None);
                self.device.destroy_pipeline_layout(p.layout, None);
                self.device.destroy_descriptor_set_layout(p.set_layout, None);
            }
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}
