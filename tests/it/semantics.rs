//! Edge semantics, one small inline definition per case, with exact expectations
//! (SPLIT_SEMANTICS.md: decisions at the top, §2, §3).

use serde_json::{Value, json};
use splitkit::bucketing::{HashAlgo, bucket};
use splitkit::{AttributeValue, Attributes, Error, Label, Snapshot};

// ---- building definitions ----

/// A flag with the usual fields (murmur3, traffic allocation 100, default `off`), then
/// `extra` merged over them.
fn flag(name: &str, conditions: Value, extra: Value) -> Value {
    let mut f = json!({
        "name": name, "trafficTypeName": "user", "killed": false, "defaultTreatment": "off",
        "changeNumber": 100, "algo": 2, "trafficAllocation": 100,
        "trafficAllocationSeed": 31, "seed": 77, "status": "ACTIVE",
        "configurations": null, "conditions": conditions,
    });
    if let (Some(obj), Value::Object(more)) = (f.as_object_mut(), extra) {
        obj.extend(more);
    }
    f
}

fn matcher(kind: &str, attribute: Option<&str>, data: Value) -> Value {
    let mut m = json!({"keySelector": {"trafficType": "user", "attribute": attribute},
                       "matcherType": kind, "negate": false});
    if let (Some(obj), Value::Object(more)) = (m.as_object_mut(), data) {
        obj.extend(more);
    }
    m
}

fn negated(mut m: Value) -> Value {
    m["negate"] = json!(true);
    m
}

fn all_keys() -> Value {
    matcher("ALL_KEYS", None, json!({}))
}

fn whitelist(attribute: Option<&str>, list: &[&str]) -> Value {
    matcher(
        "WHITELIST",
        attribute,
        json!({"whitelistMatcherData": {"whitelist": list}}),
    )
}

fn depends_on(flag: &str, treatments: &[&str]) -> Value {
    matcher(
        "IN_SPLIT_TREATMENT",
        None,
        json!({"dependencyMatcherData": {"split": flag, "treatments": treatments}}),
    )
}

fn condition(kind: &str, matchers: Vec<Value>, partitions: Value, label: &str) -> Value {
    json!({"conditionType": kind, "matcherGroup": {"combiner": "AND", "matchers": matchers},
           "partitions": partitions, "label": label})
}

/// A ROLLOUT condition giving `on` to everyone its matchers accept.
fn rule(matchers: Vec<Value>) -> Value {
    condition(
        "ROLLOUT",
        matchers,
        json!([{"treatment": "on", "size": 100}]),
        "rule",
    )
}

/// Loads flags and rule-based segments; returns the problems too.
fn load_doc(flags: Vec<Value>, rbs: Vec<Value>) -> (Snapshot, Vec<Error>) {
    let doc = json!({"ff": {"d": flags, "s": -1, "t": 100}, "rbs": {"d": rbs, "s": -1, "t": 5}});
    Snapshot::from_json(&doc.to_string(), "semantics.rs").expect("document parses")
}

/// Loads flags that must compile without problems.
fn load(flags: Vec<Value>) -> Snapshot {
    let (s, problems) = load_doc(flags, vec![]);
    assert!(problems.is_empty(), "{problems:?}");
    s
}

/// (treatment, label, config) of an evaluation.
fn eval(
    s: &Snapshot,
    key: &str,
    flag: &str,
    attrs: &Attributes,
) -> (String, String, Option<String>) {
    let e = s.evaluate(key, None, flag, attrs);
    (
        e.treatment.to_string(),
        e.label.as_str().to_string(),
        e.config.map(str::to_string),
    )
}

/// Whether a single matcher accepts key `k` with `attrs` (a one-rule flag answers `on`).
fn accepts(m: Value, attrs: &Attributes) -> bool {
    accepts_key(m, "k", attrs)
}

fn accepts_key(m: Value, key: &str, attrs: &Attributes) -> bool {
    let s = load(vec![flag("f", json!([rule(vec![m])]), json!({}))]);
    let (t, label, _) = eval(&s, key, "f", attrs);
    match t.as_str() {
        "on" => true,
        "off" => {
            assert_eq!(label, "no rule matched");
            false
        }
        other => panic!("unexpected treatment {other} ({label})"),
    }
}

fn attr(name: &str, v: impl Into<AttributeValue>) -> Attributes {
    Attributes::new().with(name, v)
}

fn none() -> Attributes {
    Attributes::new()
}

/// A key whose murmur3 bucket under `seed` satisfies `pred`.
fn key_with_bucket(seed: i32, algo: HashAlgo, pred: impl Fn(u8) -> bool) -> String {
    (0..100_000)
        .map(|i| format!("key-{i}"))
        .find(|k| pred(bucket(k, seed, algo)))
        .expect("some key has such a bucket")
}

// ---- dependencies and recursion ----

#[test]
fn dependency_cycle_is_an_exception() {
    let s = load(vec![
        flag(
            "a",
            json!([rule(vec![depends_on("b", &["on"])])]),
            json!({}),
        ),
        flag(
            "b",
            json!([rule(vec![depends_on("a", &["on"])])]),
            json!({}),
        ),
    ]);
    for f in ["a", "b"] {
        let e = s.evaluate("user", None, f, &none());
        assert_eq!(e.treatment, "control", "{f}");
        assert_eq!(e.label, &Label::Exception, "{f}");
        assert_eq!(e.label.as_str(), "exception");
        assert_eq!(e.config, None);
        // The flag exists: its change number and traffic type are reported.
        assert_eq!(e.change_number, Some(100));
        assert_eq!(e.traffic_type, Some("user"));
    }
}

#[test]
fn self_dependency_is_an_exception() {
    let s = load(vec![flag(
        "a",
        json!([rule(vec![depends_on("a", &["on"])])]),
        json!({}),
    )]);
    assert_eq!(eval(&s, "user", "a", &none()).1, "exception");
}

