//! The reference interpreter: the definition of what every op computes, and the oracle every target is
//! compared with. Straightforward code; matmul and convolution use ndarray's kernels so real models run in
//! seconds. Floating-point math for f16/bf16 is done in f32 (or f64) and rounded once per op.

pub(crate) mod elementwise;
mod linalg;
mod movement;
mod pool;
mod reduce;

use crate::{ConstData, Dim, Graph, IrError, Op, Shape, Tensor, TensorType, Weights};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The largest single value the interpreter will allocate (64 GiB); larger ones are an error, not an abort.
pub const MAX_VALUE_BYTES: u64 = 64 << 30;

/// Values of the graph's symbolic dimensions, bound from the shapes of the inputs.
pub type Bindings = BTreeMap<String, u64>;

/// Runs `g` on named inputs and returns its named outputs.
pub fn run(
    g: &Graph,
    weights: &Weights,
    inputs: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, IrError> {
    let mut vals: Vec<Option<Arc<Tensor>>> = vec![None; g.values.len()];
    let mut bindings = Bindings::new();
    for x in &g.inputs {
        let t = inputs.get(&x.name).ok_or_else(|| IrError::Run(format!("missing input `{}`", x.name)))?;
        bind_input(&x.name, g.ty(x.value), t, &mut bindings)?;
        vals[x.value.index()] = Some(Arc::new(t.clone()));
    }
    if let Some(extra) = inputs.keys().find(|k| !g.inputs.iter().any(|x| &x.name == *k)) {
        let known: Vec<&str> = g.inputs.iter().map(|x| x.name.as_str()).collect();
        return Err(IrError::Run(format!("unknown input `{extra}` (the graph's inputs are {known:?})")));
    }
    for c in &g.consts {
        let t = match &c.data {
            ConstData::Inline(t) => Arc::new(t.clone()),
            ConstData::Weight(r) => weights.get(r).cloned().ok_or_else(|| {
                IrError::Run(format!("constant `{}`: weight `{}` from `{}` is not loaded", c.name, r.key, r.file))
            })?,
        };
        let want = g.ty(c.value);
        if t.ty() != *want {
            return Err(IrError::Run(format!("constant `{}` is declared {want} but its data is {}", c.name, t.ty())));
        }
        vals[c.value.index()] = Some(t);
    }
    let last = g.last_uses();
    for (i, node) in g.nodes.iter().enumerate() {
        for &v in &node.outputs {
            let ty = g.ty(v);
            let bytes =
                ty.shape.substitute(&bindings).num_elements().and_then(|n| n.checked_mul(ty.dtype.size() as u64));
            if bytes.is_none_or(|b| b > MAX_VALUE_BYTES) {
                return Err(IrError::Eval {
                    node: node.name.clone(),
                    op: node.op.name(),
                    msg: format!(
                        "result {} would need more than {MAX_VALUE_BYTES} bytes",
                        ty.shape.substitute(&bindings)
                    ),
                });
            }
        }
        let ins: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|v| {
                vals[v.index()]
                    .as_deref()
                    .ok_or_else(|| IrError::Run(format!("node `{}` reads {v} before it is computed", node.name)))
            })
            .collect::<Result<_, _>>()?;
        let outs = eval(&node.op, &ins, &bindings).map_err(|msg| IrError::Eval {
            node: node.name.clone(),
            op: node.op.name(),
            msg,
        })?;
        for (&v, t) in node.outputs.iter().zip(outs) {
            let want = g.ty(v).shape.substitute(&bindings);
            if want.as_consts().is_some_and(|s| s != t.shape()) {
                return Err(IrError::Eval {
                    node: node.name.clone(),
                    op: node.op.name(),
                    msg: format!("computed shape {:?} but the graph declares {want}", t.shape()),
                });
            }
            vals[v.index()] = Some(Arc::new(t));
        }
        for v in &node.inputs {
            if last[v.index()] == Some(i) {
                vals[v.index()] = None;
            }
        }
    }
    let mut out = BTreeMap::new();
    for o in &g.outputs {
        let t = vals[o.value.index()]
            .as_ref()
            .ok_or_else(|| IrError::Run(format!("output `{}` was not computed", o.name)))?;
        out.insert(o.name.clone(), (**t).clone());
    }
    Ok(out)
}

