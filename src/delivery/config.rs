//! [`WorkerConfig`]: queue size, flush triggers, batch limits, retention and retry policy.

use std::sync::Arc;
use std::time::Duration;

use super::DeliveryError;
use super::spool::Spool;

/// Settings of one [`Worker`](super::Worker); built with [`WorkerConfig::builder`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    role: String,
    queue_capacity: usize,
    flush_interval: Duration,
    flush_max_items: usize,
    flush_max_bytes: usize,
    batch_max_items: usize,
    batch_max_bytes: usize,
    max_retained_items: usize,
    max_retained_bytes: usize,
    backoff_base: Duration,
    backoff_cap: Duration,
    spool: Option<Arc<Spool>>,
    warn_interval: Duration,
    shutdown_timeout: Duration,
    wake_every: usize,
    take_within: Duration,
}

impl WorkerConfig {
    /// Default queue capacity: 10 000 items.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;
    /// Default period of the timed flush: 60 s.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(60);
    /// Default item count that triggers a flush: 5 000.
    pub const DEFAULT_FLUSH_MAX_ITEMS: usize = 5_000;
    /// Default estimated byte total that triggers a flush: 5 MiB.
    pub const DEFAULT_FLUSH_MAX_BYTES: usize = 5 * 1024 * 1024;
    /// Default largest batch, in items: 5 000.
    pub const DEFAULT_BATCH_MAX_ITEMS: usize = 5_000;
    /// Default largest batch, in estimated bytes: 5 MiB.
    pub const DEFAULT_BATCH_MAX_BYTES: usize = 5 * 1024 * 1024;
    /// Default bound on items retained for retry: 30 000.
    pub const DEFAULT_MAX_RETAINED_ITEMS: usize = 30_000;
    /// Default bound on the estimated bytes retained for retry: 32 MiB.
    pub const DEFAULT_MAX_RETAINED_BYTES: usize = 32 * 1024 * 1024;
    /// Default first retry bound: 1 s.
    pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
    /// Default largest retry bound: 60 s.
    pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(60);
    /// Default shortest gap between two warnings of one kind: 60 s.
    pub const DEFAULT_WARN_INTERVAL: Duration = Duration::from_secs(60);
    /// Default shutdown timeout when the worker is dropped: 5 s.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default wake-up policy: 1, the worker takes every item as it arrives.
    pub const DEFAULT_WAKE_EVERY: usize = 1;
    /// Default longest wait of an item in a lazy worker's queue: 100 ms.
    pub const DEFAULT_TAKE_WITHIN: Duration = Duration::from_millis(100);

    /// Starts a configuration with every default, for a worker whose thread is named
    /// `"splitkit-<role>"` (e.g. `"impressions"`, `"events"`, `"impression-listener"`).
    pub fn builder(role: impl Into<String>) -> WorkerConfigBuilder {
        WorkerConfigBuilder {
            config: WorkerConfig {
                role: role.into(),
                queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
                flush_interval: Self::DEFAULT_FLUSH_INTERVAL,
                flush_max_items: Self::DEFAULT_FLUSH_MAX_ITEMS,
                flush_max_bytes: Self::DEFAULT_FLUSH_MAX_BYTES,
                batch_max_items: Self::DEFAULT_BATCH_MAX_ITEMS,
                batch_max_bytes: Self::DEFAULT_BATCH_MAX_BYTES,
                max_retained_items: Self::DEFAULT_MAX_RETAINED_ITEMS,
                max_retained_bytes: Self::DEFAULT_MAX_RETAINED_BYTES,
                backoff_base: Self::DEFAULT_BACKOFF_BASE,
                backoff_cap: Self::DEFAULT_BACKOFF_CAP,
                spool: None,
                warn_interval: Self::DEFAULT_WARN_INTERVAL,
                shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
                wake_every: Self::DEFAULT_WAKE_EVERY,
                take_within: Self::DEFAULT_TAKE_WITHIN,
            },
            retention: None,
        }
    }

    /// The worker thread's name: `"splitkit-<role>"`.
    pub fn thread_name(&self) -> String {
        format!("splitkit-{}", self.role)
    }

    /// Items the queue holds before `push` starts dropping.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Period of the timed flush.
    pub fn flush_interval(&self) -> Duration {
        self.flush_interval
    }

