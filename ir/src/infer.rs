//! Type and shape inference: for every op, the result types from the input types, or the rule the inputs
//! break. The graph builder, the verifier and the importers all call this one function.

use crate::shape::broadcast_shapes;
use crate::{BinaryOp, DType, Dim, Op, Shape, TensorType, UnaryOp};

type R<T> = Result<T, String>;

/// Normalizes a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn cdim(d: &Dim, what: &str) -> R<i64> {
    d.as_const().map(|v| v as i64).ok_or_else(|| format!("{what} must have a known size, found symbol `{d}`"))
}

fn same_dtype(a: &TensorType, b: &TensorType, what: &str) -> R<()> {
    if a.dtype != b.dtype {
        return Err(format!("{what}: element types differ ({} vs {})", a.dtype, b.dtype));
    }
    Ok(())
}

fn need_float(t: &TensorType, op: &str) -> R<()> {
    if !t.dtype.is_float() {
        return Err(format!("{op} needs a floating-point input, found {}", t.dtype));
    }
    Ok(())
}

fn need_numeric(t: &TensorType, op: &str) -> R<()> {
    if t.dtype == DType::Bool {
        return Err(format!("{op} needs a numeric input, found bool"));
    }
    Ok(())
}

fn same(t: &TensorType) -> Vec<TensorType> {
    vec![t.clone()]
}

fn with_shape(dtype: DType, dims: Vec<Dim>) -> TensorType {
    TensorType::new(dtype, Shape(dims))
}

fn consts(v: &[i64]) -> Vec<Dim> {
    v.iter().map(|&d| Dim::Const(d as u64)).collect()
}

