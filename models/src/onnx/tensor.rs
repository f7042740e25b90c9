//! Conversion between ONNX `TensorProto` and sovc tensors, with every size checked before allocating:
//! a malformed file cannot make the importer run out of memory or read past its data.

use super::proto::{tensor_proto::DataType, TensorProto};
use super::ImportError;
use sovc_ir::{DType, Tensor};
use std::path::Path;

/// The sovc dtype of an ONNX element type, or an error naming the ONNX type.
pub fn dtype_from_onnx(code: i32, what: &str) -> Result<DType, ImportError> {
    let dt = DataType::try_from(code).ok();
    Ok(match dt {
        Some(DataType::Float) => DType::F32,
        Some(DataType::Uint8) => DType::U8,
        Some(DataType::Int8) => DType::I8,
        Some(DataType::Int32) => DType::I32,
        Some(DataType::Int64) => DType::I64,
        Some(DataType::Bool) => DType::Bool,
        Some(DataType::Float16) => DType::F16,
        Some(DataType::Double) => DType::F64,
        Some(DataType::Bfloat16) => DType::BF16,
        _ => {
            let name = dt.map(|d| d.as_str_name().to_string()).unwrap_or_else(|| format!("code {code}"));
            return Err(ImportError::UnsupportedDType { name: what.to_string(), dtype: name });
        }
    })
}

pub fn dtype_to_onnx(d: DType) -> DataType {
    match d {
        DType::F32 => DataType::Float,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
        DType::F64 => DataType::Double,
        DType::I8 => DataType::Int8,
        DType::U8 => DataType::Uint8,
        DType::I32 => DataType::Int32,
        DType::I64 => DataType::Int64,
        DType::Bool => DataType::Bool,
    }
}

/// Converts a tensor, reading external data relative to `base` when the tensor says so.
pub fn tensor_from_proto(t: &TensorProto, base: Option<&Path>, max_bytes: u64) -> Result<Tensor, ImportError> {
    let name = t.name.clone().unwrap_or_default();
    let bad = |msg: String| ImportError::Decode(format!("tensor `{name}`: {msg}"));
    let dtype = dtype_from_onnx(t.data_type.unwrap_or(0), &name)?;
    if t.segment.is_some() {
        return Err(bad("segmented tensors are not supported".into()));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut n: u64 = 1;
    for &d in &t.dims {
        if d < 0 {
            return Err(bad(format!("negative dimension {d}")));
        }
        n = n.checked_mul(d as u64).ok_or_else(|| bad(format!("dimensions {:?} overflow", t.dims)))?;
        dims.push(d as usize);
    }
    let bytes = n
        .checked_mul(dtype.size() as u64)
        .filter(|&b| b <= max_bytes)
        .ok_or_else(|| bad(format!("dimensions {:?} would need more than {} bytes", t.dims, max_bytes)))?;
    let n = n as usize;
    if t.data_location == Some(1) {
        let raw = read_external(t, base, bytes).map_err(bad)?;
        return Tensor::from_le_bytes(dtype, &dims, &raw)
            .ok_or_else(|| bad("external data has the wrong length".into()));
    }
    if let Some(raw) = &t.raw_data {
        if raw.len() as u64 != bytes {
            return Err(bad(format!("raw data has {} bytes, {bytes} expected for {:?} {dtype}", raw.len(), t.dims)));
        }
        return Tensor::from_le_bytes(dtype, &dims, raw).ok_or_else(|| bad("raw data has the wrong length".into()));
    }
    let count_err = |got: usize| bad(format!("holds {got} elements, shape {:?} needs {n}", t.dims));
    let out = match dtype {
        DType::F32 => {
            if t.float_data.len() != n {
                return Err(count_err(t.float_data.len()));
            }
            Tensor::from_vec(&dims, t.float_data.clone())
        }
        DType::F64 => {
            if t.double_data.len() != n {
                return Err(count_err(t.double_data.len()));
            }
            Tensor::from_vec(&dims, t.double_data.clone())
        }
        DType::I64 => {
            if t.int64_data.len() != n {
                return Err(count_err(t.int64_data.len()));
            }
            Tensor::from_vec(&dims, t.int64_data.clone())
        }
        DType::F16 | DType::BF16 => {
            if t.int32_data.len() != n {
                return Err(count_err(t.int32_data.len()));
            }
            let raw: Vec<u8> = t.int32_data.iter().flat_map(|&v| (v as u16).to_le_bytes()).collect();
            Tensor::from_le_bytes(dtype, &dims, &raw)
        }
        DType::I32 | DType::I8 | DType::U8 | DType::Bool => {
            if t.int32_data.len() != n {
                return Err(count_err(t.int32_data.len()));
            }
            let v: Vec<i64> = t.int32_data.iter().map(|&x| x as i64).collect();
            Some(Tensor::from_i64_slice(dtype, &dims, &v))
        }
    };
    out.ok_or_else(|| bad("data does not match the shape".into()))
}

fn read_external(t: &TensorProto, base: Option<&Path>, bytes: u64) -> Result<Vec<u8>, String> {
    let get = |k: &str| t.external_data.iter().find(|e| e.key.as_deref() == Some(k)).and_then(|e| e.value.clone());
    let loc = get("location").ok_or("external data without a location")?;
    let rel = Path::new(&loc);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("external data location `{loc}` must be a relative path inside the model's folder"));
    }
    let path = base.ok_or("external data needs the model's folder")?.join(rel);
    let offset: u64 =
        get("offset").map(|s| s.parse().map_err(|_| format!("bad offset `{s}`"))).transpose()?.unwrap_or(0);
    let length: u64 =
        get("length").map(|s| s.parse().map_err(|_| format!("bad length `{s}`"))).transpose()?.unwrap_or(bytes);
    if length != bytes {
        return Err(format!("external length {length} but the shape needs {bytes} bytes"));
    }
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let size = f.metadata().map_err(|e| e.to_string())?.len();
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(format!("{}: range {offset}+{length} is past the end of the file ({size} bytes)", path.display()));
    }
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; length as usize];
    f.read_exact(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf)
}

/// Converts a sovc tensor to an ONNX tensor with raw data.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        name: Some(name.to_string()),
        dims: t.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(dtype_to_onnx(t.dtype()) as i32),
        raw_data: Some(t.to_le_bytes()),
        ..Default::default()
    }
}
