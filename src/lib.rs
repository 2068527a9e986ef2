//! splitkit: feature flags and experimentation, evaluated in-process.
//!
//! splitkit evaluates flag definitions in Split's JSON format into a treatment and the label
//! of the targeting rule that decided it, with the same results as Split's official SDKs.
//!
//! # Quickstart
//!
//! ```
//! use std::time::Duration;
//! use splitkit::{Attributes, Client, Label};
//!
//! // Localhost mode: definitions from a local file (JSON, YAML or `.split`).
//! let client = Client::builder("localhost")
//!     .split_file("examples/flags.json")
//!     .segment_directory("examples/segments")
//!     .build()?;
//! client.block_until_ready(Duration::from_secs(5))?;
//!
//! assert_eq!(client.get_treatment("qa_alice", "new_checkout", None), "on");
//!
//! let plan = Attributes::new().with("plan", "pro");
//! let details = client.evaluate("erin", "new_checkout", Some(&plan));
//! assert_eq!(details.treatment, "on");
//! assert_eq!(details.label.as_ref().map(Label::as_str), Some("user.plan in list [\"enterprise\",\"pro\"]"));
//!
//! client.destroy(Duration::from_secs(5));
//! # Ok::<(), splitkit::Error>(())
//! ```
//!
//! # Concepts
//!
//! - A **flag** (feature flag, "split") has targeting rules (*conditions*): matchers combined
//!   with AND, then partitions that share the keys out among treatments by bucket.
//! - A **key** is who the flag is evaluated for ([`Key`]: a matching key that matchers look at,
//!   and an optional bucketing key that is hashed into a bucket from 1 to 100).
//! - The **label** ([`Label`]) says why a treatment was chosen: `killed`, `not in split`,
//!   `no rule matched`, `definition not found`, `exception`, or the rule's own label.
//! - `control` is the treatment given when no real treatment can be: invalid input, an unknown
//!   flag, an internal failure, a destroyed client.
//!
//! # The engine on its own
//!
//! [`Snapshot`] holds compiled definitions and evaluates without a client, threads or I/O;
//! [`Store`] swaps snapshots atomically for concurrent readers.
//!
//! ```
//! let (snapshot, problems) = splitkit::Snapshot::from_json(
//!     r#"{"splits":[{"name":"f","killed":true,"defaultTreatment":"off"}],"since":-1,"till":1}"#,
//!     "inline",
//! )?;
//! assert!(problems.is_empty());
//! let e = snapshot.evaluate("k", None, "f", &splitkit::Attributes::new());
//! assert_eq!((e.treatment, e.label), ("off", &splitkit::Label::Killed));
//! # Ok::<(), splitkit::Error>(())
//! ```
//!
//! # Threads and shutdown
//!
//! [`Client`] is cheap to clone and shares one set of definitions and background threads
//! (named `splitkit-<role>`). [`Client::destroy`] stops them and is idempotent; dropping the
//! last handle does the same with [`ClientBuilder::shutdown_timeout`].
//!
//! # Localhost mode
//!
//! The SDK key `"localhost"` reads definitions from [`ClientBuilder::split_file`]: `.json`
//! (splitChanges), `.yaml`/`.yml` (`- flag: {treatment, keys, config}`), or legacy lines
//! `flag treatment`. Segments come from [`ClientBuilder::segment_directory`].
//! [`ClientBuilder::localhost_refresh_rate`] reloads on change.
//!
//! # Errors
//!
//! Evaluation never returns an error and never panics: it answers `control` with a label and
//! logs a warning (through the `log` crate) naming the problem. [`Error`] comes only from the
//! edges: building a client, loading files, waiting for readiness.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod analysis;
mod builder;
mod client;
mod config;
pub mod defaults;
pub mod definitions;
mod delivery;
mod engine;
mod error;
mod events;
mod impressions;
pub mod integrations;
mod intern;
pub mod limits;
mod localhost;
mod metadata;
mod properties;
mod remote;
mod stats;
mod storage;
mod stripe;
#[cfg(test)]
mod test_logs;
mod text;
mod time;
mod validation;

pub use analysis::analyze;
pub use builder::ClientBuilder;
pub use client::{Client, Key, Manager, TreatmentDetails, TreatmentWithConfig};
pub use config::{Config, LOCALHOST};
pub use delivery::DeliveryStats;
pub use engine::attributes::{AttributeValue, Attributes};
pub use engine::evaluator::{CONTROL, Evaluation, EvaluationResult};
pub use engine::labels::Label;
pub use error::{Error, Result};
pub use impressions::{
    Impression, ImpressionListener, ImpressionStats, ImpressionsMode, SdkMetadata,
};
pub use metadata::SDK_VERSION;
pub use properties::{Properties, PropertyValue};
pub use stats::{ClientStats, EventStats};
pub use storage::{FlagView, IntoSnapshot, Snapshot, SnapshotGuard, Store};

/// How keys map to buckets (1 to 100): the hash functions of Split's bucketing, the same the
/// engine uses. For tools and tests that need to know where a key lands.
///
/// # Examples
/// ```
/// use splitkit::bucketing::{HashAlgo, bucket};
/// let b = bucket("user-42", 1_314_229_456, HashAlgo::Murmur3);
/// assert!((1..=100).contains(&b));
/// ```
pub mod bucketing {
    pub use crate::engine::bucket::{HashAlgo, bucket, legacy_hash, murmur3_hash};
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
