//! The golden sets: results of the official SDKs, line by line.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;
use splitkit::{AttributeRef, AttributeValue, Attributes, Snapshot};

use crate::common::{read, snapshot, vectors};

#[derive(Deserialize)]
struct Request {
    key: String,
    bucketing_key: Option<String>,
    flag: String,
    attributes: Option<serde_json::Value>,
}

#[derive(Deserialize, PartialEq, Debug)]
struct Expected {
    treatment: String,
    label: Option<String>,
    config: Option<String>,
}

fn segments_of(set: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(vectors(&format!("golden/{set}/segments")))
        .expect("segments dir")
        .map(|e| {
            format!(
                "golden/{set}/segments/{}",
                e.expect("entry").file_name().to_string_lossy()
            )
        })
        .collect();
    v.sort();
    v
}

/// `f` of the attributes of a request given as borrowed pairs, each value in its most direct
/// borrowed form: strings, numbers and booleans as they are, lists of strings as `&[&str]`,
/// anything else as a borrowed `AttributeValue`.
fn with_borrowed<R>(
    attributes: Option<&Value>,
    f: impl FnOnce(&[(&str, AttributeRef<'_>)]) -> R,
) -> R {
    let entries: Vec<(&str, &Value)> = attributes
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default();
    let lists: Vec<Option<Vec<&str>>> = entries
        .iter()
        .map(|(_, v)| {
            v.as_array()
                .and_then(|a| a.iter().map(Value::as_str).collect())
        })
        .collect();
    let values: Vec<AttributeValue> = entries
        .iter()
        .map(|(_, v)| AttributeValue::from(*v))
        .collect();
    let pairs: Vec<(&str, AttributeRef<'_>)> = entries
        .iter()
        .zip(&lists)
        .zip(&values)
        .map(|((&(name, v), list), value)| {
            let v = match (v, list) {
                (Value::String(s), _) => AttributeRef::Str(s),
                (Value::Bool(b), _) => AttributeRef::Bool(*b),
                (Value::Number(n), _) => match n.as_i64() {
                    Some(i) => AttributeRef::Int(i),
                    None => AttributeRef::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                (_, Some(list)) => AttributeRef::StrList(list),
                _ => AttributeRef::Value(value),
            };
            (name, v)
        })
        .collect();
    f(&pairs)
}

fn run_engine(set: &str) {
    let segs = segments_of(set);
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let snap: Snapshot = snapshot(&format!("golden/{set}/flags.json"), &seg_refs);
    let requests = read(&format!("golden/{set}/requests.jsonl"));
    let expected = read(&format!("golden/{set}/expected.jsonl"));
    let mut failures = Vec::new();
    let mut labels: HashMap<String, usize> = HashMap::new();
    for (i, (req, exp)) in requests.lines().zip(expected.lines()).enumerate() {
        let req: Request = serde_json::from_str(req).expect("request");
        let exp: Expected = serde_json::from_str(exp).expect("expected");
        let attrs = req
            .attributes
            .as_ref()
            .map(|a| Attributes::from_json(a).expect("attributes"))
            .unwrap_or_default();
        let valid = |k: &str| !k.is_empty() && k.chars().count() <= 250;
        let got = if !valid(&req.key) || req.bucketing_key.as_deref().is_some_and(|b| !valid(b)) {
            Expected {
                treatment: "control".into(),
                label: None,
                config: None,
            }
        } else {
            let e = snap.evaluate(
                &req.key,
                req.bucketing_key.as_deref(),
                req.flag.trim(),
                &attrs,
            );
            // The same attributes borrowed decide the same way.
            let borrowed = with_borrowed(req.attributes.as_ref(), |pairs| {
                snap.evaluate(
                    &req.key,
                    req.bucketing_key.as_deref(),
                    req.flag.trim(),
                    pairs,
                )
                .to_owned()
            });
            assert_eq!(borrowed, e.to_owned(), "{set} line {}, borrowed", i + 1);
            let label = match e.label {
                splitkit::Label::DefinitionNotFound => None,
                l => Some(l.as_str().to_string()),
            };
            Expected {
                treatment: e.treatment.to_string(),
                label,
                config: e.config.map(str::to_string),
            }
        };
        *labels.entry(format!("{:?}", got.label)).or_default() += 1;
        if got != exp {
            failures.push(format!(
                "line {}: {req:?}\n  expected {exp:?}\n  got      {got:?}",
                i + 1,
                req = serde_json::from_str::<serde_json::Value>(
                    requests.lines().nth(i).unwrap_or_default()
                )
                .ok()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{set}: {} of {} differ:\n{}",
        failures.len(),
        requests.lines().count(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(labels.len() > 10, "the set exercises many labels");
}

#[test]
fn golden_set_11_engine() {
    run_engine("set-11");
}

#[test]
fn golden_set_12_engine() {
    run_engine("set-12");
}

/// The same sets through the client API, as `examples/evaluate.rs` runs them: validation,
/// trimming of flag names, and `label: null` exactly when no impression is produced.
fn run_client(set: &str) {
    let segs = segments_of(set);
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let snap = snapshot(&format!("golden/{set}/flags.json"), &seg_refs);
    let client = splitkit::Client::builder("localhost")
        .snapshot(snap)
        .build()
        .expect("client");
    check_client(&client, set);
}

/// The set's segment documents, as text.
#[cfg(feature = "redis")]
pub fn segment_documents(set: &str) -> Vec<String> {
    segments_of(set).iter().map(|s| read(s)).collect()
}

/// Every request of golden set `set` through `client`, against the official SDKs' answers.
pub fn check_client(client: &splitkit::Client, set: &str) {
    let requests = read(&format!("golden/{set}/requests.jsonl"));
    let expected = read(&format!("golden/{set}/expected.jsonl"));
    let mut failures = Vec::new();
    for (i, (line, exp)) in requests.lines().zip(expected.lines()).enumerate() {
        let req: Request = serde_json::from_str(line).expect("request");
        let exp: Expected = serde_json::from_str(exp).expect("expected");
        let attrs = req
            .attributes
            .as_ref()
            .map(|a| Attributes::from_json(a).expect("attributes"));
        let key = match &req.bucketing_key {
            Some(b) => splitkit::Key::new(&req.key, b),
            None => splitkit::Key::from(req.key.as_str()),
        };
        let d = client.evaluate(key, &req.flag, attrs.as_ref());
        let got = Expected {
            treatment: d.treatment.to_string(),
            label: d
                .label
                .filter(|_| d.impression)
                .map(|l| l.as_str().to_string()),
            config: d.config.clone(),
        };
        if got != exp {
            failures.push(format!(
                "line {}: {line}\n  expected {exp:?}\n  got      {got:?}",
                i + 1
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{set}: {}",
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn golden_set_11_client() {
    run_client("set-11");
}

#[test]
fn golden_set_12_client() {
    run_client("set-12");
}
