//! The client's counters: what [`Client::stats`](crate::Client::stats) returns, and how a
//! person reads them: `Display` of the client's, the delivery queues' and the integrations'
//! counters (`Debug` shows every field).

use std::fmt;

use crate::delivery::DeliveryStats;
use crate::impressions::ImpressionStats;
use crate::integrations::IntegrationStats;
use crate::text::{count, thousands};

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

/// What [`ImpressionStats`] and [`EventStats`] say about items localhost mode keeps.
const LOCAL_ONLY: &str = "not sent (localhost mode, no events URL)";

/// ` (3 queue full, 2 rejected)`: the parts whose count is not zero, or nothing.
fn write_nonzero(f: &mut fmt::Formatter<'_>, parts: &[(u64, &str)]) -> fmt::Result {
    let mut first = true;
    for (n, what) in parts.iter().filter(|(n, _)| *n > 0) {
        f.write_str(if first { " (" } else { ", " })?;
        write!(f, "{} {what}", thousands(*n))?;
        first = false;
    }
    if !first {
        f.write_str(")")?;
    }
    Ok(())
}

/// `; 3 not sent (localhost mode, ...)` when localhost mode kept `local_only` items, then
/// `; delivery: ...` unless those are all there is to say (the queue never saw an item).
fn write_queue(f: &mut fmt::Formatter<'_>, local_only: u64, queue: &DeliveryStats) -> fmt::Result {
    if local_only > 0 {
        write!(f, "; {} {LOCAL_ONLY}", thousands(local_only))?;
    }
    if local_only == 0 || *queue != DeliveryStats::default() {
        f.write_str("; delivery: ")?;
        write_delivery(f, queue, "sent")?;
    }
    Ok(())
}

/// `sent, dropped (by reason), queued` of one queue, `sent` named by `verb` ("sent", or
/// "handled" for a listener).
fn write_delivery(f: &mut fmt::Formatter<'_>, s: &DeliveryStats, verb: &str) -> fmt::Result {
    write!(
        f,
        "{} {verb}, {} dropped",
        thousands(s.sent),
        thousands(s.dropped())
    )?;
    write_nonzero(
        f,
        &[
            (s.dropped_queue_full, "queue full"),
            (s.dropped_rejected, "rejected"),
            (s.dropped_retained_overflow, "over the retention limit"),
            (s.dropped_shutdown, "shutdown deadline"),
        ],
    )?;
    write!(f, ", {} queued", thousands(s.queued_now))?;
    if s.spooled > 0 {
        write!(f, ", {} spooled to disk", thousands(s.spooled))?;
    }
    if s.recovered > 0 {
        write!(f, ", {} recovered from the spool", thousands(s.recovered))?;
    }
    if s.rejected_after_shutdown > 0 {
        write!(
            f,
            ", {} refused after shutdown",
            thousands(s.rejected_after_shutdown)
        )?;
    }
    if s.failed_attempts > 0 {
        write!(
            f,
            "; {} of {} failed",
            thousands(s.failed_attempts),
            count(s.requests, "request", "requests")
        )?;
    }
    if s.listener_panics > 0 {
        write!(
            f,
            "; {}",
            count(s.listener_panics, "listener panic", "listener panics")
        )?;
    }
    Ok(())
}

/// One line: `1,000 sent, 2 dropped (2 queue full), 0 queued`, then what else is non-zero
/// (pushes refused after shutdown, failed requests, listener panics). Every drop reason with
/// a non-zero count is named.
///
/// # Examples
/// ```
/// let stats = splitkit::DeliveryStats::default();
/// assert_eq!(stats.to_string(), "0 sent, 0 dropped, 0 queued");
/// ```
impl fmt::Display for DeliveryStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_delivery(f, self, "sent")
    }
}

