//! The impression record: one client evaluation, compact in memory.

use std::fmt;

use super::strategy::UNKNOWN_LABEL;
use super::wire_cache::WireCache;
use crate::intern::{Name, name_hash};

/// One evaluation as it is reported: who saw which treatment of which flag, why and when.
///
/// The strings live in one buffer, inside the impression when they fit in
/// [`Impression::INLINE_BYTES`] (a UUID key with a typical flag, treatment and label does),
/// on the heap otherwise: building the usual impression allocates nothing. (The delivery
/// queue holds a smaller form: see [`crate::limits::QUEUED_IMPRESSION_BYTES`].)
#[derive(Clone, PartialEq, Eq)]
pub struct Impression {
    /// key, bucketing key, flag, treatment, label, properties, concatenated.
    buf: Buf,
    /// End offsets of key, bucketing key, flag, treatment, label in `buf` (properties run to
    /// the end).
    ends: [u32; 5],
    /// `HAS_*` and `DISABLED` bits (one byte keeps the impression at 160 bytes).
    bits: u8,
    change_number: i64,
    time: i64,
    previous_time: i64,
}

const HAS_BUCKETING_KEY: u8 = 1;
const HAS_LABEL: u8 = 2;
const HAS_CHANGE_NUMBER: u8 = 4;
const HAS_PREVIOUS_TIME: u8 = 8;
const HAS_PROPERTIES: u8 = 16;
const DISABLED: u8 = 32;

/// The concatenated strings of an impression.
#[derive(Clone, PartialEq, Eq)]
enum Buf {
    /// The first `len` bytes, valid UTF-8 (copied from `&str` parts).
    Inline {
        len: u8,
        bytes: [u8; Impression::INLINE_BYTES],
    },
    Heap(Box<str>),
}

/// Copies `src` into `dst` (of the same length) with fixed-size moves: for the short strings
/// of an impression this is several times faster than a `memcpy` call per string.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    let (mut d, mut s) = (d.into_remainder(), s.remainder());
    for n in [4, 2, 1] {
        if s.len() >= n {
            let (dh, dt) = d.split_at_mut(n);
            let (sh, st) = s.split_at(n);
            dh.copy_from_slice(sh);
            (d, s) = (dt, st);
        }
    }
}

impl Buf {
    fn bytes(&self) -> &[u8] {
        match self {
            Buf::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Buf::Heap(s) => s.as_bytes(),
        }
    }
}

/// The fields of an [`Impression`], for building one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImpressionFields<'a> {
    /// Matching key.
    pub key: &'a str,
    /// Bucketing key, when one was given apart from the matching key.
    pub bucketing_key: Option<&'a str>,
    /// Flag name.
    pub flag: &'a str,
    /// Treatment.
    pub treatment: &'a str,
    /// Label (`None` when labels are disabled).
    pub label: Option<&'a str>,
    /// The flag's change number.
    pub change_number: Option<i64>,
    /// Evaluation time, epoch milliseconds.
    pub time: i64,
    /// Whether the flag has `impressionsDisabled`.
    pub disabled: bool,
    /// The evaluation's impression properties, a JSON object's text.
    pub properties: Option<&'a str>,
}

impl Impression {
    /// Builds an impression.
    pub(crate) fn new(f: ImpressionFields<'_>) -> Impression {
        let parts = [
            f.key,
            f.bucketing_key.unwrap_or(""),
            f.flag,
            f.treatment,
            f.label.unwrap_or(""),
            f.properties.unwrap_or(""),
        ];
        let mut ends = [0u32; 5];
        let mut total = 0;
        for (i, part) in parts.iter().enumerate() {
            total += part.len();
            if let Some(end) = ends.get_mut(i) {
                *end = u32::try_from(total).unwrap_or(u32::MAX);
            }
        }
        // Built in place (no temporary buffer moved into the impression afterwards).
        let mut i = Impression {
            buf: Buf::Inline {
                len: 0,
                bytes: [0u8; Impression::INLINE_BYTES],
            },
            ends,
            bits: [
                (f.bucketing_key.is_some(), HAS_BUCKETING_KEY),
                (f.label.is_some(), HAS_LABEL),
                (f.change_number.is_some(), HAS_CHANGE_NUMBER),
                (f.properties.is_some(), HAS_PROPERTIES),
                (f.disabled, DISABLED),
            ]
            .iter()
            .fold(0, |bits, &(on, bit)| if on { bits | bit } else { bits }),
            change_number: f.change_number.unwrap_or(0),
            time: f.time,
            previous_time: 0,
        };
        match &mut i.buf {
            Buf::Inline { len, bytes } if total <= Impression::INLINE_BYTES => {
                let mut at = 0;
                for part in parts {
                    if let Some(dst) = bytes.get_mut(at..at + part.len()) {
                        copy_short(dst, part.as_bytes());
                    }
                    at += part.len();
                }
                *len = total as u8;
            }
            buf => *buf = Buf::Heap(parts.concat().into_boxed_str()),
        }
        i
    }

