//! splitkit: feature flags and experimentation, evaluated in-process.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod config;
mod engine;
mod error;
mod localhost;
mod model;
mod storage;
mod validation;

pub use client::{Client, ClientBuilder, Key, Manager, TreatmentDetails, TreatmentWithConfig};
pub use config::{
    Config, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SPLIT_FILE, LOCALHOST, MIN_LOCALHOST_REFRESH_RATE,
};
pub use engine::attributes::{AttributeValue, Attributes};
pub use engine::bucket::{HashAlgo, bucket, legacy_hash, murmur3_hash};
pub use engine::evaluator::{CONTROL, Evaluation, EvaluationResult, MAX_DEPTH};
pub use engine::labels::Label;
pub use error::{Error, Result};
pub use model::*;
pub use storage::{FlagView, IntoSnapshot, Snapshot, Store};
pub use validation::MAX_KEY_LENGTH;
