//! What repeats from one impression to the next of a batch, formatted once and copied
//! after: the last time and the last change number, as digits. A batch of one flag has one
//! change number, and many impressions in the same millisecond (the clock is coarse). (The
//! treatments and labels need no cache: an interned name holds its JSON text.)

use super::impression::{write_digits, write_int};

/// The room an `i64` takes in decimal.
const DIGITS: usize = 20;

/// A number and its text.
#[derive(Clone, Copy)]
struct Digits {
    value: i64,
    len: u8,
    text: [u8; DIGITS],
}

impl Digits {
    /// `value`, whose decimal text is `digits`.
    fn new(value: i64, digits: &[u8]) -> Digits {
        let mut text = [0; DIGITS];
        let len = digits.len().min(DIGITS);
        text[..len].copy_from_slice(&digits[..len]);
        Digits {
            value,
            len: len as u8,
            text,
        }
    }

    fn digits(&self) -> &[u8] {
        &self.text[..usize::from(self.len)]
    }
}

/// The numbers a batch's encoder reuses.
#[derive(Default)]
pub(crate) struct WireCache {
    time: Option<Digits>,
    change_number: Option<Digits>,
}

impl WireCache {
    /// Writes the time, in epoch milliseconds.
    #[inline]
    pub(crate) fn write_time(&mut self, out: &mut Vec<u8>, value: i64) {
        write_cached(&mut self.time, out, value);
    }

    /// Writes a previous time (`pt`): near the batch's times, so usually the last time's
    /// text with its last digits replaced. It leaves the cache as it is.
    #[inline]
    pub(crate) fn write_previous_time(&self, out: &mut Vec<u8>, value: i64) {
        match &self.time {
            Some(d) if near(d, value) => {
                write_digits(out, d.digits());
                set_tail(out, low_digits(value));
            }
            _ => write_int(out, value),
        }
    }

    /// Writes the change number.
    #[inline]
    pub(crate) fn write_change_number(&mut self, out: &mut Vec<u8>, value: i64) {
        write_cached(&mut self.change_number, out, value);
    }
}

/// The low digits a near number may differ in ([`near`]).
const LOW: i64 = 10_000;

/// Writes `value`: the cached text when it is the cached number, the cached text with its
/// last four digits replaced when it differs from it only there, else formatted afresh; the
/// cache then holds `value`.
#[inline(always)]
fn write_cached(last: &mut Option<Digits>, out: &mut Vec<u8>, value: i64) {
    match last {
        Some(d) if d.value == value => write_digits(out, d.digits()),
        Some(d) if near(d, value) => {
            d.set_low(value);
            write_digits(out, d.digits());
        }
        _ => {
            let start = out.len();
            write_int(out, value);
            *last = Some(Digits::new(value, out.get(start..).unwrap_or_default()));
        }
    }
}

/// Whether `value` and `d` have the same digits but the last four (both at least
/// [`LOW`], so that those four are all there, leading zeros included).
#[inline(always)]
fn near(d: &Digits, value: i64) -> bool {
    value >= LOW && d.value >= LOW && value / LOW == d.value / LOW
}

/// The last four digits of `value`, leading zeros included.
#[inline(always)]
fn low_digits(value: i64) -> [u8; 4] {
    let low = value.rem_euclid(LOW) as u32;
    let (high, low) = (low / 100, low % 100);
    [high / 10, high % 10, low / 10, low % 10].map(|d| b'0' + d as u8)
}

/// Replaces the last four bytes of `text` (at least four long) with `low`.
#[inline(always)]
fn set_tail(text: &mut [u8], low: [u8; 4]) {
    if let Some(tail) = text.last_chunk_mut::<4>() {
        *tail = low;
    }
}

impl Digits {
    /// Becomes `value`, which is [`near`] it.
    #[inline(always)]
    fn set_low(&mut self, value: i64) {
        let len = usize::from(self.len);
        set_tail(
            self.text.get_mut(..len).unwrap_or_default(),
            low_digits(value),
        );
        self.value = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_text_is_the_text_written_afresh() {
        let mut cache = WireCache::default();
        // Equal, near (the last four digits apart, across a carry, with zeros), far, and
        // the edges of the near test.
        let numbers = [
            1_700_000_000_000,
            1_700_000_000_000,
            1_700_000_009_999,
            1_700_000_010_000,
            1_700_000_010_001,
            1_700_000_000_001,
            -1,
            0,
            9_999,
            10_000,
            19_999,
            10_001,
            -10_001,
            -10_002,
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            i64::MAX - 5,
            42,
        ];
        for _ in 0..3 {
            for &n in &numbers {
                for &pt in &numbers {
                    let (mut cached, mut fresh) = (Vec::new(), Vec::new());
                    cache.write_time(&mut cached, n);
                    cache.write_previous_time(&mut cached, pt);
                    cache.write_change_number(&mut cached, n);
                    write_int(&mut fresh, n);
                    write_int(&mut fresh, pt);
                    write_int(&mut fresh, n);
                    assert_eq!(cached, fresh, "{n} {pt}");
                }
            }
        }
    }
}
