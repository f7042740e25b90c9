//! Bodies of the fuzz targets (`fuzz/`, run with `cargo fuzz`), kept here so the test suite also runs them
//! over deterministic mutations of real inputs on stable Rust. Each must never panic on any input.

use sovc_models::onnx::{import_bytes, ImportOptions};

/// ONNX import of arbitrary bytes; an import that succeeds must give a verified graph that round-trips
/// through the text form.
pub fn onnx_import(data: &[u8]) {
    let opts = ImportOptions { max_tensor_bytes: Some(1 << 26), ..Default::default() };
    if let Ok(m) = import_bytes(data, "fuzz.onnx", &opts) {
        assert!(sovc_ir::verify(&m.graph).is_ok(), "import returned an invalid graph");
        let text = sovc_ir::text::print(&m.graph);
        let back = sovc_ir::text::parse(&text).expect("printed IR parses");
        assert_eq!(back, m.graph.canonical());
    }
}

/// The `.sov` parser on arbitrary text; what parses must print and parse back to itself.
pub fn sov_parse(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(g) = sovc_ir::text::parse(s) {
        let printed = sovc_ir::text::print(&g);
        let again = sovc_ir::text::parse(&printed).expect("printed IR parses");
        assert_eq!(again, g.canonical());
    }
}

/// safetensors and npy readers on arbitrary bytes.
pub fn weight_files(data: &[u8]) {
    let _ = sovc_models::weights::parse_safetensors(data);
    let _ = sovc_runtime::parse_npy(data);
}

/// The artifact reader on arbitrary bytes; what verifies must also load into a session.
pub fn artifact(data: &[u8]) {
    if let Ok(a) = sovc_runtime::Artifact::from_bytes(data) {
        let _ = sovc_runtime::Session::new(&a, sovc_runtime::Device::Reference);
    }
}

/// Deterministic mutations of `seed` (bit flips, byte overwrites, truncations, duplications).
pub fn mutations(seed: &[u8], count: usize) -> Vec<Vec<u8>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count)
        .map(|_| {
            let mut v = seed.to_vec();
            for _ in 0..1 + next() % 4 {
                if v.is_empty() {
                    break;
                }
                let i = (next() % v.len() as u64) as usize;
                match next() % 4 {
                    0 => v[i] ^= 1 << (next() % 8),
                    1 => v[i] = next() as u8,
                    2 => v.truncate(i),
                    _ => {
                        let end = (i + 1 + (next() % 16) as usize).min(v.len());
                        let chunk = v[i..end].to_vec();
                        v.splice(i..i, chunk);
                    }
                }
            }
            v
        })
        .collect()
}