    /// Strings up to this many bytes in all (key, bucketing key, flag, treatment, label and
    /// properties) are held inside the impression, without a heap allocation.
    pub const INLINE_BYTES: usize = 104;

    /// The bytes of part `i` (0 key, 1 bucketing key, 2 flag, 3 treatment, 4 label,
    /// 5 properties): a whole `&str` given to [`Impression::new`].
    fn part_bytes(&self, i: usize) -> &[u8] {
        let all = self.buf.bytes();
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).map_or(all.len(), |&e| e as usize),
        };
        let end = self.ends.get(i).map_or(all.len(), |&e| e as usize);
        all.get(start..end).unwrap_or_default()
    }

    fn part(&self, i: usize) -> &str {
        // Always valid: the part was copied whole from a `&str`.
        std::str::from_utf8(self.part_bytes(i)).unwrap_or_default()
    }

    /// Matching key.
    pub fn key(&self) -> &str {
        self.part(0)
    }

    /// Bucketing key, when one was given apart from the matching key.
    pub fn bucketing_key(&self) -> Option<&str> {
        self.has(HAS_BUCKETING_KEY).then(|| self.part(1))
    }

    /// Flag name.
    pub fn flag(&self) -> &str {
        self.part(2)
    }

    /// Treatment.
    pub fn treatment(&self) -> &str {
        self.part(3)
    }

    /// Label; `None` when labels are disabled.
    pub fn label(&self) -> Option<&str> {
        self.has(HAS_LABEL).then(|| self.part(4))
    }

    /// The impression properties given with the evaluation (a JSON object's text), if any.
    pub fn properties(&self) -> Option<&str> {
        self.has(HAS_PROPERTIES).then(|| self.part(5))
    }

    fn has(&self, bit: u8) -> bool {
        self.bits & bit != 0
    }

    /// The flag's change number.
    pub fn change_number(&self) -> Option<i64> {
        self.has(HAS_CHANGE_NUMBER).then_some(self.change_number)
    }

    /// Evaluation time, epoch milliseconds.
    pub fn time(&self) -> i64 {
        self.time
    }

    /// When the same key last saw the same flag, treatment, label and change number (epoch
    /// milliseconds), as far as the dedupe cache remembers.
    pub fn previous_time(&self) -> Option<i64> {
        self.has(HAS_PREVIOUS_TIME).then_some(self.previous_time)
    }

    /// Whether the flag has `impressionsDisabled` (the impression is only counted).
    pub fn impressions_disabled(&self) -> bool {
        self.has(DISABLED)
    }

    /// The [`name_hash`]es of flag, treatment and label (`UNKNOWN` without one), as the
    /// dedupe cache reads them after the key.
    pub(crate) fn name_hashes(&self) -> [u64; 3] {
        [
            name_hash(self.part_bytes(2)),
            name_hash(self.part_bytes(3)),
            if self.has(HAS_LABEL) {
                name_hash(self.part_bytes(4))
            } else {
                UNKNOWN_LABEL
            },
        ]
    }

    pub(crate) fn set_previous_time(&mut self, pt: Option<i64>) {
        self.bits = (self.bits & !HAS_PREVIOUS_TIME) | pt.map_or(0, |_| HAS_PREVIOUS_TIME);
        self.previous_time = pt.unwrap_or(0);
    }

    /// Bytes of its strings (held inline or on the heap).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buf.bytes().len()
    }

    /// Writes the impression as an item of `testImpressions/bulk`.
    pub(crate) fn write_wire(&self, out: &mut Vec<u8>, cache: &mut WireCache) {
        write_wire(
            out,
            cache,
            &Wire {
                key: self.part_bytes(0),
                bucketing_key: self.has(HAS_BUCKETING_KEY).then(|| self.part_bytes(1)),
                treatment: WireName::Bytes(self.part_bytes(3)),
                label: self
                    .has(HAS_LABEL)
                    .then(|| WireName::Bytes(self.part_bytes(4))),
                properties: self.has(HAS_PROPERTIES).then(|| self.part_bytes(5)),
                time: self.time,
                change_number: self.change_number,
                previous_time: self.previous_time(),
            },
        );
    }
}