#[test]
fn self_prerequisite_is_an_exception() {
    let s = load(vec![flag(
        "a",
        json!([rule(vec![all_keys()])]),
        json!({"prerequisites": [{"n": "a", "ts": ["on"]}]}),
    )]);
    let (t, label, _) = eval(&s, "user", "a", &none());
    assert_eq!((t.as_str(), label.as_str()), ("control", "exception"));
}

#[test]
fn prerequisite_cycle_is_an_exception() {
    let s = load(vec![
        flag(
            "a",
            json!([rule(vec![all_keys()])]),
            json!({"prerequisites": [{"n": "b", "ts": ["on"]}]}),
        ),
        flag(
            "b",
            json!([rule(vec![all_keys()])]),
            json!({"prerequisites": [{"n": "a", "ts": ["on"]}]}),
        ),
    ]);
    assert_eq!(eval(&s, "user", "a", &none()).0, "control");
    assert_eq!(eval(&s, "user", "a", &none()).1, "exception");
}

/// `f0` depends on `f1` ... on `f{n-1}`, which gives `on` to everyone.
fn dependency_chain(n: usize, prerequisites: bool) -> Snapshot {
    let flags = (0..n)
        .map(|i| {
            let next = format!("f{}", i + 1);
            if i + 1 == n {
                flag(&format!("f{i}"), json!([rule(vec![all_keys()])]), json!({}))
            } else if prerequisites {
                flag(
                    &format!("f{i}"),
                    json!([rule(vec![all_keys()])]),
                    json!({"prerequisites": [{"n": next, "ts": ["on"]}]}),
                )
            } else {
                flag(
                    &format!("f{i}"),
                    json!([rule(vec![depends_on(&next, &["on"])])]),
                    json!({}),
                )
            }
        })
        .collect();
    load(flags)
}

#[test]
fn deep_legal_dependency_chain_works() {
    for prerequisites in [false, true] {
        let s = dependency_chain(20, prerequisites);
        let (t, label, _) = eval(&s, "user", "f0", &none());
        assert_eq!(
            (t.as_str(), label.as_str()),
            ("on", "rule"),
            "prerequisites: {prerequisites}"
        );
    }
}

#[test]
fn very_deep_chain_is_cut_without_overflowing_the_stack() {
    for prerequisites in [false, true] {
        let s = dependency_chain(2_000, prerequisites);
        let (t, label, _) = eval(&s, "user", "f0", &none());
        assert_eq!((t.as_str(), label.as_str()), ("control", "exception"));
        // The tail of the chain is within the limit.
        assert_eq!(eval(&s, "user", "f1990", &none()).0, "on");
    }
}

#[test]
fn mutually_excluding_rule_based_segments_are_an_exception() {
    let rbs = |name: &str, other: &str| {
        json!({"name": name, "status": "ACTIVE", "trafficTypeName": "user", "changeNumber": 1,
               "excluded": {"keys": [], "segments": [{"name": other, "type": "rule-based"}]},
               "conditions": [{"matcherGroup": {"combiner": "AND", "matchers": [all_keys()]}}]})
    };
    let (s, problems) = load_doc(
        vec![flag(
            "f",
            json!([rule(vec![matcher(
                "IN_RULE_BASED_SEGMENT",
                None,
                json!({"userDefinedSegmentMatcherData": {"segmentName": "a"}})
            )])]),
            json!({}),
        )],
        vec![rbs("a", "b"), rbs("b", "a")],
    );
    assert!(problems.is_empty(), "{problems:?}");
    let (t, label, _) = eval(&s, "user", "f", &none());
    assert_eq!((t.as_str(), label.as_str()), ("control", "exception"));
}

// ---- partitions, traffic allocation, kill switch ----

#[test]
fn partitions_short_of_the_bucket_give_control_with_the_rule_label() {
    let parts = json!([{"treatment": "on", "size": 10}, {"treatment": "off", "size": 10}]);
    let s = load(vec![flag(
        "f",
        json!([condition(
            "ROLLOUT",
            vec![all_keys()],
            parts,
            "half-empty rule"
        )]),
        json!({"configurations": {"on": "{\"x\":1}", "off": "{\"x\":0}"}}),
    )]);
    let outside = key_with_bucket(77, HashAlgo::Murmur3, |b| b > 20);
    let (t, label, config) = eval(&s, &outside, "f", &none());
    assert_eq!(
        (t.as_str(), label.as_str(), config),
        ("control", "half-empty rule", None)
    );
    let inside = key_with_bucket(77, HashAlgo::Murmur3, |b| b <= 10);
    assert_eq!(eval(&s, &inside, "f", &none()).0, "on");
    let second = key_with_bucket(77, HashAlgo::Murmur3, |b| (11..=20).contains(&b));
    assert_eq!(eval(&s, &second, "f", &none()).0, "off");
}

#[test]
fn traffic_allocation_zero_is_not_in_split_with_the_default_treatment_and_its_config() {
    let s = load(vec![flag(
        "f",
        json!([rule(vec![all_keys()])]),
        json!({"trafficAllocation": 0, "defaultTreatment": "grey",
               "configurations": {"grey": "{\"c\":\"grey\"}", "on": "{\"c\":\"on\"}"}}),
    )]);
    for key in ["a", "b", "user-1", "äöü"] {
        let (t, label, config) = eval(&s, key, "f", &none());
        assert_eq!(t, "grey");
        assert_eq!(label, "not in split");
        assert_eq!(config.as_deref(), Some("{\"c\":\"grey\"}"));
    }
}

