//! C++ emission (being written).
