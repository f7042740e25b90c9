//! Fuzz target: `cargo fuzz run weight_files` (the body is `sovc_tests::fuzz::weight_files`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sovc_tests::fuzz::weight_files(data));
