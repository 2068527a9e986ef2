//! Exponential backoff with full jitter, and the small random source it needs.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Retry timing of a worker: exponential growth from `base`, bounded by `cap`,
/// with "full jitter" (a uniformly random wait between zero and the bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// A backoff growing from `base` up to `cap` (`cap` is raised to `base` if lower).
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
        }
    }

    /// Upper bound of the wait after `failures` consecutive failures (`failures >= 1`):
    /// `min(cap, base * 2^(failures - 1))`.
    pub(crate) fn bound(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << shift)
            .map_or(self.cap, |d| d.min(self.cap))
    }

    /// The wait after `failures` consecutive failures: uniform in `[0, bound(failures)]`.
    pub(crate) fn delay(&self, failures: u32, rng: &mut Rng) -> Duration {
        let bound = self.bound(failures);
        let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rng.below_inclusive(nanos))
    }
}

/// SplitMix64: a tiny, fast, non-cryptographic generator, seeded per worker from the
/// standard library's randomly keyed hasher (no extra dependency).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator with a random seed.
    pub(crate) fn from_entropy() -> Self {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Self(hasher.finish())
    }

    /// A generator with a fixed seed (for tests).
    #[cfg(test)]
    pub(crate) fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value uniform in `[0, max]` (multiply-shift reduction; the bias is below 2^-64
    /// per value and irrelevant for jitter).
    pub(crate) fn below_inclusive(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        let range = u128::from(max) + 1;
        let product = u128::from(self.next_u64()) * range;
        u64::try_from(product >> 64).unwrap_or(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_doubles_then_caps() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.bound(1), Duration::from_millis(100));
        assert_eq!(b.bound(2), Duration::from_millis(200));
        assert_eq!(b.bound(4), Duration::from_millis(800));
        assert_eq!(b.bound(5), Duration::from_secs(1));
        assert_eq!(b.bound(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn cap_below_base_is_raised() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(b.bound(1), Duration::from_secs(2));
        assert_eq!(b.bound(9), Duration::from_secs(2));
    }

    #[test]
    fn jitter_stays_within_bound_and_spreads() {
        let b = Backoff::new(Duration::from_millis(10), Duration::from_millis(80));
        let mut rng = Rng::seeded(7);
        let mut low = 0;
        let mut high = 0;
        for failures in 1..2000u32 {
            let f = failures % 6 + 1;
            let d = b.delay(f, &mut rng);
            assert!(d <= b.bound(f), "{d:?} > {:?}", b.bound(f));
            if d < b.bound(f) / 2 {
                low += 1;
            } else {
                high += 1;
            }
        }
        assert!(low > 800 && high > 800, "low {low} high {high}");
    }

    #[test]
    fn below_inclusive_reaches_both_ends_of_small_ranges() {
        let mut rng = Rng::seeded(1);
        let mut seen = [false; 3];
        for _ in 0..200 {
            let v = rng.below_inclusive(2);
            seen[usize::try_from(v).unwrap_or(0)] = true;
        }
        assert_eq!(seen, [true; 3]);
        assert_eq!(rng.below_inclusive(0), 0);
    }
}
