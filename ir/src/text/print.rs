//! Printing graphs in the `.sov` text form.

use crate::attr::fmt_f32;
use crate::{dispatch, ConstData, Elem, Graph, Tensor};
use std::fmt::Write;

/// Prints `g` in canonical numbering.
pub fn print(g: &Graph) -> String {
    let g = g.canonical();
    let mut s = String::new();
    s.push_str(super::HEADER);
    s.push('\n');
    for x in &g.inputs {
        let _ = writeln!(s, "input {} {:?}: {}", x.value, x.name, g.ty(x.value));
    }
    for c in &g.consts {
        let _ = write!(s, "const {} {:?}: {} = ", c.value, c.name, g.ty(c.value));
        match &c.data {
            ConstData::Inline(t) => s.push_str(&print_tensor_literal(t)),
            ConstData::Weight(w) => {
                let _ = write!(s, "weight {:?} {:?}", w.file, w.key);
            }
        }
        s.push('\n');
    }
    for n in &g.nodes {
        s.push_str(&print_node(&g, n));
        s.push('\n');
    }
    for o in &g.outputs {
        let _ = writeln!(s, "output {:?} = {}", o.name, o.value);
    }
    s
}

/// Prints one node as its line of the text form (without the newline), with `g`'s value numbers.
pub fn print_node(g: &Graph, n: &crate::Node) -> String {
    let mut s = String::new();
    for (i, o) in n.outputs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{o}: {}", g.ty(*o));
    }
    let _ = write!(s, " = {}(", n.op.name());
    for (i, v) in n.inputs.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{v}");
    }
    s.push(')');
    let attrs = n.op.attrs();
    if !attrs.is_empty() {
        s.push_str(" {");
        for (i, (k, v)) in attrs.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            let _ = write!(s, "{k}={v}");
        }
        s.push('}');
    }
    let _ = write!(s, " {:?}", n.name);
    s
}

/// Prints the elements of a tensor as a flat list (`[1, 2.5, nan]`; bools as 0/1).
pub fn print_tensor_literal(t: &Tensor) -> String {
    let mut s = String::from("[");
    let is_float = t.dtype().is_float();
    dispatch!(t, a => {
        for (i, x) in a.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            if is_float {
                s.push_str(&fmt_f32_or_f64(x.to_f64(), t.dtype() == crate::DType::F64));
            } else {
                let _ = write!(s, "{}", x.to_i64());
            }
        }
    });
    s.push(']');
    s
}

fn fmt_f32_or_f64(v: f64, wide: bool) -> String {
    if !wide {
        return fmt_f32(v as f32);
    }
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{v:?}")
    }
}
