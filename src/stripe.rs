//! Per-thread stripes: structures that every evaluating thread updates (the in-flight
//! counter, impression counts, unique keys) keep one slot per stripe, so that threads
//! update their own slot (no shared cache line, no lock held by another thread) and readers
//! combine the slots.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots per striped structure.
pub(crate) const STRIPES: usize = 16;

thread_local! {
    static STRIPE: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES
    };
}

/// This thread's slot, below [`STRIPES`]: threads are given slots in turn, so up to
/// `STRIPES` threads never share one.
pub(crate) fn this_thread() -> usize {
    STRIPE.with(|s| *s)
}

/// A value alone on its cache lines (two 64-byte lines, as adjacent-line prefetching pairs
/// them), so that neighbouring stripes do not share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);
