//! The `.sov` text form of a graph: one line per input, constant, node and output. `print` renumbers values
//! canonically (inputs, constants, node results in order), so two dumps of equal graphs are equal text and
//! `parse(print(g)) == g.canonical()`. Weights are referenced by file and key, never inlined; small
//! constants are printed inline.
//!
//! ```text
//! sov 1
//! input %0 "x": f32[batch<=8,4]
//! const %1 "w": f32[4,2] = weight "mlp.safetensors" "fc.weight"
//! const %2 "axes": i64[1] = [1]
//! %3: f32[batch<=8,2] = matmul(%0, %1) "fc"
//! %4: f32[batch<=8,2] = softmax(%3) {axis=-1} "sm"
//! output "y" = %4
//! ```

mod lex;
mod parse;
mod print;

pub use parse::parse;
pub use print::{print, print_node, print_tensor_literal};

/// The version line every file starts with.
pub const HEADER: &str = "sov 1";
