//! Lays a splitChanges document out in Redis the way Split's Synchronizer does
//! (go-split-commons `storage/redis`): each flag as `SPLITIO.split.{name}`, re-serialised
//! from Go's DTOs (so every field is present: absent ones as Go's zero values, `null` for
//! absent objects and lists, `"conditionType":""` in rule-based segment conditions), the
//! tills, segments as sets with their tills, traffic type counts and flag sets.

use redis::Connection;
use serde_json::{Map, Value, json};

/// Go's value for a field of type string, int or bool when the JSON lacks it.
fn or<'a>(v: &'a Value, field: &str, zero: &'a Value) -> &'a Value {
    v.get(field).filter(|f| !f.is_null()).unwrap_or(zero)
}

fn obj(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
}

fn string(v: &Value, field: &str) -> Value {
    or(v, field, &json!("")).clone()
}

fn int(v: &Value, field: &str) -> Value {
    or(v, field, &json!(0)).clone()
}

fn boolean(v: &Value, field: &str) -> Value {
    or(v, field, &json!(false)).clone()
}

/// A list field: `null` when absent, each element converted.
fn list(v: &Value, field: &str, each: impl Fn(&Value) -> Value) -> Value {
    match v.get(field).and_then(Value::as_array) {
        Some(items) => Value::Array(items.iter().map(each).collect()),
        None => Value::Null,
    }
}

/// A pointer-to-struct field: `null` when absent.
fn nested(v: &Value, field: &str, each: impl Fn(&Value) -> Value) -> Value {
    match v.get(field) {
        Some(x) if !x.is_null() => each(x),
        _ => Value::Null,
    }
}

fn same(v: &Value) -> Value {
    v.clone()
}

fn matcher(m: &Value) -> Value {
    obj(vec![
        (
            "keySelector",
            nested(m, "keySelector", |k| {
                obj(vec![
                    ("trafficType", string(k, "trafficType")),
                    (
                        "attribute",
                        k.get("attribute").cloned().unwrap_or(Value::Null),
                    ),
                ])
            }),
        ),
        ("matcherType", string(m, "matcherType")),
        ("negate", boolean(m, "negate")),
        (
            "userDefinedSegmentMatcherData",
            nested(m, "userDefinedSegmentMatcherData", |d| {
                obj(vec![("segmentName", string(d, "segmentName"))])
            }),
        ),
        (
            "whitelistMatcherData",
            nested(m, "whitelistMatcherData", |d| {
                obj(vec![("whitelist", list(d, "whitelist", same))])
            }),
        ),
        (
            "unaryNumericMatcherData",
            nested(m, "unaryNumericMatcherData", |d| {
                obj(vec![
                    ("dataType", string(d, "dataType")),
                    ("value", int(d, "value")),
                ])
            }),
        ),
        (
            "betweenMatcherData",
            nested(m, "betweenMatcherData", |d| {
                obj(vec![
                    ("dataType", string(d, "dataType")),
                    ("start", int(d, "start")),
                    ("end", int(d, "end")),
                ])
            }),
        ),
        (
            "betweenStringMatcherData",
            nested(m, "betweenStringMatcherData", |d| {
                obj(vec![
                    ("start", d.get("start").cloned().unwrap_or(Value::Null)),
                    ("end", d.get("end").cloned().unwrap_or(Value::Null)),
                ])
            }),
        ),
        (
            "dependencyMatcherData",
            nested(m, "dependencyMatcherData", |d| {
                obj(vec![
                    ("split", string(d, "split")),
                    ("treatments", list(d, "treatments", same)),
                ])
            }),
        ),
        (
            "booleanMatcherData",
            m.get("booleanMatcherData").cloned().unwrap_or(Value::Null),
        ),
        (
            "stringMatcherData",
            m.get("stringMatcherData").cloned().unwrap_or(Value::Null),
        ),
        (
            "userDefinedLargeSegmentMatcherData",
            nested(m, "userDefinedLargeSegmentMatcherData", |d| {
                obj(vec![("largeSegmentName", string(d, "largeSegmentName"))])
            }),
        ),
    ])
}

fn matcher_group(c: &Value) -> Value {
    let g = c.get("matcherGroup").cloned().unwrap_or(Value::Null);
    obj(vec![
        ("combiner", string(&g, "combiner")),
        ("matchers", list(&g, "matchers", matcher)),
    ])
}

