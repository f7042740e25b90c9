//! Fuzz target: `cargo fuzz run artifact` (the body is `sovc_tests::fuzz::artifact`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sovc_tests::fuzz::artifact(data));
