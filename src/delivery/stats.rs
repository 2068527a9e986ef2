//! Delivery accounting: lock-free counters shared by producers and the worker thread.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one [`Worker`](super::Worker), updated with atomics; read
/// through [`DeliveryStats`].
///
/// Producers update `recorded`, `dropped_queue_full` and
/// `rejected_after_shutdown` (and `dropped_shutdown` for a push that races with the
/// start of shutdown); everything else is written by the worker thread.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    // Producer-side counters first; the worker-side ones follow so that the hot
    // path and the worker touch different cache lines as much as possible.
    recorded: AtomicU64,
    dropped_queue_full: AtomicU64,
    rejected_after_shutdown: AtomicU64,
    sent: AtomicU64,
    dropped_rejected: AtomicU64,
    dropped_retained_overflow: AtomicU64,
    dropped_shutdown: AtomicU64,
    spooled: AtomicU64,
    /// Items the stage used up without sending them (see [`WorkerStats::on_absorbed`]).
    absorbed: AtomicU64,
    recovered: AtomicU64,
    failed_attempts: AtomicU64,
    requests: AtomicU64,
    bytes_sent: AtomicU64,
    listener_panics: AtomicU64,
}

/// Why the worker gave up on items; each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The server answered with a status that can never succeed (4xx other than 429,
    /// a single item still too large), the batch could not be encoded, or a listener
    /// callback panicked.
    Rejected,
    /// The bound on retained items was exceeded while the endpoint was failing.
    RetainedOverflow,
    /// Not delivered by the shutdown deadline.
    Shutdown,
}

const ACQ: Ordering = Ordering::Acquire;
const REL: Ordering = Ordering::AcqRel;

impl WorkerStats {
    /// Takes a snapshot of all counters.
    ///
    /// Counters are read in an order that never over-counts an item that moves while
    /// the snapshot is taken: terminal counters (`sent`, `dropped_*`) first, then
    /// then `recorded`; `queued_now` is the difference (an item is added to `recorded`
    /// before it can reach a terminal counter, so it is never negative). Deriving it
    /// spares producers an atomic operation per push.
    pub(crate) fn snapshot(&self) -> DeliveryStats {
        let sent = self.sent.load(ACQ);
        let dropped_queue_full = self.dropped_queue_full.load(ACQ);
        let dropped_rejected = self.dropped_rejected.load(ACQ);
        let dropped_retained_overflow = self.dropped_retained_overflow.load(ACQ);
        let dropped_shutdown = self.dropped_shutdown.load(ACQ);
        let spooled = self.spooled.load(ACQ);
        let absorbed = self.absorbed.load(ACQ);
        let recovered = self.recovered.load(ACQ);
        // An item the stage used up was never for delivery: it leaves `recorded`.
        let recorded = self.recorded.load(ACQ).saturating_sub(absorbed);
        let queued_now = (recorded + recovered).saturating_sub(
            sent + dropped_queue_full
                + dropped_rejected
                + dropped_retained_overflow
                + dropped_shutdown
                + spooled,
        );
        DeliveryStats {
            recorded,
            queued_now,
            sent,
            dropped_queue_full,
            dropped_rejected,
            dropped_retained_overflow,
            dropped_shutdown,
            spooled,
            recovered,
            rejected_after_shutdown: self.rejected_after_shutdown.load(ACQ),
            failed_attempts: self.failed_attempts.load(ACQ),
            requests: self.requests.load(ACQ),
            bytes_sent: self.bytes_sent.load(ACQ),
            listener_panics: self.listener_panics.load(ACQ),
        }
    }

    /// A producer passed the shutdown check with one item (first step of a push).
    /// Returns the number of items recorded so far, this one included.
    pub(crate) fn on_record(&self) -> u64 {
        // SeqCst: part of the shutdown handshake (see `worker::Gate`).
        self.recorded.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Takes back an [`on_record`](Self::on_record) whose item did not go in (the queue was
    /// full and the producer kept it).
    pub(crate) fn on_unrecord(&self) {
        self.recorded.fetch_sub(1, Ordering::SeqCst);
    }

    /// The queue was full: the recorded item is dropped. Returns the number of items
    /// dropped for that reason so far.
    pub(crate) fn on_queue_full(&self) -> u64 {
        self.dropped_queue_full.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A recorded item found shutdown begun before it reached the queue.
    pub(crate) fn on_unqueued_shutdown_drop(&self) {
        self.dropped_shutdown.fetch_add(1, REL);
    }

    /// Items recorded so far (for the shutdown handshake).
    pub(crate) fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::SeqCst)
    }

    /// Items dropped by producers on a full queue so far (for the shutdown handshake).
    pub(crate) fn dropped_queue_full(&self) -> u64 {
        self.dropped_queue_full.load(Ordering::SeqCst)
    }

    /// A push arrived after shutdown began; the item was not recorded.
    pub(crate) fn on_rejected_after_shutdown(&self) {
        self.rejected_after_shutdown.fetch_add(1, REL);
    }

    /// `n` queued items were delivered.
    pub(crate) fn on_sent(&self, n: u64) {
        self.sent.fetch_add(n, REL);
    }

    /// `n` queued items were given up for `reason`.
    pub(crate) fn on_dropped(&self, reason: DropReason, n: u64) {
        let counter = match reason {
            DropReason::Rejected => &self.dropped_rejected,
            DropReason::RetainedOverflow => &self.dropped_retained_overflow,
            DropReason::Shutdown => &self.dropped_shutdown,
        };
        counter.fetch_add(n, REL);
    }

    /// `n` queued items were written to the spool, to be delivered by a later start.
    pub(crate) fn on_spooled(&self, n: u64) {
        self.spooled.fetch_add(n, REL);
    }

    /// `n` queued items were used up by the stage instead of being sent (the impressions
    /// worker applying the optimized or `none` mode, which counts them elsewhere): they
    /// leave `recorded`, as if never pushed.
    pub(crate) fn on_absorbed(&self, n: u64) {
        self.absorbed.fetch_add(n, REL);
    }

    /// `n` items written to the spool by an earlier run were taken up for delivery.
    pub(crate) fn on_recovered(&self, n: u64) {
        self.recovered.fetch_add(n, REL);
    }

    /// One request of `bytes` body bytes was made; `ok` tells whether it succeeded.
    pub(crate) fn on_request(&self, bytes: usize, ok: bool) {
        self.requests.fetch_add(1, REL);
        self.bytes_sent
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), REL);
        if !ok {
            self.failed_attempts.fetch_add(1, REL);
        }
    }

    /// A listener callback panicked.
    pub(crate) fn on_listener_panic(&self) {
        self.listener_panics.fetch_add(1, REL);
    }
}

