//! The impression as it waits in the delivery queue: 96 bytes, the flag, treatment and
//! label as interned names (one pointer each), the keys inline. Copying an impression into
//! the queue is most of what recording costs the caller, so the smaller the better.

use super::impression::{Impression, ImpressionFields, Wire, WireName, write_wire};
use super::strategy::{Seen, UNKNOWN_LABEL};
use super::wire_cache::WireCache;
use crate::engine::evaluator::Names;
use crate::intern::Name;

/// A queued impression.
pub(crate) enum Queued {
    /// Every string interned or inline: no allocation.
    Compact(Compact),
    /// What does not fit: keys longer than [`KEY_BYTES`] together, a name that is not
    /// interned (the evaluations of a client that is not ready, or a full table of names),
    /// or impression properties.
    Full(Box<Impression>),
}

/// The bytes of matching and bucketing key held inline.
pub(crate) const KEY_BYTES: usize = 45;

const HAS_BUCKETING_KEY: u8 = 1;
const HAS_CHANGE_NUMBER: u8 = 2;
const HAS_PREVIOUS_TIME: u8 = 4;
/// The flag has `impressionsDisabled`: the impressions worker only counts it.
const DISABLED: u8 = 8;

/// An impression whose strings are interned names and inline keys.
pub(crate) struct Compact {
    flag: Name,
    treatment: Name,
    label: Option<Name>,
    change_number: i64,
    time: i64,
    previous_time: i64,
    /// The matching key is `keys[..key_end]`, the bucketing key `keys[key_end..keys_end]`.
    key_end: u8,
    keys_end: u8,
    bits: u8,
    keys: [u8; KEY_BYTES],
}

impl Queued {
    /// The queued form of the impression of `f`, whose flag, treatment and label are
    /// `names` where they are interned (`names.label` is not read when `f` has no label,
    /// as with labels disabled).
    #[inline(always)]
    pub(crate) fn new(f: &ImpressionFields<'_>, names: Names, previous_time: Option<i64>) -> Self {
        debug_assert!(names.flag.is_none_or(|n| n.as_str() == f.flag));
        debug_assert!(names.treatment.is_none_or(|n| n.as_str() == f.treatment));
        debug_assert!(f.label.is_none() || names.label.is_none_or(|n| Some(n.as_str()) == f.label));
        let bucketing = f.bucketing_key.unwrap_or("");
        let keys_end = f.key.len() + bucketing.len();
        let label = match (f.label, names.label) {
            (None, _) => Some(None),
            (Some(_), Some(n)) => Some(Some(n)),
            (Some(_), None) => None,
        };
        match (names.flag, names.treatment, label) {
            (Some(flag), Some(treatment), Some(label))
                if keys_end <= KEY_BYTES && f.properties.is_none() =>
            {
                let mut keys = [0u8; KEY_BYTES];
                if let Some(dst) = keys.get_mut(..f.key.len()) {
                    dst.copy_from_slice(f.key.as_bytes());
                }
                if let Some(dst) = keys.get_mut(f.key.len()..keys_end) {
                    dst.copy_from_slice(bucketing.as_bytes());
                }
                let mut bits = 0;
                if f.bucketing_key.is_some() {
                    bits |= HAS_BUCKETING_KEY;
                }
                if f.change_number.is_some() {
                    bits |= HAS_CHANGE_NUMBER;
                }
                if previous_time.is_some() {
                    bits |= HAS_PREVIOUS_TIME;
                }
                if f.disabled {
                    bits |= DISABLED;
                }
                Queued::Compact(Compact {
                    flag,
                    treatment,
                    label,
                    change_number: f.change_number.unwrap_or(0),
                    time: f.time,
                    previous_time: previous_time.unwrap_or(0),
                    key_end: f.key.len() as u8,
                    keys_end: keys_end as u8,
                    bits,
                    keys,
                })
            }
            _ => {
                let mut i = Impression::new(*f);
                i.set_previous_time(previous_time);
                Queued::Full(Box::new(i))
            }
        }
    }

