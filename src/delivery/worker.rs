//! THE background worker: a named thread with a bounded queue, flush barrier and
//! orderly shutdown, shared by every kind of delivery (HTTP batches, listeners).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{
    Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError, bounded, select, unbounded,
};
use parking_lot::Mutex;

use super::http_stage::HttpDelivery;
use super::listener_stage::ListenerDelivery;
use super::stats::{DeliveryStats, DropReason, WorkerStats};
use super::{Batcher, DeliveryError, Endpoint, Transport, WorkerConfig};
use crate::text::{self, duration};

/// Messages that go through the item queue. Flush markers travel with the items so
/// that a flush waits exactly for what was pushed before it (FIFO barrier).
///
/// A queue of up to [`EAGER_QUEUE_BYTES`] is one array, allocated when the worker starts
/// (the fastest push). A larger one is a channel of linked blocks (31 messages each),
/// allocated as it fills and freed as the worker empties it: it costs nothing until items
/// wait in it, and a block's allocation every 31 pushes (10 to 20 ns a push, measured on
/// a 2-core VM). Either way the capacity is kept by [`Gate::queued`], which counts the
/// items in the queue (markers go in regardless).
enum Msg<T> {
    Item(T),
    /// A flush caller: its reply channel, and how long it waits (boxed: a flush is rare,
    /// and every queue slot is as large as the largest message).
    Flush(Box<(Sender<()>, Instant)>),
    /// A [`taken`](WorkerHandle::taken) caller: answered as soon as the worker reaches it,
    /// when the items before it have been handed to the stage.
    Taken(Box<Sender<()>>),
}

/// Whether a push count is a multiple of `wake_every`, with one multiplication instead of
/// a division (Hacker's Delight, 10-17): for `d = d0 * 2^k` with `d0` odd and
/// `d0 * inverse == 1` (mod 2^64), `n` is a multiple of `d` exactly when
/// `rotr(n * inverse, k) <= (2^64 - 1) / d`.
#[derive(Debug, Clone, Copy)]
struct Multiples {
    inverse: u64,
    shift: u32,
    limit: u64,
}

impl Multiples {
    /// The multiples of `d`; `d` is at least 1.
    fn of(d: u64) -> Multiples {
        let d = d.max(1);
        let shift = d.trailing_zeros();
        let odd = d >> shift;
        // Newton's iteration: `odd` is its own inverse mod 8 (3 bits), and each step
        // doubles the bits that are right: 6, 12, 24, 48, 96.
        let mut inverse = odd;
        for _ in 0..5 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        Multiples {
            inverse,
            shift,
            limit: u64::MAX / d,
        }
    }

    #[inline]
    fn contains(self, n: u64) -> bool {
        n.wrapping_mul(self.inverse).rotate_right(self.shift) <= self.limit
    }
}

/// The bytes a queued `T` takes in the channel: its message and the slot's stamp.
pub(crate) const fn slot_bytes<T>() -> usize {
    size_of::<Msg<T>>() + size_of::<usize>()
}

/// The largest queue allocated up front (see [`Msg`]): 8 MiB, about 75,000 impressions.
pub(crate) const EAGER_QUEUE_BYTES: usize = 8 << 20;

/// The channel of a queue of `capacity` items (see [`Msg`]).
fn queue_channel<T>(capacity: usize) -> (Sender<Msg<T>>, Receiver<Msg<T>>) {
    if capacity.saturating_mul(slot_bytes::<T>()) <= EAGER_QUEUE_BYTES {
        bounded(capacity)
    } else {
        unbounded()
    }
}

/// Lock-free shutdown handshake between producers and the worker thread.
///
/// A push increments `recorded` and then checks `closed` (both sequentially
/// consistent); shutdown sets `closed` before the worker reads `recorded`. So either
/// the push sees `closed` and stays out of the queue, or the worker sees the push in
/// `recorded` and keeps taking from the queue until every recorded item is accounted
/// for (taken, dropped on a full queue, or `raced`). Flush calls are tracked the same
/// way with `flushers`. Pushes pay two atomic increments and two loads, no lock.
#[derive(Debug, Default)]
struct Gate {
    closed: AtomicBool,
    /// Items in the channel: a push that finds the capacity reached takes its increment
    /// back and is refused; the worker decrements it for each item it takes.
    queued: AtomicUsize,
    /// A lazy worker emptied the queue and has no take planned: the next push tells it
    /// through [`Shared::arrived`]. The worker sets it and then reads `queued`; a push
    /// adds to `queued` and then reads it (all sequentially consistent): so either the
    /// push sees it set, or the worker sees the push and plans a take itself.
    idle: AtomicBool,
    /// `flush` and `taken` calls between their check of `closed` and the end of their
    /// send.
    flushers: AtomicUsize,
    /// Recorded pushes that found `closed` set right after recording (counted in
    /// `dropped_shutdown`, never queued).
    raced: AtomicU64,
    /// Items given up (dropped at shutdown or spooled) when the gate closed: what
    /// shutdown gives up is counted from there.
    given_up_at_close: AtomicU64,
}

/// Messages handled per wake-up before timers are looked at again.
const DRAIN_BURST: usize = 4096;

/// Part of the shutdown timeout kept back for the reply and the join.
const JOIN_MARGIN: Duration = Duration::from_millis(50);

/// Lets at most one event through per interval, from any thread, without locks.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    origin: Instant,
    interval_ms: u64,
    next_ms: AtomicU64,
}

impl RateLimiter {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            origin: Instant::now(),
            interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            next_ms: AtomicU64::new(0),
        }
    }

    /// Whether the caller may log now; true at most once per interval.
    pub(crate) fn allow(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval_ms),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
    }
}

