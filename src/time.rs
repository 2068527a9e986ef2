//! The wall clock that stamps impressions and events, and calendar arithmetic for the few
//! places that print times (no date crate needed).

/// The current time in epoch milliseconds, as stamped on impressions and events.
///
/// On Linux this reads the coarse realtime clock (`CLOCK_REALTIME_COARSE`, through the vDSO):
/// about 5 ns against 25 ns or more for the precise clock, which matters on the evaluation
/// path. Its resolution is the kernel's tick (1 to 4 ms; `clock_getres` tells), so a stamp may
/// trail the precise time by up to one tick. Impressions and events read the same clock, so
/// an event tracked after an evaluation never carries an earlier time. Elsewhere it is the
/// standard library's precise clock.
pub(crate) fn now_ms() -> i64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
        t.tv_sec
            .saturating_mul(1000)
            .saturating_add(t.tv_nsec / 1_000_000)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        precise_now_ms()
    }
}

/// The standard library's precise wall clock, epoch milliseconds.
#[cfg(any(test, not(any(target_os = "linux", target_os = "android"))))]
fn precise_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A UTC instant split into calendar fields (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: i64,
    pub(crate) day: i64,
    pub(crate) hour: i64,
    pub(crate) minute: i64,
    pub(crate) second: i64,
    pub(crate) milli: i64,
}

impl Civil {
    /// The calendar fields of `ms` milliseconds since the Unix epoch.
    pub(crate) fn from_epoch_ms(ms: i64) -> Civil {
        let days = ms.div_euclid(86_400_000);
        let in_day = ms.rem_euclid(86_400_000);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: in_day / 3_600_000,
            minute: in_day / 60_000 % 60,
            second: in_day / 1000 % 60,
            milli: in_day % 1000,
        }
    }
}

/// Days from 1970-01-01 to the civil date `year-month-day` (proleptic Gregorian; Howard
/// Hinnant's days_from_civil).
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_is_within_one_tick_of_the_precise_clock() {
        for _ in 0..1000 {
            let before = precise_now_ms();
            let t = now_ms();
            let after = precise_now_ms();
            // One tick is at most 10 ms on any kernel configuration (HZ >= 100).
            assert!(before - 10 <= t && t <= after, "{before} <= {t} <= {after}");
        }
        let mut last = now_ms();
        for _ in 0..10_000 {
            let t = now_ms();
            assert!(t >= last, "the clock went back from {last} to {t}");
            last = t;
        }
    }

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for ms in [
            0,
            -1,
            951_782_400_000,
            1_700_000_000_123,
            -62_135_596_800_000,
            4_102_444_800_000,
        ] {
            let c = Civil::from_epoch_ms(ms);
            assert_eq!(
                days_from_civil(c.year, c.month, c.day),
                ms.div_euclid(86_400_000),
                "{ms}"
            );
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn known_instants() {
        let c = Civil::from_epoch_ms(1_700_000_000_123);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli),
            (2023, 11, 14, 22, 13, 20, 123)
        );
        let c = Civil::from_epoch_ms(-1);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.milli),
            (1969, 12, 31, 23, 999)
        );
        let c = Civil::from_epoch_ms(951_782_400_000); // 2000-02-29
        assert_eq!((c.year, c.month, c.day), (2000, 2, 29));
    }
}
