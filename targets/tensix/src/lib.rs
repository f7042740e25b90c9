//! sovc-target-tensix: the Tensix target. Device descriptions ([`devices`]), lowering of kernel groups to
//! TT-Metalium programs (the runtime's `tensix::program` schema), and the C++ those programs print as
//! ([`emit`]): reader, compute and writer kernels against the pinned TT-Metalium kernel API, and a host
//! program using the Mesh API with a CMake project.

pub mod builder;
pub mod chain;
pub mod conv;
pub mod devices;
pub mod emit;
pub mod lower;
pub mod part;
pub mod rows;
pub mod split;
pub mod templates;
pub mod window;
