use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::flag::FeatureFlag;
use super::segment::RuleBasedSegment;
use crate::error::Error;
use crate::text::Lines;

/// One section (`ff` or `rbs`) of a spec 1.3 splitChanges document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangesSection<T> {
    /// The definitions.
    #[serde(default = "Vec::new")]
    pub d: Vec<T>,
    /// Change number the page starts from.
    #[serde(default = "minus_one")]
    pub s: i64,
    /// Change number the page brings the storage to.
    #[serde(default = "minus_one")]
    pub t: i64,
}

fn minus_one() -> i64 {
    -1
}

/// A splitChanges document, in either of its forms:
/// spec 1.3 `{"ff":{"d","s","t"},"rbs":{"d","s","t"}}` or legacy `{"splits","since","till"}`.
///
/// Use [`SplitChanges::parse`] to read one: it loads every well-formed definition and reports
/// the broken ones, so one bad flag never prevents the others from loading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SplitChanges {
    /// Feature flags.
    pub flags: ChangesSection<FeatureFlag>,
    /// Rule-based segments (empty in the legacy form).
    pub rule_based_segments: ChangesSection<RuleBasedSegment>,
}

impl SplitChanges {
    /// Parses a splitChanges document.
    ///
    /// `origin` names the document in errors (a path or URL). Definitions that do not have the
    /// expected shape are skipped and returned as errors in the second element, each naming the
    /// flag and the field; so are definitions holding something no JSON value can (a number
    /// out of range such as `1e400`, a lone surrogate escape, a nesting deeper than 128), even
    /// in a field nobody reads, and those errors also give the line and column in the
    /// document.
    ///
    /// # Errors
    /// [`Error::Parse`] when the text is not JSON or not a splitChanges document at all (also
    /// for a number out of range outside the definitions).
    ///
    /// # Examples
    /// ```
    /// let (doc, problems) = splitkit::definitions::SplitChanges::parse(
    ///     r#"{"ff":{"d":[{"name":"f","defaultTreatment":"off"},{"name":"g","conditions":7}],"s":-1,"t":5},
    ///        "rbs":{"d":[],"s":-1,"t":-1}}"#,
    ///     "inline",
    /// )?;
    /// assert_eq!(doc.flags.d.len(), 1);
    /// assert_eq!(doc.flags.t, 5);
    /// assert!(problems[0].to_string().contains("flag 'g'"));
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn parse(text: &str, origin: &str) -> Result<(SplitChanges, Vec<Error>), Error> {
        let mut out = SplitChanges::default();
        let mut problems = Vec::new();
        let numbers = read_definitions(text, origin, &mut problems, &mut out)?;
        out.flags.s = numbers.flags.0;
        out.flags.t = numbers.flags.1;
        out.rule_based_segments.s = numbers.rule_based.0;
        out.rule_based_segments.t = numbers.rule_based.1;
        Ok((out, problems))
    }

    /// [`SplitChanges::parse`] through a `serde_json::Value` of the whole document.
    fn parse_through_value(text: &str, origin: &str) -> Result<(SplitChanges, Vec<Error>), Error> {
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Parse {
            origin: origin.to_string(),
            line: Some(e.line()),
            message: crate::text::without_line(e.to_string(), e.line()),
        })?;
        Self::from_value(value, origin)
    }

    /// Like [`SplitChanges::parse`], from an already parsed JSON value.
    ///
    /// # Errors
    /// [`Error::Parse`] when the value is not a splitChanges document.
    pub fn from_value(value: Value, origin: &str) -> Result<(SplitChanges, Vec<Error>), Error> {
        let parse_err = |message: String| Error::Parse {
            origin: origin.to_string(),
            line: None,
            message,
        };
        let Value::Object(mut obj) = value else {
            return Err(parse_err(
                "expected a JSON object with \"ff\" or \"splits\"".into(),
            ));
        };
        let mut problems = Vec::new();
        let mut out = SplitChanges::default();
        if let Some(ff) = obj.remove("ff") {
            out.flags = section(ff, "ff", origin, &mut problems, flag_entry)?;
            if let Some(rbs) = obj.remove("rbs")
                && !rbs.is_null()
            {
                out.rule_based_segments = section(rbs, "rbs", origin, &mut problems, rbs_entry)?;
            }
        } else if let Some(splits) = obj.remove("splits") {
            let Value::Array(items) = splits else {
                return Err(parse_err("field \"splits\" must be an array".into()));
            };
            out.flags.d = entries(items, &mut problems, flag_entry);
            out.flags.s = number_field(&obj, "since", origin)?.unwrap_or(-1);
            out.flags.t = number_field(&obj, "till", origin)?.unwrap_or(-1);
        } else {
            return Err(parse_err(
                "expected a splitChanges document: no \"ff\" (spec 1.3) or \"splits\" (legacy) field"
                    .into(),
            ));
        }
        Ok((out, problems))
    }
}

