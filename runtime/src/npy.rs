//! Reading and writing tensors as NumPy `.npy` files (through the `npyz` crate), the runtime's input and
//! output format. Every dtype sovc has except bf16 (which NumPy has no standard code for) round-trips.

use half::f16;
use sovc_ir::{DType, Tensor};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor, NpyError> {
    let p = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| NpyError::Io { path: p.clone(), msg: e.to_string() })?;
    parse_npy(&bytes).map_err(|msg| NpyError::Format { path: p, msg })
}

/// Parses `.npy` bytes.
pub fn parse_npy(bytes: &[u8]) -> Result<Tensor, String> {
    let f = npyz::NpyFile::new(bytes).map_err(|e| format!("not a .npy file: {e}"))?;
    let shape: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    let fortran = f.order() == npyz::Order::Fortran;
    let descr = match f.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        d => return Err(format!("unsupported dtype {d:?} (structured arrays are not tensors)")),
    };
    let dtype = match descr.as_str() {
        "<f4" => DType::F32,
        "<f8" => DType::F64,
        "<f2" => DType::F16,
        "|i1" | "<i1" => DType::I8,
        "|u1" | "<u1" => DType::U8,
        "<i4" => DType::I32,
        "<i8" => DType::I64,
        "|b1" | "<b1" => DType::Bool,
        d => return Err(format!("unsupported dtype `{d}` (sovc reads f32, f64, f16, i8, u8, i32, i64, bool)")),
    };
    if n.checked_mul(dtype.size()).is_none_or(|b| b > bytes.len()) {
        return Err(format!("shape {shape:?} needs more data than the file holds"));
    }
    // Fortran order: read as the reversed shape, then transpose back.
    let read_shape: Vec<usize> = if fortran { shape.iter().rev().copied().collect() } else { shape.clone() };
    let t = match dtype {
        DType::F32 => Tensor::from_vec(&read_shape, f.into_vec::<f32>().map_err(|e| e.to_string())?),
        DType::F64 => Tensor::from_vec(&read_shape, f.into_vec::<f64>().map_err(|e| e.to_string())?),
        DType::F16 => Tensor::from_vec(&read_shape, f.into_vec::<f16>().map_err(|e| e.to_string())?),
        DType::I8 => Tensor::from_vec(&read_shape, f.into_vec::<i8>().map_err(|e| e.to_string())?),
        DType::U8 => Tensor::from_vec(&read_shape, f.into_vec::<u8>().map_err(|e| e.to_string())?),
        DType::I32 => Tensor::from_vec(&read_shape, f.into_vec::<i32>().map_err(|e| e.to_string())?),
        DType::I64 => Tensor::from_vec(&read_shape, f.into_vec::<i64>().map_err(|e| e.to_string())?),
        DType::Bool => Tensor::from_vec(&read_shape, f.into_vec::<bool>().map_err(|e| e.to_string())?),
        DType::BF16 => None,
    }
    .ok_or("data does not match the shape")?;
    if fortran && shape.len() > 1 {
        let perm: Vec<i64> = (0..shape.len() as i64).rev().collect();
        return Ok(sovc_ir::interp::eval(&sovc_ir::Op::Transpose { perm }, &[&t], &Default::default())?.remove(0));
    }
    Ok(t)
}

/// Reads every `PREFIX<name>.npy` in `dir` as `name -> tensor` (the layout of exported test data:
/// `input.<name>.npy`, `output.<name>.npy`).
pub fn read_npy_dir(dir: &Path, prefix: &str) -> Result<std::collections::BTreeMap<String, Tensor>, NpyError> {
    let io = |e: std::io::Error| NpyError::Io { path: dir.display().to_string(), msg: e.to_string() };
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let p = e.map_err(io)?.path();
        let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
        if let Some(name) = f.strip_prefix(prefix).and_then(|n| n.strip_suffix(".npy")) {
            out.insert(name.to_string(), read_npy(&p)?);
        }
    }
    Ok(out)
}

/// A tensor name as a safe file name: characters outside `[A-Za-z0-9._-]` become `_` (and `.`/`..` are
/// prefixed), so output names cannot escape the output folder.
pub fn file_safe(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() || s == "." || s == ".." {
        format!("_{s}")
    } else {
        s
    }
}

/// Serializes a tensor as `.npy` bytes.
pub fn npy_bytes(t: &Tensor) -> Result<Vec<u8>, String> {
    use npyz::WriterBuilder;
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    macro_rules! write {
        ($ty:ty, $a:expr) => {{
            let mut w = npyz::WriteOptions::<$ty>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut out)
                .begin_nd()
                .map_err(|e| e.to_string())?;
            w.extend($a.iter().copied()).map_err(|e| e.to_string())?;
            w.finish().map_err(|e| e.to_string())?;
        }};
    }
    match t {
        Tensor::F32(a) => write!(f32, a),
        Tensor::F64(a) => write!(f64, a),
        Tensor::F16(a) => write!(f16, a),
        Tensor::I8(a) => write!(i8, a),
        Tensor::U8(a) => write!(u8, a),
        Tensor::I32(a) => write!(i32, a),
        Tensor::I64(a) => write!(i64, a),
        Tensor::Bool(a) => write!(bool, a),
        Tensor::BF16(_) => return Err("bf16 has no .npy dtype; cast the output to f32".into()),
    }
    Ok(out)
}

/// Writes a tensor to a `.npy` file.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<(), NpyError> {
    let p = path.display().to_string();
    let bytes = npy_bytes(t).map_err(|msg| NpyError::Format { path: p.clone(), msg })?;
    std::fs::write(path, bytes).map_err(|e| NpyError::Io { path: p, msg: e.to_string() })
}
