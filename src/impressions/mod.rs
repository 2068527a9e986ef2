//! The impression recorder: every client evaluation becomes an [`Impression`], which the mode
//! ([`ImpressionsMode`]) queues, deduplicates or only counts; queued impressions are delivered
//! by background workers in Split's wire format, and listeners see every impression.
//!
//! Recording never blocks the caller: the queue is bounded and lock-free, and what does not
//! fit is dropped and counted (see [`ImpressionStats`]). Without listeners, the evaluating
//! thread only queues the impression: the impressions worker applies the mode as it takes
//! it (see `strategy`).

mod flag_map;
mod impression;
mod queued;
mod strategy;
mod wire_cache;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select, tick};
use parking_lot::Mutex;

pub use impression::Impression;
pub(crate) use impression::ImpressionFields;
pub(crate) use impression::{write_int, write_json_str};
use queued::Queued;
pub use strategy::ImpressionsMode;
use strategy::{Decision, Seen, Strategy};
use wire_cache::WireCache;

use crate::delivery::{
    Batcher, DeliveryStats, EncodeError, Endpoint, HttpTransport, Prepared, Retention, Transport,
    Worker, WorkerConfig, WorkerConfigBuilder,
};
use crate::engine::attributes::Attributes;
use crate::engine::evaluator::Names;
use crate::error::Error;
pub(crate) use crate::time::now_ms;

/// Unique keys held before they are sent early.
pub const UNIQUE_KEYS_EARLY_FLUSH: usize = 30_000;

/// The bytes an impression takes while it waits in the delivery queue, besides the queue's
/// own 16 bytes a slot: its flag, treatment and label are pointers to names interned when
/// the definitions were loaded, and its keys are held inline when the matching and
/// bucketing keys fit in [`QUEUED_KEY_BYTES`] together. A longer key (or an evaluation of a
/// client that is not ready) queues a whole [`Impression`], on the heap, instead.
pub const QUEUED_IMPRESSION_BYTES: usize = size_of::<Queued>();

/// Bytes of matching and bucketing key held inside a queued impression.
pub const QUEUED_KEY_BYTES: usize = queued::KEY_BYTES;

/// Receives every impression the client generates (deduplicated and counted-only ones too),
/// on a worker thread of its own: a slow or panicking listener never blocks or breaks
/// evaluation.
///
/// # Examples
/// ```
/// use std::sync::{Arc, Mutex};
/// use splitkit::{Attributes, Impression, ImpressionListener, SdkMetadata};
///
/// #[derive(Default)]
/// struct Collect(Mutex<Vec<String>>);
///
/// impl ImpressionListener for Collect {
///     fn on_impression(&self, i: &Impression, _: Option<&Attributes>, _: &SdkMetadata) {
///         self.0.lock().unwrap().push(format!("{}={}", i.flag(), i.treatment()));
///     }
/// }
///
/// let seen = Arc::new(Collect::default());
/// let client = splitkit::Client::builder("localhost")
///     .split_file("examples/flags.yaml")
///     .impression_listener(seen.clone())
///     .build()?;
/// client.get_treatment("ann", "new_checkout", None);
/// assert!(client.flush(std::time::Duration::from_secs(1)));
/// assert_eq!(*seen.0.lock().unwrap(), vec!["new_checkout=on".to_string()]);
/// # Ok::<(), splitkit::Error>(())
/// ```
pub trait ImpressionListener: Send + Sync + 'static {
    /// Called once per impression, with the evaluation's attributes.
    fn on_impression(
        &self,
        impression: &Impression,
        attributes: Option<&Attributes>,
        metadata: &SdkMetadata,
    );

    /// Delivers whatever the listener holds of the impressions it has seen, within `timeout`;
    /// true when all of it was resolved. [`Client::flush`](crate::Client::flush) and
    /// [`Client::destroy`](crate::Client::destroy) call it once `on_impression` has run for
    /// every impression recorded before them, with what is left of their deadline. The
    /// default holds nothing and returns true; the integrations deliver their queue.
    fn flush(&self, timeout: Duration) -> bool {
        let _ = timeout;
        true
    }
}

