//! Attributes: the typed values matchers look at, owned (the coercions matchers apply to
//! them are in [`super::coerce`]; borrowed attributes in [`super::attribute_ref`]).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use super::attribute_string::AttributeString;
use super::{FastMap, head16};

/// One attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// JSON `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string ([`AttributeString`]: inline up to 24 bytes, read as a `str`).
    String(AttributeString),
    /// A point in time, in milliseconds since the Unix epoch (UTC), for `DATETIME` matchers.
    DateTime(i64),
    /// A list (a set, for the set matchers).
    List(Vec<AttributeValue>),
    /// A JSON object (only useful as a key object with a `matchingKey`).
    Object(BTreeMap<String, AttributeValue>),
}

/// The attributes of an evaluation: name to value.
///
/// # Examples
/// ```
/// use splitkit::{Attributes, AttributeValue};
/// let mut attrs = Attributes::new();
/// attrs.insert("plan", "pro");
/// attrs.insert("age", 42);
/// attrs.insert("beta", true);
/// attrs.insert("tags", ["a", "b"]);
/// attrs.insert("signup", AttributeValue::DateTime(1_700_000_000_000));
/// assert_eq!(attrs.get("plan"), Some(&AttributeValue::String("pro".into())));
///
/// let from_json = Attributes::from_json(&serde_json::json!({"plan": "pro", "age": 42}))?;
/// assert_eq!(from_json.len(), 2);
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Attributes {
    repr: Repr,
}

/// Up to this many attributes are kept in a list and found by scanning it (a few length and
/// byte comparisons, cheaper than hashing the name); more go to a hash map.
const SMALL_ATTRIBUTES: usize = 16;

/// The room a list takes at its first entry: a typical set of attributes, in one allocation.
const FIRST_CAPACITY: usize = 4;

/// How [`Attributes`] holds its entries: the common few in a list, in insertion order, with
/// short names inline (building one costs no allocation per name), or a hash map.
#[derive(Clone)]
enum Repr {
    Small(Vec<(AttributeName, AttributeValue)>),
    Map(FastMap<String, AttributeValue>),
}

impl Default for Repr {
    fn default() -> Repr {
        Repr::Small(Vec::new())
    }
}

/// An attribute name: its length and first 16 bytes inline (all of most names), the whole
/// name on the heap only when it is longer. A lookup compares the length and the first 16
/// bytes as numbers ([`head16`]).
#[derive(Clone)]
struct AttributeName {
    len: usize,
    /// The first 16 bytes, zero-padded.
    head: [u8; 16],
    /// The whole name, when longer than 16 bytes.
    long: Option<Box<str>>,
}

impl AttributeName {
    /// The name `name`, whose [`head16`] is `head`.
    #[inline]
    fn new(name: &str, head: u128) -> AttributeName {
        AttributeName {
            len: name.len(),
            head: head.to_le_bytes(),
            long: (name.len() > 16).then(|| name.into()),
        }
    }

    /// Whether this is the name `s`, whose [`head16`] is `head`.
    #[inline(always)]
    fn is(&self, s: &[u8], head: u128) -> bool {
        self.len == s.len()
            && u128::from_le_bytes(self.head) == head
            && (s.len() <= 16
                || self
                    .long
                    .as_deref()
                    .is_some_and(|l| l.as_bytes().get(16..) == s.get(16..)))
    }

    fn as_str(&self) -> &str {
        match &self.long {
            Some(l) => l,
            // Only whole `&str`s of at most 16 bytes are copied in (see `new`), so this is
            // always UTF-8.
            None => self
                .head
                .get(..self.len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default(),
        }
    }
}

/// An attribute name a matcher reads, with its [`head16`] computed once, when the matcher is
/// compiled, instead of at every evaluation.
#[derive(Debug)]
pub(crate) struct AttributeKey {
    name: Box<str>,
    head: u128,
}

impl AttributeKey {
    pub(crate) fn new(name: &str) -> AttributeKey {
        AttributeKey {
            name: name.into(),
            head: head16(name.as_bytes()),
        }
    }

