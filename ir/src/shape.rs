//! Tensor shapes whose dimensions are constants or named symbols with an optional upper bound
//! (a decoder's sequence length is `seq<=2048`). Symbols are bound to sizes when a graph runs.

use std::collections::BTreeMap;
use std::fmt;

/// One dimension of a shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Const(u64),
    /// A dimension known only by name until the graph runs; `max` bounds it when known.
    Sym {
        name: String,
        max: Option<u64>,
    },
}

impl Dim {
    pub fn sym(name: impl Into<String>) -> Dim {
        Dim::Sym { name: name.into(), max: None }
    }

    pub fn as_const(&self) -> Option<u64> {
        match self {
            Dim::Const(n) => Some(*n),
            Dim::Sym { .. } => None,
        }
    }

    /// The largest value this dimension can take, if bounded.
    pub fn upper_bound(&self) -> Option<u64> {
        match self {
            Dim::Const(n) => Some(*n),
            Dim::Sym { max, .. } => *max,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Const(n) => write!(f, "{n}"),
            Dim::Sym { name, max: None } => write!(f, "{name}"),
            Dim::Sym { name, max: Some(m) } => write!(f, "{name}<={m}"),
        }
    }
}

/// A shape: a list of dimensions. Rank 0 is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn scalar() -> Shape {
        Shape(Vec::new())
    }

    pub fn from_consts(dims: &[usize]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Const(d as u64)).collect())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// All dimensions as sizes, if none is symbolic.
    pub fn as_consts(&self) -> Option<Vec<usize>> {
        self.0.iter().map(|d| d.as_const().map(|n| n as usize)).collect()
    }

    pub fn is_static(&self) -> bool {
        self.0.iter().all(|d| matches!(d, Dim::Const(_)))
    }

    /// Element count, if static; `None` on overflow too.
    pub fn num_elements(&self) -> Option<u64> {
        self.0.iter().try_fold(1u64, |acc, d| acc.checked_mul(d.as_const()?))
    }

    /// Upper bound of the element count, using symbol bounds.
    pub fn max_elements(&self) -> Option<u64> {
        self.0.iter().try_fold(1u64, |acc, d| acc.checked_mul(d.upper_bound()?))
    }

    /// Replaces bound symbols by their sizes.
    pub fn substitute(&self, bindings: &BTreeMap<String, u64>) -> Shape {
        Shape(
            self.0
                .iter()
                .map(|d| match d {
                    Dim::Sym { name, .. } => match bindings.get(name) {
                        Some(&n) => Dim::Const(n),
                        None => d.clone(),
                    },
                    Dim::Const(_) => d.clone(),
                })
                .collect(),
        )
    }

    /// Names of the symbols this shape uses.
    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|d| match d {
            Dim::Sym { name, .. } => Some(name.as_str()),
            Dim::Const(_) => None,
        })
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// Dtype and shape of a value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: crate::DType,
    pub shape: Shape,
}

impl TensorType {
    pub fn new(dtype: crate::DType, shape: Shape) -> TensorType {
        TensorType { dtype, shape }
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}

/// Broadcasts two shapes with numpy rules. Symbolic dims broadcast with 1 and with themselves.
pub fn broadcast_shapes(a: &Shape, b: &Shape) -> Option<Shape> {
    let r = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        let da = if i + a.rank() >= r { Some(&a.0[i + a.rank() - r]) } else { None };
        let db = if i + b.rank() >= r { Some(&b.0[i + b.rank() - r]) } else { None };
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) => match (x, y) {
                _ if x == y => x.clone(),
                (Dim::Const(1), _) => y.clone(),
                (_, Dim::Const(1)) => x.clone(),
                _ => return None,
            },
            (None, None) => unreachable!("index below both ranks"),
        };
        out.push(d);
    }
    Some(Shape(out))
}