/// Infers the result types of `op` applied to inputs of types `ins`.
pub fn infer(op: &Op, ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let info = op.info();
    if ins.len() < info.min_inputs || ins.len() > info.max_inputs {
        let want = if info.min_inputs == info.max_inputs {
            format!("{}", info.min_inputs)
        } else if info.max_inputs == usize::MAX {
            format!("at least {}", info.min_inputs)
        } else {
            format!("{} to {}", info.min_inputs, info.max_inputs)
        };
        return Err(format!("{} takes {want} inputs, got {}", info.name, ins.len()));
    }
    let x = ins[0];
    let rank = x.shape.rank();
    match op {
        Op::Unary(u) => unary(*u, x),
        Op::Binary(b) => binary(*b, x, ins[1]),
        Op::Cast { to } => Ok(vec![TensorType::new(*to, x.shape.clone())]),
        Op::BitCast { to } => {
            if to.size() != x.dtype.size() {
                return Err(format!("bitcast: {} and {to} differ in size", x.dtype));
            }
            Ok(vec![TensorType::new(*to, x.shape.clone())])
        }
        Op::Where {} => {
            if x.dtype != DType::Bool {
                return Err(format!("where: condition must be bool, found {}", x.dtype));
            }
            same_dtype(ins[1], ins[2], "where")?;
            let s = broadcast_shapes(&x.shape, &ins[1].shape)
                .and_then(|s| broadcast_shapes(&s, &ins[2].shape))
                .ok_or_else(|| {
                    format!("where: shapes {}, {}, {} do not broadcast", x.shape, ins[1].shape, ins[2].shape)
                })?;
            Ok(vec![TensorType::new(ins[1].dtype, s)])
        }
        Op::Clip {} => {
            need_numeric(x, "clip")?;
            for b in &ins[1..] {
                same_dtype(x, b, "clip bound")?;
                if b.shape.num_elements() != Some(1) {
                    return Err(format!("clip: bounds must be scalars, found shape {}", b.shape));
                }
            }
            Ok(same(x))
        }
        Op::LeakyRelu { .. }
        | Op::Elu { .. }
        | Op::Selu { .. }
        | Op::Celu { .. }
        | Op::HardSigmoid { .. }
        | Op::ThresholdedRelu { .. }
        | Op::Gelu { .. } => {
            need_float(x, info.name)?;
            Ok(same(x))
        }
        Op::Shrink { .. } => {
            need_numeric(x, "shrink")?;
            Ok(same(x))
        }
        Op::IsInf { .. } => {
            need_float(x, "isinf")?;
            Ok(vec![TensorType::new(DType::Bool, x.shape.clone())])
        }
        Op::MatMul {} => matmul(x, ins[1]),
        Op::Conv { strides, pads, dilations, group } => conv(x, ins, strides, pads, dilations, *group),
        Op::ConvTranspose { strides, pads, dilations, group, output_padding } => {
            conv_transpose(x, ins, strides, pads, dilations, *group, output_padding)
        }
        Op::MaxPool { kernel, strides, pads, dilations, ceil_mode }
        | Op::AvgPool { kernel, strides, pads, dilations, ceil_mode, .. }
        | Op::LpPool { kernel, strides, pads, dilations, ceil_mode, .. } => {
            need_numeric(x, info.name)?;
            pool(x, kernel, strides, pads, dilations, *ceil_mode)
        }
        Op::Reduce { kind, axes, keepdims } => {
            if !matches!(kind, crate::ReduceKind::Max | crate::ReduceKind::Min) {
                need_numeric(x, "reduce")?;
            }
            let mut dims = Vec::new();
            let mut seen = vec![false; rank];
            for &a in axes {
                let a = norm_axis(a, rank)?;
                if seen[a] {
                    return Err(format!("reduce: axis {a} listed twice"));
                }
                seen[a] = true;
            }
            for (i, d) in x.shape.0.iter().enumerate() {
                if !seen[i] {
                    dims.push(d.clone());
                } else if *keepdims {
                    dims.push(Dim::Const(1));
                }
            }
            Ok(vec![with_shape(x.dtype, dims)])
        }
        Op::ArgMax { axis, keepdims, .. } | Op::ArgMin { axis, keepdims, .. } => {
            need_numeric(x, info.name)?;
            let a = norm_axis(*axis, rank)?;
            let mut dims = x.shape.0.clone();
            if *keepdims {
                dims[a] = Dim::Const(1);
            } else {
                dims.remove(a);
            }
            Ok(vec![with_shape(DType::I64, dims)])
        }
        Op::Softmax { axis } | Op::LogSoftmax { axis } | Op::Hardmax { axis } => {
            need_float(x, info.name)?;
            norm_axis(*axis, rank)?;
            Ok(same(x))
        }
        Op::LayerNorm { axis, .. } | Op::RmsNorm { axis, .. } => {
            need_float(x, info.name)?;
            let a = norm_axis(*axis, rank)?;
            for p in &ins[1..] {
                same_dtype(x, p, info.name)?;
                let norm = Shape(x.shape.0[a..].to_vec());
                if broadcast_shapes(&norm, &p.shape).as_ref() != Some(&norm) {
                    return Err(format!(
                        "{}: parameter shape {} does not broadcast to normalized shape {norm}",
                        info.name, p.shape
                    ));
                }
            }
            Ok(same(x))
        }
        Op::BatchNorm { .. } | Op::InstanceNorm { .. } | Op::GroupNorm { .. } => {
            need_float(x, info.name)?;
            if rank < 2 {
                return Err(format!("{} needs rank >= 2, found {}", info.name, x.shape));
            }
            let c = &x.shape.0[1];
            for p in &ins[1..] {
                same_dtype(x, p, info.name)?;
                let ok = p.shape.rank() == 1 && p.shape.0[0] == *c;
                if !ok {
                    return Err(format!("{}: parameter shape {} must be [{c}]", info.name, p.shape));
                }
            }
            if let Op::GroupNorm { num_groups, .. } = op {
                let c = cdim(c, "group_norm channels")?;
                if *num_groups <= 0 || c % num_groups != 0 {
                    return Err(format!("group_norm: {c} channels do not divide into {num_groups} groups"));
                }
            }
            Ok(same(x))
        }
        Op::Lrn { size, .. } => {
            need_float(x, "lrn")?;
            if *size <= 0 || rank < 2 {
                return Err("lrn needs size > 0 and rank >= 2".into());
            }
            Ok(same(x))
        }
        Op::CumSum { axis, .. } | Op::CumProd { axis, .. } => {
            need_numeric(x, info.name)?;
            norm_axis(*axis, rank)?;
            Ok(same(x))
        }
        Op::Transpose { perm } => {
            if perm.len() != rank {
                return Err(format!("transpose: perm {perm:?} has {} entries for rank {rank}", perm.len()));
            }
            let mut seen = vec![false; rank];
            let mut dims = Vec::with_capacity(rank);
            for &p in perm {
                if p < 0 || p as usize >= rank || seen[p as usize] {
                    return Err(format!("transpose: perm {perm:?} is not a permutation of 0..{rank}"));
                }
                seen[p as usize] = true;
                dims.push(x.shape.0[p as usize].clone());
            }
            Ok(vec![with_shape(x.dtype, dims)])
        }
        Op::Reshape { shape } => {
            if let (Some(a), Some(b)) = (x.shape.num_elements(), shape.num_elements()) {
                if a != b {
                    return Err(format!("reshape: {} has {a} elements, target {shape} has {b}", x.shape));
                }
            }
            Ok(vec![TensorType::new(x.dtype, shape.clone())])
        }
        Op::Expand { shape } => {
            let s = broadcast_shapes(&x.shape, shape)
                .ok_or_else(|| format!("expand: {} does not broadcast to {shape}", x.shape))?;
            Ok(vec![TensorType::new(x.dtype, s)])
        }
        Op::Concat { axis } => {
            let a = norm_axis(*axis, rank)?;
            let mut total = 0i64;
            for (k, t) in ins.iter().enumerate() {
                same_dtype(x, t, "concat")?;
                if t.shape.rank() != rank {
                    return Err(format!("concat: input {k} has rank {}, input 0 has {rank}", t.shape.rank()));
                }
                for i in 0..rank {
                    if i != a && t.shape.0[i] != x.shape.0[i] {
                        return Err(format!("concat: input {k} has shape {}, input 0 has {}", t.shape, x.shape));
                    }
                }
                total += cdim(&t.shape.0[a], "concat axis")?;
            }
            let mut dims = x.shape.0.clone();
            dims[a] = Dim::Const(total as u64);
            Ok(vec![with_shape(x.dtype, dims)])
        }
        Op::Split { axis, sizes } => {
            let a = norm_axis(*axis, rank)?;
            let d = cdim(&x.shape.0[a], "split axis")?;
            if sizes.iter().any(|&s| s < 0) || sizes.iter().sum::<i64>() != d {
                return Err(format!("split: sizes {sizes:?} do not add up to dimension {d}"));
            }
            Ok(sizes
                .iter()
                .map(|&s| {
                    let mut dims = x.shape.0.clone();
                    dims[a] = Dim::Const(s as u64);
                    with_shape(x.dtype, dims)
                })
                .collect())
        }
        Op::Slice { starts, ends, steps } => {
            if starts.len() != rank || ends.len() != rank || steps.len() != rank {
                return Err(format!("slice: starts/ends/steps need {rank} entries each"));
            }
            let mut dims = Vec::with_capacity(rank);
            for i in 0..rank {
                if steps[i] == 0 {
                    return Err(format!("slice: step of axis {i} is 0"));
                }
                let d = &x.shape.0[i];
                if starts[i] == 0 && ends[i] >= i64::MAX / 2 && steps[i] == 1 {
                    dims.push(d.clone());
                    continue;
                }
                let n = cdim(d, "a sliced axis")?;
                let (_, len) = slice_range(starts[i], ends[i], steps[i], n);
                dims.push(Dim::Const(len as u64));
            }
            Ok(vec![with_shape(x.dtype, dims)])
        }
        Op::Gather { axis } => {
            index_type(ins[1], "gather")?;
            let a = norm_axis(*axis, rank)?;
            let mut dims = x.shape.0[..a].to_vec();
            dims.extend(ins[1].shape.0.iter().cloned());
            dims.extend(x.shape.0[a + 1..].iter().cloned());
            Ok(vec![with_shape(x.dtype, dims)])
        }
        Op::GatherElements { axis } => {
            index_type(ins[1], "gather_elements")?;
            norm_axis(*axis, rank)?;
            if ins[1].shape.rank() != rank {
                return Err("gather_elements: indices must have the data's rank".into());
            }
            let a = norm_axis(*axis, rank)?;
            fits_within(&ins[1].shape, &x.shape, Some(a), "gather_elements")?;
            Ok(vec![TensorType::new(x.dtype, ins[1].shape.clone())])
        }
        Op::GatherNd { batch_dims } => {
            let idx = ins[1];
            index_type(idx, "gather_nd")?;
            let b = *batch_dims as usize;
            let ir = idx.shape.rank();
            if ir == 0 || b >= ir || b >= rank {
                return Err("gather_nd: batch_dims must be below both ranks".into());
            }
            let last = cdim(&idx.shape.0[ir - 1], "gather_nd index depth")? as usize;
            if b + last > rank {
                return Err(format!("gather_nd: index depth {last} exceeds data rank {rank}"));
            }
            for i in 0..b {
                if let (Some(p), Some(q)) = (idx.shape.0[i].as_const(), x.shape.0[i].as_const()) {
                    if p != q {
                        return Err(format!("gather_nd: batch dim {i} is {p} in the indices and {q} in the data"));
                    }
                }
            }
            let mut dims = idx.shape.0[..ir - 1].to_vec();
            dims.extend(x.shape.0[b + last..].iter().cloned());
            Ok(vec![with_shape(x.dtype, dims)])
        }
        Op::ScatterElements { axis, .. } => {
            index_type(ins[1], "scatter_elements")?;
            norm_axis(*axis, rank)?;
            same_dtype(x, ins[2], "scatter_elements")?;
            if ins[1].shape != ins[2].shape {
                return Err("scatter_elements: indices and updates shapes differ".into());
            }
            if ins[1].shape.rank() != rank {
                return Err("scatter_elements: indices must have the data's rank".into());
            }
            fits_within(&ins[1].shape, &x.shape, Some(norm_axis(*axis, rank)?), "scatter_elements")?;
            Ok(same(x))
        }
        Op::ScatterNd { .. } => {
            index_type(ins[1], "scatter_nd")?;
            same_dtype(x, ins[2], "scatter_nd")?;
            let idx = &ins[1].shape;
            let ir = idx.rank();
            if ir == 0 {
                return Err("scatter_nd: indices need rank >= 1".into());
            }
            let depth = cdim(&idx.0[ir - 1], "scatter_nd index depth")? as usize;
            if depth > rank {
                return Err(format!("scatter_nd: index depth {depth} exceeds data rank {rank}"));
            }
            let mut want = idx.0[..ir - 1].to_vec();
            want.extend(x.shape.0[depth..].iter().cloned());
            if ins[2].shape.0 != want {
                return Err(format!("scatter_nd: updates have shape {}, expected {}", ins[2].shape, Shape(want)));
            }
            Ok(same(x))
        }
        Op::Pad { pads, .. } => {
            if pads.len() != 2 * rank {
                return Err(format!("pad: {} pads for rank {rank}, need {}", pads.len(), 2 * rank));
            }
            same_dtype(x, ins[1], "pad value")?;
            let mut dims = Vec::with_capacity(rank);
            for i in 0..rank {
                if pads[i] == 0 && pads[i + rank] == 0 {
                    dims.push(x.shape.0[i].clone());
                    continue;
                }
                let n = cdim(&x.shape.0[i], "a padded axis")? + pads[i] + pads[i + rank];
                if n < 0 {
                    return Err(format!("pad: axis {i} would have negative size {n}"));
                }
                dims.push(Dim::Const(n as u64));
            }
            Ok(vec![with_shape(x.dtype, dims)])
        }
        Op::Tile { repeats } => {
            if repeats.len() != rank || repeats.iter().any(|&r| r < 0) {
                return Err(format!("tile: repeats {repeats:?} must have {rank} non-negative entries"));
            }
            let mut dims = Vec::with_capacity(rank);
            for i in 0..rank {
                if repeats[i] == 1 {
                    dims.push(x.shape.0[i].clone());
                } else {
                    dims.push(Dim::Const((cdim(&x.shape.0[i], "a tiled axis")? * repeats[i]) as u64));
                }
            }
            Ok(vec![with_shape(x.dtype, dims)])
        }
        Op::Trilu { .. } => {
            if rank < 2 {
                return Err("trilu needs rank >= 2".into());
            }
            Ok(same(x))
        }
        Op::OneHot { axis, depth } => {
            index_type(x, "one_hot")?;
            if *depth <= 0 {
                return Err(format!("one_hot: depth {depth} must be positive"));
            }
            if ins[1].shape.num_elements() != Some(2) {
                return Err("one_hot: values must hold [off, on]".into());
            }
            let a = norm_axis(*axis, rank + 1)?;
            let mut dims = x.shape.0.clone();
            dims.insert(a, Dim::Const(*depth as u64));
            Ok(vec![with_shape(ins[1].dtype, dims)])
        }
        Op::TopK { axis, k, .. } => {
            need_numeric(x, "topk")?;
            let a = norm_axis(*axis, rank)?;
            let n = cdim(&x.shape.0[a], "topk axis")?;
            if *k < 0 || *k > n {
                return Err(format!("topk: k = {k} but the axis has {n} elements"));
            }
            let mut dims = x.shape.0.clone();
            dims[a] = Dim::Const(*k as u64);
            Ok(vec![with_shape(x.dtype, dims.clone()), with_shape(DType::I64, dims)])
        }
        Op::DepthToSpace { blocksize, .. } | Op::SpaceToDepth { blocksize } => {
            if rank != 4 || *blocksize <= 0 {
                return Err(format!("{} needs rank 4 and a positive blocksize", info.name));
            }
            let b = *blocksize;
            let c = cdim(&x.shape.0[1], "channels")?;
            let h = cdim(&x.shape.0[2], "height")?;
            let w = cdim(&x.shape.0[3], "width")?;
            let dims = if matches!(op, Op::DepthToSpace { .. }) {
                if c % (b * b) != 0 {
                    return Err(format!("depth_to_space: {c} channels not divisible by {}", b * b));
                }
                vec![c / (b * b), h * b, w * b]
            } else {
                if h % b != 0 || w % b != 0 {
                    return Err(format!("space_to_depth: {h}x{w} not divisible by {b}"));
                }
                vec![c * b * b, h / b, w / b]
            };
            let mut out = vec![x.shape.0[0].clone()];
            out.extend(consts(&dims));
            Ok(vec![with_shape(x.dtype, out)])
        }
        Op::Resize { sizes, scales, .. } => {
            if sizes.len() != rank || scales.len() != rank || sizes.iter().any(|&s| s < 0) {
                return Err(format!("resize: sizes and scales need {rank} entries"));
            }
            Ok(vec![with_shape(x.dtype, consts(sizes))])
        }
        Op::Einsum { equation } => einsum(equation, ins),
        Op::Attention { .. } => attention(ins),
    }
}