    /// Whether `name` (a name the caller lent) is this one: lengths first, so that most
    /// other names are passed over with one comparison.
    #[inline(always)]
    pub(crate) fn is(&self, name: &str) -> bool {
        let (a, b) = (name.as_bytes(), self.name.as_bytes());
        a.len() == b.len()
            && head16(a) == self.head
            && (a.len() <= 16 || a.get(16..) == b.get(16..))
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Two sets of attributes are equal when they have the same names with equal values,
/// whatever the order they were inserted in.
impl PartialEq for Attributes {
    fn eq(&self, other: &Attributes) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Attributes {
    /// No attributes, as a constant.
    pub(crate) const EMPTY: Attributes = Attributes {
        repr: Repr::Small(Vec::new()),
    };

    /// No attributes.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// Sets an attribute, replacing any previous value of that name.
    #[inline(always)]
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl Into<AttributeValue>) {
        self.insert_str(name.as_ref(), value.into());
    }

    /// The common case in line (a new name, or a name set again, in the list), the move to
    /// a map out of line.
    #[inline(always)]
    fn insert_str(&mut self, name: &str, value: AttributeValue) {
        if let Repr::Small(entries) = &mut self.repr {
            let (bytes, head) = (name.as_bytes(), head16(name.as_bytes()));
            if let Some(slot) = entries.iter_mut().find(|(n, _)| n.is(bytes, head)) {
                slot.1 = value;
                return;
            }
            if entries.len() < SMALL_ATTRIBUTES {
                if entries.capacity() == 0 {
                    entries.reserve_exact(FIRST_CAPACITY);
                }
                entries.push((AttributeName::new(name, head), value));
                return;
            }
        }
        self.insert_in_map(name, value);
    }

    /// Inserts into the map, moving the list's entries there first.
    #[cold]
    fn insert_in_map(&mut self, name: &str, value: AttributeValue) {
        match &mut self.repr {
            Repr::Small(entries) => {
                let mut map: FastMap<String, AttributeValue> = entries
                    .drain(..)
                    .map(|(n, v)| (n.as_str().to_string(), v))
                    .collect();
                map.insert(name.to_string(), value);
                self.repr = Repr::Map(map);
            }
            Repr::Map(map) => {
                map.insert(name.to_string(), value);
            }
        }
    }

    /// Builder form of [`Attributes::insert`].
    #[inline(always)]
    pub fn with(mut self, name: impl AsRef<str>, value: impl Into<AttributeValue>) -> Self {
        self.insert(name, value);
        self
    }

    /// The value of an attribute.
    #[inline(always)]
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.find(name, head16(name.as_bytes()))
    }

    /// The value of the attribute a matcher reads ([`Attributes::get`] without hashing or
    /// reading the name's head again).
    #[inline(always)]
    pub(crate) fn get_key(&self, key: &AttributeKey) -> Option<&AttributeValue> {
        self.find(&key.name, key.head)
    }

    /// The value of the attribute `name`, whose [`head16`] is `head`.
    #[inline(always)]
    fn find(&self, name: &str, head: u128) -> Option<&AttributeValue> {
        match &self.repr {
            Repr::Small(entries) => entries
                .iter()
                .find(|(n, _)| n.is(name.as_bytes(), head))
                .map(|(_, v)| v),
            Repr::Map(map) => map.get(name),
        }
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Small(entries) => entries.len(),
            Repr::Map(map) => map.len(),
        }
    }

    /// True when there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over the attributes (in no particular order).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        let (small, map) = match &self.repr {
            Repr::Small(entries) => (Some(entries), None),
            Repr::Map(map) => (None, Some(map)),
        };
        small
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v))
            .chain(map.into_iter().flatten().map(|(k, v)| (k.as_str(), v)))
    }

    /// Builds attributes from a JSON object.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] when `value` is not a JSON object (or `null`, which
    /// gives no attributes).
    pub fn from_json(value: &serde_json::Value) -> crate::Result<Attributes> {
        match value {
            serde_json::Value::Null => Ok(Attributes::new()),
            serde_json::Value::Object(obj) => Ok(obj
                .iter()
                .map(|(k, v)| (k.as_str(), AttributeValue::from(v)))
                .collect()),
            other => Err(crate::Error::InvalidInput(format!(
                "attributes must be a JSON object, got {other}"
            ))),
        }
    }
}

impl<K: AsRef<str>, V: Into<AttributeValue>> FromIterator<(K, V)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut attrs = Attributes::new();
        for (k, v) in iter {
            attrs.insert(k, v);
        }
        attrs
    }
}

impl From<&serde_json::Value> for AttributeValue {
    fn from(v: &serde_json::Value) -> Self {
        use serde_json::Value;
        match v {
            Value::Null => AttributeValue::Null,
            Value::Bool(b) => AttributeValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => AttributeValue::Int(i),
                None => AttributeValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => AttributeValue::String(s.as_str().into()),
            Value::Array(items) => AttributeValue::List(items.iter().map(Into::into).collect()),
            Value::Object(obj) => AttributeValue::Object(
                obj.iter()
                    .map(|(k, v)| (k.clone(), AttributeValue::from(v)))
                    .collect(),
            ),
        }
    }
}