/// The fields of an item of `testImpressions/bulk`.
pub(crate) struct Wire<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) bucketing_key: Option<&'a [u8]>,
    pub(crate) treatment: WireName<'a>,
    pub(crate) label: Option<WireName<'a>>,
    pub(crate) properties: Option<&'a [u8]>,
    pub(crate) time: i64,
    pub(crate) change_number: i64,
    pub(crate) previous_time: Option<i64>,
}

/// A treatment or label to write: interned (its JSON text is ready), or bytes to escape.
#[derive(Clone, Copy)]
pub(crate) enum WireName<'a> {
    Interned(Name),
    Bytes(&'a [u8]),
}

impl WireName<'_> {
    fn len(self) -> usize {
        match self {
            WireName::Interned(n) => n.json().len(),
            WireName::Bytes(b) => b.len(),
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        match self {
            WireName::Interned(n) => out.extend_from_slice(n.json()),
            WireName::Bytes(b) => write_json_bytes(out, b),
        }
    }
}

/// Writes an item of `testImpressions/bulk`: `{"k","t","m","c","r","b","pt","properties"}`
/// (`r`, `b`, `pt`, `properties` omitted when absent; `properties` is a JSON object's text,
/// sent as a string as the official SDKs do). `cache` holds what the batch's earlier items
/// wrote of their times and change numbers (a `pt` is written from the last time).
pub(crate) fn write_wire(out: &mut Vec<u8>, cache: &mut WireCache, w: &Wire<'_>) {
    // Room for the item unless something needs escaping: one reservation instead of a
    // capacity check growing the buffer along the way.
    let strings = w.key.len()
        + w.treatment.len()
        + w.label.map_or(0, WireName::len)
        + w.bucketing_key.map_or(0, <[u8]>::len)
        + w.properties.map_or(0, <[u8]>::len);
    out.reserve(strings + 128);
    out.extend_from_slice(b"{\"k\":");
    write_json_bytes(out, w.key);
    out.extend_from_slice(b",\"t\":");
    w.treatment.write(out);
    out.extend_from_slice(b",\"m\":");
    cache.write_time(out, w.time);
    out.extend_from_slice(b",\"c\":");
    cache.write_change_number(out, w.change_number);
    if let Some(label) = w.label {
        out.extend_from_slice(b",\"r\":");
        label.write(out);
    }
    if let Some(b) = w.bucketing_key {
        out.extend_from_slice(b",\"b\":");
        write_json_bytes(out, b);
    }
    if let Some(pt) = w.previous_time {
        out.extend_from_slice(b",\"pt\":");
        cache.write_previous_time(out, pt);
    }
    if let Some(p) = w.properties {
        out.extend_from_slice(b",\"properties\":");
        write_json_bytes(out, p);
    }
    out.push(b'}');
}

impl fmt::Debug for Impression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Impression")
            .field("key", &self.key())
            .field("bucketing_key", &self.bucketing_key())
            .field("flag", &self.flag())
            .field("treatment", &self.treatment())
            .field("label", &self.label())
            .field("change_number", &self.change_number())
            .field("time", &self.time)
            .field("previous_time", &self.previous_time())
            .field("impressions_disabled", &self.impressions_disabled())
            .field("properties", &self.properties())
            .finish()
    }
}

/// Appends `s` as a JSON string.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    write_json_bytes(out, s.as_bytes());
}

