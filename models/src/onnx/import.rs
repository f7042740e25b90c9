//! The import driver: graph inputs, initializers, then every node in order through its op handler, with
//! constant folding of nodes whose inputs are all known (shape arithmetic, weight transposes) and symbolic
//! propagation of shapes that depend on dynamic dimensions.

use super::proto::{self, ModelProto, NodeProto};
use super::tensor::{dtype_from_onnx, tensor_from_proto};
use super::{ImportError, ImportOptions, DEFAULT_MAX_TENSOR_BYTES, MAX_OPSET, MIN_OPSET};
use prost::Message;
use sovc_ir::{interp, ConstData, Dim, Graph, Model, Op, Shape, Tensor, TensorType, ValueId, WeightRef, Weights};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Constants with at most this many elements are printed inline in the IR; larger ones are weights.
pub const INLINE_LIMIT: usize = 16;
/// Nodes whose inputs are all known are folded when their results have at most this many elements.
const FOLD_LIMIT: u64 = 1 << 24;

/// An ONNX value during import: a graph value, a known tensor, or a shape with symbolic dims (or several).
#[derive(Clone, Debug)]
pub struct Val {
    /// The ONNX name (empty for temporaries).
    pub name: String,
    pub id: Option<ValueId>,
    pub ty: TensorType,
    pub known: Option<Arc<Tensor>>,
    /// For small integer tensors that hold dimensions, some symbolic: the entries (row-major).
    pub dims: Option<Vec<DimVal>>,
    /// Known value that came from an initializer (materialized as a weight under its own name).
    pub initializer: bool,
}

impl Val {
    pub fn known(t: Tensor) -> Val {
        Val { name: String::new(), id: None, ty: t.ty(), known: Some(Arc::new(t)), dims: None, initializer: false }
    }

    /// A 1-D (or scalar when `scalar`) i64 value holding dims, some symbolic.
    pub fn dims(dims: Vec<DimVal>, scalar: bool) -> Val {
        if let Some(v) = dims.iter().map(DimVal::as_int).collect::<Option<Vec<i64>>>() {
            let shape: Vec<usize> = if scalar { vec![] } else { vec![v.len()] };
            return Val::known(Tensor::from_vec(&shape, v).expect("length matches"));
        }
        let shape = if scalar { Shape::scalar() } else { Shape::from_consts(&[dims.len()]) };
        Val {
            name: String::new(),
            id: None,
            ty: TensorType::new(sovc_ir::DType::I64, shape),
            known: None,
            dims: Some(dims),
            initializer: false,
        }
    }

    /// Integer contents as entries (known values or symbolic dims).
    pub fn as_dims(&self) -> Option<Vec<DimVal>> {
        if let Some(d) = &self.dims {
            return Some(d.clone());
        }
        let t = self.known.as_ref()?;
        if t.dtype().is_float() || t.dtype() == sovc_ir::DType::Bool {
            return None;
        }
        Some(t.to_i64_vec().into_iter().map(DimVal::Int).collect())
    }
}

/// One entry of a shape-holding integer tensor: a number or a symbolic dimension.
#[derive(Clone, Debug, PartialEq)]
pub enum DimVal {
    Int(i64),
    Sym(Dim),
}

impl DimVal {
    pub fn from_dim(d: &Dim) -> DimVal {
        match d {
            Dim::Const(c) => DimVal::Int(*c as i64),
            Dim::Sym { .. } => DimVal::Sym(d.clone()),
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            DimVal::Int(v) => Some(*v),
            DimVal::Sym(_) => None,
        }
    }
}

/// A node being imported, with its attributes.
pub struct NodeCtx<'a> {
    pub node: &'a NodeProto,
    pub name: String,
    pub op_type: &'a str,
    pub opset: i64,
}