/// What a consumer uses to report the fate of items; keeps the shared counters and
/// the worker's own count of resolved items (for flush barriers) in step.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) name: Arc<str>,
    /// Set once shutdown began: requests must give up by then.
    pub(crate) deadline: Option<Instant>,
    /// The latest deadline of the flush callers still waiting: until then someone waits
    /// for delivery, and retries are not left for later.
    pub(crate) flush_until: Option<Instant>,
    resolved: u64,
}

impl Ctx {
    /// `n` items were delivered.
    pub(crate) fn sent(&mut self, n: usize) {
        let n = count(n);
        self.stats.on_sent(n);
        self.resolved += n;
    }

    /// `n` items were given up for `reason`.
    pub(crate) fn dropped(&mut self, reason: DropReason, n: usize) {
        let n = count(n);
        self.stats.on_dropped(reason, n);
        self.resolved += n;
    }

    /// `n` items were used up by the stage instead of being sent
    /// ([`Prepared::Absorbed`](super::batch::Prepared::Absorbed)).
    pub(crate) fn absorbed(&mut self, n: usize) {
        let n = count(n);
        self.stats.on_absorbed(n);
        self.resolved += n;
    }

    /// `n` items were written to the spool.
    pub(crate) fn spooled(&mut self, n: usize) {
        let n = count(n);
        self.stats.on_spooled(n);
        self.resolved += n;
    }

    /// Whether someone waits for delivery now (shutdown, or a flush caller in time).
    pub(crate) fn urgent(&self, now: Instant) -> bool {
        self.deadline.is_some() || self.flush_until.is_some_and(|until| until > now)
    }
}

/// The counters of batches recovered from the spool: they were never pushed here, so they
/// stay out of the flush barrier's count of resolved items.
#[derive(Debug)]
pub(crate) struct Recovered<'a>(pub(crate) &'a WorkerStats);

impl Recovered<'_> {
    /// `n` items were taken up from the spool.
    pub(crate) fn taken(&self, n: u64) {
        self.0.on_recovered(n);
    }

    /// `n` recovered items were delivered.
    pub(crate) fn sent(&self, n: u64) {
        self.0.on_sent(n);
    }

    /// `n` recovered items were given up for `reason`.
    pub(crate) fn dropped(&self, reason: DropReason, n: u64) {
        self.0.on_dropped(reason, n);
    }

    /// `n` recovered items went back to the spool (still undelivered at the deadline).
    pub(crate) fn spooled(&self, n: u64) {
        self.0.on_spooled(n);
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The stage behind a worker's queue. Runs on the worker thread only.
///
/// Contract: items are resolved (through [`Ctx::sent`] / [`Ctx::dropped`]) in the order
/// they were accepted; the flush barrier relies on it.
pub(crate) trait Consumer<T>: Send {
    /// Runs once on the worker thread before anything else (the HTTP stage takes up what a
    /// spool holds for it). Does nothing by default.
    fn start(&mut self, ctx: &mut Ctx) {
        let _ = ctx;
    }
    /// Takes one item off the queue.
    fn accept(&mut self, item: T, ctx: &mut Ctx);
    /// Whether buffered items passed a flush threshold.
    fn wants_flush(&self) -> bool;
    /// Sends what is buffered, unless a retry wait is in force.
    fn flush(&mut self, ctx: &mut Ctx);
    /// When [`flush`](Consumer::flush) must run again (end of a retry wait).
    fn next_due(&self) -> Option<Instant>;
    /// Shutdown: deliver what can be delivered by `deadline`, spool (where a spool is set)
    /// or drop and count the rest.
    fn finish(&mut self, ctx: &mut Ctx, deadline: Instant);
    /// An item taken off the queue after the shutdown deadline: too late to deliver. By
    /// default dropped and counted; a stage with a spool keeps it for
    /// [`finish`](Consumer::finish) to write.
    fn late(&mut self, item: T, ctx: &mut Ctx) {
        drop(item);
        ctx.dropped(DropReason::Shutdown, 1);
    }
}

/// A background delivery worker: a thread named `"splitkit-<role>"` that owns a
/// bounded queue of items and hands them to its stage (HTTP batches or a listener).
///
/// * [`push`](Worker::push) never blocks: when the queue is full the item is dropped,
///   counted in `dropped_queue_full`, a flush is triggered and a warning is logged
///   at most once per [`warn_interval`](WorkerConfig::warn_interval).
/// * The worker flushes every [`flush_interval`](WorkerConfig::flush_interval), when
///   the buffered items pass [`flush_max_items`](WorkerConfig::flush_max_items) or
///   [`flush_max_bytes`](WorkerConfig::flush_max_bytes), and on
///   [`flush`](Worker::flush).
/// * [`shutdown`](Worker::shutdown) is idempotent: it stops accepting, delivers what
///   is queued, and joins the thread within its timeout.
///
/// # Threads and shutdown
///
/// `Worker` is the owner; [`WorkerHandle`]s are cheap producer-side clones. When the
/// last of them is dropped, the worker is shut down with
/// [`shutdown_timeout`](WorkerConfig::shutdown_timeout): dropping blocks for up to
/// that long while the queue is delivered. Call `shutdown` yourself to choose the
/// timeout and learn the result.
pub struct Worker<T: Send + 'static> {
    handle: WorkerHandle<T>,
}

/// The producer side of a [`Worker`]: `Clone + Send + Sync`, cheap to clone.
///
/// Keeps the worker alive; dropping the last handle (and the `Worker`) shuts it down.
pub struct WorkerHandle<T: Send + 'static> {
    shared: Arc<Shared<T>>,
}

