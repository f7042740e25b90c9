//! `lower_group`: picks the template for a kernel group by its anchor op (elementwise/movement loop,
//! gemm for matmul and convolution, row kernel for softmax and norms, attention, concat copies) and
//! builds its kernels with the expression builder of the parent module.

use super::*;

fn finish(b: &Build, mut kern: Kernel, max_extent: u64) -> R<Kernel> {
    kern.bufs = b.kbufs()?;
    collapse(&mut kern, max_extent);
    super::split::split_guards(&mut kern);
    sovc_ir::kernel::verify(&kern).map_err(|e| format!("lowering made an invalid kernel: {}", e.join("; ")))?;
    Ok(kern)
}

fn values(b: &Build) -> Vec<ValueId> {
    b.bufs.iter().map(|x| x.0).collect()
}

/// A gemm and its epilogue (the group's value `out`, computed in place in C's buffer `cb`): fused on rows
/// of C when the epilogue runs row by row, else a separate in-place loop kernel after the gemm.
fn gemm_kernels(b: &mut Build, mut gemm: Gemm, epilogue: Option<(ValueId, u32)>, name: &str) -> R<Vec<Lowered>> {
    let Some((out, cb)) = epilogue else {
        gemm.bufs = b.kbufs()?;
        sovc_ir::kernel::verify_op(&KernelOp::Gemm(Box::new(gemm.clone()))).map_err(|e| e.join("; "))?;
        return Ok(vec![Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: values(b) }]);
    };
    let kern = b.elementwise_kernel(&format!("{name}.epilogue"), out, cb)?;
    let rows = gemm.batch * gemm.groups * gemm.m;
    let kern = finish(b, kern, rows)?;
    gemm.bufs = kern.bufs.clone();
    let vals = values(b);
    if kern.extent == rows {
        gemm.epilogue = Some(kern);
        sovc_ir::kernel::verify_op(&KernelOp::Gemm(Box::new(gemm.clone()))).map_err(|e| e.join("; "))?;
        Ok(vec![Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: vals }])
    } else {
        Ok(vec![
            Lowered { op: KernelOp::Gemm(Box::new(gemm)), values: vals.clone() },
            Lowered { op: KernelOp::Loop(kern), values: vals },
        ])
    }
}

