//! The HTTP stage of a worker: batching, posting, classifying answers, retrying.
//!
//! Retention is bounded by memory, not by attempts: a batch that failed for a transient
//! reason waits (with every later batch behind it, in order) until it is delivered, or until
//! keeping it would pass the retention bound, when the oldest batches go to the spool (where
//! one is set) or are dropped and counted. Retry waits grow with backoff up to the retry cap
//! (the flush interval at most), so that the endpoint's recovery is noticed within one flush
//! period; while someone waits (a flush caller, shutdown) they are at most
//! [`URGENT_RETRY_WAIT`] apart.

use std::collections::VecDeque;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::spool::{Claimed, Spool};
use super::stats::DropReason;
use super::worker::{Consumer, Ctx, RateLimiter, Recovered};
use super::{Batcher, Endpoint, Prepared, Request, Transport, TransportError, WorkerConfig};
use crate::backoff::Backoff;
use crate::text;

/// Size assumed for an item whose `estimate_size` panicked.
const FALLBACK_ITEM_SIZE: usize = 1024;

/// Longest wait between two attempts while a flush caller or shutdown waits for delivery
/// (a server's `Retry-After` is still honoured).
const URGENT_RETRY_WAIT: Duration = Duration::from_secs(1);

/// Time kept before the shutdown deadline for the last attempt, when the retry wait would
/// end after it.
const FINAL_ATTEMPT_ROOM: Duration = Duration::from_millis(100);

/// Time kept back before the shutdown deadline to write what is left to the spool.
const SPOOL_MARGIN: Duration = Duration::from_millis(100);

/// A sealed batch waiting to be (re)sent.
#[derive(Debug)]
struct Batch<T> {
    items: Vec<T>,
    /// Taken up from the spool: its body as written there (and `items` is empty).
    spooled: Option<Claimed>,
    /// Items in the batch.
    count: usize,
    bytes: usize,
}

impl<T> Batch<T> {
    fn recovered(claimed: Claimed) -> Batch<T> {
        Batch {
            items: Vec::new(),
            count: usize::try_from(claimed.items).unwrap_or(usize::MAX),
            bytes: claimed.body.len(),
            spooled: Some(claimed),
        }
    }
}

/// What one request attempt decided for the batch at the head of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    /// Can never succeed; drop it.
    Rejected,
    /// 413: split it.
    TooLarge,
    /// 429, 408, 5xx or a network failure: wait and retry.
    Retry(Option<Duration>),
}

/// Batches items and posts them in order; while the endpoint fails, everything
/// waits behind the head batch (one retry clock per endpoint), bounded by
/// `max_retained_items` and `max_retained_bytes`.
pub(crate) struct HttpDelivery<T, B> {
    batcher: B,
    transport: Arc<dyn Transport>,
    endpoint: Endpoint,
    flush_max_items: usize,
    flush_max_bytes: usize,
    batch_max_items: usize,
    batch_max_bytes: usize,
    max_retained_items: usize,
    max_retained_bytes: usize,
    backoff: Backoff,
    spool: Option<Arc<Spool>>,
    /// The batch being filled.
    open: Vec<T>,
    /// The emptied item vector of the last batch resolved, kept for the next open batch so
    /// that a steady stream of batches does not grow a new vector each time.
    spare: Vec<T>,
    open_bytes: usize,
    /// Sealed batches, oldest first.
    pending: VecDeque<Batch<T>>,
    pending_items: usize,
    pending_bytes: usize,
    /// While set, no request is made before this instant.
    retry_at: Option<Instant>,
    /// The current wait is the server's (`Retry-After`): even urgency does not shorten it.
    server_wait: bool,
    /// Reused request body buffer.
    body: Vec<u8>,
    warning: RateLimiter,
}

impl<T, B: Batcher<T>> HttpDelivery<T, B> {
    /// [`Batcher::prepare`], a panic caught and logged (the item is then sent as it is).
    /// Returns whether the item is to be sent; one the batcher absorbed is counted so.
    fn prepare(&mut self, item: &mut T, ctx: &mut Ctx) -> bool {
        let prepared = catch_unwind(AssertUnwindSafe(|| self.batcher.prepare(item)))
            .unwrap_or_else(|_| {
                log::error!("{}: prepare panicked; the item is sent as it is", ctx.name);
                Prepared::Send
            });
        if prepared == Prepared::Absorbed {
            ctx.absorbed(1);
        }
        prepared == Prepared::Send
    }

