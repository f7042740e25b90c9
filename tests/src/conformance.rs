//! The ONNX backend node-test harness: every test under `onnx/backend/test/data/node/` is imported, run on
//! the reference interpreter and compared as onnxruntime's backend runner compares (rtol 1e-3, atol 1e-7
//! for floats, exact otherwise). Graph inputs that an op needs at compile time (a Reshape's shape, say) are
//! bound as constants and the import is retried, as a user would with a fixed-shape model.

use prost::Message;
use sovc_ir::{interp, Tensor};
use sovc_models::onnx::{self, proto, ImportError, ImportOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a test did not pass.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    UnsupportedOp(String),
    UnsupportedType(String),
    Mismatch(String),
    Error(String),
}

impl Failure {
    pub fn group(&self) -> &'static str {
        match self {
            Failure::UnsupportedOp(_) => "unsupported op",
            Failure::UnsupportedType(_) => "unsupported dtype",
            Failure::Mismatch(_) => "mismatch",
            Failure::Error(_) => "error",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Failure::UnsupportedOp(s) | Failure::UnsupportedType(s) | Failure::Mismatch(s) | Failure::Error(s) => s,
        }
    }
}

/// Where onnx's node tests are: `$SOVC_ONNX_NODE_DIR`, or found through the project's `.venv`.
pub fn node_test_dir(root: &Path) -> Option<PathBuf> {
    if let Ok(d) = std::env::var("SOVC_ONNX_NODE_DIR") {
        return Some(PathBuf::from(d));
    }
    let py = root.join(".venv/bin/python");
    let out = std::process::Command::new(py)
        .args(["-c", "import onnx, os; print(os.path.dirname(onnx.__file__))"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("backend/test/data/node");
    dir.is_dir().then_some(dir)
}

fn read_tensor(path: &Path) -> Result<Tensor, Failure> {
    let bytes = std::fs::read(path).map_err(|e| Failure::Error(format!("{}: {e}", path.display())))?;
    let t = proto::TensorProto::decode(bytes.as_slice()).map_err(|e| Failure::Error(e.to_string()))?;
    onnx::tensor_from_proto(&t, None, 1 << 32).map_err(classify)
}

fn classify(e: ImportError) -> Failure {
    match e {
        ImportError::UnsupportedOp { op_type, .. } => Failure::UnsupportedOp(op_type),
        ImportError::UnsupportedDType { dtype, .. } => Failure::UnsupportedType(dtype),
        e => {
            let s = e.to_string();
            if s.contains("is not a tensor") {
                Failure::UnsupportedType("non-tensor value".into())
            } else {
                Failure::Error(s)
            }
        }
    }
}

/// Compares as onnxruntime's backend test runner does.
pub fn compare(name: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!("{name}: dtype {} but expected {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!("{name}: shape {:?} but expected {:?}", got.shape(), want.shape()));
    }
    let float = got.dtype().is_float();
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &b)) in g.iter().zip(&w).enumerate() {
        let ok =
            if float { (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-7 + 1e-3 * b.abs() } else { a == b };
        if !ok {
            let d = (a - b).abs();
            if worst.is_none_or(|(_, wd)| d > wd || wd.is_nan()) {
                worst = Some((i, d));
            }
        }
    }
    match worst {
        None => Ok(()),
        Some((i, d)) => Err(format!("{name}: element {i} is {} but expected {} (|diff| {d:.3e})", g[i], w[i])),
    }
}

/// Runs one test directory.
pub fn run_one(dir: &Path) -> Result<(), Failure> {
    let bytes = std::fs::read(dir.join("model.onnx")).map_err(|e| Failure::Error(e.to_string()))?;
    let model = proto::ModelProto::decode(bytes.as_slice()).map_err(|e| Failure::Error(e.to_string()))?;
    let graph = model.graph.as_ref().ok_or_else(|| Failure::Error("no graph".into()))?;
    let non_tensor = graph.input.iter().chain(&graph.output).any(|v| {
        !matches!(v.r#type.as_ref().and_then(|t| t.value.as_ref()), Some(proto::type_proto::Value::TensorType(_)))
    });
    if non_tensor {
        return Err(Failure::UnsupportedType("non-tensor value".into()));
    }
    let init: std::collections::HashSet<&str> = graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
    let input_names: Vec<String> =
        graph.input.iter().filter_map(|i| i.name.clone()).filter(|n| !init.contains(n.as_str())).collect();
    let output_names: Vec<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    let data = dir.join("test_data_set_0");
    let mut inputs = BTreeMap::new();
    for (i, n) in input_names.iter().enumerate() {
        let p = data.join(format!("input_{i}.pb"));
        if !p.exists() {
            continue;
        }
        inputs.insert(n.clone(), read_tensor(&p)?);
    }
    let mut opts = ImportOptions::default();
    let m = loop {
        match onnx::import_model(&model, "model.onnx", &opts) {
            Ok(m) => break m,
            Err(ImportError::NeedsConstant { input, .. }) if inputs.contains_key(&input) => {
                let t = inputs.remove(&input).expect("checked");
                opts.constant_inputs.insert(input, t);
            }
            Err(ImportError::NeedsConstant { .. }) if inputs.values().any(|t| t.dtype().is_int()) => {
                // A value computed from inputs must be static: bind the integer inputs (sizes, shapes).
                let ints: Vec<String> =
                    inputs.iter().filter(|(_, t)| t.dtype().is_int()).map(|(n, _)| n.clone()).collect();
                for n in ints {
                    let t = inputs.remove(&n).expect("listed");
                    opts.constant_inputs.insert(n, t);
                }
            }
            Err(e) => return Err(classify(e)),
        }
    };
    let outs = interp::run(&m.graph, &m.weights, &inputs).map_err(|e| Failure::Error(e.to_string()))?;
    for (i, n) in output_names.iter().enumerate() {
        let want = read_tensor(&data.join(format!("output_{i}.pb")))?;
        let got = outs.get(n).ok_or_else(|| Failure::Error(format!("output `{n}` missing")))?;
        compare(n, got, &want).map_err(Failure::Mismatch)?;
    }
    Ok(())
}

/// The result of a whole run: test name -> failure (None when passed).
pub struct Report {
    pub results: BTreeMap<String, Option<Failure>>,
}

/// Runs every test under `dir` on `threads` threads. A panic in one test is caught and reported as an error.
pub fn run_all(dir: &Path, threads: usize) -> Report {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.join("model.onnx").exists()).collect())
        .unwrap_or_default();
    names.sort();
    let results = std::sync::Mutex::new(BTreeMap::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = names.get(i) else { break };
                let name = p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                let r = std::panic::catch_unwind(|| run_one(p)).unwrap_or_else(|e| {
                    let msg =
                        e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                    Err(Failure::Error(format!("panic: {}", msg.unwrap_or_default())))
                });
                results.lock().expect("no poisoned lock").insert(name, r.err());
            });
        }
    });
    Report { results: results.into_inner().expect("no poisoned lock") }
}

