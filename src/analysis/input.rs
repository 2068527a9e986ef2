//! Recorded impressions and events, and readers for Split's JSON-lines wire formats.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::BufRead;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AnalysisError;

/// One recorded impression: `key` saw `treatment` of `flag` version `change_number`, through the
/// rule `label`, at `time_ms`.
///
/// A missing label and an empty label are the same (labels disabled).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AttributionImpression {
    /// The matching key.
    pub key: String,
    /// The flag's name.
    pub flag: String,
    /// The treatment served.
    pub treatment: String,
    /// The rule's label; `None` (or empty) when labels were disabled.
    pub label: Option<String>,
    /// The flag version.
    pub change_number: i64,
    /// When the impression happened, epoch milliseconds.
    pub time_ms: i64,
}

/// One recorded event, as sent by `track()`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AttributionEvent {
    /// The key that tracked the event.
    pub key: String,
    /// The event's traffic type; it must equal a flag's exactly to count for that flag.
    pub traffic_type: String,
    /// The event type, matched against the metrics' event types.
    pub event_type: String,
    /// The event's value; `None` (or a non-finite number) is a null value.
    pub value: Option<f64>,
    /// When the event happened, epoch milliseconds.
    pub time_ms: i64,
}

/// Reads impressions in the `testImpressions/bulk` wire format, one JSON value per line: either
/// an array `[{"f": flag, "i": [{"k","t","m","c","r","b"?,"pt"?}, ...]}, ...]` or one
/// `{"f", "i"}` object. Blank lines are skipped; `b`, `pt` and `properties` are ignored; a
/// null or missing `c` reads as change number 0 and a null or missing `r` as no label.
///
/// The iterator yields one item per impression. A line that does not parse yields one
/// [`AnalysisError::Parse`] naming the line and the field, and reading goes on with the next
/// line; a read error yields [`AnalysisError::Read`] and ends the iteration.
///
/// # Examples
///
/// ```
/// use splitkit::analysis::read_impressions;
/// let data = r#"[{"f":"new_checkout","i":[{"k":"u1","t":"on","m":1000,"c":7,"r":"default rule"}]}]
/// {"f":"new_checkout","i":[{"k":"u2","t":"off","m":1001,"c":7,"r":null,"pt":900}]}"#;
/// let impressions: Vec<_> = read_impressions(data.as_bytes()).collect::<Result<_, _>>()?;
/// assert_eq!(impressions.len(), 2);
/// assert_eq!(impressions[1].label, None);
/// # Ok::<(), splitkit::analysis::AnalysisError>(())
/// ```
pub fn read_impressions<R: BufRead>(reader: R) -> ImpressionReader<R> {
    ImpressionReader {
        lines: Lines::new(reader),
        pending: VecDeque::new(),
    }
}

/// Reads events in the `events/bulk` wire format, one JSON value per line: either one
/// `{"key","trafficTypeName","eventTypeId","value","timestamp","properties"}` object or an
/// array of them. Blank lines are skipped; `properties` is ignored; a missing `value` is null.
///
/// Errors are reported as by [`read_impressions`].
///
/// # Examples
///
/// ```
/// use splitkit::analysis::read_events;
/// let data = r#"{"key":"u1","trafficTypeName":"user","eventTypeId":"checkout","value":9.5,"timestamp":1000}
///
/// {"key":"u1","trafficTypeName":"user","eventTypeId":"checkout","value":null,"timestamp":"soon"}"#;
/// let mut events = read_events(data.as_bytes());
/// assert_eq!(events.next().transpose()?.map(|e| e.value), Some(Some(9.5)));
/// let err = events.next().and_then(Result::err).map(|e| e.to_string());
/// assert_eq!(err.as_deref(), Some("line 3: field `timestamp`: expected an integer"));
/// # Ok::<(), splitkit::analysis::AnalysisError>(())
/// ```
pub fn read_events<R: BufRead>(reader: R) -> EventReader<R> {
    EventReader {
        lines: Lines::new(reader),
        pending: VecDeque::new(),
    }
}

