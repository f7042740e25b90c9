//! Built-in models with deterministic weights, for tests and benchmarks that must not depend on
//! downloaded files: an MLP, a BERT-style encoder layer and a GPT-style (pre-norm, causal) decoder layer.

use sovc_ir::{
    BinaryOp, ConstData, DType, Dim, GeluApprox, Graph, Model, Op, Shape, Tensor, TensorType, ValueId, WeightRef,
    Weights,
};

/// Names accepted by [`by_name`].
pub const NAMES: [&str; 4] = ["mlp", "encoder_layer", "decoder_layer", "matmul"];

pub fn by_name(name: &str) -> Option<Model> {
    match name {
        "mlp" => Some(mlp()),
        "encoder_layer" => Some(encoder_layer(16, 64, 4)),
        "decoder_layer" => Some(decoder_layer(16, 64, 4)),
        "matmul" => Some(matmul(1024, 1024, 1024)),
        _ => None,
    }
}

/// Deterministic values in `[-scale, scale]` from a seed (splitmix64), the same on every machine.
pub fn det_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

struct Builder {
    g: Graph,
    w: Weights,
    seed: u64,
    file: String,
}

impl Builder {
    fn new(file: &str) -> Builder {
        Builder { g: Graph::new(), w: Weights::default(), seed: 1, file: file.into() }
    }

    fn weight(&mut self, name: &str, shape: &[usize], scale: f32) -> ValueId {
        self.seed += 1;
        let n = shape.iter().product();
        self.tensor(name, Tensor::from_vec(shape, det_values(n, self.seed, scale)).expect("length matches"))
    }

    fn tensor(&mut self, name: &str, t: Tensor) -> ValueId {
        let r = WeightRef { file: self.file.clone(), key: name.into() };
        let ty = t.ty();
        self.w.insert(r.clone(), t);
        self.g.add_const(name, ty, ConstData::Weight(r))
    }

    fn scalar(&mut self, name: &str, v: f32) -> ValueId {
        self.g.add_inline(name, Tensor::scalar(v))
    }

    fn op(&mut self, op: Op, ins: &[ValueId], name: &str) -> ValueId {
        self.g.add1(op, ins, name).unwrap_or_else(|e| panic!("built-in model is ill-typed: {e}"))
    }

    fn bin(&mut self, b: BinaryOp, x: ValueId, y: ValueId, name: &str) -> ValueId {
        self.op(Op::Binary(b), &[x, y], name)
    }

    fn linear(&mut self, x: ValueId, din: usize, dout: usize, name: &str) -> ValueId {
        let w = self.weight(&format!("{name}.weight"), &[din, dout], 1.0 / (din as f32).sqrt());
        let b = self.weight(&format!("{name}.bias"), &[dout], 0.1);
        let y = self.op(Op::MatMul {}, &[x, w], &format!("{name}/matmul"));
        self.bin(BinaryOp::Add, y, b, &format!("{name}/bias"))
    }

    fn layer_norm(&mut self, x: ValueId, d: usize, name: &str) -> ValueId {
        let s = self.tensor(
            &format!("{name}.weight"),
            Tensor::from_vec(&[d], det_values(d, self.seed + 100, 0.1).iter().map(|v| 1.0 + v).collect()).expect("len"),
        );
        let b = self.weight(&format!("{name}.bias"), &[d], 0.1);
        self.op(Op::LayerNorm { axis: -1, epsilon: 1e-5 }, &[x, s, b], name)
    }

    /// Multi-head self-attention on `x: [1, s, d]`, with an optional additive mask `[s, s]`.
    fn attention(
        &mut self,
        x: ValueId,
        s: usize,
        d: usize,
        heads: usize,
        mask: Option<ValueId>,
        name: &str,
    ) -> ValueId {
        let dh = d / heads;
        let split = |b: &mut Builder, v: ValueId, what: &str| {
            let r = b.op(
                Op::Reshape { shape: Shape::from_consts(&[1, s, heads, dh]) },
                &[v],
                &format!("{name}/{what}_heads"),
            );
            b.op(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[r], &format!("{name}/{what}_t"))
        };
        let q = self.linear(x, d, d, &format!("{name}.q"));
        let k = self.linear(x, d, d, &format!("{name}.k"));
        let v = self.linear(x, d, d, &format!("{name}.v"));
        let (q, k, v) = (split(self, q, "q"), split(self, k, "k"), split(self, v, "v"));
        let kt = self.op(Op::Transpose { perm: vec![0, 1, 3, 2] }, &[k], &format!("{name}/kT"));
        let scores = self.op(Op::MatMul {}, &[q, kt], &format!("{name}/scores"));
        let scale = self.scalar(&format!("{name}.scale"), 1.0 / (dh as f32).sqrt());
        let mut scores = self.bin(BinaryOp::Mul, scores, scale, &format!("{name}/scale"));
        if let Some(m) = mask {
            scores = self.bin(BinaryOp::Add, scores, m, &format!("{name}/mask"));
        }
        let p = self.op(Op::Softmax { axis: -1 }, &[scores], &format!("{name}/softmax"));
        let ctx = self.op(Op::MatMul {}, &[p, v], &format!("{name}/context"));
        let ctx = self.op(Op::Transpose { perm: vec![0, 2, 1, 3] }, &[ctx], &format!("{name}/merge_t"));
        let ctx = self.op(Op::Reshape { shape: Shape::from_consts(&[1, s, d]) }, &[ctx], &format!("{name}/merge"));
        self.linear(ctx, d, d, &format!("{name}.out"))
    }