impl<T: Send + 'static> Clone for WorkerHandle<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Worker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("name", &self.handle.shared.name)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> fmt::Debug for WorkerHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

struct Shared<T> {
    name: Arc<str>,
    tx: Sender<Msg<T>>,
    /// Kept so that items can never be lost inside the channel: whatever is left in
    /// it after the worker thread ended is drained and counted here.
    rx: Receiver<Msg<T>>,
    /// Flush request from a producer that found the queue full (capacity 1).
    wake: Sender<()>,
    /// Take-what-is-waiting request, sent by every `wake_every`-th push and by `flush`
    /// when the worker does not wait on the queue itself (capacity 1).
    drain: Sender<()>,
    /// An item came into a queue a lazy worker had emptied: take what waits
    /// [`WorkerConfig::take_within`] from now (capacity 1).
    arrived: Sender<()>,
    /// [`WorkerConfig::wake_every`]; 1: the worker waits on the queue.
    wake_every: u64,
    /// The push counts that wake the worker: the multiples of `wake_every`.
    wake_at: Multiples,
    /// The one stop message, carrying the worker's deadline (capacity 1).
    stop: Sender<Instant>,
    /// Disconnected when the worker thread has ended.
    done: Receiver<()>,
    gate: Arc<Gate>,
    stats: Arc<WorkerStats>,
    queue_full_warning: RateLimiter,
    capacity: usize,
    shutdown_timeout: Duration,
    thread_id: ThreadId,
    join: Mutex<Option<JoinHandle<()>>>,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts a worker that batches items with `batcher` and posts them to `endpoint`
    /// through `transport`, retrying as configured.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Spawn`] when the thread cannot be started.
    pub fn start<B: Batcher<T>>(
        config: WorkerConfig,
        batcher: B,
        transport: Arc<dyn Transport>,
        endpoint: Endpoint,
    ) -> Result<Self, DeliveryError> {
        let delivery = HttpDelivery::new(&config, batcher, transport, endpoint);
        Self::spawn(&config, delivery)
    }

    /// Starts a listener worker: `callback` is called with each item, in push order,
    /// on the worker's own thread.
    ///
    /// A panicking callback is caught and counted (`listener_panics`, and the item in
    /// `dropped_rejected`); the listener goes on with the next item. A slow callback
    /// only fills the queue: producers never wait for it, their overflow is dropped
    /// and counted. The flush settings do not apply.
    ///
    /// # Errors
    ///
    /// [`DeliveryError::Spawn`] when the thread cannot be started.
    pub fn listener<F>(config: WorkerConfig, callback: F) -> Result<Self, DeliveryError>
    where
        F: FnMut(&T) + Send + 'static,
    {
        let delivery = ListenerDelivery::new(&config, callback);
        Self::spawn(&config, delivery)
    }

    fn spawn<C: Consumer<T> + 'static>(
        config: &WorkerConfig,
        consumer: C,
    ) -> Result<Self, DeliveryError> {
        let name: Arc<str> = config.thread_name().into();
        let (tx, rx) = queue_channel(config.queue_capacity());
        let (wake_tx, wake_rx) = bounded(1);
        let (drain_tx, drain_rx) = bounded(1);
        let (arrived_tx, arrived_rx) = bounded(1);
        let (stop_tx, stop_rx) = bounded(1);
        let (done_tx, done_rx) = bounded::<()>(0);
        let gate = Arc::new(Gate::default());
        let stats = Arc::new(WorkerStats::default());
        let core = Core {
            rx: rx.clone(),
            wake: wake_rx,
            drain: drain_rx,
            arrived: arrived_rx,
            lazy: config.wake_every() > 1,
            take_within: config.take_within(),
            take_at: None,
            capacity: config.queue_capacity(),
            stop: stop_rx,
            gate: Arc::clone(&gate),
            consumer,
            ctx: Ctx {
                stats: Arc::clone(&stats),
                name: Arc::clone(&name),
                deadline: None,
                flush_until: None,
                resolved: 0,
            },
            taken: 0,
            waiters: VecDeque::new(),
            flush_interval: config.flush_interval(),
            default_shutdown: config.shutdown_timeout(),
        };
        let join = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                core.run();
                drop(done_tx);
            })
            .map_err(DeliveryError::Spawn)?;
        let shared = Shared {
            name,
            tx,
            rx,
            wake: wake_tx,
            drain: drain_tx,
            arrived: arrived_tx,
            wake_every: u64::try_from(config.wake_every()).unwrap_or(u64::MAX),
            wake_at: Multiples::of(u64::try_from(config.wake_every()).unwrap_or(u64::MAX)),
            stop: stop_tx,
            done: done_rx,
            gate,
            stats,
            queue_full_warning: RateLimiter::new(config.warn_interval()),
            capacity: config.queue_capacity(),
            shutdown_timeout: config.shutdown_timeout(),
            thread_id: join.thread().id(),
            join: Mutex::new(Some(join)),
        };
        Ok(Self {
            handle: WorkerHandle {
                shared: Arc::new(shared),
            },
        })
    }

    /// A producer handle for other threads.
    pub fn handle(&self) -> WorkerHandle<T> {
        self.handle.clone()
    }

    /// Queues `item` without blocking; see [`WorkerHandle::push`].
    pub fn push(&self, item: T) -> bool {
        self.handle.push(item)
    }

    /// Queues `item` without blocking, or hands it back if the queue is full; see
    /// [`WorkerHandle::try_push`].
    #[inline]
    pub(crate) fn try_push(&self, item: T) -> Result<bool, T> {
        self.handle.try_push(item)
    }

    /// Counts an item dropped on a full queue; see [`WorkerHandle::drop_full`].
    pub(crate) fn drop_full(&self) {
        self.handle.drop_full();
    }

    /// Waits until everything pushed before this call is resolved; see
    /// [`WorkerHandle::flush`].
    pub fn flush(&self, timeout: Duration) -> bool {
        self.handle.flush(timeout)
    }

    /// Waits until everything pushed before this call was taken off the queue; see
    /// [`WorkerHandle::taken`].
    pub(crate) fn taken(&self, deadline: Instant) -> bool {
        self.handle.taken(deadline)
    }

    /// Current counters.
    pub fn stats(&self) -> DeliveryStats {
        self.handle.stats()
    }

    /// Stops the worker: refuses further pushes (they return `false` and are counted
    /// in `rejected_after_shutdown`), delivers everything queued, retained items
    /// included, retrying with waits bounded by the time left (and one last attempt even
    /// if a server's `Retry-After` would end after the deadline), writes to the spool (or
    /// counts in `dropped_shutdown`) what could not be delivered in time, and joins the
    /// thread.
    ///
    /// Idempotent: later calls return at once once the thread was joined, or wait again
    /// (up to their own timeout) if an earlier call timed out.
    ///
    /// Returns whether everything was delivered and the thread ended and was joined
    /// within `timeout`. A thread that panicked is logged at error level and still counts
    /// as ended.
    pub fn shutdown(&self, timeout: Duration) -> bool {
        self.handle.shared.shutdown(timeout)
    }

    /// Begins shutdown without waiting: refuses further pushes and tells the worker to
    /// deliver what it holds by `deadline` (minus the margin kept for the join). A later
    /// [`shutdown`](Worker::shutdown) waits for it. Several workers told at once each get
    /// the whole time, instead of one after the other.
    pub(crate) fn stop_by(&self, deadline: Instant) {
        self.handle.shared.begin_shutdown(deadline);
    }
}

