//! The Tensix simulator device (`--device tensix-sim`): runs the programs of a `blackhole` or
//! `wormhole_b0` artifact core by core, with circular-buffer semantics, interleaved DRAM banks, Dst
//! capacity, tile and face layout and the hardware's numerics, and predicts device time.

pub mod device;
pub mod numerics;
pub mod program;
pub mod sim;
pub mod timing;

pub use device::{RunReport, TensixModel};