    pub(crate) fn new(
        config: &WorkerConfig,
        batcher: B,
        transport: Arc<dyn Transport>,
        endpoint: Endpoint,
    ) -> Self {
        Self {
            batcher,
            transport,
            endpoint,
            flush_max_items: config.flush_max_items(),
            flush_max_bytes: config.flush_max_bytes(),
            batch_max_items: config.batch_max_items(),
            batch_max_bytes: config.batch_max_bytes(),
            max_retained_items: config.max_retained_items(),
            max_retained_bytes: config.max_retained_bytes(),
            backoff: Backoff::new(config.backoff_base(), config.retry_cap()),
            spool: config.spool().cloned(),
            open: Vec::new(),
            spare: Vec::new(),
            open_bytes: 0,
            pending: VecDeque::new(),
            pending_items: 0,
            pending_bytes: 0,
            retry_at: None,
            server_wait: false,
            body: Vec::new(),
            warning: RateLimiter::new(config.warn_interval()),
        }
    }

    fn waiting(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| at > now)
    }

    /// While someone waits (a flush caller, shutdown), a backoff wait longer than
    /// [`URGENT_RETRY_WAIT`] is cut to it (a server's `Retry-After` is left as it is).
    fn cut_wait(&mut self, ctx: &Ctx, now: Instant) {
        if ctx.urgent(now)
            && !self.server_wait
            && let Some(at) = self.retry_at
        {
            self.retry_at = Some(at.min(now + URGENT_RETRY_WAIT));
        }
    }

    /// Adds an item of estimated `size` to the open batch; true when that filled it.
    fn push_open(&mut self, item: T, size: usize) -> bool {
        self.open.push(item);
        self.open_bytes = self.open_bytes.saturating_add(size);
        self.open.len() >= self.batch_max_items || self.open_bytes >= self.batch_max_bytes
    }

    /// Moves the open batch to the pending queue.
    fn seal(&mut self, ctx: &mut Ctx) {
        if self.open.is_empty() {
            return;
        }
        self.seal_open();
        self.enforce_retained_bound(ctx);
    }

    /// Moves the open batch to the pending queue, without the retention check.
    fn seal_open(&mut self) {
        let next = match mem::take(&mut self.spare) {
            spare if spare.capacity() > 0 => spare,
            _ => Vec::with_capacity(self.batch_max_items.min(1024)),
        };
        let items = mem::replace(&mut self.open, next);
        let bytes = mem::take(&mut self.open_bytes);
        self.pending_items += items.len();
        self.pending_bytes += bytes;
        self.pending.push_back(Batch {
            count: items.len(),
            items,
            spooled: None,
            bytes,
        });
    }

    fn over_retention_bound(&self) -> bool {
        self.pending_items > self.max_retained_items || self.pending_bytes > self.max_retained_bytes
    }

    /// While the endpoint fails, moves the oldest batches beyond the retention bound to the
    /// spool, or drops them.
    fn enforce_retained_bound(&mut self, ctx: &mut Ctx) {
        if self.retry_at.is_none() {
            return;
        }
        let mut dropped = 0;
        while self.over_retention_bound() && self.pending.len() > 1 {
            let Some(batch) = self.pop_head() else { break };
            if !self.give_up(batch, ctx, DropReason::RetainedOverflow) {
                dropped += 1;
            }
        }
        if let Some(spool) = &self.spool {
            spool.sync();
        }
        if dropped > 0 && self.warning.allow() {
            log::warn!(
                "{}: POST {} keeps failing; dropped the oldest retained items (at most {} or {} are kept)",
                ctx.name,
                self.endpoint.path(),
                text::count(self.max_retained_items, "item", "items"),
                text::count(self.max_retained_bytes, "byte", "bytes"),
            );
        }
    }

    fn pop_head(&mut self) -> Option<Batch<T>> {
        let batch = self.pending.pop_front()?;
        self.pending_items -= batch.count;
        self.pending_bytes -= batch.bytes;
        Some(batch)
    }

    /// Gives up on a batch that could not be delivered (retention bound, shutdown): to the
    /// spool if one is set and takes it, else dropped and counted for `reason`. True when
    /// it was spooled.
    fn give_up(&mut self, batch: Batch<T>, ctx: &mut Ctx, reason: DropReason) -> bool {
        let recovered = Recovered(&ctx.stats);
        let Some(spool) = self.spool.clone() else {
            match batch.spooled {
                Some(_) => recovered.dropped(reason, batch.count as u64),
                None => ctx.dropped(reason, batch.count),
            }
            return false;
        };
        if let Some(claimed) = batch.spooled {
            // Still in its file: releasing the claim leaves it for a later start.
            recovered.spooled(claimed.items);
            return true;
        }
        let written = encode(&self.batcher, &batch.items, &mut self.body).and_then(|()| {
            spool
                .write(
                    self.endpoint.path(),
                    self.endpoint.headers(),
                    batch.count as u64,
                    &self.body,
                )
                .map_err(|e| e.to_string())
        });
        match written {
            Ok(()) => {
                ctx.spooled(batch.count);
                true
            }
            Err(why) => {
                if self.warning.allow() {
                    log::warn!(
                        "{}: {} for {} not spooled ({why}); dropped",
                        ctx.name,
                        text::count(batch.count, "item", "items"),
                        self.endpoint.path()
                    );
                }
                ctx.dropped(reason, batch.count);
                false
            }
        }
    }

    /// Sends pending batches in order until the queue is empty or a retry wait
    /// begins. With `ignore_wait`, the head is tried even during a retry wait.
    fn send_pending(&mut self, ctx: &mut Ctx, ignore_wait: bool) {
        while !self.pending.is_empty() {
            let now = Instant::now();
            if !ignore_wait && self.waiting(now) {
                break;
            }
            if ctx.deadline.is_some_and(|d| now >= d) {
                break;
            }
            // The wait is over (or ignored): a failure below starts a new one.
            self.retry_at = None;
            match self.attempt_head(ctx) {
                Outcome::Delivered => {
                    let recovering = self.backoff.attempts() > 0;
                    self.backoff.reset();
                    if let Some(batch) = self.pop_head() {
                        self.resolve(batch, ctx, None);
                    }
                    if recovering && ctx.deadline.is_none() {
                        // The endpoint is back: what the outage sent to the spool goes next.
                        self.recover(ctx, true);
                    }
                }
                Outcome::Rejected => {
                    if let Some(batch) = self.pop_head() {
                        self.resolve(batch, ctx, Some(DropReason::Rejected));
                    }
                }
                Outcome::TooLarge => self.split_head(ctx),
                Outcome::Retry(retry_after) => {
                    self.schedule_retry(ctx, now, retry_after);
                    break;
                }
            }
        }
        self.enforce_retained_bound(ctx);
    }

    /// A batch is done: delivered (`None`) or dropped for `reason`. A recovered batch's
    /// spool file is removed either way.
    fn resolve(&mut self, batch: Batch<T>, ctx: &mut Ctx, dropped: Option<DropReason>) {
        let mut items = batch.items;
        items.clear();
        if items.capacity() > self.spare.capacity() {
            self.spare = items;
        }
        match batch.spooled {
            Some(claimed) => {
                let recovered = Recovered(&ctx.stats);
                match dropped {
                    None => recovered.sent(claimed.items),
                    Some(reason) => recovered.dropped(reason, claimed.items),
                }
                if let Some(spool) = &self.spool {
                    spool.remove(claimed);
                }
            }
            None => match dropped {
                None => ctx.sent(batch.count),
                Some(reason) => ctx.dropped(reason, batch.count),
            },
        }
    }

    /// 413: replaces the head with its two halves, or drops a single item (or a batch
    /// recovered from the spool, whose items are no longer apart).
    fn split_head(&mut self, ctx: &mut Ctx) {
        let Some(mut batch) = self.pop_head() else {
            return;
        };
        let len = batch.items.len();
        if len <= 1 {
            if self.warning.allow() {
                log::warn!(
                    "{}: POST {} answered 413 for {}; dropping it",
                    ctx.name,
                    self.endpoint.path(),
                    if batch.spooled.is_some() {
                        "a batch from the spool"
                    } else {
                        "a single item"
                    }
                );
            }
            self.resolve(batch, ctx, Some(DropReason::Rejected));
            return;
        }
        let second_items = batch.items.split_off(len / 2);
        let second_bytes = batch.bytes * second_items.len() / len;
        let first = Batch {
            bytes: batch.bytes - second_bytes,
            count: batch.items.len(),
            items: batch.items,
            spooled: None,
        };
        let second = Batch {
            count: second_items.len(),
            items: second_items,
            bytes: second_bytes,
            spooled: None,
        };
        self.pending_items += len;
        self.pending_bytes += first.bytes + second.bytes;
        self.pending.push_front(second);
        self.pending.push_front(first);
    }

    fn schedule_retry(&mut self, ctx: &mut Ctx, now: Instant, retry_after: Option<Duration>) {
        let mut delay = self.backoff.next_delay(retry_after);
        self.server_wait = retry_after.is_some();
        if !self.server_wait && ctx.urgent(now) {
            delay = delay.min(URGENT_RETRY_WAIT);
        }
        self.retry_at = Some(now.checked_add(delay).unwrap_or(now));
        log::debug!(
            "{}: POST {} failed ({} in a row), retrying in {}",
            ctx.name,
            self.endpoint.path(),
            text::count(self.backoff.attempts(), "failure", "failures"),
            text::duration(delay)
        );
    }

    /// Encodes (or takes from the spool) the head batch's body, posts it, counts the
    /// request, and classifies the answer.
    fn attempt_head(&mut self, ctx: &Ctx) -> Outcome {
        let Some(head) = self.pending.front() else {
            return Outcome::Delivered;
        };
        let (body, headers): (&[u8], &[(String, String)]) = match &head.spooled {
            Some(claimed) => (&claimed.body, &claimed.headers),
            None => {
                if let Err(why) = encode(&self.batcher, &head.items, &mut self.body) {
                    log::warn!(
                        "{}: dropping {} for {}: {why}",
                        ctx.name,
                        text::count(head.count, "item", "items"),
                        self.endpoint.path(),
                    );
                    return Outcome::Rejected;
                }
                (&self.body, self.endpoint.headers())
            }
        };
        let request = Request {
            path: self.endpoint.path(),
            body,
            headers,
            deadline: ctx.deadline,
        };
        let transport = &self.transport;
        let result = catch_unwind(AssertUnwindSafe(|| transport.post(&request)))
            .unwrap_or_else(|_| Err(TransportError::Io("transport panicked".into())));
        let outcome = classify(&result, ctx, &self.endpoint, head.count, &self.warning);
        ctx.stats
            .on_request(body.len(), outcome == Outcome::Delivered);
        outcome
    }

    /// Takes up the batches a spool holds for this endpoint (older than anything pending,
    /// so they go first): at start, and when the endpoint answers again after failures.
    fn recover(&mut self, ctx: &mut Ctx, recovering: bool) {
        let Some(spool) = &self.spool else {
            return;
        };
        let claimed = spool.claim(self.endpoint.path());
        if claimed.is_empty() {
            return;
        }
        let items: u64 = claimed.iter().map(|c| c.items).sum();
        log::info!(
            "{}: delivering {} from the spool {}{}",
            ctx.name,
            text::count(items, "item", "items"),
            spool.dir().display(),
            if recovering {
                ", now that the endpoint answers again"
            } else {
                " first"
            }
        );
        for c in claimed.into_iter().rev() {
            Recovered(&ctx.stats).taken(c.items);
            let batch = Batch::recovered(c);
            self.pending_items += batch.count;
            self.pending_bytes += batch.bytes;
            self.pending.push_front(batch);
        }
        if !recovering {
            // Due at once: the first turn of the worker sends them.
            self.retry_at = Some(Instant::now());
        }
    }
}

