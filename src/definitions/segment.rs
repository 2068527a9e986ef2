use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::flag::Condition;
use crate::error::Error;
use crate::text::{Lines, without_line};

/// A segmentChanges document: keys added to and removed from a segment since a change number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentChanges {
    /// Segment name.
    #[serde(default)]
    pub name: String,
    /// Keys added.
    #[serde(default)]
    pub added: Vec<String>,
    /// Keys removed.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Change number the change starts from.
    #[serde(default)]
    pub since: i64,
    /// Change number the change brings the segment to.
    #[serde(default)]
    pub till: i64,
}

/// A rule-based segment (spec 1.3): keys matched by conditions, minus exclusions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleBasedSegment {
    /// Name, referenced by `IN_RULE_BASED_SEGMENT` matchers.
    pub name: String,
    /// Version.
    #[serde(default)]
    pub change_number: Option<i64>,
    /// `ACTIVE` or `ARCHIVED`.
    #[serde(default)]
    pub status: Option<String>,
    /// Traffic type.
    #[serde(default)]
    pub traffic_type_name: Option<String>,
    /// Keys and segments excluded before the conditions are looked at.
    #[serde(default)]
    pub excluded: Option<Excluded>,
    /// Conditions; a key is in the segment when any of them matches.
    #[serde(default)]
    pub conditions: Option<Vec<Condition>>,
}

/// The exclusions of a rule-based segment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Excluded {
    /// Excluded keys.
    #[serde(default)]
    pub keys: Option<Vec<String>>,
    /// Excluded segments.
    #[serde(default)]
    pub segments: Option<Vec<ExcludedSegment>>,
}

/// An excluded segment: `type` is `standard`, `rule-based` or `large`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExcludedSegment {
    /// Segment name.
    #[serde(default)]
    pub name: String,
    /// Segment type; unknown types are handled as `standard`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// A segmentChanges document with its keys as raw texts, each read on its own.
#[derive(Deserialize)]
struct RawSegmentChanges<'a> {
    #[serde(default)]
    name: String,
    #[serde(default, borrow)]
    added: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    removed: Vec<&'a RawValue>,
    #[serde(default)]
    since: i64,
    #[serde(default)]
    till: i64,
}

