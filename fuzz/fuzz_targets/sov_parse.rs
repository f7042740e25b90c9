//! Fuzz target: `cargo fuzz run sov_parse` (the body is `sovc_tests::fuzz::sov_parse`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sovc_tests::fuzz::sov_parse(data));
