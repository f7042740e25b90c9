//! sovc compiler.