/// Encodes `items` into `body` (cleared first); `Err` says why it could not be: the
/// encoder's error with its cause, or the encoder's panic.
fn encode<T, B: Batcher<T>>(batcher: &B, items: &[T], body: &mut Vec<u8>) -> Result<(), String> {
    body.clear();
    match catch_unwind(AssertUnwindSafe(|| batcher.encode(items, body))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        }),
        Err(_) => Err("the batch encoder panicked".into()),
    }
}

/// What an answer (or a transport error) means for the batch.
fn classify(
    result: &Result<super::http::Response, TransportError>,
    ctx: &Ctx,
    endpoint: &Endpoint,
    count: usize,
    warning: &RateLimiter,
) -> Outcome {
    let batch = || text::count(count, "item", "items");
    match result {
        Ok(response) => match response.status {
            200..=299 => Outcome::Delivered,
            413 => Outcome::TooLarge,
            408 | 429 | 500..=599 => Outcome::Retry(response.retry_after),
            status => {
                if warning.allow() {
                    log::warn!(
                        "{}: POST {} answered {status}; dropping a batch of {}",
                        ctx.name,
                        endpoint.path(),
                        batch()
                    );
                }
                Outcome::Rejected
            }
        },
        Err(e) if e.is_retryable() => {
            log::debug!("{}: POST {} failed: {e}", ctx.name, endpoint.path());
            Outcome::Retry(None)
        }
        Err(e) => {
            log::warn!(
                "{}: POST {} cannot be sent ({e}); dropping a batch of {}",
                ctx.name,
                endpoint.path(),
                batch()
            );
            Outcome::Rejected
        }
    }
}