/// The counters of one delivery queue (the client's impressions, counts, unique keys or
/// events, a listener's queue, an integration's), as read by [`Client::stats`](crate::Client::stats).
///
/// Every item handed to a running queue is counted in `recorded` (and every item taken up
/// from a spool directory, written there by an earlier run, in `recovered`) and ends in
/// exactly one of `sent`, `spooled` or a `dropped_*` counter; until then it is counted in
/// `queued_now`. So, once the queue is quiet (after a successful flush, or after shutdown):
///
/// `recorded + recovered == sent + spooled + dropped_queue_full + dropped_rejected
///  + dropped_retained_overflow + dropped_shutdown + queued_now`
///
/// A reading takes the terminal counters first and `recorded` last, and reports as
/// `queued_now` the items recorded and not yet resolved, so it is balanced even while items
/// move; one that reaches a terminal counter during the read is still shown as queued, never
/// counted twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Items handed to the worker by `push`: queued, dropped because the queue was
    /// full, or dropped because shutdown began during the push. Pushes refused after
    /// shutdown are not included (see `rejected_after_shutdown`), nor impressions that the
    /// impressions worker itself found deduplicated or only counted (optimized and `none`
    /// modes apply there, off the evaluating thread; see
    /// [`ImpressionStats`](crate::ImpressionStats)).
    pub recorded: u64,
    /// Items held by the worker right now: queued, being encoded or sent, or retained
    /// for a retry.
    pub queued_now: u64,
    /// Items delivered (2xx answer, or handed to a listener callback that returned).
    pub sent: u64,
    /// Items dropped by `push` because the queue was full.
    pub dropped_queue_full: u64,
    /// Items dropped because they can never be delivered: a 4xx answer other than 429,
    /// a single item still answered with 413, an encoding failure, or a listener panic.
    pub dropped_rejected: u64,
    /// Items dropped because keeping them for retry, while the endpoint failed, would have
    /// passed the retention bound (items or bytes) and no spool directory could take them.
    pub dropped_retained_overflow: u64,
    /// Items not delivered by the shutdown deadline (and pushes that raced with the
    /// start of shutdown) that no spool directory could take.
    pub dropped_shutdown: u64,
    /// Items written to the spool directory instead of being dropped (retention bound,
    /// shutdown deadline), for a later start to deliver.
    pub spooled: u64,
    /// Items written to the spool directory by an earlier run and taken up for delivery by
    /// this one (they then end in `sent`, `spooled` or a `dropped_*` counter like the rest).
    pub recovered: u64,
    /// `push` calls refused because the worker was shutting down (not in `recorded`).
    pub rejected_after_shutdown: u64,
    /// Requests that did not succeed (non-2xx answer or transport error).
    pub failed_attempts: u64,
    /// Requests made, successful or not.
    pub requests: u64,
    /// Encoded body bytes of all requests made (before optional compression).
    pub bytes_sent: u64,
    /// Listener callbacks that panicked (each also counted in `dropped_rejected`).
    pub listener_panics: u64,
}

impl DeliveryStats {
    /// Sum of all `dropped_*` counters.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_rejected
            + self.dropped_retained_overflow
            + self.dropped_shutdown
    }

    /// Whether `recorded + recovered == sent + spooled + dropped() + queued_now`: true
    /// whenever the worker is quiet.
    pub fn is_balanced(&self) -> bool {
        self.recorded + self.recovered
            == self.sent + self.spooled + self.dropped() + self.queued_now
    }

    /// Whether `sent + spooled + dropped() + queued_now <= recorded + recovered`: true for
    /// every snapshot, even one taken while items move (an item in transit between two
    /// counters may be missing from the right-hand side, never counted twice).
    pub fn is_consistent(&self) -> bool {
        self.sent + self.spooled + self.dropped() + self.queued_now
            <= self.recorded + self.recovered
    }
}
