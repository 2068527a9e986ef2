//! The client's counters: what [`Client::stats`](crate::Client::stats) returns.

use crate::delivery::DeliveryStats;
use crate::impressions::ImpressionStats;

/// Exact counters of `track`.
///
/// `tracked == queue.recorded + local_only`; `rejected` events were never queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// Events that passed validation.
    pub tracked: u64,
    /// Events refused by validation (or by a destroyed client).
    pub rejected: u64,
    /// Accepted and not sent, by design: localhost mode without an events URL keeps no
    /// delivery queue, so events are counted here and go nowhere. Not a failure.
    pub local_only: u64,
    /// The delivery queue's counters (sent, dropped by reason, still queued, attempts).
    pub queue: DeliveryStats,
}

/// The client's counters: impressions and events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Impressions.
    pub impressions: ImpressionStats,
    /// Events.
    pub events: EventStats,
}
