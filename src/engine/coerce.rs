//! How matchers read attribute values: the coercions of the JavaScript SDK, applied to a
//! value however the caller gave it ([`View`]).
//!
//! Where the official SDKs disagree on how an attribute of an unexpected type is read, splitkit
//! follows the JavaScript SDK: numbers are read from numeric strings, booleans and `null`
//! (`true` is 1, `null` is 0); strings are read from numbers and booleans; sets are read from
//! lists only; booleans from booleans or the strings `"true"`/`"false"` in any case.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::ops::Deref;

use super::attributes::AttributeValue;

/// An attribute value as a matcher reads it, borrowed from an [`AttributeValue`] or from an
/// [`AttributeRef`](super::attribute_ref::AttributeRef): the coercions are written once, for
/// this.
#[derive(Clone, Copy, Debug)]
pub(crate) enum View<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    DateTime(i64),
    List(Items<'a>),
    Object(&'a BTreeMap<String, AttributeValue>),
}

impl<'a> View<'a> {
    /// The view of an owned value.
    #[inline(always)]
    pub(crate) fn of(v: &'a AttributeValue) -> View<'a> {
        match v {
            AttributeValue::Null => View::Null,
            AttributeValue::Bool(b) => View::Bool(*b),
            AttributeValue::Int(i) => View::Int(*i),
            AttributeValue::Float(f) => View::Float(*f),
            AttributeValue::String(s) => View::Str(s.as_str()),
            AttributeValue::DateTime(ms) => View::DateTime(*ms),
            AttributeValue::List(items) => View::List(Items::Values(items)),
            AttributeValue::Object(obj) => View::Object(obj),
        }
    }
}

/// The items of a list, in whichever form the caller gave them.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Items<'a> {
    Values(&'a [AttributeValue]),
    Strs(&'a [&'a str]),
    Strings(&'a [String]),
}

impl<'a> Items<'a> {
    fn len(self) -> usize {
        match self {
            Items::Values(v) => v.len(),
            Items::Strs(v) => v.len(),
            Items::Strings(v) => v.len(),
        }
    }

    /// The items, each viewed.
    pub(crate) fn iter(self) -> ItemsIter<'a> {
        match self {
            Items::Values(v) => ItemsIter::Values(v.iter()),
            Items::Strs(v) => ItemsIter::Strs(v.iter()),
            Items::Strings(v) => ItemsIter::Strings(v.iter()),
        }
    }
}

/// [`Items::iter`].
pub(crate) enum ItemsIter<'a> {
    Values(std::slice::Iter<'a, AttributeValue>),
    Strs(std::slice::Iter<'a, &'a str>),
    Strings(std::slice::Iter<'a, String>),
}

impl<'a> Iterator for ItemsIter<'a> {
    type Item = View<'a>;

    #[inline]
    fn next(&mut self) -> Option<View<'a>> {
        match self {
            ItemsIter::Values(i) => i.next().map(View::of),
            ItemsIter::Strs(i) => i.next().map(|s| View::Str(s)),
            ItemsIter::Strings(i) => i.next().map(|s| View::Str(s)),
        }
    }
}

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
pub(crate) fn to_number(v: View<'_>) -> Option<f64> {
    let n = match v {
        View::Int(i) => i as f64,
        View::Float(f) => f,
        View::DateTime(ms) => ms as f64,
        View::Bool(b) => f64::from(u8::from(b)),
        View::Null => 0.0,
        View::Str(s) => js_string_to_number(s),
        View::List(_) => js_string_to_number(&join_for_primitive(v)),
        View::Object(_) => f64::NAN,
    };
    if n.is_nan() { None } else { Some(n) }
}

/// The value as a string, or `None` when it gives an empty string or cannot be one.
///
/// Allocates only for a list of more than one item (its string items joined by commas).
#[inline]
pub(crate) fn to_str(v: View<'_>) -> Option<Text<'_>> {
    let s: Text<'_> = match v {
        View::Str(s) => Text::Borrowed(s),
        View::Null => return None,
        View::Bool(b) => Text::Borrowed(if b { "true" } else { "false" }),
        View::Int(i) => Text::display(i),
        // The JavaScript SDK's `toString` keeps the sign of a negative zero.
        View::Float(f) if f == 0.0 && f.is_sign_negative() => Text::Borrowed("-0"),
        View::Float(f) => Text::js_number(f),
        View::DateTime(ms) => Text::display(ms),
        // Only the string items show, joined by commas.
        View::List(items) => match (items.iter().next(), items.len()) {
            (None, _) => return None,
            (Some(View::Str(s)), 1) => Text::Borrowed(s),
            (Some(_), 1) => return None,
            _ => {
                let parts: Vec<&str> = items
                    .iter()
                    .map(|i| match i {
                        View::Str(s) => s,
                        _ => "",
                    })
                    .collect();
                Text::Owned(parts.join(","))
            }
        },
        View::Object(obj) => match obj.get("matchingKey") {
            Some(inner @ AttributeValue::String(_)) => return to_str(View::of(inner)),
            _ => return None,
        },
    };
    if s.is_empty() { None } else { Some(s) }
}

/// The items of the value read as a set, or `None` unless it is a non-empty list.
///
/// The set is the items as strings ([`set_item`]); items may repeat, which no set matcher
/// minds (they only ask whether each item, or each rule value, is present on the other side).
pub(crate) fn set_items(v: View<'_>) -> Option<Items<'_>> {
    match v {
        View::List(items) if items.len() > 0 => Some(items),
        _ => None,
    }
}

/// One item of a list read as a set: `item + ''` in JavaScript. Allocates only for a nested
/// list.
pub(crate) fn set_item(v: View<'_>) -> Text<'_> {
    match v {
        View::Str(s) => Text::Borrowed(s),
        View::Null => Text::Borrowed("null"),
        View::Bool(b) => Text::Borrowed(if b { "true" } else { "false" }),
        View::Int(i) => Text::display(i),
        View::Float(f) => Text::js_number(f),
        View::DateTime(ms) => Text::display(ms),
        View::List(_) => Text::Owned(join_for_primitive(v)),
        View::Object(_) => Text::Borrowed("[object Object]"),
    }
}

/// The value as a boolean: a boolean, or the string `true`/`false` in any case.
pub(crate) fn to_bool(v: View<'_>) -> Option<bool> {
    match v {
        View::Bool(b) => Some(b),
        View::Str(s) => {
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
fn js_concat_string(v: View<'_>) -> Cow<'_, str> {
    match set_item(v) {
        Text::Borrowed(s) => Cow::Borrowed(s),
        Text::Inline(s) => Cow::Owned(s.as_str().to_string()),
        Text::Owned(s) => Cow::Owned(s),
    }
}

/// `Array.prototype.join(",")`, as used when an array is converted to a primitive
/// (`null` items become empty strings).
fn join_for_primitive(v: View<'_>) -> String {
    match v {
        View::List(items) => items
            .iter()
            .map(|i| match i {
                View::Null => Cow::Borrowed(""),
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

    /// `f` of `v`, for a value owned by the test.
    fn of<T>(v: AttributeValue, f: impl FnOnce(View<'_>) -> T) -> T {
        f(View::of(&v))
    }

    fn str_of(v: AttributeValue) -> Option<String> {
        of(v, |v| to_str(v).map(|t| t.to_string()))
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
        assert_eq!(of(AttributeValue::Bool(true), to_number), Some(1.0));
        assert_eq!(of(AttributeValue::Null, to_number), Some(0.0));
        assert_eq!(of(AttributeValue::from(vec!["7"]), to_number), Some(7.0));
        assert_eq!(of(AttributeValue::List(vec![]), to_number), Some(0.0));
        assert_eq!(of(AttributeValue::from(vec![1, 2]), to_number), None);
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
        assert_eq!(str_of(AttributeValue::Int(5)).as_deref(), Some("5"));
        assert_eq!(
            str_of(AttributeValue::Int(i64::MIN)).as_deref(),
            Some("-9223372036854775808")
        );
        assert_eq!(str_of(AttributeValue::Float(-0.0)).as_deref(), Some("-0"));
        assert_eq!(
            of(AttributeValue::Float(-0.0), |v| set_item(v).to_string()),
            "0"
        );
        assert_eq!(
            str_of(AttributeValue::List(vec!["solo".into()])).as_deref(),
            Some("solo")
        );
        assert!(str_of(AttributeValue::List(vec![AttributeValue::Int(1)])).is_none());
        assert!(str_of(AttributeValue::List(vec![])).is_none());
        assert_eq!(str_of(AttributeValue::Bool(true)).as_deref(), Some("true"));
        assert!(str_of(AttributeValue::String("".into())).is_none());
        assert!(str_of(AttributeValue::Null).is_none());
        assert_eq!(
            str_of(AttributeValue::List(vec![
                "a".into(),
                AttributeValue::Int(1),
                "b".into()
            ]))
            .as_deref(),
            Some("a,,b")
        );
    }

    /// A list of strings reads the same whether its items are `AttributeValue`s, `&str`s or
    /// `String`s, for every coercion.
    #[test]
    fn a_list_reads_the_same_in_every_form() {
        for items in [
            vec![],
            vec![""],
            vec!["solo"],
            vec!["7"],
            vec!["a", "b", "a"],
            vec!["", "x"],
        ] {
            let values: Vec<AttributeValue> = items.iter().map(|&s| s.into()).collect();
            let strings: Vec<String> = items.iter().map(|&s| s.to_string()).collect();
            let forms = [
                View::List(Items::Values(&values)),
                View::List(Items::Strs(&items)),
                View::List(Items::Strings(&strings)),
            ];
            let read = |v: View<'_>| {
                (
                    to_str(v).map(|t| t.to_string()),
                    to_number(v).map(f64::to_bits),
                    to_bool(v),
                    set_items(v).map(|i| {
                        i.iter()
                            .map(|x| set_item(x).to_string())
                            .collect::<Vec<_>>()
                    }),
                    set_item(v).to_string(),
                )
            };
            for form in &forms[1..] {
                assert_eq!(read(*form), read(forms[0]), "{items:?}");
            }
        }
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
        let set: Vec<String> = set_items(View::of(&v))
            .unwrap()
            .iter()
            .map(|i| set_item(i).to_string())
            .collect();
        assert_eq!(set, vec!["a", "1", "a", "null"]);
        assert!(of(AttributeValue::List(vec![]), |v| set_items(v).is_none()));
        assert!(of(AttributeValue::String("a".into()), |v| set_items(v)
            .is_none()));
        let nested = AttributeValue::List(vec![AttributeValue::from(vec!["x", "y"])]);
        let first = set_items(View::of(&nested)).and_then(|i| i.iter().next());
        assert_eq!(
            first.map(|i| set_item(i).to_string()).as_deref(),
            Some("x,y")
        );
        assert_eq!(
            of(AttributeValue::String("TRUE".into()), to_bool),
            Some(true)
        );
        assert_eq!(of(AttributeValue::Int(1), to_bool), None);
    }
}
