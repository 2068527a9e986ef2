//! What the polling threads are asked to fetch (by the stream, by `sync_now`, by each
//! other), merged while a thread is busy: however many requests arrive, none is lost and
//! each thread wakes for all of them at once.

use std::collections::BTreeMap;
use std::mem;

use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;

/// The requests for one thread, merged, and a one-slot signal that some are waiting.
#[derive(Debug)]
pub(crate) struct Wake<P> {
    pending: Mutex<P>,
    signal: (Sender<()>, Receiver<()>),
}

impl<P: Default> Wake<P> {
    pub(crate) fn new() -> Wake<P> {
        Wake {
            pending: Mutex::new(P::default()),
            signal: bounded(1),
        }
    }

    /// Adds a request (`merge` folds it into what is waiting) and wakes the thread.
    fn post(&self, merge: impl FnOnce(&mut P)) {
        merge(&mut self.pending.lock());
        // Full: the thread is signalled already, and takes this request with the others.
        let _ = self.signal.0.try_send(());
    }

    /// Ready when requests are waiting.
    pub(crate) fn signal(&self) -> &Receiver<()> {
        &self.signal.1
    }

    /// Everything requested since the last call.
    pub(crate) fn take(&self) -> P {
        mem::take(&mut *self.pending.lock())
    }
}

/// What the flags thread is asked to fetch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FlagsWanted {
    /// Poll now.
    pub(crate) poll: bool,
    /// Fetch until the flags reach this change number (the highest notified).
    pub(crate) flags: Option<i64>,
    /// Fetch until the rule-based segments reach this change number.
    pub(crate) rule_based: Option<i64>,
}

impl Wake<FlagsWanted> {
    /// Poll now.
    pub(crate) fn poll(&self) {
        self.post(|p| p.poll = true);
    }

    /// Fetch until the flags, and the rule-based segments, reach these change numbers (a
    /// streamed notification).
    pub(crate) fn until(&self, flags: Option<i64>, rule_based: Option<i64>) {
        self.post(|p| {
            p.flags = p.flags.max(flags);
            p.rule_based = p.rule_based.max(rule_based);
        });
    }
}

/// What the segments thread is asked to fetch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SegmentsWanted {
    /// Every segment the flags use (a forced poll).
    pub(crate) all: bool,
    /// The segments the flags use that are not loaded yet (after a flag update).
    pub(crate) missing: bool,
    /// Segments to fetch until they reach these change numbers (the highest notified).
    pub(crate) until: BTreeMap<String, i64>,
}

impl SegmentsWanted {
    /// Whether nothing was asked.
    pub(crate) fn is_empty(&self) -> bool {
        !self.all && !self.missing && self.until.is_empty()
    }
}

impl Wake<SegmentsWanted> {
    /// Every segment the flags use.
    pub(crate) fn all(&self) {
        self.post(|p| p.all = true);
    }

    /// The segments the flags use that are not loaded yet.
    pub(crate) fn missing(&self) {
        self.post(|p| p.missing = true);
    }

    /// Segment `name`, until it reaches `change_number` (a streamed notification).
    pub(crate) fn until(&self, name: &str, change_number: i64) {
        self.post(|p| {
            let cn = p.until.entry(name.to_string()).or_insert(change_number);
            *cn = (*cn).max(change_number);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_merge_while_the_thread_is_busy_and_none_is_lost() {
        let segments: Wake<SegmentsWanted> = Wake::new();
        for n in 0..1000 {
            segments.until(&format!("s{}", n % 300), n);
        }
        segments.missing();
        assert!(segments.signal().try_recv().is_ok(), "signalled");
        assert!(segments.signal().try_recv().is_err(), "once");
        let wanted = segments.take();
        assert_eq!(wanted.until.len(), 300, "every segment notified");
        assert_eq!(wanted.until["s0"], 900, "the highest change number");
        assert!(wanted.missing && !wanted.all);
        assert!(segments.take().is_empty(), "taken");

        let flags: Wake<FlagsWanted> = Wake::new();
        flags.until(Some(7), None);
        flags.until(Some(5), Some(3));
        flags.poll();
        assert_eq!(
            flags.take(),
            FlagsWanted {
                poll: true,
                flags: Some(7),
                rule_based: Some(3)
            }
        );
    }
}
