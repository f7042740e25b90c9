//! Lowering a partitioned graph to a Tensix plan. Every f32 value that crosses a kernel group (graph
//! inputs, weights, group results) gets a DRAM tensor in tile layout; each group becomes one program
//! from a template chosen by its anchor op (elementwise chain, matmul with a fused epilogue, softmax,
//! layer norm, attention) or, with no template, a host step that says why. DRAM is allocated once per
//! tensor (no reuse yet), interleaved over the banks.

use crate::builder::ProgramBuilder;
use crate::chain;
use sovc_ir::{ConstData, DType, Graph, Op as GOp, ValueId, Weights};
use sovc_runtime::tensix::device::view_at;
use sovc_runtime::tensix::program::*;
use std::collections::{BTreeMap, BTreeSet};

/// One kernel group of the partition (see `sovc_compiler::partition`).
#[derive(Clone, Debug)]
pub struct Group {
    pub nodes: Vec<usize>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// Target options.
#[derive(Clone, Debug)]
pub struct Options {
    pub device: DeviceDesc,
    pub numerics: NumericOptions,
    /// Share matmul operands across the grid: a core per grid row reads A's blocks and multicasts them
    /// along the row, a core per grid column does the same with B down the column.
    pub multicast: bool,
}

impl Options {
    /// The defaults favour accuracy: bf16 activations and weights, FP32 accumulation, fidelity chosen
    /// per op (HiFi4 for bf16 products).
    pub fn new(device: DeviceDesc) -> Options {
        Options {
            device,
            numerics: NumericOptions {
                activations: DataFormat::Float16_b,
                weights: DataFormat::Float16_b,
                fp32_dest_acc: true,
                fidelity: None,
                split: false,
            },
            multicast: true,
        }
    }
}

/// The plan, and per group how it runs (for the audit).
pub struct Lowered {
    pub plan: Plan,
    pub how: Vec<String>,
}

/// Why a group did not become a program: no template covers it (it runs on the host), or it does not
/// fit in L1 (a compile error).
#[derive(Debug)]
pub enum LowerError {
    Unsupported(String),
    L1(String),
}

impl From<String> for LowerError {
    fn from(s: String) -> LowerError {
        LowerError::Unsupported(s)
    }
}

impl From<&str> for LowerError {
    fn from(s: &str) -> LowerError {
        LowerError::Unsupported(s.to_string())
    }
}

/// What the templates see.
pub struct Ctx<'a> {
    pub g: &'a Graph,
    pub opts: &'a Options,
    pub tensor_of: BTreeMap<ValueId, u32>,
    pub tensors: Vec<DramTensor>,
    pub scalars: BTreeMap<ValueId, f32>,
    /// The rows dim of each value's view (see `sovc_runtime::tensix::device::view_at`).
    pub views: BTreeMap<ValueId, isize>,
    /// Constants stored as bf16 high and low parts (split precision): their two plan tensors.
    pub parts: BTreeMap<ValueId, (u32, u32)>,
}

impl Ctx<'_> {
    /// The rows dim of `v`'s view.
    pub fn k(&self, v: ValueId) -> isize {
        self.views.get(&v).copied().unwrap_or(self.g.ty(v).shape.rank() as isize - 2)
    }

    /// Fails unless `v` has the default view (rows and columns its last two dims).
    pub fn default_view(&self, v: ValueId) -> Result<(), String> {
        let r = self.g.ty(v).shape.rank() as isize;
        let k = self.k(v);
        if k == r - 2 || r < 2 && k < 0 {
            Ok(())
        } else {
            Err(format!("%{} is stored with rows at dim {k} (a convolution layout)", v.0))
        }
    }

    /// The stored `[batch, rows, cols]` view of `v`'s DRAM tensor (or of its parts).
    pub fn view(&self, v: ValueId) -> Result<(u64, u64, u64), String> {
        let i = match self.parts.get(&v) {
            Some(&(hi, _)) => hi,
            None => self.dram(v)?,
        };
        let t = &self.tensors[i as usize];
        Ok((t.batch, t.rows, t.cols))
    }

    /// The plan tensor of `v`, or why it has none.
    pub fn dram(&self, v: ValueId) -> Result<u32, String> {
        self.tensor_of.get(&v).copied().ok_or_else(|| format!("%{} ({}) is not in device DRAM", v.0, self.g.ty(v)))
    }

    pub fn dims(&self, v: ValueId) -> Result<Vec<usize>, String> {
        chain::dims(self.g, v).ok_or_else(|| format!("%{} has a symbolic shape", v.0))
    }

    pub fn builder(&self, name: &str, kernel: usize, template: &'static str) -> ProgramBuilder<'_> {
        ProgramBuilder::new(&self.opts.device, name, kernel, template, &self.opts.numerics)
    }

    /// The format of the activation CBs.
    pub fn act(&self) -> DataFormat {
        self.opts.numerics.activations
    }

    /// The format of intermediates kept in CBs between compute phases: FP32 with FP32 accumulation.
    pub fn inter(&self) -> DataFormat {
        if self.opts.numerics.fp32_dest_acc {
            DataFormat::Float32
        } else {
            self.opts.numerics.activations
        }
    }
}