    fn ffn(&mut self, x: ValueId, d: usize, name: &str) -> ValueId {
        let h = self.linear(x, d, 4 * d, &format!("{name}.fc1"));
        let h = self.op(Op::Gelu { approximate: GeluApprox::None }, &[h], &format!("{name}/gelu"));
        self.linear(h, 4 * d, d, &format!("{name}.fc2"))
    }

    fn finish(self) -> Model {
        Model { graph: self.g.canonical(), weights: self.w }
    }
}

/// `c = a · b` with both operands as inputs: `a: [m, k]`, `b: [k, n]` (the matmul benchmark).
pub fn matmul(m: usize, k: usize, n: usize) -> Model {
    let mut b = Builder::new("builtin:matmul");
    let x = b.g.add_input("a", TensorType::new(DType::F32, Shape::from_consts(&[m, k])));
    let y = b.g.add_input("b", TensorType::new(DType::F32, Shape::from_consts(&[k, n])));
    let c = b.op(Op::MatMul {}, &[x, y], "matmul");
    b.g.add_output("c", c);
    b.finish()
}

/// `x: [batch<=64, 64] -> softmax(fc2(gelu(fc1(x))))`, 10 classes.
pub fn mlp() -> Model {
    let mut b = Builder::new("builtin:mlp");
    let x = b.g.add_input(
        "x",
        TensorType::new(DType::F32, Shape(vec![Dim::Sym { name: "batch".into(), max: Some(64) }, Dim::Const(64)])),
    );
    let h = b.linear(x, 64, 128, "fc1");
    let h = b.op(Op::Gelu { approximate: GeluApprox::None }, &[h], "gelu");
    let y = b.linear(h, 128, 10, "fc2");
    let y = b.op(Op::Softmax { axis: -1 }, &[y], "softmax");
    b.g.add_output("probs", y);
    b.finish()
}

/// A post-norm (BERT-style) transformer encoder layer on `x: [1, s, d]`.
pub fn encoder_layer(s: usize, d: usize, heads: usize) -> Model {
    let mut b = Builder::new("builtin:encoder_layer");
    let x = b.g.add_input("x", TensorType::new(DType::F32, Shape::from_consts(&[1, s, d])));
    let a = b.attention(x, s, d, heads, None, "attn");
    let r = b.bin(BinaryOp::Add, x, a, "attn/residual");
    let h = b.layer_norm(r, d, "ln1");
    let f = b.ffn(h, d, "ffn");
    let r2 = b.bin(BinaryOp::Add, h, f, "ffn/residual");
    let y = b.layer_norm(r2, d, "ln2");
    b.g.add_output("y", y);
    b.finish()
}

/// A BERT-style encoder: `layers` post-norm layers on `x: [1, s, d]` (no embeddings). With
/// `layers = 12, d = 768, heads = 12` this is BERT-base's encoder stack.
pub fn bert(layers: usize, s: usize, d: usize, heads: usize) -> Model {
    let mut b = Builder::new("builtin:bert");
    let mut x = b.g.add_input("x", TensorType::new(DType::F32, Shape::from_consts(&[1, s, d])));
    for l in 0..layers {
        let a = b.attention(x, s, d, heads, None, &format!("l{l}.attn"));
        let r = b.bin(BinaryOp::Add, x, a, &format!("l{l}.attn/residual"));
        let h = b.layer_norm(r, d, &format!("l{l}.ln1"));
        let f = b.ffn(h, d, &format!("l{l}.ffn"));
        let r2 = b.bin(BinaryOp::Add, h, f, &format!("l{l}.ffn/residual"));
        x = b.layer_norm(r2, d, &format!("l{l}.ln2"));
    }
    b.g.add_output("y", x);
    b.finish()
}

