//! The HTTP stage of a worker: batching, posting, classifying answers, retrying.

use std::collections::VecDeque;
use std::mem;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::backoff::{Backoff, Rng};
use super::stats::DropReason;
use super::worker::{Consumer, Ctx, RateLimiter};
use super::{Batcher, Endpoint, Request, Transport, TransportError, WorkerConfig};
use crate::text::{count, duration};

/// Size assumed for an item whose `estimate_size` panicked.
const FALLBACK_ITEM_SIZE: usize = 1024;

/// Longest `Retry-After` honoured; longer values are cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A sealed batch waiting to be (re)sent.
#[derive(Debug)]
struct Batch<T> {
    items: Vec<T>,
    bytes: usize,
    attempts: u32,
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
/// `max_retained_items`.
pub(crate) struct HttpDelivery<T, B> {
    batcher: B,
    transport: Arc<dyn Transport>,
    endpoint: Endpoint,
    flush_max_items: usize,
    flush_max_bytes: usize,
    batch_max_items: usize,
    batch_max_bytes: usize,
    max_retained_items: usize,
    max_attempts: u32,
    backoff: Backoff,
    rng: Rng,
    /// The batch being filled.
    open: Vec<T>,
    open_bytes: usize,
    /// Sealed batches, oldest first.
    pending: VecDeque<Batch<T>>,
    pending_items: usize,
    pending_bytes: usize,
    /// Consecutive failed attempts against the endpoint.
    failures: u32,
    /// While set, no request is made before this instant.
    retry_at: Option<Instant>,
    /// Reused request body buffer.
    body: Vec<u8>,
    warning: RateLimiter,
}

impl<T, B: Batcher<T>> HttpDelivery<T, B> {
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
            max_attempts: config.max_attempts(),
            backoff: Backoff::new(config.backoff_base(), config.backoff_cap()),
            rng: Rng::from_entropy(),
            open: Vec::new(),
            open_bytes: 0,
            pending: VecDeque::new(),
            pending_items: 0,
            pending_bytes: 0,
            failures: 0,
            retry_at: None,
            body: Vec::new(),
            warning: RateLimiter::new(config.warn_interval()),
        }
    }

    fn waiting(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| at > now)
    }

    /// Moves the open batch to the pending queue.
    fn seal(&mut self, ctx: &mut Ctx) {
        if self.open.is_empty() {
            return;
        }
        let items = mem::replace(
            &mut self.open,
            Vec::with_capacity(self.batch_max_items.min(1024)),
        );
        self.pending_items += items.len();
        self.pending_bytes += self.open_bytes;
        self.pending.push_back(Batch {
            items,
            bytes: mem::take(&mut self.open_bytes),
            attempts: 0,
        });
        self.enforce_retained_bound(ctx);
    }

    /// While the endpoint fails, drops the oldest batches beyond `max_retained_items`.
    fn enforce_retained_bound(&mut self, ctx: &mut Ctx) {
        if self.retry_at.is_none() {
            return;
        }
        let mut dropped = 0;
        while self.pending_items > self.max_retained_items {
            let Some(batch) = self.pop_head() else { break };
            dropped += batch.items.len();
            ctx.dropped(DropReason::RetainedOverflow, batch.items.len());
        }
        if dropped > 0 && self.warning.allow() {
            log::warn!(
                "{}: POST {} keeps failing; dropped {}, oldest first (at most {} are kept)",
                ctx.name,
                self.endpoint.path(),
                count(dropped, "retained item", "retained items"),
                self.max_retained_items
            );
        }
    }

    fn pop_head(&mut self) -> Option<Batch<T>> {
        let batch = self.pending.pop_front()?;
        self.pending_items -= batch.items.len();
        self.pending_bytes -= batch.bytes;
        Some(batch)
    }

    /// Sends pending batches in order until the queue is empty or a retry wait
    /// begins. With `ignore_wait`, the head is tried even during a retry wait.
    fn send_pending(&mut self, ctx: &mut Ctx, ignore_wait: bool) {
        while let Some(head) = self.pending.front() {
            let now = Instant::now();
            if !ignore_wait && self.waiting(now) {
                break;
            }
            // The wait is over (or ignored): a failure below starts a new one.
            self.retry_at = None;
            let outcome = attempt(
                &self.batcher,
                &*self.transport,
                &self.endpoint,
                &mut self.body,
                &head.items,
                ctx,
                &self.warning,
            );
            match outcome {
                Outcome::Delivered => {
                    self.failures = 0;
                    if let Some(batch) = self.pop_head() {
                        ctx.sent(batch.items.len());
                    }
                }
                Outcome::Rejected => {
                    if let Some(batch) = self.pop_head() {
                        ctx.dropped(DropReason::Rejected, batch.items.len());
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

    /// 413: replaces the head with its two halves, or drops a single item.
    fn split_head(&mut self, ctx: &mut Ctx) {
        let Some(mut batch) = self.pop_head() else {
            return;
        };
        let len = batch.items.len();
        if len <= 1 {
            if self.warning.allow() {
                log::warn!(
                    "{}: POST {} answered 413 for a single item; dropping it",
                    ctx.name,
                    self.endpoint.path()
                );
            }
            ctx.dropped(DropReason::Rejected, len);
            return;
        }
        let second_items = batch.items.split_off(len / 2);
        let second_bytes = batch.bytes * second_items.len() / len;
        let first = Batch {
            bytes: batch.bytes - second_bytes,
            items: batch.items,
            attempts: 0,
        };
        let second = Batch {
            items: second_items,
            bytes: second_bytes,
            attempts: 0,
        };
        self.pending_items += len;
        self.pending_bytes += first.bytes + second.bytes;
        self.pending.push_front(second);
        self.pending.push_front(first);
    }

    fn schedule_retry(&mut self, ctx: &mut Ctx, now: Instant, retry_after: Option<Duration>) {
        self.failures = self.failures.saturating_add(1);
        let delay = match retry_after {
            Some(server) => server.min(MAX_RETRY_AFTER),
            None => self.backoff.delay(self.failures, &mut self.rng),
        };
        self.retry_at = Some(now.checked_add(delay).unwrap_or(now + MAX_RETRY_AFTER));
        let Some(head) = self.pending.front_mut() else {
            return;
        };
        head.attempts += 1;
        if head.attempts >= self.max_attempts {
            if let Some(batch) = self.pop_head() {
                log::warn!(
                    "{}: POST {} failed {}; dropping a batch of {}",
                    ctx.name,
                    self.endpoint.path(),
                    count(batch.attempts, "time", "times"),
                    count(batch.items.len(), "item", "items")
                );
                ctx.dropped(DropReason::RetryLimit, batch.items.len());
            }
        } else {
            log::debug!(
                "{}: POST {} failed (attempt {}), retrying in {}",
                ctx.name,
                self.endpoint.path(),
                head.attempts,
                duration(delay)
            );
        }
    }
}

/// Encodes and posts one batch, counts the request, and classifies the answer.
fn attempt<T, B: Batcher<T>>(
    batcher: &B,
    transport: &dyn Transport,
    endpoint: &Endpoint,
    body: &mut Vec<u8>,
    items: &[T],
    ctx: &Ctx,
    warning: &RateLimiter,
) -> Outcome {
    body.clear();
    let encoded = catch_unwind(AssertUnwindSafe(|| batcher.encode(items, body)));
    match encoded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            log::warn!(
                "{}: dropping {} for {}: {e}: {}",
                ctx.name,
                count(items.len(), "item", "items"),
                endpoint.path(),
                std::error::Error::source(&e).map_or_else(String::new, |s| s.to_string())
            );
            return Outcome::Rejected;
        }
        Err(_) => {
            log::error!(
                "{}: batch encoder panicked; dropping {} for {}",
                ctx.name,
                count(items.len(), "item", "items"),
                endpoint.path()
            );
            return Outcome::Rejected;
        }
    }
    let request = Request {
        path: endpoint.path(),
        body: body.as_slice(),
        headers: endpoint.headers(),
        deadline: ctx.deadline,
    };
    let result = catch_unwind(AssertUnwindSafe(|| transport.post(&request)))
        .unwrap_or_else(|_| Err(TransportError::Io("transport panicked".into())));
    let outcome = match &result {
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
                        count(items.len(), "item", "items")
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
                count(items.len(), "item", "items")
            );
            Outcome::Rejected
        }
    };
    ctx.stats
        .on_request(body.len(), outcome == Outcome::Delivered);
    outcome
}