/// Lowers one group, or says why it stays on the reference path.
pub fn lower_group(g: &Graph, k: &KernelGroup, name: &str, scalars: &BTreeMap<ValueId, f32>) -> R<Vec<Lowered>> {
    let mut in_group = vec![false; g.nodes.len()];
    for &n in &k.nodes {
        in_group[n] = true;
    }
    let defs = g.defs();
    let new_build = || Build {
        g,
        defs: defs.clone(),
        in_group: in_group.clone(),
        scalars,
        bufs: Vec::new(),
        leaves: BTreeMap::new(),
        next_var: 0,
        next_let: 0,
        shared: Vec::new(),
    };
    let mut b = new_build();
    for &v in k.inputs.iter().chain(&k.outputs) {
        b.shape(v)?;
    }
    let is_reshape = |n: usize| matches!(g.nodes[n].op, Op::Reshape { .. });
    let anchor_node =
        k.nodes.iter().copied().find(|&n| g.nodes[n].op.info().kind != sovc_ir::OpKind::Elementwise && !is_reshape(n));
    // Nodes after the anchor that compute something (reshapes move no data).
    let epilogue_nodes = k.nodes.iter().filter(|&&n| Some(n) != anchor_node && !is_reshape(n)).count();
    let out = k.outputs[0];
    let movement = matches!(
        anchor_node.map(|n| &g.nodes[n].op),
        None | Some(
            Op::Transpose { .. }
                | Op::Expand { .. }
                | Op::Slice { .. }
                | Op::Reduce { .. }
                | Op::Split { .. }
                | Op::MaxPool { .. }
                | Op::AvgPool { .. }
        )
    );
    // Depthwise convolutions are window sums, lowered like pooling.
    let movement = movement || anchor_node.is_some_and(|n| is_depthwise(g, n));
    if k.outputs.len() != 1 && !movement {
        return Err(format!("{} outputs", k.outputs.len()));
    }
    let anchor = anchor_node.map(|n| g.nodes[n].op.clone());
    match anchor {
        _ if movement => {
            // One loop kernel per output.
            let mut res = Vec::new();
            for (i, &o) in k.outputs.iter().enumerate() {
                let mut b = new_build();
                let ob = b.buf(o, Access::Write);
                let kname = if k.outputs.len() == 1 { name.to_string() } else { format!("{name}.{i}") };
                let kern = b.elementwise_kernel(&kname, o, ob)?;
                let kern = finish(&b, kern, u64::MAX)?;
                res.push(Lowered { op: KernelOp::Loop(kern), values: values(&b) });
            }
            Ok(res)
        }
        Some(Op::MatMul {}) => {
            let n = anchor_node.unwrap_or_default();
            let (av, bv, mv) = (g.nodes[n].inputs[0], g.nodes[n].inputs[1], g.nodes[n].outputs[0]);
            let (ash, bsh) = (b.shape(av)?, b.shape(bv)?);
            b.shape(mv)?;
            if ash.len() < 2 || bsh.len() < 2 {
                return Err("matmul of a vector".into());
            }
            let (kk, nn) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
            let m = ash[ash.len() - 2];
            let (batch, mm, a_batch, b_batch) = if bsh.len() == 2 {
                (1, ash.iter().product::<usize>() / kk, 0, 0)
            } else if ash[..ash.len() - 2] == bsh[..bsh.len() - 2] {
                (bsh[..bsh.len() - 2].iter().product(), m, (m * kk) as i64, (kk * nn) as i64)
            } else if ash.len() == 2 {
                (bsh[..bsh.len() - 2].iter().product(), m, 0, (kk * nn) as i64)
            } else {
                return Err("matmul with broadcast batch dimensions".into());
            };
            if g.ty(out).shape.num_elements() != Some((batch * mm * nn) as u64) {
                return Err("an epilogue that changes the matmul's size".into());
            }
            let ab = b.buf(av, Access::Read);
            let bb = b.buf(bv, Access::Read);
            let has_epilogue = epilogue_nodes > 0;
            let cb = b.buf(out, if has_epilogue { Access::ReadWrite } else { Access::Write });
            let b_const = matches!(b.defs[bv.index()], Some(ValueDef::Const(_)));
            let gemm = Gemm {
                name: name.to_string(),
                bufs: Vec::new(),
                batch: batch as u64,
                m: mm as u64,
                n: nn as u64,
                k: kk as u64,
                a: Operand { buf: ab, offset: 0, batch: a_batch, group: 0, rows: kk as i64, cols: 1 },
                b: Operand { buf: bb, offset: 0, batch: b_batch, group: 0, rows: nn as i64, cols: 1 },
                b_const,
                b_im2col: None,
                groups: 1,
                c: Operand {
                    buf: cb,
                    offset: 0,
                    batch: (mm * nn) as i64,
                    group: (mm * nn) as i64,
                    rows: nn as i64,
                    cols: 1,
                },
                epilogue: None,
            };
            if has_epilogue {
                b.leaves.insert(mv, Leaf::Buffer(cb));
            }
            gemm_kernels(&mut b, gemm, has_epilogue.then_some((out, cb)), name)
        }
        Some(Op::Conv { strides, pads, dilations, group }) => {
            let n = anchor_node.unwrap_or_default();
            let node = &g.nodes[n];
            let (xv, wv, yv) = (node.inputs[0], node.inputs[1], node.outputs[0]);
            let (xs, ws, ys) = (b.shape(xv)?, b.shape(wv)?, b.shape(yv)?);
            if xs.len() != 4 {
                return Err("convolution other than 2-D".into());
            }
            if b.shape(out)?.iter().product::<usize>() != ys.iter().product::<usize>() {
                return Err("an epilogue that changes the convolution's size".into());
            }
            let groups = group as usize;
            let (nb, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
            let (co, kh, kw) = (ws[0], ws[2], ws[3]);
            let (oh, ow) = (ys[2], ys[3]);
            let (cpg, copg) = (c / groups, co / groups);
            let (kk, pp) = (cpg * kh * kw, oh * ow);
            let bias = node.inputs.get(2).copied();
            let has_epilogue = epilogue_nodes > 0 || bias.is_some();
            let xb = b.buf(xv, Access::Read);
            let wb = b.buf(wv, Access::Read);
            let cb = b.buf(out, if has_epilogue { Access::ReadWrite } else { Access::Write });
            let pointwise = kh == 1 && kw == 1 && strides.iter().all(|&s| s == 1) && pads.iter().all(|&p| p == 0);
            let (b_rows, b_cols, im2col) = if pointwise {
                (pp as i64, 1, None)
            } else {
                let im = sovc_ir::kernel::Im2col {
                    channels: cpg as u64,
                    h: h as u64,
                    w: w as u64,
                    kh: kh as u64,
                    kw: kw as u64,
                    sh: strides[0] as u64,
                    sw: strides[1] as u64,
                    ph: pads[0] as u64,
                    pw: pads[1] as u64,
                    dh: dilations[0] as u64,
                    dw: dilations[1] as u64,
                    oh: oh as u64,
                    ow: ow as u64,
                };
                (0, 0, Some(im))
            };
            let gemm = Gemm {
                name: name.to_string(),
                bufs: Vec::new(),
                batch: nb as u64,
                m: copg as u64,
                n: pp as u64,
                k: kk as u64,
                a: Operand { buf: wb, offset: 0, batch: 0, group: (copg * kk) as i64, rows: kk as i64, cols: 1 },
                b: Operand {
                    buf: xb,
                    offset: 0,
                    batch: (c * h * w) as i64,
                    group: (cpg * h * w) as i64,
                    rows: b_rows,
                    cols: b_cols,
                },
                b_const: false,
                b_im2col: im2col,
                groups: groups as u64,
                c: Operand {
                    buf: cb,
                    offset: 0,
                    batch: (co * pp) as i64,
                    group: (copg * pp) as i64,
                    rows: pp as i64,
                    cols: 1,
                },
                epilogue: None,
            };
            if has_epilogue {
                b.leaves.insert(
                    yv,
                    match bias {
                        Some(bv) => Leaf::BufferBias(cb, bv),
                        None => Leaf::Buffer(cb),
                    },
                );
            }
            gemm_kernels(&mut b, gemm, has_epilogue.then_some((out, cb)), name)
        }
        Some(Op::Concat { axis }) if epilogue_nodes == 0 => {
            // One copy kernel per input, each into its slice of the output. Index by the concat's own
            // shape: a reshape after it (in the group) keeps the same flat layout in `out`'s buffer.
            let n = anchor_node.unwrap_or_default();
            let os = b.shape(g.nodes[n].outputs[0])?;
            let a = norm_axis(axis, os.len());
            let mut offset = 0usize;
            let mut res = Vec::new();
            for (i, &xv) in g.nodes[n].inputs.iter().enumerate() {
                let xs = b.shape(xv)?;
                let mut bi = new_build();
                let ob = bi.buf(out, Access::Write);
                let vars: Vec<Var> = (0..xs.len()).map(|d| if d == 0 { 0 } else { bi.fresh_var() }).collect();
                let coords: Vec<Index> = vars.iter().map(|&v| var(v)).collect();
                let value = bi.load(xv, &Coords::Dims(coords.clone()))?;
                let mut oc = coords;
                oc[a] = ix_add(&oc[a], &Index::new(offset as i64, &[]));
                let mut body = vec![Stmt::Store { buf: ob, index: flat(&os, &Coords::Dims(oc)), value }];
                for d in (1..xs.len()).rev() {
                    body = vec![Stmt::For { var: vars[d], extent: xs[d] as u64, body }];
                }
                offset += xs[a];
                if xs.contains(&0) {
                    continue;
                }
                let kern = Kernel::new(format!("{name}.{i}"), Vec::new(), xs[0] as u64, body);
                let kern = finish(&bi, kern, u64::MAX)?;
                res.push(Lowered { op: KernelOp::Loop(kern), values: values(&bi) });
            }
            Ok(res)
        }
        Some(op @ (Op::Softmax { .. } | Op::LayerNorm { .. } | Op::RmsNorm { .. })) => {
            let n = anchor_node.unwrap_or_default();
            let node = &g.nodes[n];
            let (x, nv) = (node.inputs[0], node.outputs[0]);
            let xs = b.shape(x)?;
            let axis = match op {
                Op::Softmax { axis } | Op::LayerNorm { axis, .. } | Op::RmsNorm { axis, .. } => {
                    norm_axis(axis, xs.len())
                }
                _ => unreachable!(),
            };
            if axis + 1 != xs.len() || b.shape(out)? != xs {
                return Err("a normalization over other than the last axis".into());
            }
            let width = xs[axis] as u64;
            // Loops over the leading dims, statistics, then the row.
            let lead: Vec<Var> = (0..xs.len() - 1).map(|d| if d == 0 { 0 } else { b.fresh_var() }).collect();
            let j = if xs.len() == 1 { 0 } else { b.fresh_var() };
            let rv = b.fresh_var();
            let at = |last: Var| Coords::Dims(lead.iter().map(|&v| var(v)).chain([var(last)]).collect());
            let xr = b.load(x, &at(rv))?;
            let inv_n = Expr::Const(1.0 / width as f32);
            let mut pre = Vec::new();
            match op {
                Op::Softmax { .. } => {
                    let (mx, inv) = (b.fresh_let(), b.fresh_let());
                    pre.push(Stmt::Let {
                        id: mx,
                        value: Expr::Reduce { op: Reduce::Max, var: rv, extent: width, body: Box::new(xr.clone()) },
                    });
                    let e = Expr::unary(UnaryOp::Exp, Expr::binary(BinaryOp::Sub, xr, Expr::Get(mx)));
                    let s = Expr::Reduce { op: Reduce::Add, var: rv, extent: width, body: Box::new(e) };
                    pre.push(Stmt::Let { id: inv, value: Expr::unary(UnaryOp::Reciprocal, s) });
                    b.leaves.insert(nv, Leaf::Softmax { x, max: mx, inv });
                }
                Op::LayerNorm { epsilon, .. } | Op::RmsNorm { epsilon, .. } => {
                    let rms = matches!(op, Op::RmsNorm { .. });
                    let rstd = b.fresh_let();
                    let (mean, centered) = if rms {
                        (None, xr.clone())
                    } else {
                        let m = b.fresh_let();
                        let s = Expr::Reduce { op: Reduce::Add, var: rv, extent: width, body: Box::new(xr.clone()) };
                        pre.push(Stmt::Let { id: m, value: Expr::binary(BinaryOp::Mul, s, inv_n.clone()) });
                        (Some(m), Expr::binary(BinaryOp::Sub, xr, Expr::Get(m)))
                    };
                    let sq = Expr::binary(BinaryOp::Mul, centered.clone(), centered);
                    let var_e = Expr::binary(
                        BinaryOp::Mul,
                        Expr::Reduce { op: Reduce::Add, var: rv, extent: width, body: Box::new(sq) },
                        inv_n,
                    );
                    let v = Expr::binary(BinaryOp::Add, var_e, Expr::Const(epsilon));
                    pre.push(Stmt::Let { id: rstd, value: Expr::unary(UnaryOp::Rsqrt, v) });
                    let gamma = node.inputs.get(1).copied();
                    let beta = node.inputs.get(2).copied();
                    b.leaves.insert(nv, Leaf::Norm { x, mean, rstd, gamma, beta });
                }
                _ => unreachable!(),
            }
            let ob = b.buf(out, Access::Write);
            let coords = at(j);
            let value = b.expr(out, &coords)?;
            let mut row = std::mem::take(&mut b.shared);
            row.push(Stmt::Store { buf: ob, index: flat(&xs, &coords), value });
            let mut body = pre;
            if xs.len() == 1 {
                return Err("a normalization of a vector".into());
            }
            body.push(Stmt::For { var: j, extent: width, body: row });
            for d in (1..lead.len()).rev() {
                body = vec![Stmt::For { var: lead[d], extent: xs[d] as u64, body }];
            }
            let kern = Kernel::new(name, Vec::new(), xs[0] as u64, body);
            let kern = finish(&b, kern, u64::MAX)?;
            Ok(vec![Lowered { op: KernelOp::Loop(kern), values: values(&b) }])
        }
        Some(Op::Attention { scale }) => {
            let n = anchor_node.unwrap_or_default();
            let node = &g.nodes[n];
            let (q, kv, v, ov) = (node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]);
            let (qs, ks, vs) = (b.shape(q)?, b.shape(kv)?, b.shape(v)?);
            let r = qs.len();
            if r < 2 || ks.len() != r || vs.len() != r || qs[..r - 2] != ks[..r - 2] || qs[..r - 2] != vs[..r - 2] {
                return Err("attention with broadcast batch or head dimensions".into());
            }
            let heads: usize = qs[..r - 2].iter().product();
            let (sq, d, sk, dv) = (qs[r - 2], qs[r - 1], ks[r - 2], vs[r - 1]);
            let has_epilogue = epilogue_nodes > 0;
            let (qb, kb, vb) = (b.buf(q, Access::Read), b.buf(kv, Access::Read), b.buf(v, Access::Read));
            let ob = b.buf(out, if has_epilogue { Access::ReadWrite } else { Access::Write });
            let mask = match node.inputs.get(3) {
                None => None,
                Some(&mv) => {
                    let ms = b.shape(mv)?;
                    let full: Vec<usize> = qs[..r - 2].iter().copied().chain([sq, sk]).collect();
                    if ms.len() > full.len() {
                        return Err("attention mask of higher rank".into());
                    }
                    let pad = full.len() - ms.len();
                    let st = strides(&ms);
                    let stride = |d: usize| if d < pad || ms[d - pad] == 1 { 0 } else { st[d - pad] };
                    let lead: Vec<i64> = (0..r - 2).map(stride).collect();
                    let hs = if lead.iter().all(|&s| s == 0) {
                        0
                    } else if (0..r - 2).all(|d| stride(d) != 0 || qs[d] == 1)
                        && (0..r - 3).all(|d| qs[d + 1] == 1 || lead[d] == lead[d + 1] * qs[d + 1] as i64)
                    {
                        *lead.iter().rev().find(|&&s| s != 0).unwrap_or(&0)
                    } else {
                        return Err("attention mask broadcast over some but not all heads".into());
                    };
                    Some((b.buf(mv, Access::Read), hs, stride(r - 2), stride(r - 1)))
                }
            };
            let att = sovc_ir::kernel::Attention {
                name: name.to_string(),
                bufs: b.kbufs()?,
                heads: heads as u64,
                sq: sq as u64,
                sk: sk as u64,
                d: d as u64,
                dv: dv as u64,
                scale,
                q: qb,
                k: kb,
                v: vb,
                o: ob,
                mask,
            };
            let mut res = Vec::new();
            if has_epilogue {
                b.leaves.insert(ov, Leaf::Buffer(ob));
                let kern = b.elementwise_kernel(&format!("{name}.epilogue"), out, ob)?;
                let kern = finish(&b, kern, u64::MAX)?;
                let mut att = att;
                att.bufs = kern.bufs.clone();
                sovc_ir::kernel::verify_op(&KernelOp::Attention(att.clone())).map_err(|e| e.join("; "))?;
                res.push(Lowered { op: KernelOp::Attention(att), values: values(&b) });
                res.push(Lowered { op: KernelOp::Loop(kern), values: values(&b) });
            } else {
                sovc_ir::kernel::verify_op(&KernelOp::Attention(att.clone())).map_err(|e| e.join("; "))?;
                res.push(Lowered { op: KernelOp::Attention(att), values: values(&b) });
            }
            Ok(res)
        }
        other => Err(format!("`{}` has no cpu kernel yet", other.map_or("?", |o| o.name()))),
    }
}