impl<T: Send + 'static> WorkerHandle<T> {
    /// Queues `item` for delivery. Never blocks and takes no lock: returns `true` when
    /// the item was queued, `false` when it was dropped because the queue is full
    /// (counted in `dropped_queue_full`; a flush is triggered) or the worker is
    /// shutting down (counted in `rejected_after_shutdown`; a push that races with
    /// the start of shutdown is counted in `recorded` and `dropped_shutdown` instead).
    ///
    /// Cost: one atomic increment, two atomic loads and the queue's own `try_send`
    /// (which wakes the worker thread if it sleeps on the queue; with
    /// [`WorkerConfig::wake_every`] above 1 only every `n`-th push wakes it).
    pub fn push(&self, item: T) -> bool {
        match self.try_push(item) {
            Ok(queued) => queued,
            Err(_) => {
                self.drop_full();
                false
            }
        }
    }

    /// [`push`](Self::push), except that an item finding the queue full is handed back,
    /// and not counted, for the producer to do something else with it (or to count it
    /// dropped with [`drop_full`](Self::drop_full)). `Ok(false)`: refused by shutdown,
    /// counted as `push` counts it.
    #[inline]
    pub(crate) fn try_push(&self, item: T) -> Result<bool, T> {
        let s = &*self.shared;
        if s.gate.closed.load(Ordering::Acquire) {
            s.stats.on_rejected_after_shutdown();
            return Ok(false);
        }
        let recorded = s.stats.on_record();
        if s.gate.closed.load(Ordering::SeqCst) {
            // Shutdown began between the two checks; the worker may have taken its
            // last look at the queue already.
            s.stats.on_unqueued_shutdown_drop();
            s.gate.raced.fetch_add(1, Ordering::SeqCst);
            return Ok(false);
        }
        // SeqCst: part of the idle handshake (see `Gate::idle`).
        if s.gate.queued.fetch_add(1, Ordering::SeqCst) >= s.capacity {
            s.gate.queued.fetch_sub(1, Ordering::AcqRel);
            s.stats.on_unrecord();
            return Err(item);
        }
        match s.tx.try_send(Msg::Item(item)) {
            Ok(()) => {
                if s.wake_every > 1 {
                    if s.wake_at.contains(recorded) {
                        // A full drain channel already holds a request: nothing to add.
                        let _ = s.drain.try_send(());
                    } else if s.gate.idle.load(Ordering::SeqCst)
                        && s.gate.idle.swap(false, Ordering::SeqCst)
                    {
                        let _ = s.arrived.try_send(());
                    }
                }
                Ok(true)
            }
            // Markers can fill an array queue that `queued` left room in.
            Err(TrySendError::Full(msg)) => {
                s.gate.queued.fetch_sub(1, Ordering::AcqRel);
                s.stats.on_unrecord();
                match msg {
                    Msg::Item(item) => Err(item),
                    // Only items are sent here.
                    Msg::Flush(_) | Msg::Taken(_) => Ok(false),
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                // Unreachable while `Shared` holds a receiver; counted all the same.
                s.gate.queued.fetch_sub(1, Ordering::AcqRel);
                s.stats.on_dropped(DropReason::Shutdown, 1);
                Ok(false)
            }
        }
    }

    /// Counts one item dropped because the queue was full (`dropped_queue_full`), logs
    /// it (at most once per warning interval) and asks the worker to flush.
    pub(crate) fn drop_full(&self) {
        let s = &*self.shared;
        s.stats.on_record();
        let dropped = s.stats.on_queue_full();
        // A full wake channel already holds a flush request: nothing to add.
        let _ = s.wake.try_send(());
        if s.queue_full_warning.allow() {
            log::warn!(
                "{}: queue full ({}), dropping new items ({dropped} dropped so far)",
                s.name,
                text::count(s.capacity, "item", "items")
            );
        }
    }

    /// Waits until everything pushed before this call has been delivered or finally
    /// dropped (and counted). Returns `false` if that did not happen within `timeout`
    /// (for instance while the endpoint fails and a retry wait is in force: a flush
    /// does not shorten retry waits).
    ///
    /// Implemented as a marker that travels through the queue behind the items.
    /// During or after shutdown it waits for the worker thread to end.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        self.barrier(deadline, |reply| Msg::Flush(Box::new((reply, deadline))))
    }

    /// Waits until the worker has taken everything pushed before this call off the queue
    /// and handed it to its stage (a [`Batcher`] has prepared it), without waiting for
    /// delivery. Returns `false` if that did not happen by `deadline`. During or after
    /// shutdown it waits for the worker thread to end.
    pub(crate) fn taken(&self, deadline: Instant) -> bool {
        self.barrier(deadline, |reply| Msg::Taken(Box::new(reply)))
    }

    /// Sends the marker `make` builds behind the items queued so far and waits for its
    /// answer by `deadline`.
    fn barrier(&self, deadline: Instant, make: impl FnOnce(Sender<()>) -> Msg<T>) -> bool {
        let s = &*self.shared;
        let gate = &s.gate;
        if gate.closed.load(Ordering::SeqCst) {
            return s.wait_ended(deadline);
        }
        gate.flushers.fetch_add(1, Ordering::SeqCst);
        if gate.closed.load(Ordering::SeqCst) {
            gate.flushers.fetch_sub(1, Ordering::SeqCst);
            return s.wait_ended(deadline);
        }
        let (reply_tx, reply_rx) = bounded(1);
        if s.wake_every > 1 {
            // A lazy worker takes what waits first, so that a full array queue makes room
            // for the marker; and again once the marker is in.
            let _ = s.drain.try_send(());
        }
        let sent = s.tx.send_deadline(make(reply_tx), deadline);
        if s.wake_every > 1 {
            let _ = s.drain.try_send(());
        }
        gate.flushers.fetch_sub(1, Ordering::SeqCst);
        match sent {
            Ok(()) => reply_rx.recv_deadline(deadline).is_ok(),
            Err(SendTimeoutError::Timeout(_) | SendTimeoutError::Disconnected(_)) => false,
        }
    }

    /// Current counters.
    pub fn stats(&self) -> DeliveryStats {
        self.shared.stats.snapshot()
    }

    /// Whether shutdown has begun (pushes are refused).
    pub fn is_closed(&self) -> bool {
        self.shared.gate.closed.load(Ordering::SeqCst)
    }
}