#[test]
fn traffic_allocation_applies_from_the_first_rollout_condition() {
    let s = load(vec![flag(
        "f",
        json!([
            condition("WHITELIST", vec![whitelist(None, &["vip"])],
                      json!([{"treatment": "on", "size": 100}]), "whitelisted"),
            // No conditionType at all counts as WHITELIST too.
            {"matcherGroup": {"combiner": "AND", "matchers": [whitelist(Some("plan"), &["gold"])]},
             "partitions": [{"treatment": "gold", "size": 100}], "label": "gold plan"},
            rule(vec![all_keys()]),
        ]),
        json!({"trafficAllocation": 0}),
    )]);
    assert_eq!(
        eval(&s, "vip", "f", &none()),
        ("on".into(), "whitelisted".into(), None)
    );
    assert_eq!(eval(&s, "x", "f", &attr("plan", "gold")).0, "gold");
    assert_eq!(eval(&s, "x", "f", &attr("plan", "gold")).1, "gold plan");
    assert_eq!(
        eval(&s, "other", "f", &none()),
        ("off".into(), "not in split".into(), None)
    );
}

#[test]
fn traffic_allocation_uses_its_own_seed_and_bucket() {
    let s = load(vec![flag(
        "f",
        json!([rule(vec![all_keys()])]),
        json!({"trafficAllocation": 40, "trafficAllocationSeed": -5}),
    )]);
    let inside = key_with_bucket(-5, HashAlgo::Murmur3, |b| b <= 40);
    let outside = key_with_bucket(-5, HashAlgo::Murmur3, |b| b > 40);
    assert_eq!(eval(&s, &inside, "f", &none()).1, "rule");
    assert_eq!(eval(&s, &outside, "f", &none()).1, "not in split");
}

#[test]
fn killed_beats_everything() {
    let s = load(vec![flag(
        "f",
        json!([
            condition(
                "WHITELIST",
                vec![whitelist(None, &["vip"])],
                json!([{"treatment": "on", "size": 100}]),
                "whitelisted"
            ),
            rule(vec![depends_on("f", &["on"])])
        ]),
        json!({"killed": true, "trafficAllocation": 0, "defaultTreatment": "safe",
               "prerequisites": [{"n": "missing", "ts": ["on"]}, {"n": "f", "ts": ["on"]}],
               "configurations": {"safe": "{\"safe\":true}"}}),
    )]);
    for key in ["vip", "anyone"] {
        let (t, label, config) = eval(&s, key, "f", &none());
        assert_eq!(t, "safe");
        assert_eq!(label, "killed");
        assert_eq!(config.as_deref(), Some("{\"safe\":true}"));
    }
}

#[test]
fn no_rule_matched_gives_the_default_treatment() {
    let s = load(vec![flag(
        "f",
        json!([rule(vec![whitelist(None, &["vip"])])]),
        json!({}),
    )]);
    let (t, label, _) = eval(&s, "nobody", "f", &none());
    assert_eq!((t.as_str(), label.as_str()), ("off", "no rule matched"));
    assert_eq!(
        s.evaluate("nobody", None, "f", &none()).label,
        &Label::NoRuleMatched
    );
}

#[test]
fn configurations_come_with_every_default_treatment() {
    let configs = json!({"configurations": {"on": "{\"a\":1}", "off": "{\"d\":true}"}});
    let extra = |more: Value| {
        let mut e = configs.clone();
        e.as_object_mut()
            .expect("object")
            .extend(more.as_object().expect("object").clone());
        e
    };
    let s = load(vec![
        flag(
            "killed",
            json!([rule(vec![all_keys()])]),
            extra(json!({"killed": true})),
        ),
        flag(
            "default",
            json!([rule(vec![whitelist(None, &["vip"])])]),
            extra(json!({})),
        ),
        flag(
            "not_in_split",
            json!([rule(vec![all_keys()])]),
            extra(json!({"trafficAllocation": 0})),
        ),
        flag(
            "prereq",
            json!([rule(vec![all_keys()])]),
            extra(json!({"prerequisites": [{"n": "default", "ts": ["on"]}]})),
        ),
        flag("plain", json!([rule(vec![all_keys()])]), extra(json!({}))),
    ]);
    let d = Some("{\"d\":true}".to_string());
    assert_eq!(
        eval(&s, "k", "killed", &none()),
        ("off".into(), "killed".into(), d.clone())
    );
    assert_eq!(
        eval(&s, "k", "default", &none()),
        ("off".into(), "no rule matched".into(), d.clone())
    );
    assert_eq!(
        eval(&s, "k", "not_in_split", &none()),
        ("off".into(), "not in split".into(), d.clone())
    );
    assert_eq!(
        eval(&s, "k", "prereq", &none()),
        ("off".into(), "prerequisites not met".into(), d)
    );
    assert_eq!(eval(&s, "vip", "prereq", &none()).0, "on");
    assert_eq!(
        eval(&s, "k", "plain", &none()).2.as_deref(),
        Some("{\"a\":1}")
    );
}

#[test]
fn a_missing_prerequisite_flag_is_not_met() {
    let s = load(vec![flag(
        "f",
        json!([rule(vec![all_keys()])]),
        json!({"prerequisites": [{"n": "ghost", "ts": ["on"]}]}),
    )]);
    assert_eq!(eval(&s, "k", "f", &none()).1, "prerequisites not met");
    // ...unless `control` is an accepted treatment.
    let s = load(vec![flag(
        "f",
        json!([rule(vec![all_keys()])]),
        json!({"prerequisites": [{"n": "ghost", "ts": ["control"]}]}),
    )]);
    assert_eq!(eval(&s, "k", "f", &none()).0, "on");
    // A prerequisite without treatments can never be met.
    let s = load(vec![flag(
        "f",
        json!([rule(vec![all_keys()])]),
        json!({"prerequisites": [{"n": "ghost", "ts": null}]}),
    )]);
    assert_eq!(eval(&s, "k", "f", &none()).1, "prerequisites not met");
}