/// Appends the UTF-8 text `bytes` as a JSON string (only `"`, `\\` and control bytes are
/// escaped; other bytes are copied, so valid UTF-8 stays valid).
pub(crate) fn write_json_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    if !has_escape(bytes) {
        // The usual text (keys, names): one copy between the quotes.
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    out.push(b'"');
    let mut start = 0;
    while let Some((i, b)) = find_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether `b` must be escaped in a JSON string.
#[inline]
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The high bit of each byte of `x` that is below 0x20, `"` or `\\`, and maybe of bytes
/// above such a byte: zero exactly when none of the eight needs escaping (the classic
/// has-zero-byte test on `x - 0x20`, `x ^ '"'` and `x ^ '\\'`, exact as a yes or no).
#[inline(always)]
fn escape_bits(word: &[u8; 8]) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let x = u64::from_ne_bytes(*word);
    // Bytes below 0x20: `x - 0x20` borrows into the byte's high bit (bytes of 0x80 and above
    // have it set already, and are masked out by `!x`).
    (x.wrapping_sub(0x20 * ONES) & !x | has_zero(x ^ QUOTES) | has_zero(x ^ BACKSLASHES)) & HIGHS
}

/// Whether some byte of `bytes` needs escaping. Eight bytes at a time, without a branch
/// a word; the last (partial) word is read as the eight bytes that end the text.
#[inline]
fn has_escape(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| needs_escape(b));
    }
    let mut words = bytes.chunks_exact(8);
    let mut bits = 0;
    for word in &mut words {
        bits |= word.try_into().map_or(0, escape_bits);
    }
    if !words.remainder().is_empty() {
        bits |= bytes.last_chunk::<8>().map_or(0, escape_bits);
    }
    bits != 0
}

/// The first byte at or after `from` that must be escaped, and its index: eight bytes at
/// a time ([`escape_bits`]), then the byte one by one.
#[inline]
fn find_escape(bytes: &[u8], from: usize) -> Option<(usize, u8)> {
    let mut i = from;
    let rest = bytes.get(from..)?;
    let mut words = rest.chunks_exact(8);
    for word in &mut words {
        if word.try_into().map_or(0, escape_bits) != 0
            && let Some((j, &b)) = word.iter().enumerate().find(|(_, b)| needs_escape(**b))
        {
            return Some((i + j, b));
        }
        i += 8;
    }
    words
        .remainder()
        .iter()
        .enumerate()
        .find(|(_, b)| needs_escape(**b))
        .map(|(j, &b)| (i + j, b))
}

/// Appends an integer in decimal.
#[inline]
pub(crate) fn write_int(out: &mut Vec<u8>, v: i64) {
    let mut buf = itoa::Buffer::new();
    write_digits(out, buf.format(v).as_bytes());
}

