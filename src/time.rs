//! Calendar arithmetic for the few places that print times (no date crate needed).

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

#[cfg(test)]
mod tests {
    use super::*;

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