/// Where impressions went, then their delivery: one line for the impressions, one each for
/// impression counts and unique keys when there were some, one per listener.
///
/// ```text
/// impressions: 1,204 recorded (1,000 queued for delivery, 204 deduplicated); delivery: 1,000 sent, 0 dropped, 0 queued
/// ```
///
/// Localhost mode without an events URL says so instead of showing a delivery:
/// `impressions: 2 recorded; 2 not sent (localhost mode, no events URL)`.
impl fmt::Display for ImpressionStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "impressions: {} recorded", thousands(self.recorded))?;
        write_nonzero(
            f,
            &[
                (self.queue.recorded, "queued for delivery"),
                (self.deduplicated, "deduplicated"),
                (self.counted_only, "counted only"),
            ],
        )?;
        write_queue(f, self.local_only, &self.queue)?;
        for (name, s) in [
            ("impression counts", &self.counts),
            ("unique keys", &self.unique_keys),
        ] {
            if *s != DeliveryStats::default() {
                write!(f, "\n{name}: ")?;
                write_delivery(f, s, "sent")?;
            }
        }
        for (n, s) in self.listeners.iter().enumerate() {
            write!(f, "\nimpression listener {}: ", n + 1)?;
            write_delivery(f, s, "handled")?;
        }
        Ok(())
    }
}

/// One line: `events: 12 tracked, 1 rejected; delivery: 12 sent, 0 dropped, 0 queued`
/// (`rejected` only when some were), or, in localhost mode without an events URL,
/// `events: 3 tracked; 3 not sent (localhost mode, no events URL)`.
impl fmt::Display for EventStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "events: {} tracked", thousands(self.tracked))?;
        if self.rejected > 0 {
            write!(f, ", {} rejected", thousands(self.rejected))?;
        }
        write_queue(f, self.local_only, &self.queue)
    }
}

/// One line: `1,204 received, 2 dropped as oversized; delivery: 1,202 sent, 0 dropped, 0 queued`
/// (the oversized part only when some were).
///
/// # Examples
/// ```
/// let stats = splitkit::integrations::IntegrationStats::default();
/// assert_eq!(
///     stats.to_string(),
///     "0 received; delivery: 0 sent, 0 dropped, 0 queued"
/// );
/// ```
impl fmt::Display for IntegrationStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} received", thousands(self.received))?;
        if self.dropped_oversized > 0 {
            write!(
                f,
                ", {} dropped as oversized",
                thousands(self.dropped_oversized)
            )?;
        }
        write!(f, "; delivery: {}", self.delivery)
    }
}