/// The change numbers (`s`, `t`) of both sections of a splitChanges document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChangeNumbers {
    /// `ff.s` and `ff.t` (or `since` and `till`).
    pub(crate) flags: (i64, i64),
    /// `rbs.s` and `rbs.t` (`-1` when absent).
    pub(crate) rule_based: (i64, i64),
}

/// Receives the definitions of a document one at a time, as they are read, so that whoever
/// consumes them (the snapshot compiler) never needs all of them at once.
pub(crate) trait DefinitionSink {
    /// A well-formed flag, in document order.
    fn flag(&mut self, flag: FeatureFlag);
    /// A well-formed rule-based segment, in document order, after every flag.
    fn rule_based_segment(&mut self, segment: RuleBasedSegment);
}

impl DefinitionSink for SplitChanges {
    fn flag(&mut self, flag: FeatureFlag) {
        self.flags.d.push(flag);
    }

    fn rule_based_segment(&mut self, segment: RuleBasedSegment) {
        self.rule_based_segments.d.push(segment);
    }
}

/// Reads a splitChanges document, handing each well-formed definition to `sink` (flags
/// first, then rule-based segments) and adding a problem naming each broken one to
/// `problems`, as [`SplitChanges::parse`] does.
///
/// Nothing reaches `sink` unless the whole text is a splitChanges document: it is read once
/// through (its outline: the raw text of each definition and the change numbers) before the
/// first definition is deserialized, so a truncated or malformed document is an error with
/// nothing delivered.
///
/// # Errors
/// [`Error::Parse`] when the text is not JSON or not a splitChanges document at all.
pub(crate) fn read_definitions(
    text: &str,
    origin: &str,
    problems: &mut Vec<Error>,
    sink: &mut impl DefinitionSink,
) -> Result<ChangeNumbers, Error> {
    if let Some(outline) = outline(text) {
        return Ok(outline.deliver(text, problems, sink));
    }
    // Not a well-formed document: the general path gives the error it always has.
    let (changes, more) = SplitChanges::parse_through_value(text, origin)?;
    problems.extend(more);
    let numbers = ChangeNumbers {
        flags: (changes.flags.s, changes.flags.t),
        rule_based: (changes.rule_based_segments.s, changes.rule_based_segments.t),
    };
    for f in changes.flags.d {
        sink.flag(f);
    }
    for r in changes.rule_based_segments.d {
        sink.rule_based_segment(r);
    }
    Ok(numbers)
}

fn number_field(
    obj: &serde_json::Map<String, Value>,
    name: &str,
    origin: &str,
) -> Result<Option<i64>, Error> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| Error::Parse {
            origin: origin.to_string(),
            line: None,
            message: format!("field \"{name}\" must be an integer, got {v}"),
        }),
    }
}

fn section<T>(
    value: Value,
    name: &str,
    origin: &str,
    problems: &mut Vec<Error>,
    entry: fn(Value) -> Result<T, Error>,
) -> Result<ChangesSection<T>, Error> {
    let Value::Object(mut obj) = value else {
        return Err(Error::Parse {
            origin: origin.to_string(),
            line: None,
            message: format!("field \"{name}\" must be an object with \"d\", \"s\" and \"t\""),
        });
    };
    let d = match obj.remove("d") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => entries(items, problems, entry),
        Some(other) => {
            return Err(Error::Parse {
                origin: origin.to_string(),
                line: None,
                message: format!("field \"{name}.d\" must be an array, got {}", kind(&other)),
            });
        }
    };
    Ok(ChangesSection {
        d,
        s: number_field(&obj, "s", origin)?.unwrap_or(-1),
        t: number_field(&obj, "t", origin)?.unwrap_or(-1),
    })
}