    /// Flag name.
    pub(crate) fn flag(&self) -> &str {
        match self {
            Queued::Compact(c) => c.flag.as_str(),
            Queued::Full(i) => i.flag(),
        }
    }

    pub(crate) fn set_previous_time(&mut self, pt: Option<i64>) {
        match self {
            Queued::Compact(c) => {
                c.previous_time = pt.unwrap_or(0);
                c.bits = (c.bits & !HAS_PREVIOUS_TIME) | pt.map_or(0, |_| HAS_PREVIOUS_TIME);
            }
            Queued::Full(i) => i.set_previous_time(pt),
        }
    }

    /// What the impressions mode reads of it.
    #[inline]
    pub(crate) fn seen(&self) -> Seen<'_> {
        match self {
            Queued::Compact(c) => Seen {
                key: c.key(),
                key_text: None,
                flag: c.flag.as_str(),
                flag_name: Some(c.flag),
                name_hashes: [
                    c.flag.hash(),
                    c.treatment.hash(),
                    c.label.map_or(UNKNOWN_LABEL, Name::hash),
                ],
                change_number: c.change_number,
                time: c.time,
                disabled: c.bits & DISABLED != 0,
                properties: false,
            },
            Queued::Full(i) => Seen {
                key: i.key().as_bytes(),
                key_text: Some(i.key()),
                flag: i.flag(),
                flag_name: None,
                name_hashes: i.name_hashes(),
                change_number: i.change_number().unwrap_or(0),
                time: i.time(),
                disabled: i.impressions_disabled(),
                properties: i.properties().is_some(),
            },
        }
    }

    /// The bytes of its strings, for the batch size estimate.
    pub(crate) fn string_bytes(&self) -> usize {
        match self {
            Queued::Compact(c) => {
                usize::from(c.keys_end)
                    + c.flag.as_str().len()
                    + c.treatment.as_str().len()
                    + c.label.map_or(0, |l| l.as_str().len())
            }
            Queued::Full(i) => i.heap_bytes(),
        }
    }

    /// Writes the impression as an item of `testImpressions/bulk`.
    pub(crate) fn write_wire(&self, out: &mut Vec<u8>, cache: &mut WireCache) {
        match self {
            Queued::Compact(c) => write_wire(
                out,
                cache,
                &Wire {
                    key: c.key(),
                    bucketing_key: (c.bits & HAS_BUCKETING_KEY != 0).then(|| c.bucketing_key()),
                    treatment: WireName::Interned(c.treatment),
                    label: c.label.map(WireName::Interned),
                    properties: None,
                    time: c.time,
                    change_number: c.change_number,
                    previous_time: (c.bits & HAS_PREVIOUS_TIME != 0).then_some(c.previous_time),
                },
            ),
            Queued::Full(i) => i.write_wire(out, cache),
        }
    }

    /// The impression, whole.
    #[cfg(test)]
    pub(crate) fn to_impression(&self) -> Impression {
        match self {
            Queued::Compact(c) => {
                let key = std::str::from_utf8(c.key()).unwrap_or_default();
                let bucketing = std::str::from_utf8(c.bucketing_key()).unwrap_or_default();
                let mut i = Impression::new(ImpressionFields {
                    key,
                    bucketing_key: (c.bits & HAS_BUCKETING_KEY != 0).then_some(bucketing),
                    flag: c.flag.as_str(),
                    treatment: c.treatment.as_str(),
                    label: c.label.map(Name::as_str),
                    change_number: (c.bits & HAS_CHANGE_NUMBER != 0).then_some(c.change_number),
                    time: c.time,
                    disabled: c.bits & DISABLED != 0,
                    properties: None,
                });
                i.set_previous_time((c.bits & HAS_PREVIOUS_TIME != 0).then_some(c.previous_time));
                i
            }
            Queued::Full(i) => (**i).clone(),
        }
    }
}

impl Compact {
    fn key(&self) -> &[u8] {
        self.keys
            .get(..usize::from(self.key_end))
            .unwrap_or_default()
    }

