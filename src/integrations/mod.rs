//! Integrations: impressions pushed to the tools you already use.
//!
//! - [`SegmentIntegration`]: every impression becomes a Segment `track` call named
//!   `get_treatment`, batched to Segment's HTTP Tracking API (`/v1/batch`).
//! - [`WebhookIntegration`]: batches of impressions POSTed as JSON (gzip-compressed unless
//!   disabled) to a URL of yours, in the schema of Split's own impressions webhook.
//! - [`TraitsListener`]: the last treatment each key saw of each flag, in bounded memory,
//!   optionally pushed to Segment as `identify` calls (one trait per flag).
//!
//! Each is an [`ImpressionListener`](crate::ImpressionListener): enable it with
//! [`ClientBuilder::impression_listener`](crate::ClientBuilder::impression_listener), keeping
//! an `Arc` of your own to call `stats` or `traits` on.
//!
//! # Threads, queues and flushing
//!
//! The client calls a listener on a listener worker thread of its own, never on the thread
//! that evaluates. Inside `on_impression`, an integration encodes the call and pushes it to
//! its own HTTP delivery queue, a bounded queue and a thread that batches and posts it, the
//! mechanism that delivers the client's own impressions. Pushing never blocks; what does not
//! fit is dropped and counted.
//!
//! So two queues stand between an evaluation and the destination, and
//! [`Client::flush`](crate::Client::flush) drains both, in order, within its one deadline:
//! first the client's listener queue (so `on_impression` has run for every impression
//! recorded before the call), then each listener's own
//! [`flush`](crate::ImpressionListener::flush), which for an integration delivers its HTTP
//! queue. [`Client::destroy`](crate::Client::destroy) does the same before it returns. The
//! integration's own `flush` (e.g. [`SegmentIntegration::flush`]) is there for an
//! integration used without a client.
//!
//! Dropping the last handle of an integration shuts its worker down, which delivers what is
//! queued within [`DeliveryOptions::shutdown_timeout`]; `shutdown` does the same with a
//! timeout of your choice.
//!
//! # Delivery guarantees
//!
//! The same rules as the client's impressions: 2xx delivers; 408, 429, 5xx and network
//! errors are retried, with exponential backoff and jitter (or after `Retry-After`), for as
//! long as the calls fit in the retention bound; 413 splits a batch; other answers drop the
//! batch. While the destination fails, at most [`DeliveryOptions::max_retained_items`] (and
//! [`DeliveryOptions::max_retained_bytes`]) wait for it, the oldest beyond that are dropped.
//! Every call ends in exactly one counter of [`IntegrationStats`].
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use splitkit::Client;
//! use splitkit::integrations::TraitsListener;
//!
//! let traits = Arc::new(TraitsListener::new(10_000, None)?);
//! let client = Client::builder("localhost")
//!     .split_file("examples/flags.json")
//!     .impression_listener(traits.clone())
//!     .build()?;
//! client.get_treatment("qa_alice", "new_checkout", None);
//! client.flush(Duration::from_secs(5)); // the listener has seen the impression
//! assert_eq!(traits.traits("qa_alice")["new_checkout"], "on");
//! # Ok::<(), splitkit::Error>(())
//! ```

pub(crate) mod segment;
mod traits;
mod webhook;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use segment::{SegmentConfig, SegmentIntegration};
pub use traits::{LastSeen, TraitsListener, TraitsStats};
pub use webhook::{WebhookConfig, WebhookIntegration};

use crate::delivery::{
    Batcher, DeliveryError, DeliveryStats, EncodeError, Endpoint, HttpConfigBuilder, HttpTransport,
    Transport, Worker, WorkerConfig,
};
use crate::error::Error;

