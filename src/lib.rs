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

mod analysis;
mod builder;
mod client;
mod config;
mod engine;
mod error;
mod events;
mod impressions;
pub mod integrations;
mod intern;
mod localhost;
mod metadata;
mod model;
mod remote;
mod storage;
mod stripe;
pub mod sync;
mod time;
mod validation;

pub use analysis::{
    Aggregation, AnalysisError, AnalysisSpec, AnalysisSpecBuilder, AttributionEvent,
    AttributionImpression, DEFAULT_ALPHA, DEFAULT_BUFFER_MS, DEFAULT_RETENTION_MS, DateRange,
    EventPass, EventReader, FlagReport, FlagSpec, GroupReport, GroupStats, Impact, ImpressionPass,
    ImpressionReader, InputStats, Metric, PartialReport, Report, Unit, UnitReport, VersionStarts,
    analyze, read_events, read_impressions,
};
pub use builder::ClientBuilder;
pub use client::{
    Client, ClientStats, EventStats, Key, Manager, TreatmentDetails, TreatmentWithConfig,
};
pub use config::{
    Config, DEFAULT_BULK_SIZE, DEFAULT_DEDUPE_CACHE_SIZE, DEFAULT_EVENTS_PUSH_RATE,
    DEFAULT_EVENTS_URL, DEFAULT_FEATURES_REFRESH_RATE, DEFAULT_IMPRESSION_COUNTS_REFRESH_RATE,
    DEFAULT_IMPRESSIONS_REFRESH_RATE, DEFAULT_IMPRESSIONS_REFRESH_RATE_DEBUG, DEFAULT_QUEUE_SIZE,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SDK_URL, DEFAULT_SEGMENTS_REFRESH_RATE,
    DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_SPLIT_FILE, DEFAULT_TELEMETRY_URL,
    DEFAULT_UNIQUE_KEYS_REFRESH_RATE, EVENTS_FLUSH_BYTES, LOCALHOST, MIN_LOCALHOST_REFRESH_RATE,
};
pub use engine::attributes::{AttributeValue, Attributes};
pub use engine::bucket::{HashAlgo, bucket, legacy_hash, murmur3_hash};
pub use engine::evaluator::{CONTROL, Evaluation, EvaluationResult, MAX_DEPTH};
pub use engine::labels::Label;
pub use error::{Error, Result};
pub use events::{Event, MAX_PROPERTIES, MAX_PROPERTIES_SIZE};
pub use impressions::{
    Impression, ImpressionFields, ImpressionListener, ImpressionStats, ImpressionsMode,
    QUEUED_IMPRESSION_BYTES, QUEUED_KEY_BYTES, SdkMetadata, UNIQUE_KEYS_EARLY_FLUSH,
};
pub use integrations::{
    DEFAULT_SEGMENT_ENDPOINT, DeliveryOptions, IntegrationStats, LastSeen, SEGMENT_MAX_BATCH_BYTES,
    SEGMENT_MAX_CALL_BYTES, SegmentConfig, SegmentIntegration, TraitsListener, TraitsStats,
    WebhookConfig, WebhookIntegration,
};
pub use metadata::SDK_VERSION;
pub use model::*;
pub use storage::{FlagView, IntoSnapshot, Snapshot, Store};
pub use validation::MAX_KEY_LENGTH;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