/// A NAS-RNN-style recurrent cell (the cell TASO and TENSAT optimize), unrolled `steps` times: eight
/// gates, each `x W_i + h U_i`, combined through sigmoid, tanh and relu products and sums.
pub fn nasrnn(steps: usize, hidden: usize) -> Model {
    let mut b = Builder::new("builtin:nasrnn");
    let xs: Vec<ValueId> = (0..steps)
        .map(|t| b.g.add_input(format!("x{t}"), TensorType::new(DType::F32, Shape::from_consts(&[1, hidden]))))
        .collect();
    let mut h = b.g.add_input("h0", TensorType::new(DType::F32, Shape::from_consts(&[1, hidden])));
    let scale = 1.0 / (hidden as f32).sqrt();
    let ws: Vec<ValueId> = (0..8).map(|i| b.weight(&format!("W{i}"), &[hidden, hidden], scale)).collect();
    let us: Vec<ValueId> = (0..8).map(|i| b.weight(&format!("U{i}"), &[hidden, hidden], scale)).collect();
    for (t, &x) in xs.iter().enumerate() {
        let gate = |b: &mut Builder, i: usize| {
            let a = b.op(Op::MatMul {}, &[x, ws[i]], &format!("t{t}/xW{i}"));
            let c = b.op(Op::MatMul {}, &[h, us[i]], &format!("t{t}/hU{i}"));
            b.bin(BinaryOp::Add, a, c, &format!("t{t}/gate{i}"))
        };
        let g: Vec<ValueId> = (0..8).map(|i| gate(&mut b, i)).collect();
        let act =
            |b: &mut Builder, u: sovc_ir::UnaryOp, v: ValueId, n: &str| b.op(Op::Unary(u), &[v], &format!("t{t}/{n}"));
        use sovc_ir::UnaryOp as U;
        let (s0, t1, r2, s3) = (
            act(&mut b, U::Sigmoid, g[0], "s0"),
            act(&mut b, U::Tanh, g[1], "t1"),
            act(&mut b, U::Relu, g[2], "r2"),
            act(&mut b, U::Sigmoid, g[3], "s3"),
        );
        let (t4, s5, r6, t7) = (
            act(&mut b, U::Tanh, g[4], "t4"),
            act(&mut b, U::Sigmoid, g[5], "s5"),
            act(&mut b, U::Relu, g[6], "r6"),
            act(&mut b, U::Tanh, g[7], "t7"),
        );
        let m0 = b.bin(BinaryOp::Mul, s0, t1, &format!("t{t}/m0"));
        let a1 = b.bin(BinaryOp::Add, r2, s3, &format!("t{t}/a1"));
        let m2 = b.bin(BinaryOp::Mul, t4, s5, &format!("t{t}/m2"));
        let a3 = b.bin(BinaryOp::Add, r6, t7, &format!("t{t}/a3"));
        let p = b.bin(BinaryOp::Mul, m0, a1, &format!("t{t}/p"));
        let q = b.bin(BinaryOp::Mul, m2, a3, &format!("t{t}/q"));
        let sum = b.bin(BinaryOp::Add, p, q, &format!("t{t}/sum"));
        h = act(&mut b, U::Tanh, sum, "h");
    }
    b.g.add_output("h", h);
    b.finish()
}

/// A pre-norm, causally masked (GPT-style) decoder layer on `x: [1, s, d]`.
pub fn decoder_layer(s: usize, d: usize, heads: usize) -> Model {
    let mut b = Builder::new("builtin:decoder_layer");
    let x = b.g.add_input("x", TensorType::new(DType::F32, Shape::from_consts(&[1, s, d])));
    let mask: Vec<f32> = (0..s * s).map(|i| if i % s > i / s { -1e9 } else { 0.0 }).collect();
    let mask = b.tensor("causal_mask", Tensor::from_vec(&[s, s], mask).expect("len"));
    let h = b.layer_norm(x, d, "ln1");
    let a = b.attention(h, s, d, heads, Some(mask), "attn");
    let r = b.bin(BinaryOp::Add, x, a, "attn/residual");
    let h2 = b.layer_norm(r, d, "ln2");
    let f = b.ffn(h2, d, "ffn");
    let y = b.bin(BinaryOp::Add, r, f, "ffn/residual");
    b.g.add_output("y", y);
    b.finish()
}