#[test]
fn null_or_empty_prerequisites_are_met() {
    for prerequisites in [json!(null), json!([])] {
        let s = load(vec![flag(
            "f",
            json!([rule(vec![all_keys()])]),
            json!({ "prerequisites": prerequisites }),
        )]);
        assert_eq!(eval(&s, "k", "f", &none()).0, "on");
    }
}

// ---- matcher input and coercions ----

#[test]
fn missing_attribute_with_negate_matches() {
    let plan = negated(whitelist(Some("plan"), &["pro"]));
    assert!(accepts(plan.clone(), &none()));
    assert!(accepts(plan.clone(), &attr("other", "pro")));
    assert!(!accepts(plan, &attr("plan", "pro")));
    let age = negated(matcher(
        "EQUAL_TO",
        Some("age"),
        json!({"unaryNumericMatcherData": {"dataType": "NUMBER", "value": 3}}),
    ));
    assert!(accepts(age, &none()));
    // Without negate a missing attribute never matches.
    assert!(!accepts(whitelist(Some("plan"), &["pro"]), &none()));
}

fn number(kind: &str, attribute: &str, value: i64) -> Value {
    matcher(
        kind,
        Some(attribute),
        json!({"unaryNumericMatcherData": {"dataType": "NUMBER", "value": value}}),
    )
}

#[test]
fn javascript_number_coercions() {
    assert!(accepts(number("EQUAL_TO", "n", 42), &attr("n", "42")));
    assert!(accepts(number("EQUAL_TO", "n", 42), &attr("n", " 42 ")));
    assert!(!accepts(number("EQUAL_TO", "n", 42), &attr("n", "42abc")));
    assert!(accepts(number("EQUAL_TO", "n", 1), &attr("n", true)));
    assert!(accepts(number("EQUAL_TO", "n", 0), &attr("n", false)));
    assert!(accepts(
        number("EQUAL_TO", "n", 0),
        &attr("n", AttributeValue::Null)
    ));
    assert!(accepts(number("EQUAL_TO", "n", 42), &attr("n", 42.0)));
    assert!(accepts(
        number("GREATER_THAN_OR_EQUAL_TO", "n", 5),
        &attr("n", 5.5)
    ));
    assert!(!accepts(
        number("GREATER_THAN_OR_EQUAL_TO", "n", 5),
        &attr("n", 4.5)
    ));
    assert!(accepts(
        number("LESS_THAN_OR_EQUAL_TO", "n", 5),
        &attr("n", 4.999)
    ));
    assert!(!accepts(number("EQUAL_TO", "n", 5), &attr("n", 5.5)));
    assert!(!accepts(number("EQUAL_TO", "n", 0), &attr("n", f64::NAN)));
    assert!(accepts(
        number("GREATER_THAN_OR_EQUAL_TO", "n", 5),
        &attr("n", f64::INFINITY)
    ));
    let between = matcher(
        "BETWEEN",
        Some("n"),
        json!({"betweenMatcherData": {"dataType": "NUMBER", "start": -3, "end": 3}}),
    );
    assert!(accepts(between.clone(), &attr("n", -3)));
    assert!(accepts(between.clone(), &attr("n", "3")));
    assert!(!accepts(between, &attr("n", 3.01)));
}

#[test]
fn javascript_boolean_and_string_coercions() {
    let is_true = matcher(
        "EQUAL_TO_BOOLEAN",
        Some("b"),
        json!({"booleanMatcherData": true}),
    );
    assert!(accepts(is_true.clone(), &attr("b", "TRUE")));
    assert!(accepts(is_true.clone(), &attr("b", "True")));
    assert!(accepts(is_true.clone(), &attr("b", true)));
    assert!(!accepts(is_true.clone(), &attr("b", "yes")));
    assert!(!accepts(is_true.clone(), &attr("b", 1)));
    let is_false = matcher(
        "EQUAL_TO_BOOLEAN",
        Some("b"),
        json!({"booleanMatcherData": false}),
    );
    assert!(accepts(is_false, &attr("b", "false")));
    // The key itself, when no attribute is selected.
    assert!(accepts_key(
        matcher(
            "EQUAL_TO_BOOLEAN",
            None,
            json!({"booleanMatcherData": true})
        ),
        "true",
        &none()
    ));

    assert!(accepts(whitelist(Some("n"), &["5"]), &attr("n", 5)));
    assert!(accepts(whitelist(Some("n"), &["true"]), &attr("n", true)));
    assert!(accepts(whitelist(Some("n"), &["5.5"]), &attr("n", 5.5)));
    assert!(!accepts(whitelist(Some("n"), &["5.0"]), &attr("n", 5.0)));
}

fn set_matcher(kind: &str, list: &[&str]) -> Value {
    matcher(
        kind,
        Some("tags"),
        json!({"whitelistMatcherData": {"whitelist": list}}),
    )
}

