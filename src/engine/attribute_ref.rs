//! Borrowed attributes: a set the caller builds on the stack from values it already holds,
//! which an evaluation reads without copying anything.

use std::fmt;

use super::attributes::{AttributeKey, AttributeValue, Attributes, epoch_ms};
use super::coerce::{Items, View};

/// One attribute value, borrowed: what a borrowed set of attributes holds
/// ([`AttributesRef`]).
///
/// Converts from numbers, booleans, `&str`, `&String`, lists of strings (`&[&str]`, an array
/// of `&str`, `&[String]`, `&Vec<String>`), a [`SystemTime`](std::time::SystemTime) and any
/// `&AttributeValue`. It is read exactly as the [`AttributeValue`] it converts into.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttributeRef<'a> {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating point number.
    Float(f64),
    /// A string.
    Str(&'a str),
    /// A point in time, in milliseconds since the Unix epoch (UTC), for `DATETIME` matchers.
    DateTime(i64),
    /// A list of strings (a set, for the set matchers).
    StrList(&'a [&'a str]),
    /// A list of strings, owned by the caller.
    StringList(&'a [String]),
    /// Any other value (a list of numbers, a key object...).
    Value(&'a AttributeValue),
}

impl<'a> AttributeRef<'a> {
    #[inline(always)]
    fn view(self) -> View<'a> {
        match self {
            AttributeRef::Bool(b) => View::Bool(b),
            AttributeRef::Int(i) => View::Int(i),
            AttributeRef::Float(f) => View::Float(f),
            AttributeRef::Str(s) => View::Str(s),
            AttributeRef::DateTime(ms) => View::DateTime(ms),
            AttributeRef::StrList(items) => View::List(Items::Strs(items)),
            AttributeRef::StringList(items) => View::List(Items::Strings(items)),
            AttributeRef::Value(v) => View::of(v),
        }
    }
}

/// The owned value, for keeping beyond the borrow (impression listeners get these).
impl From<AttributeRef<'_>> for AttributeValue {
    fn from(v: AttributeRef<'_>) -> AttributeValue {
        match v {
            AttributeRef::Bool(b) => AttributeValue::Bool(b),
            AttributeRef::Int(i) => AttributeValue::Int(i),
            AttributeRef::Float(f) => AttributeValue::Float(f),
            AttributeRef::Str(s) => AttributeValue::from(s),
            AttributeRef::DateTime(ms) => AttributeValue::DateTime(ms),
            AttributeRef::StrList(items) => AttributeValue::from(items),
            AttributeRef::StringList(items) => AttributeValue::from(items),
            AttributeRef::Value(v) => v.clone(),
        }
    }
}

macro_rules! from_scalar {
    ($variant:ident: $($t:ty),*) => {$(
        impl From<$t> for AttributeRef<'_> {
            #[inline(always)]
            fn from(v: $t) -> Self {
                AttributeRef::$variant(v.into())
            }
        }
    )*};
}
from_scalar!(Int: i8, i16, i32, i64, u8, u16, u32);
from_scalar!(Float: f32, f64);
from_scalar!(Bool: bool);

impl From<std::time::SystemTime> for AttributeRef<'_> {
    fn from(v: std::time::SystemTime) -> Self {
        AttributeRef::DateTime(epoch_ms(v))
    }
}

