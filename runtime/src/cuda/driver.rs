//! `--device cuda`: a `cuda` artifact's plan on an NVIDIA GPU through the CUDA driver API, found at run
//! time (`dlopen("libcuda.so.1")`; nothing CUDA is needed to build sovc). Every graph value a launch
//! touches gets a device buffer; inputs and constants are copied up once, launches run in plan order
//! (the PTX modules are JIT-compiled by the driver for the GPU at hand), reference steps copy their
//! inputs down, run on the interpreter and copy their results up, and the outputs are copied down.

use super::{CudaPlan, CudaStep};
use crate::RuntimeError;
use sovc_ir::{DType, Graph, Tensor};
use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

type CuResult = c_int;
type CuDevicePtr = u64;

/// The driver entry points sovc calls, resolved with `dlsym`.
struct Api {
    init: unsafe extern "C" fn(c_uint) -> CuResult,
    device_get: unsafe extern "C" fn(*mut c_int, c_int) -> CuResult,
    ctx_create: unsafe extern "C" fn(*mut *mut c_void, c_uint, c_int) -> CuResult,
    ctx_destroy: unsafe extern "C" fn(*mut c_void) -> CuResult,
    ctx_set_current: unsafe extern "C" fn(*mut c_void) -> CuResult,
    module_load_data: unsafe extern "C" fn(*mut *mut c_void, *const c_void) -> CuResult,
    module_get_function: unsafe extern "C" fn(*mut *mut c_void, *mut c_void, *const c_char) -> CuResult,
    mem_alloc: unsafe extern "C" fn(*mut CuDevicePtr, usize) -> CuResult,
    mem_free: unsafe extern "C" fn(CuDevicePtr) -> CuResult,
    htod: unsafe extern "C" fn(CuDevicePtr, *const c_void, usize) -> CuResult,
    dtoh: unsafe extern "C" fn(*mut c_void, CuDevicePtr, usize) -> CuResult,
    launch: unsafe extern "C" fn(
        *mut c_void,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        c_uint,
        *mut c_void,
        *mut *mut c_void,
        *mut *mut c_void,
    ) -> CuResult,
    synchronize: unsafe extern "C" fn() -> CuResult,
    error_string: unsafe extern "C" fn(CuResult, *mut *const c_char) -> CuResult,
}

impl Api {
    fn load() -> Result<Api, RuntimeError> {
        let lib = CString::new("libcuda.so.1").expect("no NUL");
        // SAFETY: dlopen with a valid C string; a null handle is handled below.
        let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            return Err(RuntimeError::Device(
                "the cuda device needs the NVIDIA driver (libcuda.so.1 was not found); use --device ptx-emu to run the PTX without a GPU".into(),
            ));
        }
        let sym = |name: &str| -> Result<*mut c_void, RuntimeError> {
            let c = CString::new(name).expect("no NUL");
            // SAFETY: `h` is a live handle from dlopen and `c` a valid C string.
            let p = unsafe { libc::dlsym(h, c.as_ptr()) };
            if p.is_null() {
                Err(RuntimeError::Device(format!("libcuda.so.1 has no `{name}`")))
            } else {
                Ok(p)
            }
        };
        // SAFETY: each symbol is the driver API function of that name, whose C signature the field's
        // type spells (CUDA driver API, cuda.h).
        unsafe {
            Ok(Api {
                init: as_fn(sym("cuInit")?),
                device_get: as_fn(sym("cuDeviceGet")?),
                ctx_create: as_fn(sym("cuCtxCreate_v2")?),
                ctx_destroy: as_fn(sym("cuCtxDestroy_v2")?),
                ctx_set_current: as_fn(sym("cuCtxSetCurrent")?),
                module_load_data: as_fn(sym("cuModuleLoadData")?),
                module_get_function: as_fn(sym("cuModuleGetFunction")?),
                mem_alloc: as_fn(sym("cuMemAlloc_v2")?),
                mem_free: as_fn(sym("cuMemFree_v2")?),
                htod: as_fn(sym("cuMemcpyHtoD_v2")?),
                dtoh: as_fn(sym("cuMemcpyDtoH_v2")?),
                launch: as_fn(sym("cuLaunchKernel")?),
                synchronize: as_fn(sym("cuCtxSynchronize")?),
                error_string: as_fn(sym("cuGetErrorString")?),
            })
        }
    }

    /// `Ok` for CUDA_SUCCESS, else the driver's message with what was being done.
    fn check(&self, r: CuResult, what: &str) -> Result<(), RuntimeError> {
        if r == 0 {
            return Ok(());
        }
        let mut s: *const c_char = std::ptr::null();
        // SAFETY: cuGetErrorString writes a pointer to a static string (or leaves it null).
        let msg = unsafe {
            (self.error_string)(r, &mut s);
            if s.is_null() {
                format!("error {r}")
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        };
        Err(RuntimeError::Device(format!("cuda: {what}: {msg}")))
    }
}