/// Appends a number's decimal text.
#[inline]
pub(crate) fn write_digits(out: &mut Vec<u8>, digits: &[u8]) {
    // Times and change numbers in milliseconds have 13 digits: a copy of known length is
    // two stores instead of a call to `memcpy`.
    match <&[u8; 13]>::try_from(digits) {
        Ok(ms) => out.extend_from_slice(ms),
        Err(_) => out.extend_from_slice(digits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_read_back_as_written_at_every_offset() {
        let specials = [
            "\"", "\\", "\n", "\r", "\t", "\u{0}", "\u{8}", "\u{c}", "\u{1f}", "é", "€", "😀",
            "\u{7f}",
        ];
        for len in 0..40 {
            for special in specials {
                for at in 0..=len {
                    let mut text: String = "abcdefghijklmnopqrstuvwxyz0123456789ABCD"
                        .chars()
                        .take(len)
                        .collect();
                    text.insert_str(at, special);
                    let mut out = Vec::new();
                    write_json_bytes(&mut out, text.as_bytes());
                    let back: String = serde_json::from_slice(&out).unwrap_or_else(|e| {
                        panic!("{text:?} gave {:?}: {e}", String::from_utf8_lossy(&out))
                    });
                    assert_eq!(back, text);
                    let plain = !text.bytes().any(needs_escape);
                    assert_eq!(plain, out.len() == text.len() + 2, "{text:?}");
                }
            }
        }
        let mut out = Vec::new();
        for v in [0, 7, -7, 1_700_000_000_123, i64::MIN, i64::MAX] {
            out.clear();
            write_int(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    fn imp(label: Option<&str>, b: Option<&str>) -> Impression {
        Impression::new(ImpressionFields {
            key: "k\"1",
            bucketing_key: b,
            flag: "f",
            treatment: "on",
            label,
            change_number: Some(-3),
            time: 1_700_000_000_123,
            disabled: false,
            properties: None,
        })
    }

    #[test]
    fn parts_round_trip() {
        let i = imp(Some("rule"), Some("acct"));
        assert_eq!(i.key(), "k\"1");
        assert_eq!(i.bucketing_key(), Some("acct"));
        assert_eq!(i.flag(), "f");
        assert_eq!(i.treatment(), "on");
        assert_eq!(i.label(), Some("rule"));
        let j = imp(None, None);
        assert_eq!((j.bucketing_key(), j.label()), (None, None));
        let e = imp(Some(""), Some(""));
        assert_eq!((e.bucketing_key(), e.label()), (Some(""), Some("")));
    }

    #[test]
    fn short_strings_are_inline_long_ones_on_the_heap() {
        let long = "é".repeat(60);
        for key in ["k", long.as_str()] {
            let i = Impression::new(ImpressionFields {
                key,
                bucketing_key: Some("b"),
                flag: "flag",
                treatment: "on",
                label: Some("default rule"),
                change_number: None,
                time: 1,
                disabled: true,
                properties: None,
            });
            assert_eq!(matches!(i.buf, Buf::Inline { .. }), key.len() < 90);
            assert_eq!(
                (i.key(), i.bucketing_key(), i.flag(), i.treatment()),
                (key, Some("b"), "flag", "on")
            );
            assert_eq!((i.label(), i.change_number()), (Some("default rule"), None));
            assert!(i.impressions_disabled());
            let mut out = Vec::new();
            i.write_wire(&mut out, &mut WireCache::default());
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["k"], key);
        }
        let exact = "x".repeat(Impression::INLINE_BYTES - 2);
        let i = imp_key(&exact);
        assert!(matches!(i.buf, Buf::Inline { .. }));
        assert_eq!(i.key(), exact);
        let over = "x".repeat(Impression::INLINE_BYTES - 1);
        assert!(matches!(imp_key(&over).buf, Buf::Heap(_)));
        assert!(std::mem::size_of::<Impression>() <= 160);
    }

    #[test]
    fn short_copies_are_exact_for_every_length() {
        let src: Vec<u8> = (1..=40).collect();
        for n in 0..=40 {
            let mut dst = vec![0u8; n];
            copy_short(&mut dst, &src[..n]);
            assert_eq!(dst, &src[..n], "length {n}");
        }
    }

    fn fields<'a>(key: &'a str, label: Option<&'a str>) -> ImpressionFields<'a> {
        ImpressionFields {
            key,
            bucketing_key: None,
            flag: "f",
            treatment: "t",
            label,
            change_number: Some(1),
            time: 1,
            disabled: false,
            properties: None,
        }
    }

    fn imp_key(key: &str) -> Impression {
        Impression::new(ImpressionFields {
            key,
            bucketing_key: None,
            flag: "f",
            treatment: "t",
            label: None,
            change_number: Some(1),
            time: 1,
            disabled: false,
            properties: None,
        })
    }

    #[test]
    fn wire_form_is_valid_json() {
        let mut i = imp(Some("line\nbreak\u{1}"), Some("acct"));
        i.set_previous_time(Some(5));
        let mut out = Vec::new();
        i.write_wire(&mut out, &mut WireCache::default());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"k":"k\"1","t":"on","m":1_700_000_000_123i64,"c":-3,"r":"line\nbreak\u{1}","b":"acct","pt":5})
        );
        let mut out = Vec::new();
        imp(None, None).write_wire(&mut out, &mut WireCache::default());
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"k":"k\"1","t":"on","m":1700000000123,"c":-3}"#
        );
        let with = Impression::new(ImpressionFields {
            properties: Some(r#"{"a":"q\"t"}"#),
            label: Some("rule"),
            ..fields("k", None)
        });
        assert_eq!(
            (with.label(), with.properties()),
            (Some("rule"), Some(r#"{"a":"q\"t"}"#))
        );
        let mut out = Vec::new();
        with.write_wire(&mut out, &mut WireCache::default());
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["properties"], r#"{"a":"q\"t"}"#);
        assert_eq!(imp(None, None).properties(), None);
        let mut out = Vec::new();
        write_int(&mut out, i64::MIN);
        assert_eq!(out, i64::MIN.to_string().as_bytes());
    }
}