impl<T> Shared<T> {
    /// Closes the gate and sends the stop message (once), for the worker to be done by
    /// `deadline`.
    fn begin_shutdown(&self, deadline: Instant) {
        let given_up = self.given_up();
        if !self.gate.closed.swap(true, Ordering::SeqCst) {
            self.gate
                .given_up_at_close
                .store(given_up, Ordering::SeqCst);
            let timeout = deadline.saturating_duration_since(Instant::now());
            let worker_deadline = deadline
                .checked_sub(JOIN_MARGIN.min(timeout / 10))
                .unwrap_or(deadline);
            // Capacity 1 and sent once: cannot be full; disconnected means ended.
            let _ = self.stop.try_send(worker_deadline);
        }
    }

    fn shutdown(&self, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        self.begin_shutdown(deadline);
        if thread::current().id() == self.thread_id {
            // Dropped from inside the worker (e.g. by its own callback): it stops
            // after the current message; it cannot wait for itself.
            return false;
        }
        if !self.wait_ended(deadline) {
            log::warn!(
                "{}: did not stop within {}; the thread is left running",
                self.name,
                duration(timeout)
            );
            return false;
        }
        let Some(mut join) = self.join.try_lock_until(deadline) else {
            return false;
        };
        if let Some(handle) = join.take() {
            match handle.join() {
                Ok(()) => log::debug!("{}: stopped", self.name),
                Err(_) => log::error!("{}: worker thread panicked", self.name),
            }
        }
        drop(join);
        self.drain_leftovers();
        // Ended in time; and delivered everything, unless shutdown had to give some up.
        self.stats.snapshot().queued_now == 0
            && self.given_up() == self.gate.given_up_at_close.load(Ordering::SeqCst)
    }

    /// Items given up by a shutdown so far: dropped at the deadline, or written to the
    /// spool (pushes refused while the gate closed are the producers' to know: `push`
    /// returned false).
    fn given_up(&self) -> u64 {
        let s = self.stats.snapshot();
        (s.dropped_shutdown + s.spooled).saturating_sub(self.gate.raced.load(Ordering::SeqCst))
    }

    /// Whether the worker thread has ended by `deadline`.
    fn wait_ended(&self, deadline: Instant) -> bool {
        matches!(
            self.done.recv_deadline(deadline),
            Err(RecvTimeoutError::Disconnected) | Ok(())
        )
    }

    /// Counts items that reached the channel after the worker's last look at it.
    /// Only a producer preempted for the whole shutdown window can leave one.
    fn drain_leftovers(&self) {
        let mut items = 0;
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Item(_) => {
                    items += 1;
                    self.gate.queued.fetch_sub(1, Ordering::AcqRel);
                }
                Msg::Flush(flush) => {
                    let _ = flush.0.send(());
                }
                Msg::Taken(reply) => {
                    let _ = reply.send(());
                }
            }
        }
        if items > 0 {
            self.stats.on_dropped(DropReason::Shutdown, items);
            log::warn!(
                "{}: {} arrived after shutdown",
                self.name,
                text::count(items, "item", "items")
            );
        }
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        self.shutdown(self.shutdown_timeout);
        self.drain_leftovers();
    }
}

fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// The worker thread's state.
struct Core<T, C> {
    rx: Receiver<Msg<T>>,
    wake: Receiver<()>,
    drain: Receiver<()>,
    arrived: Receiver<()>,
    /// The worker does not wait on `rx`: producers and timers wake it through `drain`
    /// and `arrived`.
    lazy: bool,
    /// [`WorkerConfig::take_within`].
    take_within: Duration,
    /// When a lazy worker takes what waits next, if it has items to take before its
    /// timers.
    take_at: Option<Instant>,
    capacity: usize,
    stop: Receiver<Instant>,
    gate: Arc<Gate>,
    consumer: C,
    ctx: Ctx,
    /// Items taken off the queue so far.
    taken: u64,
    /// Flush callers, each waiting for the first `target` items to be resolved (how long
    /// the latest of them waits is [`Ctx::flush_until`]).
    waiters: VecDeque<(u64, Sender<()>)>,
    flush_interval: Duration,
    default_shutdown: Duration,
}

impl<T, C: Consumer<T>> Core<T, C> {
    fn run(mut self) {
        self.consumer.start(&mut self.ctx);
        if self.lazy {
            self.plan_take();
        }
        let mut next_tick = Instant::now() + self.flush_interval;
        loop {
            let now = Instant::now();
            if self.take_at.is_some_and(|at| at <= now) {
                self.take_waiting();
            }
            if now >= next_tick {
                if self.lazy {
                    self.take_waiting();
                }
                self.consumer.flush(&mut self.ctx);
                next_tick = Instant::now() + self.flush_interval;
            } else if self.consumer.next_due().is_some_and(|due| due <= now) {
                self.consumer.flush(&mut self.ctx);
            }
            self.answer_waiters();
            let wake_at = [self.consumer.next_due(), self.take_at]
                .into_iter()
                .flatten()
                .fold(next_tick, Instant::min);
            let timeout = wake_at.saturating_duration_since(Instant::now());
            let stop_at = if self.lazy {
                self.wait_lazily(timeout)
            } else {
                self.wait_on_queue(timeout)
            };
            if let Some(deadline) = stop_at {
                self.stop(deadline);
                return;
            }
        }
    }

    /// Waits for an item, a wake-up, the stop message or `timeout`; handles what came.
    /// Returns the deadline when the worker must stop.
    fn wait_on_queue(&mut self, timeout: Duration) -> Option<Instant> {
        select! {
            recv(self.rx) -> msg => match msg {
                Ok(msg) => {
                    self.handle(msg);
                    self.drain_burst();
                    None
                }
                Err(_) => Some(self.stop_deadline()),
            },
            recv(self.wake) -> msg => self.on_flush_request(msg.is_ok()),
            recv(self.stop) -> msg => Some(msg.unwrap_or_else(|_| self.default_deadline())),
            default(timeout) => None,
        }
    }

    /// A producer found the queue full (`ok`), or the wake channel is gone: take what
    /// waits and flush, or stop.
    fn on_flush_request(&mut self, ok: bool) -> Option<Instant> {
        if !ok {
            return Some(self.stop_deadline());
        }
        if self.lazy {
            self.take_waiting();
        } else {
            self.drain_burst();
        }
        self.consumer.flush(&mut self.ctx);
        None
    }

    /// [`wait_on_queue`](Self::wait_on_queue) for a lazy worker: items wait in the queue
    /// until a drain request, a flush request, the stop message or `timeout`.
    fn wait_lazily(&mut self, timeout: Duration) -> Option<Instant> {
        select! {
            recv(self.drain) -> msg => match msg {
                Ok(()) => {
                    self.take_waiting();
                    None
                }
                Err(_) => Some(self.stop_deadline()),
            },
            recv(self.arrived) -> msg => match msg {
                Ok(()) => {
                    let at = deadline_after(self.take_within);
                    self.take_at.get_or_insert(at);
                    None
                }
                Err(_) => Some(self.stop_deadline()),
            },
            recv(self.wake) -> msg => self.on_flush_request(msg.is_ok()),
            recv(self.stop) -> msg => Some(msg.unwrap_or_else(|_| self.default_deadline())),
            default(timeout) => None,
        }
    }

    /// Takes what waits in the queue, at most one queue's worth (so that a producer
    /// faster than delivery cannot keep the worker from its timers).
    fn take_waiting(&mut self) {
        let mut left = self.capacity.div_ceil(DRAIN_BURST).max(1);
        while left > 0 && !self.rx.is_empty() {
            self.drain_burst();
            left -= 1;
        }
        self.answer_waiters();
        self.plan_take();
    }

    /// After a lazy worker took what waited: the next push is to tell it, unless items
    /// are still to be taken (left by the bound above, or pushed meanwhile), which it
    /// then takes [`WorkerConfig::take_within`] from now.
    fn plan_take(&mut self) {
        self.gate.idle.store(true, Ordering::SeqCst);
        self.take_at =
            (self.gate.queued.load(Ordering::SeqCst) > 0).then(|| deadline_after(self.take_within));
    }

    /// The deadline of the stop message, or the default one if the owner vanished
    /// without sending it.
    fn stop_deadline(&self) -> Instant {
        self.stop
            .try_recv()
            .unwrap_or_else(|_| self.default_deadline())
    }

    fn default_deadline(&self) -> Instant {
        deadline_after(self.default_shutdown)
    }

