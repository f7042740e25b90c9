//! sovc-models: model importers (ONNX, safetensors weights, the `.sov` text form with its weight files)
//! and built-in models with deterministic weights.

pub mod builtin;
pub mod load;
pub mod onnx;
pub mod weights;

pub use load::{load_model, load_sov, save_sov, LoadError};