fn entries<T>(
    items: Vec<Value>,
    problems: &mut Vec<Error>,
    entry: fn(Value) -> Result<T, Error>,
) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match entry(item) {
            Ok(v) => out.push(v),
            Err(e) => problems.push(e),
        }
    }
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn name_of(v: &Value) -> String {
    v.get("name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_string()
}

/// Deserializes one definition, turning a serde error into one that names the definition and
/// the field (serde_json reports the innermost field it failed on).
fn typed<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Error> {
    let name = name_of(&v);
    if !matches!(v.get("name"), Some(Value::String(_))) {
        return Err(Error::InvalidDefinition {
            flag: name,
            field: "name".into(),
            message: "missing or not a string; definition skipped".into(),
        });
    }
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| Error::InvalidDefinition {
        flag: name,
        field: e.path().to_string(),
        message: format!("{}; definition skipped", e.inner()),
    })
}

fn flag_entry(v: Value) -> Result<FeatureFlag, Error> {
    typed(v)
}

fn rbs_entry(v: Value) -> Result<RuleBasedSegment, Error> {
    typed(v)
}

// ---- reading a document without building a `serde_json::Value` of it ----
//
// Building a `Value` of a large document (a map and a string allocated for every object and
// string in it) costs more than everything else in loading. The fast path below only splits
// the document into the raw text of each definition and deserializes each definition
// straight from its text. It gives the same result as the `Value` path whenever that path
// accepts the document, and is more forgiving in one way only: what the `Value` path rejects
// the whole document for, when it lies inside one definition, only skips that definition.
// - The outline (the raw texts, the change numbers) reads the document's syntax through
//   (brackets, strings, numbers of any size), so a truncated or malformed document fails it;
//   everything outside the definitions is checked with `Checked`, which accepts exactly the
//   texts `serde_json::from_str::<Value>` accepts (the same deserializer calls, nothing
//   kept), so a number out of range there rejects the document as it always did.
// - The text of each definition is checked with `Checked` too: a definition holding a number
//   out of range (`1e400`), a lone surrogate escape or a nesting too deep, even in a field
//   nobody reads, is skipped with a problem naming it, the field, and the line and column
//   in the document. (The `Value` path rejects the whole document for it.)
// - every shape the `Value` path reports as an error (a section that is not an object, `d`
//   not an array, `s`/`t` not integers) makes the fast path give up, and the `Value` path
//   then reports it with its usual message;
// - a definition that does not deserialize directly from its text is read again through a
//   `Value`, so its error names the same field with the same message (serde_json's errors
//   from text carry a line and column, those from a `Value` do not). Deserializing a struct
//   from JSON text and from the `Value` of that text are otherwise equivalent in serde_json,
//   except that text with a duplicated field is an error (the `Value` keeps the last one),
//   which the second reading handles too.

/// The outline of a well-formed splitChanges document; `None` when the general path must
/// decide (it then reports the error, or reads the document the `Value` way).
fn outline(text: &str) -> Option<Outline<'_>> {
    let outline: Outline<'_> = serde_json::from_str(text).ok()?;
    if outline.ff.is_none() && outline.splits.is_none() {
        return None;
    }
    Some(outline)
}

impl Outline<'_> {
    /// Deserializes every definition into `sink` (flags, then rule-based segments); `text` is
    /// the document, to say where a broken definition is.
    fn deliver(
        self,
        text: &str,
        problems: &mut Vec<Error>,
        sink: &mut impl DefinitionSink,
    ) -> ChangeNumbers {
        // The change numbers of an absent section, as in `ChangesSection::default()` (what
        // the general path leaves there).
        const ABSENT: (i64, i64) = (0, 0);
        let (ff, rbs, numbers) = match (self.ff, self.splits) {
            (Some(ff), _) => {
                let (rbs, rule_based) = match self.rbs {
                    Some(r) => (r.d, (r.s.unwrap_or(-1), r.t.unwrap_or(-1))),
                    None => (Vec::new(), ABSENT),
                };
                let numbers = ChangeNumbers {
                    flags: (ff.s.unwrap_or(-1), ff.t.unwrap_or(-1)),
                    rule_based,
                };
                (ff.d, rbs, numbers)
            }
            (None, splits) => {
                let numbers = ChangeNumbers {
                    flags: (self.since.unwrap_or(-1), self.till.unwrap_or(-1)),
                    rule_based: ABSENT,
                };
                (splits.unwrap_or_default(), Vec::new(), numbers)
            }
        };
        let mut lines = Lines::new(text);
        for raw in ff {
            if let Some(f) = raw_entry(raw, &mut lines, problems, flag_entry) {
                sink.flag(f);
            }
        }
        for raw in rbs {
            if let Some(r) = raw_entry(raw, &mut lines, problems, rbs_entry) {
                sink.rule_based_segment(r);
            }
        }
        numbers
    }
}