impl NodeCtx<'_> {
    pub fn err(&self, msg: impl Into<String>) -> ImportError {
        ImportError::Node {
            node: self.name.clone(),
            op_type: self.op_type.to_string(),
            opset: self.opset,
            msg: msg.into(),
        }
    }

    pub fn attr(&self, name: &str) -> Option<&proto::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name.as_deref() == Some(name))
    }

    pub fn i(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.i).unwrap_or(default)
    }

    pub fn f(&self, name: &str, default: f32) -> f32 {
        self.attr(name).and_then(|a| a.f).unwrap_or(default)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.attr(name).map(|a| a.floats.clone())
    }

    pub fn s(&self, name: &str) -> Option<String> {
        self.attr(name).and_then(|a| a.s.as_ref()).map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// Number of results the model actually uses (trailing empty names are absent outputs).
    pub fn used_outputs(&self) -> usize {
        self.node.output.iter().rposition(|o| !o.is_empty()).map_or(0, |i| i + 1)
    }
}

/// State of one import.
pub struct Importer<'a> {
    pub g: Graph,
    pub weights: Weights,
    vals: HashMap<String, Val>,
    file_label: String,
    opts: &'a ImportOptions,
    max_bytes: u64,
}

/// Imports an ONNX file.
pub fn import_file(path: &Path, opts: &ImportOptions) -> Result<Model, ImportError> {
    let bytes =
        std::fs::read(path).map_err(|e| ImportError::Io { path: path.display().to_string(), msg: e.to_string() })?;
    let mut opts = opts.clone();
    if opts.base_dir.is_none() {
        opts.base_dir = Some(path.parent().map(Path::to_path_buf).unwrap_or_default());
    }
    let label = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "model.onnx".into());
    import_bytes(&bytes, &label, &opts)
}

/// Imports ONNX bytes; `label` names the file in weight references.
pub fn import_bytes(bytes: &[u8], label: &str, opts: &ImportOptions) -> Result<Model, ImportError> {
    let m = ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    import_model(&m, label, opts)
}

/// The default-domain opset a model imports.
fn default_opset(m: &ModelProto) -> Result<i64, ImportError> {
    let v = m
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| ImportError::Decode("the model imports no default-domain opset".into()))?;
    if !(MIN_OPSET..=MAX_OPSET).contains(&v) {
        return Err(ImportError::Graph(format!(
            "opset {v} is not supported (sovc imports opsets {MIN_OPSET} to {MAX_OPSET})"
        )));
    }
    Ok(v)
}

/// Imports a decoded model.
pub fn import_model(m: &ModelProto, label: &str, opts: &ImportOptions) -> Result<Model, ImportError> {
    let opset = default_opset(m)?;
    let graph = m.graph.as_ref().ok_or_else(|| ImportError::Decode("the model has no graph".into()))?;
    let mut imp = Importer {
        g: Graph::new(),
        weights: Weights::default(),
        vals: HashMap::new(),
        file_label: label.to_string(),
        opts,
        max_bytes: opts.max_tensor_bytes.unwrap_or(DEFAULT_MAX_TENSOR_BYTES),
    };
    imp.initializers(graph)?;
    imp.inputs(graph)?;
    for (i, node) in graph.node.iter().enumerate() {
        imp.node(node, i, opset)?;
    }
    for o in &graph.output {
        let name = o.name.clone().unwrap_or_default();
        let v = imp
            .vals
            .get(&name)
            .cloned()
            .ok_or_else(|| ImportError::Graph(format!("graph output `{name}` is not computed by any node")))?;
        let id = imp.materialize(&v, &name)?;
        imp.g.add_output(name, id);
    }
    imp.g.remove_dead();
    let used: std::collections::BTreeSet<&WeightRef> = imp
        .g
        .consts
        .iter()
        .filter_map(|c| match &c.data {
            ConstData::Weight(r) => Some(r),
            ConstData::Inline(_) => None,
        })
        .collect();
    let mut weights = Weights::default();
    for (k, v) in &imp.weights.map {
        if used.contains(k) {
            weights.map.insert(k.clone(), v.clone());
        }
    }
    let graph = imp.g.canonical();
    sovc_ir::verify(&graph).map_err(|errs| {
        ImportError::Graph(format!(
            "the imported graph is invalid: {}",
            errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
        ))
    })?;
    Ok(Model { graph, weights })
}