/// What the SDK says about itself, as sent with impressions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SdkMetadata {
    /// `rust-<version>`.
    pub sdk_version: &'static str,
    /// The machine's IP, unless disabled or unknown.
    pub machine_ip: Option<String>,
    /// The machine's name, unless disabled or unknown.
    pub machine_name: Option<String>,
}

/// Exact counters of the impression recorder.
///
/// Every impression ends in exactly one counter: `recorded == deduplicated + counted_only +
/// local_only + queue.recorded + queue.rejected_after_shutdown` (the last: impressions
/// of evaluations that were in flight while the client was destroyed), and
/// `queue.recorded == queue.sent + queue.dropped() + queue.queued_now`. `recorded` and
/// `queue.queued_now` are computed from the others (so the evaluating thread updates one
/// counter per impression); the rest are counted where the impression goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImpressionStats {
    /// Impressions generated by evaluations (the sum of where they went, see above).
    pub recorded: u64,
    /// Not queued: seen already this hour (optimized mode), counted instead.
    pub deduplicated: u64,
    /// Not queued: `none` mode or a flag with `impressionsDisabled`; counted, keys tracked.
    pub counted_only: u64,
    /// Not queued, by design: localhost mode without an events URL keeps impressions in the
    /// process (listeners still see them) and never sends them. Not a failure.
    pub local_only: u64,
    /// The delivery queue's counters (sent, dropped by reason, still queued, attempts).
    pub queue: DeliveryStats,
    /// Impression counts (per flag and hour) delivered and dropped.
    pub counts: DeliveryStats,
    /// Unique-keys entries delivered and dropped.
    pub unique_keys: DeliveryStats,
    /// Per listener, in the order they were added: calls made, panics caught, drops.
    pub listeners: Vec<DeliveryStats>,
}

impl ImpressionStats {
    /// True when every recorded impression is accounted for exactly once. `recorded` is the
    /// sum of where impressions went by construction, so what remains to check is the
    /// delivery queue's own balance ([`DeliveryStats::is_balanced`]).
    pub fn is_balanced(&self) -> bool {
        self.queue.is_balanced()
    }
}

/// Settings of the recorder (from the client configuration).
#[derive(Debug, Clone)]
pub(crate) struct RecorderConfig {
    pub(crate) mode: ImpressionsMode,
    pub(crate) labels_enabled: bool,
    pub(crate) dedupe_cache_size: usize,
    pub(crate) queue_size: usize,
    pub(crate) bulk_size: usize,
    pub(crate) refresh_rate: Duration,
    pub(crate) counts_refresh_rate: Duration,
    pub(crate) unique_keys_refresh_rate: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// What the delivery queues keep while an endpoint fails, and where the rest goes.
    pub(crate) retention: Retention,
}

/// One (flag, hour) count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Count {
    pub(crate) flag: String,
    pub(crate) hour: i64,
    pub(crate) count: u64,
}

/// The keys that saw one flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagKeys {
    pub(crate) flag: String,
    pub(crate) keys: Vec<String>,
}

impl FlagKeys {
    /// Appends `{"f":<flag>,"ks":[<keys>]}`, the element of `v1/keys/ss` and of
    /// `SPLITIO.uniquekeys`.
    pub(crate) fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"f\":");
        write_json_str(out, &self.flag);
        out.extend_from_slice(b",\"ks\":[");
        for (m, key) in self.keys.iter().enumerate() {
            if m > 0 {
                out.push(b',');
            }
            write_json_str(out, key);
        }
        out.extend_from_slice(b"]}");
    }
}

/// An impression with the call's attributes, for the listener.
struct Listened {
    impression: Impression,
    attributes: Option<Arc<Attributes>>,
}

/// `testImpressions/bulk`: impressions grouped by flag, in first-seen order.
struct BulkBatcher {
    /// Without listeners: the mode, applied here, on the worker, instead of on the
    /// evaluating thread.
    strategy: Option<Arc<Strategy>>,
    /// Told (by being dropped) when the worker takes no more impressions: what they count
    /// is then all counted.
    closing: Option<Sender<()>>,
    /// In consumer mode: the `m` object of the Redis elements the batch is written as.
    #[cfg(feature = "redis")]
    redis_meta: Option<Arc<[u8]>>,
}

