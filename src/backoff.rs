//! Retry timing, one implementation for every retry loop (definitions synchronization and
//! delivery): exponential backoff with full jitter, and the server's `Retry-After` in both
//! of its forms.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime};

use crate::time::days_from_civil;

/// Longest `Retry-After` honoured: a larger value is clamped to this (1 hour).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Retry delays after consecutive transient failures.
///
/// The n-th delay (from 0) is drawn uniformly from `[0, min(cap, base * 2^n)]` ("full
/// jitter"), so clients that failed together do not retry together. A `Retry-After` given
/// by the server replaces the drawn delay.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    /// A backoff starting at `base`, never above `cap` (raised to `base` if lower).
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

    /// The delay before the next retry, counting one more failure; `retry_after` (from the
    /// server) wins when given.
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

/// The delay a `Retry-After` header asks for: delay-seconds (`120`), or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, and the obsolete RFC 850 and asctime forms, which
/// RFC 9110 requires recipients to accept), as the time from now until then (zero for a
/// date in the past). At most [`MAX_RETRY_AFTER`]; `None` when the value is neither.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

fn parse_retry_after_at(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = http_date(value)?;
    let now = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let wait = u64::try_from(at).unwrap_or(0).saturating_sub(now);
    Some(Duration::from_secs(wait).min(MAX_RETRY_AFTER))
}

/// Seconds since the Unix epoch of an HTTP-date in any of its three forms (always GMT).
fn http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = |m: &str| MONTHS.iter().position(|n| *n == m).map(|i| i as i64 + 1);
    let clock = |t: &str| -> Option<i64> {
        let mut p = t.split(':').map(|n| n.parse::<i64>().ok());
        let (h, m, s) = (p.next()??, p.next()??, p.next()??);
        (p.next().is_none() && h < 24 && m < 60 && s < 61).then_some(h * 3600 + m * 60 + s)
    };
    let parts: Vec<&str> = s.split_whitespace().collect();
    let (year, mon, day, time) = match parts.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [_, d, m, y, t, "GMT"] => (y.parse().ok()?, month(m)?, d.parse().ok()?, clock(t)?),
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT (two-digit years: 1970 to 2069)
        [_, dmy, t, "GMT"] => {
            let mut p = dmy.split('-');
            let (d, m, y) = (p.next()?, p.next()?, p.next()?);
            let y: i64 = y.parse().ok()?;
            let y = if y < 70 {
                2000 + y
            } else if y < 100 {
                1900 + y
            } else {
                y
            };
            (y, month(m)?, d.parse().ok()?, clock(t)?)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_, m, d, t, y] => (y.parse().ok()?, month(m)?, d.parse().ok()?, clock(t)?),
        _ => return None,
    };
    if !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, mon, day) * 86_400 + time)
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
        let draws: Vec<Duration> = (0..200).map(|_| b.next_delay(None)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(500)));
    }

    #[test]
    fn a_cap_below_the_base_is_raised_and_huge_attempts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.ceiling(), Duration::from_secs(2));
        let mut b2 = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        for _ in 0..100 {
            assert!(b.next_delay(None) <= Duration::from_secs(2));
            assert!(b2.next_delay(None) <= Duration::from_secs(30));
        }
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
    }

    #[test]
    fn retry_after_in_seconds_and_in_every_http_date_form() {
        // 2015-10-21T07:28:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let at = |v: &str| parse_retry_after_at(v, now);
        assert_eq!(at(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(at("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            at("Wed, 21 Oct 2015 07:28:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            at("Wednesday, 21-Oct-15 07:29:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(at("Wed Oct 21 07:28:05 2015"), Some(Duration::from_secs(5)));
        assert_eq!(
            at("Wed Oct  1 07:28:05 2015"),
            Some(Duration::ZERO),
            "in the past"
        );
        assert_eq!(at("Thu, 22 Oct 2015 07:28:00 GMT"), Some(MAX_RETRY_AFTER));
        for bad in [
            "",
            "soon",
            "-5",
            "1.5",
            "Wed, 21 Oct 2015 07:28:30 PST",
            "Wed, 32 Oct 2015 07:28:30 GMT",
            "Wed, 21 Foo 2015 07:28:30 GMT",
            "Wed, 21 Oct 2015 25:00:00 GMT",
        ] {
            assert_eq!(at(bad), None, "{bad:?}");
        }
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
    }
}