impl Importer<'_> {
    fn initializers(&mut self, graph: &proto::GraphProto) -> Result<(), ImportError> {
        if !graph.sparse_initializer.is_empty() {
            return Err(ImportError::Graph("sparse initializers are not supported".into()));
        }
        for t in &graph.initializer {
            let name = t.name.clone().unwrap_or_default();
            let tensor = tensor_from_proto(t, self.opts.base_dir.as_deref(), self.max_bytes)?;
            let mut v = Val::known(tensor);
            v.name = name.clone();
            v.initializer = true;
            self.vals.insert(name, v);
        }
        Ok(())
    }

    fn inputs(&mut self, graph: &proto::GraphProto) -> Result<(), ImportError> {
        let mut bindings: BTreeMap<String, u64> = BTreeMap::new();
        let mut declared: Vec<(String, sovc_ir::DType, Vec<Dim>)> = Vec::new();
        for vi in &graph.input {
            let name = vi.name.clone().unwrap_or_default();
            if self.vals.contains_key(&name) {
                continue; // an initializer listed as input (IR version < 4)
            }
            let Some(proto::type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
            else {
                return Err(ImportError::Graph(format!(
                    "graph input `{name}` is not a tensor (sequences, maps and optionals are not supported)"
                )));
            };
            let dtype = dtype_from_onnx(tt.elem_type.unwrap_or(0), &name)?;
            let shape = tt.shape.as_ref().ok_or_else(|| {
                ImportError::Graph(format!("graph input `{name}` has no shape: give one with --shape {name}=DIMS"))
            })?;
            let mut dims = Vec::new();
            for (i, d) in shape.dim.iter().enumerate() {
                use proto::tensor_shape_proto::dimension::Value;
                dims.push(match &d.value {
                    Some(Value::DimValue(v)) if *v >= 0 => Dim::Const(*v as u64),
                    Some(Value::DimParam(p)) if !p.is_empty() => Dim::sym(p.clone()),
                    _ => Dim::sym(format!("{name}_{i}")),
                });
            }
            if let Some(fixed) = self.opts.shapes.get(&name) {
                if fixed.len() != dims.len() {
                    return Err(ImportError::Graph(format!(
                        "--shape {name}: {} dims given, the input has rank {}",
                        fixed.len(),
                        dims.len()
                    )));
                }
                for (d, &f) in dims.iter().zip(fixed) {
                    match d {
                        Dim::Const(c) if *c != f => {
                            return Err(ImportError::Graph(format!(
                                "--shape {name}: dimension {c} cannot be changed to {f}"
                            )));
                        }
                        Dim::Sym { name: s, .. } => {
                            if let Some(prev) = bindings.insert(s.clone(), f) {
                                if prev != f {
                                    return Err(ImportError::Graph(format!(
                                        "--shape: symbol `{s}` is fixed to both {prev} and {f}"
                                    )));
                                }
                            }
                        }
                        Dim::Const(_) => {}
                    }
                }
            }
            declared.push((name, dtype, dims));
        }
        for k in self.opts.shapes.keys() {
            if !declared.iter().any(|(n, _, _)| n == k) {
                let names: Vec<&str> = declared.iter().map(|d| d.0.as_str()).collect();
                return Err(ImportError::Graph(format!(
                    "--shape names `{k}`, which is not a graph input (inputs: {names:?})"
                )));
            }
        }
        for (name, dtype, dims) in declared {
            let shape = Shape(dims).substitute(&bindings);
            let ty = TensorType::new(dtype, shape);
            if let Some(t) = self.opts.constant_inputs.get(&name) {
                if t.dtype() != ty.dtype || t.shape().len() != ty.shape.rank() {
                    return Err(ImportError::Graph(format!(
                        "constant input `{name}` is {}{:?}, the graph declares {ty}",
                        t.dtype(),
                        t.shape()
                    )));
                }
                let mut v = Val::known(t.clone());
                v.name = name.clone();
                self.vals.insert(name, v);
                continue;
            }
            let id = self.g.add_input(name.clone(), ty.clone());
            self.vals.insert(name.clone(), Val { name, id: Some(id), ty, known: None, dims: None, initializer: false });
        }
        Ok(())
    }

    fn node(&mut self, node: &NodeProto, index: usize, opset: i64) -> Result<(), ImportError> {
        let op_type = node.op_type.as_deref().unwrap_or("");
        let name = match node.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("{op_type}_{index}"),
        };
        let domain = node.domain.as_deref().unwrap_or("");
        if !(domain.is_empty() || domain == "ai.onnx") {
            return Err(ImportError::UnsupportedOp {
                op_type: op_type.into(),
                domain: domain.into(),
                opset,
                node: name,
            });
        }
        let cx = NodeCtx { node, name, op_type, opset };
        let mut ins = Vec::with_capacity(node.input.len());
        for i in &node.input {
            if i.is_empty() {
                ins.push(None);
                continue;
            }
            let v =
                self.vals.get(i).cloned().ok_or_else(|| {
                    cx.err(format!("reads `{i}`, which no input, initializer or earlier node defines"))
                })?;
            ins.push(Some(v));
        }
        let outs = super::ops::handle(self, &cx, &ins)?;
        let used = cx.used_outputs();
        if outs.len() < used {
            return Err(cx.err(format!("output {} is not supported", outs.len())));
        }
        for (mut v, oname) in outs.into_iter().zip(&node.output) {
            if oname.is_empty() {
                continue;
            }
            v.name = oname.clone();
            self.vals.insert(oname.clone(), v);
        }
        Ok(())
    }

    /// The graph value for `v`, adding a constant if it is only known.
    pub fn materialize(&mut self, v: &Val, hint: &str) -> Result<ValueId, ImportError> {
        if let Some(id) = v.id {
            return Ok(id);
        }
        let Some(t) = &v.known else {
            let syms: Vec<String> = v
                .dims
                .iter()
                .flatten()
                .filter_map(|d| if let DimVal::Sym(s) = d { Some(s.to_string()) } else { None })
                .collect();
            return Err(ImportError::Graph(format!(
                "value `{}` depends on symbolic dimension(s) {} at run time, which sovc does not support: fix them with --shape",
                if v.name.is_empty() { hint } else { &v.name },
                syms.join(", ")
            )));
        };
        let name = if v.name.is_empty() { hint.to_string() } else { v.name.clone() };
        let id = if t.len() <= INLINE_LIMIT && !v.initializer {
            self.g.add_inline(name.clone(), (**t).clone())
        } else {
            let key = if v.initializer { name.clone() } else { format!("folded/{name}") };
            let r = WeightRef { file: self.file_label.clone(), key };
            self.weights.map.insert(r.clone(), t.clone());
            self.g.add_const(name.clone(), t.ty(), ConstData::Weight(r))
        };
        if !v.name.is_empty() {
            if let Some(stored) = self.vals.get_mut(&v.name) {
                stored.id = Some(id);
            }
        }
        Ok(id)
    }

    /// Adds `op` on `ins`, or folds it when every input is known and the results are small.
    pub fn emit(&mut self, cx: &NodeCtx, op: Op, ins: &[&Val]) -> Result<Vec<Val>, ImportError> {
        let tys: Vec<&TensorType> = ins.iter().map(|v| &v.ty).collect();
        let out_tys = sovc_ir::infer::infer(&op, &tys).map_err(|m| cx.err(format!("{}: {m}", op.name())))?;
        let all_known = ins.iter().all(|v| v.known.is_some());
        let small = out_tys.iter().all(|t| t.shape.num_elements().is_some_and(|n| n <= FOLD_LIMIT));
        if all_known && small {
            let ts: Vec<&Tensor> = ins.iter().map(|v| v.known.as_deref().expect("checked known")).collect();
            let outs = interp::eval(&op, &ts, &Default::default())
                .map_err(|m| cx.err(format!("folding {}: {m}", op.name())))?;
            return Ok(outs.into_iter().map(Val::known).collect());
        }
        let mut ids = Vec::with_capacity(ins.len());
        for (i, v) in ins.iter().enumerate() {
            ids.push(self.materialize(v, &format!("{}/in{i}", cx.name))?);
        }
        let outs = self.g.add_node(op, &ids, cx.name.clone()).map_err(|e| cx.err(e.to_string()))?;
        Ok(outs
            .into_iter()
            .map(|id| Val {
                name: String::new(),
                id: Some(id),
                ty: self.g.ty(id).clone(),
                known: None,
                dims: None,
                initializer: false,
            })
            .collect())
    }

    /// Like [`emit`] for single-result ops.
    pub fn emit1(&mut self, cx: &NodeCtx, op: Op, ins: &[&Val]) -> Result<Val, ImportError> {
        Ok(self.emit(cx, op, ins)?.remove(0))
    }
}
