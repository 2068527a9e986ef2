//! Exponential backoff with full jitter, honouring the server's `Retry-After`.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Longest `Retry-After` honoured: a larger value is clamped to this (1 hour).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Retry delays after consecutive transient failures.
///
/// The n-th delay (from 0) is drawn uniformly from `[0, min(cap, base * 2^n)]` ("full
/// jitter"), so clients that failed together do not retry together. A `Retry-After` given by
/// the server replaces the drawn delay.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    /// A backoff starting at `base`, never above `cap`.
    pub(crate) fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
            random: RandomState::new(),
            draws: 0,
        }
    }

    /// The ceiling of the next delay: `min(cap, base * 2^attempt)`.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The delay before the next retry; `retry_after` (from the server) wins when given.
    pub(crate) fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        if let Some(r) = retry_after {
            return r.min(MAX_RETRY_AFTER);
        }
        self.draws = self.draws.wrapping_add(1);
        let r = self.random.hash_one(self.draws);
        let ceiling_nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        match ceiling_nanos.checked_add(1) {
            Some(n) => Duration::from_nanos(r % n),
            None => Duration::from_nanos(r),
        }
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Consecutive failures since the last reset.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Parses a `Retry-After` header given in seconds. HTTP dates are not supported (`None`),
/// and the regular backoff applies.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_below_the_ceiling() {
        let base = Duration::from_millis(10);
        let cap = Duration::from_millis(80);
        let mut b = Backoff::new(base, cap);
        let ceilings: Vec<u128> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                let d = b.next_delay(None);
                assert!(d <= c, "{d:?} > {c:?}");
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, vec![10, 20, 40, 80, 80, 80]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.ceiling(), base);
        // Full jitter: the draws are spread over the range, not all at the ceiling.
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let draws: Vec<Duration> = (0..50).map(|_| b.next_delay(None)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(500)));
    }

    #[test]
    fn retry_after_wins_and_is_clamped() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(1_000_000))),
            MAX_RETRY_AFTER
        );
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn huge_attempts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay(None) <= Duration::from_secs(30));
        }
    }
}
