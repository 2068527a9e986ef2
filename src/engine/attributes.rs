//! Attributes: the typed values matchers look at, and the coercions applied to them.
//!
//! Where the official SDKs disagree on how an attribute of an unexpected type is read, splitkit
//! follows the JavaScript SDK: numbers are read from numeric strings, booleans and `null`
//! (`true` is 1, `null` is 0); strings are read from numbers and booleans; sets are read from
//! lists only; booleans from booleans or the strings `"true"`/`"false"` in any case.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::ops::Deref;

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
        let ms = match v.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        AttributeValue::DateTime(ms)
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

// ---- coercions (JavaScript SDK semantics) ----

/// Room for any number as text: an `i64` takes at most 20 bytes, a JavaScript number 25
/// (`-0.000001234567890123456`), Rust's `{:e}` of an `f64` 23.
const INLINE: usize = 32;

/// A short string formatted on the stack.
#[derive(Clone, Copy)]
pub(crate) struct InlineStr {
    len: usize,
    buf: [u8; INLINE],
}

impl InlineStr {
    fn new() -> InlineStr {
        InlineStr {
            len: 0,
            buf: [0; INLINE],
        }
    }

    #[inline]
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever copied in (see `write_str`), so this is always UTF-8.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for InlineStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// An attribute read as a string without allocating: borrowed from the value, or a number
/// formatted on the stack. Only a list read as a string (its items joined) is built on the
/// heap.
pub(crate) enum Text<'a> {
    Borrowed(&'a str),
    Inline(InlineStr),
    Owned(String),
}

impl Text<'_> {
    /// `i64` (or any short `Display`) as text.
    fn display(v: impl fmt::Display) -> Text<'static> {
        let mut s = InlineStr::new();
        match write!(s, "{v}") {
            Ok(()) => Text::Inline(s),
            Err(_) => Text::Owned(v.to_string()),
        }
    }

    /// `String(n)` of a JavaScript number.
    fn js_number(n: f64) -> Text<'static> {
        let mut s = InlineStr::new();
        match write_js_number(n, &mut s) {
            Ok(()) => Text::Inline(s),
            Err(_) => Text::Owned(js_number_to_string(n)),
        }
    }
}

impl Deref for Text<'_> {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Inline(s) => s.as_str(),
            Text::Owned(s) => s,
        }
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// The value as a number, or `None` when it is not one (`NaN` in JavaScript).
pub(crate) fn to_number(v: &AttributeValue) -> Option<f64> {
    let n = match v {
        AttributeValue::Int(i) => *i as f64,
        AttributeValue::Float(f) => *f,
        AttributeValue::DateTime(ms) => *ms as f64,
        AttributeValue::Bool(b) => f64::from(u8::from(*b)),
        AttributeValue::Null => 0.0,
        AttributeValue::String(s) => js_string_to_number(s),
        AttributeValue::List(_) => js_string_to_number(&join_for_primitive(v)),
        AttributeValue::Object(_) => f64::NAN,
    };
    if n.is_nan() { None } else { Some(n) }
}

/// The value as a string, or `None` when it gives an empty string or cannot be one.
///
/// Allocates only for a list of more than one item (its string items joined by commas).
#[inline]
pub(crate) fn to_str(v: &AttributeValue) -> Option<Text<'_>> {
    let s: Text<'_> = match v {
        AttributeValue::String(s) => Text::Borrowed(s.as_str()),
        AttributeValue::Null => return None,
        AttributeValue::Bool(b) => Text::Borrowed(if *b { "true" } else { "false" }),
        AttributeValue::Int(i) => Text::display(i),
        // The JavaScript SDK's `toString` keeps the sign of a negative zero.
        AttributeValue::Float(f) if *f == 0.0 && f.is_sign_negative() => Text::Borrowed("-0"),
        AttributeValue::Float(f) => Text::js_number(*f),
        AttributeValue::DateTime(ms) => Text::display(ms),
        // Only the string items show, joined by commas.
        AttributeValue::List(items) => match items.as_slice() {
            [] => return None,
            [AttributeValue::String(s)] => Text::Borrowed(s.as_str()),
            [_] => return None,
            _ => {
                let parts: Vec<&str> = items
                    .iter()
                    .map(|i| match i {
                        AttributeValue::String(s) => s.as_str(),
                        _ => "",
                    })
                    .collect();
                Text::Owned(parts.join(","))
            }
        },
        AttributeValue::Object(obj) => match obj.get("matchingKey") {
            Some(inner @ AttributeValue::String(_)) => return to_str(inner),
            _ => return None,
        },
    };
    if s.is_empty() { None } else { Some(s) }
}

/// The items of the value read as a set, or `None` unless it is a non-empty list.
///
/// The set is the items as strings ([`set_item`]); items may repeat, which no set matcher
/// minds (they only ask whether each item, or each rule value, is present on the other side).
pub(crate) fn set_items(v: &AttributeValue) -> Option<&[AttributeValue]> {
    match v {
        AttributeValue::List(items) if !items.is_empty() => Some(items),
        _ => None,
    }
}

