//! An [OpenFeature](https://openfeature.dev) provider for splitkit: Split feature flags
//! through the official OpenFeature Rust SDK (`open-feature` 0.3).
//!
//! [`SplitProvider`] wraps a splitkit [`Client`](splitkit::Client). Resolutions are
//! evaluations of that client, impressions and events go where the client sends them, and
//! the provider's lifecycle is the client's.
//!
//! # Quickstart
//!
//! ```
//! use open_feature::{EvaluationContext, EvaluationReason, OpenFeature};
//! use splitkit_openfeature::SplitProvider;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), splitkit::Error> {
//! // Localhost mode: definitions from a file ("localhost" is the SDK key).
//! let client = splitkit::Client::builder("localhost")
//!     .split_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flags.json"))
//!     .build()?;
//!
//! let mut api = OpenFeature::default(); // or OpenFeature::singleton_mut().await
//! api.set_provider(SplitProvider::new(client)).await; // waits until the client is ready
//! let features = api.create_client();
//!
//! let context = EvaluationContext::default()
//!     .with_targeting_key("erin")
//!     .with_custom_field("plan", "enterprise");
//! let details = features.get_bool_details("new_checkout", Some(&context), None).await;
//! let details = details.expect("a boolean flag");
//! assert!(details.value);
//! assert_eq!(details.variant.as_deref(), Some("on"));
//! assert_eq!(details.reason, Some(EvaluationReason::TargetingMatch));
//!
//! // Errors carry a code; the caller's default stands in for the value.
//! let missing = features.get_string_value("no_such_flag", Some(&context), None).await;
//! assert_eq!(missing.unwrap_or_else(|_| "fallback".into()), "fallback");
//!
//! api.shutdown().await; // drops the provider: the client delivers what it queued and stops
//! # Ok(())
//! # }
//! ```
//!
//! # The evaluation context
//!
//! - The **targeting key** is the matching key; without one (or with an empty one) a
//!   resolution is a `TARGETING_KEY_MISSING` error.
//! - The custom field [`BUCKETING_KEY_FIELD`] (`bucketingKey`), a string, is the bucketing
//!   key.
//! - Every other custom field is an attribute ([`attributes`]): strings, integers, floats
//!   and booleans as they are, date-times as epoch milliseconds (for `DATETIME` matchers),
//!   lists of strings and other structures as the [`attributes`] documentation says.
//!   [`TRAFFIC_TYPE_FIELD`] (`trafficType`) is only read by tracking.
//!
//! # Values
//!
//! The treatment is the `variant`, and the value is read from it as the official Split
//! providers (Java, JavaScript, Python) read it:
//!
//! | type | value |
//! |---|---|
//! | bool | `on` and `true` are true, `off` and `false` false, in any case |
//! | string | the treatment |
//! | int, float | the treatment parsed as a number (surrounding whitespace ignored; floats finite) |
//! | struct | the treatment's configuration (JSON), or else the treatment itself read as JSON |
//!
//! A treatment that does not read as the type asked is a `PARSE_ERROR` (a struct that is
//! JSON but not an object, a `TYPE_MISMATCH`), and the caller's default stands. OpenFeature
//! values have no null: null fields of a structure are left out.
//!
//! # Reasons and errors
//!
//! The label of the evaluation ([`splitkit::Label`]) gives the reason:
//!
//! | label | reason, or error code |
//! |---|---|
//! | a targeting rule's label, the rule being a percentage split ([`splitkit::TreatmentDetails::percentage_split`]) | `SPLIT` |
//! | any other targeting rule's label (a whitelist, a segment, an attribute rule, an all-keys rule giving one treatment) | `TARGETING_MATCH` |
//! | `no rule matched`, `not in split`, `prerequisites not met` (the default treatment) | `DEFAULT` |
//! | a fallback treatment ([`splitkit::Label::Fallback`]) | `DEFAULT` |
//! | `killed` | `DISABLED` |
//! | `definition not found` | `FLAG_NOT_FOUND` |
//! | `not ready` (or the client destroyed) | `PROVIDER_NOT_READY` |
//! | `exception`, `targeting rule type unsupported by sdk` | `General`, with the label |
//! | any other `control` treatment | `General("control")` |
//! | a key splitkit refuses (longer than 250 characters) | `INVALID_CONTEXT` |
//!
//! # Flag metadata
//!
//! A resolution carries [`METADATA_LABEL`] (`label`), [`METADATA_CHANGE_NUMBER`]
//! (`changeNumber`, the flag's version) and, when the treatment has one,
//! [`METADATA_CONFIG`] (`config`, the configuration's JSON text).
//!
//! # Lifecycle
//!
//! - `set_provider` calls [`initialize`](open_feature::provider::FeatureProvider::initialize),
//!   which waits until the client is ready, at most
//!   [`SplitProviderBuilder::ready_timeout`] (default [`DEFAULT_READY_TIMEOUT`]), on a
//!   thread of its own (the executor is not blocked). Localhost clients are ready at once.
//! - [`status`](open_feature::provider::FeatureProvider::status) is `Ready` while the client
//!   is ready, `Error` when it was not ready in time (it keeps loading; resolutions answer
//!   `PROVIDER_NOT_READY` until it is), `NotReady` before initialization and after shutdown.
//! - [`SplitProvider::shutdown`], or dropping the provider (OpenFeature's `shutdown` drops
//!   the providers), destroys the client: queued impressions and events are delivered within
//!   [`SplitProviderBuilder::shutdown_timeout`], then its threads stop. Dropping blocks for
//!   that long at most.
//!
//! Two things of the SDK 0.3 to know: `set_provider` holds its provider registry locked
//! while `initialize` waits, so evaluations through its clients wait too (at most the ready
//! timeout); and after `OpenFeature::shutdown` it has no provider at all, so evaluating
//! through its clients then panics inside the SDK. Set the provider at start-up and shut
//! down last.
//!
//! # Tracking
//!
//! The SDK 0.3 has no tracking API yet, so tracking is [`SplitProvider::track`], and
//! [`SplitProvider::tracker`] gives a handle to keep once the provider is handed to
//! OpenFeature. An event's traffic type is the context's [`TRAFFIC_TYPE_FIELD`], or else
//! the provider's ([`SplitProviderBuilder::traffic_type`], default
//! [`DEFAULT_TRAFFIC_TYPE`]); value and properties come from [`TrackingEventDetails`].
//!
//! ```
//! use open_feature::EvaluationContext;
//! use splitkit::Properties;
//! use splitkit_openfeature::{SplitProvider, TrackingEventDetails};
//!
//! let client = splitkit::Client::builder("localhost")
//!     .split_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/flags.json"))
//!     .build()?;
//! let provider = SplitProvider::builder(client).traffic_type("account").build();
//! let tracker = provider.tracker(); // before set_provider takes the provider
//! let context = EvaluationContext::default().with_targeting_key("acme");
//! let details = TrackingEventDetails {
//!     value: Some(99.0),
//!     properties: Properties::new().with("plan", "pro"),
//! };
//! assert!(tracker.track("upgrade", &context, Some(&details)).is_ok());
//! # Ok::<(), splitkit::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod context;
mod error;
mod provider;
mod resolve;
mod tracking;

pub use context::{BUCKETING_KEY_FIELD, TRAFFIC_TYPE_FIELD, attributes};
pub use provider::{
    DEFAULT_READY_TIMEOUT, DEFAULT_TRAFFIC_TYPE, PROVIDER_NAME, SplitProvider, SplitProviderBuilder,
};
pub use resolve::{METADATA_CHANGE_NUMBER, METADATA_CONFIG, METADATA_LABEL};
pub use tracking::{SplitTracker, TrackingEventDetails};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