fn bind_input(name: &str, ty: &TensorType, t: &Tensor, b: &mut Bindings) -> Result<(), IrError> {
    let bad =
        |why: String| IrError::Run(format!("input `{name}`: expected {ty}, got {}{:?}: {why}", t.dtype(), t.shape()));
    if t.dtype() != ty.dtype {
        return Err(bad("element type differs".into()));
    }
    if t.shape().len() != ty.shape.rank() {
        return Err(bad("rank differs".into()));
    }
    for (d, &n) in ty.shape.0.iter().zip(t.shape()) {
        match d {
            Dim::Const(c) if *c != n as u64 => return Err(bad(format!("dimension {c} is {n}"))),
            Dim::Sym { name: s, max } => {
                if max.is_some_and(|m| n as u64 > m) {
                    return Err(bad(format!("`{s}` = {n} exceeds its bound")));
                }
                if let Some(prev) = b.insert(s.clone(), n as u64) {
                    if prev != n as u64 {
                        return Err(bad(format!("`{s}` is {prev} in another input and {n} here")));
                    }
                }
            }
            Dim::Const(_) => {}
        }
    }
    Ok(())
}

/// Resolves a shape to sizes using the bound symbols.
pub fn concrete(shape: &Shape, b: &Bindings) -> Result<Vec<usize>, String> {
    shape.substitute(b).as_consts().ok_or_else(|| format!("shape {shape} names a symbol that no input binds"))
}

