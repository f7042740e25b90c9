//! safetensors weight files: reading them into sovc tensors (through the `safetensors` crate) and writing
//! a model's weights out, so a `.sov` text graph plus one `.safetensors` file is a complete model.

use safetensors::tensor::{Dtype, TensorView};
use sovc_ir::{DType, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
}

fn to_dtype(d: Dtype) -> Option<DType> {
    Some(match d {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F64 => DType::F64,
        Dtype::I8 => DType::I8,
        Dtype::U8 => DType::U8,
        Dtype::I32 => DType::I32,
        Dtype::I64 => DType::I64,
        Dtype::BOOL => DType::Bool,
        _ => return None,
    })
}

fn from_dtype(d: DType) -> Dtype {
    match d {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        DType::F64 => Dtype::F64,
        DType::I8 => Dtype::I8,
        DType::U8 => Dtype::U8,
        DType::I32 => Dtype::I32,
        DType::I64 => Dtype::I64,
        DType::Bool => Dtype::BOOL,
    }
}

/// Parses safetensors bytes into named tensors.
pub fn parse_safetensors(bytes: &[u8]) -> Result<BTreeMap<String, Tensor>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let dtype = to_dtype(view.dtype())
            .ok_or_else(|| format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()))?;
        let t = Tensor::from_le_bytes(dtype, view.shape(), view.data())
            .ok_or_else(|| format!("tensor `{name}`: data does not match its shape"))?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Reads a `.safetensors` file.
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, WeightError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| WeightError::Io { path: p.clone(), msg: e.to_string() })?;
    parse_safetensors(&bytes).map_err(|msg| WeightError::Format { path: p, msg })
}

/// Serializes named tensors as safetensors bytes (sorted by name, so the output is deterministic).
pub fn safetensors_bytes(tensors: &BTreeMap<String, &Tensor>) -> Result<Vec<u8>, String> {
    let raw: Vec<(String, DType, Vec<usize>, Vec<u8>)> =
        tensors.iter().map(|(n, t)| (n.clone(), t.dtype(), t.shape().to_vec(), t.to_le_bytes())).collect();
    let views: Vec<(String, TensorView)> = raw
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(from_dtype(*d), s.clone(), b).map(|v| (n.clone(), v)).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

/// Writes named tensors to a `.safetensors` file.
pub fn write_safetensors(path: &Path, tensors: &BTreeMap<String, &Tensor>) -> Result<(), WeightError> {
    let p = path.display().to_string();
    let bytes = safetensors_bytes(tensors).map_err(|msg| WeightError::Format { path: p.clone(), msg })?;
    std::fs::write(path, bytes).map_err(|e| WeightError::Io { path: p, msg: e.to_string() })
}