macro_rules! from_borrowed {
    ($variant:ident: $($t:ty),*) => {$(
        impl<'a> From<&'a $t> for AttributeRef<'a> {
            #[inline(always)]
            fn from(v: &'a $t) -> Self {
                AttributeRef::$variant(v)
            }
        }
    )*};
}
from_borrowed!(Str: str, String);
from_borrowed!(StrList: [&'a str], Vec<&'a str>);
from_borrowed!(StringList: [String], Vec<String>);
from_borrowed!(Value: AttributeValue);

/// A list from an array of strings, such as `&["beta", "mobile"]`.
impl<'a, const N: usize> From<&'a [&'a str; N]> for AttributeRef<'a> {
    #[inline(always)]
    fn from(v: &'a [&'a str; N]) -> Self {
        AttributeRef::StrList(v)
    }
}

/// The attributes of an evaluation, as the evaluation methods take them: none, an
/// [`Attributes`], or pairs of names and [`AttributeRef`]s borrowed from the caller.
///
/// The evaluation methods take `impl Into<AttributesRef>`, so each of these works:
/// - `None`, or `Some(&attributes)` and `&attributes` for an [`Attributes`];
/// - a slice or an array of `(name, AttributeRef)` pairs, such as
///   `&[("plan", "pro".into()), ("age", 42.into())]`. Building one costs no allocation: its
///   names and values stay where the caller holds them. When a name appears twice, the
///   last pair counts, as when inserted into [`Attributes`].
///
/// # Examples
/// ```
/// use splitkit::{AttributeValue, Attributes, Snapshot};
/// let doc = r#"{"ff": {"d": [{"name": "checkout", "defaultTreatment": "off", "conditions": [
///     {"matcherGroup": {"combiner": "AND", "matchers": [{"matcherType": "PART_OF_SET",
///         "keySelector": {"attribute": "tags"}, "whitelistMatcherData": {"whitelist": ["beta", "mobile"]}}]},
///      "partitions": [{"treatment": "on", "size": 100}], "label": "beta testers"}]}]}}"#;
/// let (snapshot, _) = Snapshot::from_json(doc, "example")?;
///
/// let plan = String::from("pro");
/// let tags = vec!["beta".to_string()];
/// let e = snapshot.evaluate("ann", None, "checkout", &[("plan", (&plan).into()), ("tags", (&tags).into())]);
/// assert_eq!((e.treatment, e.label.as_str()), ("on", "beta testers"));
///
/// // The same, owned.
/// let owned = Attributes::new().with("plan", plan.as_str()).with("tags", ["beta"]);
/// assert_eq!(snapshot.evaluate("ann", None, "checkout", &owned).treatment, "on");
/// # Ok::<(), splitkit::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct AttributesRef<'a> {
    pub(crate) source: Source<'a>,
}

/// Two variants, so that the whole is two words, passed in registers.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// [`NO_ATTRIBUTES`] when none were given.
    Owned(&'a Attributes),
    Borrowed(&'a [(&'a str, AttributeRef<'a>)]),
}

/// What [`AttributesRef::NONE`] points to, told apart from an empty set the caller gave by
/// its address.
static NO_ATTRIBUTES: Attributes = Attributes::EMPTY;

impl<'a> AttributesRef<'a> {
    /// No attributes.
    pub const NONE: AttributesRef<'static> = AttributesRef {
        source: Source::Owned(&NO_ATTRIBUTES),
    };

    /// The attributes as an owned set, `None` when none were given (an empty set when an
    /// empty one was).
    pub(crate) fn to_attributes(self) -> Option<Attributes> {
        match self.source {
            Source::Owned(a) if std::ptr::eq(a, &NO_ATTRIBUTES) => None,
            Source::Owned(a) => Some(a.clone()),
            Source::Borrowed(pairs) => Some(
                pairs
                    .iter()
                    .map(|&(n, v)| (n, AttributeValue::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Where an evaluation finds the attributes its matchers read: either form of
/// [`AttributesRef`].
pub(crate) trait Lookup<'k>: Copy {
    /// The value of the attribute a matcher reads.
    fn get_key(self, key: &AttributeKey) -> Option<View<'k>>;
}

impl<'k> Lookup<'k> for &'k Attributes {
    #[inline(always)]
    fn get_key(self, key: &AttributeKey) -> Option<View<'k>> {
        Attributes::get_key(self, key).map(View::of)
    }
}

/// The last pair of the name counts.
impl<'k> Lookup<'k> for &'k [(&'k str, AttributeRef<'k>)] {
    #[inline(always)]
    fn get_key(self, key: &AttributeKey) -> Option<View<'k>> {
        self.iter()
            .rev()
            .find(|(name, _)| key.is(name))
            .map(|(_, v)| v.view())
    }
}

impl Default for AttributesRef<'_> {
    fn default() -> Self {
        AttributesRef::NONE
    }
}

impl fmt::Debug for AttributesRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            Source::Owned(a) if std::ptr::eq(a, &NO_ATTRIBUTES) => f.write_str("None"),
            Source::Owned(a) => a.fmt(f),
            Source::Borrowed(pairs) => f
                .debug_map()
                .entries(pairs.iter().map(|(n, v)| (n, v)))
                .finish(),
        }
    }
}

impl<'a> From<&'a Attributes> for AttributesRef<'a> {
    #[inline(always)]
    fn from(a: &'a Attributes) -> Self {
        AttributesRef {
            source: Source::Owned(a),
        }
    }
}

impl<'a> From<Option<&'a Attributes>> for AttributesRef<'a> {
    #[inline(always)]
    fn from(a: Option<&'a Attributes>) -> Self {
        a.map_or(AttributesRef::NONE, AttributesRef::from)
    }
}