/// The outline of a document, read in one pass: the raw text of every definition and the
/// change numbers. Anything the general path would report as an error (a section that is
/// not an object, `d` not an array, a change number that is not an integer, ...) fails it,
/// even in a field the document's form does not use; repeated keys keep the last value, as
/// a `Value` does.
#[derive(Default)]
struct Outline<'a> {
    ff: Option<RawSection<'a>>,
    /// `null` is no section.
    rbs: Option<RawSection<'a>>,
    splits: Option<Vec<&'a RawValue>>,
    since: Option<i64>,
    till: Option<i64>,
}

/// A section of the outline (`ff` or `rbs`).
#[derive(Default)]
struct RawSection<'a> {
    d: Vec<&'a RawValue>,
    s: Option<i64>,
    t: Option<i64>,
}

/// The keys the outline reads (at either level); any other is skipped.
enum OutlineKey {
    Ff,
    Rbs,
    Splits,
    Since,
    Till,
    D,
    S,
    T,
    Other,
}

impl<'de> Deserialize<'de> for OutlineKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OutlineKey, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = OutlineKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<OutlineKey, E> {
                Ok(match key {
                    "ff" => OutlineKey::Ff,
                    "rbs" => OutlineKey::Rbs,
                    "splits" => OutlineKey::Splits,
                    "since" => OutlineKey::Since,
                    "till" => OutlineKey::Till,
                    "d" => OutlineKey::D,
                    "s" => OutlineKey::S,
                    "t" => OutlineKey::T,
                    _ => OutlineKey::Other,
                })
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Outline<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Outline<'de>, D::Error> {
        struct OutlineVisitor;
        impl<'de> Visitor<'de> for OutlineVisitor {
            type Value = Outline<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a splitChanges document")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outline<'de>, A::Error> {
                let mut out = Outline::default();
                while let Some(key) = map.next_key::<OutlineKey>()? {
                    match key {
                        OutlineKey::Ff => out.ff = Some(map.next_value()?),
                        OutlineKey::Rbs => out.rbs = map.next_value()?,
                        OutlineKey::Splits => out.splits = Some(map.next_value()?),
                        OutlineKey::Since => out.since = map.next_value()?,
                        OutlineKey::Till => out.till = map.next_value()?,
                        _ => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(OutlineVisitor)
    }
}

impl<'de> Deserialize<'de> for RawSection<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RawSection<'de>, D::Error> {
        struct SectionVisitor;
        impl<'de> Visitor<'de> for SectionVisitor {
            type Value = RawSection<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with \"d\", \"s\" and \"t\"")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSection<'de>, A::Error> {
                let mut out = RawSection::default();
                while let Some(key) = map.next_key::<OutlineKey>()? {
                    match key {
                        OutlineKey::D => {
                            out.d = map.next_value::<Option<_>>()?.unwrap_or_default();
                        }
                        OutlineKey::S => out.s = map.next_value()?,
                        OutlineKey::T => out.t = map.next_value()?,
                        _ => {
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(SectionVisitor)
    }
}

/// One definition from its raw text; `None` (and a problem naming it) when it is broken.
fn raw_entry<T: DeserializeOwned>(
    raw: &RawValue,
    lines: &mut Lines<'_>,
    problems: &mut Vec<Error>,
    slow: fn(Value) -> Result<T, Error>,
) -> Option<T> {
    let text = raw.get();
    if serde_json::from_str::<Checked>(text).is_err() {
        problems.push(unreadable(text, lines));
        return None;
    }
    // An object with a string `name` that deserializes: the common case. (`T` would also
    // deserialize from an array, which the general path rejects for its missing name.)
    if text.starts_with('{')
        && let Ok(v) = T::deserialize(&mut serde_json::Deserializer::from_str(text))
    {
        return Some(v);
    }
    // Read again through a `Value`, for the error the general path gives. (`Checked` has
    // accepted the text, so it is a valid `Value`.)
    let result = serde_json::from_str::<Value>(text)
        .map_err(|e| Error::InvalidDefinition {
            flag: "<unnamed>".into(),
            field: String::new(),
            message: format!("{e}; definition skipped"),
        })
        .and_then(slow);
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(e);
            None
        }
    }
}

/// The problem of a definition whose text holds something a JSON value cannot (a number out
/// of range, a lone surrogate escape, a nesting too deep): its name when it has one, the
/// field, and where in the document.
fn unreadable(text: &str, lines: &mut Lines<'_>) -> Error {
    /// The name alone; every other field is skipped unread.
    #[derive(Deserialize)]
    struct NameOnly {
        name: Option<String>,
    }
    let flag = serde_json::from_str::<NameOnly>(text)
        .ok()
        .and_then(|n| n.name)
        .unwrap_or_else(|| "<unnamed>".to_string());
    let mut de = serde_json::Deserializer::from_str(text);
    let Err(e) = serde_path_to_error::deserialize::<_, Checked>(&mut de) else {
        // Only called once `Checked` has failed on the same text.
        return Error::InvalidDefinition {
            flag,
            field: String::new(),
            message: "cannot be read; definition skipped".into(),
        };
    };
    let field = e.path().to_string();
    let inner = e.into_inner();
    let (line, column) = lines.position_in(text, inner.line(), inner.column());
    let message = inner.to_string();
    let what = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message.as_str(),
    };
    // A number out of range is shown (the error points at its last character).
    let number = match what {
        "number out of range" => number_ending_at(text, inner.line(), inner.column()),
        _ => None,
    };
    let what = match number {
        Some(n) => format!("{what}: {n}"),
        None => what.to_string(),
    };
    Error::InvalidDefinition {
        flag,
        field,
        message: format!("{what} at line {line} column {column}; definition skipped"),
    }
}