/// How an integration delivers: queue, batching, retries and shutdown. The defaults are
/// those of the client's impression delivery.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use splitkit::integrations::DeliveryOptions;
///
/// let delivery = DeliveryOptions {
///     flush_interval: Duration::from_secs(5),
///     max_retained_items: 100_000,
///     ..DeliveryOptions::default()
/// };
/// assert_eq!(delivery.queue_capacity, 10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Calls the queue holds; beyond it they are dropped and counted. Default: 10,000.
    pub queue_capacity: usize,
    /// Period of the timed send. Default: 10 s.
    pub flush_interval: Duration,
    /// Calls per request, and the number queued that triggers a send. Default: 5,000.
    pub batch_max_items: usize,
    /// Encoded bytes per request, and the amount queued that triggers a send. Default: 5 MiB
    /// (Segment: never more than [`SEGMENT_MAX_BATCH_BYTES`](crate::limits::SEGMENT_MAX_BATCH_BYTES)).
    pub batch_max_bytes: usize,
    /// Calls kept for retry while the destination fails; the oldest beyond it are dropped
    /// and counted. Default: 30,000.
    pub max_retained_items: usize,
    /// Encoded bytes kept for retry while the destination fails; the oldest beyond it are
    /// dropped and counted. Default: 32 MiB.
    pub max_retained_bytes: usize,
    /// Bound of the first retry wait (full jitter). Default: 1 s.
    pub backoff_base: Duration,
    /// Largest retry wait (and never more than `flush_interval`, so that a destination that
    /// answers again gets what waited within one flush period). Default: 60 s.
    pub backoff_cap: Duration,
    /// Timeout of one request, connect to last byte. Default: 30 s.
    pub request_timeout: Duration,
    /// How long dropping the integration waits for its queue to be delivered. Default: 5 s.
    pub shutdown_timeout: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            queue_capacity: crate::config::DEFAULT_QUEUE_SIZE,
            flush_interval: Duration::from_secs(10),
            batch_max_items: crate::config::DEFAULT_BULK_SIZE,
            batch_max_bytes: WorkerConfig::DEFAULT_BATCH_MAX_BYTES,
            max_retained_items: WorkerConfig::DEFAULT_MAX_RETAINED_ITEMS,
            max_retained_bytes: WorkerConfig::DEFAULT_MAX_RETAINED_BYTES,
            backoff_base: WorkerConfig::DEFAULT_BACKOFF_BASE,
            backoff_cap: WorkerConfig::DEFAULT_BACKOFF_CAP,
            request_timeout: crate::config::DEFAULT_REQUEST_TIMEOUT,
            shutdown_timeout: WorkerConfig::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl DeliveryOptions {
    /// The worker configuration, with requests of at most `max_bytes` encoded bytes. A send
    /// starts once `headroom` bytes short of a full request (the size of the largest call),
    /// so that the open batch goes out nearly full instead of being cut in two.
    fn worker_config(
        &self,
        role: &str,
        max_bytes: usize,
        headroom: usize,
        option: &'static str,
    ) -> Result<WorkerConfig, Error> {
        let bytes = self.batch_max_bytes.min(max_bytes);
        WorkerConfig::builder(role)
            .queue_capacity(self.queue_capacity)
            .flush_interval(self.flush_interval)
            .flush_max_items(self.batch_max_items)
            .batch_max_items(self.batch_max_items)
            .flush_max_bytes(bytes.saturating_sub(headroom).max(1))
            .batch_max_bytes(bytes)
            .max_retained_items(self.max_retained_items)
            .max_retained_bytes(self.max_retained_bytes.max(bytes))
            .backoff_base(self.backoff_base)
            .backoff_cap(self.backoff_cap)
            .shutdown_timeout(self.shutdown_timeout)
            .build()
            .map_err(|e| config_error(option, e))
    }

    /// Applies the timeouts to an HTTP configuration.
    fn http(&self, builder: HttpConfigBuilder) -> HttpConfigBuilder {
        builder
            .request_timeout(self.request_timeout)
            .connect_timeout(
                self.request_timeout
                    .min(crate::delivery::HttpConfig::DEFAULT_CONNECT_TIMEOUT),
            )
    }
}

/// Counters of one integration's deliveries.
///
/// Once the integration is quiet (after its `flush`, or after shutdown),
/// [`is_balanced`](IntegrationStats::is_balanced) holds: every call received was dropped as
/// oversized, refused after shutdown, or went through the worker, where it was delivered or
/// dropped and counted.
///
/// # Examples
/// ```
/// use splitkit::integrations::IntegrationStats;
///
/// let stats = IntegrationStats::default();
/// assert!(stats.is_balanced());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct IntegrationStats {
    /// Calls (track, identify, webhook objects) the integration was asked to send.
    pub received: u64,
    /// Calls larger than the destination's limit per call, dropped before queueing
    /// (Segment: [`SEGMENT_MAX_CALL_BYTES`](crate::limits::SEGMENT_MAX_CALL_BYTES)); a warning is logged.
    pub dropped_oversized: u64,
    /// The HTTP worker's counters (sent, dropped by reason, queued, requests, bytes).
    pub delivery: DeliveryStats,
}

impl IntegrationStats {
    /// Whether every call received is accounted for exactly once:
    /// `received == dropped_oversized + delivery.recorded + delivery.rejected_after_shutdown`
    /// and the worker's own counters balance.
    pub fn is_balanced(&self) -> bool {
        self.received
            == self.dropped_oversized
                + self.delivery.recorded
                + self.delivery.rejected_after_shutdown
            && self.delivery.is_balanced()
    }
}

/// Maps a delivery configuration error to the integration option that caused it.
fn config_error(option: &'static str, e: DeliveryError) -> Error {
    match e {
        DeliveryError::Config(rule) => Error::Config {
            option,
            message: rule.to_string(),
        },
        other => Error::from(other),
    }
}

/// One call, encoded as a JSON value, waiting in an integration's queue.
type Encoded = Box<[u8]>;