/// Checks that every dim of `idx` (but `skip`) is at most the same dim of `data`, where both are known.
fn fits_within(idx: &Shape, data: &Shape, skip: Option<usize>, op: &str) -> R<()> {
    for (i, (p, q)) in idx.0.iter().zip(&data.0).enumerate() {
        if Some(i) == skip {
            continue;
        }
        if let (Some(p), Some(q)) = (p.as_const(), q.as_const()) {
            if p > q {
                return Err(format!("{op}: indices dim {i} is {p}, larger than the data's {q}"));
            }
        }
    }
    Ok(())
}

fn index_type(t: &TensorType, op: &str) -> R<()> {
    if !matches!(t.dtype, DType::I32 | DType::I64) {
        return Err(format!("{op}: indices must be i32 or i64, found {}", t.dtype));
    }
    Ok(())
}

/// Slice clamping (numpy's, as the ONNX reference implementation does it): the first index and the
/// element count of `start:end:step` on an axis of size `n`.
pub fn slice_range(start: i64, end: i64, step: i64, n: i64) -> (i64, i64) {
    let fix = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (s, e) = (fix(start), fix(end));
    // Lengths as `(span - 1) / |step| + 1`, which cannot overflow for any step (numpy's clamping, which
    // the ONNX reference implementation follows).
    if step > 0 {
        let s = s.clamp(0, n);
        let e = e.clamp(0, n);
        let len = if e > s { ((e - s - 1) as u64 / step as u64 + 1) as i64 } else { 0 };
        (s, len)
    } else {
        let s = s.clamp(-1, n - 1);
        let e = e.clamp(-1, n - 1);
        let len = if s > e { ((s - e - 1) as u64 / step.unsigned_abs() + 1) as i64 } else { 0 };
        (s, len)
    }
}