impl Report {
    pub fn passed(&self) -> Vec<&str> {
        self.results.iter().filter(|(_, r)| r.is_none()).map(|(n, _)| n.as_str()).collect()
    }

    /// A summary: counts, then failures grouped by reason (unsupported ops by op, with counts).
    pub fn summary(&self, verbose: bool) -> String {
        let passed = self.passed().len();
        let failed = self.results.len() - passed;
        let mut groups: BTreeMap<&str, BTreeMap<String, Vec<&str>>> = BTreeMap::new();
        for (n, r) in &self.results {
            if let Some(f) = r {
                let key = match f {
                    Failure::UnsupportedOp(op) => op.clone(),
                    Failure::UnsupportedType(t) => t.clone(),
                    _ => String::new(),
                };
                groups.entry(f.group()).or_default().entry(key).or_default().push(n);
            }
        }
        let mut s = String::new();
        for (g, m) in &groups {
            let total: usize = m.values().map(Vec::len).sum();
            s.push_str(&format!("{g}: {total}\n"));
            let mut items: Vec<(&String, &Vec<&str>)> = m.iter().collect();
            items.sort_by_key(|(k, v)| (std::cmp::Reverse(v.len()), (*k).clone()));
            for (k, tests) in items {
                if !k.is_empty() {
                    s.push_str(&format!("  {k}: {}\n", tests.len()));
                }
                if verbose || k.is_empty() {
                    for t in tests {
                        let detail = self.results[*t].as_ref().map(|f| f.detail().to_string()).unwrap_or_default();
                        let detail: String = detail.chars().take(200).collect();
                        s.push_str(&format!("    {t}: {detail}\n"));
                    }
                }
            }
        }
        s.push_str(&format!("{passed} passed, {failed} failed\n"));
        s
    }
}
