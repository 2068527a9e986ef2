//! The listener stage of a worker: a user callback per item, panics contained.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use super::WorkerConfig;
use super::stats::DropReason;
use super::worker::{Consumer, Ctx, RateLimiter};

/// Calls the callback with each item as it leaves the queue.
pub(crate) struct ListenerDelivery<F> {
    callback: F,
    warning: RateLimiter,
}

impl<F> ListenerDelivery<F> {
    pub(crate) fn new(config: &WorkerConfig, callback: F) -> Self {
        Self {
            callback,
            warning: RateLimiter::new(config.warn_interval()),
        }
    }
}

impl<T, F: FnMut(&T) + Send> Consumer<T> for ListenerDelivery<F> {
    fn accept(&mut self, item: T, ctx: &mut Ctx) {
        let callback = &mut self.callback;
        match catch_unwind(AssertUnwindSafe(|| callback(&item))) {
            Ok(()) => ctx.sent(1),
            Err(_) => {
                ctx.stats.on_listener_panic();
                ctx.dropped(DropReason::Rejected, 1);
                if self.warning.allow() {
                    log::warn!("{}: listener callback panicked; continuing", ctx.name);
                }
            }
        }
    }

    fn wants_flush(&self) -> bool {
        false
    }

    fn flush(&mut self, _ctx: &mut Ctx) {}

    fn next_due(&self) -> Option<Instant> {
        None
    }

    fn finish(&mut self, _ctx: &mut Ctx, _deadline: Instant) {}
}