fn unary(u: UnaryOp, x: &TensorType) -> R<Vec<TensorType>> {
    match u {
        UnaryOp::Not => {
            if x.dtype != DType::Bool {
                return Err(format!("not needs bool, found {}", x.dtype));
            }
        }
        UnaryOp::BitwiseNot => {
            if !x.dtype.is_int() {
                return Err(format!("bitwise_not needs an integer input, found {}", x.dtype));
            }
        }
        UnaryOp::Identity => {}
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sign | UnaryOp::Relu => need_numeric(x, u.as_str())?,
        _ => need_float(x, u.as_str())?,
    }
    let dtype = if u.is_predicate() { DType::Bool } else { x.dtype };
    Ok(vec![TensorType::new(dtype, x.shape.clone())])
}

fn binary(b: BinaryOp, x: &TensorType, y: &TensorType) -> R<Vec<TensorType>> {
    let name = b.as_str();
    if b != BinaryOp::Pow {
        same_dtype(x, y, name)?;
    }
    match b {
        BinaryOp::And | BinaryOp::Or | BinaryOp::Xor if x.dtype != DType::Bool => {
            return Err(format!("{name} needs bool inputs, found {}", x.dtype));
        }
        BinaryOp::BitAnd | BinaryOp::BitOr | BinaryOp::BitXor | BinaryOp::ShiftLeft | BinaryOp::ShiftRight
            if !x.dtype.is_int() =>
        {
            return Err(format!("{name} needs integer inputs, found {}", x.dtype));
        }
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Pow
        | BinaryOp::Mod
        | BinaryOp::Fmod
        | BinaryOp::PRelu => need_numeric(x, name)?,
        _ => {}
    }
    let s = broadcast_shapes(&x.shape, &y.shape)
        .ok_or_else(|| format!("{name}: shapes {} and {} do not broadcast", x.shape, y.shape))?;
    let dtype = if b.is_comparison() { DType::Bool } else { x.dtype };
    Ok(vec![TensorType::new(dtype, s)])
}

