//! Edge semantics (being written).