fn scalar_of(g: &Graph, weights: &Weights, v: ValueId) -> Option<f32> {
    let c = g.consts.iter().find(|c| c.value == v)?;
    let t = match &c.data {
        ConstData::Inline(t) => t.clone(),
        ConstData::Weight(r) => (**weights.get(r)?).clone(),
    };
    (t.len() == 1 && t.dtype() == DType::F32).then(|| t.to_f64_vec()[0] as f32)
}

/// Lowers `groups` of `g` (canonical, static shapes) for the device in `opts`.
pub fn lower(g: &Graph, weights: &Weights, groups: &[Group], opts: &Options) -> Result<Lowered, String> {
    crate::devices::check(&opts.device)?;
    let is_const: BTreeSet<ValueId> = g.consts.iter().map(|c| c.value).collect();
    let mut scalars = BTreeMap::new();
    for c in &g.consts {
        if let Some(s) = scalar_of(g, weights, c.value) {
            scalars.insert(c.value, s);
        }
    }
    // Weights read as matmul B operands take the weights format.
    let mut weight_uses: BTreeSet<ValueId> = BTreeSet::new();
    for n in &g.nodes {
        let dense = match &n.op {
            GOp::MatMul {} => true,
            GOp::Conv { group, .. } => *group == 1,
            _ => false,
        };
        if dense && is_const.contains(&n.inputs[1]) {
            weight_uses.insert(n.inputs[1]);
        }
    }
    let mut live: Vec<ValueId> = Vec::new();
    let mut push = |v: ValueId| {
        if !live.contains(&v) {
            live.push(v);
        }
    };
    for i in &g.inputs {
        push(i.value);
    }
    for grp in groups {
        for &v in grp.inputs.iter().chain(&grp.outputs) {
            push(v);
        }
    }
    for o in &g.outputs {
        push(o.value);
    }
    let views = assign_views(g, groups);
    // Candidate DRAM tensors (every f32 value crossing a group); only those a program touches are kept.
    let mut tensors = Vec::new();
    let mut tensor_of = BTreeMap::new();
    let mut parts = BTreeMap::new();
    for v in live {
        let ty = g.ty(v);
        let Some(d) = ty.shape.as_consts() else { continue };
        let int = ty.dtype.is_int();
        if ty.dtype != DType::F32 && !int || scalars.contains_key(&v) && !g.outputs.iter().any(|o| o.value == v) {
            continue;
        }
        let k = views.get(&v).copied().unwrap_or(d.len() as isize - 2);
        let (batch, rows, cols) = view_at(&d, k);
        // Matmul and convolution weights take the weights format; other small constants (biases, norm
        // scales, depthwise weights: bandwidth they cost is negligible) stay FP32.
        let small_const = is_const.contains(&v) && d.iter().product::<usize>() <= 1 << 16;
        // Integers (indices, masks) in FP32: exact up to 2^24.
        let format = if int {
            DataFormat::Float32
        } else if weight_uses.contains(&v) {
            opts.numerics.weights
        } else if small_const {
            DataFormat::Float32
        } else {
            opts.numerics.activations
        };
        if opts.numerics.split && weight_uses.contains(&v) {
            // Split-precision products read the weight's bf16 high and low parts.
            let n = tensors.len() as u32;
            parts.insert(v, (n, n + 1));
            for part in [Part::Hi, Part::Lo] {
                let format = DataFormat::Float16_b;
                tensors.push(DramTensor { value: v.0, batch, rows, cols, format, address: 0, part: Some(part) });
            }
            continue;
        }
        tensor_of.insert(v, tensors.len() as u32);
        tensors.push(DramTensor { value: v.0, batch, rows, cols, format, address: 0, part: None });
    }
    let mut cx = Ctx { g, opts, tensor_of, tensors, scalars, views, parts };
    let mut steps = Vec::new();
    let mut how = Vec::new();
    for (k, grp) in groups.iter().enumerate() {
        let anchor = grp.nodes.iter().find(|&&n| !chain::supported(&g.nodes[n].op)).copied();
        let name = format!("k{k:04}_{}", g.nodes[anchor.unwrap_or(grp.nodes[0])].op.name());
        // A group with several results: one program per result, over the nodes it needs.
        let subs = if grp.outputs.len() > 1 { crate::part::cones(g, grp) } else { vec![grp.clone()] };
        let (mark, parts_before) = (cx.tensors.len(), cx.parts.clone());
        let mut progs = Vec::new();
        let mut failed = None;
        for (j, sub) in subs.iter().enumerate() {
            let name = if subs.len() > 1 { format!("{name}_{j}") } else { name.clone() };
            match lower_one(&mut cx, sub, &name, k) {
                Ok(ps) => progs.extend(ps),
                Err(LowerError::L1(e)) => return Err(e),
                Err(LowerError::Unsupported(reason)) => {
                    failed = Some(reason);
                    break;
                }
            }
        }
        match failed {
            None => {
                let main: Vec<String> = progs
                    .iter()
                    .filter(|p| p.template != "split")
                    .map(|p| format!("tensix {} on {} cores", p.template, p.cores.len()))
                    .collect();
                let mut h = main.join("; ");
                for s in progs.iter().filter(|p| p.template == "split") {
                    h.push_str(&format!(", after `{}` on {} cores", s.name, s.cores.len()));
                }
                how.push(h);
                steps.extend(progs.into_iter().map(|p| Step::Device(Box::new(p))));
            }
            Some(reason) => {
                cx.tensors.truncate(mark);
                cx.parts = parts_before;
                how.push(format!("host: {reason}"));
                steps.push(Step::Host { kernel: k, nodes: grp.nodes.clone(), reason });
            }
        }
    }
    let (tensors, next) = place_in_dram(cx.tensors, &mut steps, &opts.device)?;
    Ok(Lowered {
        plan: Plan {
            device: opts.device.clone(),
            numerics: opts.numerics.clone(),
            tensors,
            dram_bytes_per_bank: next,
            steps,
        },
        how,
    })
}

