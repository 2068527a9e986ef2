//! Remote synchronization: flag definitions from Split's SDK API (or any compatible proxy).
//!
//! Outside localhost mode, [`Synchronizer`] keeps a [`crate::Store`] up to date from the HTTP
//! API in Split's format (SPLIT_SEMANTICS.md §1.1, §1.3, §1.4, §5):
//!
//! - thread `splitkit-flags-sync` loads `GET {sdk_url}/splitChanges?s=1.3&since=..&rbSince=..`
//!   (`&sets=..` with a flag-sets filter) page after page until `since == till` for flags and
//!   rule-based segments, then polls every `features_refresh_rate`;
//! - thread `splitkit-segments-sync` loads `GET {sdk_url}/segmentChanges/{name}?since=..` for
//!   every segment the loaded definitions use, as soon as a flag update references a new one,
//!   and all of them every `segments_refresh_rate`.
//!
//! Each page is parsed completely before anything is applied, then applied in one snapshot
//! swap: evaluations see the state before or after a page, never half of one. A broken flag
//! inside a page is logged and skipped; a page that is not a splitChanges document is not
//! applied at all. Transient failures (network, timeouts, 5xx, 408, 429, malformed bodies)
//! are retried with exponential backoff and full jitter, honouring `Retry-After`, while the
//! last good definitions keep being served. A rejected SDK key (401/403) stops the
//! synchronizer. The SDK key is never logged nor put in an error.
//!
//! [`Readiness`] tells when flags and their segments have been loaded, or why not.
//!
//! Update latency: a change served by the server becomes visible to evaluations within one
//! poll period plus one request (measured in `tests::update_visibility_latency`).

// The client starts the synchronizer outside localhost mode; until it does in every build,
// parts of this module are only used by its tests.

mod api;
mod config;
mod fetcher;
mod push;
mod readiness;
mod synchronizer;
mod wake;

#[cfg(test)]
mod tests;

// The API the client uses.
#[allow(unused_imports)]
pub(crate) use api::SDK_VERSION;
#[allow(unused_imports)]
pub(crate) use config::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_FEATURES_REFRESH_RATE,
    DEFAULT_REQUEST_TIMEOUT, DEFAULT_SDK_URL, DEFAULT_SEGMENTS_REFRESH_RATE,
    MIN_FEATURES_REFRESH_RATE, MIN_SEGMENTS_REFRESH_RATE, StreamingUrls, SyncConfig,
};
#[allow(unused_imports)]
pub(crate) use readiness::{Readiness, ReadinessState};
#[allow(unused_imports)]
pub(crate) use synchronizer::{FLAGS_THREAD, SEGMENTS_THREAD, Synchronizer};