/// Joins encoded calls into one body: `open`, the calls separated by commas, `close`.
struct ArrayBatcher {
    open: &'static [u8],
    close: fn(&mut Vec<u8>),
}

impl Batcher<Encoded> for ArrayBatcher {
    fn estimate_size(&self, item: &Encoded) -> usize {
        // Exact: the call plus its separator.
        item.len() + 1
    }

    fn encode(&self, items: &[Encoded], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let len: usize = items.iter().map(|i| i.len() + 1).sum();
        out.reserve(self.open.len() + len + 64);
        out.extend_from_slice(self.open);
        for (n, item) in items.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item);
        }
        (self.close)(out);
        Ok(())
    }
}

/// An integration's HTTP worker, started on the shared delivery mechanism.
fn start_worker(
    config: WorkerConfig,
    batcher: ArrayBatcher,
    transport: HttpTransport,
    endpoint: Endpoint,
) -> Result<Worker<Encoded>, Error> {
    let transport: Arc<dyn Transport> = Arc::new(transport);
    Worker::start(config, batcher, transport, endpoint).map_err(Error::from)
}

/// Unique message ids in the layout of a version-4 UUID.
///
/// The low 62 bits are a keyed bijection of a counter, so the ids of one generator never
/// repeat; the high bits are a keyed hash of the counter. The keys are random per generator
/// (std's `RandomState`), so ids of different generators and processes differ too.
struct MessageIds {
    state: RandomState,
    key: u64,
    next: AtomicU64,
}

impl MessageIds {
    fn new() -> Self {
        let state = RandomState::new();
        let key = state.hash_one("splitkit-message-id");
        MessageIds {
            state,
            key,
            next: AtomicU64::new(0),
        }
    }

    /// The next id, e.g. `3f1c9a52-7d0e-4b8a-9c41-0e6f5d2a8b17`.
    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let hi = (self.state.hash_one(n) & 0xffff_ffff_ffff_0fff) | 0x4000;
        let lo = mix62(n, self.key) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            hi >> 32,
            (hi >> 16) & 0xffff,
            hi & 0xffff,
            lo >> 48,
            lo & 0xffff_ffff_ffff
        )
    }
}

/// A bijection of the 62-bit integers (keyed add, odd multiplies and xor-shifts, all
/// invertible modulo 2^62): distinct inputs below 2^62 give distinct outputs.
fn mix62(x: u64, key: u64) -> u64 {
    const MASK: u64 = (1 << 62) - 1;
    let mut x = x.wrapping_add(key) & MASK;
    x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) & MASK;
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9) & MASK;
    x ^= x >> 32;
    x
}

/// Base64 (RFC 4648, with padding) of `input`; used once per integration for the HTTP
/// Basic credentials, so a few lines here instead of a dependency.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `epoch_ms` as ISO-8601 in UTC with milliseconds: `2023-11-14T22:13:20.000Z`.
fn iso8601(epoch_ms: i64) -> String {
    let c = crate::time::Civil::from_epoch_ms(epoch_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

/// Whether the warning for the `n`th occurrence of something should be logged: the 1st,
/// 2nd, 4th, 8th... so a flood logs a few lines, not one per call.
fn should_warn(n: u64) -> bool {
    n.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("writekey:", "d3JpdGVrZXk6"),
        ];
        for (input, expected) in cases {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn iso8601_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso8601(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        // Extremes do not panic.
        let _ = iso8601(i64::MIN);
        let _ = iso8601(i64::MAX);
    }

    #[test]
    fn message_ids_are_unique_uuids() {
        let ids = MessageIds::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = ids.next();
            assert_eq!(id.len(), 36, "{id}");
            assert_eq!(&id[14..15], "4", "{id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
            assert!(seen.insert(id));
        }
        assert_ne!(MessageIds::new().next(), MessageIds::new().next());
    }

    #[test]
    fn mix62_is_injective_on_a_sample() {
        let mut seen = std::collections::HashSet::new();
        for x in (0..5_000u64).chain((1 << 62) - 5_000..(1 << 62)) {
            let y = mix62(x, 0xdead_beef);
            assert!(y < 1 << 62);
            assert!(seen.insert(y), "{x}");
        }
    }

    #[test]
    fn array_batcher_joins_calls() {
        let batcher = ArrayBatcher {
            open: b"[",
            close: |out| out.push(b']'),
        };
        let items: Vec<Encoded> = vec![b"{\"a\":1}".to_vec().into(), b"2".to_vec().into()];
        let mut out = Vec::new();
        assert!(batcher.encode(&items, &mut out).is_ok());
        assert_eq!(out, b"[{\"a\":1},2]");
        assert_eq!(batcher.estimate_size(&items[0]), 8);
    }

    #[test]
    fn warnings_thin_out() {
        let logged: Vec<u64> = (1..=20).filter(|n| should_warn(*n)).collect();
        assert_eq!(logged, vec![1, 2, 4, 8, 16]);
    }
}