/// The programs of one single-result group: in split precision, first a split program per FP32
/// activation its products read (their parts are added to `cx`), then the group's own program.
fn lower_one(cx: &mut Ctx, grp: &Group, name: &str, k: usize) -> Result<Vec<Program>, LowerError> {
    let g = cx.g;
    let anchor = grp.nodes.iter().find(|&&n| !chain::supported(&g.nodes[n].op)).copied();
    let to_split = match anchor {
        Some(a) if cx.opts.numerics.split => crate::split::operands(cx, a),
        _ => Vec::new(),
    };
    for &v in &to_split {
        let src = cx.tensors[cx.dram(v)? as usize].clone();
        let n = cx.tensors.len() as u32;
        cx.parts.insert(v, (n, n + 1));
        for part in [Part::Hi, Part::Lo] {
            cx.tensors.push(DramTensor { format: DataFormat::Float16_b, part: Some(part), ..src.clone() });
        }
    }
    let p = crate::templates::lower_group(cx, grp, anchor, name, k)?;
    let mut progs = Vec::new();
    for (i, &v) in to_split.iter().enumerate() {
        let name = format!("{name}_split{i}");
        match crate::split::program(cx, v, cx.parts[&v], &name, k) {
            Ok(p) => progs.push(p),
            Err(LowerError::Unsupported(e)) => return Err(LowerError::L1(format!("splitting %{}: {e}", v.0))),
            Err(e) => return Err(e),
        }
    }
    progs.push(p);
    Ok(progs)
}

