//! sovc-ir: the typed tensor graph that every importer, pass and target reads; its text form (`.sov`);
//! the verifier and shape inference; composite-op decompositions; and the reference interpreter, the
//! definition of what every op computes.
//!
//! Architecture Invariant: this crate does no I/O beyond parsing and printing its text form.

pub mod attr;
pub mod decompose;
mod dtype;
mod error;
pub mod fold;
mod graph;
pub mod infer;
pub mod interp;
pub mod kernel;
mod op;
mod shape;
mod tensor;
pub mod text;
mod verify;

pub use attr::AttrValue;
pub use dtype::DType;
pub use error::IrError;
pub use graph::{ConstData, Constant, Graph, Input, Model, Node, Output, ValueDef, ValueId, WeightRef, Weights};
pub use op::*;
pub use shape::{broadcast_shapes, Dim, Shape, TensorType};
pub use tensor::{Elem, Tensor};
pub use verify::verify;
