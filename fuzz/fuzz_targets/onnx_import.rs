//! Fuzz target: `cargo fuzz run onnx_import` (the body is `sovc_tests::fuzz::onnx_import`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sovc_tests::fuzz::onnx_import(data));
