//! Background delivery of impressions, events and telemetry.
//!
//! One mechanism serves every destination: a [`Worker`] is a named thread that owns
//! a bounded queue. Producers [`push`](WorkerHandle::push) without ever blocking; the
//! worker batches items with a [`Batcher`] and posts them to an [`Endpoint`] through
//! a [`Transport`] (normally the shared [`HttpTransport`]), or hands them to a
//! listener callback ([`Worker::listener`]).
//!
//! # Delivery rules
//!
//! | answer | what happens |
//! |---|---|
//! | 2xx | delivered (`sent`) |
//! | 413 | the batch is split in halves, each retried; a single item still 413 is dropped (`dropped_rejected`) |
//! | 408, 429, 5xx, network error or timeout | retried until delivered, with exponential backoff and full jitter capped at the flush interval, or after `Retry-After` (seconds or an HTTP-date) when given |
//! | other 4xx, 3xx | can never succeed: dropped (`dropped_rejected`) and a warning names status and endpoint |
//!
//! While an endpoint fails, batches wait in order behind the failing one, bounded by
//! [`max_retained_items`](WorkerConfig::max_retained_items) and
//! [`max_retained_bytes`](WorkerConfig::max_retained_bytes): the oldest beyond that go to
//! the [spool](spool) when there is one (`spooled`), or are dropped
//! (`dropped_retained_overflow`). When the endpoint answers again, what waited goes out at
//! once, followed by what the outage spooled. While someone waits for delivery (a flush
//! caller, shutdown) retries are at most a second apart; shutdown retries until its
//! deadline, then spools or drops (`dropped_shutdown`) what is left.
//!
//! # Accounting
//!
//! Every pushed item is counted once and ends in exactly one terminal counter of
//! [`DeliveryStats`]; see [`DeliveryStats::is_balanced`].
//!
//! # Pre-stages and second consumers
//!
//! The worker knows nothing about the items: filtering (impression dedupe, sampling)
//! happens before `push`, in the caller. To feed a second consumer, push a clone to
//! a second worker, e.g. a [`Worker::listener`].

mod batch;
mod config;
mod error;
mod http;
mod http_stage;
mod listener_stage;
mod spool;
mod stats;
mod worker;

pub use batch::{Batcher, EncodeError, JsonBatcher, Prepared};
pub(crate) use config::Retention;
pub use config::{WorkerConfig, WorkerConfigBuilder};
pub use error::DeliveryError;
#[cfg(any(test, feature = "redis"))]
pub(crate) use http::Response;
#[cfg(test)]
pub(crate) use http::USER_AGENT;
pub(crate) use http::agent_config;
pub use http::{
    Endpoint, HttpConfig, HttpConfigBuilder, HttpTransport, Request, Transport, TransportError,
};
pub(crate) use spool::Spool;
pub use stats::DeliveryStats;
pub use worker::Worker;
#[cfg(test)]
pub(crate) use worker::slot_bytes;

#[cfg(test)]
mod tests;