/// Chooses each value's view. Convolution outputs are `[N, C, H*W]` (rows at dim 1), so the product is
/// a matrix per image with the output channels as rows; elementwise groups on such values keep that
/// view, and their other operands (per-channel biases, residuals) are stored aligned with it; weights
/// of convolutions are `[Cout, Cin*KH*KW]` (rows at dim 0). Everything else has the default view.
fn assign_views(g: &Graph, groups: &[Group]) -> BTreeMap<ValueId, isize> {
    let mut k: BTreeMap<ValueId, isize> = BTreeMap::new();
    let rank = |v: ValueId| g.ty(v).shape.rank() as isize;
    for grp in groups {
        let anchor = grp.nodes.iter().find(|&&n| !chain::supported(&g.nodes[n].op)).copied();
        let conv = anchor.filter(|&a| {
            a == grp.nodes[0] && (crate::conv::supported(g, a).is_ok() || crate::window::supported(g, a).is_ok())
        });
        let Some(&out) = grp.outputs.first() else { continue };
        // Results of a group with several (parts of a split, each run as its own program) that a reshape
        // ends: rows where the reshape keeps the tiles in place, when some dim allows it.
        if grp.outputs.len() > 1 {
            for &o in &grp.outputs {
                let Some(&n) = grp.nodes.iter().find(|&&n| g.nodes[n].outputs.contains(&o)) else { continue };
                let node = &g.nodes[n];
                let (Some(id), Some(od)) = (g.ty(node.inputs[0]).shape.as_consts(), g.ty(o).shape.as_consts()) else {
                    continue;
                };
                if matches!(node.op, GOp::Reshape { .. }) && !k.contains_key(&node.inputs[0]) {
                    let want = view_at(&id, id.len() as isize - 2);
                    if let Some(kk) = (-1..od.len() as isize).rev().find(|&kk| view_at(&od, kk) == want) {
                        k.insert(o, kk);
                    }
                }
            }
            continue;
        }
        // Global pooling with keepdims of a convolution activation stays a column of channels.
        if let Some(a) = anchor.filter(|&a| a == grp.nodes[0] && grp.nodes.len() == 1) {
            let n = &g.nodes[a];
            if let GOp::Reduce { axes, keepdims: true, .. } = &n.op {
                if k.get(&n.inputs[0]) == Some(&1) && rank(n.inputs[0]) == 4 && *axes == [2, 3] {
                    k.insert(out, 1);
                    continue;
                }
            }
        }
        let flat = rank(out) == 4
            && grp.outputs.len() == 1
            && (conv.is_some()
                || anchor.is_none()
                    && grp.inputs.iter().any(|&v| k.get(&v) == Some(&1) && g.ty(v).shape == g.ty(out).shape)
                // A channel concatenation of convolution activations (Inception's blocks) stays one:
                // the concatenation gathers by element, in any view.
                || anchor.is_some_and(|a| {
                    a == grp.nodes[0]
                        && grp.nodes.len() == 1
                        && matches!(g.nodes[a].op, GOp::Concat { axis: 1 })
                        && g.nodes[a].inputs.iter().any(|v| k.get(v) == Some(&1))
                }));
        if !flat {
            continue;
        }
        k.insert(out, 1);
        let mut skip = Vec::new();
        if let Some(a) = conv {
            let ins = &g.nodes[a].inputs;
            skip.push(ins[0]);
            for &w in &ins[1..] {
                k.entry(w).or_insert(0);
                skip.push(w);
            }
        }
        for &v in &grp.inputs {
            if !skip.contains(&v) {
                k.entry(v).or_insert((rank(v) - 3).max(-1));
            }
        }
    }
    k
}

/// Keeps the tensors some program reads or writes (values only host steps touch stay on the host, in
/// f32, as a host program would keep them), renumbers the programs' references, and gives each tensor
/// its DRAM address: bump allocation, 64-byte aligned, the same offset in every bank.
fn place_in_dram(all: Vec<DramTensor>, steps: &mut [Step], dev: &DeviceDesc) -> Result<(Vec<DramTensor>, u64), String> {
    let mut used = vec![false; all.len()];
    for s in steps.iter() {
        if let Step::Device(p) = s {
            for &t in &p.tensors {
                used[t as usize] = true;
            }
        }
    }
    let mut new_index = vec![u32::MAX; all.len()];
    let mut kept = Vec::new();
    let mut next = 0u64;
    for (i, mut t) in all.into_iter().enumerate() {
        if !used[i] {
            continue;
        }
        t.address = next;
        next += t.tiles().div_ceil(dev.dram_banks as u64) * t.page_bytes();
        next = next.div_ceil(64) * 64;
        new_index[i] = kept.len() as u32;
        kept.push(t);
    }
    for s in steps.iter_mut() {
        if let Step::Device(p) = s {
            for t in &mut p.tensors {
                *t = new_index[*t as usize];
            }
        }
    }
    if next > dev.dram_bank_bytes {
        return Err(format!(
            "the model needs {next} B of DRAM per bank, the {} {} has {} B per bank",
            dev.arch, dev.board, dev.dram_bank_bytes
        ));
    }
    Ok((kept, next))
}
