//! Loading any model file sovc accepts (`.onnx`, `.sov` text with its weight files, `builtin:NAME`) into
//! a graph with its weights, and saving a model as `.sov` text plus one `.safetensors` file.

use crate::onnx::{self, ImportOptions};
use crate::weights;
use sovc_ir::{ConstData, Model, WeightRef, Weights};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Onnx(#[from] onnx::ImportError),
    #[error("{path}: {msg}")]
    Sov { path: String, msg: String },
    #[error(transparent)]
    Weights(#[from] weights::WeightError),
    #[error("{0}")]
    Other(String),
}

/// Loads a model by file extension; `builtin:NAME` names a built-in model.
pub fn load_model(path: &Path, opts: &ImportOptions) -> Result<Model, LoadError> {
    let s = path.to_string_lossy();
    if let Some(name) = s.strip_prefix("builtin:") {
        let m = crate::builtin::by_name(name).ok_or_else(|| {
            LoadError::Other(format!("unknown built-in model `{name}` (known: {})", crate::builtin::NAMES.join(", ")))
        })?;
        return fix_shapes(m, opts);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => Ok(onnx::import_file(path, opts)?),
        Some("sov") => fix_shapes(load_sov(path)?, opts),
        _ => Err(LoadError::Other(format!(
            "{}: unknown model format (expected .onnx, .sov or builtin:NAME)",
            path.display()
        ))),
    }
}

/// Applies `--shape` to a graph that is already IR: binds the symbols its inputs use.
fn fix_shapes(mut m: Model, opts: &ImportOptions) -> Result<Model, LoadError> {
    if opts.shapes.is_empty() {
        return Ok(m);
    }
    let mut bind = BTreeMap::new();
    for (name, dims) in &opts.shapes {
        let x = m
            .graph
            .inputs
            .iter()
            .find(|x| &x.name == name)
            .ok_or_else(|| LoadError::Other(format!("--shape names `{name}`, which is not a graph input")))?;
        let ty = m.graph.ty(x.value);
        if ty.shape.rank() != dims.len() {
            return Err(LoadError::Other(format!(
                "--shape {name}: {} dims given, the input has rank {}",
                dims.len(),
                ty.shape.rank()
            )));
        }
        for (d, &v) in ty.shape.0.iter().zip(dims) {
            match d {
                sovc_ir::Dim::Sym { name: s, .. } => {
                    bind.insert(s.clone(), v);
                }
                sovc_ir::Dim::Const(c) if *c != v => {
                    return Err(LoadError::Other(format!("--shape {name}: dimension {c} cannot be changed to {v}")))
                }
                sovc_ir::Dim::Const(_) => {}
            }
        }
    }
    for t in &mut m.graph.values {
        t.shape = t.shape.substitute(&bind);
    }
    for n in &mut m.graph.nodes {
        if let sovc_ir::Op::Reshape { shape } | sovc_ir::Op::Expand { shape } = &mut n.op {
            *shape = shape.substitute(&bind);
        }
    }
    sovc_ir::verify(&m.graph).map_err(|e| LoadError::Other(format!("after --shape: {}", e[0])))?;
    Ok(m)
}

/// Reads a `.sov` file and the weight files it references (relative to its folder).
pub fn load_sov(path: &Path) -> Result<Model, LoadError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError::Sov { path: p.clone(), msg: e.to_string() })?;
    let graph = sovc_ir::text::parse(&text).map_err(|e| LoadError::Sov { path: p.clone(), msg: e.to_string() })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut files: BTreeMap<String, BTreeMap<String, sovc_ir::Tensor>> = BTreeMap::new();
    let mut weights = Weights::default();
    for c in &graph.consts {
        let ConstData::Weight(r) = &c.data else { continue };
        if !files.contains_key(&r.file) {
            files.insert(r.file.clone(), read_weight_file(&dir.join(&r.file))?);
        }
        let t = files[&r.file].get(&r.key).ok_or_else(|| LoadError::Sov {
            path: p.clone(),
            msg: format!("weight `{}` is not in `{}`", r.key, r.file),
        })?;
        weights.insert(r.clone(), t.clone());
    }
    Ok(Model { graph, weights })
}

fn read_weight_file(path: &Path) -> Result<BTreeMap<String, sovc_ir::Tensor>, LoadError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Ok(weights::read_safetensors(path)?),
        Some("onnx") => {
            let m = onnx::import_file(path, &ImportOptions::default())?;
            Ok(m.weights.map.into_iter().map(|(k, v)| (k.key, (*v).clone())).collect())
        }
        _ => Err(LoadError::Other(format!("{}: weights must be .safetensors or .onnx", path.display()))),
    }
}

/// Writes `model` as `path` (`.sov` text) and, if it has weights, `path` with extension `.safetensors`.
/// Weight references are rewritten to point at that file. Returns the weight file written, if any.
pub fn save_sov(model: &Model, path: &Path) -> Result<Option<PathBuf>, LoadError> {
    let mut g = model.graph.clone();
    let wpath = path.with_extension("safetensors");
    let wfile = wpath.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let mut out: BTreeMap<String, &sovc_ir::Tensor> = BTreeMap::new();
    for c in &mut g.consts {
        let ConstData::Weight(r) = &c.data else { continue };
        let t = model
            .weights
            .get(r)
            .ok_or_else(|| LoadError::Other(format!("weight `{}` of `{}` is not loaded", r.key, r.file)))?;
        let mut key = r.key.clone();
        let mut k = 1;
        while out.get(&key).is_some_and(|prev| !std::ptr::eq(*prev, &**t)) {
            key = format!("{}#{k}", r.key);
            k += 1;
        }
        out.insert(key.clone(), t);
        c.data = ConstData::Weight(WeightRef { file: wfile.clone(), key });
    }
    let text = sovc_ir::text::print(&g);
    std::fs::write(path, text).map_err(|e| LoadError::Sov { path: path.display().to_string(), msg: e.to_string() })?;
    if out.is_empty() {
        return Ok(None);
    }
    weights::write_safetensors(&wpath, &out)?;
    Ok(Some(wpath))
}