#[test]
fn an_empty_list_gives_no_value_for_set_matchers() {
    let empty = attr("tags", AttributeValue::List(vec![]));
    for kind in [
        "EQUAL_TO_SET",
        "CONTAINS_ANY_OF_SET",
        "CONTAINS_ALL_OF_SET",
        "PART_OF_SET",
    ] {
        assert!(!accepts(set_matcher(kind, &["a"]), &empty), "{kind} [a]");
        assert!(!accepts(set_matcher(kind, &[]), &empty), "{kind} []");
        // ...like a missing attribute: negation still applies.
        assert!(
            accepts(negated(set_matcher(kind, &["a"])), &empty),
            "not {kind}"
        );
    }
    let tags = attr("tags", vec!["a", "b", "a"]);
    assert!(accepts(set_matcher("EQUAL_TO_SET", &["b", "a"]), &tags));
    assert!(accepts(set_matcher("PART_OF_SET", &["a", "b", "c"]), &tags));
    assert!(!accepts(
        set_matcher("CONTAINS_ALL_OF_SET", &["a", "c"]),
        &tags
    ));
    assert!(accepts(
        set_matcher("CONTAINS_ANY_OF_SET", &["c", "b"]),
        &tags
    ));
    // Items are stringified like JavaScript's `x + ''`.
    assert!(accepts(
        set_matcher("EQUAL_TO_SET", &["1", "true"]),
        &attr(
            "tags",
            vec![AttributeValue::Int(1), AttributeValue::Bool(true)]
        )
    ));
    // A string is not a set.
    assert!(!accepts(
        set_matcher("CONTAINS_ANY_OF_SET", &["a"]),
        &attr("tags", "a")
    ));
}

// ---- DATETIME ----

/// 2024-03-15T00:00:00Z in epoch milliseconds.
const DAY: i64 = 1_710_460_800_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn datetime(kind: &str, value: i64) -> Value {
    matcher(
        kind,
        Some("t"),
        json!({"unaryNumericMatcherData": {"dataType": "DATETIME", "value": value}}),
    )
}

fn both_forms(ms: i64) -> [Attributes; 2] {
    [attr("t", ms), attr("t", AttributeValue::DateTime(ms))]
}

#[test]
fn datetime_equal_to_compares_utc_days() {
    assert_eq!(DAY % (24 * HOUR), 0);
    let m = datetime("EQUAL_TO", DAY + 5 * HOUR + 17);
    for a in both_forms(DAY) {
        assert!(accepts(m.clone(), &a));
    }
    for a in both_forms(DAY + 24 * HOUR - 1) {
        assert!(accepts(m.clone(), &a));
    }
    for a in both_forms(DAY + 24 * HOUR) {
        assert!(!accepts(m.clone(), &a));
    }
    for a in both_forms(DAY - 1) {
        assert!(!accepts(m.clone(), &a));
    }
}

#[test]
fn datetime_comparisons_truncate_to_the_minute() {
    let gte = datetime("GREATER_THAN_OR_EQUAL_TO", DAY + 10 * MINUTE + 30_000);
    for a in both_forms(DAY + 10 * MINUTE + 5_000) {
        assert!(accepts(gte.clone(), &a), "same minute, earlier second");
    }
    for a in both_forms(DAY + 10 * MINUTE - 1) {
        assert!(!accepts(gte.clone(), &a));
    }
    let lte = datetime("LESS_THAN_OR_EQUAL_TO", DAY + 10 * MINUTE);
    for a in both_forms(DAY + 10 * MINUTE + 59_999) {
        assert!(accepts(lte.clone(), &a));
    }
    for a in both_forms(DAY + 11 * MINUTE) {
        assert!(!accepts(lte.clone(), &a));
    }
    let between = matcher(
        "BETWEEN",
        Some("t"),
        json!({"betweenMatcherData": {"dataType": "DATETIME",
                                      "start": DAY + 10 * MINUTE + 30_000,
                                      "end": DAY + 20 * MINUTE + 15_000}}),
    );
    for (ms, inside) in [
        (DAY + 10 * MINUTE + 1_000, true),
        (DAY + 20 * MINUTE + 59_999, true),
        (DAY + 10 * MINUTE - 1, false),
        (DAY + 21 * MINUTE, false),
    ] {
        for a in both_forms(ms) {
            assert_eq!(accepts(between.clone(), &a), inside, "{ms}");
        }
    }
    // Dates before 1970 truncate downwards too.
    let before = datetime("GREATER_THAN_OR_EQUAL_TO", -MINUTE);
    assert!(accepts(
        before.clone(),
        &attr("t", AttributeValue::DateTime(-1))
    ));
    assert!(!accepts(
        before,
        &attr("t", AttributeValue::DateTime(-MINUTE - 1))
    ));
}

// ---- string matchers ----

#[test]
fn starts_with_an_empty_prefix_matches_everything() {
    let m = matcher(
        "STARTS_WITH",
        Some("s"),
        json!({"whitelistMatcherData": {"whitelist": [""]}}),
    );
    for v in ["anything", "x", "ünïcödé", " "] {
        assert!(accepts(m.clone(), &attr("s", v)), "{v:?}");
    }
    assert!(accepts(m.clone(), &attr("s", 12)));
    assert!(accepts_key(
        matcher(
            "STARTS_WITH",
            None,
            json!({"whitelistMatcherData": {"whitelist": ["", "zzz"]}})
        ),
        "some-key",
        &none()
    ));
    let ends = matcher(
        "ENDS_WITH",
        Some("s"),
        json!({"whitelistMatcherData": {"whitelist": [""]}}),
    );
    assert!(accepts(ends, &attr("s", "whatever")));
}

#[test]
fn invalid_regex_never_matches() {
    for pattern in ["(", "[a-", "a{2,1}", "\\", "(?<n>a)(?<n>b)"] {
        let m = matcher(
            "MATCHES_STRING",
            Some("s"),
            json!({"stringMatcherData": pattern}),
        );
        assert!(!accepts(m.clone(), &attr("s", pattern)), "{pattern}");
        assert!(!accepts(m.clone(), &attr("s", "a")), "{pattern}");
        assert!(accepts(negated(m), &attr("s", "a")), "not {pattern}");
    }
    // A valid one searches, unanchored.
    let m = matcher(
        "MATCHES_STRING",
        Some("s"),
        json!({"stringMatcherData": "b+c"}),
    );
    assert!(accepts(m.clone(), &attr("s", "aabbbcd")));
    assert!(!accepts(m, &attr("s", "acb")));
}