fn matmul(a: &TensorType, b: &TensorType) -> R<Vec<TensorType>> {
    same_dtype(a, b, "matmul")?;
    need_numeric(a, "matmul")?;
    let (ra, rb) = (a.shape.rank(), b.shape.rank());
    if ra == 0 || rb == 0 {
        return Err("matmul: operands must have rank >= 1".into());
    }
    let mut sa = a.shape.0.clone();
    let mut sb = b.shape.0.clone();
    if ra == 1 {
        sa.insert(0, Dim::Const(1));
    }
    if rb == 1 {
        sb.push(Dim::Const(1));
    }
    let (m, k1) = (&sa[sa.len() - 2], &sa[sa.len() - 1]);
    let (k2, n) = (&sb[sb.len() - 2], &sb[sb.len() - 1]);
    if k1 != k2 {
        return Err(format!("matmul: contracted dims differ ({} has {k1}, {} has {k2})", a.shape, b.shape));
    }
    let batch = broadcast_shapes(&Shape(sa[..sa.len() - 2].to_vec()), &Shape(sb[..sb.len() - 2].to_vec()))
        .ok_or_else(|| format!("matmul: batch dims of {} and {} do not broadcast", a.shape, b.shape))?;
    let mut dims = batch.0;
    if ra != 1 {
        dims.push(m.clone());
    }
    if rb != 1 {
        dims.push(n.clone());
    }
    Ok(vec![with_shape(a.dtype, dims)])
}

