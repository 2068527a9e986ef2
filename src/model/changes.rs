use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::flag::FeatureFlag;
use super::segment::RuleBasedSegment;
use crate::error::Error;

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
    /// flag and the field.
    ///
    /// # Errors
    /// [`Error::Parse`] when the text is not JSON or not a splitChanges document at all.
    ///
    /// # Examples
    /// ```
    /// let (doc, problems) = splitkit::SplitChanges::parse(
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
        let value: Value = serde_json::from_str(text).map_err(|e| Error::Parse {
            origin: origin.to_string(),
            line: Some(e.line()),
            message: e.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
