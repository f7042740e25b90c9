//! Decompositions of composite ops into primitives.
