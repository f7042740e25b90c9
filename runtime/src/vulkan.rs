//! The `vulkan` device: a `metal` artifact's SPIR-V compute shaders on a Vulkan implementation found at
//! run time (`libvulkan.so.1` loaded by `ash`, no build-time Vulkan dependency): Mesa's lavapipe (a
//! software GPU, what CI uses) or any Linux GPU driver.
//!
//! At load: the instance (API 1.2 where the loader has it, else 1.1), the first device with a compute
//! queue and room for the plan's workgroups and threadgroup memory (with 16-bit float support when the plan's shaders use f16: `shaderFloat16` and 16-bit
//! storage-buffer access, through the Vulkan 1.1/1.2 feature structs or, on a 1.1 device,
//! `VK_KHR_shader_float16_int8`), one compute pipeline per module, one command pool and command buffer,
//! one fence and one descriptor pool sized for the largest stretch of launches.
//!
//! Values are device resident: every graph value a launch touches gets one storage buffer of f32
//! elements (device-local and host-visible memory where there is such, else host-visible; coherent and
//! mapped for its whole life, so no staging copies), created the first time a launch needs it and kept
//! until the model is dropped. Each value's freshness (host, device or both) is tracked: a launch
//! uploads the values whose device copy is stale (inputs, a reference step's results, values never
//! computed are zeros); a reference step downloads the inputs only the device holds and leaves its
//! results on the host; the graph outputs are downloaded at the end. Constants are uploaded once and
//! stay on the device across runs (kernels never write them).
//!
//! Each stretch of consecutive launches is one command buffer: per launch its own descriptor set (binding
//! `i` = its `i`-th value), one dispatch (workgroups of the module's size, 2-D past 65,535 of them) and a
//! compute-to-compute memory barrier before the next; a compute-to-host barrier at the end, one submit
//! and one fence wait (the descriptor pool is reset when the next stretch starts). Reference steps run on the interpreter.

use crate::metal::{MetalPlan, MetalStep};
use crate::RuntimeError;
use ash::vk;
use sovc_ir::{DType, Graph, Tensor};
use std::collections::BTreeMap;
use std::sync::Mutex;

fn verr(what: &str) -> impl Fn(vk::Result) -> RuntimeError + '_ {
    move |e| RuntimeError::Device(format!("vulkan: {what}: {e}"))
}

const V1_1: u32 = vk::API_VERSION_1_1;
const V1_2: u32 = vk::API_VERSION_1_2;

struct Pipeline {
    layout: vk::PipelineLayout,
    set_layout: vk::DescriptorSetLayout,
    pipeline: vk::Pipeline,
}

/// One graph value's storage buffer: `len` f32 elements, its memory mapped at `ptr` for its whole life.
struct Buffer {
    buffer: vk::Buffer,
    memory: vk::DeviceMemory,
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the mapping is plain host memory owned by this buffer; it is only touched through the
// model's state lock while no command that uses it is in flight.
unsafe impl Send for Buffer {}

/// Where a value's current contents are.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fresh {
    /// Only on the host (or nowhere yet: zeros): the device copy is stale.
    Host,
    /// Only on the device: the host copy is stale.
    Device,
    Both,
}

/// The device-resident values, behind the model's lock (`run` takes `&self`).
struct Resident {
    /// A buffer per graph value, once a launch has needed it.
    bufs: Vec<Option<Buffer>>,
    /// Per value; reset to `Host` at every run except for constants, which stay uploaded.
    fresh: Vec<Fresh>,
}

/// How 16-bit float support is enabled on the device.
#[derive(Clone, Copy, PartialEq, Eq)]
enum F16 {
    Off,
    /// `VkPhysicalDeviceVulkan11Features` and `VkPhysicalDeviceVulkan12Features` (Vulkan 1.2).
    Core,
    /// `VkPhysicalDevice16BitStorageFeatures` and `VK_KHR_shader_float16_int8` (Vulkan 1.1).
    Khr,
}