    /// Buffered item count that triggers a flush.
    pub fn flush_max_items(&self) -> usize {
        self.flush_max_items
    }

    /// Buffered estimated bytes that trigger a flush.
    pub fn flush_max_bytes(&self) -> usize {
        self.flush_max_bytes
    }

    /// Largest batch (one request), in items.
    pub fn batch_max_items(&self) -> usize {
        self.batch_max_items
    }

    /// Largest batch (one request), in estimated bytes; a single larger item is
    /// still sent alone.
    pub fn batch_max_bytes(&self) -> usize {
        self.batch_max_bytes
    }

    /// Items kept for retry while the endpoint fails; beyond it the oldest batches
    /// are spooled (with a spool) or dropped.
    pub fn max_retained_items(&self) -> usize {
        self.max_retained_items
    }

    /// Estimated bytes kept for retry while the endpoint fails; beyond it the oldest
    /// batches are spooled (with a spool) or dropped.
    pub fn max_retained_bytes(&self) -> usize {
        self.max_retained_bytes
    }

    /// Bound of the first retry wait.
    pub fn backoff_base(&self) -> Duration {
        self.backoff_base
    }

    /// The largest retry wait the worker uses: the backoff cap or the flush interval,
    /// whichever is less (never below the base), so that once the endpoint answers again
    /// what was retained goes out within one flush period.
    pub fn retry_cap(&self) -> Duration {
        self.backoff_cap
            .min(self.flush_interval)
            .max(self.backoff_base)
    }

    /// Where batches go that would otherwise be dropped, and come from at start.
    pub(crate) fn spool(&self) -> Option<&Arc<Spool>> {
        self.spool.as_ref()
    }

    /// Shortest gap between two warnings of one kind (queue full, batch rejected...).
    pub fn warn_interval(&self) -> Duration {
        self.warn_interval
    }

    /// Timeout of the shutdown run when the last owner or handle is dropped.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// How many pushes wake the worker: 1 wakes it for every item; more lets items wait in
    /// the queue (see [`WorkerConfigBuilder::wake_every`]).
    pub fn wake_every(&self) -> usize {
        self.wake_every
    }

    /// With [`wake_every`](Self::wake_every) above 1, the longest an item waits in the
    /// queue before the worker takes it (see [`WorkerConfigBuilder::take_within`]).
    pub fn take_within(&self) -> Duration {
        self.take_within
    }
}

/// How much a delivery queue keeps while its endpoint fails, and where the rest goes.
#[derive(Debug, Clone)]
pub(crate) struct Retention {
    /// Items kept for retry.
    pub(crate) items: usize,
    /// Estimated bytes kept for retry.
    pub(crate) bytes: usize,
    /// Where what does not fit (and what the shutdown deadline leaves) is written.
    pub(crate) spool: Option<Arc<Spool>>,
}

/// By-value builder of [`WorkerConfig`]; every setter states its default.
#[derive(Debug, Clone)]
pub struct WorkerConfigBuilder {
    config: WorkerConfig,
    /// Applied by `build`, once the batch limits are known.
    retention: Option<Retention>,
}

impl WorkerConfigBuilder {
    /// Items the queue holds before `push` drops. A queue of up to 8 MiB of slots is
    /// allocated when the worker starts; a larger one as items wait in it (31 slots at a
    /// time), freed as the worker takes them. Default: [`WorkerConfig::DEFAULT_QUEUE_CAPACITY`].
    pub fn queue_capacity(mut self, items: usize) -> Self {
        self.config.queue_capacity = items;
        self
    }

    /// Period of the timed flush. Default: [`WorkerConfig::DEFAULT_FLUSH_INTERVAL`].
    pub fn flush_interval(mut self, period: Duration) -> Self {
        self.config.flush_interval = period;
        self
    }

    /// Buffered item count that triggers a flush.
    /// Default: [`WorkerConfig::DEFAULT_FLUSH_MAX_ITEMS`].
    pub fn flush_max_items(mut self, items: usize) -> Self {
        self.config.flush_max_items = items;
        self
    }

    /// Buffered estimated bytes that trigger a flush.
    /// Default: [`WorkerConfig::DEFAULT_FLUSH_MAX_BYTES`].
    pub fn flush_max_bytes(mut self, bytes: usize) -> Self {
        self.config.flush_max_bytes = bytes;
        self
    }