/// Iterator over the impressions of a JSON-lines reader; see [`read_impressions`].
#[derive(Debug)]
pub struct ImpressionReader<R> {
    lines: Lines<R>,
    pending: VecDeque<AttributionImpression>,
}

impl<R: BufRead> Iterator for ImpressionReader<R> {
    type Item = Result<AttributionImpression, AnalysisError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(imp) = self.pending.pop_front() {
                return Some(Ok(imp));
            }
            let (line_no, line) = match self.lines.next_line()? {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            if let Err(e) = parse_impression_line(line, line_no, &mut self.pending) {
                return Some(Err(e));
            }
        }
    }
}

/// Iterator over the events of a JSON-lines reader; see [`read_events`].
#[derive(Debug)]
pub struct EventReader<R> {
    lines: Lines<R>,
    pending: VecDeque<AttributionEvent>,
}

impl<R: BufRead> Iterator for EventReader<R> {
    type Item = Result<AttributionEvent, AnalysisError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            let (line_no, line) = match self.lines.next_line()? {
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            if let Err(e) = parse_event_line(line, line_no, &mut self.pending) {
                return Some(Err(e));
            }
        }
    }
}

/// Non-blank lines with their 1-based numbers, reusing one buffer.
#[derive(Debug)]
struct Lines<R> {
    reader: R,
    buf: String,
    line_no: u64,
    done: bool,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R) -> Self {
        Lines {
            reader,
            buf: String::new(),
            line_no: 0,
            done: false,
        }
    }

    /// The next non-blank line; `None` at the end, after which it stays `None`.
    fn next_line(&mut self) -> Option<Result<(u64, &str), AnalysisError>> {
        while !self.done {
            self.buf.clear();
            self.line_no += 1;
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) if self.buf.trim().is_empty() => {}
                Ok(_) => return Some(Ok((self.line_no, self.buf.trim()))),
                Err(source) => {
                    self.done = true;
                    return Some(Err(AnalysisError::Read {
                        line: self.line_no,
                        source,
                    }));
                }
            }
        }
        None
    }
}

#[derive(Deserialize)]
struct WireFlagImpressions<'a> {
    #[serde(borrow)]
    f: Cow<'a, str>,
    #[serde(borrow)]
    i: Vec<WireImpression<'a>>,
}

#[derive(Deserialize)]
struct WireImpression<'a> {
    #[serde(borrow)]
    k: Cow<'a, str>,
    #[serde(borrow)]
    t: Cow<'a, str>,
    m: i64,
    #[serde(default)]
    c: Option<i64>,
    #[serde(default, borrow)]
    r: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireEvent<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
    #[serde(borrow)]
    traffic_type_name: Cow<'a, str>,
    #[serde(borrow)]
    event_type_id: Cow<'a, str>,
    #[serde(default)]
    value: Option<f64>,
    timestamp: i64,
}

/// Parses one line of impressions into `out`. The typed parse is the fast path; when it fails
/// the line is walked as a `Value` to name the offending field.
fn parse_impression_line(
    line: &str,
    line_no: u64,
    out: &mut VecDeque<AttributionImpression>,
) -> Result<(), AnalysisError> {
    let parsed = if line.starts_with('[') {
        serde_json::from_str::<Vec<WireFlagImpressions<'_>>>(line)
    } else {
        serde_json::from_str::<WireFlagImpressions<'_>>(line).map(|g| vec![g])
    };
    let groups = parsed.map_err(|e| diagnose(line, line_no, &e, check_impressions))?;
    for group in groups {
        for imp in group.i {
            out.push_back(AttributionImpression {
                key: imp.k.into_owned(),
                flag: group.f.to_string(),
                treatment: imp.t.into_owned(),
                label: imp.r.filter(|r| !r.is_empty()).map(Cow::into_owned),
                change_number: imp.c.unwrap_or(0),
                time_ms: imp.m,
            });
        }
    }
    Ok(())
}

