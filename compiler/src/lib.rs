//! sovc-compiler: the compiler driver and the `sovc` command line. Today: the e-graph optimizer (`opt`)
//! and the CLI; partitioning, the kernel IR and code generation come next.

pub mod cli;
pub mod compile;
pub mod cpu;
pub mod cuda;
pub mod lower;
pub mod memplan;
pub mod metal;
pub mod opt;
pub mod partition;
pub mod rvv;
pub mod tensix_report;