impl<'a> From<&'a [(&'a str, AttributeRef<'a>)]> for AttributesRef<'a> {
    #[inline(always)]
    fn from(pairs: &'a [(&'a str, AttributeRef<'a>)]) -> Self {
        AttributesRef {
            source: Source::Borrowed(pairs),
        }
    }
}

impl<'a, const N: usize> From<&'a [(&'a str, AttributeRef<'a>); N]> for AttributesRef<'a> {
    #[inline(always)]
    fn from(pairs: &'a [(&'a str, AttributeRef<'a>); N]) -> Self {
        AttributesRef::from(pairs.as_slice())
    }
}

impl<'a> From<&'a Vec<(&'a str, AttributeRef<'a>)>> for AttributesRef<'a> {
    #[inline(always)]
    fn from(pairs: &'a Vec<(&'a str, AttributeRef<'a>)>) -> Self {
        AttributesRef::from(pairs.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `get_key` finds of `name` in `pairs`, as text.
    fn find(pairs: &[(&str, AttributeRef<'_>)], name: &str) -> Option<String> {
        pairs
            .get_key(&AttributeKey::new(name))
            .map(|v| format!("{v:?}"))
    }

    #[test]
    fn a_borrowed_name_is_found_whatever_its_length_and_the_last_pair_counts() {
        let long = "a_rather_long_attribute_name_past_sixteen_bytes";
        let sibling = "a_rather_long_attribute_name_past_sixteen_bytez";
        let pairs = [
            ("plan", AttributeRef::from("free")),
            (long, AttributeRef::from(1)),
            ("", AttributeRef::from(true)),
            ("plan", AttributeRef::from("pro")),
        ];
        assert_eq!(find(&pairs, "plan").as_deref(), Some("Str(\"pro\")"));
        assert_eq!(find(&pairs, long).as_deref(), Some("Int(1)"));
        assert_eq!(find(&pairs, "").as_deref(), Some("Bool(true)"));
        for other in [sibling, "pla", "plan ", "Plan", &long[..16], &long[..17]] {
            assert_eq!(find(&pairs, other), None, "{other}");
        }
        // The owned set of the same pairs agrees, name by name.
        let owned = AttributesRef::from(&pairs)
            .to_attributes()
            .unwrap_or_default();
        assert_eq!(owned.len(), 3);
        assert_eq!(owned.get("plan"), Some(&AttributeValue::from("pro")));
        assert_eq!(owned.get(long), Some(&AttributeValue::Int(1)));
    }

    #[test]
    fn every_borrowed_value_owns_into_the_value_it_reads_as() {
        let strings = vec!["x".to_string(), "y".to_string()];
        let nested = AttributeValue::from(vec![1, 2]);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_000);
        let cases: [(AttributeRef<'_>, AttributeValue); 9] = [
            (true.into(), AttributeValue::Bool(true)),
            (7u8.into(), AttributeValue::Int(7)),
            (1.5f32.into(), AttributeValue::Float(1.5)),
            ("pro".into(), AttributeValue::from("pro")),
            (t.into(), AttributeValue::DateTime(1_700_000_000_000)),
            (t.into(), AttributeValue::from(t)),
            ((&["a", "b"]).into(), AttributeValue::from(["a", "b"])),
            ((&strings).into(), AttributeValue::from(vec!["x", "y"])),
            ((&nested).into(), nested.clone()),
        ];
        for (borrowed, owned) in cases {
            assert_eq!(AttributeValue::from(borrowed), owned);
            // Read the same way: the same view, once both are borrowed.
            assert_eq!(
                format!("{:?}", crate::engine::coerce::to_str(borrowed.view())),
                format!("{:?}", crate::engine::coerce::to_str(View::of(&owned)))
            );
        }
    }

    #[test]
    fn no_attributes_differ_from_an_empty_set() {
        let empty = Attributes::new();
        assert!(AttributesRef::NONE.to_attributes().is_none());
        assert!(
            AttributesRef::from(None::<&Attributes>)
                .to_attributes()
                .is_none()
        );
        assert_eq!(
            AttributesRef::from(&empty).to_attributes(),
            Some(Attributes::new())
        );
        let no_pairs: &[(&str, AttributeRef<'_>)] = &[];
        assert_eq!(
            AttributesRef::from(no_pairs).to_attributes(),
            Some(Attributes::new())
        );
        assert_eq!(format!("{:?}", AttributesRef::NONE), "None");
        assert_eq!(
            format!("{:?}", AttributesRef::from(&[("n", AttributeRef::Int(1))])),
            "{\"n\": Int(1)}"
        );
    }
}