fn attention(ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let (q, k, v) = (ins[0], ins[1], ins[2]);
    need_float(q, "attention")?;
    for t in &ins[1..] {
        same_dtype(q, t, "attention")?;
    }
    let r = q.shape.rank();
    if r < 2 || k.shape.rank() != r || v.shape.rank() != r {
        return Err(format!("attention: q {}, k {}, v {} need the same rank >= 2", q.shape, k.shape, v.shape));
    }
    let d = |t: &TensorType, i: usize| t.shape.0[t.shape.rank() - i].clone();
    if d(q, 1) != d(k, 1) {
        return Err(format!("attention: q and k head sizes differ ({} and {})", d(q, 1), d(k, 1)));
    }
    if d(k, 2) != d(v, 2) {
        return Err(format!("attention: k and v lengths differ ({} and {})", d(k, 2), d(v, 2)));
    }
    let batch = |t: &TensorType| Shape(t.shape.0[..r - 2].to_vec());
    let b = broadcast_shapes(&batch(q), &batch(k))
        .and_then(|s| broadcast_shapes(&s, &batch(v)))
        .ok_or_else(|| format!("attention: batch dims of {}, {}, {} do not broadcast", q.shape, k.shape, v.shape))?;
    if let Some(m) = ins.get(3) {
        let mut scores = b.0.clone();
        scores.extend([d(q, 2), d(k, 2)]);
        let scores = Shape(scores);
        if broadcast_shapes(&scores, &m.shape).as_ref() != Some(&scores) {
            return Err(format!("attention: mask {} does not broadcast to scores {scores}", m.shape));
        }
    }
    let mut out = b.0;
    out.extend([d(q, 2), d(v, 1)]);
    Ok(vec![with_shape(q.dtype, out)])
}

