//! splitkit: feature flags and experimentation, evaluated in-process.
//!
//! splitkit evaluates flag definitions in Split's JSON format into a treatment and the label
//! of the targeting rule that decided it, with the same results as Split's official SDKs,
//! and reports every evaluation (an *impression*) and every [`Client::track`] call (an
//! *event*) to Split in the official wire formats. The API is synchronous; background work
//! runs on named threads. Evaluation never blocks, never does I/O and never panics.
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
//!   flag, an internal failure, a destroyed client. A [fallback
//!   treatment](ClientBuilder::fallback_treatment) can answer instead.
//!
//! # Evaluating
//!
//! | you want | call |
//! |---|---|
//! | the treatment | [`Client::get_treatment`] |
//! | with its configuration, raw or typed | [`Client::get_treatment_with_config`], then [`TreatmentWithConfig::parse_config`] |
//! | everything decided (label, change number, impression) | [`Client::evaluate`] |
//! | several flags, or a flag set | [`Client::get_treatments`], [`Client::get_treatments_by_flag_set`] (and `_with_config`) |
//! | impression properties on the impressions of a call | [`Client::with_options`] with [`EvaluationOptions`] |
//! | the loaded definitions | [`Client::manager`] |
//!
//! Attributes are built with [`Attributes::with`] (strings, numbers, booleans, lists of
//! strings; dates as epoch milliseconds), or lent for one call as pairs of a name and an
//! [`AttributeRef`], made on the stack from values you already hold: nothing is copied and
//! nothing is allocated. [`AttributesRef`] lists what the evaluation methods accept.
//!
//! ```
//! let client = splitkit::Client::builder("localhost").split_file("examples/flags.json").build()?;
//! let plan = String::from("pro");
//! let tags = vec!["beta".to_string()];
//! let attributes = [("plan", (&plan).into()), ("age", 42.into()), ("tags", (&tags).into())];
//! assert_eq!(client.get_treatment("erin", "new_checkout", &attributes), "on");
//! # Ok::<(), splitkit::Error>(())
//! ```
//!
//! ```
//! #[derive(serde::Deserialize)]
//! struct Checkout { button_color: String }
//!
//! let client = splitkit::Client::builder("localhost").split_file("examples/flags.json").build()?;
//! let t = client.get_treatment_with_config("qa_alice", "new_checkout", None);
//! let checkout: Option<Checkout> = t.parse_config()?;
//! assert_eq!(checkout.map(|c| c.button_color).as_deref(), Some("green"));
//! # Ok::<(), splitkit::Error>(())
//! ```
//!
//! # Remote mode
//!
//! Any SDK key other than `"localhost"` synchronizes definitions from Split's SDK API and
//! delivers impressions and events to Split.
//!
//! ```no_run
//! use std::time::Duration;
//! use splitkit::{Client, Error};
//!
//! let client = Client::builder(std::env::var("SPLIT_SDK_KEY").unwrap_or_default())
//!     .features_refresh_rate(Duration::from_secs(30))
//!     .fallback_treatment("off")
//!     .build()?;
//! match client.block_until_ready(Duration::from_secs(10)) {
//!     Ok(()) => {}
//!     // Not ready in time, or the first load failed: the message says why (the server
//!     // unreachable, the SDK key rejected, which segments were still loading...). The client
//!     // keeps trying; until it is ready, evaluations answer the fallback (or `control`) with
//!     // the label `not ready`.
//!     Err(Error::NotReady { reason, .. }) => eprintln!("flags not ready yet: {reason}"),
//!     Err(e) => return Err(e),
//! }
//! let treatment = client.get_treatment("user-42", "new_checkout", None);
//! # let _ = treatment;
//! client.destroy(Duration::from_secs(5)); // delivers what is queued first
//! # Ok::<(), splitkit::Error>(())
//! ```
//!
//! - **URLs**: definitions from [`ClientBuilder::sdk_url`] (default
//!   [`defaults::SDK_URL`]), impressions, counts and events to [`ClientBuilder::events_url`]
//!   ([`defaults::EVENTS_URL`]), unique keys to [`ClientBuilder::telemetry_url`]
//!   ([`defaults::TELEMETRY_URL`]). Point them at a Split proxy or a test server as needed;
//!   nothing else is ever contacted.
//! - **Streaming** (on by default): changes are pushed (Split's streaming protocol through
//!   [`ClientBuilder::auth_url`] and [`ClientBuilder::streaming_url`]): a kill or an update
//!   is seen within milliseconds, and polling stops while the stream is up. When it is down,
//!   paused, or without publishers, definitions are polled; a dropped stream reconnects
//!   within a quarter second, then with backoff. [`ClientBuilder::streaming_enabled`]`(false)`
//!   polls only.
//! - **Polling**: flags every [`ClientBuilder::features_refresh_rate`] (60 s), segments every
//!   [`ClientBuilder::segments_refresh_rate`] (60 s), with backoff while the API fails
//!   ([`ClientBuilder::sync_backoff`]: within 1 s, doubling up to 60 s);
//!   [`Client::sync_now`] polls at once. [`ClientBuilder::flag_sets_filter`] loads only some
//!   flag sets. An answer larger than [`ClientBuilder::max_response_bytes`] (128 MiB after
//!   decompression) is refused while it is read, so it never costs more memory than that.
//! - **Change notifications**: [`Client::updates`] hands out a channel that says when the
//!   client is ready and which flags (and segments) every change touched, kills included.
//! - **Readiness**: [`Client::block_until_ready`] waits for flags and the segments they use;
//!   [`Client::is_ready`] asks without waiting. Errors are [`Error::NotReady`] with the
//!   reason; a rejected SDK key is final, anything else is retried in the background.
//! - **Delivery**: impressions in [`ImpressionsMode::Optimized`] (default: one impression per
//!   key, flag and treatment an hour, plus counts), `Debug` (all) or `None` (counts and
//!   unique keys only); events as tracked. Both are queued without blocking and posted by
//!   background threads; [`Client::flush`] delivers now, [`Client::destroy`] delivers and
//!   stops. Nothing is dropped silently: [`Client::stats`] counts every impression and event
//!   to where it went.
//! - **Outages**: a batch that fails for a transient reason (network, timeout, 408, 429,
//!   5xx) is retried until it is delivered, for as long as what waits fits in
//!   [`ClientBuilder::max_retained_items`] and [`ClientBuilder::max_retained_bytes`]; retry
//!   waits never exceed the flush period, so recovery is noticed at once; `Retry-After` is
//!   honoured. Shutdown retries until its deadline. With [`ClientBuilder::spool_directory`],
//!   what would still be dropped is written to disk and the next start delivers it.
//!
//! # Consumer mode (Redis)
//!
//! With the `redis` feature, `ClientBuilder::redis` makes the client an instance of a
//! fleet served by Split's Synchronizer: definitions are read from the Synchronizer's Redis
//! keys into the in-memory snapshot (refreshed when a till moves; evaluation never waits for
//! Redis), and impressions, counts, unique keys and events are written back in the formats the
//! Synchronizer drains, by the background workers, with the retention, spool and accounting of
//! HTTP delivery. See `RedisConfig` for standalone, Sentinel and Cluster settings.
//!
//! # Localhost mode
//!
//! The SDK key `"localhost"` reads definitions from [`ClientBuilder::split_file`]: `.json`
//! (splitChanges), `.yaml`/`.yml` (`- flag: {treatment, keys, config}`), or legacy lines
//! `flag treatment`. Segments come from [`ClientBuilder::segment_directory`].
//! [`ClientBuilder::localhost_refresh_rate`] reloads on change. Nothing is sent anywhere
//! unless [`ClientBuilder::events_url`] is set. Files are UTF-8; a leading byte-order mark
//! is ignored.
//!
//! # Impressions, listeners and integrations
//!
//! An [`ImpressionListener`] sees every impression on a thread of its own
//! ([`ClientBuilder::impression_listener`]); [`integrations`] has listeners that forward
//! impressions to Segment, to a webhook, or keep each key's last treatments as traits.
//! [`Client::flush`] and [`Client::destroy`] flush them too, within the same deadline.
//! [`ClientBuilder::labels_enabled`]`(false)` keeps labels in the process.
//!
//! # Errors
//!
//! Evaluation never returns an error and never panics: it answers `control` (or the
//! fallback) with a label and logs a warning (through the `log` crate) naming the problem.
//! [`Error`] comes only from the edges: building a client, loading files, waiting for
//! readiness, and [`Client::track`] refusing an event.
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
//! # Modules
//!
//! [`definitions`] (Split's JSON as serde types), [`analysis`] (experiment measurement from
//! impressions and events), [`integrations`], [`bucketing`] (the hash functions),
//! [`defaults`] (every tuning default) and [`limits`] (fixed bounds).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod analysis;
mod backoff;
mod builder;
mod client;
mod config;
pub mod defaults;
pub mod definitions;
mod delivery;
mod engine;
mod error;
mod events;
mod fallback;
mod impressions;
pub mod integrations;
mod intern;
pub mod limits;
mod localhost;
mod metadata;
mod periodic;
mod properties;
#[cfg(feature = "redis")]
mod redis;
mod remote;
mod stats;
mod storage;
mod stripe;
#[cfg(test)]
mod test_logs;
mod text;
mod time;
mod treatment;
mod updates;
mod validation;

pub use analysis::analyze;
pub use builder::ClientBuilder;
pub use client::{Client, ClientWithOptions, Manager};
pub use config::{Config, LOCALHOST};
pub use delivery::DeliveryStats;
pub use engine::attribute_ref::{AttributeRef, AttributesRef};
pub use engine::attribute_string::AttributeString;
pub use engine::attributes::{AttributeValue, Attributes};
pub use engine::evaluator::{CONTROL, Evaluation, EvaluationResult};
pub use engine::labels::Label;
pub use error::{Error, Result};
pub use fallback::FallbackTreatment;
pub use impressions::{
    Impression, ImpressionListener, ImpressionStats, ImpressionsMode, SdkMetadata,
};
pub use metadata::SDK_VERSION;
pub use properties::{EvaluationOptions, Properties, PropertyValue};
#[cfg(feature = "redis")]
pub use redis::RedisConfig;
pub use stats::{ClientStats, EventStats};
pub use storage::{FlagView, IntoSnapshot, Snapshot, SnapshotGuard, Store};
pub use treatment::{Key, Treatment, TreatmentDetails, TreatmentWithConfig};
pub use updates::{DefinitionsUpdate, FlagChange, Update};

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