impl<T: Send, B: Batcher<T>> Consumer<T> for HttpDelivery<T, B> {
    fn accept(&mut self, mut item: T, ctx: &mut Ctx) {
        if catch_unwind(AssertUnwindSafe(|| self.batcher.prepare(&mut item))).is_err() {
            log::error!("{}: prepare panicked; the item is sent as it is", ctx.name);
        }
        let size = catch_unwind(AssertUnwindSafe(|| self.batcher.estimate_size(&item)))
            .unwrap_or_else(|_| {
                log::error!("{}: estimate_size panicked; assuming 1 KiB", ctx.name);
                FALLBACK_ITEM_SIZE
            });
        if !self.open.is_empty() && self.open_bytes.saturating_add(size) > self.batch_max_bytes {
            self.seal(ctx);
        }
        self.open.push(item);
        self.open_bytes = self.open_bytes.saturating_add(size);
        if self.open.len() >= self.batch_max_items || self.open_bytes >= self.batch_max_bytes {
            self.seal(ctx);
        }
    }

    fn wants_flush(&self) -> bool {
        self.retry_at.is_none()
            && (self.open.len() + self.pending_items >= self.flush_max_items
                || self.open_bytes + self.pending_bytes >= self.flush_max_bytes)
    }

    fn flush(&mut self, ctx: &mut Ctx) {
        if self.waiting(Instant::now()) {
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
        // One round of attempts ignores a retry wait that would end after the deadline.
        let mut last_attempt_made = false;
        loop {
            self.seal(ctx);
            let now = Instant::now();
            if self.pending.is_empty() || now >= deadline {
                break;
            }
            match self.retry_at {
                // No message can arrive any more: just wait out the retry delay.
                Some(at) if at > now && at < deadline => std::thread::sleep(at - now),
                Some(at) if at > now => {
                    if last_attempt_made {
                        break;
                    }
                    last_attempt_made = true;
                    self.send_pending(ctx, true);
                }
                _ => self.send_pending(ctx, false),
            }
        }
        let mut dropped = 0;
        while let Some(batch) = self.pop_head() {
            dropped += batch.items.len();
            ctx.dropped(DropReason::Shutdown, batch.items.len());
        }
        if dropped > 0 {
            log::warn!(
                "{}: {} for {} not delivered by the shutdown deadline",
                ctx.name,
                count(dropped, "item", "items"),
                self.endpoint.path()
            );
        }
    }
}