    fn handle(&mut self, msg: Msg<T>) {
        match msg {
            Msg::Item(item) => {
                self.taken += 1;
                self.gate.queued.fetch_sub(1, Ordering::AcqRel);
                self.consumer.accept(item, &mut self.ctx);
                if self.consumer.wants_flush() {
                    self.consumer.flush(&mut self.ctx);
                }
            }
            Msg::Flush(flush) => {
                let (reply, until) = *flush;
                self.waiters.push_back((self.taken, reply));
                self.ctx.flush_until = self.ctx.flush_until.max(Some(until));
                self.consumer.flush(&mut self.ctx);
            }
            Msg::Taken(reply) => {
                // The caller may have timed out and gone: nothing to tell then.
                let _ = reply.send(());
            }
        }
    }

    fn drain_burst(&mut self) {
        for _ in 0..DRAIN_BURST {
            match self.rx.try_recv() {
                Ok(msg) => self.handle(msg),
                Err(_) => break,
            }
        }
        self.answer_waiters();
    }

    fn answer_waiters(&mut self) {
        while let Some((target, _)) = self.waiters.front() {
            if *target > self.ctx.resolved {
                break;
            }
            if let Some((_, reply)) = self.waiters.pop_front() {
                // The caller may have timed out and gone: nothing to tell then.
                let _ = reply.send(());
            }
        }
        if self.waiters.is_empty() {
            self.ctx.flush_until = None;
        }
    }

    fn stop(mut self, deadline: Instant) {
        self.ctx.deadline = Some(deadline);
        // Normally set by `shutdown` already; set here too for the case where the
        // owner vanished without one.
        self.gate.closed.store(true, Ordering::SeqCst);
        // Take everything queued, including the items of producers that passed the
        // gate before it closed: wait until every recorded item is accounted for.
        loop {
            self.take_queued_for_shutdown(deadline);
            if self.producers_settled() || Instant::now() >= deadline {
                break;
            }
            thread::yield_now();
        }
        self.take_queued_for_shutdown(deadline);
        self.consumer.finish(&mut self.ctx, deadline);
        self.answer_waiters();
        // Everything is resolved now; answer anyone left regardless.
        for (_, reply) in self.waiters.drain(..) {
            let _ = reply.send(());
        }
    }

    /// Whether no producer is between the gate and the queue any more (see [`Gate`]).
    ///
    /// `recorded` is read last: a producer that shows up in `dropped_queue_full` or
    /// `raced` was recorded before, so the sum can only catch up with `recorded` once
    /// every item recorded before the gate closed has been taken or counted.
    fn producers_settled(&self) -> bool {
        let accounted = self.taken
            + self.ctx.stats.dropped_queue_full()
            + self.gate.raced.load(Ordering::SeqCst);
        let recorded = self.ctx.stats.recorded();
        accounted >= recorded && self.gate.flushers.load(Ordering::SeqCst) == 0
    }