impl Batcher<Queued> for BulkBatcher {
    fn prepare(&mut self, i: &mut Queued) -> Prepared {
        match &self.strategy {
            Some(s) if !s.process_queued(i) => Prepared::Absorbed,
            _ => Prepared::Send,
        }
    }

    fn closing(&mut self) {
        self.closing = None;
    }

    fn estimate_size(&self, i: &Queued) -> usize {
        64 + i.string_bytes()
    }

    fn encode(&self, items: &[Queued], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut cache = WireCache::default();
        #[cfg(feature = "redis")]
        if let Some(meta) = &self.redis_meta {
            for (n, i) in items.iter().enumerate() {
                if n > 0 {
                    out.push(b'\n');
                }
                crate::redis::write_impression(out, meta, i.flag(), |o| {
                    i.write_wire(o, &mut cache);
                });
            }
            return Ok(());
        }
        // Flags in first-seen order, each with its items; a run of one flag (the usual
        // batch) costs one comparison per item.
        let mut groups: Vec<(&str, Vec<&Queued>)> = Vec::new();
        let mut index: HashMap<&str, usize, foldhash::fast::RandomState> = HashMap::default();
        let mut last: Option<usize> = None;
        for i in items {
            let flag = i.flag();
            let g = match last {
                // The same interned name is the same pointer: no byte comparison.
                Some(g) if std::ptr::eq(groups[g].0, flag) || groups[g].0 == flag => g,
                _ => *index.entry(flag).or_insert_with(|| {
                    groups.push((flag, Vec::new()));
                    groups.len() - 1
                }),
            };
            groups[g].1.push(i);
            last = Some(g);
        }
        out.reserve(items.len() * 120);
        out.push(b'[');
        for (n, (flag, imps)) in groups.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"f\":");
            write_json_str(out, flag);
            out.extend_from_slice(b",\"i\":[");
            for (m, i) in imps.iter().enumerate() {
                if m > 0 {
                    out.push(b',');
                }
                i.write_wire(out, &mut cache);
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b']');
        Ok(())
    }
}

/// `testImpressions/count`: `{"pf":[{"f","m","rc"}]}`.
struct CountsBatcher;

impl Batcher<Count> for CountsBatcher {
    fn estimate_size(&self, c: &Count) -> usize {
        40 + c.flag.len()
    }

    fn encode(&self, items: &[Count], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(b"{\"pf\":[");
        for (n, c) in items.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"f\":");
            write_json_str(out, &c.flag);
            out.extend_from_slice(b",\"m\":");
            write_int(out, c.hour);
            out.extend_from_slice(b",\"rc\":");
            write_int(out, i64::try_from(c.count).unwrap_or(i64::MAX));
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        Ok(())
    }
}

/// `v1/keys/ss`: `{"keys":[{"f","ks":[...]}]}`.
struct UniqueKeysBatcher;

impl Batcher<FlagKeys> for UniqueKeysBatcher {
    fn estimate_size(&self, k: &FlagKeys) -> usize {
        16 + k.flag.len() + k.keys.iter().map(|k| k.len() + 3).sum::<usize>()
    }

    fn encode(&self, items: &[FlagKeys], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(b"{\"keys\":[");
        for (n, k) in items.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            k.write_json(out);
        }
        out.extend_from_slice(b"]}");
        Ok(())
    }
}

/// Where impressions, counts and unique keys are delivered.
#[derive(Clone)]
pub(crate) enum Destination {
    /// Split's API: the events host and the telemetry host.
    Http {
        events: Arc<HttpTransport>,
        telemetry: Arc<HttpTransport>,
    },
    /// The Synchronizer's Redis (consumer mode).
    #[cfg(feature = "redis")]
    Redis(Arc<crate::redis::RedisTransport>),
}

/// Each queue's transport, endpoint and (for counts and unique keys) batcher.
struct Routes {
    impressions: (Arc<dyn Transport>, Endpoint),
    #[cfg(feature = "redis")]
    redis_meta: Option<Arc<[u8]>>,
    counts: (Arc<dyn Transport>, Endpoint, Box<dyn Batcher<Count>>),
    unique_keys: (Arc<dyn Transport>, Endpoint, Box<dyn Batcher<FlagKeys>>),
}