/// One item of a list read as a set: `item + ''` in JavaScript. Allocates only for a nested
/// list.
pub(crate) fn set_item(v: &AttributeValue) -> Text<'_> {
    match v {
        AttributeValue::String(s) => Text::Borrowed(s.as_str()),
        AttributeValue::Null => Text::Borrowed("null"),
        AttributeValue::Bool(b) => Text::Borrowed(if *b { "true" } else { "false" }),
        AttributeValue::Int(i) => Text::display(i),
        AttributeValue::Float(f) => Text::js_number(*f),
        AttributeValue::DateTime(ms) => Text::display(ms),
        AttributeValue::List(_) => Text::Owned(join_for_primitive(v)),
        AttributeValue::Object(_) => Text::Borrowed("[object Object]"),
    }
}

/// The value as a boolean: a boolean, or the string `true`/`false` in any case.
pub(crate) fn to_bool(v: &AttributeValue) -> Option<bool> {
    match v {
        AttributeValue::Bool(b) => Some(*b),
        AttributeValue::String(s) => {
            if s.eq_ignore_ascii_case("true") {
                Some(true)
            } else if s.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// `value + ''` in JavaScript.
fn js_concat_string(v: &AttributeValue) -> Cow<'_, str> {
    match set_item(v) {
        Text::Borrowed(s) => Cow::Borrowed(s),
        Text::Inline(s) => Cow::Owned(s.as_str().to_string()),
        Text::Owned(s) => Cow::Owned(s),
    }
}

/// `Array.prototype.join(",")`, as used when an array is converted to a primitive
/// (`null` items become empty strings).
fn join_for_primitive(v: &AttributeValue) -> String {
    match v {
        AttributeValue::List(items) => items
            .iter()
            .map(|i| match i {
                AttributeValue::Null => Cow::Borrowed(""),
                other => js_concat_string(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => js_concat_string(other).into_owned(),
    }
}

/// `Number(s)` in JavaScript.
pub(crate) fn js_string_to_number(s: &str) -> f64 {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    let radix = |prefix: &[&str], radix: u32| -> Option<f64> {
        let rest = prefix.iter().find_map(|p| t.strip_prefix(p))?;
        if rest.is_empty() || !rest.chars().all(|c| c.is_digit(radix)) {
            return Some(f64::NAN);
        }
        Some(
            rest.chars()
                .filter_map(|c| c.to_digit(radix))
                .fold(0f64, |acc, d| acc * f64::from(radix) + f64::from(d)),
        )
    };
    if let Some(n) = radix(&["0x", "0X"], 16)
        .or_else(|| radix(&["0o", "0O"], 8))
        .or_else(|| radix(&["0b", "0B"], 2))
    {
        return n;
    }
    let (sign, body) = match t.as_bytes()[0] {
        b'+' => (1.0, &t[1..]),
        b'-' => (-1.0, &t[1..]),
        _ => (1.0, t),
    };
    if body == "Infinity" {
        return sign * f64::INFINITY;
    }
    if !is_decimal_literal(body) {
        return f64::NAN;
    }
    body.parse::<f64>().map(|n| sign * n).unwrap_or(f64::NAN)
}

/// `digits [. digits] [e[+-]digits]` or `. digits [exponent]`, as JavaScript's StrDecimalLiteral.
fn is_decimal_literal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let int_digits = {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i - start
    };
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - start;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

/// `String(n)` for a JavaScript number.
pub(crate) fn js_number_to_string(n: f64) -> String {
    let mut s = String::new();
    // Writing to a `String` cannot fail.
    let _ = write_js_number(n, &mut s);
    s
}

/// Writes `String(n)` for a JavaScript number to `out`, without allocating.
fn write_js_number(n: f64, out: &mut impl fmt::Write) -> fmt::Result {
    if n.is_nan() {
        return out.write_str("NaN");
    }
    if n.is_infinite() {
        return out.write_str(if n > 0.0 { "Infinity" } else { "-Infinity" });
    }
    if n == 0.0 {
        return out.write_str("0");
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}` formatting.
    let mut sci = InlineStr::new();
    write!(sci, "{:e}", n.abs())?;
    let sci = sci.as_str();
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits = InlineStr::new();
    for part in mantissa.split('.') {
        digits.write_str(part)?;
    }
    let digits = digits.as_str();
    let k = digits.len() as i32;
    let point = exp + 1; // position of the decimal point relative to the digits
    let zeros = |out: &mut dyn fmt::Write, n: i32| (0..n).try_for_each(|_| out.write_char('0'));
    if n < 0.0 {
        out.write_char('-')?;
    }
    if k <= point && point <= 21 {
        out.write_str(digits)?;
        zeros(out, point - k)
    } else if 0 < point && point <= 21 {
        let (a, b) = digits.split_at(point as usize);
        write!(out, "{a}.{b}")
    } else if -6 < point && point <= 0 {
        out.write_str("0.")?;
        zeros(out, -point)?;
        out.write_str(digits)
    } else {
        let e = point - 1;
        let esign = if e < 0 { "-" } else { "+" };
        let (a, b) = digits.split_at(1);
        if b.is_empty() {
            write!(out, "{a}e{esign}{}", e.abs())
        } else {
            write!(out, "{a}.{b}e{esign}{}", e.abs())
        }
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

    #[test]
    fn numbers_like_javascript() {
        assert_eq!(js_string_to_number(" 42 "), 42.0);
        assert_eq!(js_string_to_number(""), 0.0);
        assert_eq!(js_string_to_number("0x1F"), 31.0);
        assert_eq!(js_string_to_number("1e3"), 1000.0);
        assert_eq!(js_string_to_number(".5"), 0.5);
        assert_eq!(js_string_to_number("5."), 5.0);
        assert_eq!(js_string_to_number("-Infinity"), f64::NEG_INFINITY);
        assert!(js_string_to_number("inf").is_nan());
        assert!(js_string_to_number("12abc").is_nan());
        assert!(js_string_to_number("-0x10").is_nan());
        assert_eq!(to_number(&AttributeValue::Bool(true)), Some(1.0));
        assert_eq!(to_number(&AttributeValue::Null), Some(0.0));
        assert_eq!(to_number(&AttributeValue::from(vec!["7"])), Some(7.0));
        assert_eq!(to_number(&AttributeValue::List(vec![])), Some(0.0));
        assert_eq!(to_number(&AttributeValue::from(vec![1, 2])), None);
    }

    #[test]
    fn strings_like_javascript() {
        assert_eq!(js_number_to_string(5.0), "5");
        assert_eq!(js_number_to_string(1.5), "1.5");
        assert_eq!(js_number_to_string(-0.25), "-0.25");
        assert_eq!(js_number_to_string(1e21), "1e+21");
        assert_eq!(js_number_to_string(1e-7), "1e-7");
        assert_eq!(js_number_to_string(123456.789), "123456.789");
        assert_eq!(js_number_to_string(0.000001), "0.000001");
        assert_eq!(js_number_to_string(1.5e-10), "1.5e-10");
        assert_eq!(to_str(&AttributeValue::Int(5)).as_deref(), Some("5"));
        assert_eq!(
            to_str(&AttributeValue::Int(i64::MIN)).as_deref(),
            Some("-9223372036854775808")
        );
        assert_eq!(to_str(&AttributeValue::Float(-0.0)).as_deref(), Some("-0"));
        assert_eq!(&*set_item(&AttributeValue::Float(-0.0)), "0");
        assert_eq!(
            to_str(&AttributeValue::List(vec!["solo".into()])).as_deref(),
            Some("solo")
        );
        assert!(to_str(&AttributeValue::List(vec![AttributeValue::Int(1)])).is_none());
        assert!(to_str(&AttributeValue::List(vec![])).is_none());
        assert_eq!(to_str(&AttributeValue::Bool(true)).as_deref(), Some("true"));
        assert!(to_str(&AttributeValue::String("".into())).is_none());
        assert!(to_str(&AttributeValue::Null).is_none());
        assert_eq!(
            to_str(&AttributeValue::List(vec![
                "a".into(),
                AttributeValue::Int(1),
                "b".into()
            ]))
            .as_deref(),
            Some("a,,b")
        );
    }

    /// The longest JavaScript renderings fit the stack buffer (and would fall back to the
    /// heap, with the same text, if they did not).
    #[test]
    fn numbers_format_inline() {
        for (n, text) in [
            (
                -0.000_001_234_567_890_123_456_7,
                "-0.0000012345678901234567",
            ),
            (-f64::MIN_POSITIVE, "-2.2250738585072014e-308"),
            (-123_456_789_012_345_680_000.0, "-123456789012345680000"),
            (f64::MIN, "-1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(js_number_to_string(n), text);
            assert!(matches!(Text::js_number(n), Text::Inline(_)), "{n}");
            assert_eq!(&*Text::js_number(n), text);
        }
        assert!(matches!(Text::display(i64::MIN), Text::Inline(_)));
        let mut tiny = InlineStr::new();
        assert!(tiny.write_str(&"x".repeat(INLINE + 1)).is_err());
        assert_eq!(tiny.as_str(), "");
    }

    #[test]
    fn sets_and_booleans() {
        let v = AttributeValue::List(vec![
            "a".into(),
            AttributeValue::Int(1),
            "a".into(),
            AttributeValue::Null,
        ]);
        let set: Vec<String> = set_items(&v)
            .unwrap()
            .iter()
            .map(|i| set_item(i).to_string())
            .collect();
        assert_eq!(set, vec!["a", "1", "a", "null"]);
        assert_eq!(set_items(&AttributeValue::List(vec![])), None);
        assert_eq!(set_items(&AttributeValue::String("a".into())), None);
        let nested = AttributeValue::List(vec![AttributeValue::from(vec!["x", "y"])]);
        assert_eq!(&*set_item(&set_items(&nested).unwrap()[0]), "x,y");
        assert_eq!(to_bool(&AttributeValue::String("TRUE".into())), Some(true));
        assert_eq!(to_bool(&AttributeValue::Int(1)), None);
    }
}
