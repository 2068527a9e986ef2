//! What repeats from one impression to the next of a batch, written once and copied after:
//! the treatments and labels as JSON strings (by their interned name), the last time and
//! the last change number as digits. A batch of one flag has a few treatments and labels,
//! one change number, and many impressions in the same millisecond (the clock is coarse),
//! so most of an impression's text after its key is copied instead of escaped or formatted.

use super::impression::{write_digits, write_int, write_json_bytes};

/// How many names a cache holds (the oldest is replaced): the treatments and labels of the
/// flags in a batch, usually.
const NAME_SLOTS: usize = 16;

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

/// The texts a batch's encoder reuses. Empty until used (no allocation for a batch whose
/// names are not interned).
#[derive(Default)]
pub(crate) struct WireCache {
    /// Interned name's address, and its text as a JSON string.
    names: Vec<(usize, Box<[u8]>)>,
    /// The slot the next new name replaces once all are taken.
    next: usize,
    time: Option<Digits>,
    change_number: Option<Digits>,
}

impl WireCache {
    /// Writes `bytes` as a JSON string; `id` is the interned name's address, when it has one.
    #[inline]
    pub(crate) fn write_name(&mut self, out: &mut Vec<u8>, id: Option<usize>, bytes: &[u8]) {
        let Some(id) = id else {
            write_json_bytes(out, bytes);
            return;
        };
        if let Some((_, json)) = self.names.iter().find(|(a, _)| *a == id) {
            out.extend_from_slice(json);
            return;
        }
        let start = out.len();
        write_json_bytes(out, bytes);
        let json: Box<[u8]> = out.get(start..).unwrap_or_default().into();
        if self.names.len() < NAME_SLOTS {
            self.names.push((id, json));
        } else if let Some(slot) = self.names.get_mut(self.next) {
            *slot = (id, json);
            self.next = (self.next + 1) % NAME_SLOTS;
        }
    }

    /// Writes the time, in epoch milliseconds.
    #[inline]
    pub(crate) fn write_time(&mut self, out: &mut Vec<u8>, value: i64) {
        write_cached(&mut self.time, out, value);
    }

    /// Writes the change number.
    #[inline]
    pub(crate) fn write_change_number(&mut self, out: &mut Vec<u8>, value: i64) {
        write_cached(&mut self.change_number, out, value);
    }
}

#[inline]
fn write_cached(last: &mut Option<Digits>, out: &mut Vec<u8>, value: i64) {
    match last {
        Some(d) if d.value == value => write_digits(out, d.digits()),
        _ => {
            let start = out.len();
            write_int(out, value);
            *last = Some(Digits::new(value, out.get(start..).unwrap_or_default()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_text_is_the_text_written_afresh() {
        let mut cache = WireCache::default();
        let names: [&[u8]; 4] = [b"on", b"say \"hi\"\n", b"off", b""];
        let numbers = [
            1_700_000_000_000,
            1_700_000_000_000,
            -1,
            0,
            i64::MIN,
            i64::MAX,
            42,
        ];
        for round in 0..3 {
            // More names than slots, so that slots are replaced and found again.
            for id in 0..2 * NAME_SLOTS {
                let bytes = names[id % names.len()];
                let (mut cached, mut fresh) = (Vec::new(), Vec::new());
                cache.write_name(&mut cached, Some(id), bytes);
                write_json_bytes(&mut fresh, bytes);
                assert_eq!(cached, fresh, "round {round}, name {id}");
            }
            for &n in &numbers {
                let (mut cached, mut fresh) = (Vec::new(), Vec::new());
                cache.write_time(&mut cached, n);
                cache.write_change_number(&mut cached, n);
                write_int(&mut fresh, n);
                write_int(&mut fresh, n);
                assert_eq!(cached, fresh, "{n}");
            }
        }
        let mut out = Vec::new();
        cache.write_name(&mut out, None, b"a\"b");
        assert_eq!(out, b"\"a\\\"b\"");
    }
}