#[test]
fn regex_perl_classes_are_ascii_as_in_java_and_javascript() {
    let regex = |pattern: &str| {
        matcher(
            "MATCHES_STRING",
            Some("s"),
            json!({"stringMatcherData": pattern}),
        )
    };
    let cases = [
        (r"\d", "345", true),
        (r"\d", "٣٤٥", false),
        (r"^\D+$", "٣٤٥", true),
        (r"\w", "é", false),
        (r"^\w+$", "héllo", false),
        (r"^\w+$", "hello", true),
        (r"\W", "é", true),
        (r"\s", "\u{A0}", false),
        (r"\s", "\u{2003}", false),
        (r"\s", "\u{B}", true),
        (r"\S", "\u{A0}", true),
        (r"\bfoo\b", "éfooé", true),
        (r"\bfoo\b", "afoo", false),
        (r"perl\B", "perlé", false),
        (r"[^\d]", "٣", true),
        (r"[\w]", "é", false),
        (r"\\d", r"\d", true),
        (r"\\d", "1", false),
        // Literal non-ASCII characters and `.` keep their Unicode meaning.
        (r"^é.\d$", "éß1", true),
    ];
    for (pattern, input, expected) in cases {
        assert_eq!(
            accepts(regex(pattern), &attr("s", input)),
            expected,
            "{pattern} on {input:?}"
        );
    }
    // Still invalid: never matches, negated always does.
    assert!(!accepts(regex(r"(\d"), &attr("s", "(1")));
    assert!(accepts(negated(regex(r"[\d")), &attr("s", "1")));
}

#[test]
fn in_list_semver_with_an_invalid_entry_is_disabled() {
    let list = |items: &[&str]| {
        matcher(
            "IN_LIST_SEMVER",
            Some("v"),
            json!({"whitelistMatcherData": {"whitelist": items}}),
        )
    };
    assert!(accepts(list(&["1.2.3", "2.0.0"]), &attr("v", "1.2.3")));
    assert!(accepts(list(&["01.2.3"]), &attr("v", "1.02.3")));
    assert!(!accepts(
        list(&["1.2.3", "not-a-version"]),
        &attr("v", "1.2.3")
    ));
    assert!(!accepts(list(&["1.2.3", ""]), &attr("v", "1.2.3")));
    assert!(!accepts(list(&[]), &attr("v", "1.2.3")));
    // Disabled means false, so negation gives true.
    assert!(accepts(negated(list(&["1.2.3", "x"])), &attr("v", "1.2.3")));
}

// ---- unsupported matchers ----

#[test]
fn unknown_matcher_gives_control_and_unsupported_even_without_traffic() {
    let (s, problems) = load_doc(
        vec![
            flag(
                "new_thing",
                json!([
                    condition(
                        "WHITELIST",
                        vec![whitelist(None, &["vip"])],
                        json!([{"treatment": "on", "size": 100}]),
                        "whitelisted"
                    ),
                    rule(vec![matcher("SOMETHING_NEW", Some("x"), json!({}))])
                ]),
                json!({"trafficAllocation": 0, "configurations": {"off": "{}"}}),
            ),
            flag("fine", json!([rule(vec![all_keys()])]), json!({})),
        ],
        vec![],
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].to_string().contains("new_thing"),
        "{}",
        problems[0]
    );
    assert!(
        problems[0].to_string().contains("SOMETHING_NEW"),
        "{}",
        problems[0]
    );
    for key in ["vip", "a", "b", "c", "d"] {
        let e = s.evaluate(key, None, "new_thing", &none());
        assert_eq!(e.treatment, "control", "{key}");
        assert_eq!(e.label, &Label::Unsupported, "{key}");
        assert_eq!(e.label.as_str(), "targeting rule type unsupported by sdk");
        assert_eq!(e.change_number, Some(100));
        assert_eq!(e.config, None);
    }
    assert_eq!(eval(&s, "a", "fine", &none()).0, "on");
}