    /// Largest batch in items. Default: [`WorkerConfig::DEFAULT_BATCH_MAX_ITEMS`].
    pub fn batch_max_items(mut self, items: usize) -> Self {
        self.config.batch_max_items = items;
        self
    }

    /// Largest batch in estimated bytes. Default: [`WorkerConfig::DEFAULT_BATCH_MAX_BYTES`].
    pub fn batch_max_bytes(mut self, bytes: usize) -> Self {
        self.config.batch_max_bytes = bytes;
        self
    }

    /// Items kept for retry while the endpoint fails.
    /// Default: [`WorkerConfig::DEFAULT_MAX_RETAINED_ITEMS`].
    pub fn max_retained_items(mut self, items: usize) -> Self {
        self.config.max_retained_items = items;
        self
    }

    /// Estimated bytes kept for retry while the endpoint fails.
    /// Default: [`WorkerConfig::DEFAULT_MAX_RETAINED_BYTES`].
    pub fn max_retained_bytes(mut self, bytes: usize) -> Self {
        self.config.max_retained_bytes = bytes;
        self
    }

    /// What is kept while the endpoint fails (at least one batch of items and bytes), and
    /// the spool directory where batches beyond that bound or the shutdown deadline are
    /// written instead of being dropped (the batches found there for this worker's endpoint
    /// are delivered first). Default: [`WorkerConfig::DEFAULT_MAX_RETAINED_ITEMS`] and
    /// [`WorkerConfig::DEFAULT_MAX_RETAINED_BYTES`], no spool.
    pub(crate) fn retention(mut self, r: &Retention) -> Self {
        self.retention = Some(r.clone());
        self
    }