/// A symbol's address as the function pointer type `F`.
///
/// # Safety
/// `F` must be a function pointer type with the symbol's C signature.
unsafe fn as_fn<F>(p: *mut c_void) -> F {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: same size; the caller vouches for the signature.
    unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) }
}

/// A `cuda` artifact ready to run on the GPU.
pub struct CudaModel {
    api: Api,
    ctx: *mut c_void,
    graph: Graph,
    plan: CudaPlan,
    consts: BTreeMap<usize, Tensor>,
    /// Per launch step: its function.
    functions: Vec<*mut c_void>,
}

impl CudaModel {
    /// Opens GPU 0, JIT-compiles every module and looks up every launch's entry.
    pub fn new(graph: Graph, plan: CudaPlan, consts: BTreeMap<usize, Tensor>) -> Result<CudaModel, RuntimeError> {
        let api = Api::load()?;
        let mut dev: c_int = 0;
        let mut ctx: *mut c_void = std::ptr::null_mut();
        // SAFETY: driver calls with valid out-pointers, in the order the API requires.
        unsafe {
            api.check((api.init)(0), "cuInit")?;
            api.check((api.device_get)(&mut dev, 0), "cuDeviceGet")?;
            api.check((api.ctx_create)(&mut ctx, 0, dev), "cuCtxCreate")?;
        }
        let mut modules = Vec::new();
        for m in &plan.modules {
            let text =
                CString::new(m.ptx.clone()).map_err(|_| RuntimeError::Malformed("PTX with a NUL byte".into()))?;
            let mut module: *mut c_void = std::ptr::null_mut();
            // SAFETY: the PTX is a NUL-terminated string that outlives the call.
            unsafe {
                api.check((api.module_load_data)(&mut module, text.as_ptr().cast()), &format!("loading `{}`", m.name))?
            };
            modules.push(module);
        }
        let mut functions = Vec::new();
        for s in &plan.steps {
            if let CudaStep::Launch { module, entry, .. } = s {
                let m = *modules
                    .get(*module)
                    .ok_or_else(|| RuntimeError::Malformed(format!("module {module} does not exist")))?;
                let name = CString::new(entry.clone()).map_err(|_| RuntimeError::Malformed("entry name".into()))?;
                let mut f: *mut c_void = std::ptr::null_mut();
                // SAFETY: `m` is a loaded module and `name` a valid C string.
                unsafe { api.check((api.module_get_function)(&mut f, m, name.as_ptr()), &format!("entry `{entry}`"))? };
                functions.push(f);
            }
        }
        Ok(CudaModel { api, ctx, graph, plan, consts, functions })
    }