/// The JSON number whose last character is at `(line, column)` of `text` (1-based, the
/// column in bytes), if there is one there.
fn number_ending_at(text: &str, line: usize, column: usize) -> Option<&str> {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let end = (line_start + column).min(text.len());
    let head = text.get(..end)?;
    let start = head
        .rfind(|c: char| !matches!(c, '0'..='9' | '-' | '+' | '.' | 'e' | 'E'))
        .map_or(0, |i| i + 1);
    let number = &head[start..];
    number.bytes().any(|b| b.is_ascii_digit()).then_some(number)
}

/// A JSON value checked and thrown away: deserializing it accepts exactly the texts
/// `serde_json::Value` accepts (it makes the same deserializer calls: `deserialize_any` for
/// values, `deserialize_str` for object keys) without allocating anything.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Checked, D::Error> {
        d.deserialize_any(CheckedVisitor)
    }
}

/// An object key, read as `serde_json::Value` reads keys.
struct CheckedKey;

impl<'de> Deserialize<'de> for CheckedKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<CheckedKey, D::Error> {
        d.deserialize_str(CheckedVisitor).map(|Checked| CheckedKey)
    }
}

struct CheckedVisitor;

impl<'de> Visitor<'de> for CheckedVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_none<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Checked, D::Error> {
        Checked::deserialize(d)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<CheckedKey>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path alone: `None` when it leaves the document to the general path.
    fn parse_raw(text: &str) -> Option<(SplitChanges, Vec<Error>)> {
        let mut out = SplitChanges::default();
        let mut problems = Vec::new();
        let numbers = outline(text)?.deliver(text, &mut problems, &mut out);
        (out.flags.s, out.flags.t) = numbers.flags;
        (out.rule_based_segments.s, out.rule_based_segments.t) = numbers.rule_based;
        Some((out, problems))
    }