impl Routes {
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn new(destination: Destination, mode: ImpressionsMode, metadata: &SdkMetadata) -> Routes {
        match destination {
            Destination::Http { events, telemetry } => {
                let mode = mode.as_header();
                let events: Arc<dyn Transport> = events;
                Routes {
                    impressions: (
                        events.clone(),
                        Endpoint::new("/testImpressions/bulk")
                            .header("SplitSDKImpressionsMode", mode),
                    ),
                    #[cfg(feature = "redis")]
                    redis_meta: None,
                    counts: (
                        events,
                        Endpoint::new("/testImpressions/count")
                            .header("SplitSDKImpressionsMode", mode),
                        Box::new(CountsBatcher),
                    ),
                    unique_keys: (
                        telemetry,
                        Endpoint::new("/v1/keys/ss"),
                        Box::new(UniqueKeysBatcher),
                    ),
                }
            }
            #[cfg(feature = "redis")]
            Destination::Redis(redis) => {
                use crate::redis::{HASH, LIST, queues};
                let redis: Arc<dyn Transport> = redis;
                let endpoint = |op: &str, key: &str| Endpoint::new(format!("{op}{key}"));
                Routes {
                    impressions: (redis.clone(), endpoint(LIST, queues::IMPRESSIONS)),
                    redis_meta: Some(crate::redis::metadata(metadata)),
                    counts: (
                        redis.clone(),
                        endpoint(HASH, queues::IMPRESSION_COUNTS),
                        Box::new(crate::redis::CountElements),
                    ),
                    unique_keys: (
                        redis,
                        endpoint(LIST, queues::UNIQUE_KEYS),
                        Box::new(crate::redis::UniqueKeyElements),
                    ),
                }
            }
        }
    }
}

/// How long a period of the counts waits for the impressions worker to count what is
/// queued (it may be busy posting a batch).
const TAKEN_WAIT: Duration = Duration::from_secs(1);

/// Where impressions go: HTTP workers, or nowhere (localhost without an events URL).
struct Delivery {
    impressions: Worker<Queued>,
    counts: Worker<Count>,
    unique_keys: Worker<FlagKeys>,
}