impl<T: Send, B: Batcher<T>> Consumer<T> for HttpDelivery<T, B> {
    fn start(&mut self, ctx: &mut Ctx) {
        self.recover(ctx, false);
    }

    fn accept(&mut self, mut item: T, ctx: &mut Ctx) {
        if !self.prepare(&mut item, ctx) {
            return;
        }
        let size = catch_unwind(AssertUnwindSafe(|| self.batcher.estimate_size(&item)))
            .unwrap_or_else(|_| {
                log::error!("{}: estimate_size panicked; assuming 1 KiB", ctx.name);
                FALLBACK_ITEM_SIZE
            });
        if !self.open.is_empty() && self.open_bytes.saturating_add(size) > self.batch_max_bytes {
            self.seal(ctx);
        }
        if self.push_open(item, size) {
            self.seal(ctx);
        }
    }

    fn wants_flush(&self) -> bool {
        self.retry_at.is_none()
            && (self.open.len() + self.pending_items >= self.flush_max_items
                || self.open_bytes + self.pending_bytes >= self.flush_max_bytes)
    }

    fn flush(&mut self, ctx: &mut Ctx) {
        let now = Instant::now();
        self.cut_wait(ctx, now);
        if self.waiting(now) {
            return;
        }
        self.seal(ctx);
        self.send_pending(ctx, false);
    }

