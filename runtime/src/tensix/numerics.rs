//! Tensix numerics (being written).