/// The impression recorder.
pub(crate) struct Recorder {
    strategy: Arc<Strategy>,
    /// The impressions worker applies the mode (there is a delivery queue and no
    /// listener): recording only queues.
    deferred: bool,
    /// Disconnected when the impressions worker takes no more impressions (with
    /// `deferred`): shutdown drains the counts after that.
    closed: Option<Receiver<()>>,
    labels_enabled: bool,
    delivery: Option<Delivery>,
    listeners: Vec<Worker<Listened>>,
    metadata: SdkMetadata,
    local_only: AtomicU64,
    timer: Mutex<Option<Timer>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("mode", &self.strategy.mode)
            .field("labels_enabled", &self.labels_enabled)
            .field("delivers", &self.delivery.is_some())
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

struct Timer {
    stop: Sender<()>,
    handle: JoinHandle<()>,
}

fn worker_config(
    role: &str,
    queue: usize,
    bulk: usize,
    period: Duration,
    shutdown: Duration,
) -> WorkerConfigBuilder {
    WorkerConfig::builder(role)
        .queue_capacity(queue.max(1))
        .flush_interval(period)
        .flush_max_items(bulk.max(1))
        .batch_max_items(bulk.max(1))
        .max_retained_items(queue.max(bulk).max(1))
        .shutdown_timeout(shutdown)
}

/// `r` keeping at least `items` (counts and unique keys are never lost to a short bound).
fn at_least(r: &Retention, items: usize) -> Retention {
    Retention {
        items: r.items.max(items),
        ..r.clone()
    }
}

impl Recorder {
    /// Starts the workers, delivering to `destination`; `None` means impressions are not
    /// delivered (localhost mode).
    pub(crate) fn start(
        config: &RecorderConfig,
        destination: Option<Destination>,
        listeners: Vec<Arc<dyn ImpressionListener>>,
        metadata: SdkMetadata,
    ) -> Result<Arc<Recorder>, Error> {
        // The mode's decision (and `pt`) is only needed on the wire unless a listener sees
        // the impression first: then the worker makes it, off the evaluating thread.
        let deferred = destination.is_some() && listeners.is_empty();
        let (drain_now, drain_rx) = bounded::<()>(1);
        let strategy = Arc::new(Strategy::new(
            config.mode,
            config.dedupe_cache_size,
            Some(drain_now),
        ));
        let (closing, closed) = match deferred {
            true => {
                let (tx, rx) = bounded::<()>(1);
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let delivery = match destination {
            None => None,
            Some(destination) => {
                let routes = Routes::new(destination, config.mode, &metadata);
                Some(Delivery {
                    impressions: Worker::start(
                        worker_config(
                            "impressions",
                            config.queue_size,
                            config.bulk_size,
                            config.refresh_rate,
                            config.shutdown_timeout,
                        )
                        // Evaluations are the producers: the worker is woken every quarter
                        // queue (or bulk, if smaller), and takes what waits within 100 ms
                        // however few come, so that recording an impression almost never
                        // pays for waking a sleeping thread, and the mode's counts and
                        // unique keys (made on the worker) are never far behind.
                        .wake_every((config.queue_size / 4).min(config.bulk_size).max(1))
                        .retention(&config.retention)
                        .build()?,
                        BulkBatcher {
                            strategy: deferred.then(|| strategy.clone()),
                            closing,
                            #[cfg(feature = "redis")]
                            redis_meta: routes.redis_meta,
                        },
                        routes.impressions.0,
                        routes.impressions.1,
                    )?,
                    counts: Worker::start(
                        worker_config(
                            "impression-counts",
                            100_000,
                            5_000,
                            config.counts_refresh_rate,
                            config.shutdown_timeout,
                        )
                        .retention(&at_least(&config.retention, 100_000))
                        .build()?,
                        routes.counts.2,
                        routes.counts.0,
                        routes.counts.1,
                    )?,
                    unique_keys: Worker::start(
                        worker_config(
                            "unique-keys",
                            100_000,
                            5_000,
                            config.unique_keys_refresh_rate,
                            config.shutdown_timeout,
                        )
                        .retention(&at_least(&config.retention, 100_000))
                        .build()?,
                        routes.unique_keys.2,
                        routes.unique_keys.0,
                        routes.unique_keys.1,
                    )?,
                })
            }
        };
        let mut listener_workers = Vec::with_capacity(listeners.len());
        for (n, l) in listeners.into_iter().enumerate() {
            let meta = metadata.clone();
            listener_workers.push(Worker::listener(
                worker_config(
                    &format!("impression-listener-{n}"),
                    config.queue_size,
                    config.bulk_size,
                    config.refresh_rate,
                    config.shutdown_timeout,
                )
                .build()?,
                move |item: &Listened| {
                    l.on_impression(&item.impression, item.attributes.as_deref(), &meta)
                },
            )?);
        }
        let recorder = Arc::new(Recorder {
            strategy,
            deferred,
            closed,
            labels_enabled: config.labels_enabled,
            delivery,
            listeners: listener_workers,
            metadata,
            local_only: AtomicU64::new(0),
            timer: Mutex::new(None),
        });
        if recorder.delivery.is_some() {
            let timer = Timer::start(
                Arc::downgrade(&recorder),
                drain_rx,
                config.counts_refresh_rate,
                config.unique_keys_refresh_rate,
            )?;
            *recorder.timer.lock() = Some(timer);
        }
        Ok(recorder)
    }

    /// Records one impression. Never blocks.
    ///
    /// `names` are the interned flag, treatment and label of `fields`, where the engine
    /// has them: with them, the queued impression points to those strings instead of
    /// copying them. The usual case, an impression queued for the worker to apply the mode
    /// to, is in line in the caller; the rest is out of line.
    #[inline(always)]
    pub(crate) fn record(
        &self,
        fields: ImpressionFields<'_>,
        names: Names,
        attributes: Option<&Arc<Attributes>>,
    ) {
        let fields = ImpressionFields {
            label: if self.labels_enabled {
                fields.label
            } else {
                None
            },
            ..fields
        };
        if self.deferred
            && let Some(d) = &self.delivery
        {
            // The worker applies the mode as it takes the impression. An impression that
            // finds the queue full has it applied here, so that what the mode only counts
            // is still counted; the rest is dropped, and counted as such.
            if d.impressions
                .try_push(Queued::new(&fields, names, None))
                .is_err()
            {
                self.full(&fields, names, d);
            }
            return;
        }
        self.record_here(fields, names, attributes);
    }

    /// An impression the mode is applied to here, on the calling thread (with listeners, or
    /// without delivery).
    #[inline(never)]
    fn record_here(
        &self,
        fields: ImpressionFields<'_>,
        names: Names,
        attributes: Option<&Arc<Attributes>>,
    ) {
        let decision = self.strategy.process(&Seen::fields(&fields, names));
        let previous_time = match decision {
            Decision::Queue { previous_time } => previous_time,
            Decision::Deduplicated | Decision::CountedOnly => None,
        };
        if !self.listeners.is_empty() {
            let mut impression = Impression::new(fields);
            impression.set_previous_time(previous_time);
            for l in &self.listeners {
                l.push(Listened {
                    impression: impression.clone(),
                    attributes: attributes.cloned(),
                });
            }
        }
        if let Decision::Queue { .. } = decision {
            match &self.delivery {
                Some(d) => {
                    d.impressions
                        .push(Queued::new(&fields, names, previous_time));
                }
                None => {
                    self.local_only.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// An impression that found the queue full: the mode is applied here, so that what it
    /// only counts is still counted, and what it would have sent is counted as dropped.
    #[cold]
    fn full(&self, fields: &ImpressionFields<'_>, names: Names, d: &Delivery) {
        if let Decision::Queue { .. } = self.strategy.process(&Seen::fields(fields, names)) {
            d.impressions.drop_full();
        }
    }

    /// A period of the counts or unique keys ended (or the unique keys grew large:
    /// `early`): moves them into their queues. With the mode applied on the impressions
    /// worker, what waits in its queue is counted first (for at most [`TAKEN_WAIT`]; what
    /// is still queued then goes with the next period).
    fn on_period(&self, counts: bool, unique_keys: bool, early: bool) {
        if let (true, false, Some(d)) = (self.deferred, early, &self.delivery) {
            d.impressions.taken(std::time::Instant::now() + TAKEN_WAIT);
        }
        self.drain_counts(counts, unique_keys, early);
    }

    /// Moves the counts and unique keys gathered so far into their delivery queues.
    fn drain_counts(&self, counts: bool, unique_keys: bool, early: bool) {
        let Some(d) = &self.delivery else {
            return;
        };
        if counts {
            for (flag, hour, count) in self.strategy.counter.drain() {
                d.counts.push(Count { flag, hour, count });
            }
        }
        if unique_keys {
            for (flag, keys) in self.strategy.unique_keys.drain() {
                d.unique_keys.push(FlagKeys { flag, keys });
            }
        }
        if early {
            // Send now: a flush marker makes the worker deliver what it holds; nobody waits.
            d.unique_keys.flush(Duration::ZERO);
        }
    }

    /// Delivers everything recorded before the call; true when all of it was resolved
    /// (delivered or dropped and counted) within `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        let mut ok = true;
        if let Some(d) = &self.delivery {
            // First the impressions: their worker counts what the mode does not send.
            ok &= d.impressions.flush(left());
            self.drain_counts(true, true, false);
            ok &= d.counts.flush(left());
            ok &= d.unique_keys.flush(left());
        }
        for l in &self.listeners {
            ok &= l.flush(left());
        }
        ok
    }

    /// Stops accepting, delivers what is queued and joins the threads within `timeout`.
    pub(crate) fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        let mut ok = true;
        if let Some(t) = self.timer.lock().take() {
            ok &= t.stop();
        }
        // Every queue is told as early as it can be, so that each has the time left to
        // deliver: the impressions and listeners at once; the counts and unique keys once
        // the impressions worker, which counts what the mode does not send, has taken every
        // impression. What was counted before is on its way meanwhile.
        self.drain_counts(true, true, false);
        if let Some(d) = &self.delivery {
            d.impressions.stop_by(deadline);
        }
        for l in &self.listeners {
            l.stop_by(deadline);
        }
        if let Some(closed) = &self.closed {
            // Disconnected when the worker is closing (or has ended).
            let _ = closed.recv_deadline(deadline);
            self.drain_counts(true, true, false);
        }
        if let Some(d) = &self.delivery {
            d.counts.stop_by(deadline);
            d.unique_keys.stop_by(deadline);
            ok &= d.impressions.shutdown(left());
            ok &= d.counts.shutdown(left());
            ok &= d.unique_keys.shutdown(left());
        }
        for l in &self.listeners {
            ok &= l.shutdown(left());
        }
        ok
    }

    /// The counters.
    pub(crate) fn stats(&self) -> ImpressionStats {
        let (queue, counts, unique_keys) = match &self.delivery {
            Some(d) => (
                d.impressions.stats(),
                d.counts.stats(),
                d.unique_keys.stats(),
            ),
            None => Default::default(),
        };
        let deduplicated = self.strategy.deduplicated.load(Ordering::Relaxed);
        let counted_only = self.strategy.counted_only.load(Ordering::Relaxed);
        let local_only = self.local_only.load(Ordering::Relaxed);
        ImpressionStats {
            // Every impression ends in exactly one of these (one counter fewer to update
            // on the evaluating thread).
            recorded: deduplicated
                + counted_only
                + local_only
                + queue.recorded
                + queue.rejected_after_shutdown,
            deduplicated,
            counted_only,
            local_only,
            queue,
            counts,
            unique_keys,
            listeners: self.listeners.iter().map(Worker::stats).collect(),
        }
    }

    /// The SDK metadata given to listeners.
    pub(crate) fn metadata(&self) -> &SdkMetadata {
        &self.metadata
    }
}

impl Timer {
    /// The thread that moves counts and unique keys to their queues at their periods (and
    /// early when the unique keys grow large).
    fn start(
        recorder: std::sync::Weak<Recorder>,
        drain_now: Receiver<()>,
        counts_period: Duration,
        keys_period: Duration,
    ) -> Result<Timer, Error> {
        let (stop, stop_rx) = bounded::<()>(1);
        let handle = std::thread::Builder::new()
            .name("splitkit-impression-counts".into())
            .spawn(move || {
                let counts = tick(counts_period);
                let keys = tick(keys_period);
                loop {
                    let (c, k, early) = select! {
                        recv(stop_rx) -> _ => break,
                        recv(counts) -> _ => (true, false, false),
                        recv(keys) -> _ => (false, true, false),
                        recv(drain_now) -> _ => (false, true, true),
                    };
                    match recorder.upgrade() {
                        Some(r) => r.on_period(c, k, early),
                        None => break,
                    }
                }
            })
            .map_err(|source| Error::Io {
                path: "<thread splitkit-impression-counts>".into(),
                source,
            })?;
        Ok(Timer { stop, handle })
    }

    fn stop(self) -> bool {
        let _ = self.stop.send(());
        self.handle.join().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imp(flag: &str, key: &str) -> Queued {
        Queued::Full(Box::new(Impression::new(ImpressionFields {
            key,
            bucketing_key: None,
            flag,
            treatment: "on",
            label: Some("l"),
            change_number: Some(1),
            time: 5,
            disabled: false,
            properties: None,
        })))
    }

    #[test]
    fn bulk_groups_by_flag() {
        let mut out = Vec::new();
        BulkBatcher {
            strategy: None,
            closing: None,
            #[cfg(feature = "redis")]
            redis_meta: None,
        }
        .encode(&[imp("a", "1"), imp("b", "2"), imp("a", "3")], &mut out)
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[0]["f"], "a");
        assert_eq!(v[0]["i"].as_array().unwrap().len(), 2);
        assert_eq!(v[1]["i"][0]["k"], "2");
    }

    #[test]
    fn counts_and_keys_wire() {
        let mut out = Vec::new();
        CountsBatcher
            .encode(
                &[Count {
                    flag: "f".into(),
                    hour: 3_600_000,
                    count: 4,
                }],
                &mut out,
            )
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"pf":[{"f":"f","m":3600000,"rc":4}]}"#
        );
        let mut out = Vec::new();
        UniqueKeysBatcher
            .encode(
                &[FlagKeys {
                    flag: "f".into(),
                    keys: vec!["a".into(), "b".into()],
                }],
                &mut out,
            )
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"keys":[{"f":"f","ks":["a","b"]}]}"#
        );
    }
}