    /// Handles what is queued; items met after the deadline are dropped and counted.
    fn take_queued_for_shutdown(&mut self, deadline: Instant) {
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                Msg::Item(item) if Instant::now() >= deadline => {
                    self.taken += 1;
                    self.gate.queued.fetch_sub(1, Ordering::AcqRel);
                    self.consumer.late(item, &mut self.ctx);
                }
                msg => self.handle(msg),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::WorkerConfigBuilder;

    /// A listener worker configured by `config` that sends each item to the receiver.
    fn sending_listener(config: WorkerConfigBuilder) -> (Worker<u32>, Receiver<u32>) {
        let (tx, rx) = bounded(100);
        let worker = Worker::listener(
            config.build().unwrap_or_else(|e| panic!("{e}")),
            move |n: &u32| {
                let _ = tx.send(*n);
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        (worker, rx)
    }

    #[test]
    fn handles_are_send_and_sync() {
        fn assert_send_sync<X: Send + Sync>() {}
        assert_send_sync::<Worker<String>>();
        assert_send_sync::<WorkerHandle<String>>();
    }

    #[test]
    fn queue_slots_cost_no_more_than_the_item_plus_a_word() {
        // A flush marker shares the item's slot; the enum tag fits in a niche of
        // most item types, else costs one word.
        type Item = (String, String, String, String, u64, i64);
        assert!(std::mem::size_of::<Msg<Item>>() <= std::mem::size_of::<Item>() + 8);
        assert_eq!(
            std::mem::size_of::<Msg<String>>(),
            std::mem::size_of::<String>()
        );
    }

    #[test]
    fn rate_limiter_lets_one_through_per_interval() {
        let limiter = RateLimiter::new(Duration::from_secs(3600));
        assert!(limiter.allow());
        assert!(!limiter.allow());
        assert!(!limiter.allow());
        let always = RateLimiter::new(Duration::ZERO);
        assert!(always.allow());
        assert!(always.allow());
    }

    #[test]
    fn listener_flush_answers_after_items_before_it() {
        let (worker, rx) = sending_listener(WorkerConfig::builder("unit-listener"));
        for n in 0..50 {
            assert!(worker.push(n));
        }
        assert!(worker.flush(Duration::from_secs(5)));
        let seen: Vec<u32> = rx.try_iter().collect();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert!(worker.shutdown(Duration::from_secs(5)));
    }

    #[test]
    fn taken_answers_once_a_lazy_worker_took_the_items_before_it() {
        let (worker, rx) = sending_listener(
            WorkerConfig::builder("unit-taken")
                .queue_capacity(1000)
                .wake_every(1000)
                .take_within(Duration::from_secs(3600))
                .flush_interval(Duration::from_secs(3600)),
        );
        for n in 0..10 {
            assert!(worker.push(n));
        }
        // Lazy: nothing woke the worker yet.
        thread::sleep(Duration::from_millis(50));
        assert!(rx.is_empty());
        assert!(worker.taken(Instant::now() + Duration::from_secs(5)));
        let seen: Vec<u32> = rx.try_iter().collect();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        assert!(worker.shutdown(Duration::from_secs(5)));
        // After shutdown: waits for the thread, which has ended.
        assert!(worker.taken(Instant::now() + Duration::from_secs(1)));
    }

    #[test]
    fn a_queue_too_large_to_allocate_up_front_still_holds_its_capacity() {
        type Big = [u8; 4096];
        let capacity = EAGER_QUEUE_BYTES / slot_bytes::<Big>() + 1;
        let (started_tx, started) = bounded(1);
        let (release, released) = bounded::<()>(1);
        let worker = Worker::listener(
            WorkerConfig::builder("unit-lazy-queue")
                .queue_capacity(capacity)
                .build()
                .unwrap_or_else(|e| panic!("{e}")),
            move |item: &Big| {
                if item[0] == 1 {
                    // The worker holds the first item until told: it takes no more.
                    let _ = started_tx.send(());
                    let _ = released.recv();
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(worker.push([1; 4096]));
        assert!(started.recv_timeout(Duration::from_secs(10)).is_ok());
        for _ in 0..capacity {
            assert!(worker.push([0; 4096]));
        }
        assert!(!worker.push([0; 4096]), "the queue is full");
        assert_eq!(worker.stats().dropped_queue_full, 1);
        let _ = release.send(());
        assert!(worker.flush(Duration::from_secs(10)));
        assert!(worker.push([0; 4096]), "room again");
        assert!(worker.shutdown(Duration::from_secs(10)));
        let s = worker.stats();
        assert_eq!(
            (s.recorded, s.sent),
            (capacity as u64 + 3, capacity as u64 + 2)
        );
    }

    #[test]
    fn multiples_are_told_without_dividing() {
        let divisors = (1..=300u64).chain([
            1024,
            4096,
            5000,
            65_536,
            1 << 40,
            3 << 40,
            u64::MAX / 3,
            u64::MAX,
        ]);
        for d in divisors {
            let m = Multiples::of(d);
            let near = |x: u64| x.saturating_sub(3)..=x.saturating_add(3);
            let counts = (0..2_000u64)
                .chain(near(d))
                .chain(near(d.saturating_mul(2)))
                .chain(near(d.saturating_mul(1000)))
                .chain(near(u64::MAX - 3));
            for n in counts {
                assert_eq!(m.contains(n), n % d == 0, "{n} % {d}");
            }
        }
    }

    #[test]
    fn a_lazy_worker_takes_items_every_nth_push_on_flush_and_at_shutdown() {
        let (worker, rx) = sending_listener(
            WorkerConfig::builder("unit-lazy")
                .queue_capacity(8)
                .wake_every(3)
                .take_within(Duration::from_secs(3600))
                .flush_interval(Duration::from_secs(3600)),
        );
        let seen = |want: usize| {
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            while got.len() < want && Instant::now() < deadline {
                got.extend(rx.recv_timeout(Duration::from_millis(10)));
            }
            got
        };
        assert!(worker.push(0) && worker.push(1));
        thread::sleep(Duration::from_millis(50));
        assert!(rx.try_recv().is_err(), "two pushes wait in the queue");
        assert!(worker.push(2), "the third push wakes the worker");
        assert_eq!(seen(3), vec![0, 1, 2]);
        assert!(worker.push(3));
        assert!(worker.flush(Duration::from_secs(5)));
        assert_eq!(rx.try_recv().ok(), Some(3), "flush takes what waits");
        // A queue filled up to its capacity is still flushed.
        for n in 4..12 {
            assert!(worker.push(n));
        }
        assert!(worker.flush(Duration::from_secs(5)));
        assert_eq!(seen(8), (4..12).collect::<Vec<_>>());
        assert!(worker.push(12));
        assert!(worker.shutdown(Duration::from_secs(5)));
        assert_eq!(rx.try_recv().ok(), Some(12), "shutdown delivers what waits");
        let s = worker.stats();
        assert_eq!((s.recorded, s.sent, s.queued_now), (13, 13, 0));
    }

    #[test]
    fn a_lazy_worker_takes_what_waits_within_its_period_however_few_come() {
        let (worker, rx) = sending_listener(
            WorkerConfig::builder("unit-take-within")
                .queue_capacity(1000)
                .wake_every(1000)
                .take_within(Duration::from_millis(2))
                .flush_interval(Duration::from_secs(3600)),
        );
        // Rounds of a few pushes from two threads, each round fewer than `wake_every`
        // and the worker idle in between: every item is taken with no flush. The rounds
        // repeat the handshake between a worker going idle and pushes coming in.
        let mut next = 0u32;
        for round in 0..200u32 {
            let per_thread = 1 + round % 7;
            let first = next;
            next += 2 * per_thread;
            thread::scope(|scope| {
                for t in 0..2 {
                    let handle = worker.handle();
                    scope.spawn(move || {
                        let start = first + t * per_thread;
                        for n in start..start + per_thread {
                            assert!(handle.push(n));
                        }
                    });
                }
            });
            let mut got: Vec<u32> = Vec::new();
            while got.len() < (2 * per_thread) as usize {
                match rx.recv_timeout(Duration::from_secs(10)) {
                    Ok(n) => got.push(n),
                    Err(_) => panic!("round {round}: only {got:?} taken, no flush asked"),
                }
            }
            got.sort_unstable();
            assert_eq!(got, (first..next).collect::<Vec<_>>(), "round {round}");
        }
        assert_eq!(worker.stats().queued_now, 0);
        assert!(worker.shutdown(Duration::from_secs(5)));
    }
}