/// Parses one line of events into `out`, as [`parse_impression_line`] does.
fn parse_event_line(
    line: &str,
    line_no: u64,
    out: &mut VecDeque<AttributionEvent>,
) -> Result<(), AnalysisError> {
    let parsed = if line.starts_with('[') {
        serde_json::from_str::<Vec<WireEvent<'_>>>(line)
    } else {
        serde_json::from_str::<WireEvent<'_>>(line).map(|e| vec![e])
    };
    let events = parsed.map_err(|e| diagnose(line, line_no, &e, check_events))?;
    out.extend(events.into_iter().map(|e| AttributionEvent {
        key: e.key.into_owned(),
        traffic_type: e.traffic_type_name.into_owned(),
        event_type: e.event_type_id.into_owned(),
        value: e.value,
        time_ms: e.timestamp,
    }));
    Ok(())
}

/// What is wrong with a field: its path and the reason.
type FieldProblem = (String, &'static str);

/// Builds the parse error for a line the typed parse rejected: a JSON syntax error as is, else
/// the first field `check` finds wrong.
fn diagnose(
    line: &str,
    line_no: u64,
    typed: &serde_json::Error,
    check: fn(&Value) -> Option<FieldProblem>,
) -> AnalysisError {
    let problem = match serde_json::from_str::<Value>(line) {
        Err(e) => (None, format!("invalid JSON: {e}")),
        Ok(value) => match check(&value) {
            Some((field, reason)) => (Some(field), reason.to_owned()),
            None => (None, typed.to_string()),
        },
    };
    AnalysisError::Parse {
        line: line_no,
        field: problem.0,
        message: problem.1,
    }
}

fn check_impressions(value: &Value) -> Option<FieldProblem> {
    match value {
        Value::Array(groups) => groups
            .iter()
            .enumerate()
            .find_map(|(j, g)| check_flag_group(g, &format!("[{j}]"))),
        Value::Object(_) => check_flag_group(value, ""),
        _ => Some(("(line)".into(), "expected a JSON array or object")),
    }
}

fn check_flag_group(group: &Value, path: &str) -> Option<FieldProblem> {
    let dot = if path.is_empty() { "" } else { "." };
    let Some(obj) = group.as_object() else {
        return Some((at(path, "(line)"), "expected an object"));
    };
    if let Some(p) = require(obj.get("f"), Kind::Str, &format!("{path}{dot}f")) {
        return Some(p);
    }
    let list_path = format!("{path}{dot}i");
    let Some(list) = obj.get("i") else {
        return Some((list_path, "missing"));
    };
    let Some(list) = list.as_array() else {
        return Some((list_path, "expected an array"));
    };
    list.iter().enumerate().find_map(|(n, imp)| {
        let p = format!("{list_path}[{n}]");
        let Some(imp) = imp.as_object() else {
            return Some((p, "expected an object"));
        };
        [
            ("k", Kind::Str),
            ("t", Kind::Str),
            ("m", Kind::Int),
            ("c", Kind::OptInt),
            ("r", Kind::OptStr),
        ]
        .into_iter()
        .find_map(|(name, kind)| require(imp.get(name), kind, &format!("{p}.{name}")))
    })
}

fn check_events(value: &Value) -> Option<FieldProblem> {
    match value {
        Value::Array(events) => events
            .iter()
            .enumerate()
            .find_map(|(j, e)| check_event(e, &format!("[{j}]"))),
        Value::Object(_) => check_event(value, ""),
        _ => Some(("(line)".into(), "expected a JSON array or object")),
    }
}

fn check_event(event: &Value, path: &str) -> Option<FieldProblem> {
    let dot = if path.is_empty() { "" } else { "." };
    let Some(obj) = event.as_object() else {
        return Some((at(path, "(line)"), "expected an object"));
    };
    [
        ("key", Kind::Str),
        ("trafficTypeName", Kind::Str),
        ("eventTypeId", Kind::Str),
        ("value", Kind::OptNum),
        ("timestamp", Kind::Int),
    ]
    .into_iter()
    .find_map(|(name, kind)| require(obj.get(name), kind, &format!("{path}{dot}{name}")))
}

fn at(path: &str, fallback: &str) -> String {
    if path.is_empty() {
        fallback.to_owned()
    } else {
        path.to_owned()
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Str,
    OptStr,
    Int,
    OptInt,
    OptNum,
}

/// Checks one field's presence and type.
fn require(value: Option<&Value>, kind: Kind, path: &str) -> Option<FieldProblem> {
    let reason = match (kind, value) {
        (Kind::Str | Kind::Int, None) => "missing",
        (Kind::OptStr | Kind::OptInt | Kind::OptNum, None | Some(Value::Null)) => return None,
        (Kind::Str | Kind::OptStr, Some(Value::String(_))) => return None,
        (Kind::Str | Kind::OptStr, Some(_)) => "expected a string",
        (Kind::Int | Kind::OptInt, Some(v)) if v.as_i64().is_some() => return None,
        (Kind::Int | Kind::OptInt, Some(_)) => "expected an integer",
        (Kind::OptNum, Some(Value::Number(_))) => return None,
        (Kind::OptNum, Some(_)) => "expected a number or null",
    };
    Some((path.to_owned(), reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impressions(data: &str) -> Vec<Result<AttributionImpression, AnalysisError>> {
        read_impressions(data.as_bytes()).collect()
    }

    fn events(data: &str) -> Vec<Result<AttributionEvent, AnalysisError>> {
        read_events(data.as_bytes()).collect()
    }

    fn parse_error(result: &Result<impl std::fmt::Debug, AnalysisError>) -> (u64, Option<&str>) {
        match result {
            Err(AnalysisError::Parse { line, field, .. }) => (*line, field.as_deref()),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn reads_array_and_object_lines() {
        let data = concat!(
            r#"[{"f":"a","i":[{"k":"u1","t":"on","m":10,"c":3,"r":"r1","b":"bk","pt":5},"#,
            r#"{"k":"u2","t":"off","m":11,"c":3,"r":""}]},{"f":"b","i":[]}]"#,
            "\n\n",
            r#"{"f":"b","i":[{"k":"u\"3","t":"on","m":-4}]}"#,
            "\n"
        );
        let got: Vec<_> = impressions(data).into_iter().map(|r| r.ok()).collect();
        let imp = |key: &str, flag: &str, t: &str, label: Option<&str>, c, m| {
            Some(AttributionImpression {
                key: key.into(),
                flag: flag.into(),
                treatment: t.into(),
                label: label.map(str::to_owned),
                change_number: c,
                time_ms: m,
            })
        };
        assert_eq!(
            got,
            vec![
                imp("u1", "a", "on", Some("r1"), 3, 10),
                imp("u2", "a", "off", None, 3, 11),
                imp("u\"3", "b", "on", None, 0, -4),
            ]
        );
    }

    #[test]
    fn impression_errors_name_line_and_field() {
        let data = concat!(
            r#"{"f":"a","i":[{"k":"u1","t":"on","m":1,"c":1}]}"#,
            "\n",
            r#"[{"f":"a","i":[]},{"f":"a","i":[{"k":"u1","t":"on","m":1},{"k":"u2","t":"on","m":"x"}]}]"#,
            "\n",
            r#"{"f":"a","i":[{"t":"on","m":1}]}"#,
            "\n",
            r#"{"f":7,"i":[]}"#,
            "\n",
            r#"{"f":"a","i":[{"k":"u","t":"on","m":1,"c":1.5}]}"#,
            "\n",
            r#"{"f":"a","i":[{"k":"u","t":"on","m":1,"r":3}]}"#,
            "\n",
            r#"{"f":"a","i":{}}"#,
            "\n",
            r#"{"f":"a","i":[{"k":"u","t":"on","m":1"#,
            "\n",
            "42\n",
            r#"{"f":"a","i":[{"k":"u9","t":"on","m":9}]}"#,
        );
        let got = impressions(data);
        assert_eq!(got.len(), 10);
        assert!(got[0].is_ok());
        assert_eq!(parse_error(&got[1]), (2, Some("[1].i[1].m")));
        assert_eq!(parse_error(&got[2]), (3, Some("i[0].k")));
        assert_eq!(parse_error(&got[3]), (4, Some("f")));
        assert_eq!(parse_error(&got[4]), (5, Some("i[0].c")));
        assert_eq!(parse_error(&got[5]), (6, Some("i[0].r")));
        assert_eq!(parse_error(&got[6]), (7, Some("i")));
        assert_eq!(parse_error(&got[7]), (8, None));
        assert_eq!(parse_error(&got[8]), (9, Some("(line)")));
        assert_eq!(got[9].as_ref().map(|i| i.key.as_str()).ok(), Some("u9"));
        let msg = got[1].as_ref().err().map(ToString::to_string);
        assert_eq!(
            msg.as_deref(),
            Some("line 2: field `[1].i[1].m`: expected an integer")
        );
        let msg = got[7]
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(msg.starts_with("line 8: invalid JSON"), "{msg}");
    }

    #[test]
    fn reads_events_one_per_line_or_arrays() {
        let data = concat!(
            r#"{"key":"u1","trafficTypeName":"user","eventTypeId":"buy","value":2.5,"timestamp":7,"properties":{"a":1}}"#,
            "\n",
            r#"[{"key":"u2","trafficTypeName":"user","eventTypeId":"buy","value":null,"timestamp":8,"properties":null},"#,
            r#"{"key":"u3","trafficTypeName":"account","eventTypeId":"view","timestamp":9}]"#,
        );
        let got: Vec<_> = events(data).into_iter().map(|r| r.ok()).collect();
        let ev = |key: &str, tt: &str, et: &str, value, t| {
            Some(AttributionEvent {
                key: key.into(),
                traffic_type: tt.into(),
                event_type: et.into(),
                value,
                time_ms: t,
            })
        };
        assert_eq!(
            got,
            vec![
                ev("u1", "user", "buy", Some(2.5), 7),
                ev("u2", "user", "buy", None, 8),
                ev("u3", "account", "view", None, 9),
            ]
        );
    }

    #[test]
    fn event_errors_name_line_and_field() {
        let data = concat!(
            r#"{"trafficTypeName":"user","eventTypeId":"buy","timestamp":7}"#,
            "\n",
            r#"[{"key":"u","trafficTypeName":"user","eventTypeId":"buy","timestamp":7},{"key":"u","trafficTypeName":"user","eventTypeId":"buy","value":"1","timestamp":7}]"#,
            "\n",
            r#"{"key":"u","trafficTypeName":"user","eventTypeId":"buy","timestamp":7.5}"#,
            "\n",
            r#"{"key":"u","trafficTypeName":["user"],"eventTypeId":"buy","timestamp":7}"#,
            "\n",
            r#"["x"]"#,
        );
        let got = events(data);
        assert_eq!(parse_error(&got[0]), (1, Some("key")));
        assert_eq!(parse_error(&got[1]), (2, Some("[1].value")));
        assert_eq!(parse_error(&got[2]), (3, Some("timestamp")));
        assert_eq!(parse_error(&got[3]), (4, Some("trafficTypeName")));
        assert_eq!(parse_error(&got[4]), (5, Some("[0]")));
    }

    #[test]
    fn read_error_ends_iteration() {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let mut it = read_events(std::io::BufReader::new(Broken));
        assert!(matches!(
            it.next(),
            Some(Err(AnalysisError::Read { line: 1, .. }))
        ));
        assert!(it.next().is_none());
    }

    #[test]
    fn invalid_utf8_is_a_read_error() {
        let data: &[u8] = b"{\"f\":\"\xff\",\"i\":[]}\n";
        let got: Vec<_> = read_impressions(data).collect();
        assert!(matches!(
            got.as_slice(),
            [Err(AnalysisError::Read { line: 1, .. })]
        ));
    }
}
