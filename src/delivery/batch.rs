//! Batch encoding: the [`Batcher`] trait supplied by each user of a worker.

use serde::Serialize;

/// Turns items into request bodies for one endpoint.
///
/// The worker calls [`prepare`](Batcher::prepare) and then
/// [`estimate_size`](Batcher::estimate_size) once per item as it leaves the queue
/// (for the byte thresholds and batch limits) and [`encode`](Batcher::encode) once
/// per request attempt. All run on the worker thread, never on the producer's.
///
/// Implementations should not panic; if one does, the panic is caught and logged:
/// a panicking `prepare` leaves the item as it is (and sends it), a panicking
/// `estimate_size` counts the item as 1 KiB, a panicking `encode` drops the batch (counted
/// in `dropped_rejected`).
pub trait Batcher<T>: Send + 'static {
    /// Completes `item` when the worker takes it from the queue, in queue order: a place
    /// for work that need not slow the producer down (the impressions worker applies the
    /// impressions mode here: sets `pt` from its dedupe cache, counts). Returns whether
    /// the item is still to be sent. Sends it unchanged by default.
    fn prepare(&mut self, item: &mut T) -> Prepared {
        let _ = item;
        Prepared::Send
    }

    /// The worker takes no more items from its queue: shutdown began and everything
    /// queued before it was taken (and prepared). Does nothing by default.
    fn closing(&mut self) {}

    /// Estimated encoded size of `item` in bytes. Cheap and roughly right is better
    /// than exact and slow: it only drives the byte thresholds.
    fn estimate_size(&self, item: &T) -> usize;

    /// Appends the request body for `items` (never empty) to `out`, which is empty
    /// on entry.
    ///
    /// # Errors
    ///
    /// An [`EncodeError`] when the items cannot be represented; the batch is then
    /// dropped and counted as rejected, since retrying cannot help.
    fn encode(&self, items: &[T], out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

/// A boxed batcher is a batcher: a worker's batcher can be chosen at run time.
impl<T, B: Batcher<T> + ?Sized> Batcher<T> for Box<B> {
    fn prepare(&mut self, item: &mut T) -> Prepared {
        (**self).prepare(item)
    }

    fn closing(&mut self) {
        (**self).closing();
    }

    fn estimate_size(&self, item: &T) -> usize {
        (**self).estimate_size(item)
    }

    fn encode(&self, items: &[T], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        (**self).encode(items, out)
    }
}

/// What [`Batcher::prepare`] made of an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// Batched and sent.
    Send,
    /// Used up by the batcher, not sent (it leaves the queue's `recorded`): an
    /// impression that the impressions mode only counts.
    Absorbed,
}

/// A batch could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("could not encode batch")]
pub struct EncodeError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl EncodeError {
    /// Wraps the underlying error (for example a `serde_json::Error`).
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self {
            source: source.into(),
        }
    }
}

/// A [`Batcher`] that encodes a batch as a plain JSON array of the items, as
/// Split's `events/bulk` expects.
pub struct JsonBatcher<F> {
    estimate: F,
}

impl<F> JsonBatcher<F> {
    /// A JSON array batcher that estimates item sizes with `estimate`.
    pub fn new(estimate: F) -> Self {
        Self { estimate }
    }
}

impl<F> std::fmt::Debug for JsonBatcher<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonBatcher").finish_non_exhaustive()
    }
}

impl<T, F> Batcher<T> for JsonBatcher<F>
where
    T: Serialize,
    F: Fn(&T) -> usize + Send + 'static,
{
    fn estimate_size(&self, item: &T) -> usize {
        (self.estimate)(item)
    }

    fn encode(&self, items: &[T], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        serde_json::to_writer(out, items).map_err(EncodeError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn json_batcher_reports_unencodable_items() {
        // JSON object keys must be strings: a map keyed by a tuple cannot be encoded.
        let batcher = JsonBatcher::new(|_: &HashMap<(u8, u8), u8>| 1);
        let mut body = Vec::new();
        let item = HashMap::from([((1, 2), 3)]);
        let err = batcher.encode(&[item], &mut body);
        assert!(err.is_err());
    }
}