    #[test]
    fn legacy_form() {
        let (d, p) =
            SplitChanges::parse(r#"{"splits":[{"name":"a"}],"since":3,"till":9}"#, "x").unwrap();
        assert!(p.is_empty());
        assert_eq!(d.flags.d[0].name, "a");
        assert_eq!((d.flags.s, d.flags.t), (3, 9));
    }

    #[test]
    fn a_broken_flag_does_not_poison_the_rest() {
        let (d, p) = SplitChanges::parse(
            r#"{"ff":{"d":[{"name":"ok"},{"name":"bad","killed":"yes"},{"nope":1}],"s":1,"t":2}}"#,
            "doc.json",
        )
        .unwrap();
        assert_eq!(d.flags.d.len(), 1);
        assert_eq!(p.len(), 2);
        let msg = p[0].to_string();
        assert!(msg.contains("flag 'bad'"), "{msg}");
        assert!(msg.contains("yes"), "{msg}");
        assert!(msg.contains("field 'killed'"), "{msg}");
        assert!(p[1].to_string().contains("name"));
    }

    /// The fast path gives exactly what the `Value` path gives, or leaves the document to it.
    #[test]
    fn raw_path_agrees_with_the_value_path() {
        let flag = r#"{"name":"f","killed":false,"defaultTreatment":"off","algo":2,
            "configurations":{"on":"{\"a\":1}","off":null,"x":{"k":[1,2.5,"s"]}},
            "conditions":[{"conditionType":"ROLLOUT","matcherGroup":{"combiner":"AND",
              "matchers":[{"keySelector":{"attribute":"n"},"matcherType":"BETWEEN",
              "betweenMatcherData":{"dataType":"NUMBER","start":-0,"end":1e3}}]},
              "partitions":[{"treatment":"on","size":100}],"label":"r\u00e9gle"}]}"#;
        let rbs = r#"{"name":"r","excluded":{"keys":["k"],"segments":[{"name":"s","type":"rule-based"}]}}"#;
        let fast = [
            format!(r#"{{"ff":{{"d":[{flag}],"s":-1,"t":5}},"rbs":{{"d":[{rbs}],"s":1,"t":2}}}}"#),
            format!(r#"{{"ff":{{"d":[{flag},{flag}]}},"rbs":null}}"#),
            format!(r#"{{"splits":[{flag}],"since":3,"till":null}}"#),
            format!(
                r#" {{ "ff" : {{ "d" : [ {flag} ] , "s" : null }} , "ff" : {{ "d" : null }} }} "#
            ),
            // Broken definitions: each reported exactly as before.
            format!(
                r#"{{"ff":{{"d":[{flag},{{"name":"bad","killed":"yes"}},{{"nope":1}},
                ["f"],7,null,{{"name":5}},{{"name":"dup","name":"dup2"}},
                {{"name":"c","conditions":[{{"label":"a","label":"b"}}]}},
                {{"name":"n","changeNumber":1.5}},{{"name":"m","seed":99999999999}}]}}}}"#
            ),
            format!(
                r#"{{"ff":{{"d":[{flag}],"t":5}},"rbs":{{"d":[{{"name":"r","excluded":7}},{{}}]}}}}"#
            ),
            // Escaped and repeated keys: the last one counts.
            format!(
                r#"{{"\u0066f":{{"\u0064":[{flag}],"d":null,"d":[{flag}],"x":[1]}},"rbs":{{"d":[{rbs}]}},"rbs":null}}"#
            ),
            r#"{"splits":[],"since":1,"till":2,"ff":{"s":4,"s":5},"rbs":{}}"#.to_string(),
            format!(r#"{{"splits":[{flag}],"since":1,"since":null,"rbs":{{"d":[]}},"x":{{}}}}"#),
        ];
        for text in &fast {
            let raw = parse_raw(text);
            assert!(raw.is_some(), "fast path not taken: {text}");
            let via_value = SplitChanges::parse_through_value(text, "o").unwrap();
            let raw = raw.unwrap();
            assert_eq!(raw.0, via_value.0, "{text}");
            let messages = |p: &[Error]| p.iter().map(ToString::to_string).collect::<Vec<_>>();
            assert_eq!(messages(&raw.1), messages(&via_value.1), "{text}");
            if text.contains("\"bad\"") {
                // bad, nope, ["f"], 7, null, name 5, changeNumber 1.5; dup and c load.
                assert_eq!(raw.1.len(), 7, "{:?}", raw.1);
                let names: Vec<&str> = raw.0.flags.d.iter().map(|f| f.name.as_str()).collect();
                assert_eq!(names, ["f", "dup2", "c", "m"]);
            }
        }
        let slow = [
            "[1,2]",
            "{\"ff\": ",
            "{\"x\": 1}",
            "{\"ff\":null}",
            "{\"ff\":{\"d\":{}}}",
            "{\"ff\":{\"d\":[],\"s\":1.5}}",
            "{\"ff\":{\"d\":[],\"t\":-0}}",
            "{\"ff\":{\"d\":[]},\"rbs\":[]}",
            "{\"splits\":{}}",
            "{\"splits\":[],\"till\":\"9\"}",
            // Outside the definitions, what `Value` rejects is still rejected.
            "{\"ff\":{\"d\":[{\"name\":\"f\"}]},\"orgId\":1e999}",
            "{\"ff\":{\"d\":[{\"name\":\"f\"}],\"x\":\"\\ud800\"}}",
            "{\"ff\":{\"d\":[],\"t\":1e999}}",
            "{\"ff\":{\"d\":[]}} x",
            // Arrays where objects are expected (a derived struct would accept them).
            "{\"ff\":[[],1,2]}",
            "{\"ff\":{\"d\":[]},\"rbs\":[[],1,2]}",
            "{\"ff\":{\"d\":5,\"d\":[]}}",
            // Unused by the legacy form, but not what the outline expects: the general path.
            "{\"splits\":[],\"rbs\":{\"d\":7}}",
        ];
        for text in slow {
            assert!(parse_raw(text).is_none(), "{text}");
            let (a, b) = (
                SplitChanges::parse(text, "o"),
                SplitChanges::parse_through_value(text, "o"),
            );
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{text}");
        }
        let deep = format!(
            "{{\"ff\":{{\"d\":[]}},\"x\":{}{}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(parse_raw(&deep).is_none());
        assert!(SplitChanges::parse(&deep, "o").is_err());
    }