    fn bucketing_key(&self) -> &[u8] {
        self.keys
            .get(usize::from(self.key_end)..usize::from(self.keys_end))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intern::intern;

    fn fields<'a>(key: &'a str, bucketing_key: Option<&'a str>) -> ImpressionFields<'a> {
        ImpressionFields {
            key,
            bucketing_key,
            flag: "queued-test-flag",
            treatment: "on",
            label: Some("queued-test-rule"),
            change_number: Some(42),
            time: 1_700_000_000_000,
            disabled: false,
            properties: None,
        }
    }

    fn names() -> Names {
        Names {
            flag: intern("queued-test-flag"),
            treatment: intern("on"),
            label: intern("queued-test-rule"),
        }
    }

    fn wire(q: &Queued) -> String {
        let mut out = Vec::new();
        q.write_wire(&mut out, &mut WireCache::default());
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn a_queued_impression_takes_96_bytes_and_its_slot_112() {
        assert_eq!(size_of::<Queued>(), 96);
        assert_eq!(crate::delivery::slot_bytes::<Queued>(), 96 + 16);
    }

    #[test]
    fn compact_and_full_impressions_are_the_same_impression() {
        let long = "k".repeat(KEY_BYTES);
        let cases: [(ImpressionFields<'_>, Option<i64>); 6] = [
            (fields("ann", None), None),
            (
                ImpressionFields {
                    disabled: true,
                    ..fields("dan", None)
                },
                None,
            ),
            (fields("ann", Some("bucket\"7")), Some(1_699_999_999_000)),
            (fields("", None), None),
            (fields(&long, None), Some(5)),
            (
                ImpressionFields {
                    label: None,
                    change_number: None,
                    ..fields("bob", Some(""))
                },
                None,
            ),
        ];
        for (f, pt) in cases {
            let compact = Queued::new(&f, names(), pt);
            assert!(matches!(compact, Queued::Compact(_)), "{f:?}");
            let mut whole = Impression::new(f);
            whole.set_previous_time(pt);
            assert_eq!(compact.to_impression(), whole);
            let full = Queued::Full(Box::new(whole.clone()));
            assert_eq!(wire(&compact), wire(&full));
            assert_eq!(compact.string_bytes(), whole.heap_bytes());
            let (c, w) = (compact.seen(), full.seen());
            assert_eq!(
                (c.key, c.flag, c.name_hashes, c.change_number, c.time),
                (w.key, w.flag, w.name_hashes, w.change_number, w.time)
            );
            assert_eq!((c.disabled, c.properties), (w.disabled, w.properties));
            assert_eq!(c.flag_name.map(Name::as_str), Some(w.flag));
        }
    }

    #[test]
    fn what_does_not_fit_is_queued_whole() {
        let long = "k".repeat(KEY_BYTES + 1);
        let split = ("k".repeat(KEY_BYTES - 2), "bbb".to_string());
        let uninterned = Names {
            label: None,
            ..names()
        };
        let cases: [(ImpressionFields<'_>, Names); 5] = [
            (fields(&long, None), names()),
            (fields(&split.0, Some(&split.1)), names()),
            (fields("ann", None), uninterned),
            (
                fields("ann", None),
                Names {
                    flag: None,
                    ..names()
                },
            ),
            (
                ImpressionFields {
                    properties: Some(r#"{"p":1}"#),
                    ..fields("ann", None)
                },
                names(),
            ),
        ];
        for (f, n) in cases {
            let q = Queued::new(&f, n, Some(9));
            assert!(matches!(q, Queued::Full(_)), "{f:?}");
            let mut whole = Impression::new(f);
            whole.set_previous_time(Some(9));
            assert_eq!(q.to_impression(), whole);
        }
    }

    #[test]
    fn previous_time_is_set_and_cleared() {
        let mut q = Queued::new(&fields("ann", None), names(), None);
        assert!(!wire(&q).contains("\"pt\""));
        q.set_previous_time(Some(77));
        assert!(wire(&q).ends_with(",\"pt\":77}"), "{}", wire(&q));
        q.set_previous_time(None);
        assert!(!wire(&q).contains("\"pt\""));
    }
}