fn spatial_check(what: &str, nsp: usize, strides: &[i64], pads: &[i64], dilations: &[i64]) -> R<()> {
    if strides.len() != nsp || dilations.len() != nsp || pads.len() != 2 * nsp {
        return Err(format!("{what}: strides, dilations need {nsp} entries and pads {}", 2 * nsp));
    }
    if strides.iter().chain(dilations).any(|&v| v <= 0) || pads.iter().any(|&p| p < 0) {
        return Err(format!("{what}: strides and dilations must be positive and pads non-negative"));
    }
    Ok(())
}

fn conv(
    x: &TensorType,
    ins: &[&TensorType],
    strides: &[i64],
    pads: &[i64],
    dil: &[i64],
    group: i64,
) -> R<Vec<TensorType>> {
    let w = ins[1];
    need_float(x, "conv")?;
    same_dtype(x, w, "conv")?;
    let rank = x.shape.rank();
    if rank < 3 || w.shape.rank() != rank {
        return Err(format!("conv: input {} and weight {} must have the same rank >= 3", x.shape, w.shape));
    }
    let nsp = rank - 2;
    spatial_check("conv", nsp, strides, pads, dil)?;
    let c = cdim(&x.shape.0[1], "conv input channels")?;
    let m = cdim(&w.shape.0[0], "conv output channels")?;
    let cg = cdim(&w.shape.0[1], "conv weight channels")?;
    if group <= 0 || c != cg * group || m % group != 0 {
        return Err(format!("conv: {c} input channels, weight {} and group {group} disagree", w.shape));
    }
    if let Some(b) = ins.get(2) {
        same_dtype(x, b, "conv bias")?;
        if b.shape != Shape::from_consts(&[m as usize]) {
            return Err(format!("conv: bias shape {} must be [{m}]", b.shape));
        }
    }
    let mut dims = vec![x.shape.0[0].clone(), Dim::Const(m as u64)];
    for i in 0..nsp {
        let n = cdim(&x.shape.0[2 + i], "conv spatial dims")?;
        let k = cdim(&w.shape.0[2 + i], "conv kernel")?;
        let eff = dil[i] * (k - 1) + 1;
        let padded = n + pads[i] + pads[i + nsp];
        if padded < eff {
            return Err(format!("conv: kernel extent {eff} exceeds padded input {padded} on spatial axis {i}"));
        }
        dims.push(Dim::Const(((padded - eff) / strides[i] + 1) as u64));
    }
    Ok(vec![with_shape(x.dtype, dims)])
}

#[allow(clippy::too_many_arguments)]
fn conv_transpose(
    x: &TensorType,
    ins: &[&TensorType],
    strides: &[i64],
    pads: &[i64],
    dil: &[i64],
    group: i64,
    out_pad: &[i64],
) -> R<Vec<TensorType>> {
    let w = ins[1];
    need_float(x, "conv_transpose")?;
    same_dtype(x, w, "conv_transpose")?;
    let rank = x.shape.rank();
    if rank < 3 || w.shape.rank() != rank {
        return Err(format!("conv_transpose: input {} and weight {} must have the same rank >= 3", x.shape, w.shape));
    }
    let nsp = rank - 2;
    spatial_check("conv_transpose", nsp, strides, pads, dil)?;
    if out_pad.len() != nsp {
        return Err(format!("conv_transpose: output_padding needs {nsp} entries"));
    }
    let c = cdim(&x.shape.0[1], "conv_transpose input channels")?;
    if group <= 0 || cdim(&w.shape.0[0], "weight")? != c {
        return Err(format!("conv_transpose: {c} input channels and weight {} disagree", w.shape));
    }
    let m = cdim(&w.shape.0[1], "weight")? * group;
    if let Some(b) = ins.get(2) {
        if b.shape != Shape::from_consts(&[m as usize]) {
            return Err(format!("conv_transpose: bias shape {} must be [{m}]", b.shape));
        }
    }
    let mut dims = vec![x.shape.0[0].clone(), Dim::Const(m as u64)];
    for i in 0..nsp {
        let n = cdim(&x.shape.0[2 + i], "spatial dims")?;
        let k = cdim(&w.shape.0[2 + i], "kernel")?;
        let o = strides[i] * (n - 1) + out_pad[i] + (k - 1) * dil[i] + 1 - pads[i] - pads[i + nsp];
        if o < 0 {
            return Err(format!("conv_transpose: negative output size on spatial axis {i}"));
        }
        dims.push(Dim::Const(o as u64));
    }
    Ok(vec![with_shape(x.dtype, dims)])
}

