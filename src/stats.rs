//! The client's counters: what [`Client::stats`](crate::Client::stats) returns.

use crate::delivery::DeliveryStats;
use crate::impressions::ImpressionStats;

/// Exact counters of `track`.
///
/// `tracked == queue.recorded + not_delivered`; `rejected` events were never queued.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventStats {
    /// Events that passed validation.
    pub tracked: u64,
    /// Events refused by validation (or by a destroyed client).
    pub rejected: u64,
    /// Localhost mode with no events URL: accepted but not sent anywhere.
    pub not_delivered: u64,
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