impl SegmentChanges {
    /// Parses a segmentChanges document, `{"name", "added", "removed", "since", "till"}`.
    ///
    /// `origin` names the document in errors (a path or URL). A key that is not a string (a
    /// number, `null`, a number out of range, a string with a lone surrogate escape) is
    /// skipped and returned as a problem in the second element, naming the segment, the
    /// field (`added[3]`) and the line; the other keys load. Unknown fields are ignored.
    ///
    /// # Errors
    /// [`Error::Parse`] naming the line when the text is not JSON, not an object, or when a
    /// field other than a key has the wrong type (`since` and `till` must be integers):
    /// nothing of it can be applied.
    ///
    /// # Examples
    /// ```
    /// let (segment, problems) = splitkit::definitions::SegmentChanges::parse(
    ///     r#"{"name":"beta","added":["ann",7,"bob"],"removed":[],"since":-1,"till":5}"#,
    ///     "inline",
    /// )?;
    /// assert_eq!(segment.added, ["ann", "bob"]);
    /// assert_eq!(segment.till, 5);
    /// assert!(problems[0].to_string().contains("segment 'beta': field 'added[1]'"));
    /// # Ok::<(), splitkit::Error>(())
    /// ```
    pub fn parse(text: &str, origin: &str) -> Result<(SegmentChanges, Vec<Error>), Error> {
        let parse_error = |e: serde_json::Error| Error::Parse {
            origin: origin.to_string(),
            line: Some(e.line()),
            message: without_line(e.to_string(), e.line()),
        };
        if !text.trim_start().starts_with('{') {
            // serde would read a struct from an array too.
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Err(e) => parse_error(e),
                Ok(_) => Error::Parse {
                    origin: origin.to_string(),
                    line: None,
                    message: "not a segmentChanges document: expected a JSON object with \
                              \"added\" and \"removed\""
                        .into(),
                },
            });
        }
        // Every key a string: the common case, read directly.
        if let Ok(changes) = serde_json::from_str::<SegmentChanges>(text) {
            return Ok((changes, Vec::new()));
        }
        let raw: RawSegmentChanges<'_> = serde_json::from_str(text).map_err(parse_error)?;
        let mut problems = Vec::new();
        let mut lines = Lines::new(text);
        let mut keys = |field: &str, items: Vec<&RawValue>| -> Vec<String> {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match serde_json::from_str::<String>(item.get()) {
                    Ok(key) => out.push(key),
                    Err(e) => {
                        let (line, column) = lines.position_in(item.get(), 1, 1);
                        let segment = if raw.name.is_empty() {
                            String::new()
                        } else {
                            format!("segment '{}': ", raw.name)
                        };
                        let message = e.to_string();
                        let what = message
                            .find(" at line ")
                            .map_or(&*message, |i| &message[..i]);
                        let shown: String = item.get().chars().take(40).collect();
                        problems.push(Error::Parse {
                            origin: origin.to_string(),
                            line: Some(line),
                            message: format!(
                                "{segment}field '{field}[{i}]': {shown} is not a string key \
                                 ({what}) (column {column}); key skipped"
                            ),
                        });
                    }
                }
            }
            out
        };
        let added = keys("added", raw.added);
        let removed = keys("removed", raw.removed);
        Ok((
            SegmentChanges {
                name: raw.name,
                added,
                removed,
                since: raw.since,
                till: raw.till,
            },
            problems,
        ))
    }

    /// Reads every `*.json` file of `dir` as a segmentChanges document, sorted by file name.
    /// A file without a `name` takes its file stem as the segment name. Keys that are not
    /// strings are skipped with a warning (see [`SegmentChanges::parse`]).
    ///
    /// # Errors
    /// [`crate::Error::Io`] or [`crate::Error::Parse`] naming the directory or file.
    pub fn load_dir(dir: &std::path::Path) -> crate::Result<Vec<SegmentChanges>> {
        let (segments, problems) = crate::localhost::load_segments(dir)?;
        for p in &problems {
            log::warn!("{p}");
        }
        Ok(segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_strings_are_skipped_one_by_one() {
        let text = "{\"name\":\"beta\",\"added\":[\"ann\",1e400,\"bob\",7,\n\"\\ud800\",null],\
                    \"removed\":[\"cid\",-1e400],\"since\":3,\"till\":5,\"x\":1e400}";
        let (seg, problems) = SegmentChanges::parse(text, "beta.json").unwrap();
        assert_eq!(seg.name, "beta");
        assert_eq!(seg.added, ["ann", "bob"]);
        assert_eq!(seg.removed, ["cid"]);
        assert_eq!((seg.since, seg.till), (3, 5));
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "cannot parse beta.json at line 1: segment 'beta': field 'added[1]': 1e400 is not \
                 a string key (number out of range) (column 31); key skipped",
                "cannot parse beta.json at line 1: segment 'beta': field 'added[3]': 7 is not a \
                 string key (invalid type: integer `7`, expected a string) (column 43); key skipped",
                "cannot parse beta.json at line 2: segment 'beta': field 'added[4]': \"\\ud800\" is \
                 not a string key (unexpected end of hex escape) (column 1); key skipped",
                "cannot parse beta.json at line 2: segment 'beta': field 'added[5]': null is not a \
                 string key (invalid type: null, expected a string) (column 10); key skipped",
                "cannot parse beta.json at line 2: segment 'beta': field 'removed[1]': -1e400 is \
                 not a string key (number out of range) (column 33); key skipped",
            ]
        );
    }

    #[test]
    fn a_document_that_is_not_a_segment_is_rejected() {
        let (seg, problems) =
            SegmentChanges::parse(r#"{"name":"s","added":["a"],"since":-1,"till":2}"#, "o")
                .unwrap();
        assert_eq!((seg.added.len(), problems.len()), (1, 0));
        for (text, message) in [
            (
                r#"{"name":"s","added":[],"since":1e400,"till":2}"#,
                "cannot parse o at line 1: number out of range (column 36)",
            ),
            (
                r#"{"name":"s","added":[1],"till":"2"}"#,
                "cannot parse o at line 1: invalid type: string \"2\", expected i64 (column 34)",
            ),
            (
                r#"["s",[],[],1,2]"#,
                "cannot parse o: not a segmentChanges document: expected a JSON object with \
                 \"added\" and \"removed\"",
            ),
            (
                r#"{"added": ["a""#,
                "cannot parse o at line 1: EOF while parsing a list (column 14)",
            ),
        ] {
            let e = SegmentChanges::parse(text, "o").unwrap_err();
            assert_eq!(e.to_string(), message, "{text}");
        }
    }
}