    /// Runs on named inputs; returns the named outputs.
    pub fn run(&self, inputs: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Tensor>, RuntimeError> {
        let g = &self.graph;
        let api = &self.api;
        let numel = |v: usize| g.values[v].shape.as_consts().map(|d| d.iter().product::<usize>()).unwrap_or(0);
        let mut host: BTreeMap<usize, Tensor> = self.consts.clone();
        for i in &g.inputs {
            let t = inputs.get(&i.name).ok_or_else(|| RuntimeError::Device(format!("missing input `{}`", i.name)))?;
            host.insert(i.value.index(), t.clone());
        }
        // The context is current on the thread that created it; make it current on this one.
        // SAFETY: `self.ctx` is this model's live context.
        unsafe { api.check((api.ctx_set_current)(self.ctx), "cuCtxSetCurrent")? };
        let mut dev: BTreeMap<usize, CuDevicePtr> = BTreeMap::new();
        let result = (|| -> Result<BTreeMap<String, Tensor>, RuntimeError> {
            let up = |dev: &mut BTreeMap<usize, CuDevicePtr>, v: usize, t: &Tensor| -> Result<(), RuntimeError> {
                let data: Vec<f32> = t.cast(DType::F32).to_f64_vec().into_iter().map(|x| x as f32).collect();
                let p = alloc(api, dev, v, numel(v))?;
                // SAFETY: `p` holds numel(v) f32s; `data` has as many.
                unsafe { api.check((api.htod)(p, data.as_ptr().cast(), data.len() * 4), "copy to the GPU") }
            };
            let down = |dev: &BTreeMap<usize, CuDevicePtr>, v: usize| -> Result<Tensor, RuntimeError> {
                let n = numel(v);
                let mut data = vec![0f32; n];
                let p = dev[&v];
                // SAFETY: `p` holds n f32s.
                unsafe { api.check((api.dtoh)(data.as_mut_ptr().cast(), p, n * 4), "copy from the GPU")? };
                let shape = g.values[v].shape.as_consts().unwrap_or_default();
                Tensor::from_vec(&shape, data).ok_or_else(|| RuntimeError::Device(format!("%{v}: size mismatch")))
            };
            let mut f = 0;
            for step in &self.plan.steps {
                match step {
                    CudaStep::Launch { bufs, threads, entry, .. } => {
                        for &b in bufs {
                            let b = b as usize;
                            if !dev.contains_key(&b) {
                                match host.get(&b) {
                                    Some(t) => up(&mut dev, b, &t.clone())?,
                                    None => {
                                        alloc(api, &mut dev, b, numel(b))?;
                                    }
                                }
                            }
                        }
                        let mut args: Vec<u64> = bufs.iter().map(|&b| dev[&(b as usize)]).collect();
                        args.push(*threads);
                        let mut ptrs: Vec<*mut c_void> = args.iter_mut().map(|a| (a as *mut u64).cast()).collect();
                        let blocks = threads.div_ceil(self.plan.block).max(1);
                        // SAFETY: `ptrs` points at one u64 per parameter of the entry, alive for the call.
                        unsafe {
                            api.check(
                                (api.launch)(
                                    self.functions[f],
                                    blocks as c_uint,
                                    1,
                                    1,
                                    self.plan.block as c_uint,
                                    1,
                                    1,
                                    0,
                                    std::ptr::null_mut(),
                                    ptrs.as_mut_ptr(),
                                    std::ptr::null_mut(),
                                ),
                                &format!("launching `{entry}`"),
                            )?;
                            api.check((api.synchronize)(), &format!("running `{entry}`"))?;
                        }
                        f += 1;
                        // Values written on the GPU are no longer current on the host.
                        for &b in bufs {
                            if !self.consts.contains_key(&(b as usize)) {
                                host.remove(&(b as usize));
                            }
                        }
                    }
                    CudaStep::Reference { nodes, .. } => {
                        for &n in nodes {
                            let node = &g.nodes[n];
                            for v in &node.inputs {
                                if let std::collections::btree_map::Entry::Vacant(e) = host.entry(v.index()) {
                                    e.insert(down(&dev, v.index())?);
                                }
                            }
                            let ins: Vec<&Tensor> = node.inputs.iter().map(|v| &host[&v.index()]).collect();
                            let outs = crate::session::eval_node(node, &ins)?;
                            for (v, t) in node.outputs.iter().zip(outs) {
                                if dev.contains_key(&v.index()) {
                                    up(&mut dev, v.index(), &t)?;
                                }
                                host.insert(v.index(), t);
                            }
                        }
                    }
                }
            }
            let mut out = BTreeMap::new();
            for o in &g.outputs {
                let v = o.value.index();
                let t = match host.get(&v) {
                    Some(t) => t.clone(),
                    None if dev.contains_key(&v) => down(&dev, v)?,
                    None => return Err(RuntimeError::Device(format!("output `{}` was never computed", o.name))),
                };
                out.insert(o.name.clone(), t);
            }
            Ok(out)
        })();
        for (_, p) in dev {
            // SAFETY: every pointer came from cuMemAlloc and is freed once.
            unsafe { (api.mem_free)(p) };
        }
        result
    }
}

/// The device buffer of value `v` (`n` f32s), allocated on first use.
fn alloc(api: &Api, dev: &mut BTreeMap<usize, CuDevicePtr>, v: usize, n: usize) -> Result<CuDevicePtr, RuntimeError> {
    if let Some(&p) = dev.get(&v) {
        return Ok(p);
    }
    let mut p: CuDevicePtr = 0;
    // SAFETY: a valid out-pointer; at least 4 bytes so that empty values have an address.
    unsafe { api.check((api.mem_alloc)(&mut p, (n * 4).max(4)), "cuMemAlloc")? };
    dev.insert(v, p);
    Ok(p)
}

// SAFETY: the raw pointers are driver handles (context, functions), not memory this process reads; the
// driver API is thread-safe, and `run` makes the context current on the calling thread first.
unsafe impl Send for CudaModel {}
unsafe impl Sync for CudaModel {}

impl Drop for CudaModel {
    fn drop(&mut self) {
        // SAFETY: the context was created by this model and is destroyed once (its modules with it).
        unsafe { (self.api.ctx_destroy)(self.ctx) };
    }
}