/// A flag as the Synchronizer stores it (Go's `dtos.SplitDTO`).
pub fn go_flag(f: &Value) -> Value {
    obj(vec![
        ("changeNumber", int(f, "changeNumber")),
        ("trafficTypeName", string(f, "trafficTypeName")),
        ("name", string(f, "name")),
        ("trafficAllocation", int(f, "trafficAllocation")),
        ("trafficAllocationSeed", int(f, "trafficAllocationSeed")),
        ("seed", int(f, "seed")),
        ("status", string(f, "status")),
        ("killed", boolean(f, "killed")),
        ("defaultTreatment", string(f, "defaultTreatment")),
        ("algo", int(f, "algo")),
        (
            "conditions",
            list(f, "conditions", |c| {
                obj(vec![
                    ("conditionType", string(c, "conditionType")),
                    ("matcherGroup", matcher_group(c)),
                    (
                        "partitions",
                        list(c, "partitions", |p| {
                            obj(vec![
                                ("treatment", string(p, "treatment")),
                                ("size", int(p, "size")),
                            ])
                        }),
                    ),
                    ("label", string(c, "label")),
                ])
            }),
        ),
        (
            "configurations",
            f.get("configurations").cloned().unwrap_or(Value::Null),
        ),
        ("sets", list(f, "sets", same)),
        ("impressionsDisabled", boolean(f, "impressionsDisabled")),
        (
            "prerequisites",
            list(f, "prerequisites", |p| {
                obj(vec![("n", string(p, "n")), ("ts", list(p, "ts", same))])
            }),
        ),
    ])
}

/// A rule-based segment as the Synchronizer stores it (Go's `dtos.RuleBasedSegmentDTO`).
pub fn go_rule_based_segment(r: &Value) -> Value {
    let excluded = r.get("excluded").cloned().unwrap_or(Value::Null);
    obj(vec![
        ("changeNumber", int(r, "changeNumber")),
        ("name", string(r, "name")),
        ("status", string(r, "status")),
        ("trafficTypeName", string(r, "trafficTypeName")),
        (
            "excluded",
            obj(vec![
                ("keys", list(&excluded, "keys", same)),
                (
                    "segments",
                    list(&excluded, "segments", |s| {
                        obj(vec![
                            ("name", string(s, "name")),
                            ("type", string(s, "type")),
                        ])
                    }),
                ),
            ]),
        ),
        (
            "conditions",
            list(r, "conditions", |c| {
                obj(vec![
                    ("conditionType", string(c, "conditionType")),
                    ("matcherGroup", matcher_group(c)),
                ])
            }),
        ),
    ])
}

/// Writes `doc` (a splitChanges document, either form) and `segments` (segmentChanges
/// documents) under `prefix` (`""`, or `"app."`), as the Synchronizer does.
pub fn lay_out(conn: &mut Connection, prefix: &str, doc: &str, segments: &[String]) {
    let doc: Value = serde_json::from_str(doc).expect("document is JSON");
    let (flags, till, rbs, rb_till) = match doc.get("ff") {
        Some(ff) => (
            ff["d"].as_array().cloned().unwrap_or_default(),
            ff["t"].as_i64().unwrap_or(-1),
            doc["rbs"]["d"].as_array().cloned().unwrap_or_default(),
            doc["rbs"]["t"].as_i64().unwrap_or(-1),
        ),
        None => (
            doc["splits"].as_array().cloned().unwrap_or_default(),
            doc["till"].as_i64().unwrap_or(-1),
            Vec::new(),
            -1,
        ),
    };
    let key = |k: String| format!("{prefix}{k}");
    let mut pipe = redis::pipe();
    for f in &flags {
        let go = go_flag(f);
        let name = go["name"].as_str().unwrap_or_default().to_string();
        pipe.set(key(format!("SPLITIO.split.{name}")), go.to_string())
            .ignore();
        let tt = go["trafficTypeName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        pipe.incr(key(format!("SPLITIO.trafficType.{tt}")), 1)
            .ignore();
        for set in go["sets"].as_array().into_iter().flatten() {
            let set = set.as_str().unwrap_or_default();
            pipe.sadd(key(format!("SPLITIO.flagSet.{set}")), &name)
                .ignore();
        }
    }
    pipe.set(key("SPLITIO.splits.till".into()), till).ignore();
    for r in &rbs {
        let go = go_rule_based_segment(r);
        let name = go["name"].as_str().unwrap_or_default().to_string();
        pipe.set(key(format!("SPLITIO.rbsegment.{name}")), go.to_string())
            .ignore();
    }
    pipe.set(key("SPLITIO.rbsegments.till".into()), rb_till)
        .ignore();
    for s in segments {
        let s: Value = serde_json::from_str(s).expect("segment is JSON");
        let name = s["name"].as_str().unwrap_or_default();
        let added: Vec<&str> = s["added"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !added.is_empty() {
            pipe.sadd(key(format!("SPLITIO.segment.{name}")), added)
                .ignore();
        }
        pipe.set(
            key(format!("SPLITIO.segment.{name}.till")),
            s["till"].as_i64().unwrap_or(-1),
        )
        .ignore();
    }
    pipe.query::<()>(conn).expect("the layout is written");
}