/// Output length of a pooling window sweep, ONNX rules (a ceil-mode window must start inside the input
/// or its begin padding).
pub fn pool_out_len(n: i64, k: i64, stride: i64, pad_begin: i64, pad_end: i64, dil: i64, ceil: bool) -> i64 {
    let eff = dil * (k - 1) + 1;
    let span = n + pad_begin + pad_end - eff;
    if span < 0 {
        return 0;
    }
    let mut out = if ceil { (span + stride - 1) / stride + 1 } else { span / stride + 1 };
    if ceil && (out - 1) * stride >= n + pad_begin {
        out -= 1;
    }
    out
}

fn pool(x: &TensorType, kernel: &[i64], strides: &[i64], pads: &[i64], dil: &[i64], ceil: bool) -> R<Vec<TensorType>> {
    let rank = x.shape.rank();
    if rank < 3 {
        return Err(format!("pooling needs rank >= 3, found {}", x.shape));
    }
    let nsp = rank - 2;
    spatial_check("pool", nsp, strides, pads, dil)?;
    if kernel.len() != nsp || kernel.iter().any(|&k| k <= 0) {
        return Err(format!("pool: kernel {kernel:?} needs {nsp} positive entries"));
    }
    let mut dims = x.shape.0[..2].to_vec();
    for i in 0..nsp {
        let n = cdim(&x.shape.0[2 + i], "pooled spatial dims")?;
        let o = pool_out_len(n, kernel[i], strides[i], pads[i], pads[i + nsp], dil[i], ceil);
        if o <= 0 {
            return Err(format!("pool: window larger than padded input on spatial axis {i}"));
        }
        dims.push(Dim::Const(o as u64));
    }
    Ok(vec![with_shape(x.dtype, dims)])
}

/// Parses an einsum equation `ab,bc->ac` into input label lists and the output labels.
pub fn parse_einsum(eq: &str) -> R<(Vec<Vec<char>>, Vec<char>)> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = eq.split_once("->").ok_or("einsum: equation needs an explicit `->` output")?;
    let ins: Vec<Vec<char>> = lhs.split(',').map(|s| s.chars().collect()).collect();
    let out: Vec<char> = rhs.chars().collect();
    for c in ins.iter().flatten().chain(&out) {
        if !c.is_ascii_alphabetic() {
            return Err(format!("einsum: unsupported label `{c}` (ellipsis is not supported)"));
        }
    }
    Ok((ins, out))
}

fn einsum(eq: &str, ins: &[&TensorType]) -> R<Vec<TensorType>> {
    let (labels, out) = parse_einsum(eq)?;
    if labels.len() != ins.len() {
        return Err(format!("einsum: equation has {} operands, got {}", labels.len(), ins.len()));
    }
    let mut sizes: std::collections::BTreeMap<char, Dim> = Default::default();
    for (l, t) in labels.iter().zip(ins) {
        same_dtype(ins[0], t, "einsum")?;
        if l.len() != t.shape.rank() {
            return Err(format!("einsum: operand `{}` has rank {}", l.iter().collect::<String>(), t.shape.rank()));
        }
        for (c, d) in l.iter().zip(&t.shape.0) {
            match sizes.get(c) {
                Some(prev) if prev != d && *prev != Dim::Const(1) && *d != Dim::Const(1) => {
                    return Err(format!("einsum: label `{c}` has sizes {prev} and {d}"));
                }
                Some(prev) if *prev != Dim::Const(1) => {}
                _ => {
                    sizes.insert(*c, d.clone());
                }
            }
        }
    }
    let dims = out
        .iter()
        .map(|c| sizes.get(c).cloned().ok_or_else(|| format!("einsum: output label `{c}` is not in any input")))
        .collect::<R<Vec<_>>>()?;
    Ok(vec![with_shape(ins[0].dtype, dims)])
}