impl From<serde_json::Value> for AttributeValue {
    fn from(v: serde_json::Value) -> Self {
        AttributeValue::from(&v)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for AttributeValue {
            fn from(v: $t) -> Self { AttributeValue::Int(i64::from(v)) }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<f64> for AttributeValue {
    fn from(v: f64) -> Self {
        AttributeValue::Float(v)
    }
}
impl From<f32> for AttributeValue {
    fn from(v: f32) -> Self {
        AttributeValue::Float(f64::from(v))
    }
}
impl From<bool> for AttributeValue {
    fn from(v: bool) -> Self {
        AttributeValue::Bool(v)
    }
}
impl From<&str> for AttributeValue {
    #[inline]
    fn from(v: &str) -> Self {
        AttributeValue::String(v.into())
    }
}
impl From<String> for AttributeValue {
    fn from(v: String) -> Self {
        AttributeValue::String(v.into())
    }
}
impl From<&String> for AttributeValue {
    fn from(v: &String) -> Self {
        AttributeValue::String(v.into())
    }
}
impl From<AttributeString> for AttributeValue {
    fn from(v: AttributeString) -> Self {
        AttributeValue::String(v)
    }
}
impl From<std::time::SystemTime> for AttributeValue {
    fn from(v: std::time::SystemTime) -> Self {
        AttributeValue::DateTime(epoch_ms(v))
    }
}

/// A point in time as milliseconds since the Unix epoch (negative before it).
pub(crate) fn epoch_ms(t: std::time::SystemTime) -> i64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}
impl<T: Into<AttributeValue>> From<Vec<T>> for AttributeValue {
    fn from(v: Vec<T>) -> Self {
        AttributeValue::List(v.into_iter().map(Into::into).collect())
    }
}
/// A list from an array, such as `["beta", "mobile"]`: one allocation, for the list.
impl<T: Into<AttributeValue>, const N: usize> From<[T; N]> for AttributeValue {
    fn from(v: [T; N]) -> Self {
        AttributeValue::List(v.into_iter().map(Into::into).collect())
    }
}
impl<T: Clone + Into<AttributeValue>> From<&[T]> for AttributeValue {
    fn from(v: &[T]) -> Self {
        AttributeValue::List(v.iter().cloned().map(Into::into).collect())
    }
}
impl<T: Into<AttributeValue>> From<HashSet<T>> for AttributeValue {
    fn from(v: HashSet<T>) -> Self {
        AttributeValue::List(v.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_keep_every_name_whatever_their_number_and_length() {
        let long = "a_rather_long_attribute_name_past_the_inline_bytes";
        let mut a = Attributes::new();
        a.insert("plan", "free");
        a.insert(long, 1);
        a.insert("", true);
        a.insert("plan", "pro");
        assert_eq!(a.len(), 3);
        assert_eq!(a.get("plan"), Some(&AttributeValue::String("pro".into())));
        assert_eq!(a.get(long), Some(&AttributeValue::Int(1)));
        assert_eq!(a.get(""), Some(&AttributeValue::Bool(true)));
        assert_eq!(a.get("pla"), None);
        assert_eq!(a.get("plan "), None);
        // Past the list's size: the same answers from the map.
        let names: Vec<String> = (0..40).map(|i| format!("attr_{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            a.insert(n, i as i64);
            a.insert(n.as_str(), i as i64 + 1);
        }
        a.insert("plan", "enterprise");
        assert_eq!(a.len(), 43);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(a.get(n), Some(&AttributeValue::Int(i as i64 + 1)), "{n}");
        }
        assert_eq!(a.get("plan"), Some(&AttributeValue::from("enterprise")));
        assert_eq!(a.get(long), Some(&AttributeValue::Int(1)));
        assert_eq!(a.iter().count(), 43);
    }

    #[test]
    fn attributes_equal_whatever_the_order() {
        let a = Attributes::new().with("x", 1).with("y", "two");
        let b = Attributes::new().with("y", "two").with("x", 1);
        assert_eq!(a, b);
        assert_ne!(a, b.clone().with("z", 3));
        assert_ne!(a, Attributes::new().with("x", 1).with("y", "three"));
        let many: Attributes = (0..20).map(|i| (format!("k{i}"), i)).collect();
        let reversed: Attributes = (0..20).rev().map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(many, reversed);
        assert_eq!(
            format!("{:?}", Attributes::new().with("x", 1)),
            "{\"x\": Int(1)}"
        );
    }
}