/// Evaluates one op on concrete tensors.
pub fn eval(op: &Op, ins: &[&Tensor], b: &Bindings) -> Result<Vec<Tensor>, String> {
    let x = ins[0];
    let one = |t: Tensor| Ok(vec![t]);
    match op {
        Op::Unary(u) => one(elementwise::unary(*u, x)?),
        Op::Binary(bop) => one(elementwise::binary(*bop, x, ins[1])?),
        Op::Cast { to } => one(x.cast(*to)),
        Op::BitCast { to } => {
            let bytes = x.to_le_bytes();
            let out = if *to == crate::DType::Bool {
                // Only 0 and 1 are bools; any other byte is true.
                Tensor::from_le_bytes(crate::DType::U8, x.shape(), &bytes).map(|t| t.cast(crate::DType::Bool))
            } else {
                Tensor::from_le_bytes(*to, x.shape(), &bytes)
            };
            one(out.ok_or("bitcast between types of different sizes")?)
        }
        Op::Where {} => one(elementwise::where_(x, ins[1], ins[2])?),
        Op::Clip {} => one(elementwise::clip(x, ins[1], ins[2])?),
        Op::LeakyRelu { .. }
        | Op::Elu { .. }
        | Op::Selu { .. }
        | Op::Celu { .. }
        | Op::HardSigmoid { .. }
        | Op::ThresholdedRelu { .. }
        | Op::Shrink { .. }
        | Op::Gelu { .. } => one(elementwise::activation(op, x)?),
        Op::IsInf { detect_positive, detect_negative } => {
            let (p, n) = (*detect_positive, *detect_negative);
            one(elementwise::predicate(x, |v| v.is_infinite() && ((v > 0.0 && p) || (v < 0.0 && n))))
        }
        Op::MatMul {} => one(linalg::matmul(x, ins[1])?),
        Op::Conv { strides, pads, dilations, group } => {
            one(linalg::conv(x, ins[1], ins.get(2).copied(), strides, pads, dilations, *group)?)
        }
        Op::ConvTranspose { strides, pads, dilations, group, output_padding } => one(linalg::conv_transpose(
            x,
            ins[1],
            ins.get(2).copied(),
            strides,
            pads,
            dilations,
            *group,
            output_padding,
        )?),
        Op::MaxPool { .. } | Op::AvgPool { .. } | Op::LpPool { .. } => one(pool::pool(op, x)?),
        Op::Reduce { kind, axes, keepdims } => one(reduce::reduce(*kind, x, axes, *keepdims)?),
        Op::ArgMax { axis, keepdims, select_last } => one(reduce::arg(x, *axis, *keepdims, *select_last, true)?),
        Op::ArgMin { axis, keepdims, select_last } => one(reduce::arg(x, *axis, *keepdims, *select_last, false)?),
        Op::Softmax { axis } => one(reduce::softmax(x, *axis, false)?),
        Op::LogSoftmax { axis } => one(reduce::softmax(x, *axis, true)?),
        Op::Hardmax { axis } => one(reduce::hardmax(x, *axis)?),
        Op::LayerNorm { axis, epsilon } => {
            one(reduce::layer_norm(x, ins[1], ins.get(2).copied(), *axis, *epsilon, false)?)
        }
        Op::RmsNorm { axis, epsilon } => one(reduce::layer_norm(x, ins[1], None, *axis, *epsilon, true)?),
        Op::BatchNorm { epsilon } => one(reduce::batch_norm(x, ins[1], ins[2], ins[3], ins[4], *epsilon)?),
        Op::InstanceNorm { epsilon } => one(reduce::group_norm(x, ins[1], ins[2], None, *epsilon)?),
        Op::GroupNorm { num_groups, epsilon } => {
            one(reduce::group_norm(x, ins[1], ins[2], Some(*num_groups), *epsilon)?)
        }
        Op::Lrn { size, alpha, beta, bias } => one(reduce::lrn(x, *size, *alpha, *beta, *bias)?),
        Op::CumSum { axis, exclusive, reverse } => one(reduce::cumulative(x, *axis, *exclusive, *reverse, false)?),
        Op::CumProd { axis, exclusive, reverse } => one(reduce::cumulative(x, *axis, *exclusive, *reverse, true)?),
        Op::TopK { axis, k, largest, sorted } => reduce::topk(x, *axis, *k, *largest, *sorted),
        Op::Transpose { perm } => one(movement::transpose(x, perm)),
        Op::Reshape { shape } => {
            let s = concrete(shape, b)?;
            x.reshape(&s).map(|t| vec![t]).ok_or_else(|| format!("cannot reshape {:?} to {s:?}", x.shape()))
        }
        Op::Expand { shape } => one(movement::expand(x, &concrete(shape, b)?)?),
        Op::Concat { axis } => one(movement::concat(ins, *axis)?),
        Op::Split { axis, sizes } => movement::split(x, *axis, sizes),
        Op::Slice { starts, ends, steps } => one(movement::slice(x, starts, ends, steps)),
        Op::Gather { axis } => one(movement::gather(x, ins[1], *axis)?),
        Op::GatherElements { axis } => one(movement::gather_elements(x, ins[1], *axis)?),
        Op::GatherNd { batch_dims } => one(movement::gather_nd(x, ins[1], *batch_dims as usize)?),
        Op::ScatterElements { axis, reduction } => {
            one(movement::scatter_elements(x, ins[1], ins[2], *axis, *reduction)?)
        }
        Op::ScatterNd { reduction } => one(movement::scatter_nd(x, ins[1], ins[2], *reduction)?),
        Op::Pad { pads, mode } => one(movement::pad(x, ins[1], pads, *mode)?),
        Op::Tile { repeats } => one(movement::tile(x, repeats)),
        Op::Trilu { upper, k } => one(movement::trilu(x, *upper, *k)),
        Op::OneHot { axis, depth } => one(movement::one_hot(x, ins[1], *axis, *depth)?),
        Op::DepthToSpace { blocksize, mode } => one(movement::depth_to_space(x, *blocksize as usize, *mode)),
        Op::SpaceToDepth { blocksize } => one(movement::space_to_depth(x, *blocksize as usize)),
        Op::Resize { sizes, scales, mode, coord, nearest, cubic_a, exclude_outside } => one(movement::resize(
            x,
            &movement::ResizeParams {
                sizes,
                scales,
                mode: *mode,
                coord: *coord,
                nearest: *nearest,
                cubic_a: *cubic_a,
                exclude_outside: *exclude_outside,
            },
        )?),
        Op::Einsum { equation } => one(linalg::einsum(equation, ins)?),
        Op::Attention { scale } => one(linalg::attention(ins, *scale)?),
    }
}