/// The impressions' lines, then the events' line (see their `Display`).
///
/// # Examples
/// ```
/// let client = splitkit::Client::builder("localhost").split_file("examples/flags.yaml").build()?;
/// client.get_treatment("ann", "new_checkout", None);
/// client.track("ann", "user", "checkout", None, None)?;
/// assert_eq!(
///     client.stats().to_string(),
///     "impressions: 1 recorded; 1 not sent (localhost mode, no events URL)\n\
///      events: 1 tracked; 1 not sent (localhost mode, no events URL)"
/// );
/// # Ok::<(), splitkit::Error>(())
/// ```
impl fmt::Display for ClientStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.impressions, self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivered(n: u64) -> DeliveryStats {
        DeliveryStats {
            recorded: n,
            sent: n,
            requests: 1,
            bytes_sent: 100 * n,
            ..DeliveryStats::default()
        }
    }

    fn impressions(queue: DeliveryStats) -> ImpressionStats {
        ImpressionStats {
            recorded: queue.recorded + queue.rejected_after_shutdown,
            deduplicated: 0,
            counted_only: 0,
            local_only: 0,
            queue,
            counts: DeliveryStats::default(),
            unique_keys: DeliveryStats::default(),
            listeners: Vec::new(),
        }
    }

    #[test]
    fn a_healthy_remote_client_reads_in_two_lines() {
        let mut i = impressions(delivered(1_000));
        i.deduplicated = 204;
        i.recorded += 204;
        let stats = ClientStats {
            impressions: i,
            events: EventStats {
                tracked: 12,
                rejected: 1,
                local_only: 0,
                queue: delivered(12),
            },
        };
        assert_eq!(
            stats.to_string(),
            "impressions: 1,204 recorded (1,000 queued for delivery, 204 deduplicated); delivery: 1,000 sent, 0 dropped, 0 queued\n\
             events: 12 tracked, 1 rejected; delivery: 12 sent, 0 dropped, 0 queued"
        );
    }

    #[test]
    fn localhost_mode_says_nothing_was_meant_to_be_sent() {
        let mut i = impressions(DeliveryStats::default());
        i.local_only = 2;
        i.deduplicated = 1;
        i.recorded = 3;
        let events = EventStats {
            tracked: 2,
            rejected: 0,
            local_only: 2,
            queue: DeliveryStats::default(),
        };
        assert_eq!(
            i.to_string(),
            "impressions: 3 recorded (1 deduplicated); 2 not sent (localhost mode, no events URL)"
        );
        assert_eq!(
            events.to_string(),
            "events: 2 tracked; 2 not sent (localhost mode, no events URL)"
        );
    }

    #[test]
    fn drops_are_shown_with_their_reasons() {
        let queue = DeliveryStats {
            recorded: 1_500,
            queued_now: 100,
            sent: 1_000,
            dropped_queue_full: 300,
            dropped_rejected: 0,
            dropped_retained_overflow: 50,
            dropped_shutdown: 50,
            spooled: 30,
            recovered: 30,
            rejected_after_shutdown: 7,
            failed_attempts: 3,
            requests: 13,
            bytes_sent: 123_456,
            listener_panics: 0,
        };
        assert!(queue.is_balanced());
        assert_eq!(
            queue.to_string(),
            "1,000 sent, 400 dropped (300 queue full, 50 over the retention limit, 50 shutdown deadline), 100 queued, 30 spooled to disk, 30 recovered from the spool, 7 refused after shutdown; 3 of 13 requests failed"
        );
        let one = DeliveryStats {
            recorded: 1,
            dropped_rejected: 1,
            failed_attempts: 1,
            requests: 1,
            ..DeliveryStats::default()
        };
        assert_eq!(
            one.to_string(),
            "0 sent, 1 dropped (1 rejected), 0 queued; 1 of 1 request failed"
        );
        let overflow = DeliveryStats {
            recorded: 5,
            dropped_retained_overflow: 5,
            ..DeliveryStats::default()
        };
        assert_eq!(
            overflow.to_string(),
            "0 sent, 5 dropped (5 over the retention limit), 0 queued"
        );
    }

    #[test]
    fn counts_unique_keys_and_listeners_get_their_own_lines() {
        let mut i = impressions(delivered(0));
        i.counted_only = 40;
        i.recorded = 40;
        i.counts = delivered(3);
        i.listeners = vec![
            delivered(40),
            DeliveryStats {
                recorded: 40,
                sent: 38,
                dropped_rejected: 2,
                listener_panics: 2,
                ..DeliveryStats::default()
            },
        ];
        assert_eq!(
            i.to_string(),
            "impressions: 40 recorded (40 counted only); delivery: 0 sent, 0 dropped, 0 queued\n\
             impression counts: 3 sent, 0 dropped, 0 queued\n\
             impression listener 1: 40 handled, 0 dropped, 0 queued\n\
             impression listener 2: 38 handled, 2 dropped (2 rejected), 0 queued; 2 listener panics"
        );
    }

    #[test]
    fn integration_stats_count_oversized_calls_as_drops() {
        let stats = IntegrationStats {
            received: 1_204,
            dropped_oversized: 2,
            delivery: delivered(1_202),
        };
        assert!(stats.is_balanced());
        assert_eq!(
            stats.to_string(),
            "1,204 received, 2 dropped as oversized; delivery: 1,202 sent, 0 dropped, 0 queued"
        );
    }

    #[test]
    fn debug_stays_the_full_derived_form() {
        let e = EventStats {
            tracked: 1,
            rejected: 0,
            local_only: 1,
            queue: DeliveryStats::default(),
        };
        let debug = format!("{e:?}");
        assert!(
            debug.starts_with(
                "EventStats { tracked: 1, rejected: 0, local_only: 1, queue: DeliveryStats {"
            ),
            "{debug}"
        );
    }
}
