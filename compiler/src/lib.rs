//! sovc-compiler: the compiler driver and the `sovc` command line. The optimizer, partitioning and code
//! generation will live here; today it drives import, the reference interpreter and inspection.

pub mod cli;
