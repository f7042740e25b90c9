//! sovc models.
