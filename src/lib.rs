//! splitkit: feature flags and experimentation, evaluated in-process.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod engine;
mod error;
mod model;
mod storage;

pub use engine::attributes::{AttributeValue, Attributes};
pub use engine::bucket::{HashAlgo, bucket, legacy_hash, murmur3_hash};
pub use engine::evaluator::{CONTROL, Evaluation, EvaluationResult, MAX_DEPTH};
pub use engine::labels::Label;
pub use error::{Error, Result};
pub use model::*;
pub use storage::{FlagView, IntoSnapshot, Snapshot, Store};