#[test]
fn large_segments_are_unsupported() {
    let (s, problems) = load_doc(
        vec![flag(
            "f",
            json!([rule(vec![matcher(
                "IN_LARGE_SEGMENT",
                None,
                json!({"userDefinedLargeSegmentMatcherData": {"largeSegmentName": "big"}})
            )])]),
            json!({}),
        )],
        vec![],
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    let (t, label, _) = eval(&s, "k", "f", &none());
    assert_eq!(
        (t.as_str(), label.as_str()),
        ("control", "targeting rule type unsupported by sdk")
    );
}

// ---- segments and rule-based segments ----

fn in_rbs(name: &str) -> Value {
    matcher(
        "IN_RULE_BASED_SEGMENT",
        None,
        json!({"userDefinedSegmentMatcherData": {"segmentName": name}}),
    )
}

#[test]
fn rule_based_segment_exclusions() {
    let staff = json!({
        "name": "staff", "status": "ACTIVE", "trafficTypeName": "user", "changeNumber": 3,
        "excluded": {"keys": ["mauro"],
                     "segments": [{"name": "blocked", "type": "standard"},
                                  {"name": "contractors", "type": "rule-based"}]},
        "conditions": [{"conditionType": "WHITELIST", "matcherGroup": {"combiner": "AND", "matchers": [
            matcher("ENDS_WITH", Some("email"), json!({"whitelistMatcherData": {"whitelist": ["@split.io"]}}))]}}]
    });
    let contractors = json!({
        "name": "contractors", "status": "ACTIVE", "trafficTypeName": "user", "changeNumber": 3,
        "excluded": null,
        "conditions": [{"matcherGroup": {"combiner": "AND", "matchers": [whitelist(Some("kind"), &["contractor"])]}}]
    });
    let (s, problems) = load_doc(
        vec![flag("f", json!([rule(vec![in_rbs("staff")])]), json!({}))],
        vec![staff, contractors],
    );
    assert!(problems.is_empty(), "{problems:?}");
    let s = s.with_segment("blocked", ["pato"]);
    let person = |key: &str, kind: Option<&str>| {
        let mut a = attr("email", format!("{key}@split.io"));
        if let Some(k) = kind {
            a.insert("kind", k);
        }
        eval(&s, key, "f", &a).0
    };
    assert_eq!(person("bilal", None), "on");
    assert_eq!(person("mauro", None), "off", "excluded key");
    assert_eq!(person("pato", None), "off", "excluded standard segment");
    assert_eq!(
        person("nico", Some("contractor")),
        "off",
        "excluded rule-based segment"
    );
    assert_eq!(person("nico", Some("employee")), "on");
    assert_eq!(
        eval(&s, "bilal", "f", &attr("email", "bilal@other.com")).0,
        "off"
    );
    // A missing rule-based segment matches nobody.
    let s = load(vec![flag(
        "g",
        json!([rule(vec![in_rbs("ghost")])]),
        json!({}),
    )]);
    assert_eq!(eval(&s, "bilal", "g", &none()).0, "off");
}

#[test]
fn segments_are_looked_up_by_matching_key_not_bucketing_key() {
    let s = load(vec![flag(
        "f",
        json!([rule(vec![matcher(
            "IN_SEGMENT",
            None,
            json!({"userDefinedSegmentMatcherData": {"segmentName": "beta"}})
        )])]),
        json!({}),
    )])
    .with_segment("beta", ["ann"]);
    assert_eq!(s.evaluate("ann", Some("zed"), "f", &none()).treatment, "on");
    assert_eq!(
        s.evaluate("zed", Some("ann"), "f", &none()).treatment,
        "off"
    );
    assert_eq!(
        s.evaluate("ann", None, "unknown-flag", &none()).label,
        &Label::DefinitionNotFound
    );
}

// ---- labels ----

#[test]
fn conditions_without_a_label_get_a_generated_one() {
    let no_label = |m: Value| {
        json!({"conditionType": "ROLLOUT", "matcherGroup": {"combiner": "AND", "matchers": [m]},
               "partitions": [{"treatment": "on", "size": 100}]})
    };
    let s = load(vec![
        flag(
            "seg",
            json!([no_label(matcher(
                "IN_SEGMENT",
                None,
                json!({"userDefinedSegmentMatcherData": {"segmentName": "employees"}})
            ))]),
            json!({}),
        ),
        flag(
            "loc",
            json!([no_label(whitelist(Some("location"), &["california"]))]),
            json!({}),
        ),
    ])
    .with_segment("employees", ["ann"]);
    assert_eq!(eval(&s, "ann", "seg", &none()).1, "in segment employees");
    assert_eq!(
        eval(&s, "bob", "loc", &attr("location", "california")).1,
        "user.location in list [\"california\"]"
    );
}

#[test]
fn condition_labels_are_copied_verbatim() {
    let parts = json!([{"treatment": "on", "size": 100}]);
    let s = load(vec![flag(
        "f",
        json!([condition(
            "ROLLOUT",
            vec![all_keys()],
            parts,
            "default rule"
        )]),
        json!({}),
    )]);
    let e = s.evaluate("k", None, "f", &none());
    assert_eq!(e.label.as_str(), "default rule");
    assert_eq!(e.label, &Label::Rule("default rule".into()));
}

// ---- hashing ----

#[test]
fn missing_algo_uses_the_legacy_hash() {
    let fifty = json!([{"treatment": "on", "size": 50}, {"treatment": "off", "size": 50}]);
    let conditions = json!([condition("ROLLOUT", vec![all_keys()], fifty, "half")]);
    let seed = 77;
    let legacy_on = (0..100_000)
        .map(|i| format!("user-{i}"))
        .find(|k| {
            bucket(k, seed, HashAlgo::Legacy) <= 50 && bucket(k, seed, HashAlgo::Murmur3) > 50
        })
        .expect("a key the two hashes disagree on");
    let legacy_off = (0..100_000)
        .map(|i| format!("user-{i}"))
        .find(|k| {
            bucket(k, seed, HashAlgo::Legacy) > 50 && bucket(k, seed, HashAlgo::Murmur3) <= 50
        })
        .expect("a key the two hashes disagree on");
    let mut absent = flag("absent", conditions.clone(), json!({}));
    absent.as_object_mut().expect("object").remove("algo");
    let s = load(vec![
        absent,
        flag("null", conditions.clone(), json!({"algo": null})),
        flag("one", conditions.clone(), json!({"algo": 1})),
        flag("seven", conditions.clone(), json!({"algo": 7})),
        flag("two", conditions, json!({"algo": 2})),
    ]);
    for f in ["absent", "null", "one", "seven"] {
        assert_eq!(eval(&s, &legacy_on, f, &none()).0, "on", "{f}");
        assert_eq!(eval(&s, &legacy_off, f, &none()).0, "off", "{f}");
    }
    assert_eq!(eval(&s, &legacy_on, "two", &none()).0, "off");
    assert_eq!(eval(&s, &legacy_off, "two", &none()).0, "on");
}

#[test]
fn bucketing_key_decides_the_bucket() {
    let fifty = json!([{"treatment": "on", "size": 50}, {"treatment": "off", "size": 50}]);
    let s = load(vec![flag(
        "f",
        json!([condition("ROLLOUT", vec![all_keys()], fifty, "half")]),
        json!({}),
    )]);
    let low = key_with_bucket(77, HashAlgo::Murmur3, |b| b <= 50);
    let high = key_with_bucket(77, HashAlgo::Murmur3, |b| b > 50);
    for key in ["a", "b", "c"] {
        assert_eq!(s.evaluate(key, Some(&low), "f", &none()).treatment, "on");
        assert_eq!(s.evaluate(key, Some(&high), "f", &none()).treatment, "off");
    }
}

// ---- documents ----

#[test]
fn archived_flags_are_not_loaded() {
    let s = load(vec![
        flag("live", json!([rule(vec![all_keys()])]), json!({})),
        flag(
            "gone",
            json!([rule(vec![all_keys()])]),
            json!({"status": "ARCHIVED"}),
        ),
    ]);
    assert_eq!(s.flag_names(), vec!["live".to_string()]);
    let e = s.evaluate("k", None, "gone", &none());
    assert_eq!(
        (e.treatment, e.label),
        ("control", &Label::DefinitionNotFound)
    );
    assert_eq!(e.change_number, None);
    // An ARCHIVED update removes a flag that was loaded.
    let (doc, _) = splitkit::definitions::SplitChanges::parse(
        &json!({"ff": {"d": [flag("live", json!([]), json!({"status": "ARCHIVED"}))], "s": 100, "t": 101}})
            .to_string(),
        "update",
    )
    .expect("parses");
    let (next, problems) = s.apply_changes(&doc);
    assert!(problems.is_empty());
    assert!(next.is_empty());
    assert_eq!(next.change_number(), 101);
}

#[test]
fn a_broken_flag_is_reported_and_the_others_load() {
    let good = flag("good", json!([rule(vec![all_keys()])]), json!({}));
    let doc = json!({"ff": {"d": [good.clone(), {"name": "broken", "conditions": 5}, good.clone()
        .as_object().map(|o| { let mut o = o.clone(); o.insert("name".into(), json!("good2")); Value::Object(o) })],
        "s": -1, "t": 9}});
    let (s, problems) = Snapshot::from_json(&doc.to_string(), "doc.json").expect("parses");
    assert_eq!(problems.len(), 1, "{problems:?}");
    match &problems[0] {
        Error::InvalidDefinition { flag, .. } => assert_eq!(flag, "broken"),
        other => panic!("unexpected problem {other:?}"),
    }
    assert!(
        problems[0].to_string().contains("'broken'"),
        "{}",
        problems[0]
    );
    assert_eq!(
        s.flag_names(),
        vec!["good".to_string(), "good2".to_string()]
    );
    assert_eq!(eval(&s, "k", "good2", &none()).0, "on");
    assert_eq!(eval(&s, "k", "broken", &none()).1, "definition not found");
    assert_eq!(s.change_number(), 9);
}

#[test]
fn prerequisites_come_before_traffic_allocation() {
    let s = load(vec![
        flag("yes", json!([rule(vec![all_keys()])]), json!({})),
        flag(
            "unmet",
            json!([rule(vec![all_keys()])]),
            json!({"trafficAllocation": 0, "prerequisites": [{"n": "yes", "ts": ["off"]}]}),
        ),
        flag(
            "met",
            json!([rule(vec![all_keys()])]),
            json!({"trafficAllocation": 0, "prerequisites": [{"n": "yes", "ts": ["on"]}]}),
        ),
    ]);
    assert_eq!(eval(&s, "k", "unmet", &none()).1, "prerequisites not met");
    assert_eq!(eval(&s, "k", "met", &none()).1, "not in split");
}

#[test]
fn rule_based_segment_with_an_unsupported_matcher_matches_everyone_not_excluded() {
    let rbs = json!({
        "name": "odd", "status": "ACTIVE", "trafficTypeName": "user", "changeNumber": 1,
        "excluded": {"keys": ["mauro"], "segments": [{"name": "blocked", "type": "some-new-type"}]},
        "conditions": [{"matcherGroup": {"combiner": "AND", "matchers": [
            whitelist(Some("plan"), &["pro"]),
            matcher("FUTURE_MATCHER", None, json!({}))]}}]
    });
    let (s, problems) = load_doc(
        vec![flag("f", json!([rule(vec![in_rbs("odd")])]), json!({}))],
        vec![rbs],
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].to_string().contains("'odd'"), "{}", problems[0]);
    let s = s.with_segment("blocked", ["pato"]);
    assert_eq!(eval(&s, "anyone", "f", &none()).0, "on");
    assert_eq!(eval(&s, "mauro", "f", &none()).0, "off");
    // An unknown exclusion type is read as a standard segment.
    assert_eq!(eval(&s, "pato", "f", &none()).0, "off");
}

