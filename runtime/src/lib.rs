//! sovc runtime.
