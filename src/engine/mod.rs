//! The evaluation engine: pure functions from compiled definitions, a key and attributes to a
//! treatment and a label. No I/O, no threads, no locks.

pub(crate) mod attributes;
pub(crate) mod bucket;
pub(crate) mod compile;
pub(crate) mod evaluator;
pub(crate) mod labels;
pub(crate) mod semver;