/// Regression: partition sizes used to be summed with `+=`, which overflowed (a panic in
/// debug builds, so the whole document failed to load).
#[test]
fn huge_partition_sizes_do_not_crash_the_loader() {
    let parts = json!([{"treatment": "on", "size": i64::MAX}, {"treatment": "off", "size": 1}]);
    let good = flag("good", json!([rule(vec![all_keys()])]), json!({}));
    let bad = flag(
        "bad",
        json!([condition("ROLLOUT", vec![all_keys()], parts, "r")]),
        json!({}),
    );
    let loaded = std::panic::catch_unwind(|| load_doc(vec![good, bad], vec![]));
    let (s, problems) = loaded.expect("loading must not panic");
    assert!(
        problems
            .iter()
            .any(|p| p.to_string().contains("partitions[0].size")),
        "{problems:?}"
    );
    assert_eq!(eval(&s, "k", "good", &none()).0, "on");
    let t = eval(&s, "k", "bad", &none()).0;
    assert!(["on", "off", "control"].contains(&t.as_str()), "{t}");
}

/// Regression: a -0.0 attribute used to read as "0"; the JavaScript SDK's `toString` gives "-0".
#[test]
fn negative_zero_reads_as_minus_zero_like_javascript() {
    assert!(accepts(whitelist(Some("n"), &["-0"]), &attr("n", -0.0)));
    assert!(!accepts(whitelist(Some("n"), &["0"]), &attr("n", -0.0)));
}