    /// Bound of the first retry wait. Default: [`WorkerConfig::DEFAULT_BACKOFF_BASE`].
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.config.backoff_base = base;
        self
    }

    /// Largest retry wait bound. Default: [`WorkerConfig::DEFAULT_BACKOFF_CAP`].
    pub fn backoff_cap(mut self, cap: Duration) -> Self {
        self.config.backoff_cap = cap;
        self
    }

    /// Shortest gap between two warnings of one kind.
    /// Default: [`WorkerConfig::DEFAULT_WARN_INTERVAL`].
    #[cfg(test)]
    pub fn warn_interval(mut self, interval: Duration) -> Self {
        self.config.warn_interval = interval;
        self
    }

    /// Timeout of the shutdown run on drop. Default: [`WorkerConfig::DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// How the worker learns of new items. With 1 (the default) it waits on the queue
    /// itself and takes every item as soon as it arrives, so byte-based flush triggers
    /// ([`flush_max_bytes`](Self::flush_max_bytes)) act at once. With `n > 1` items wait in
    /// the queue, and the worker is woken only by every `n`-th push, a full queue, a
    /// `flush`, its flush interval, shutdown, and the first push into a queue it emptied
    /// (it then takes what waits [`WorkerConfig::take_within`] later). So almost no push
    /// pays for waking a sleeping thread, which makes high-rate producers (impressions)
    /// cheaper. The triggers still apply, checked when the worker takes the waiting items.
    /// Default: [`WorkerConfig::DEFAULT_WAKE_EVERY`].
    pub fn wake_every(mut self, pushes: usize) -> Self {
        self.config.wake_every = pushes;
        self
    }

    /// With [`wake_every`](Self::wake_every) above 1: the longest an item waits in the
    /// queue before the worker takes it, so that what the worker does with items (the
    /// impressions mode's counts and unique keys) is never more than this behind, however
    /// few items come. The worker is woken by the first push after it emptied the queue
    /// and takes what waits this long after: at most one such wake-up a period.
    /// Default: [`WorkerConfig::DEFAULT_TAKE_WITHIN`] (only tests set another).
    #[cfg(test)]
    pub fn take_within(mut self, period: Duration) -> Self {
        self.config.take_within = period;
        self
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Config`] when the role is empty or contains a NUL byte, a count
    /// or byte limit is zero, the flush interval is zero, the backoff cap is below its
    /// base, `max_retained_items` or `max_retained_bytes` cannot hold one batch, or
    /// `wake_every` is zero or above `queue_capacity` (the queue would fill before the
    /// worker is woken).
    pub fn build(mut self) -> Result<WorkerConfig, DeliveryError> {
        if let Some(r) = self.retention.take() {
            let c = &mut self.config;
            c.max_retained_items = r.items.max(c.batch_max_items);
            c.max_retained_bytes = r.bytes.max(c.batch_max_bytes);
            c.spool = r.spool;
        }
        let c = &self.config;
        let checks: [(bool, &'static str); 10] = [
            (
                !c.role.is_empty() && !c.role.contains('\0'),
                "role must be non-empty and contain no NUL byte",
            ),
            (c.queue_capacity > 0, "queue_capacity must be at least 1"),
            (
                !c.flush_interval.is_zero(),
                "flush_interval must be greater than zero",
            ),
            (
                c.flush_max_items > 0 && c.flush_max_bytes > 0,
                "flush_max_items and flush_max_bytes must be at least 1",
            ),
            (
                c.batch_max_items > 0 && c.batch_max_bytes > 0,
                "batch_max_items and batch_max_bytes must be at least 1",
            ),
            (
                c.max_retained_items >= c.batch_max_items,
                "max_retained_items must be at least batch_max_items",
            ),
            (
                c.max_retained_bytes >= c.batch_max_bytes,
                "max_retained_bytes must be at least batch_max_bytes",
            ),
            (
                c.backoff_cap >= c.backoff_base,
                "backoff_cap must be at least backoff_base",
            ),
            (
                !c.shutdown_timeout.is_zero(),
                "shutdown_timeout must be greater than zero",
            ),
            (
                c.wake_every > 0 && c.wake_every <= c.queue_capacity,
                "wake_every must be between 1 and queue_capacity",
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, rule)) => Err(DeliveryError::Config(rule)),
            None => Ok(self.config),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = WorkerConfig::builder("impressions").build();
        assert!(
            matches!(&c, Ok(c) if c.thread_name() == "splitkit-impressions"
            && c.max_retained_bytes() == WorkerConfig::DEFAULT_MAX_RETAINED_BYTES)
        );
    }

    #[test]
    fn retry_waits_are_capped_by_the_flush_interval() {
        let c = |flush: u64, cap: u64| {
            WorkerConfig::builder("x")
                .flush_interval(Duration::from_secs(flush))
                .backoff_cap(Duration::from_secs(cap))
                .build()
                .map(|c| c.retry_cap().as_secs())
                .ok()
        };
        assert_eq!(c(10, 60), Some(10));
        assert_eq!(c(300, 60), Some(60));
        let tiny = WorkerConfig::builder("x")
            .flush_interval(Duration::from_millis(1))
            .build()
            .map(|c| c.retry_cap());
        assert_eq!(
            tiny.ok(),
            Some(WorkerConfig::DEFAULT_BACKOFF_BASE),
            "never below the base"
        );
    }

    #[test]
    fn wake_every_is_kept_as_given() {
        // Not rounded: the worker must be woken by exactly the push that reaches it (the
        // impressions worker sets it to the bulk size, which then triggers a send).
        for n in [1, 2, 3, 1000, 1024, 5000] {
            let c = WorkerConfig::builder("x").wake_every(n).build();
            assert_eq!(c.map(|c| c.wake_every()).ok(), Some(n), "{n}");
        }
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            (WorkerConfig::builder(""), "role"),
            (
                WorkerConfig::builder("x").queue_capacity(0),
                "queue_capacity",
            ),
            (
                WorkerConfig::builder("x").flush_interval(Duration::ZERO),
                "flush_interval",
            ),
            (
                WorkerConfig::builder("x").batch_max_bytes(0),
                "batch_max_items",
            ),
            (
                WorkerConfig::builder("x").max_retained_items(10),
                "max_retained_items",
            ),
            (
                WorkerConfig::builder("x").max_retained_bytes(10),
                "max_retained_bytes",
            ),
            (WorkerConfig::builder("x").wake_every(0), "wake_every"),
            (
                WorkerConfig::builder("x").queue_capacity(4).wake_every(5),
                "wake_every",
            ),
            (
                WorkerConfig::builder("x").backoff_cap(Duration::from_millis(1)),
                "backoff_cap",
            ),
        ];
        for (builder, field) in cases {
            match builder.build() {
                Err(DeliveryError::Config(rule)) => assert!(rule.contains(field), "{rule}"),
                other => panic!("expected error naming {field}, got {other:?}"),
            }
        }
    }
}