    /// What no JSON value can hold (a number out of range, a lone surrogate, a nesting too
    /// deep) inside one definition skips that definition only, naming it, the field and the
    /// place in the document; the `Value` path rejected the whole document.
    #[test]
    fn an_unreadable_value_skips_only_its_definition() {
        let ok = r#"{"name":"ok","defaultTreatment":"off"}"#;
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let doc = format!(
            "{{\"ff\":{{\"d\":[{ok},\n\
             {{\"name\":\"big\",\"conditions\":[{{\"matcherGroup\":{{\"matchers\":[\
             {{\"matcherType\":\"BETWEEN\",\"betweenMatcherData\":{{\"start\":1e400,\"end\":2}}}}]}}}}]}},\n\
             {{\"name\":\"unread\",\"orgId\":-1e400}},\n\
             {{\"name\":\"surrogate\",\"configurations\":{{\"on\":\"\\ud800\"}}}},\n\
             {{\"name\":\"deep\",\"x\":{deep}}}, {{\"orgId\":1e999}}, 1e999],\n\
             \"s\":1,\"t\":2}},\"rbs\":{{\"d\":[{{\"name\":\"r\",\"excluded\":{{\"keys\":[1E+999]}}}},\
             {{\"name\":\"r2\"}}],\"s\":-1,\"t\":3}}}}"
        );
        let (changes, problems) = SplitChanges::parse(&doc, "doc.json").unwrap();
        let names: Vec<&str> = changes.flags.d.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["ok"]);
        assert_eq!((changes.flags.s, changes.flags.t), (1, 2));
        let rbs: Vec<&str> = changes
            .rule_based_segments
            .d
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(rbs, ["r2"]);
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "flag 'big': field 'conditions[0].matcherGroup.matchers[0].betweenMatcherData.start': \
                 number out of range: 1e400 at line 2 column 117; definition skipped",
                "flag 'unread': field 'orgId': number out of range: -1e400 at line 3 column 31; \
                 definition skipped",
                "flag 'surrogate': field 'configurations.on': unexpected end of hex escape \
                 at line 4 column 51; definition skipped",
                "flag 'deep': field 'x[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]': \
                 recursion limit exceeded at line 5 column 146; definition skipped",
                "flag '<unnamed>': field 'orgId': number out of range: 1e999 at line 5 column 436; \
                 definition skipped",
                "flag '<unnamed>': field '.': number out of range: 1e999 at line 5 column 444; \
                 definition skipped",
                "flag 'r': field 'excluded.keys[0]': number out of range: 1E+999 at line 6 column 63; \
                 definition skipped",
            ]
        );
        // The same through a snapshot.
        let (snapshot, problems) = crate::Snapshot::from_json(&doc, "doc.json").unwrap();
        assert_eq!(snapshot.flag_names(), ["ok"]);
        assert_eq!(problems.len(), 7);
        assert_eq!(snapshot.change_number(), 2);
        assert_eq!(snapshot.rule_based_change_number(), 3);
    }

    #[test]
    fn not_a_document() {
        let e = SplitChanges::parse("[1,2]", "doc.json").unwrap_err();
        assert!(e.to_string().contains("doc.json"));
        let e = SplitChanges::parse("{\"ff\": ", "doc.json").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = SplitChanges::parse("{\"x\": 1}", "doc.json").unwrap_err();
        assert!(e.to_string().contains("splitChanges"));
    }
}