    fn next_due(&self) -> Option<Instant> {
        if self.pending.is_empty() && self.open.is_empty() {
            None
        } else {
            self.retry_at
        }
    }

    fn finish(&mut self, ctx: &mut Ctx, deadline: Instant) {
        if catch_unwind(AssertUnwindSafe(|| self.batcher.closing())).is_err() {
            log::error!("{}: closing panicked", ctx.name);
        }
        // With a spool, stop sending a little early: what is left still has to be written.
        let last_send = if self.spool.is_some() {
            deadline.checked_sub(SPOOL_MARGIN).unwrap_or(deadline)
        } else {
            deadline
        };
        ctx.deadline = Some(last_send);
        // A wait begun before shutdown is cut short; the ones scheduled from here on are
        // short already (`schedule_retry`).
        self.cut_wait(ctx, Instant::now());
        // A retry the server put off past the deadline still gets one last attempt.
        let mut last_chance = true;
        loop {
            self.seal(ctx);
            let now = Instant::now();
            if self.pending.is_empty() || now >= last_send {
                break;
            }
            match self.retry_at {
                // Nothing new can arrive: wait for the retry, bounded by what time is left.
                Some(at) if at > now => {
                    if at < last_send {
                        std::thread::sleep(at - now);
                        self.send_pending(ctx, true);
                    } else if mem::take(&mut last_chance) {
                        // The wait would pass the deadline: one last attempt, as late as
                        // leaves it time to be made.
                        let left = last_send - now;
                        std::thread::sleep(left.saturating_sub(FINAL_ATTEMPT_ROOM.min(left / 2)));
                        self.send_pending(ctx, true);
                    } else {
                        break;
                    }
                }
                _ => self.send_pending(ctx, false),
            }
        }
        let mut spooled = 0;
        let mut dropped = 0;
        while let Some(batch) = self.pop_head() {
            let n = batch.count;
            if self.give_up(batch, ctx, DropReason::Shutdown) {
                spooled += n;
            } else {
                dropped += n;
            }
        }
        if let Some(spool) = &self.spool {
            spool.sync();
        }
        if spooled > 0 {
            log::info!(
                "{}: {} for {} not delivered by the shutdown deadline, written to the spool",
                ctx.name,
                text::count(spooled, "item", "items"),
                self.endpoint.path()
            );
        }
        if dropped > 0 {
            log::warn!(
                "{}: {} for {} not delivered by the shutdown deadline",
                ctx.name,
                text::count(dropped, "item", "items"),
                self.endpoint.path()
            );
        }
    }

    fn late(&mut self, mut item: T, ctx: &mut Ctx) {
        // Prepared like any other, so that an item the batcher would not send is not
        // spooled (what it counts is taken up after `closing`, like the rest).
        if !self.prepare(&mut item, ctx) {
            return;
        }
        if self.spool.is_some() {
            // Kept for `finish` to write to the spool.
            let size = catch_unwind(AssertUnwindSafe(|| self.batcher.estimate_size(&item)))
                .unwrap_or(FALLBACK_ITEM_SIZE);
            if self.push_open(item, size) {
                // Sealed without the retention check: shutdown spools everything anyway.
                self.seal_open();
            }
        } else {
            drop(item);
            ctx.dropped(DropReason::Shutdown, 1);
        }
    }
}