pub struct VulkanModel {
    graph: Graph,
    plan: MetalPlan,
    consts: BTreeMap<usize, Tensor>,
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    queue: vk::Queue,
    memory: vk::PhysicalDeviceMemoryProperties,
    pipelines: Vec<Pipeline>,
    command_pool: vk::CommandPool,
    command_buffer: vk::CommandBuffer,
    descriptor_pool: vk::DescriptorPool,
    fence: vk::Fence,
    /// Elements of each graph value (0 for symbolic shapes, which no launch may touch).
    lens: Vec<usize>,
    state: Mutex<Resident>,
    /// The physical device's name (`llvmpipe (...)` for lavapipe).
    pub device_name: String,
    /// Whether 16-bit float support (`shaderFloat16`, 16-bit storage-buffer access) was enabled: the
    /// plan's shaders use f16.
    pub f16: bool,
}

/// The names of the features that are off.
fn lacking(features: [(vk::Bool32, &'static str); 3]) -> Vec<&'static str> {
    features.into_iter().filter(|f| f.0 == vk::FALSE).map(|f| f.1).collect()
}

/// The 16-bit float features `pd` lacks (empty when it has them all) and how to enable them, on an
/// instance of API `api`.
fn f16_support(instance: &ash::Instance, pd: vk::PhysicalDevice, api: u32) -> (Vec<&'static str>, F16) {
    // SAFETY: queries on a live physical device; the chained structs outlive the calls.
    unsafe {
        let version = instance.get_physical_device_properties(pd).api_version.min(api);
        if version >= V1_2 {
            let mut v11 = vk::PhysicalDeviceVulkan11Features::default();
            let mut v12 = vk::PhysicalDeviceVulkan12Features::default();
            let mut f = vk::PhysicalDeviceFeatures2::default().push_next(&mut v11).push_next(&mut v12);
            instance.get_physical_device_features2(pd, &mut f);
            return (
                lacking([
                    (v11.storage_buffer16_bit_access, "storageBuffer16BitAccess"),
                    (v11.uniform_and_storage_buffer16_bit_access, "uniformAndStorageBuffer16BitAccess"),
                    (v12.shader_float16, "shaderFloat16"),
                ]),
                F16::Core,
            );
        }
        if version < V1_1 {
            return (vec!["Vulkan 1.1 (16-bit storage)", "shaderFloat16"], F16::Khr);
        }
        let has_ext = instance
            .enumerate_device_extension_properties(pd)
            .unwrap_or_default()
            .iter()
            .any(|e| e.extension_name_as_c_str().is_ok_and(|n| n == vk::KHR_SHADER_FLOAT16_INT8_NAME));
        let mut s16 = vk::PhysicalDevice16BitStorageFeatures::default();
        let mut h16 = vk::PhysicalDeviceShaderFloat16Int8Features::default();
        let mut f = vk::PhysicalDeviceFeatures2::default().push_next(&mut s16);
        if has_ext {
            f = f.push_next(&mut h16);
        }
        instance.get_physical_device_features2(pd, &mut f);
        let missing = lacking([
            (s16.storage_buffer16_bit_access, "storageBuffer16BitAccess"),
            (s16.uniform_and_storage_buffer16_bit_access, "uniformAndStorageBuffer16BitAccess"),
            (h16.shader_float16, "shaderFloat16 (VK_KHR_shader_float16_int8)"),
        ]);
        (missing, F16::Khr)
    }
}

fn is_launch(s: &MetalStep) -> bool {
    matches!(s, MetalStep::Launch { .. })
}

/// The steps in runs: each stretch of consecutive launches together, each reference step alone.
fn runs(steps: &[MetalStep]) -> impl Iterator<Item = &[MetalStep]> {
    steps.chunk_by(|a, b| is_launch(a) && is_launch(b))
}

impl VulkanModel {
    pub fn new(
        graph: Graph,
        plan: MetalPlan,
        spirv: &[u32],
        consts: BTreeMap<usize, Tensor>,
    ) -> Result<VulkanModel, RuntimeError> {
        let lens: Vec<usize> =
            graph.values.iter().map(|t| t.shape.as_consts().map_or(0, |s| s.iter().product())).collect();
        let bindings = check_plan(&graph, &plan)?;
        // SAFETY: loading the Vulkan loader runs its initialization; it is the system's libvulkan.
        let entry = unsafe { ash::Entry::load() }.map_err(|e| {
            RuntimeError::Device(format!(
                "vulkan: cannot load libvulkan.so.1 ({e}); install a Vulkan driver (CI: Debian's libvulkan1 and mesa-vulkan-drivers for lavapipe)"
            ))
        })?;
        // SAFETY: a query of the loader, no handles involved.
        let loader = unsafe { entry.try_enumerate_instance_version() }.ok().flatten().unwrap_or(vk::API_VERSION_1_0);
        let api = if loader >= V1_2 { V1_2 } else { V1_1 };
        let app = vk::ApplicationInfo::default().api_version(api);
        // SAFETY: valid create infos; every handle is destroyed in Drop (or below on failure).
        let instance =
            unsafe { entry.create_instance(&vk::InstanceCreateInfo::default().application_info(&app), None) }
                .map_err(verr("create instance"))?;
        let needs = (
            plan.modules.iter().map(|m| m.workgroup).max().unwrap_or(1),
            plan.modules.iter().map(|m| m.workgroup_memory()).max().unwrap_or(0),
        );
        let picked = Self::pick(&instance, api, plan.needs_f16(), needs);
        let (pd, queue_family, f16, device_name) = match picked {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: the instance has no children yet.
                unsafe { instance.destroy_instance(None) };
                return Err(e);
            }
        };
        let priorities = [1.0f32];
        let queues =
            [vk::DeviceQueueCreateInfo::default().queue_family_index(queue_family).queue_priorities(&priorities)];
        let mut v11 = vk::PhysicalDeviceVulkan11Features::default()
            .storage_buffer16_bit_access(true)
            .uniform_and_storage_buffer16_bit_access(true);
        let mut v12 = vk::PhysicalDeviceVulkan12Features::default().shader_float16(true);
        let mut s16 = vk::PhysicalDevice16BitStorageFeatures::default()
            .storage_buffer16_bit_access(true)
            .uniform_and_storage_buffer16_bit_access(true);
        let mut h16 = vk::PhysicalDeviceShaderFloat16Int8Features::default().shader_float16(true);
        let extensions = [vk::KHR_SHADER_FLOAT16_INT8_NAME.as_ptr()];
        let mut info = vk::DeviceCreateInfo::default().queue_create_infos(&queues);
        match f16 {
            F16::Off => {}
            F16::Core => info = info.push_next(&mut v11).push_next(&mut v12),
            F16::Khr => info = info.push_next(&mut s16).push_next(&mut h16).enabled_extension_names(&extensions),
        }
        // SAFETY: a valid create info on a physical device of this instance; the chained feature structs
        // outlive the call; the device is destroyed in Drop.
        let device = match unsafe { instance.create_device(pd, &info, None) } {
            Ok(d) => d,
            Err(e) => {
                // SAFETY: the instance has no children.
                unsafe { instance.destroy_instance(None) };
                return Err(verr("create device")(e));
            }
        };
        // SAFETY: queue 0 of the family the device was created with; a query of the physical device.
        let (queue, memory) =
            unsafe { (device.get_device_queue(queue_family, 0), instance.get_physical_device_memory_properties(pd)) };
        let n = graph.values.len();
        let mut m = VulkanModel {
            graph,
            plan,
            consts,
            _entry: entry,
            instance,
            device,
            queue,
            memory,
            pipelines: Vec::new(),
            command_pool: vk::CommandPool::null(),
            command_buffer: vk::CommandBuffer::null(),
            descriptor_pool: vk::DescriptorPool::null(),
            fence: vk::Fence::null(),
            lens,
            state: Mutex::new(Resident { bufs: (0..n).map(|_| None).collect(), fresh: vec![Fresh::Host; n] }),
            device_name,
            f16: f16 != F16::Off,
        };
        // From here on Drop destroys whatever was made (destroying a null handle does nothing).
        for k in 0..m.plan.modules.len() {
            let module = &m.plan.modules[k];
            let words = spirv
                .get(module.spirv_offset as usize..module.spirv_offset.saturating_add(module.spirv_len) as usize)
                .ok_or_else(|| RuntimeError::Malformed(format!("shader `{}` lies outside metal.spv", module.name)))?;
            let p = m.pipeline(words, bindings[k] as u32)?;
            m.pipelines.push(p);
        }
        let (mut sets, mut descriptors) = (1u32, 1u32);
        for s in runs(&m.plan.steps).filter(|r| is_launch(&r[0])) {
            sets = sets.max(s.len() as u32);
            let n: usize = s.iter().map(|l| if let MetalStep::Launch { bufs, .. } = l { bufs.len() } else { 0 }).sum();
            descriptors = descriptors.max(n as u32);
        }
        let d = &m.device;
        // SAFETY: valid create infos on a live device; the objects are destroyed in Drop.
        unsafe {
            m.command_pool = d
                .create_command_pool(&vk::CommandPoolCreateInfo::default().queue_family_index(queue_family), None)
                .map_err(verr("create command pool"))?;
            m.command_buffer = d
                .allocate_command_buffers(
                    &vk::CommandBufferAllocateInfo::default()
                        .command_pool(m.command_pool)
                        .level(vk::CommandBufferLevel::PRIMARY)
                        .command_buffer_count(1),
                )
                .map_err(verr("allocate command buffer"))?[0];
            m.fence = d.create_fence(&vk::FenceCreateInfo::default(), None).map_err(verr("create fence"))?;
            let sizes =
                [vk::DescriptorPoolSize { ty: vk::DescriptorType::STORAGE_BUFFER, descriptor_count: descriptors }];
            m.descriptor_pool = d
                .create_descriptor_pool(
                    &vk::DescriptorPoolCreateInfo::default().max_sets(sets).pool_sizes(&sizes),
                    None,
                )
                .map_err(verr("create descriptor pool"))?;
        }
        Ok(m)
    }

    /// The first device with a compute queue, room for the plan's largest workgroup and threadgroup
    /// memory (`needs`: 256 threads and 16 KiB exceed what Vulkan guarantees, 128 and 16 KiB, on
    /// some devices) and 16-bit float support when `f16`: the device, the queue family, how to enable
    /// f16, the device's name.
    fn pick(
        instance: &ash::Instance,
        api: u32,
        f16: bool,
        needs: (u64, u64),
    ) -> Result<(vk::PhysicalDevice, u32, F16, String), RuntimeError> {
        // SAFETY: queries on a live instance and its physical devices.
        let devices = unsafe { instance.enumerate_physical_devices() }.map_err(verr("enumerate devices"))?;
        let mut refused = Vec::new();
        for pd in devices {
            // SAFETY: as above.
            let (families, props) = unsafe {
                (instance.get_physical_device_queue_family_properties(pd), instance.get_physical_device_properties(pd))
            };
            let Some(family) = families.iter().position(|q| q.queue_flags.contains(vk::QueueFlags::COMPUTE)) else {
                continue;
            };
            let name = props.device_name_as_c_str().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let l = &props.limits;
            let threads = u64::from(l.max_compute_work_group_invocations.min(l.max_compute_work_group_size[0]));
            if needs.0 > threads || needs.1 > u64::from(l.max_compute_shared_memory_size) {
                refused.push(format!(
                    "`{name}` allows workgroups of {threads} threads and {} bytes of shared memory, the shaders need {} and {}",
                    l.max_compute_shared_memory_size, needs.0, needs.1
                ));
                continue;
            }
            if !f16 {
                return Ok((pd, family as u32, F16::Off, name));
            }
            let (missing, how) = f16_support(instance, pd, api);
            if missing.is_empty() {
                return Ok((pd, family as u32, how, name));
            }
            refused.push(format!("`{name}` lacks {}", missing.join(", ")));
        }
        Err(RuntimeError::Device(if refused.is_empty() {
            "vulkan: no device with a compute queue".into()
        } else {
            format!("vulkan: no device can run these shaders: {}", refused.join("; "))
        }))
    }

    fn pipeline(&self, words: &[u32], bindings: u32) -> Result<Pipeline, RuntimeError> {
        let d = &self.device;
        // SAFETY: valid create infos on a live device; the objects are destroyed in Drop, or here when a
        // later one fails.
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
            let mut p = Pipeline {
                layout: vk::PipelineLayout::null(),
                set_layout: vk::DescriptorSetLayout::null(),
                pipeline: vk::Pipeline::null(),
            };
            let r = self.pipeline_objects(module, &b, &mut p);
            d.destroy_shader_module(module, None);
            if let Err(e) = r {
                d.destroy_pipeline_layout(p.layout, None);
                d.destroy_descriptor_set_layout(p.set_layout, None);
                return Err(e);
            }
            Ok(p)
        }
    }

    /// The layouts and pipeline of `p`, each stored as soon as it is made (for the caller to destroy
    /// on failure).
    fn pipeline_objects(
        &self,
        module: vk::ShaderModule,
        bindings: &[vk::DescriptorSetLayoutBinding],
        p: &mut Pipeline,
    ) -> Result<(), RuntimeError> {
        let d = &self.device;
        // SAFETY: valid create infos on a live device and shader module.
        unsafe {
            p.set_layout = d
                .create_descriptor_set_layout(&vk::DescriptorSetLayoutCreateInfo::default().bindings(bindings), None)
                .map_err(verr("create descriptor set layout"))?;
            let layouts = [p.set_layout];
            p.layout = d
                .create_pipeline_layout(&vk::PipelineLayoutCreateInfo::default().set_layouts(&layouts), None)
                .map_err(verr("create pipeline layout"))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main");
            let info = [vk::ComputePipelineCreateInfo::default().stage(stage).layout(p.layout)];
            p.pipeline = d
                .create_compute_pipelines(vk::PipelineCache::null(), &info, None)
                .map_err(|(_, e)| verr("create compute pipeline")(e))?[0];
        }
        Ok(())
    }

    /// A storage buffer of `len` f32 elements, mapped: device-local host-visible memory where there is
    /// such (and it has room), else host-visible; coherent either way.
    fn buffer(&self, len: usize) -> Result<Buffer, RuntimeError> {
        let d = &self.device;
        let bytes = (len.max(1) * 4) as u64;
        let host = vk::MemoryPropertyFlags::HOST_VISIBLE | vk::MemoryPropertyFlags::HOST_COHERENT;
        // SAFETY: a buffer and its memory on a live device; on every failure what was made is destroyed.
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
            let mut err = RuntimeError::Device("vulkan: no host-visible coherent memory".into());
            for want in [host | vk::MemoryPropertyFlags::DEVICE_LOCAL, host] {
                let Some(ty) = (0..self.memory.memory_type_count).find(|&i| {
                    req.memory_type_bits & (1 << i) != 0
                        && self.memory.memory_types[i as usize].property_flags.contains(want)
                }) else {
                    continue;
                };
                let info = vk::MemoryAllocateInfo::default().allocation_size(req.size).memory_type_index(ty);
                let memory = match d.allocate_memory(&info, None) {
                    Ok(m) => m,
                    Err(e) => {
                        err = verr("allocate memory")(e);
                        continue;
                    }
                };
                let mapped = d.bind_buffer_memory(buffer, memory, 0).map_err(verr("bind memory")).and_then(|_| {
                    d.map_memory(memory, 0, vk::WHOLE_SIZE, vk::MemoryMapFlags::empty()).map_err(verr("map memory"))
                });
                match mapped {
                    Ok(p) => return Ok(Buffer { buffer, memory, ptr: p as *mut f32, len }),
                    Err(e) => {
                        d.free_memory(memory, None);
                        err = e;
                        break;
                    }
                }
            }
            d.destroy_buffer(buffer, None);
            Err(err)
        }
    }

    fn free(&self, b: &Buffer) {
        // SAFETY: no command that uses the buffer is in flight (the caller waited for the device); freeing
        // the memory unmaps it.
        unsafe {
            self.device.destroy_buffer(b.buffer, None);
            self.device.free_memory(b.memory, None);
        }
    }

    /// Makes value `v`'s device copy current: its buffer made on first use, its host contents (zeros
    /// when it has none yet) copied in when the device copy is stale.
    fn upload(&self, st: &mut Resident, vals: &BTreeMap<usize, Tensor>, v: usize) -> Result<(), RuntimeError> {
        if st.bufs[v].is_none() {
            st.bufs[v] = Some(self.buffer(self.lens[v])?);
        }
        let Some(b) = &st.bufs[v] else { return Ok(()) };
        if st.fresh[v] != Fresh::Host {
            return Ok(());
        }
        if vals.contains_key(&v) {
            let data = crate::session::value_f32(&self.graph, vals, v as u32)?;
            if data.len() != b.len {
                return Err(RuntimeError::Device(format!(
                    "%{v} holds {} elements, its type {} has {}",
                    data.len(),
                    self.graph.values[v],
                    b.len
                )));
            }
            // SAFETY: the mapping holds `len` floats and no command is in flight.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), b.ptr, b.len) };
        } else {
            // SAFETY: as above.
            unsafe { std::ptr::write_bytes(b.ptr, 0, b.len) };
        }
        st.fresh[v] = Fresh::Both;
        Ok(())
    }

    /// Makes value `v`'s host copy current when only the device has it.
    fn download(&self, st: &mut Resident, vals: &mut BTreeMap<usize, Tensor>, v: usize) -> Result<(), RuntimeError> {
        if st.fresh[v] != Fresh::Device {
            return Ok(());
        }
        let Some(b) = &st.bufs[v] else { return Ok(()) };
        let mut data = vec![0f32; b.len];
        // SAFETY: the mapping holds `len` floats; the queue is idle (every stretch waits) and the memory
        // is coherent, with the stretch's writes made visible to the host by its last barrier.
        unsafe { std::ptr::copy_nonoverlapping(b.ptr, data.as_mut_ptr(), b.len) };
        crate::session::store_f32(&self.graph, vals, v as u32, data)?;
        st.fresh[v] = Fresh::Both;
        Ok(())
    }

    /// Runs a stretch of consecutive launches: one command buffer, one submit, one wait.
    fn stretch(
        &self,
        st: &mut Resident,
        vals: &BTreeMap<usize, Tensor>,
        launches: &[MetalStep],
    ) -> Result<(), RuntimeError> {
        let launches: Vec<(usize, &[u32], u64)> = launches
            .iter()
            .filter_map(|s| match s {
                MetalStep::Launch { module, bufs, threads, .. } => Some((*module, bufs.as_slice(), *threads)),
                MetalStep::Reference { .. } => None,
            })
            .collect();
        for &(_, bufs, _) in &launches {
            for &b in bufs {
                self.upload(st, vals, b as usize)?;
            }
        }
        let d = &self.device;
        let cb = self.command_buffer;
        // SAFETY: the previous stretch finished (its fence was waited for, or the device idled after a
        // failure), so the command pool and descriptor pool can be reset; every buffer is live.
        let r = unsafe {
            d.reset_command_pool(self.command_pool, vk::CommandPoolResetFlags::empty())
                .map_err(verr("reset command pool"))?;
            d.reset_descriptor_pool(self.descriptor_pool, vk::DescriptorPoolResetFlags::empty())
                .map_err(verr("reset descriptor pool"))?;
            let layouts: Vec<vk::DescriptorSetLayout> =
                launches.iter().map(|&(m, _, _)| self.pipelines[m].set_layout).collect();
            let sets = d
                .allocate_descriptor_sets(
                    &vk::DescriptorSetAllocateInfo::default()
                        .descriptor_pool(self.descriptor_pool)
                        .set_layouts(&layouts),
                )
                .map_err(verr("allocate descriptor sets"))?;
            let mut infos = Vec::new();
            for &(_, bufs, _) in &launches {
                for &b in bufs {
                    let Some(x) = &st.bufs[b as usize] else { unreachable!("uploaded above") };
                    infos.push(vk::DescriptorBufferInfo::default().buffer(x.buffer).offset(0).range(vk::WHOLE_SIZE));
                }
            }
            let mut writes = Vec::with_capacity(infos.len());
            let mut next = 0;
            for (&(_, bufs, _), &set) in launches.iter().zip(&sets) {
                for i in 0..bufs.len() {
                    writes.push(
                        vk::WriteDescriptorSet::default()
                            .dst_set(set)
                            .dst_binding(i as u32)
                            .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                            .buffer_info(std::slice::from_ref(&infos[next])),
                    );
                    next += 1;
                }
            }
            d.update_descriptor_sets(&writes, &[]);
            d.begin_command_buffer(
                cb,
                &vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::ONE_TIME_SUBMIT),
            )
            .map_err(verr("begin command buffer"))?;
            let compute = vk::PipelineStageFlags::COMPUTE_SHADER;
            let between = [vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::SHADER_WRITE)
                .dst_access_mask(vk::AccessFlags::SHADER_READ | vk::AccessFlags::SHADER_WRITE)];
            for (k, (&(module, _, threads), &set)) in launches.iter().zip(&sets).enumerate() {
                if k > 0 {
                    d.cmd_pipeline_barrier(cb, compute, compute, vk::DependencyFlags::empty(), &between, &[], &[]);
                }
                let p = &self.pipelines[module];
                let (x, y) = self.plan.modules[module].groups(threads);
                d.cmd_bind_pipeline(cb, vk::PipelineBindPoint::COMPUTE, p.pipeline);
                d.cmd_bind_descriptor_sets(cb, vk::PipelineBindPoint::COMPUTE, p.layout, 0, &[set], &[]);
                d.cmd_dispatch(cb, x as u32, y as u32, 1);
            }
            let to_host = [vk::MemoryBarrier::default()
                .src_access_mask(vk::AccessFlags::SHADER_WRITE)
                .dst_access_mask(vk::AccessFlags::HOST_READ)];
            let host = vk::PipelineStageFlags::HOST;
            d.cmd_pipeline_barrier(cb, compute, host, vk::DependencyFlags::empty(), &to_host, &[], &[]);
            d.end_command_buffer(cb).map_err(verr("end command buffer"))?;
            let cbs = [cb];
            let r = d
                .reset_fences(&[self.fence])
                .and_then(|_| {
                    d.queue_submit(self.queue, &[vk::SubmitInfo::default().command_buffers(&cbs)], self.fence)
                })
                .and_then(|_| d.wait_for_fences(&[self.fence], true, u64::MAX));
            if r.is_err() {
                // Nothing may stay in flight: the next stretch resets the pools, Drop frees the buffers.
                let _ = d.device_wait_idle();
            }
            r
        };
        r.map_err(verr("run the shaders"))?;
        for &(_, bufs, _) in &launches {
            for &b in bufs {
                let v = b as usize;
                if self.graph.values[v].dtype == DType::F32 && !self.consts.contains_key(&v) {
                    st.fresh[v] = Fresh::Device;
                }
            }
        }
        Ok(())
    }

    /// Runs on named inputs; the named outputs.
    pub fn run(&self, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
        let g = &self.graph;
        let mut vals = crate::session::starting_values(g, &self.consts, inputs)?;
        // A run that panicked left nothing in flight (every stretch waits); its values are reset here.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *st;
        for (v, f) in st.fresh.iter_mut().enumerate() {
            if !self.consts.contains_key(&v) {
                *f = Fresh::Host;
            }
        }
        for run in runs(&self.plan.steps) {
            match &run[0] {
                MetalStep::Launch { .. } => self.stretch(st, &vals, run)?,
                MetalStep::Reference { nodes, .. } => {
                    for &n in nodes {
                        for v in &g.nodes[n].inputs {
                            self.download(st, &mut vals, v.index())?;
                        }
                    }
                    crate::session::eval_nodes(g, nodes, &mut vals)?;
                    for &n in nodes {
                        for v in &g.nodes[n].outputs {
                            st.fresh[v.index()] = Fresh::Host;
                        }
                    }
                }
            }
        }
        for o in &g.outputs {
            self.download(st, &mut vals, o.value.index())?;
        }
        crate::session::named_outputs(g, &vals)
    }
}

