//! sovc-target-metal: the `metal` target. Each kernel of the kernel IR is written once as a WGSL
//! compute shader ([`wgsl`]), which `naga` (the wgpu project's shader translator) parses and
//! validates, then writes twice ([`shader`]): as Metal Shading Language for Apple GPUs and as SPIR-V,
//! which the tests validate with `spirv-val` (and which runs on any Vulkan device). naga was chosen
//! over writing two printers because it already validates the module (types, uniformity, bounds) and
//! keeps the two outputs semantically one.

pub mod attention;
pub mod gemm;
pub mod wgsl;

pub use wgsl::{cooperative, shaders, Shader, GROUP, WORKGROUP};

/// The element type contractions and attention stage their operands in (threadgroup memory); every
/// storage buffer, accumulator and loop kernel stays f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    /// Operands rounded once to IEEE half (Metal `half`, SPIR-V `Float16`): half the threadgroup
    /// memory and traffic, f32 products and sums.
    F16,
}

impl Precision {
    /// `fp32` or `f16`.
    pub fn parse(s: &str) -> Option<Precision> {
        match s {
            "fp32" | "f32" => Some(Precision::F32),
            "f16" | "fp16" => Some(Precision::F16),
            _ => None,
        }
    }

    /// The name the plan records (`fp32`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "fp32",
            Precision::F16 => "f16",
        }
    }

    /// The WGSL scalar type.
    pub(crate) fn wgsl(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }

    /// `x` (an f32 expression) rounded to this type; f16 saturates at ±65504 first, so an operand beyond
    /// f16's range becomes the largest half on every device (WGSL leaves the conversion undefined there).
    pub(crate) fn convert(self, x: &str) -> String {
        match self {
            Precision::F32 => x.to_string(),
            Precision::F16 => format!("f16(clamp({x}, -65504.0, 65504.0))"),
        }
    }

    /// Bytes per element.
    pub(crate) fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// The WGSL extension line a shader in this precision starts with.
    pub(crate) fn enable(self) -> String {
        match self {
            Precision::F32 => String::new(),
            Precision::F16 => "enable f16;\n\n".into(),
        }
    }
}

/// One shader translated: its Metal Shading Language and its SPIR-V words.
pub struct Translated {
    pub msl: String,
    pub spirv: Vec<u32>,
}

/// Parses and validates `wgsl`, then writes it as MSL (Metal 2.4; storage buffer `i` at `[[buffer(i)]]`,
/// the buffers' sizes at the slot after the last) and SPIR-V (1.3, Vulkan 1.1; set 0, binding `i`).
pub fn translate(name: &str, wgsl: &str) -> Result<Translated, String> {
    let module =
        naga::front::wgsl::parse_str(wgsl).map_err(|e| format!("shader `{name}`: {}", e.emit_to_string(wgsl)))?;
    let caps = if wgsl.starts_with("enable f16;") {
        naga::valid::Capabilities::default() | naga::valid::Capabilities::SHADER_FLOAT16
    } else {
        naga::valid::Capabilities::default()
    };
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| format!("shader `{name}` does not validate: {e:?}"))?;
    let mut resources = naga::back::msl::BindingMap::default();
    // Storage buffers only: threadgroup variables are entry-point arguments of their own.
    let nbufs = module.global_variables.iter().filter(|(_, v)| v.space != naga::AddressSpace::WorkGroup).count() as u8;
    for i in 0..nbufs {
        resources.insert(
            naga::ResourceBinding { group: 0, binding: i as u32 },
            naga::back::msl::BindTarget { buffer: Some(i), mutable: true, ..Default::default() },
        );
    }
    let entry = naga::back::msl::EntryPointResources { resources, immediates_buffer: None, sizes_buffer: Some(nbufs) };
    let msl_opts = naga::back::msl::Options {
        lang_version: (2, 4),
        per_entry_point_map: [("main".to_string(), entry)].into_iter().collect(),
        fake_missing_bindings: false,
        ..Default::default()
    };
    let (msl, _) = naga::back::msl::write_string(&module, &info, &msl_opts, &Default::default())
        .map_err(|e| format!("shader `{name}`: MSL: {e}"))?;
    // Compute shaders have no inputs or outputs: no `StorageInputOutput16` capability (which a device
    // would have to enable) for f16 modules.
    let spv_opts =
        naga::back::spv::Options { lang_version: (1, 3), use_storage_input_output_16: false, ..Default::default() };
    let spirv = naga::back::spv::write_vec(&module, &info, &spv_opts, None)
        .map_err(|e| format!("shader `{name}`: SPIR-V: {e}"))?;
    Ok(Translated { msl, spirv })
}
