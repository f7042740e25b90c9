//! sovc-models: model importers (ONNX, safetensors) and built-in models with deterministic weights.

pub mod onnx;