/// Every launch's module, binding count and values, every reference step's nodes, in bounds; every
/// value a launch touches has a known size. Per module, its binding count (0 when never launched).
fn check_plan(g: &Graph, plan: &MetalPlan) -> Result<Vec<usize>, RuntimeError> {
    let mut bindings: Vec<Option<usize>> = vec![None; plan.modules.len()];
    for s in &plan.steps {
        match s {
            MetalStep::Launch { module, bufs, .. } => {
                let Some(want) = bindings.get_mut(*module) else {
                    return Err(RuntimeError::Malformed(format!("a launch of shader {module}, which is not there")));
                };
                let want = *want.get_or_insert(bufs.len());
                if want != bufs.len() {
                    return Err(RuntimeError::Malformed(format!(
                        "shader {module} takes {want} buffers, given {}",
                        bufs.len()
                    )));
                }
                for &b in bufs {
                    let ty = g.values.get(b as usize).ok_or_else(|| {
                        RuntimeError::Malformed(format!("a launch of shader {module} binds %{b}, which is not there"))
                    })?;
                    if ty.shape.as_consts().is_none() {
                        return Err(RuntimeError::Device(format!("%{b} has a symbolic shape")));
                    }
                }
            }
            MetalStep::Reference { nodes, .. } => {
                if let Some(n) = nodes.iter().find(|&&n| n >= g.nodes.len()) {
                    return Err(RuntimeError::Malformed(format!("a reference step runs node {n}, which is not there")));
                }
            }
        }
    }
    Ok(bindings.into_iter().map(|b| b.unwrap_or(0)).collect())
}

impl Drop for VulkanModel {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let bufs: Vec<Buffer> = st.bufs.iter_mut().filter_map(Option::take).collect();
        // SAFETY: the device idles first, so nothing is in flight; children before parents; destroying a
        // null handle (an object a failed load never made) does nothing.
        unsafe {
            let _ = self.device.device_wait_idle();
            for b in &bufs {
                self.free(b);
            }
            let d = &self.device;
            d.destroy_descriptor_pool(self.descriptor_pool, None);
            d.destroy_fence(self.fence, None);
            d.destroy_command_pool(self.command_pool, None);
            for p in &self.pipelines {
                d.destroy_pipeline(p.pipeline, None);
                d.destroy_pipeline_layout(p.layout, None);
                d.destroy_descriptor_set_layout(p.set_layout, None);
            }
            d.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}
